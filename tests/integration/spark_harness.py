"""Harness for running the Spark job against the native stack: a private database and topics per run, the job
as a subprocess (so it can be SIGKILLed), and an independent ground truth of the metric tables.

Used by tests/integration/test_spark_job.py and bench/spark_job.py. The private database is created by the
administrator over MariaDB's unix socket (as infra/stack.py does), with the schema of db/schema.sql and the same
grants as the application user has on `analytics`; the job itself connects as the application user over TCP.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pymysql
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

ROOT = Path(__file__).resolve().parents[2]
STACK_DIR = Path(os.environ.get("GAME_EVENTS_STACK_DIR", ROOT / ".stack"))
MYSQL_PORT = int(os.environ.get("MYSQL_PORT", "3306"))
MYSQL_USER = os.environ.get("MYSQL_USER", "analytics")
MYSQL_PASSWORD = os.environ.get("MYSQL_PASSWORD", "analytics")
KAFKA_BOOTSTRAP = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", f"127.0.0.1:{os.environ.get('KAFKA_PORT', '9092')}")
METRIC_TABLES = ("event_type_metrics", "user_metrics", "user_event_type_metrics")


# ---------------------------------------------------------------------------------------------------------------
# Jars
# ---------------------------------------------------------------------------------------------------------------
JARS_DIR = STACK_DIR / "jars" / "spark"


def ensure_jars() -> None:
    """The Kafka source and JDBC driver of spark/pom.xml in .stack/jars/spark (what `make spark-jars` does)."""
    if any(JARS_DIR.glob("spark-sql-kafka-*.jar")):
        return
    subprocess.run(
        [
            "mvn",
            "-q",
            "-B",
            "-f",
            str(ROOT / "spark" / "pom.xml"),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={JARS_DIR}",
        ],
        check=True,
    )


# ---------------------------------------------------------------------------------------------------------------
# Database
# ---------------------------------------------------------------------------------------------------------------
def admin(sql: str, database: str | None = None) -> str:
    """Run SQL as the administrator over the private socket of the native stack's MariaDB."""
    cmd = ["mariadb", f"--defaults-file={STACK_DIR / 'mariadb' / 'my.cnf'}", "--batch", "--skip-column-names"]
    if database:
        cmd.append(database)
    done = subprocess.run(cmd, input=sql, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"mariadb admin SQL failed: {done.stderr.strip()}")
    return done.stdout


