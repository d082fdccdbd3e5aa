"""Harness for running the Spark job against the native stack: a private database and topics per run, the job
as a subprocess (so it can be SIGKILLed), and an independent ground truth of the metric tables.

Used by tests/integration/test_spark_job.py and bench/spark_job.py. The private database is created by the
administrator over MariaDB's unix socket (as infra/stack.py does), with the schema of db/schema.sql and the same
grants as the application user has on `analytics`; the job itself connects as the application user over TCP.
"""

from __future__ import annotations

import contextlib
import gzip
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
import zlib
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
METRIC_TABLES = ("event_type_metrics", "user_metrics")


# ---------------------------------------------------------------------------------------------------------------
# Jars
# ---------------------------------------------------------------------------------------------------------------
def ensure_jars() -> None:
    """The Kafka source and JDBC driver of spark/pom.xml in .stack/jars/spark (what `make spark-jars` does;
    nothing to do when they are up to date with the POM)."""
    subprocess.run([sys.executable, str(ROOT / "infra" / "stack.py"), "install", "spark"], check=True, cwd=ROOT)


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
            if not table_differences(expected, got):
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
    events = list(events)  # read twice below
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
    minutes: dict[tuple[datetime, str], int] = defaultdict(int)
    for _user, kind, at in events:
        minutes[(_naive(at).replace(second=0, microsecond=0), kind)] += 1
    return {
        "event_type_metrics": sorted((k, n, u) for k, (n, u) in types.items()),
        "user_metrics": sorted(users),
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


# ---------------------------------------------------------------------------------------------------------------
# S3 input files: an independent reading of contract §1-§4 (for the end-to-end tests)
#
# Written from the contract and docs/producer.md, not from the producer's code: what the pipeline must make of
# a set of uploaded files. `FilesTruth.tables()` gives the metric tables (through ground_truth above) and
# `FilesTruth.rejected` the records that must end up in rejected_events.
# ---------------------------------------------------------------------------------------------------------------
_ISO_INSTANT = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?(?:(Z)|([+-])(\d{2}):(\d{2}))", re.ASCII
)
USER_ID_MAX_CHARS = 128
EVENT_TYPE_MAX_CHARS = 64
RAW_HEAD_BYTES = 65_536  # the producer's DLQ_RAW_MAX_BYTES: the first bytes of an unreadable file are kept


@dataclass(frozen=True)
class ContractEvent:
    """One valid input record, normalized (contract §1), with its identity (contract §3)."""

    identity: tuple[Any, ...]
    user_id: str
    event_type: str
    instant: datetime


@dataclass(frozen=True)
class ExpectedReject:
    """A record that must be in rejected_events: where it came from, a text its reason must contain (the rule it
    breaks), and the raw text the row must keep (None: not compared)."""

    s3_key: str
    kind: str  # "line" (1-based), "element" (0-based) or "file"
    number: int | None
    hint: str
    raw: str | None = None
    element: Any = None  # for "element": the decoded value (the raw text is a re-serialization of it)


def _instant(text: str) -> datetime | None:
    match = _ISO_INSTANT.fullmatch(text)
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, zulu, sign, zone_h, zone_m = match.groups()
    micros = int((fraction or "0")[:6].ljust(6, "0"))
    try:
        local = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second or 0), micros)
    except ValueError:
        return None
    offset = timedelta(0) if zulu else (1 if sign == "+" else -1) * timedelta(hours=int(zone_h), minutes=int(zone_m))
    return (local - offset).replace(tzinfo=UTC)


def _trimmed(value: Any, limit: int) -> str | None:
    if not isinstance(value, str):
        return None
    text = value.strip()
    return text if 0 < len(text) <= limit else None


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def contract_event(value: Any) -> ContractEvent | str:  # noqa: PLR0911 - one return per rule
    """The normalized event of one decoded JSON value, or the name of a rule it breaks (part of the reason)."""
    if not isinstance(value, dict):
        return "not a JSON object"
    raw_user = value.get("user_id")
    user = str(raw_user) if _integer(raw_user) else _trimmed(raw_user, USER_ID_MAX_CHARS)
    if user is None:
        return "user_id"
    kind = _trimmed(value.get("event_type"), EVENT_TYPE_MAX_CHARS)
    if kind is None or len(kind.lower()) > EVENT_TYPE_MAX_CHARS:
        return "event_type"
    stamp = value.get("timestamp")
    instant = _instant(stamp) if isinstance(stamp, str) else None
    if instant is None:
        return "timestamp"
    game = value.get("game_id")
    if not (game is None or isinstance(game, str) or _integer(game)):
        return "game_id"
    payload = value.get("payload")
    if not (payload is None or isinstance(payload, dict)):
        return "payload"
    event_id = value.get("event_id")
    if not (event_id is None or (isinstance(event_id, str) and event_id.strip())):
        return "event_id"
    identity: tuple[Any, ...] = (
        ("id", event_id)
        if event_id is not None
        else (
            "ev",
            user,
            kind.lower(),
            instant,
            None if game is None else str(game),
            None if payload is None else json.dumps(payload, sort_keys=True, separators=(",", ":")),
        )
    )
    return ContractEvent(identity, user, kind.lower(), instant)


