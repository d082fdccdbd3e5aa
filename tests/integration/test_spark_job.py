"""The Spark job against real Kafka and MariaDB (native stack): exact tables, crashes, replays, outages.

Each test runs the job as a subprocess (python -m spark.job, trigger 2 seconds) on private topics, database and
checkpoint (tests/integration/spark_harness.py), and compares the metric tables with a ground truth computed
in plain Python from the same generated input.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from . import spark_harness as h
from .conftest import require

TIMEOUT = 180.0


@pytest.fixture
def job(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[h.JobRun]:
    """A job run on private topics, database and checkpoint; indirect parameters: extra environment of the job."""
    require("kafka", "mariadb")
    run = h.JobRun(workdir=tmp_path, extra_env=getattr(request, "param", {}))
    run.setup()
    try:
        yield run
    finally:
        run.teardown()


def generate(seed: int, users: int, events: int, *, start: datetime) -> h.Generated:
    """Valid events with every kind of copy and awkward value the contract allows, plus invalid messages."""
    rng = random.Random(seed)  # noqa: S311 - reproducible test data
    names: list[str | int] = ["Ana", "ana", "ANA", "Zoë", "日本語ユーザー", "🎮", 42, "42 "]
    names += [f"user-{seed}-{i}" for i in range(users)]
    kinds = ["click", "view", "Purchase", "level_start", " LOGIN "]
    messages: list[tuple[bytes | None, bytes | None]] = []
    distinct: list[tuple[str, str, datetime]] = []
    for i in range(events):
        user = rng.choice(names)
        kind = rng.choice(kinds)
        # out of order, sometimes years old, sometimes the same instant as another event
        at = start + timedelta(seconds=rng.randrange(-3600, 3600), milliseconds=rng.randrange(1000))
        if i % 17 == 0:
            at = datetime(2019, 1, 1, tzinfo=UTC) + timedelta(days=rng.randrange(300))
        if i % 23 == 0:
            at = start
        extra: dict[str, Any] = {"game_id": rng.choice([None, "g1", 7]), "payload": {"n": i, "tags": ["a", "b"]}}
        if i % 3 == 0:
            extra["event_id"] = f"ev-{seed}-{i}"
        key, value = h.message(user, kind, at, **extra)
        messages.append((key, value))
        distinct.append((str(user).strip(), kind.strip().lower(), at))
        if i % 5 == 0:  # an exact copy (producer retry, replayed file)
            messages.append((key, value))
        if i % 7 == 0:  # the same event written differently: key order, spacing, zone, integer game id
            body = json.loads(value)
            body["timestamp"] = at.astimezone(timezone_plus_two()).isoformat()
            reordered = dict(reversed(list(body.items())))
            messages.append((key, json.dumps(reordered, indent=1, ensure_ascii=False).encode()))
    bad = [
        b"{not json",
        b"[]",
        b'{"user_id": 1.5, "event_type": "x", "timestamp": "2023-01-01T00:00:00Z"}',
        b'{"user_id": "u", "event_type": "x", "timestamp": "2023-01-01 00:00"}',
        None,
        b"\xff\xfe",
    ]
    messages.extend((b"bad", v) for v in bad)
    rng.shuffle(messages)
    return h.Generated(messages=messages, events=distinct, invalid=len(bad))


def timezone_plus_two() -> timezone:
    return timezone(timedelta(hours=2))


def dead_letters(count: int) -> list[tuple[bytes | None, bytes | None]]:
    return [
        (
            None,
            json.dumps(
                {
                    "reason": "not valid JSON",
                    "source": "s3",
                    "s3_bucket": "game-events",
                    "s3_key": f"incoming/broken-{i}.ndjson",
                    "record_kind": "line",
                    "record_number": i + 1,
                    "raw": "{oops",
                    "raw_bytes": 5,
                    "raw_truncated": False,
                }
            ).encode(),
        )
        for i in range(count)
    ]


def assert_tables(job: h.JobRun, expected: dict[str, Any], rejected: int) -> None:
    got = job.wait_for(expected, TIMEOUT)
    assert not h.table_differences(expected, got), job.logs()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and h.scalar(job.database, "SELECT COUNT(*) FROM rejected_events") < rejected:
        time.sleep(1)
    assert h.scalar(job.database, "SELECT COUNT(*) FROM rejected_events") == rejected
    # The batch's staging rows are deleted right after its commit (a moment after the tables match).
    staged = "SELECT (SELECT COUNT(*) FROM stg_event_type_metrics) + (SELECT COUNT(*) FROM stg_user_metrics)"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and h.scalar(job.database, staged):
        time.sleep(0.5)
    assert h.scalar(job.database, staged) == 0


def test_tables_equal_the_ground_truth(job: h.JobRun) -> None:
    # Given events with copies, awkward values and invalid records, published in two waves, plus dead letters
    start = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
    first, second = generate(1, 40, 400, start=start), generate(2, 40, 400, start=start + timedelta(hours=1))
    h.produce(job.events_topic, first.messages)
    h.produce(job.dlq_topic, dead_letters(3))

    # When the job runs and the second wave arrives while it runs
    job.start()
    expected_first = h.ground_truth(first.events)
    assert not h.table_differences(expected_first, job.wait_for(expected_first, TIMEOUT)), job.logs()
    h.produce(job.events_topic, second.messages)

    # Then every table equals the ground truth of all distinct events, and every invalid record is rejected
    assert_tables(job, h.ground_truth(first.events + second.events), first.invalid + second.invalid + 3)
    rows = h.read_tables(job.database)["rejected_events"]
    assert {r[0] for r in rows} == {job.events_topic, job.dlq_topic}


def test_sigkill_at_any_moment_then_restart_gives_the_same_tables(job: h.JobRun) -> None:
    start = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
    waves = [generate(10 + i, 30, 300, start=start + timedelta(minutes=10 * i)) for i in range(5)]
    rng = random.Random(7)  # noqa: S311 - reproducible test data

    def mid_batch() -> None:  # the query runs its first batch: loading staging or merging
        job.wait_log('"query started"')
        time.sleep(rng.uniform(0.5, 8))

    def right_after_commit() -> None:  # the database has the batch, Spark's checkpoint may not yet
        job.wait_commit_count(job.committed_batches())

    def during_start() -> None:  # the JVM is still starting
        time.sleep(rng.uniform(1, 4))

    # kill -9 the driver and its JVM (its process group) at different moments, with new events each time
    for wave, moment in zip(
        waves, [mid_batch, right_after_commit, during_start, mid_batch, right_after_commit], strict=True
    ):
        job.start()
        h.produce(job.events_topic, wave.messages)
        moment()
        job.kill()

    job.start()
    all_events = [e for w in waves for e in w.events]
    assert_tables(job, h.ground_truth(all_events), sum(w.invalid for w in waves))


def test_replay_of_a_committed_batch_changes_nothing(job: h.JobRun) -> None:
    # Given a committed batch
    data = generate(20, 30, 300, start=datetime(2026, 12, 4, 12, 0, tzinfo=UTC))
    h.produce(job.events_topic, data.messages)
    job.start()
    expected = h.ground_truth(data.events)
    assert not h.table_differences(expected, job.wait_for(expected, TIMEOUT)), job.logs()
    job.kill()

    # When Spark's commit of the last batch with data is lost (a crash after the database commit), so that the
    # restarted query runs that batch again
    last = int(h.scalar(job.database, "SELECT MAX(batch_id) FROM spark_batch_ledger WHERE event_rows > 0"))
    for log_dir, first_deleted in ((job.checkpoint / "commits", last), (job.checkpoint / "offsets", last + 1)):
        for path in log_dir.iterdir():
            number = path.name.lstrip(".").removesuffix(".crc")
            if number.isdigit() and int(number) >= first_deleted:
                path.unlink()
    job.start()

    # Then the replayed batch is skipped by the ledger and the tables are unchanged
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline and "batch already committed, skipped" not in job.logs_full():
        time.sleep(1)
    assert "batch already committed, skipped" in job.logs_full(), job.logs()
    assert not h.table_differences(expected, h.read_tables(job.database))
    assert h.scalar(job.database, "SELECT COUNT(*) FROM rejected_events") == data.invalid
    # and the query goes on (the skipped batch's state store committed too): new events are counted
    more = generate(21, 30, 100, start=datetime(2026, 12, 4, 13, 0, tzinfo=UTC))
    h.produce(job.events_topic, more.messages)
    assert_tables(job, h.ground_truth(data.events + more.events), data.invalid + more.invalid)
    assert "STATE_STORE_COMMIT_VALIDATION_FAILED" not in job.logs_full()
    assert "query failed" not in job.logs_full()


def test_mariadb_outage_loses_and_double_counts_nothing(job: h.JobRun) -> None:
    stack = [sys.executable, str(h.ROOT / "infra" / "stack.py")]
    start = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
    before, during = generate(30, 30, 300, start=start), generate(31, 30, 300, start=start)
    h.produce(job.events_topic, before.messages)
    job.start()
    expected_before = h.ground_truth(before.events)
    assert not h.table_differences(expected_before, job.wait_for(expected_before, TIMEOUT)), job.logs()

    # When MariaDB goes away while new events arrive, and comes back 20 seconds later
    subprocess.run([*stack, "stop", "mariadb"], check=True, cwd=h.ROOT)
    try:
        h.produce(job.events_topic, during.messages)
        time.sleep(20)
    finally:
        subprocess.run([*stack, "start", "mariadb"], check=True, cwd=h.ROOT)

    # Then the job recovers by itself and the tables equal the ground truth
    assert_tables(job, h.ground_truth(before.events + during.events), before.invalid + during.invalid)
    assert "restarting from the checkpoint" in job.logs_full()


WINDOW_SECONDS = 20


# STATE_ROW_COUNT: the progress log counts the keys of the state stores (the test watches the eviction)
@pytest.mark.parametrize(
    "job", [{"DEDUP_WINDOW": f"{WINDOW_SECONDS} seconds", "STATE_ROW_COUNT": "true"}], indirect=True
)
def test_copies_within_the_window_count_once_and_the_state_forgets_a_key_after_it(job: h.JobRun) -> None:
    old = datetime(2019, 5, 1, 8, 0, tzinfo=UTC)  # the event's own time plays no part in deduplication
    event = h.message("ana", "windowed", old, event_id="ev-window-1")

    def filler(n: int) -> tuple[bytes, bytes]:
        return h.message("bob", "filler", old + timedelta(seconds=n), event_id=f"ev-filler-{n}")

    def assert_counts(windowed: int, fillers: int) -> None:
        rows = [("windowed", windowed, 1)] + ([("filler", fillers, 1)] if fillers else [])
        expected = {"event_type_metrics": sorted(rows)}
        assert not h.table_differences(expected, job.wait_for(expected, TIMEOUT)), job.logs()

    def dedup_state_rows() -> int | None:  # keys in the event deduplication's state after the last batch
        progress = [
            json.loads(line)
            for line in job.current_log().splitlines()
            if line.startswith("{") and '"batch progress"' in line
        ]
        return progress[-1]["state_rows"][0] if progress else None

    # Given an event counted once
    job.start()
    h.produce(job.events_topic, [event])
    assert_counts(windowed=1, fillers=0)
    first_arrival = time.monotonic()

    # When a copy arrives within the window: it is not counted
    h.produce(job.events_topic, [event, filler(1)])
    assert_counts(windowed=1, fillers=1)
    assert time.monotonic() - first_arrival < WINDOW_SECONDS

    # When later arrivals move the watermark past the first copy's arrival + window, and a copy comes after that
    time.sleep(max(0.0, first_arrival + 2 * WINDOW_SECONDS + 5 - time.monotonic()))
    h.produce(job.events_topic, [filler(2)])
    assert_counts(windowed=1, fillers=2)
    # the batch after the watermark moved (one without data if none comes) evicts the keys of the event and of the
    # first filler: the deduplication state keeps the second filler only
    deadline = time.monotonic() + TIMEOUT
    while dedup_state_rows() != 1 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert dedup_state_rows() == 1, job.logs()
    h.produce(job.events_topic, [event])

    # Then that copy is counted again: the key left the state when its window ended
    assert_counts(windowed=2, fillers=2)
