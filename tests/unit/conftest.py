"""Fixtures shared by the unit tests: one local SparkSession (no network) for every test that needs Spark."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from spark.job import ROCKSDB_PROVIDER

ROOT = Path(__file__).resolve().parents[2]
# The job's state processor (spark/src, transforms.first_copies_within_window), built by `make spark-jars`.
PROCESSOR_JAR = ROOT / ".stack" / "jars" / "spark" / "game-events-spark.jar"


@pytest.fixture(scope="session")
def spark() -> Iterator[SparkSession]:
    # Up to date with spark/src and spark/pom.xml (a no-op when it is): streaming tests run the job's processor.
    subprocess.run([sys.executable, str(ROOT / "infra" / "stack.py"), "install", "spark"], check=True, cwd=ROOT)
    session = (
        SparkSession.builder.master("local[2]")
        .config("spark.jars", str(PROCESSOR_JAR))
        .config("spark.sql.streaming.stateStore.providerClass", ROCKSDB_PROVIDER)
        .appName("unit-tests")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.driver.extraJavaOptions", "-Duser.timezone=UTC")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.sql.variant.allowDuplicateKeys", "true")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()
