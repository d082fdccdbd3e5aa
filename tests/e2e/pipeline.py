"""The whole pipeline on the native stack, private to one e2e session, and the checks the tests make on it.

One `Pipeline` per session: template.yaml deployed a second time through infra/deploy.py (the real deployment
path) as its own CloudFormation stack, with its own function, bucket and Kafka topics, the schedule on and the
function polling `incoming/` every 2 seconds; the Spark job (`python -m spark.job`, trigger 3 seconds) on those
topics with its own database and checkpoint. Nothing of it touches `game-events`, its topics or `analytics`, so
other tests and the demo on the same stack do not mix with it.

The truth is computed in the test from the uploaded files (spark_harness.FilesTruth, an independent reading of
the contract). `assert_matches_truth` waits until the producer took every upload and the Spark job committed
everything Kafka holds, then compares the tables exactly, once: so a copy that would be counted twice is seen.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import boto3
import pytest
from botocore.config import Config
from confluent_kafka import Consumer, KafkaException, TopicPartition

from tests.integration import spark_harness as h
from tests.integration.conftest import stack
from tests.integration.lambda_fixtures import CREDENTIALS, poll

ROOT = h.ROOT
REGION = os.environ.get("AWS_DEFAULT_REGION", "us-east-1")
LOCALSTACK = os.environ.get("AWS_ENDPOINT_URL", f"http://127.0.0.1:{os.environ.get('LOCALSTACK_PORT', '4566')}")
POLL_INTERVAL_SECONDS = 2
TRIGGER = "3 seconds"
# The rule fires once a minute; a polling invocation ends ~20 s before its 300 s timeout and the next tick may be
# throttled behind it (reserved concurrency 1): a file may wait up to ~2 minutes for the next invocation.
PICKUP_TIMEOUT = 180.0
SPARK_TIMEOUT = 240.0

T = TypeVar("T")


def wait_for(condition: Callable[[], T | None], timeout: float, what: str, *, detail: Callable[[], str] = str) -> T:
    """Poll `condition` until it returns something truthy; fail with `what` (and `detail()`) after `timeout`."""
    result: T = poll(condition, timeout, what=what, detail=detail)
    return result


@dataclass
class E2eJob(h.JobRun):
    """The Spark job on the session's private topics, database and checkpoint."""

    @property
    def events_topic(self) -> str:
        return f"e2e-events-{self.run_id}"

    @property
    def dlq_topic(self) -> str:
        return f"e2e-dlq-{self.run_id}"

    @property
    def database(self) -> str:
        return f"e2e_{self.run_id}"

    def committed_offsets(self) -> dict[tuple[str, int], int]:
        """Kafka offsets up to which the newest batch in Spark's commit log has read (from the checkpoint)."""
        commits = [int(p.name) for p in (self.checkpoint / "commits").glob("[0-9]*") if p.name.isdigit()]
        if not commits:
            return {}
        offsets: dict[tuple[str, int], int] = {}
        for line in (self.checkpoint / "offsets" / str(max(commits))).read_text().splitlines()[2:]:
            for topic, partitions in json.loads(line).items():
                offsets.update({(topic, int(p)): int(o) for p, o in partitions.items()})
        return offsets

    def batch_in_progress(self) -> int | None:
        """The id of a batch Spark planned (offsets log) but has not committed (commit log), if any."""

        def ids(folder: str) -> list[int]:
            return [int(p.name) for p in (self.checkpoint / folder).glob("[0-9]*") if p.name.isdigit()]

        planned, done = ids("offsets"), ids("commits")
        if planned and max(planned) > max(done, default=-1):
            return max(planned)
        return None

    def planned_offsets(self, batch: int) -> dict[tuple[str, int], int]:
        offsets: dict[tuple[str, int], int] = {}
        path = self.checkpoint / "offsets" / str(batch)
        for line in path.read_text().splitlines()[2:]:
            for topic, partitions in json.loads(line).items():
                offsets.update({(topic, int(p)): int(o) for p, o in partitions.items()})
        return offsets


