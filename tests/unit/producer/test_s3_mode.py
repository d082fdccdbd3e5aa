"""S3 mode (contract §2 and §4): formats, dead letters, moving objects, failures half-way."""

from __future__ import annotations

import gzip
import json
import re
import time
from typing import Any

import pytest
from botocore.exceptions import ClientError
from producer.publisher import PublishError
from producer.service import DeadlineError, InvalidRequestError, ProducerService
from producer.settings import Settings
from producer.source import S3Source

from .conftest import BUCKET, InMemoryPublisher, event, keys, ndjson, plenty_of_time, put


def drain(service: ProducerService, **kwargs: Any) -> dict[str, Any]:
    return service.drain(plenty_of_time, owner="test", **kwargs).as_dict()


def user_ids(publisher: InMemoryPublisher, topic: str = "game-events") -> list[str]:
    return [m.json()["user_id"] for m in publisher.on(topic)]


def dead_letters(publisher: InMemoryPublisher) -> list[dict[str, Any]]:
    return [m.json() for m in publisher.on("game-events-dlq")]


@pytest.mark.parametrize(
    ("name", "compress", "body"),
    [
        ("a.ndjson", False, ndjson(event(user_id="1"), event(user_id="2"))),
        ("a.jsonl", False, ndjson(event(user_id="1"), event(user_id="2"))),
        ("a.ndjson.gz", True, ndjson(event(user_id="1"), event(user_id="2"))),
        ("a.jsonl.gz", True, ndjson(event(user_id="1"), event(user_id="2"))),
        ("a.json", False, json.dumps([event(user_id="1"), event(user_id="2")])),
        ("a.json.gz", True, json.dumps([event(user_id="1"), event(user_id="2")])),
        ("A.JSON", False, json.dumps([event(user_id="1"), event(user_id="2")], indent=4)),
    ],
)
def test_every_format_is_published_and_moved_to_processed(  # noqa: PLR0917
    s3: Any, service: ProducerService, publisher: InMemoryPublisher, name: str, compress: bool, body: str
) -> None:
    put(s3, f"incoming/{name}", body, compress=compress)

    summary = drain(service)

    assert user_ids(publisher) == ["1", "2"]
    assert [m.key for m in publisher.on("game-events")] == [b"1", b"2"]
    assert keys(s3, "incoming/") == []
    assert keys(s3, "processed/") == [f"processed/{name}"]
    assert keys(s3, "claims/") == []
    assert summary["files"] == 1
    assert summary["events_published"] == 2
    assert summary["events_rejected"] == 0


def test_a_json_file_with_one_object_is_one_event(
    s3: Any, service: ProducerService, publisher: InMemoryPublisher
) -> None:
    put(s3, "incoming/one.json", json.dumps(event(user_id="solo")))
    drain(service)
    assert user_ids(publisher) == ["solo"]


def test_blank_lines_are_skipped_not_rejected(s3: Any, service: ProducerService, publisher: InMemoryPublisher) -> None:
    put(s3, "incoming/b.ndjson", "\n" + json.dumps(event(user_id="1")) + "\n  \n\r\n" + json.dumps(event(user_id="2")))
    summary = drain(service)
    assert user_ids(publisher) == ["1", "2"]
    assert summary["events_rejected"] == 0
    assert dead_letters(publisher) == []


def test_crlf_line_endings_are_accepted(s3: Any, service: ProducerService, publisher: InMemoryPublisher) -> None:
    put(s3, "incoming/w.ndjson", json.dumps(event(user_id="1")) + "\r\n" + json.dumps(event(user_id="2")) + "\r\n")
    drain(service)
    assert user_ids(publisher) == ["1", "2"]