def _no_constants(name: str) -> Any:
    raise ValueError(f"not JSON: {name}")


def _decoded(value: bytes) -> Any:
    """A JSON document as the contract reads it (strict JSON: no NaN/Infinity)."""
    return json.loads(value, parse_constant=_no_constants)


_BAD_JSON = object()


def _decoded_or_bad(value: bytes) -> Any:
    try:
        return _decoded(value)
    except ValueError:
        return _BAD_JSON


@dataclass
class FilesTruth:
    """What the pipeline must make of the files uploaded so far, in upload order."""

    events: dict[tuple[Any, ...], ContractEvent] = field(default_factory=dict)  # first copy of each identity
    rejected: list[ExpectedReject] = field(default_factory=list)
    records: int = 0  # valid records, copies included

    def add(self, key: str, body: bytes) -> None:
        """Read one uploaded object (contract §2): its format from its name, optionally gzip. A file that cannot
        be read as its format is one rejected record naming the file. (A file that breaks half-way, e.g. a
        truncated gzip stream, publishes what came before the break: not modelled here, so not to be given.)"""
        name = key.lower().removesuffix(".gz")
        values: list[tuple[str, int, Any, str | None]] = []  # (kind, number, decoded value or _BAD_JSON, raw)
        try:
            data = gzip.decompress(body) if key.lower().endswith(".gz") else body
            if name.endswith((".ndjson", ".jsonl")):
                for number, line in enumerate(data.split(b"\n"), start=1):
                    text = line.strip(b" \t\r\n")
                    if text:  # blank lines are skipped, not rejected
                        values.append(("line", number, _decoded_or_bad(text), text.decode("utf-8", "replace")))
            elif name.endswith(".json"):
                document = _decoded(data)
                if isinstance(document, dict):
                    document = [document]
                if not isinstance(document, list):
                    raise ValueError("neither a JSON array nor an object")
                values = [("element", number, value, None) for number, value in enumerate(document)]
            else:
                raise ValueError("unsupported file name")
        except (OSError, EOFError, ValueError, zlib.error):
            head = body[:RAW_HEAD_BYTES].decode("utf-8", "replace")
            self.rejected.append(ExpectedReject(key, "file", None, "unreadable file", raw=head))
            return
        for kind, number, value, raw in values:
            if value is _BAD_JSON:
                self.rejected.append(ExpectedReject(key, kind, number, "not valid JSON", raw=raw))
            else:
                self._record(key, kind, number, value, raw)

    def _record(self, key: str, kind: str, number: int, value: Any, raw: str | None) -> None:
        event = contract_event(value)
        if isinstance(event, str):
            self.rejected.append(ExpectedReject(key, kind, number, event, raw=raw, element=value))
            return
        self.records += 1
        first = self.events.setdefault(event.identity, event)
        if (first.user_id, first.event_type, first.instant) != (event.user_id, event.event_type, event.instant):
            raise ValueError(
                f"test data: {key} {kind} {number} shares event_id {event.identity[1]!r} with an event of "
                "another user, type or instant, so which one counts would depend on arrival order"
            )

    def tables(self) -> dict[str, list[tuple[Any, ...]]]:
        """The metric tables of the distinct events (ground_truth)."""
        return ground_truth((e.user_id, e.event_type, e.instant) for e in self.events.values())


def table_differences(
    expected: Mapping[str, list[tuple[Any, ...]]], got: Mapping[str, list[tuple[Any, ...]]]
) -> list[str]:
    """What differs between two sets of metric tables (read_tables / ground_truth form); [] when equal.

    Everything is compared exactly except the average gap, which both sides round to 6 decimals: when the exact
    average ends in a 5 at the 7th decimal (an odd number of microseconds over 2 gaps, say) the database's DOUBLE
    and Python's float may round it apart (seen: 2032072.6086025 -> .608602 in MariaDB, .608603 in Python), so two
    averages within 1 µs are equal. (The average is a function of count, first and last, compared exactly.)"""

    def same(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
        if len(a) != len(b):
            return False
        return all(
            x == y or (isinstance(x, float) and isinstance(y, float) and abs(x - y) <= 1.0001e-6)
            for x, y in zip(a, b, strict=True)
        )

    problems = []
    for table, rows in expected.items():
        have = sorted(got.get(table, []))
        want = sorted(rows)
        if len(have) == len(want) and all(same(a, b) for a, b in zip(want, have, strict=True)):
            continue
        missing = [r for r in want if not any(same(r, h) for h in have)][:10]
        extra = [h for h in have if not any(same(r, h) for r in want)][:10]
        problems.append(f"{table}: {len(have)} rows, {len(want)} expected; missing {missing}, unexpected {extra}")
    return problems