def create_database(name: str) -> None:
    admin(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    admin((ROOT / "db" / "schema.sql").read_text(), database=name)
    admin(f"GRANT SELECT, INSERT, UPDATE, DELETE, CREATE TEMPORARY TABLES ON `{name}`.* TO '{MYSQL_USER}'@'%'")


def drop_database(name: str) -> None:
    admin(f"DROP DATABASE IF EXISTS `{name}`")


def connect(database: str) -> pymysql.connections.Connection[Any]:
    return pymysql.connect(
        host="127.0.0.1",
        port=MYSQL_PORT,
        user=MYSQL_USER,
        password=MYSQL_PASSWORD,
        database=database,
        autocommit=True,
        init_command="SET time_zone = '+00:00'",
    )


def read_tables(database: str) -> dict[str, list[tuple[Any, ...]]]:
    """The metric tables as sorted tuples (avg rounded to the microsecond)."""
    queries = {
        "event_type_metrics": "SELECT event_type, total_events, unique_users FROM event_type_metrics",
        "user_metrics": "SELECT user_id, event_count, first_event_at, last_event_at, "
        "ROUND(avg_seconds_between_events, 6) FROM user_metrics",
        "user_event_type_metrics": "SELECT user_id, event_type, event_count, first_event_at, last_event_at "
        "FROM user_event_type_metrics",
        "event_type_minute_metrics": "SELECT minute_start, event_type, total_events FROM event_type_minute_metrics",
        "rejected_events": "SELECT kafka_topic, kafka_partition, kafka_offset, reason FROM rejected_events",
    }
    conn = connect(database)
    try:
        out = {}
        with conn.cursor() as cur:
            for table, sql in queries.items():
                cur.execute(sql)
                out[table] = sorted(_plain(row) for row in cur.fetchall())
        return out
    finally:
        conn.close()


def _plain(row: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(float(v) if v is not None and type(v).__name__ == "Decimal" else v for v in row)


def scalar(database: str, sql: str) -> Any:
    conn = connect(database)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            row = cur.fetchone()
            return row[0] if row else None
    finally:
        conn.close()


# ---------------------------------------------------------------------------------------------------------------
# Kafka
# ---------------------------------------------------------------------------------------------------------------
def create_topics(names: Iterable[str], partitions: int = 3) -> None:
    client = AdminClient({"bootstrap.servers": KAFKA_BOOTSTRAP})
    futures = client.create_topics(
        [
            NewTopic(
                name,
                num_partitions=partitions,
                replication_factor=1,
                config={"message.timestamp.type": "LogAppendTime"},
            )
            for name in names
        ]
    )
    for future in futures.values():
        future.result(timeout=30)


def delete_topics(names: Iterable[str]) -> None:
    client = AdminClient({"bootstrap.servers": KAFKA_BOOTSTRAP})
    for future in client.delete_topics(list(names)).values():
        with contextlib.suppress(Exception):  # best-effort clean-up
            future.result(timeout=30)


def produce(topic: str, messages: Iterable[tuple[bytes | None, bytes | None]]) -> int:
    producer = Producer(
        {
            "bootstrap.servers": KAFKA_BOOTSTRAP,
            "linger.ms": 50,
            "batch.size": 1_000_000,
            "compression.type": "lz4",
            "enable.idempotence": True,
            "queue.buffering.max.messages": 1_000_000,
        }
    )
    count = 0
    for key, value in messages:
        while True:
            try:
                producer.produce(topic, key=key, value=value)
                break
            except BufferError:
                producer.poll(0.1)
        count += 1
        if count % 10_000 == 0:
            producer.poll(0)
    remaining = producer.flush(120)
    if remaining:
        raise RuntimeError(f"{remaining} messages not delivered to {topic}")
    return count


# ---------------------------------------------------------------------------------------------------------------
# The job as a subprocess
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class JobRun:
    """Everything private to one run: topics, database, checkpoint; starts/kills the job process."""

    workdir: Path
    trigger: str = "2 seconds"
    extra_env: Mapping[str, str] = field(default_factory=dict)
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:10])
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def events_topic(self) -> str:
        return f"spark-it-events-{self.run_id}"

    @property
    def dlq_topic(self) -> str:
        return f"spark-it-dlq-{self.run_id}"

    @property
    def database(self) -> str:
        return f"spark_it_{self.run_id}"

    @property
    def checkpoint(self) -> Path:
        return self.workdir / "checkpoint"

    def setup(self) -> None:
        ensure_jars()
        self.workdir.mkdir(parents=True, exist_ok=True)
        create_topics([self.events_topic, self.dlq_topic])
        create_database(self.database)

    def teardown(self) -> None:
        self.kill()
        delete_topics([self.events_topic, self.dlq_topic])
        drop_database(self.database)

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "KAFKA_BOOTSTRAP_SERVERS": KAFKA_BOOTSTRAP,
                "EVENTS_TOPIC": self.events_topic,
                "DLQ_TOPIC": self.dlq_topic,
                "MYSQL_DATABASE": self.database,
                "MYSQL_PORT": str(MYSQL_PORT),
                "CHECKPOINT_LOCATION": str(self.checkpoint),
                "TRIGGER_INTERVAL": self.trigger,
                "QUERY_NAME": f"spark-it-{self.run_id}",
                "RESTART_BACKOFF_INITIAL_SECONDS": "1",
                "RESTART_BACKOFF_MAX_SECONDS": "5",
            }
        )
        env.update(self.extra_env)
        return env

    def start(self) -> None:
        assert self.process is None or self.process.poll() is not None, "job already running"
        self.starts += 1
        log = open(self.workdir / f"job-{self.starts}.log", "wb")  # noqa: SIM115 - owned by the process
        self.process = subprocess.Popen(
            [sys.executable, "-m", "spark.job"],
            cwd=ROOT,
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the JVM dies with it on SIGKILL
        )

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the job's whole process group (Python driver and its JVM) and wait for it to go."""
        if self.process is None or self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, sig)
        except ProcessLookupError:
            return
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)
        # the JVM may outlive the Python process for a moment
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                os.killpg(self.process.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-5000:] for p in sorted(self.workdir.glob("job-*.log")))

    def current_log(self) -> str:
        path = self.workdir / f"job-{self.starts}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def wait_log(self, text: str, timeout: float = 180) -> None:
        """Wait until the running job's own log has `text`."""
        deadline = time.monotonic() + timeout
        while text not in self.current_log():
            if time.monotonic() > deadline:
                raise AssertionError(f"no {text!r} in the job's log after {timeout}s:\n{self.logs()}")
            time.sleep(0.2)

    def wait_commit_count(self, above: int, timeout: float = 180) -> int:
        deadline = time.monotonic() + timeout
        while (count := self.committed_batches()) <= above:
            if time.monotonic() > deadline:
                raise AssertionError(f"no batch committed after {timeout}s:\n{self.logs()}")
            time.sleep(0.1)
        return count

    def logs_full(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.workdir.glob("job-*.log")))

    def committed_batches(self) -> int:
        return int(scalar(self.database, "SELECT COUNT(*) FROM spark_batch_ledger") or 0)

    def wait_for(self, expected: Mapping[str, list[tuple[Any, ...]]], timeout: float) -> dict[str, Any]:
        """Poll the tables until they equal `expected` (or time out and return what is there)."""
        deadline = time.monotonic() + timeout
        got: dict[str, Any] = {}
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"the job exited with {self.process.returncode}:\n{self.logs()}")
            got = {k: v for k, v in read_tables(self.database).items() if k in expected}
            if got == dict(expected):
                return got
            time.sleep(1)
        return got


