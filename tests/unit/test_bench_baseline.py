"""The recompute-from-history baseline computes the same metrics as the contract's definition (ground truth)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pyspark.sql import SparkSession

from bench.recompute_baseline import metrics_from_parsed
from tests.integration.spark_harness import ground_truth


def test_window_recompute_equals_the_ground_truth_with_copies_and_invalid_rows(spark: SparkSession) -> None:
    # Given: events out of time order, a copy of one event, a user with one event, two at the same instant,
    # and a rejected record
    t0 = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)
    events = [
        ("u1", "click", t0 + timedelta(seconds=30)),
        ("u1", "login", t0),
        ("u1", "click", t0 + timedelta(seconds=90, microseconds=5)),
        ("u2", "click", t0),
        ("u3", "login", t0 + timedelta(seconds=10)),
        ("u3", "click", t0 + timedelta(seconds=10)),
    ]
    rows: list[tuple[Any, ...]] = [(u, k, at, f"{u}|{k}|{at.isoformat()}", True) for u, k, at in events]
    rows.append(rows[0])  # a copy of an event
    rows.append((None, None, None, "record:x", False))  # a rejected record
    parsed = spark.createDataFrame(
        rows, "user_id string, event_type string, event_at timestamp, dedup_key string, is_event boolean"
    )

    # When
    _, users, types = metrics_from_parsed(parsed)

    # Then
    expected = ground_truth(events)
    got_users = sorted(
        (
            r.user_id,
            r.event_count,
            r.first_event_at,
            r.last_event_at,
            None if r.avg_seconds_between_events is None else round(r.avg_seconds_between_events, 6),
        )
        for r in users.collect()
    )
    assert got_users == [
        (u, n, first.replace(tzinfo=None), last.replace(tzinfo=None), avg)
        for u, n, first, last, avg in expected["user_metrics"]
    ]
    assert (
        sorted((r.event_type, r.total_events, r.unique_users) for r in types.collect())
        == expected["event_type_metrics"]
    )