@dataclass
class Pipeline:
    job: E2eJob
    uploads: list[str] = field(default_factory=list)
    truth: h.FilesTruth = field(default_factory=h.FilesTruth)

    def __post_init__(self) -> None:
        session = boto3.session.Session(
            aws_access_key_id=CREDENTIALS["aws_access_key_id"],
            aws_secret_access_key=CREDENTIALS["aws_secret_access_key"],
            region_name=REGION,
        )
        config = Config(retries={"max_attempts": 5, "mode": "standard"}, read_timeout=120)
        self.s3 = session.client("s3", endpoint_url=LOCALSTACK, config=config)
        self.cfn = session.client("cloudformation", endpoint_url=LOCALSTACK, config=config)
        self.logs = session.client("logs", endpoint_url=LOCALSTACK, config=config)
        self.consumer = Consumer({"bootstrap.servers": h.KAFKA_BOOTSTRAP, "group.id": f"e2e-{uuid.uuid4()}"})

    # -- names ----------------------------------------------------------------------------------------------------
    @property
    def stack_name(self) -> str:
        return f"game-events-e2e-{self.job.run_id}"

    @property
    def function(self) -> str:
        return f"game-events-producer-e2e-{self.job.run_id}"

    @property
    def bucket(self) -> str:
        return f"game-events-e2e-{self.job.run_id}"

    # -- set-up and tear-down -------------------------------------------------------------------------------------
    def deploy(self) -> None:
        """template.yaml through infra/deploy.py, as its own stack: schedule on, polling every 2 s."""
        parameters = {
            "FunctionName": self.function,
            "EventsBucketName": self.bucket,
            "EventsTopic": self.job.events_topic,
            "DeadLetterTopic": self.job.dlq_topic,
            "KafkaBootstrapServers": h.KAFKA_BOOTSTRAP,
            "PollEnabled": "true",
            "PollIntervalSeconds": str(POLL_INTERVAL_SECONDS),
            "ScheduleEnabled": "true",
        }
        command = [sys.executable, str(ROOT / "infra" / "deploy.py"), "--stack-name", self.stack_name]
        for key, value in parameters.items():
            command += ["--parameter", f"{key}={value}"]
        done = subprocess.run(
            command,
            cwd=ROOT,
            env={**os.environ, "AWS_ENDPOINT_URL": LOCALSTACK},
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert done.returncode == 0, (
            f"deploying {self.stack_name} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )
        assert f"FunctionName = {self.function}" in done.stdout, done.stdout

    def destroy(self) -> None:
        """Delete the stack (function, schedule, log group) and the bucket (retained by the template; LocalStack
        4.9 deletes it with the stack when it is empty, so it is emptied first and deleted if still there)."""
        self.consumer.close()
        self.empty_bucket()
        self.cfn.delete_stack(StackName=self.stack_name)
        self.cfn.get_waiter("stack_delete_complete").wait(
            StackName=self.stack_name, WaiterConfig={"Delay": 2, "MaxAttempts": 60}
        )
        if self.empty_bucket():
            self.s3.delete_bucket(Bucket=self.bucket)

    def empty_bucket(self) -> bool:
        """Delete every object of the bucket; False when there is no bucket."""
        try:
            for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket):
                for item in page.get("Contents", []):
                    self.s3.delete_object(Bucket=self.bucket, Key=item["Key"])
        except self.s3.exceptions.NoSuchBucket:
            return False
        return True

    # -- input ----------------------------------------------------------------------------------------------------
    def upload(self, name: str, body: bytes) -> str:
        """Put `body` at incoming/<name> and add it to the truth; the scheduled function takes it from there."""
        key = f"incoming/{name}"
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=body)
        self.uploads.append(key)
        self.truth.add(key, body)
        return key

    def keys(self, prefix: str) -> set[str]:
        found: set[str] = set()
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            found.update(item["Key"] for item in page.get("Contents", []))
        return found

    def wait_taken(self, timeout: float = PICKUP_TIMEOUT) -> None:
        """Until the function took every upload out of incoming/ (after Kafka acknowledged all its records)."""
        wanted = set(self.uploads)
        wait_for(
            lambda: not (self.keys("incoming/") & wanted),
            timeout,
            "the scheduled producer to take every upload out of incoming/",
            detail=lambda: f"still there: {sorted(self.keys('incoming/') & wanted)}\n{self.function_log()}",
        )

    def function_log(self, limit: int = 30) -> str:
        """The newest lines of the function's CloudWatch log group (for failure messages)."""
        try:
            events = self.logs.filter_log_events(logGroupName=f"/aws/lambda/{self.function}")["events"]
        except Exception as exc:  # diagnostics only
            return f"(no function log: {exc})"
        return "function log:\n" + "\n".join(e["message"].rstrip()[:400] for e in events[-limit:])

    # -- Kafka and Spark progress ---------------------------------------------------------------------------------
    def end_offsets(self) -> dict[tuple[str, int], int]:
        """The end offset of every partition of the two topics (retried while a restarted broker elects leaders)."""
        deadline = time.monotonic() + 60
        while True:
            try:
                ends: dict[tuple[str, int], int] = {}
                for topic in (self.job.events_topic, self.job.dlq_topic):
                    for partition in self.consumer.list_topics(topic, timeout=10).topics[topic].partitions:
                        _, high = self.consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
                        ends[(topic, partition)] = high
                return ends
            except KafkaException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def events_in_kafka(self) -> int:
        return sum(n for (topic, _), n in self.end_offsets().items() if topic == self.job.events_topic)

    def dead_letters_in_kafka(self) -> int:
        return sum(n for (topic, _), n in self.end_offsets().items() if topic == self.job.dlq_topic)

    def wait_spark_caught_up(self, timeout: float = SPARK_TIMEOUT) -> None:
        """Until a committed batch has read everything the topics hold now."""
        ends = self.end_offsets()

        def caught_up() -> bool:
            if self.job.process is not None and self.job.process.poll() is not None:
                pytest.fail(f"the Spark job exited with {self.job.process.returncode}:\n{self.job.logs()}")
            done = self.job.committed_offsets()
            return all(done.get(tp, 0) >= end for tp, end in ends.items())

        wait_for(
            caught_up,
            timeout,
            "the Spark job to commit everything in Kafka",
            detail=lambda: f"Kafka {ends}, committed {self.job.committed_offsets()}\n{self.job.logs()}",
        )

    # -- the check ------------------------------------------------------------------------------------------------
    def rejected_rows(self) -> list[dict[str, Any]]:
        conn = h.connect(self.job.database)
        try:
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT kafka_topic, s3_bucket, s3_key, s3_record_kind, s3_record_number, reason, raw_text "
                    "FROM rejected_events ORDER BY id"
                )
                names = [d[0] for d in cur.description]
                return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
        finally:
            conn.close()

    def assert_matches_truth(self, *, rejected: bool = True) -> None:
        """Every upload taken, everything in Kafka committed; then the tables equal the truth exactly, and
        (unless `rejected` is False) rejected_events holds exactly the rejected records, each once."""
        self.wait_taken()
        self.wait_spark_caught_up()
        expected = self.truth.tables()
        problems = h.table_differences(expected, h.read_tables(self.job.database))
        assert not problems, "\n".join(problems)
        if rejected:
            self.assert_rejected()

    def assert_rejected(self, *, copies_allowed: bool = False) -> None:
        """rejected_events holds every rejected record (S3 key, line/element, a reason naming the broken rule,
        the raw text) and nothing else; each once unless `copies_allowed`."""
        rows = self.rejected_rows()
        where = Counter(
            (r["kafka_topic"], r["s3_bucket"], r["s3_key"], r["s3_record_kind"], r["s3_record_number"]) for r in rows
        )
        wanted = Counter((self.job.dlq_topic, self.bucket, e.s3_key, e.kind, e.number) for e in self.truth.rejected)
        if copies_allowed:
            where = Counter(set(where))
        copies = {place: n for place, n in where.items() if n > wanted[place] > 0}
        assert not copies, f"rejected_events holds records more than once (stored/expected): {copies}"
        assert where == wanted, f"rejected_events: missing {wanted - where}, unexpected {where - wanted}"
        by_place = {(r["s3_key"], r["s3_record_kind"], r["s3_record_number"]): r for r in rows}
        for expected in self.truth.rejected:
            row = by_place[(expected.s3_key, expected.kind, expected.number)]
            place = f"{expected.s3_key} {expected.kind} {expected.number}"
            assert expected.hint in row["reason"], f"{place}: reason {row['reason']!r} does not name {expected.hint!r}"
            if expected.kind == "element":
                assert json.loads(row["raw_text"]) == expected.element, f"{place}: raw {row['raw_text']!r}"
            else:
                assert row["raw_text"] == expected.raw, f"{place}: raw {row['raw_text']!r}, uploaded {expected.raw!r}"


# ---------------------------------------------------------------------------------------------------------------
# Faults
# ---------------------------------------------------------------------------------------------------------------
def stack_command(action: str, service: str) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "infra" / "stack.py"), action, service],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, f"stack.py {action} {service} failed:\n{done.stdout}\n{done.stderr}"


@contextmanager
def service_frozen_then_killed(service: str) -> Iterator[None]:
    """The service's process group frozen (SIGSTOP: connections stay open, nothing is answered — the network
    partition a client cannot tell from a slow server) for the body, then SIGKILLed (a crash) and started again
    with `infra/stack.py start SERVICE`, whatever happened."""
    pid = stack.SERVICES[service].pid()
    assert pid is not None, f"{service} is not running"
    try:
        os.killpg(pid, signal.SIGSTOP)
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        wait_for(lambda: not stack.SERVICES[service].running(), 30, f"{service} to die")
        stack_command("start", service)


@contextmanager
def service_stopped(service: str) -> Iterator[None]:
    """`infra/stack.py stop SERVICE` for the body; started again afterwards, whatever happened."""
    stack_command("stop", service)
    try:
        yield
    finally:
        stack_command("start", service)
