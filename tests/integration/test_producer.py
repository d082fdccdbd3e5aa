"""The deployed producer against real Kafka and LocalStack: `make deploy`, upload, invoke, read the topics.

Needs Kafka (127.0.0.1:9092, topics game-events and game-events-dlq) and LocalStack with the host Lambda executor
(127.0.0.1:4566), both started by `make up` / `make test`. Every test uses its own S3 prefix and reads only the
messages that name it, so traffic from other tests on the same topics does not matter.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from botocore.config import Config
from confluent_kafka import Consumer, TopicPartition

from tests.conftest import ROOT, load_event
from tests.integration.lambda_fixtures import CREDENTIALS, REGION, localstack_url

FUNCTION = "game-events-producer"
RULE = "game-events-producer-schedule"
BUCKET = "game-events"
DATA = ROOT / "events" / "data"


@dataclass(frozen=True)
class Deployed:
    endpoint: str
    bootstrap: str
    s3: Any
    lambda_: Any
    events: Any


def wait_for(condition: Callable[[], Any], timeout: float, what: str, interval: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)
    return result


@pytest.fixture(scope="module")
def deployed(kafka_bootstrap: str) -> Iterator[Deployed]:
    """`make deploy` (the real deployment path), with the schedule paused while tests invoke by hand."""
    endpoint = localstack_url()
    env = {**os.environ, "AWS_ENDPOINT_URL": endpoint, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap}
    result = subprocess.run(
        ["make", "deploy"], check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, f"make deploy failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    assert "FunctionName = game-events-producer" in result.stdout
    session = boto3.session.Session(
        aws_access_key_id=CREDENTIALS["aws_access_key_id"],
        aws_secret_access_key=CREDENTIALS["aws_secret_access_key"],
        region_name=REGION,
    )
    config = Config(read_timeout=600, retries={"max_attempts": 2})
    aws = Deployed(
        endpoint=endpoint,
        bootstrap=kafka_bootstrap,
        s3=session.client("s3", endpoint_url=endpoint),
        lambda_=session.client("lambda", endpoint_url=endpoint, config=config),
        events=session.client("events", endpoint_url=endpoint),
    )
    aws.events.disable_rule(Name=RULE)
    try:
        yield aws
    finally:
        aws.events.enable_rule(Name=RULE)


@pytest.fixture
def prefix() -> str:
    return f"incoming/it-{uuid.uuid4().hex[:10]}/"


class TopicReader:
    """Reads what arrives on the topics after it was created (assigned at the current end offsets)."""

    def __init__(self, bootstrap: str, topics: list[str]) -> None:
        self.consumer = Consumer(
            {"bootstrap.servers": bootstrap, "group.id": f"it-producer-{uuid.uuid4()}", "enable.auto.commit": False}
        )
        assignment = []
        for topic in topics:
            for partition in self.consumer.list_topics(topic, timeout=10).topics[topic].partitions:
                _, high = self.consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
                assignment.append(TopicPartition(topic, partition, high))
        self.consumer.assign(assignment)
        self.messages: list[Any] = []

    def read_until(self, done: Callable[[list[Any]], bool], timeout: float = 60) -> list[Any]:
        deadline = time.monotonic() + timeout
        while not done(self.messages) and time.monotonic() < deadline:
            message = self.consumer.poll(0.5)
            if message is not None and message.error() is None:
                self.messages.append(message)
        return self.messages

    def close(self) -> None:
        self.consumer.close()


@pytest.fixture
def reader(deployed: Deployed) -> Iterator[TopicReader]:
    topic_reader = TopicReader(deployed.bootstrap, ["game-events", "game-events-dlq"])
    yield topic_reader
    topic_reader.close()


def invoke(deployed: Deployed, payload: dict[str, Any]) -> dict[str, Any]:
    response = deployed.lambda_.invoke(FunctionName=FUNCTION, Payload=json.dumps(payload).encode())
    body: dict[str, Any] = json.loads(response["Payload"].read())
    assert "FunctionError" not in response, body
    return body


def keys(deployed: Deployed, prefix: str) -> list[str]:
    listing = deployed.s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    return sorted(o["Key"] for o in listing.get("Contents", []))


def value_of(message: Any) -> dict[str, Any]:
    """The JSON object of a message, or {} for anything else (other tests share the topics)."""
    try:
        value = json.loads(message.value())
    except (TypeError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def ours(messages: list[Any], prefix: str) -> tuple[list[Any], list[Any]]:
    """(events, dead letters) among `messages` that come from objects under `prefix`."""
    events = [m for m in messages if m.topic() == "game-events" and f"/{prefix}" in str(value_of(m).get("source"))]
    dead = [m for m in messages if m.topic() == "game-events-dlq" and str(value_of(m).get("s3_key")).startswith(prefix)]
    return events, dead


def test_valid_records_reach_the_events_topic_keyed_by_user_and_rejects_the_dlq_with_reasons(
    deployed: Deployed, reader: TopicReader, prefix: str
) -> None:
    ndjson_key, json_key = prefix + "sessions.ndjson", prefix + "store.json.gz"
    deployed.s3.put_object(Bucket=BUCKET, Key=ndjson_key, Body=(DATA / "sessions-2023-10-27.ndjson").read_bytes())
    deployed.s3.put_object(
        Bucket=BUCKET, Key=json_key, Body=gzip.compress((DATA / "store-2023-10-27.json").read_bytes())
    )

    first = invoke(deployed, {"mode": "s3", "key": ndjson_key})
    second = invoke(deployed, {"mode": "s3", "key": json_key})

    assert (first["events_published"], first["events_rejected"]) == (42, 4)
    assert (second["events_published"], second["events_rejected"]) == (32, 3)
    messages = reader.read_until(lambda got: [len(x) for x in ours(got, prefix)] == [74, 7])
    events, dead = ours(messages, prefix)
    assert len(events) == 74
    assert len(dead) == 7
    partitions: dict[bytes, set[int]] = {}
    for message in events:
        value = json.loads(message.value())
        assert message.key() == value["user_id"].encode()
        assert value["timestamp"].endswith("Z")
        assert value["event_type"] == value["event_type"].strip().lower()
        partitions.setdefault(message.key(), set()).add(message.partition())
    assert all(len(p) == 1 for p in partitions.values())
    letters = sorted((json.loads(m.value()) for m in dead), key=lambda d: (d["s3_key"], d["record_number"]))
    assert [(d["s3_key"], d["record_kind"], d["record_number"]) for d in letters] == [
        (ndjson_key, "line", 26),
        (ndjson_key, "line", 31),
        (ndjson_key, "line", 34),
        (ndjson_key, "line", 37),
        (json_key, "element", 8),
        (json_key, "element", 12),
        (json_key, "element", 15),
    ]
    assert letters[0]["reason"] == "user_id: must not be empty or blank"
    assert letters[4]["reason"] == "timestamp: required field is missing"
    assert all(d["raw"] for d in letters)
    assert keys(deployed, prefix) == []
    moved = "processed/" + prefix.removeprefix("incoming/")
    assert keys(deployed, moved) == [moved + "sessions.ndjson", moved + "store.json.gz"]


def test_an_unreadable_file_is_one_dead_letter_and_moves_to_rejected_with_a_report(
    deployed: Deployed, reader: TopicReader, prefix: str
) -> None:
    key = prefix + "broken-upload.ndjson.gz"
    deployed.s3.put_object(Bucket=BUCKET, Key=key, Body=(DATA / "broken-upload.ndjson.gz").read_bytes())

    summary = invoke(deployed, {"mode": "s3", "key": key})

    assert summary["files_rejected"] == 1
    _, dead = ours(reader.read_until(lambda got: len(ours(got, prefix)[1]) == 1), prefix)
    [letter] = [json.loads(m.value()) for m in dead]
    assert letter["record_kind"] == "file"
    assert "not a valid gzip stream" in letter["reason"]
    rejected = "rejected/" + key.removeprefix("incoming/")
    assert keys(deployed, rejected) == [rejected, rejected + ".report.json"]


def test_generate_mode_publishes_the_requested_number_of_events(deployed: Deployed, reader: TopicReader) -> None:
    seed = int(uuid.uuid4().int % 10**9)
    summary = invoke(deployed, {"mode": "generate", "count": 500, "seed": seed})
    assert summary["events_published"] == 500
    origin = f"generator:seed={seed}#"

    def generated(got: list[Any]) -> list[Any]:
        return [m for m in got if m.topic() == "game-events" and str(value_of(m).get("source")).startswith(origin)]

    assert len(generated(reader.read_until(lambda got: len(generated(got)) == 500))) == 500


def test_every_sample_invocation_event_is_accepted_by_the_deployed_function(deployed: Deployed) -> None:
    for name in ("scheduled.json", "manual-s3.json", "manual-generate.json"):
        response = deployed.lambda_.invoke(FunctionName=FUNCTION, Payload=json.dumps(load_event(f"events/{name}")))
        assert "FunctionError" not in response, (name, response["Payload"].read())


@pytest.mark.slow
def test_the_schedule_fires_the_function_by_itself(deployed: Deployed, reader: TopicReader, prefix: str) -> None:
    key = prefix + "scheduled.ndjson"
    deployed.events.enable_rule(Name=RULE)
    try:
        deployed.s3.put_object(Bucket=BUCKET, Key=key, Body=(DATA / "sessions-2023-10-27.ndjson").read_bytes())
        wait_for(lambda: keys(deployed, key) == [], timeout=150, what=f"the rate(1 minute) rule to take {key}")
    finally:
        deployed.events.disable_rule(Name=RULE)
    events, dead = ours(reader.read_until(lambda got: [len(x) for x in ours(got, prefix)] == [42, 4]), prefix)
    assert (len(events), len(dead)) == (42, 4)
    moved = "processed/" + key.removeprefix("incoming/")
    assert keys(deployed, moved) == [moved]
