"""Pure helpers of the benchmarks (bench/): message generation, percentiles, trigger ticks, the summary."""

from __future__ import annotations

import json
import random
from datetime import datetime

import pytest

from bench import freshness, run_all
from bench import spark_job as sj
from bench.recompute_baseline import Ours


def test_generated_messages_are_contract_events_keyed_by_user() -> None:
    # Given / When
    messages = list(sj.chunk_messages(first=1000, count=2000, users=50, seed=7))

    # Then
    assert len(messages) == 2000
    for key, value in messages:
        event = json.loads(value)
        assert key.decode() == event["user_id"]
        assert event["event_type"] in {t.decode() for t in sj.TYPES}
        assert datetime.fromisoformat(event["timestamp"]).utcoffset() is not None
    assert len({json.loads(v)["payload"]["seq"] for _, v in messages}) == 2000


def test_generated_timestamps_increase_with_the_sequence() -> None:
    # Given / When
    stamps = [json.loads(v)["timestamp"] for _, v in sj.chunk_messages(first=0, count=5000, users=10, seed=1)]

    # Then: 997 us apart plus a jitter below 1 ms, in one fixed format
    parsed = [datetime.fromisoformat(s) for s in stamps]
    assert parsed == sorted(parsed)
    assert all(len(s) == 27 and s.endswith("Z") for s in stamps)


def test_a_chunk_is_the_same_bytes_for_the_same_start_and_seed() -> None:
    assert list(sj.chunk_messages(500, 100, 1000, 3)) == list(sj.chunk_messages(500, 100, 1000, 3))
    assert list(sj.chunk_messages(500, 100, 1000, 3)) != list(sj.chunk_messages(500, 100, 1000, 4))


@pytest.mark.parametrize(
    ("now", "expected"),
    [(1_000_000.0, 20.0), (1_000_005.5, 14.5), (1_000_019.9, 0.1)],
)
def test_seconds_to_the_next_epoch_aligned_trigger_tick(now: float, expected: float) -> None:
    assert sj.seconds_to_next_tick(20, now) == pytest.approx(expected)


def test_progress_lines_keep_only_batches_that_read_rows() -> None:
    # Given
    log = "\n".join(
        [
            json.dumps({"message": "batch progress", "batch_id": 0, "input_rows": 10, "trigger_ms": 1500}),
            json.dumps({"message": "batch progress", "batch_id": 1, "input_rows": 0, "trigger_ms": 3}),
            "26/12/04 WARN something",
        ]
    )

    # When / Then
    assert [e["batch_id"] for e in sj.progress_lines(log)] == [0]


def test_percentile_interpolates_between_ranks() -> None:
    values = [10.0, 1.0, 4.0, 7.0, 2.0]
    assert freshness.percentile(values, 50) == 4.0
    assert freshness.percentile(values, 95) == pytest.approx(7.0 + 0.8 * 3.0)
    assert freshness.percentile([3.0], 95) == 3.0


def test_stats_of_no_latencies_are_empty() -> None:
    assert freshness.stats([]) == {"probes_seen": 0, "p50_seconds": None, "p95_seconds": None}


def test_upload_moments_are_sorted_and_inside_the_window() -> None:
    moments = freshness.upload_times(12, 240.0, random.Random(1))  # noqa: S311 - not a secret
    assert moments == sorted(moments)
    assert len(moments) == 12
    assert all(0 <= m < 240.0 for m in moments)


def test_probe_line_is_one_contract_event_with_the_probe_user() -> None:
    line = freshness.probe_line("fresh-x-a-3", 3, datetime.fromisoformat("2026-12-04T10:00:00+02:00"))
    assert line.endswith(b"\n")
    assert json.loads(line) == {
        "user_id": "fresh-x-a-3",
        "event_type": "freshness_probe",
        "timestamp": "2026-12-04T08:00:00.000000Z",
        "payload": {"probe": 3},
    }


def test_ours_for_a_history_is_the_batch_that_reached_it() -> None:
    # Given: a flat run of 1M batches
    rows = [{"batch_id": i, "seconds": 30.0 + i} for i in range(11)]
    ours = Ours(rows, 1_000_000)

    # When / Then
    assert ours.at(1_000_000)["ours_batch_id"] == 0
    assert ours.at(10_000_000)["ours_seconds"] == 39.0
    beyond = ours.at(50_000_000)
    assert beyond["ours_batch_id"] == 10
    assert beyond["ours_note"] is not None


def test_summary_table_has_a_row_per_figure() -> None:
    # Given
    results = {
        "spark": {
            "sizes": {
                "warmup": {"seconds": 9.0},
                "batches": [{"events": 100_000, "seconds": 4.0}, {"events": 1_000_000, "seconds": 30.0}],
                "setup": {"events": 1_200_000, "seconds": 6.0},
            },
            "flat": {
                "batch_events": 1_000_000,
                "seconds_after_earlier_batches": {"1": 30.0, "10": 31.0, "50": 33.0},
                "ratio": 1.1,
                "ratio_definition": "batch 50 / batch 1",
                "target_ratio_max": 1.2,
                "met": True,
                "median_warm_batch_seconds": 31.0,
                "setup": {"events": 51_000_000, "seconds": 200.0},
            },
        },
        "recompute_baseline": {
            "rows": [
                {
                    "history_events": 10_000_000,
                    "baseline_seconds": 400.0,
                    "ours_seconds": 31.0,
                    "ratio": 12.9,
                    "correct": True,
                }
            ],
            "definition": {"new_batch": "the last 1,000,000 events of that history"},
            "target": {"history_events": 10_000_000, "ratio_min": 10.0},
            "met": True,
        },
        "freshness": None,
        "producer": None,
    }

    # When
    table = run_all.markdown(run_all.summarize(results))

    # Then
    assert "| Spark (ours) | batch time for 100k / 1M events (100k users) | 4.0 s / 30.0 s |" in table
    assert "30.0 s / 31.0 s / 33.0 s; last/first = 1.1 | ≤ 1.2 | yes |" in table
    assert "| 12.9x | ≥ 10x at 10M | yes |" in table
    assert "52,200,000 benchmark events" in table
    assert "Freshness" not in table