# ---------------------------------------------------------------------------------------------------------------
# Input generation and the independent ground truth
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Generated:
    """Messages to publish (key, value) and the distinct valid events they contain."""

    messages: list[tuple[bytes | None, bytes | None]]
    events: list[tuple[str, str, datetime]]  # (user_id, event_type, instant), one per distinct event
    invalid: int


def ground_truth(events: Iterable[tuple[str, str, datetime]]) -> dict[str, list[tuple[Any, ...]]]:
    """The metric tables computed in plain Python from the distinct events (sorting, not merging)."""
    by_user: dict[str, list[datetime]] = defaultdict(list)
    by_pair: dict[tuple[str, str], list[datetime]] = defaultdict(list)
    for user, kind, at in events:
        by_user[user].append(at)
        by_pair[(user, kind)].append(at)
    types: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for (_user, kind), times in by_pair.items():
        types[kind][0] += len(times)
        types[kind][1] += 1
    users = []
    for user, times in by_user.items():
        ordered = sorted(times)
        gaps_us = [(b - a) // timedelta(microseconds=1) for a, b in itertools.pairwise(ordered)]
        avg = round(sum(gaps_us) / 1e6 / len(gaps_us), 6) if gaps_us else None
        users.append((user, len(ordered), _naive(ordered[0]), _naive(ordered[-1]), avg))
    pairs = [(u, k, len(t), _naive(min(t)), _naive(max(t))) for (u, k), t in by_pair.items()]
    minutes: dict[tuple[datetime, str], int] = defaultdict(int)
    for _user, kind, at in events:
        minutes[(_naive(at).replace(second=0, microsecond=0), kind)] += 1
    return {
        "event_type_metrics": sorted((k, n, u) for k, (n, u) in types.items()),
        "user_metrics": sorted(users),
        "user_event_type_metrics": sorted(pairs),
        "event_type_minute_metrics": sorted((m, k, n) for (m, k), n in minutes.items()),
    }


def _naive(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(tzinfo=None)


def iso(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def message(user_id: str | int, event_type: str, at: datetime, **extra: Any) -> tuple[bytes, bytes]:
    body = {"user_id": user_id, "event_type": event_type, "timestamp": iso(at), **extra}
    return str(user_id).encode(), json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
