"""Faults on the running pipeline: the Spark job killed mid-batch, the Kafka broker restarted, MariaDB down for two
minutes with the producer failing on a file while the broker does not answer (frozen, then crashed) inside that
window. After each, the
tables equal the truth of every upload of the session and rejected_events holds exactly the bad records (each
once): nothing lost, nothing counted twice.

Services are stopped with `infra/stack.py stop SERVICE` and always started again (pipeline.service_stopped).
"""

from __future__ import annotations

import time

import pytest

from .inputs import event, ndjson, sessions
from .pipeline import PICKUP_TIMEOUT, Pipeline, service_frozen_then_killed, service_stopped, wait_for

MARIADB_OUTAGE_SECONDS = 120


def bad_records(tag: str) -> bytes:
    """Three records the producer rejects (they go through the dead-letter topic)."""
    return ndjson([event(f"{tag}-bad", "", "2023-10-27T10:00:00Z"), "{oops", event(12.5, "click", "never")])


def test_spark_killed_mid_batch_then_restarted_counts_everything_once(pipeline: Pipeline) -> None:
    job = pipeline.job
    for attempt in range(3):
        # Given a new file on its way through the pipeline
        before = pipeline.end_offsets()
        pipeline.upload(f"kill/wave-{attempt}.ndjson", sessions(f"kill{attempt}", 3000, seed=10 + attempt))

        def batch_reading_the_file(before: dict[tuple[str, int], int] = before) -> tuple[int] | None:
            batch = job.batch_in_progress()
            if batch is None:
                return None
            planned = job.planned_offsets(batch)
            return (batch,) if any(planned.get(tp, 0) > offset for tp, offset in before.items()) else None

        # When the job's driver and JVM are SIGKILLed while a batch that reads it runs
        (batch,) = wait_for(batch_reading_the_file, PICKUP_TIMEOUT, "a Spark batch reading the new file")
        job.kill()
        if not (job.checkpoint / "commits" / str(batch)).exists():
            break  # the kill landed mid-batch (else the batch was quicker than the kill: try again)
    else:
        pytest.fail("three batches finished before the kill reached them")

    # Then the restarted job re-runs the batch and every table equals the truth
    job.start()
    pipeline.assert_matches_truth()


def test_kafka_broker_restart_while_a_file_is_published(pipeline: Pipeline) -> None:
    # Given a large file the function is publishing
    before = pipeline.events_in_kafka()
    pipeline.upload("kafka-restart/big.ndjson", bad_records("krestart") + sessions("krestart", 50_000, users=500))
    wait_for(lambda: pipeline.events_in_kafka() > before, PICKUP_TIMEOUT, "the function to start publishing")

    # When the broker is stopped and started again
    with service_stopped("kafka"):
        pass

    # Then the function's deliveries and the Spark job resume: the tables equal the truth
    pipeline.assert_matches_truth()


def test_mariadb_down_two_minutes_while_the_producer_fails_on_an_unreachable_kafka(pipeline: Pipeline) -> None:
    """Two faults in one outage window, to keep the suite short (the two minutes of the issue are the longest
    wait): MariaDB is stopped for two minutes and, inside that window, the function takes a large file while the
    Kafka broker does not answer (frozen, then crashed): its deliveries time out (60 s), the invocation fails."""
    # Given MariaDB stopped, and the Kafka broker frozen (it accepts nothing, answers nothing)
    with service_stopped("mariadb"):
        stopped = time.monotonic()
        before, letters_before = pipeline.events_in_kafka(), pipeline.dead_letters_in_kafka()
        with service_frozen_then_killed("kafka"):
            # When the function takes a large file with bad records
            records_before = pipeline.truth.records
            body = bad_records("outage") + sessions("outage", 300_000, users=2000, seed=1)
            key = pipeline.upload("outage/big.ndjson", body)
            in_file = pipeline.truth.records - records_before
            wait_for(
                lambda: pipeline.keys(f"claims/{key}"),
                PICKUP_TIMEOUT,
                "the function to take the file (its claim)",
                detail=pipeline.function_log,
            )
            # Then the invocation fails: it releases its claim and the file stays in incoming/
            wait_for(
                lambda: not pipeline.keys(f"claims/{key}"),
                180,
                "the function to give up on the file (its claim released)",
                detail=pipeline.function_log,
            )
            assert key in pipeline.keys("incoming/"), f"{key} left incoming/ although Kafka acknowledged nothing"
        # (the broker crashed while frozen and is started again)
        time.sleep(max(0.0, MARIADB_OUTAGE_SECONDS - (time.monotonic() - stopped)))

    # And once both are back, a later tick publishes the whole file, the Spark job (which failed its batches
    # meanwhile) recovers by itself, and every event counts once
    pipeline.assert_matches_truth(rejected=False)
    assert pipeline.events_in_kafka() - before >= in_file
    assert pipeline.dead_letters_in_kafka() - letters_before >= 3
    assert "restarting from the checkpoint" in pipeline.job.logs_full()
    # every bad record is in rejected_events, once (contract §3, §4)
    pipeline.assert_rejected()