def test_each_bad_line_is_dead_lettered_with_reason_key_line_and_raw_text(
    s3: Any, service: ProducerService, publisher: InMemoryPublisher
) -> None:
    bad = '{"user_id": "", "event_type": "click", "timestamp": "2023-10-27T10:00:00Z"}'
    put(
        s3,
        "incoming/mixed.ndjson",
        "\n".join([json.dumps(event(user_id="1")), "", bad, "{oops", json.dumps(event(user_id="2"))]),
    )

    summary = drain(service)

    assert user_ids(publisher) == ["1", "2"]
    letters = dead_letters(publisher)
    assert [(d["s3_key"], d["record_kind"], d["record_number"], d["raw"]) for d in letters] == [
        ("incoming/mixed.ndjson", "line", 3, bad),
        ("incoming/mixed.ndjson", "line", 4, "{oops"),
    ]
    assert letters[0]["reason"] == "user_id: must not be empty or blank"
    assert letters[1]["reason"].startswith("not valid JSON")
    assert {m.key for m in publisher.on("game-events-dlq")} == {b"incoming/mixed.ndjson"}
    assert summary["events_rejected"] == 2
    assert keys(s3, "processed/") == ["processed/mixed.ndjson"]


def test_each_bad_array_element_is_dead_lettered_with_its_index(
    s3: Any, service: ProducerService, publisher: InMemoryPublisher
) -> None:
    put(s3, "incoming/arr.json", json.dumps([event(user_id="1"), {"user_id": 2.5}, "text", event(user_id="3")]))

    drain(service)

    assert user_ids(publisher) == ["1", "3"]
    letters = dead_letters(publisher)
    assert [(d["record_kind"], d["record_number"], d["raw"]) for d in letters] == [
        ("element", 1, '{"user_id": 2.5}'),
        ("element", 2, '"text"'),
    ]
    assert letters[1]["reason"] == "not a JSON object"


def test_lines_and_array_elements_are_judged_alike(
    s3: Any, service: ProducerService, publisher: InMemoryPublisher
) -> None:
    # Given the same records as NDJSON lines and as JSON array elements (two loops in the service)
    records: list[Any] = [
        event(user_id=" 7 ", event_type=" Click", timestamp="2023-10-27T12:00:00+02:00", game_id=9),
        event(timestamp="2023-10-27T10:00:00.123456Z", event_id="e-1"),
        event(timestamp="2023-02-30T10:00:00.000000Z"),
        event(user_id=" ", event_type="x" * 65, timestamp="2023-10-27T10:00:00"),
        {"user_id": 1.5, "payload": [1], "event_id": 17},
        [1],
    ]
    put(s3, "incoming/a.ndjson", ndjson(*records))
    put(s3, "incoming/b.json", json.dumps(records))

    drain(service)

    # Then both publish the same messages and reject the same records for the same reasons
    by_file: dict[str, list[Any]] = {"a": [], "b": []}
    for message in publisher.on("game-events"):
        value = message.json()
        by_file[value.pop("source").split("/")[-1][0]].append((message.key, value))
    assert by_file["a"] == by_file["b"]
    assert len(by_file["a"]) == 2
    letters = dead_letters(publisher)
    lines = [(d["record_number"] - 1, d["reason"]) for d in letters if d["record_kind"] == "line"]
    elements = [(d["record_number"], d["reason"]) for d in letters if d["record_kind"] == "element"]
    assert lines == elements
    assert [number for number, _ in lines] == [2, 3, 4, 5]


def test_messages_name_their_source_record(s3: Any, service: ProducerService, publisher: InMemoryPublisher) -> None:
    put(s3, "incoming/src.ndjson", "\n" + json.dumps(event()))
    drain(service)
    assert publisher.on("game-events")[0].json()["source"] == "s3://game-events/incoming/src.ndjson#2"


