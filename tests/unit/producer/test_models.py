"""Contract §1: every rule of the input event, and the messages written to Kafka."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from producer.models import GameEvent, RejectedRecord, Rejection, parse_event, parse_json_event

from .conftest import event


def reason_for(record: Any) -> str:
    with pytest.raises(Rejection) as caught:
        parse_event(record)
    return caught.value.reason


def test_contract_example_is_valid_and_normalized() -> None:
    parsed = parse_json_event(json.dumps(event()))
    assert parsed == GameEvent.model_construct(
        user_id="123",
        event_type="click",
        timestamp="2023-10-27T10:00:00.000000Z",
        game_id="456",
        payload={"button_id": "789"},
    )


# -- user_id -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("given", "expected"), [("  Ana ", "Ana"), ("ana", "ana"), (42, "42"), (-7, "-7")])
def test_user_id_is_a_trimmed_case_sensitive_string(given: Any, expected: str) -> None:
    assert parse_event(event(user_id=given)).user_id == expected


def test_user_id_of_128_characters_after_trimming_is_accepted() -> None:
    assert parse_event(event(user_id=" " + "u" * 128 + " ")).user_id == "u" * 128


@pytest.mark.parametrize(
    ("given", "reason"),
    [
        ("", "user_id: must not be empty or blank"),
        ("   ", "user_id: must not be empty or blank"),
        ("u" * 129, "user_id: is 129 characters long, at most 128 allowed"),
        (12.5, "user_id: must be a string or an integer, got 12.5"),
        (True, "user_id: must be a string or an integer, got true"),
        (None, "user_id: must be a string or an integer, got null"),
        (["a"], 'user_id: must be a string or an integer, got ["a"]'),
        (..., "user_id: required field is missing"),
    ],
)
def test_user_id_violations_are_rejected_with_a_reason(given: Any, reason: str) -> None:
    assert reason_for(event(user_id=given)) == reason


# -- event_type --------------------------------------------------------------------------------------------


def test_event_type_is_trimmed_and_lower_cased() -> None:
    assert parse_event(event(event_type="  Level_Up ")).event_type == "level_up"


def test_event_type_set_is_open() -> None:
    assert parse_event(event(event_type="guild_joined")).event_type == "guild_joined"


def test_event_type_of_64_characters_is_accepted() -> None:
    assert parse_event(event(event_type="E" * 64)).event_type == "e" * 64


@pytest.mark.parametrize(
    ("given", "reason"),
    [
        ("", "event_type: must not be empty or blank"),
        (" \t", "event_type: must not be empty or blank"),
        ("e" * 65, "event_type: is 65 characters long, at most 64 allowed"),
        (5, "event_type: must be a string, got 5"),
        (..., "event_type: required field is missing"),
    ],
)
def test_event_type_violations_are_rejected_with_a_reason(given: Any, reason: str) -> None:
    assert reason_for(event(event_type=given)) == reason


# -- timestamp ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("2023-10-27T10:00:00Z", datetime(2023, 10, 27, 10, 0, tzinfo=UTC)),
        ("2023-10-27T12:30:00+02:30", datetime(2023, 10, 27, 10, 0, tzinfo=UTC)),
        ("2023-10-27T05:00:00-05:00", datetime(2023, 10, 27, 10, 0, tzinfo=UTC)),
        ("2023-10-27T10:00:00.5Z", datetime(2023, 10, 27, 10, 0, 0, 500000, tzinfo=UTC)),
        ("2023-10-27T10:00:00.123456Z", datetime(2023, 10, 27, 10, 0, 0, 123456, tzinfo=UTC)),
        ("2023-10-27T10:00:00.123456789Z", datetime(2023, 10, 27, 10, 0, 0, 123456, tzinfo=UTC)),
        ("2023-10-27T10:00Z", datetime(2023, 10, 27, 10, 0, tzinfo=UTC)),
        ("2019-01-01T00:00:00+01:00", datetime(2018, 12, 31, 23, 0, tzinfo=UTC)),
    ],
)
def test_timestamp_becomes_an_instant_in_utc(given: str, expected: datetime) -> None:
    parsed = parse_event(event(timestamp=given)).instant
    assert parsed == expected
    assert parsed.utcoffset() is not None
    assert parsed.utcoffset().total_seconds() == 0  # type: ignore[union-attr]


def test_timestamp_is_written_in_utc_with_microseconds() -> None:
    parsed = parse_event(event(timestamp="2023-10-27T12:00:00.25+02:00"))
    assert parsed.timestamp == "2023-10-27T10:00:00.250000Z"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("2023-10-27T10:00:00.123456Z", "2023-10-27T10:00:00.123456Z"),  # already the normal form: kept as is
        ("1000-01-01T00:00:00.000000Z", "1000-01-01T00:00:00.000000Z"),
        ("9999-12-31T23:59:59.999999Z", "9999-12-31T23:59:59.999999Z"),
        ("2023-10-27T10:00:00Z", "2023-10-27T10:00:00.000000Z"),
        ("2023-10-27T10:00Z", "2023-10-27T10:00:00.000000Z"),
        ("2023-10-27T10:00:00.5Z", "2023-10-27T10:00:00.500000Z"),
        ("2023-10-27T10:00:00,123456Z", "2023-10-27T10:00:00.123456Z"),
        ("2023-10-27T10:00:00.1234567Z", "2023-10-27T10:00:00.123456Z"),
        ("2023-10-27T10:00:00.123456+00:00", "2023-10-27T10:00:00.123456Z"),
        ("2023-10-27T11:00:00.123456+01:00", "2023-10-27T10:00:00.123456Z"),
        ("2023-10-27T00:30:00.123456+01:00", "2023-10-26T23:30:00.123456Z"),
    ],
)
def test_every_form_of_a_timestamp_gives_the_one_text_of_its_utc_instant(given: str, expected: str) -> None:
    assert parse_event(event(timestamp=given)).timestamp == expected


@pytest.mark.parametrize(
    ("given", "reason"),
    [
        ("2023-02-30T10:00:00.000000Z", "is not a valid date and time"),
        ("2023-10-27T24:00:00.000000Z", "is not a valid date and time"),
        ("2023-W43-5T10:00:00.000000Z", "is not ISO-8601"),  # a week date, which fromisoformat alone would take
        ("2023-10-27T10:00:00.00000\uff10Z", "is not ISO-8601"),  # a full-width digit
    ],
)
def test_text_shaped_like_the_normal_form_is_still_checked(given: str, reason: str) -> None:
    assert reason_for(event(timestamp=given)).startswith(f'timestamp: "{given}" {reason}')


@pytest.mark.parametrize(
    "given",
    [
        "2023-10-27T10:00:00",  # no zone
        "2023-10-27 10:00:00Z",  # space instead of T
        "2023-10-27",  # date only
        "20231027T100000Z",  # basic format
        "2023-10-27T10:00:00+0100",  # offset without colon
        "27/10/2023 10:00",
        "",
    ],
)
def test_timestamp_without_the_iso_8601_form_or_zone_is_rejected(given: str) -> None:
    assert reason_for(event(timestamp=given)).startswith(f'timestamp: "{given}" is not ISO-8601')


@pytest.mark.parametrize("given", ["2023-02-30T10:00:00Z", "2023-10-27T25:00:00Z", "2023-10-27T10:00:00+25:00"])
def test_impossible_dates_are_rejected(given: str) -> None:
    assert reason_for(event(timestamp=given)).startswith(f'timestamp: "{given}" is not a valid date and time')


@pytest.mark.parametrize("given", ["0999-12-31T23:59:59.999999Z", "0001-01-01T00:00:00Z", "1000-01-01T00:30:00+01:00"])
def test_instants_before_the_year_1000_in_utc_are_outside_the_database_range(given: str) -> None:
    # Same rule and reason as the Spark job: MySQL/MariaDB DATETIME(6) starts at 1000-01-01.
    assert reason_for(event(timestamp=given)) == (
        f'timestamp: "{given}" is outside the supported range 1000-01-01 .. 9999-12-31 (UTC)'
    )


def test_event_type_longer_than_the_limit_once_lower_cased_is_rejected() -> None:
    # "İ" (U+0130) lower-cases to two characters: 40 of them are 80 characters after normalization
    assert reason_for(event(event_type="\u0130" * 40)) == "event_type: is longer than 64 characters once lower-cased"
    assert parse_event(event(event_type="\u0130" * 32)).event_type == "i\u0307" * 32


@pytest.mark.parametrize("given", [1698400800, 1698400800.5, None])
def test_timestamp_must_be_a_string(given: Any) -> None:
    assert reason_for(event(timestamp=given)).startswith("timestamp: must be an ISO-8601 string, got")


def test_timestamp_is_required() -> None:
    assert reason_for(event(timestamp=...)) == "timestamp: required field is missing"


# -- game_id, payload, event_id, extra fields --------------------------------------------------------------


@pytest.mark.parametrize(("given", "expected"), [("g1", "g1"), (456, "456"), (None, None), (..., None)])
def test_game_id_is_optional_and_a_string(given: Any, expected: str | None) -> None:
    assert parse_event(event(game_id=given)).game_id == expected


@pytest.mark.parametrize("given", [4.5, False, {"id": 1}])
def test_game_id_of_another_type_is_rejected(given: Any) -> None:
    assert reason_for(event(game_id=given)).startswith("game_id: must be a string or an integer, got")


def test_payload_of_any_shape_is_kept_as_is() -> None:
    payload = {"a": [1, {"b": None}], "c": {"d": 1.5, "e": "x"}}
    assert parse_event(event(payload=payload)).payload == payload


@pytest.mark.parametrize(("given", "expected"), [(None, None), (..., None), ({}, {})])
def test_payload_is_optional(given: Any, expected: Any) -> None:
    assert parse_event(event(payload=given)).payload == expected


@pytest.mark.parametrize("given", [[1, 2], "text", 3])
def test_payload_that_is_not_an_object_is_rejected(given: Any) -> None:
    assert reason_for(event(payload=given)).startswith("payload: must be a JSON object, got")


def test_event_id_is_optional_and_kept() -> None:
    assert parse_event(event(event_id="e-1")).event_id == "e-1"
    assert parse_event(event()).event_id is None


@pytest.mark.parametrize(
    ("given", "reason"), [(17, "event_id: must be a string, got 17"), (" ", "event_id: must not be empty or blank")]
)
def test_event_id_of_another_type_is_rejected(given: Any, reason: str) -> None:
    assert reason_for(event(event_id=given)) == reason


def test_other_fields_are_ignored() -> None:
    parsed = parse_event(event(client="web", session={"id": 1}))
    message = json.loads(parsed.to_message("s3://b/k#1"))
    assert "client" not in message
    assert "session" not in message


def test_every_broken_rule_is_in_the_reason() -> None:
    reason = reason_for({"user_id": "", "event_type": 3, "timestamp": "yesterday"})
    assert reason.split("; ")[0] == "user_id: must not be empty or blank"
    assert reason.split("; ")[1] == "event_type: must be a string, got 3"
    assert reason.split("; ")[2].startswith("timestamp:")


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ('{"user_id": "1",', "not valid JSON"),
        ("[1, 2]", "not a JSON object"),
        ('"just a string"', "not a JSON object"),
        ("\xff\xfe", "not valid JSON"),
    ],
)
def test_a_line_that_is_not_a_json_object_is_rejected(raw: str, reason: str) -> None:
    with pytest.raises(Rejection) as caught:
        parse_json_event(raw.encode("latin-1"))
    assert caught.value.reason.startswith(reason)


# -- messages ----------------------------------------------------------------------------------------------


def test_event_message_carries_the_normalized_event() -> None:
    parsed = parse_event(event(user_id=" 7 ", event_type="Click", timestamp="2023-10-27T12:00:00+02:00", game_id=9))
    assert json.loads(parsed.to_message("s3://game-events/incoming/a.ndjson#3")) == {
        "event_id": None,
        "user_id": "7",
        "event_type": "click",
        "timestamp": "2023-10-27T10:00:00.000000Z",
        "game_id": "9",
        "payload": {"button_id": "789"},
        "dedup_key": parsed.dedup_key(),
        "source": "s3://game-events/incoming/a.ndjson#3",
    }


def test_dedup_key_is_the_event_id_when_there_is_one() -> None:
    assert parse_event(event(event_id="abc")).dedup_key() == "id:abc"


def test_dedup_key_is_equal_for_copies_that_differ_only_in_form() -> None:
    one = parse_event(event(user_id=7, event_type="Click", timestamp="2023-10-27T12:00:00+02:00", extra=1))
    two = parse_event(
        event(user_id=" 7", event_type="click ", timestamp="2023-10-27T10:00:00.000Z", payload={"button_id": "789"})
    )
    assert one.dedup_key() == two.dedup_key()
    assert one.dedup_key().startswith("sha256:")


def test_dedup_key_differs_when_any_identity_field_differs() -> None:
    base = parse_event(event()).dedup_key()
    assert parse_event(event(user_id="124")).dedup_key() != base
    assert parse_event(event(event_type="login")).dedup_key() != base
    assert parse_event(event(timestamp="2023-10-27T10:00:00.000001Z")).dedup_key() != base
    assert parse_event(event(game_id="457")).dedup_key() != base
    assert parse_event(event(payload={"button_id": "790"})).dedup_key() != base


def test_dead_letter_message_truncates_raw_text_beyond_the_limit() -> None:
    record = RejectedRecord("bad", "game-events", "incoming/a.ndjson", "line", 3, "é" * 1000, etag='"abc"')
    message = json.loads(record.to_message(raw_max_bytes=256, rejected_at=datetime(2024, 1, 1, tzinfo=UTC)))
    assert message == {
        "reason": "bad",
        "source": "s3",
        "s3_bucket": "game-events",
        "s3_key": "incoming/a.ndjson",
        "s3_etag": '"abc"',
        "record_kind": "line",
        "record_number": 3,
        "raw": "é" * 128,
        "raw_bytes": 2000,
        "raw_truncated": True,
        "rejected_at": "2024-01-01T00:00:00.000000Z",
        "producer": "game-events-producer",
    }
