"""Fixtures of the producer's unit tests: moto S3, an in-memory publisher, settings from a clean environment."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from moto import mock_aws
from producer.publisher import PublishError
from producer.service import ProducerService
from producer.settings import Settings, load_settings
from producer.source import S3Source

from tests.conftest import contract_event

BUCKET = "game-events"


@dataclass
class Message:
    topic: str
    key: bytes | None
    value: bytes

    def json(self) -> Any:
        return json.loads(self.value)


@dataclass
class InMemoryPublisher:
    """Publisher fake. `fail_after`: the deliveries after that many messages fail (reported at flush)."""

    max_value_bytes: int = 1_000_000 - 512
    fail_after: int | None = None
    unavailable: bool = False
    keep: bool = True
    delivered: list[Message] = field(default_factory=list)
    count: int = 0
    _failed: int = 0
    flushes: int = 0

    def ensure_ready(self, topics: Any) -> None:
        if self.unavailable:
            raise PublishError("Kafka at test:9092 did not answer")

    def publish(self, topic: str, key: bytes | None, value: bytes) -> None:
        self.count += 1
        if self.fail_after is not None and self.count > self.fail_after:
            self._failed += 1
        elif self.keep:
            self.delivered.append(Message(topic, key, value))

    def flush(self, timeout_seconds: float) -> None:
        self.flushes += 1
        failed, self._failed = self._failed, 0
        if failed:
            raise PublishError(f"{failed} messages were not delivered to Kafka")

    def on(self, topic: str) -> list[Message]:
        return [m for m in self.delivered if m.topic == topic]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings come from the environment: start every test from the defaults, and never reach AWS."""
    for name in list(Settings.model_fields):
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "GameEventsTest")


@pytest.fixture
def settings() -> Settings:
    return load_settings()


@pytest.fixture
def s3() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


@pytest.fixture
def source(s3: Any, settings: Settings) -> S3Source:
    return S3Source(s3, settings.events_bucket, settings.claims_prefix, settings.claim_ttl_seconds)


@pytest.fixture
def publisher() -> InMemoryPublisher:
    return InMemoryPublisher()


@pytest.fixture
def service(settings: Settings, source: S3Source, publisher: InMemoryPublisher) -> ProducerService:
    return ProducerService(settings, source, publisher, sleep=lambda _: None)


def plenty_of_time() -> float:
    return 300.0


def keys(s3: Any, prefix: str = "") -> list[str]:
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", []))


def put(s3: Any, key: str, body: bytes | str, *, compress: bool = False) -> None:
    data = body.encode() if isinstance(body, str) else body
    s3.put_object(Bucket=BUCKET, Key=key, Body=gzip.compress(data) if compress else data)


event = contract_event  # the contract's example event with fields replaced (tests/conftest.py)


def ndjson(*events: dict[str, Any]) -> str:
    return "".join(json.dumps(e) + "\n" for e in events)