@pytest.mark.parametrize(
    ("name", "body", "reason"),
    [
        ("not-gzip.ndjson.gz", b'{"user_id": "1"}\n', "not a valid gzip stream"),
        ("truncated.json.gz", gzip.compress(b'[{"a": 1}, {"b": 2}]')[:-12], "the gzip stream ends before"),
        ("garbage.json", b"hello world", "expected a JSON array or object"),
        ("empty.json", b"  \n", "empty file"),
        ("unclosed.json", b'[{"user_id": "1"', "not valid JSON"),
        ("data.csv", b"user_id,event_type\n1,click\n", "unsupported file name"),
    ],
)
def test_an_unreadable_file_is_one_dead_letter_and_moves_to_rejected_with_a_report(  # noqa: PLR0917
    s3: Any, service: ProducerService, publisher: InMemoryPublisher, name: str, body: bytes, reason: str
) -> None:
    put(s3, f"incoming/{name}", body)

    summary = drain(service)

    [letter] = dead_letters(publisher)
    assert letter["record_kind"] == "file"
    assert letter["record_number"] is None
    assert letter["raw_bytes"] == len(body)  # the object's size, not the excerpt's
    assert letter["raw_truncated"] is False
    assert letter["s3_key"] == f"incoming/{name}"
    assert reason in letter["reason"]
    assert keys(s3) == [f"rejected/{name}", f"rejected/{name}.report.json"]
    report = json.loads(s3.get_object(Bucket=BUCKET, Key=f"rejected/{name}.report.json")["Body"].read())
    assert report["s3_key"] == f"incoming/{name}"
    assert reason in report["reason"]
    assert summary["files_rejected"] == 1
    assert summary["events_rejected"] == 1


def test_a_large_unreadable_file_keeps_its_size_and_an_excerpt_flagged_truncated(
    s3: Any, service: ProducerService, publisher: InMemoryPublisher
) -> None:
    body = b"x" * 300_000  # not JSON, and larger than the dead letter's raw excerpt
    put(s3, "incoming/big.json", body)

    drain(service)

    [letter] = dead_letters(publisher)
    assert letter["raw_bytes"] == len(body)
    assert letter["raw_truncated"] is True
    assert 0 < len(letter["raw"].encode()) < len(body)


@pytest.mark.parametrize("name", ["big-ids.json", "big-ids.json.gz"])
def test_integers_beyond_64_bits_in_a_json_array_are_read_exactly(
    s3: Any, service: ProducerService, publisher: InMemoryPublisher, name: str
) -> None:
    # ijson's fast parser cannot hold 2**64: the producer reads on from that element with the exact one
    body = json.dumps([event(user_id=1), event(user_id=2**64), event(user_id=3), event(user_id=-(2**70))]).encode()
    put(s3, f"incoming/{name}", gzip.compress(body) if name.endswith(".gz") else body)

    drain(service)

    assert user_ids(publisher) == ["1", str(2**64), "3", str(-(2**70))]
    assert keys(s3) == [f"processed/{name}"]


def test_elements_before_a_syntax_error_are_published_and_the_report_says_so(
    s3: Any, service: ProducerService, publisher: InMemoryPublisher
) -> None:
    put(s3, "incoming/cut.json", json.dumps([event(user_id="1"), event(user_id="2")])[:-5])

    drain(service)

    assert user_ids(publisher) == ["1"]
    report = json.loads(s3.get_object(Bucket=BUCKET, Key="rejected/cut.json.report.json")["Body"].read())
    assert report["events_published_before_the_error"] == 1
    assert report["position"] == "element 1"


