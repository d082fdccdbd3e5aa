"""The Lambda handler: every sample in events/ is accepted; the sample data set gives the documented counts."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from producer import handler
from producer.handler import Dependencies
from producer.service import ProducerService
from producer.settings import Settings
from producer.source import S3Source
from pydantic import ValidationError

from tests.conftest import ROOT, load_event

from .conftest import InMemoryPublisher, keys, put

DATA = ROOT / "events" / "data"
# What the sample data set gives (documented in docs/producer.md, "Sample data").
EXPECTED = {"files": 6, "files_rejected": 1, "events_published": 126, "records_rejected": 9, "distinct_events": 123}


@dataclass
class FakeContext:
    function_name: str = "game-events-producer"
    memory_limit_in_mb: int = 1024
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:000000000000:function:game-events-producer"
    aws_request_id: str = "req-1"
    remaining_ms: int = 300_000

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


@pytest.fixture
def wired(
    settings: Settings, source: S3Source, publisher: InMemoryPublisher, monkeypatch: pytest.MonkeyPatch
) -> InMemoryPublisher:
    deps = Dependencies(settings, ProducerService(settings, source, publisher))
    monkeypatch.setattr(handler, "dependencies", lambda: deps)
    return publisher


def upload_sample_data(s3: Any) -> None:
    for path in sorted(DATA.iterdir()):
        put(s3, f"incoming/{path.name}", path.read_bytes())


def invoke(event: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = handler.lambda_handler(event, FakeContext())
    return result


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "events").glob("*.json")))
def test_every_sample_event_is_accepted(s3: Any, wired: InMemoryPublisher, name: str) -> None:
    upload_sample_data(s3)
    summary = invoke(load_event(f"events/{name}"))
    assert summary["mode"] in {"s3", "generate"}
    assert summary["events_published"] > 0


def test_the_scheduled_event_drains_the_sample_data_set(s3: Any, wired: InMemoryPublisher) -> None:
    upload_sample_data(s3)
    expected = EXPECTED

    summary = invoke(load_event("events/scheduled.json"))

    assert summary["files"] == expected["files"]
    assert summary["files_rejected"] == expected["files_rejected"]
    assert summary["events_published"] == expected["events_published"]
    assert summary["events_rejected"] == expected["records_rejected"]
    published = [m.json() for m in wired.on("game-events")]
    assert len({m["dedup_key"] for m in published}) == expected["distinct_events"]
    assert len(wired.on("game-events-dlq")) == expected["records_rejected"]
    assert keys(s3, "incoming/") == []


def test_a_generate_invocation_publishes_the_requested_count(wired: InMemoryPublisher) -> None:
    summary = invoke({"mode": "generate", "count": 250, "seed": 1})
    assert summary["events_published"] == 250
    assert len(wired.on("game-events")) == 250


def test_generate_to_s3_writes_one_object_that_a_scheduled_run_then_publishes(
    s3: Any, wired: InMemoryPublisher
) -> None:
    invoke({"mode": "generate", "count": 100, "seed": 3, "target": "s3"})
    [key] = keys(s3, "incoming/")
    assert key.startswith("incoming/generated/")
    assert key.endswith("-seed3.ndjson.gz")
    assert wired.delivered == []

    summary = invoke(load_event("events/scheduled.json"))
    assert summary["events_published"] == 100


@pytest.mark.parametrize(
    "bad", [{"mode": "s4"}, {"mode": "generate", "count": 0}, {"detail-type": "Scheduled Event"}, {}]
)
def test_an_unknown_invocation_is_refused(
    wired: InMemoryPublisher, bad: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ValidationError):
        invoke(bad)
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert [d["InvocationErrors"] for d in emf if "InvocationErrors" in d] == [[1.0]]


def test_the_summary_is_logged_and_metrics_are_emitted(
    s3: Any, wired: InMemoryPublisher, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    put(s3, "incoming/a.ndjson", (DATA / "sessions-2023-10-27.ndjson").read_bytes())
    invoke(load_event("events/manual-s3.json"))
    [done] = [r for r in caplog.records if r.getMessage() == "invocation done"]
    assert done.__dict__["events_published"] == 42
    assert done.__dict__["events_rejected"] == 4
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    metrics = {k: v for document in emf for k, v in document.items() if k != "_aws"}
    assert metrics["EventsPublished"] == [42.0]
    assert metrics["EventsRejected"] == [4.0]
    assert metrics["FilesProcessed"] == [1.0]


def test_dependencies_are_built_once_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    handler.dependencies.cache_clear()
    try:
        first = handler.dependencies()
        assert handler.dependencies() is first
        assert first.settings.kafka_bootstrap_servers == "127.0.0.1:9092"
    finally:
        handler.dependencies.cache_clear()


def test_sample_data_files_are_present() -> None:
    names = {p.name for p in DATA.iterdir()}
    assert {".ndjson", ".json", ".gz"} <= {Path(n).suffix for n in names}
    assert any(n.endswith(".jsonl.gz") for n in names)
