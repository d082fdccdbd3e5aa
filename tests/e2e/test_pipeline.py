"""The whole pipeline on uploads: contract edge cases, a file uploaded twice, bad records and unreadable files.

Every file goes through the deployed function, fired by its EventBridge schedule (no test invokes it), then Kafka
and the Spark job; the tables are compared with the truth computed from the uploaded files (tests/e2e/pipeline.py).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tests.conftest import ROOT

from .inputs import event, gz, json_array, ndjson, sessions
from .pipeline import Pipeline

E = event
NOON = "2023-10-27T12:00:00Z"


def beyond_64_bits(value: object) -> bool:
    return isinstance(value, int) and not -(2**63) <= value < 2**63


def edge_case_lines() -> list[Any]:
    return [
        # Old timestamps count, whatever their age (contract §3), before and after the Unix epoch
        E("old-timer", "login", "2019-03-01T08:00:00Z"),
        E("old-timer", "login", "1999-12-31T23:59:59.999999Z"),
        E("old-timer", "logout", "1970-01-01T00:00:00Z"),
        E("old-timer", "logout", "1969-07-20T20:17:40Z"),
        E("old-timer", "click", "2026-11-30T10:00:00Z"),
        # Case-different, non-ASCII and Unicode-normalization-different user ids are distinct users
        E("Ana", "click", "2023-10-27T10:00:00Z"),
        E("ana", "click", "2023-10-27T10:00:01Z"),
        E("ANA", "click", "2023-10-27T10:00:02Z"),
        E("\u00a0Ana\t", "click", "2023-10-27T10:00:03Z"),  # trimmed: the user "Ana"
        E("Zo\u00eb", "click", "2023-10-27T10:00:00Z"),  # NFC
        E("Zoe\u0308", "click", "2023-10-27T10:00:00Z"),  # NFD: another user
        E("日本語ユーザー", "level_up", "2023-10-27T10:00:00+09:00"),
        E("🎮" * 128, "click", "2023-10-27T10:00:00Z"),  # 128 characters (512 bytes)
        E("straße", "Ünlock", "2023-10-27T10:00:00Z"),
        E("STRASSE", "ÜNLOCK", "2023-10-27T10:00:05Z"),
        # Integer user ids: 42, "42" and " 42" are one user; one identity when the rest is equal
        E(42, "click", NOON, game_id=7),
        E("42", "click", NOON, game_id="7"),
        E(" 42", "click", "2023-10-27T12:00:01Z"),
        E(-7, "click", NOON),
        E(12345678901234567890, "click", NOON),
        E(10**30, "click", NOON),
        # event_id: copies with the same id count once, even written differently (zone, payload);
        # the id is kept as is (" e2e-id-2 " is another event than "e2e-id-2")
        E("id-user", "purchase", "2023-10-27T11:00:00Z", event_id="e2e-id-1", payload={"v": 1}),
        E("id-user", "purchase", "2023-10-27T13:00:00+02:00", event_id="e2e-id-1", payload={"v": 2}),
        E("id-user", "purchase", "2023-10-27T11:30:00Z", event_id="e2e-id-2"),
        E("id-user", "purchase", "2023-10-27T11:45:00Z", event_id=" e2e-id-2 "),
        E("id-user", "purchase", "2023-10-27T11:00:00Z"),  # no id: not the same event as e2e-id-1
        # One instant written in many zones and forms: one event (no event_id: identity is the tuple)
        E("zones", "click", NOON, game_id="g1"),
        E("zones", "click", "2023-10-27T14:00:00+02:00", game_id="g1"),
        E("zones", "click", "2023-10-27T06:30:00-05:30", game_id="g1"),
        E("zones", "click", "2023-10-28T02:00:00+14:00", game_id="g1"),
        E("zones", "click", "2023-10-27T12:00:00.000000+00:00", game_id="g1"),
        E("zones", "click", "2023-10-27T12:00:00-00:00", game_id="g1"),
        E("zones", "click", "2023-10-27T12:00Z", game_id="g1"),
        E("zones", "click", "2023-10-27T12:00:00,0Z", game_id="g1"),
        E("zones", "click", "2023-10-27T12:00:00.123456789Z", game_id="g1"),  # truncated to the µs ...
        E("zones", "click", "2023-10-27T12:00:00.123456Z", game_id="g1"),  # ... so the same as this one
        # Payload variants: key order, spacing, escapes, null vs absent are one payload; another value is not
        E("payloads", "match_end", NOON, payload={"a": 1, "b": {"c": [1, 2], "d": "é"}}),
        '{"payload": {"b": {"d": "\\u00e9", "c": [1, 2]}, "a": 1}, "timestamp": "2023-10-27T12:00:00Z",'
        '  "event_type": "match_end",   "user_id": "payloads"}',
        E("payloads", "match_end", NOON, payload={"a": 2, "b": {"c": [1, 2], "d": "é"}}),
        E("payloads", "match_start", NOON, payload=None),
        E("payloads", "match_start", NOON),
        E("payloads", "match_start", NOON, payload={"deep": {"x": [{"y": {"z": [None, True, "ü"]}}]}}),
        # Event types: trimmed, lower-cased, any name
        E("types", " LOGIN ", "2023-10-27T09:00:00Z"),
        E("types", "Login", "2023-10-27T09:00:01Z"),
        E("types", "a-brand-new-type/with.odd_chars", "2023-10-27T09:00:02Z"),
        E("types", "t" * 64, "2023-10-27T09:00:03Z"),
        # A user with one event: NULL average; a user whose events share one instant: average 0
        E("solo", "login", "2023-10-27T08:00:00Z"),
        E("same-instant", "login", NOON),
        E("same-instant", "click", NOON),
        E("same-instant", "logout", "2023-10-27T14:00:00+02:00"),
        # Unknown fields are ignored
        E("extra", "click", NOON, unexpected={"x": 1}, version=3),
        # Instants are stored in UTC: 01:30 and 03:00 on the 28th, 1.5 hours apart
        E("utc-check", "login", "2023-10-27T23:30:00-02:00"),
        E("utc-check", "logout", "2023-10-28T03:00:00Z"),
        "",  # blank lines are skipped
        "   ",
    ]


def test_contract_edge_cases_are_counted_exactly_through_the_scheduled_pipeline(pipeline: Pipeline) -> None:
    # Given the contract's edge cases in every file format, the same events repeated across formats
    records = edge_case_lines()
    pipeline.upload("edge/cases.ndjson", ndjson(records))
    pipeline.upload("edge/cases-crlf.jsonl.gz", gz(ndjson(records[20:40], newline="\r\n")))
    # (the array holds integer user ids beyond 64 bits too, which the fast JSON parser cannot hold)
    in_array = [r for r in records if isinstance(r, dict)]
    assert any(beyond_64_bits(r["user_id"]) for r in in_array)
    pipeline.upload("edge/cases-array.json", json_array(in_array[::-1]))
    pipeline.upload("edge/one-object.json", json_array(E("solo-object", "login", "2019-01-01T00:00:00Z")))

    # When the schedule fires the function and Spark runs its batches
    # Then the tables equal the truth: every distinct event once, NULL and 0 averages, nothing rejected
    pipeline.assert_matches_truth()
    assert pipeline.truth.rejected == []
    assert pipeline.keys("processed/edge/") == {k.replace("incoming/", "processed/") for k in pipeline.uploads}
    # (what that truth says, for the reader: user -> (events, first, last, average gap))
    users = {row[0]: row[1:] for row in pipeline.truth.tables()["user_metrics"]}
    counts = {
        user: users[user][0] for user in ("Ana", "ana", "ANA", "Zo\u00eb", "Zoe\u0308", "42", "zones", "payloads")
    }
    assert counts == {"Ana": 2, "ana": 1, "ANA": 1, "Zo\u00eb": 1, "Zoe\u0308": 1, "42": 2, "zones": 2, "payloads": 4}
    assert users["solo"][::3] == (1, None)
    assert users["same-instant"][::3] == (3, 0.0)
    assert users["old-timer"][1] == datetime(1969, 7, 20, 20, 17, 40)
    assert users["utc-check"] == (2, datetime(2023, 10, 28, 1, 30), datetime(2023, 10, 28, 3, 0), 5400.0)


def test_the_same_file_uploaded_twice_counts_once(pipeline: Pipeline) -> None:
    # Given a file that was published and counted
    body = sessions("twice", 400, users=30, seed=1)
    pipeline.upload("twice/day-1.ndjson", body)
    pipeline.assert_matches_truth()
    counted = pipeline.truth.tables()

    # When the same bytes are uploaded again, under the same key and under another name (gzip)
    pipeline.upload("twice/day-1.ndjson", body)
    pipeline.upload("twice/day-1-again.ndjson.gz", gz(body))

    # Then both are taken, and nothing is counted twice
    pipeline.assert_matches_truth()
    assert pipeline.truth.tables() == counted
    assert pipeline.keys("processed/twice/") == {
        "processed/twice/day-1.ndjson",
        "processed/twice/day-1-again.ndjson.gz",
    }


def bad_lines() -> list[Any]:
    ok = "2023-10-27T10:00:00Z"
    return [
        E("bad-1", "click", ok),  # valid: the rest of the file still counts
        E("", "click", ok),
        E("   ", "click", ok),
        E("x" * 129, "click", ok),
        E(12.5, "click", ok),
        E(True, "click", ok),
        E(None, "click", ok),
        {"event_type": "click", "timestamp": ok},
        E("bad-2", "", ok),
        E("bad-2", "t" * 65, ok),
        E("bad-2", 5, ok),
        E("bad-2", "click", "2023-10-27 10:00:00Z"),
        E("bad-2", "click", "2023-10-27T10:00:00"),
        E("bad-2", "click", "2023-10-27T10:00:00+0100"),
        E("bad-2", "click", "20231027T100000Z"),
        E("bad-2", "click", "2023-02-30T10:00:00Z"),
        E("bad-2", "click", 1698400800),
        E("bad-2", "click", ...),
        E("bad-2", "click", ok, game_id=False),
        E("bad-2", "click", ok, game_id=1.5),
        E("bad-2", "click", ok, payload=[1, 2]),
        E("bad-2", "click", ok, payload="text"),
        E("bad-2", "click", ok, event_id=17),
        E("bad-2", "click", ok, event_id="  "),
        E("", "", "never"),  # every rule broken at once
        '{"user_id": "bad-2", "event_type": "click", "timestamp": ',
        "not json at all",
        "[1, 2, 3]",
        '"a string"',
        "42",
        E("bad-1", "click", "2023-10-27T10:00:01Z"),  # valid again
    ]


def test_bad_records_and_unreadable_files_are_rejected_with_key_and_line(pipeline: Pipeline) -> None:
    # Given a file of bad records among good ones (NDJSON and JSON), unreadable files, and the sample data set
    pipeline.upload("bad/records.ndjson", ndjson(bad_lines()))
    pipeline.upload("bad/records.json", json_array([r for r in bad_lines() if not isinstance(r, str)]))
    pipeline.upload("bad/not-gzip.ndjson.gz", ndjson([E("bad-3", "click", "2023-10-27T10:00:00Z")]))
    pipeline.upload("bad/truncated-head.json", b'{"user_id": "bad-3", "event_type": "cl')
    pipeline.upload("bad/export.csv", b"user_id,event_type,timestamp\nbad-3,click,2023-10-27T10:00:00Z\n")
    pipeline.upload("bad/empty.json", b"")
    for path in sorted((ROOT / "events" / "data").iterdir()):
        pipeline.upload(f"samples/{path.name}", path.read_bytes())

    # Then rejected_events holds exactly the bad records (S3 key and line or element, reason, raw text), the
    # unreadable files moved to rejected/ with a report, and the good records are counted
    pipeline.assert_matches_truth()
    unreadable = {r.s3_key for r in pipeline.truth.rejected if r.kind == "file"}
    assert unreadable == {
        "incoming/bad/not-gzip.ndjson.gz",
        "incoming/bad/truncated-head.json",
        "incoming/bad/export.csv",
        "incoming/bad/empty.json",
        "incoming/samples/broken-upload.ndjson.gz",
    }
    reports = {k.replace("incoming/", "rejected/") + ".report.json" for k in unreadable}
    assert reports <= pipeline.keys("rejected/")
    lines = [r.number for r in pipeline.truth.rejected if r.s3_key == "incoming/bad/records.ndjson"]
    elements = [r.number for r in pipeline.truth.rejected if r.s3_key == "incoming/bad/records.json"]
    objects = [r for r in bad_lines() if not isinstance(r, str)]
    assert lines == list(range(2, len(bad_lines())))  # all but the first and the last line are bad
    assert elements == list(range(1, len(objects) - 1))  # all but the first and the last element