def test_lines_before_a_truncated_gzip_stream_are_published_and_the_report_says_so(
    s3: Any, service: ProducerService, publisher: InMemoryPublisher
) -> None:
    lines = ndjson(*[event(user_id=str(n), payload={"n": n}) for n in range(2000)])
    compressed = gzip.compress(lines.encode())
    put(s3, "incoming/cut.ndjson.gz", compressed[: len(compressed) // 2])

    drain(service)

    published = user_ids(publisher)
    assert 0 < len(published) < 2000
    assert published == [str(n) for n in range(len(published))]
    report = json.loads(s3.get_object(Bucket=BUCKET, Key="rejected/cut.ndjson.gz.report.json")["Body"].read())
    assert report["events_published_before_the_error"] == len(published)
    assert report["position"] == f"line {len(published) + 1}"
    assert "truncated" in report["reason"]


def test_a_record_too_large_for_kafka_is_rejected_with_that_reason(
    s3: Any, settings: Settings, source: S3Source
) -> None:
    publisher = InMemoryPublisher(max_value_bytes=2000)
    service = ProducerService(settings, source, publisher)
    put(s3, "incoming/big.ndjson", ndjson(event(user_id="small"), event(user_id="big", payload={"blob": "x" * 5000})))

    drain(service)

    assert [m.json()["user_id"] for m in publisher.on("game-events")] == ["small"]
    [letter] = [m.json() for m in publisher.on("game-events-dlq")]
    assert letter["reason"].startswith("event too large for Kafka")
    assert letter["record_number"] == 2


def test_a_line_longer_than_the_line_limit_is_rejected_without_holding_it(
    s3: Any, service: ProducerService, publisher: InMemoryPublisher, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("producer.formats.MAX_LINE_BYTES", 1000)
    put(
        s3,
        "incoming/long.ndjson",
        ndjson(event(user_id="a"), event(user_id="b", payload={"x": "y" * 3000}), event(user_id="c")),
    )

    drain(service)

    assert user_ids(publisher) == ["a", "c"]
    [letter] = dead_letters(publisher)
    assert letter["reason"].startswith("line too long")
    assert letter["record_number"] == 2


def test_objects_are_taken_oldest_first(s3: Any, service: ProducerService, publisher: InMemoryPublisher) -> None:
    put(s3, "incoming/z-first.ndjson", ndjson(event(user_id="first")))
    time.sleep(1.1)  # S3 LastModified has a resolution of one second
    put(s3, "incoming/a-second.ndjson", ndjson(event(user_id="second")))
    drain(service)
    assert user_ids(publisher) == ["first", "second"]


def test_objects_outside_incoming_and_folder_markers_are_left_alone(
    s3: Any, service: ProducerService, publisher: InMemoryPublisher
) -> None:
    put(s3, "elsewhere/x.ndjson", ndjson(event()))
    put(s3, "incoming/", b"")
    summary = drain(service)
    assert summary["files"] == 0
    assert keys(s3) == ["elsewhere/x.ndjson", "incoming/"]


def test_nested_keys_keep_their_path_under_processed(s3: Any, service: ProducerService) -> None:
    put(s3, "incoming/2023/10/27/a.ndjson", ndjson(event()))
    drain(service)
    assert keys(s3) == ["processed/2023/10/27/a.ndjson"]


def test_a_direct_key_takes_only_that_object(s3: Any, service: ProducerService, publisher: InMemoryPublisher) -> None:
    put(s3, "incoming/one.ndjson", ndjson(event(user_id="1")))
    put(s3, "incoming/two.ndjson", ndjson(event(user_id="2")))
    drain(service, key="incoming/two.ndjson")
    assert user_ids(publisher) == ["2"]
    assert keys(s3, "incoming/") == ["incoming/one.ndjson"]


@pytest.mark.parametrize(
    ("key", "message"), [("processed/x.ndjson", "is not under 'incoming/'"), ("incoming/nope.ndjson", "no object")]
)
def test_a_direct_key_that_cannot_be_taken_is_an_error(
    s3: Any, service: ProducerService, key: str, message: str
) -> None:
    with pytest.raises(InvalidRequestError, match=message):
        drain(service, key=key)


# -- failures ----------------------------------------------------------------------------------------------


def test_kafka_failing_half_way_leaves_the_object_and_a_retry_publishes_and_moves_it(
    s3: Any, settings: Settings, source: S3Source
) -> None:
    put(s3, "incoming/half.ndjson", ndjson(*(event(user_id=str(i)) for i in range(10))))
    failing = InMemoryPublisher(fail_after=5)

    with pytest.raises(PublishError, match="5 messages were not delivered"):
        ProducerService(settings, source, failing).drain(plenty_of_time, owner="first")

    assert keys(s3) == ["incoming/half.ndjson"]  # still there, and no claim left behind
    working = InMemoryPublisher()
    summary = ProducerService(settings, source, working).drain(plenty_of_time, owner="retry").as_dict()
    assert user_ids(working) == [str(i) for i in range(10)]
    assert summary["events_published"] == 10
    assert keys(s3) == ["processed/half.ndjson"]


def test_kafka_unreachable_fails_before_touching_any_object(s3: Any, settings: Settings, source: S3Source) -> None:
    put(s3, "incoming/a.ndjson", ndjson(event()))
    with pytest.raises(PublishError, match="did not answer"):
        ProducerService(settings, source, InMemoryPublisher(unavailable=True)).drain(plenty_of_time, owner="x")
    assert keys(s3) == ["incoming/a.ndjson"]


def test_an_s3_error_while_reading_leaves_the_object(
    s3: Any, service: ProducerService, source: S3Source, monkeypatch: pytest.MonkeyPatch
) -> None:
    put(s3, "incoming/a.ndjson", ndjson(event()))

    def broken(obj: Any) -> Any:
        raise ConnectionError("connection reset while reading")

    monkeypatch.setattr(source, "open", broken)
    with pytest.raises(ConnectionError):
        drain(service)
    assert keys(s3) == ["incoming/a.ndjson"]


# -- claims ------------------------------------------------------------------------------------------------


def test_an_object_claimed_by_a_live_invocation_is_skipped(
    s3: Any, service: ProducerService, source: S3Source, publisher: InMemoryPublisher
) -> None:
    put(s3, "incoming/a.ndjson", ndjson(event()))
    [obj] = source.list_new("incoming/")
    assert source.claim(obj, "other-invocation")

    summary = drain(service)

    assert summary["files_skipped"] == 1
    assert publisher.delivered == []
    assert "incoming/a.ndjson" in keys(s3)


def test_a_second_claim_of_the_same_object_fails(s3: Any, source: S3Source) -> None:
    put(s3, "incoming/a.ndjson", ndjson(event()))
    [obj] = source.list_new("incoming/")
    assert source.claim(obj, "one")
    assert not source.claim(obj, "two")
    source.release(obj.key)
    assert source.claim(obj, "two")


def test_a_stale_claim_of_a_dead_invocation_is_taken_over(
    s3: Any, settings: Settings, publisher: InMemoryPublisher
) -> None:
    put(s3, "incoming/a.ndjson", ndjson(event()))
    expired = S3Source(s3, BUCKET, "claims/", claim_ttl_seconds=0)
    [obj] = expired.list_new("incoming/")
    assert expired.claim(obj, "crashed")

    ProducerService(settings, expired, publisher).drain(plenty_of_time, owner="next")

    assert len(publisher.on("game-events")) == 1
    assert keys(s3) == ["processed/a.ndjson"]


def test_a_stale_claim_is_taken_over_once(s3: Any) -> None:
    put(s3, "incoming/a.ndjson", ndjson(event()))
    expired = S3Source(s3, BUCKET, "claims/", claim_ttl_seconds=0)
    [obj] = expired.list_new("incoming/")
    assert expired.claim(obj, "old")
    assert expired.claim(obj, "new")
    assert json.loads(s3.get_object(Bucket=BUCKET, Key="claims/incoming/a.ndjson")["Body"].read())["owner"] == "new"


# -- polling -----------------------------------------------------------------------------------------------


class FakeClock:
    def __init__(self, budget: float) -> None:
        self.now = 0.0
        self.budget = budget
        self.sleeps: list[float] = []

    def remaining(self) -> float:
        return self.budget - self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_without_polling_one_pass_is_made(s3: Any, settings: Settings, source: S3Source) -> None:
    clock = FakeClock(budget=60)
    service = ProducerService(settings, source, InMemoryPublisher(), sleep=clock.sleep, clock=lambda: clock.now)
    assert service.drain(clock.remaining, owner="x").polls == 1
    assert clock.sleeps == []


def test_polling_looks_again_every_interval_until_the_deadline_margin(
    s3: Any, source: S3Source, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POLL_ENABLED", "true")
    monkeypatch.setenv("POLL_INTERVAL_SECONDS", "5")
    monkeypatch.setenv("DEADLINE_MARGIN_SECONDS", "20")
    settings = Settings()
    clock = FakeClock(budget=60)
    publisher = InMemoryPublisher()

    def sleep_and_upload(seconds: float) -> None:
        clock.sleep(seconds)
        if clock.now == 10:  # a file arrives while the function is polling
            put(s3, "incoming/late.ndjson", ndjson(event(user_id="late")))

    service = ProducerService(settings, source, publisher, sleep=sleep_and_upload, clock=lambda: clock.now)
    summary = service.drain(clock.remaining, owner="x")

    # polls at remaining 60, 55, ..., 20; after that a sleep would end inside the 20 s margin
    assert clock.sleeps == [5.0] * 8
    assert summary.polls == 9
    assert [m.json()["user_id"] for m in publisher.on("game-events")] == ["late"]


def test_objects_are_left_for_the_next_run_when_the_deadline_is_near(
    s3: Any, settings: Settings, source: S3Source
) -> None:
    put(s3, "incoming/a.ndjson", ndjson(event()))
    service = ProducerService(settings, source, InMemoryPublisher())
    summary = service.drain(lambda: 10.0, owner="x")
    assert summary.files_left == 1
    assert keys(s3) == ["incoming/a.ndjson"]


def test_a_stale_claim_is_taken_over_where_s3_lacks_conditional_overwrite(
    s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    put(s3, "incoming/a.ndjson", ndjson(event()))
    expired = S3Source(s3, BUCKET, "claims/", claim_ttl_seconds=0)
    [obj] = expired.list_new("incoming/")
    assert expired.claim(obj, "old")
    real_put = s3.put_object

    def put_without_if_match(**kwargs: Any) -> Any:
        if "IfMatch" in kwargs:
            raise ClientError({"Error": {"Code": "NotImplemented", "Message": "no If-Match"}}, "PutObject")
        return real_put(**kwargs)

    monkeypatch.setattr(s3, "put_object", put_without_if_match)
    assert expired.claim(obj, "new")
    assert json.loads(s3.get_object(Bucket=BUCKET, Key="claims/incoming/a.ndjson")["Body"].read())["owner"] == "new"


def test_a_new_upload_under_the_same_key_during_the_run_is_not_deleted(
    s3: Any, settings: Settings, source: S3Source, monkeypatch: pytest.MonkeyPatch
) -> None:
    put(s3, "incoming/a.ndjson", ndjson(event(user_id="v1")))
    real_copy = s3.copy

    def copy_then_reupload(*args: Any, **kwargs: Any) -> Any:
        result = real_copy(*args, **kwargs)
        put(s3, "incoming/a.ndjson", ndjson(event(user_id="v2")))  # uploaded again while we were moving
        return result

    monkeypatch.setattr(s3, "copy", copy_then_reupload)
    ProducerService(settings, source, InMemoryPublisher()).drain(plenty_of_time, owner="x")

    assert keys(s3) == ["incoming/a.ndjson", "processed/a.ndjson"]
    assert b'"v2"' in s3.get_object(Bucket=BUCKET, Key="incoming/a.ndjson")["Body"].read()


def test_running_out_of_time_inside_a_file_fails_clearly_and_leaves_it(
    s3: Any, settings: Settings, source: S3Source, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("producer.service._DEADLINE_CHECK_EVERY", 2)
    put(s3, "incoming/long.ndjson", ndjson(*(event(user_id=str(i)) for i in range(10))))
    budget = iter([300.0, 300.0, 300.0, 5.0])  # before the file, then at records 2 and 4

    with pytest.raises(DeadlineError, match=re.escape("incoming/long.ndjson not finished within the function")):
        ProducerService(settings, source, InMemoryPublisher()).drain(lambda: next(budget, 5.0), owner="x")

    assert keys(s3) == ["incoming/long.ndjson"]
