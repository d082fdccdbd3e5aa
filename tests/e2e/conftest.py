"""End-to-end tests: S3 -> scheduled Lambda -> Kafka -> Spark -> MySQL on the native stack (`make test-e2e`).

The session shares one private pipeline (tests/e2e/pipeline.py): deploying the function and starting a Spark job
take about a minute, far more than a test's own input. Each test adds its files to the session's truth and checks
the whole tables against everything uploaded so far, so a later test also sees whether an earlier test's events
were counted twice.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import require

from .pipeline import TRIGGER, E2eJob, Pipeline


@pytest.fixture(scope="session")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    require("kafka", "mariadb", "localstack")
    job = E2eJob(
        workdir=Path(tmp_path_factory.mktemp("e2e-spark")),
        trigger=TRIGGER,
        extra_env={"SPARK_LOCAL_IP": "127.0.0.1", "DEDUP_WINDOW": "1 hour"},
    )
    job.setup()
    pipe = Pipeline(job)
    try:
        job.start()  # the JVM starts while the stack deploys
        pipe.deploy()
        job.wait_log('"query started"')
        yield pipe
    finally:
        try:
            job.kill()
            pipe.destroy()
        finally:
            job.teardown()
