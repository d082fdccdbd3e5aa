"""The Spark job on a Spark standalone cluster (the distributed path) against the native stack's Kafka and MariaDB.

A master and one worker (2 cores, 2 GB) are started from the pyspark distribution (`spark-class
org.apache.spark.deploy.master.Master` / `...worker.Worker`) on 127.0.0.1 with free ports, and stopped afterwards
whatever happens. The job runs as usual (`python -m spark.job`, private topics, database and checkpoint), with
SPARK_MASTER pointing at the master: the driver ships its jars (SPARK_JARS_DIR, `spark.jars`) to the executors,
which read Kafka, keep the dedup state in the checkpoint (a local path: driver, worker and executors share this
machine) and load the staging tables over JDBC. The tables must equal the same ground truth as in local mode.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyspark
import pytest

from . import spark_harness as h
from .conftest import require
from .test_spark_job import dead_letters, generate

SPARK_HOME = Path(pyspark.__file__).resolve().parent
TIMEOUT = 300.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Cluster:
    master_url: str
    ui_url: str
    processes: list[subprocess.Popen[bytes]]
    logs: Path

    def state(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.ui_url}/json/", timeout=5) as response:  # noqa: S310 - loopback
            state: dict[str, Any] = json.load(response)
            return state

    def log_tail(self) -> str:
        return "\n".join(
            f"== {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in sorted(self.logs.glob("*.log"))
        )


def daemon(main: str, args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [str(SPARK_HOME / "bin" / "spark-class"), main, *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped as a whole
        )


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """A standalone master and one worker (2 cores, 2 GB) on 127.0.0.1; stopped afterwards, whatever happens."""
    port, ui_port = free_port(), free_port()
    logs = tmp_path / "cluster-logs"
    logs.mkdir()
    env = {
        **os.environ,
        "SPARK_HOME": str(SPARK_HOME),
        "SPARK_LOCAL_IP": "127.0.0.1",
        "SPARK_LOCAL_HOSTNAME": "127.0.0.1",
        "SPARK_DAEMON_MEMORY": "256m",
        "SPARK_LOG_DIR": str(logs),
        "SPARK_WORKER_DIR": str(tmp_path / "worker"),
    }
    master = f"spark://127.0.0.1:{port}"
    processes: list[subprocess.Popen[bytes]] = []
    running = Cluster(master, f"http://127.0.0.1:{ui_port}", processes, logs)
    try:
        args = ["--host", "127.0.0.1", "--port", str(port), "--webui-port", str(ui_port)]
        processes.append(daemon("org.apache.spark.deploy.master.Master", args, logs / "master.log", env))
        worker_args = ["--host", "127.0.0.1", "--cores", "2", "--memory", "2g", "--webui-port", str(free_port())]
        worker_args += ["--work-dir", str(tmp_path / "worker"), master]
        processes.append(daemon("org.apache.spark.deploy.worker.Worker", worker_args, logs / "worker.log", env))
        deadline = time.monotonic() + 120
        while True:
            try:
                alive = [w for w in running.state().get("workers", []) if w.get("state") == "ALIVE"]
            except OSError:
                alive = []
            if alive:
                break
            if time.monotonic() > deadline or any(p.poll() is not None for p in processes):
                pytest.fail(f"the standalone cluster did not come up with a worker:\n{running.log_tail()}")
            time.sleep(0.5)
        yield running
    finally:
        for process in reversed(processes):
            stop(process)


def test_the_job_on_a_standalone_cluster_gives_the_same_tables_as_the_ground_truth(
    cluster: Cluster, tmp_path: Path
) -> None:
    require("kafka", "mariadb")
    job = h.JobRun(
        workdir=tmp_path / "job",
        trigger="3 seconds",
        extra_env={
            "SPARK_MASTER": cluster.master_url,
            "SPARK_LOCAL_IP": "127.0.0.1",
            "SPARK_LOCAL_HOSTNAME": "127.0.0.1",
        },
    )
    job.setup()
    try:
        # Given events with copies, awkward values and invalid records in two waves, and dead letters
        start = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
        first, second = generate(51, 40, 400, start=start), generate(52, 40, 400, start=start + timedelta(hours=1))
        h.produce(job.events_topic, first.messages)
        h.produce(job.dlq_topic, dead_letters(3))

        # When the job runs on the cluster, and the second wave arrives while it runs
        job.start()
        expected = h.ground_truth(first.events)
        got = job.wait_for(expected, TIMEOUT)
        assert not h.table_differences(expected, got), job.logs()
        h.produce(job.events_topic, second.messages)

        # Then the tables equal the ground truth of all distinct events, every invalid record is rejected,
        expected = h.ground_truth(first.events + second.events)
        got = job.wait_for(expected, TIMEOUT)
        assert not h.table_differences(expected, got), job.logs()
        rejected = first.invalid + second.invalid + 3
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and h.scalar(job.database, "SELECT COUNT(*) FROM rejected_events") < rejected:
            time.sleep(1)
        assert h.scalar(job.database, "SELECT COUNT(*) FROM rejected_events") == rejected
        # and the work ran on the cluster's executors (the application is the master's, with the worker's cores)
        [app] = [a for a in cluster.state().get("activeapps", []) if a.get("name") == f"spark-it-{job.run_id}"]
        assert app["cores"] == 2, app
        executor_logs = list((tmp_path / "worker").glob("app-*/*/stderr"))
        assert executor_logs, cluster.log_tail()
        assert any("Finished task" in p.read_text(errors="replace") for p in executor_logs)
    finally:
        job.teardown()
