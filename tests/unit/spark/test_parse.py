"""Contract §1: every rule of an input event, as the Spark job parses and validates it (spark/transforms.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from spark import transforms

from .conftest import DLQ_TOPIC, RAW_MAX_CHARS, event, parse


def _one(spark: SparkSession, value: Any) -> dict[str, Any]:
    rows = parse(spark, [value]).collect()
    assert len(rows) == 1
    return rows[0].asDict()


def test_valid_event_is_normalized(spark: SparkSession) -> None:
    # Given the contract's example with untrimmed user id and mixed-case event type
    value = event(user_id="  Ana\t", event_type=" Level_Start ", timestamp="2023-10-27T12:00:00.1234567+02:00")

    # When parsed
    parsed = parse(spark, [value]).select("is_event", "reason", "user_id", "event_type", "event_at")

    # Then it is a valid event: trimmed user id (case kept), trimmed lower-case type, UTC instant to the microsecond
    expected = spark.createDataFrame(
        [(True, None, "Ana", "level_start", datetime(2023, 10, 27, 10, 0, 0, 123456))],
        "is_event boolean, reason string, user_id string, event_type string, event_at timestamp",
    )
    assertDataFrameEqual(parsed, expected)


@pytest.mark.parametrize(
    ("fields", "user_id"),
    [
        ({"user_id": 123}, "123"),
        ({"user_id": -7}, "-7"),
        ({"user_id": 12345678901234567890123}, "12345678901234567890123"),
        ({"user_id": "Ana"}, "Ana"),
        ({"user_id": "ana"}, "ana"),
        ({"user_id": "Zoë-日本"}, "Zoë-日本"),
        ({"user_id": "🎮player"}, "🎮player"),
        ({"user_id": "x" * 128}, "x" * 128),
        ({"user_id": "  " + "y" * 128 + "  "}, "y" * 128),
    ],
)
def test_user_id_accepted(spark: SparkSession, fields: dict[str, Any], user_id: str) -> None:
    row = _one(spark, event(**fields))
    assert (row["is_event"], row["user_id"], row["reason"]) == (True, user_id, None)


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"user_id": ...}, "user_id: required field is missing"),
        ({"user_id": None}, "user_id: required field is missing"),
        ({"user_id": ""}, "user_id: must not be empty or blank"),
        ({"user_id": " \t "}, "user_id: must not be empty or blank"),
        ({"user_id": "x" * 129}, "user_id: is 129 characters long, at most 128 allowed"),
        ({"user_id": 1.5}, "user_id: must be a string or an integer, got 1.5"),
        ({"user_id": True}, "user_id: must be a string or an integer, got true"),
        ({"user_id": {"id": 1}}, 'user_id: must be a string or an integer, got {"id":1}'),
        ({"user_id": [1]}, "user_id: must be a string or an integer, got [1]"),
        ({"event_type": ...}, "event_type: required field is missing"),
        ({"event_type": "  "}, "event_type: must not be empty or blank"),
        ({"event_type": 5}, "event_type: must be a string, got 5"),
        ({"event_type": "e" * 65}, "event_type: is 65 characters long, at most 64 allowed"),
        ({"timestamp": ...}, "timestamp: required field is missing"),
        ({"timestamp": 1698400800}, "timestamp: must be an ISO-8601 string, got 1698400800"),
        ({"timestamp": "2023-10-27T10:00:00"}, "is not ISO-8601"),
        ({"timestamp": "2023-10-27 10:00:00Z"}, "is not ISO-8601"),
        ({"timestamp": "27/10/2023 10:00Z"}, "is not ISO-8601"),
        ({"timestamp": "2023-10-27T10:00:00+0200"}, "is not ISO-8601"),
        ({"timestamp": "2023-02-30T10:00:00Z"}, "is not a valid date and time"),
        ({"timestamp": "2023-10-27T25:00:00Z"}, "is not a valid date and time"),
        ({"timestamp": "0999-12-31T23:59:59Z"}, "is outside the supported range"),
        ({"timestamp": "9999-12-31T23:00:00-05:00"}, "is outside the supported range"),
        ({"game_id": 4.5}, "game_id: must be a string or an integer, got 4.5"),
        ({"game_id": False}, "game_id: must be a string or an integer, got false"),
        ({"payload": [1, 2]}, "payload: must be a JSON object, got [1,2]"),
        ({"payload": "text"}, 'payload: must be a JSON object, got "text"'),
        ({"event_id": 7}, "event_id: must be a string, got 7"),
        ({"event_id": " "}, "event_id: must not be empty or blank"),
    ],
)
def test_broken_rule_is_rejected_with_reason(spark: SparkSession, fields: dict[str, Any], reason: str) -> None:
    row = _one(spark, event(**fields))
    assert row["is_event"] is False
    assert reason in row["reason"]
    assert row["user_id"] is None


def test_every_broken_rule_is_listed(spark: SparkSession) -> None:
    row = _one(spark, {"user_id": "", "event_type": 1, "payload": 3})
    assert row["reason"] == (
        "user_id: must not be empty or blank; event_type: must be a string, got 1; "
        "timestamp: required field is missing; payload: must be a JSON object, got 3"
    )


@pytest.mark.parametrize(
    ("timestamp", "instant"),
    [
        ("2023-10-27T10:00:00Z", datetime(2023, 10, 27, 10, 0)),
        ("2023-10-27T10:00Z", datetime(2023, 10, 27, 10, 0)),
        ("2023-10-27T10:00:00.5Z", datetime(2023, 10, 27, 10, 0, 0, 500000)),
        ("2023-10-27T10:00:00,25Z", datetime(2023, 10, 27, 10, 0, 0, 250000)),
        ("2023-10-27T10:00:00.123456789Z", datetime(2023, 10, 27, 10, 0, 0, 123456)),
        ("2023-10-27T05:30:00-04:30", datetime(2023, 10, 27, 10, 0)),
        ("2023-10-28T00:15:00+14:15", datetime(2023, 10, 27, 10, 0)),
        ("2019-01-01T00:00:00Z", datetime(2019, 1, 1)),
        ("1000-01-01T00:00:00Z", datetime(1000, 1, 1)),
    ],
)
def test_timestamp_forms_become_utc_instants(spark: SparkSession, timestamp: str, instant: datetime) -> None:
    row = _one(spark, event(timestamp=timestamp))
    assert (row["is_event"], row["event_at"]) == (True, instant)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("{not json", "not valid JSON"),
        ("", "not valid JSON"),
        (b"\xff\xfe{}", "not valid JSON: the value is not valid UTF-8"),
        ('[{"user_id": "1"}]', "not a JSON object"),
        ('"just a string"', "not a JSON object"),
        ("null", "not a JSON object"),
        (None, "empty message: the Kafka record has no value"),
    ],
)
def test_message_that_is_not_an_event_object_is_rejected(spark: SparkSession, value: Any, reason: str) -> None:
    row = _one(spark, value)
    assert (row["is_event"], row["reason"]) == (False, reason)


def test_optional_fields_may_be_null_or_absent_and_unknown_fields_are_ignored(spark: SparkSession) -> None:
    row = _one(spark, event(game_id=None, payload=..., event_id=None, extra={"anything": [1]}))
    assert (row["is_event"], row["reason"]) == (True, None)


def test_duplicate_json_keys_keep_the_last_value_like_the_producer(spark: SparkSession) -> None:
    raw = '{"user_id":"a","user_id":"b","event_type":"click","timestamp":"2023-10-27T10:00:00Z"}'
    row = _one(spark, raw)
    assert (row["is_event"], row["user_id"]) == (True, "b")


def test_rejected_record_keeps_location_and_raw_text(spark: SparkSession) -> None:
    raw = '{"user_id": 1.5}'
    rows = parse(spark, [event(), raw], first_offset=41).collect()
    rejected = rows[1]
    assert (rejected.topic, rejected.partition, rejected.offset) == ("game-events", 0, 42)
    assert (rejected.raw_text, rejected.raw_bytes, rejected.raw_truncated) == (raw, len(raw), False)


def test_raw_text_is_truncated_beyond_the_limit(spark: SparkSession) -> None:
    raw = '{"user_id": "' + "é" * 500 + '"'
    row = _one(spark, raw)
    assert row["raw_text"] == raw[:RAW_MAX_CHARS]
    assert (row["raw_bytes"], row["raw_truncated"]) == (len(raw.encode()), True)


def test_dead_letter_message_becomes_rejected_row_with_s3_origin(spark: SparkSession) -> None:
    dead_letter = {
        "reason": "user_id: required field is missing",
        "source": "s3",
        "s3_bucket": "game-events",
        "s3_key": "incoming/2026/a.ndjson.gz",
        "record_kind": "line",
        "record_number": 17,
        "raw": '{"event_type":"click"}',
        "raw_bytes": 22,
        "raw_truncated": False,
    }
    rows = parse(spark, [dead_letter, "garbage"], topic=DLQ_TOPIC)
    got = transforms.rejected_rows(rows).select(
        "reason", "kafka_topic", "kafka_offset", "s3_key", "s3_record_kind", "s3_record_number", "raw_text"
    )
    expected = spark.createDataFrame(
        [
            (
                "user_id: required field is missing",
                DLQ_TOPIC,
                0,
                "incoming/2026/a.ndjson.gz",
                "line",
                17,
                '{"event_type":"click"}',
            ),
            (
                "dead-letter message without a reason (not a JSON object with 'reason')",
                DLQ_TOPIC,
                1,
                None,
                None,
                None,
                "garbage",
            ),
        ],
        "reason string, kafka_topic string, kafka_offset long, s3_key string, s3_record_kind string, "
        "s3_record_number long, raw_text string",
    )
    assertDataFrameEqual(got, expected)


def test_dead_letter_message_is_never_an_event_even_if_it_looks_like_one(spark: SparkSession) -> None:
    row = parse(spark, [event()], topic=DLQ_TOPIC).first()
    assert row is not None
    assert row.is_event is False


def test_reason_of_a_hostile_message_is_cut_to_the_column_width(spark: SparkSession) -> None:
    row = parse(spark, [{"reason": "r" * 10_000}], topic=DLQ_TOPIC).select(F.char_length("reason")).first()
    assert row is not None
    assert row[0] == transforms.REASON_MAX_CHARS


def test_parsed_columns_are_documented(spark: SparkSession) -> None:
    assert tuple(parse(spark, [event()]).columns) == transforms.PARSED_COLUMNS


def test_old_timestamp_is_a_valid_event(spark: SparkSession) -> None:
    row = _one(spark, event(timestamp="2019-03-01T08:00:00Z"))
    assert (row["is_event"], row["event_at"]) == (True, datetime(2019, 3, 1, 8, 0, tzinfo=UTC).replace(tzinfo=None))
