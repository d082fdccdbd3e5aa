"""Contract §3: identity of an event, and copies within the window (by Kafka arrival time) counting once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame, Row, SparkSession
from pyspark.sql import functions as F

from spark import transforms

from .conftest import DLQ_TOPIC, KAFKA_SCHEMA, RAW_MAX_CHARS, event, parse, value_of


def _records(parsed: DataFrame) -> DataFrame:
    """The deduplicated records of a (static) batch."""
    return transforms.counted_records(transforms.counted_rows(parsed, "1 hour"))


def _keys(spark: SparkSession, values: list[Any]) -> list[bytes]:
    return [bytes(row.dedup_key) for row in parse(spark, values).orderBy("offset").collect()]


def test_same_event_written_differently_has_one_identity(spark: SparkSession) -> None:
    # Given one event written four ways: key order, whitespace, integer vs string ids, another zone, case
    keys = _keys(
        spark,
        [
            event(payload={"a": 1, "b": {"y": 2, "x": [1, 2]}}),
            ' {"payload": {"b": {"x": [1, 2], "y": 2}, "a": 1}, "game_id": 456, "user_id": 123,'
            ' "event_type": "CLICK ", "timestamp": "2023-10-27T12:00:00+02:00"}',
            event(
                user_id=" 123 ", timestamp="2023-10-27T10:00:00.000000Z", payload={"b": {"x": [1, 2], "y": 2}, "a": 1}
            ),
        ],
    )
    # Then they share one identity
    assert len(set(keys)) == 1


def test_any_difference_in_the_tuple_makes_another_event(spark: SparkSession) -> None:
    keys = _keys(
        spark,
        [
            event(),
            event(user_id="124"),
            event(user_id="Ana"),
            event(user_id="ana"),
            event(event_type="view"),
            event(timestamp="2023-10-27T10:00:00.000001Z"),
            event(game_id="457"),
            event(game_id=...),
            event(payload={"button_id": "780"}),
            event(payload=...),
        ],
    )
    assert len(set(keys)) == len(keys)


def test_event_id_is_the_identity_when_present(spark: SparkSession) -> None:
    keys = _keys(spark, [event(event_id="e-1"), event(event_id="e-1", user_id="other"), event(event_id="e-2")])
    assert keys[0] == keys[1] != keys[2]


def test_rejected_records_are_never_deduplicated(spark: SparkSession) -> None:
    keys = _keys(spark, ["{bad", "{bad"])
    assert keys[0] != keys[1]


def _dead_letter(**fields: Any) -> dict[str, Any]:
    letter = {
        "reason": "user_id: required field is missing",
        "s3_bucket": "game-events",
        "s3_key": "incoming/a.ndjson",
        "s3_etag": '"e1"',
        "record_kind": "line",
        "record_number": 3,
        "raw": "{}",
    }
    return {**letter, **fields}


def test_dead_letters_naming_one_s3_record_are_one_rejected_record(spark: SparkSession) -> None:
    # Given a retry of a file publishing its dead letter again, the same record of another version of the file
    # (another ETag), another line, and dead letters that do not name an S3 record
    letters: list[Any] = [
        _dead_letter(),
        _dead_letter(reason="the retry's reason text may differ"),
        _dead_letter(s3_etag='"e2"'),
        _dead_letter(record_number=4),
        _dead_letter(record_kind="file", record_number=None),
        _dead_letter(s3_etag=None),
        _dead_letter(s3_etag=None),
        "not a dead letter",
    ]
    parsed = parse(spark, letters, topic=DLQ_TOPIC)
    keys = [bytes(row.dedup_key) for row in parsed.orderBy("offset").collect()]
    # Then only the copies share a key, and once deduplicated the batch holds one row per record
    assert keys[0] == keys[1]
    assert len(set(keys)) == len(keys) - 1
    assert transforms.rejected_rows(_records(parsed)).count() == len(letters) - 1


def test_copies_in_one_batch_count_once(spark: SparkSession) -> None:
    parsed = parse(spark, [event(), event(user_id=123), event(event_id="x"), event(event_id="x", user_id="9")])
    assert _records(parsed).count() == 2


# Arrival times of the streaming tests are around the real clock: the job takes every arrival time as at least
# (micro-batch time - window), as Kafka's LogAppendTime always is in production.
ARRIVAL = datetime.now(UTC).replace(microsecond=0)


class _Stream:
    """A streaming run over parquet files of Kafka-like rows: one availableNow run per `run` call."""

    def __init__(self, spark: SparkSession, tmp_path: Path) -> None:
        self.spark = spark
        self.source = tmp_path / "source"
        self.checkpoint = tmp_path / "checkpoint"
        self.source.mkdir()
        self.offset = 0
        self.new_pairs: list[list[tuple[str, str]]] = []  # per run: the (user, type) pairs seen for the first time

    def run(self, values: list[Any], arrival: datetime, partition: int = 0) -> list[Row]:
        rows = [("game-events", partition, self.offset + i, arrival, value_of(v)) for i, v in enumerate(values)]
        self.offset += len(values)
        self.spark.createDataFrame(rows, KAFKA_SCHEMA).coalesce(1).write.mode("append").parquet(str(self.source))
        seen: list[Row] = []
        pairs: list[tuple[str, str]] = []

        def collect(batch: DataFrame, _batch_id: int) -> None:
            kind = F.col(transforms.ROW_KIND)
            events = batch.where((kind == transforms.RECORD) & F.col("is_event"))
            seen.extend(events.select("offset", "user_id", "event_type", "event_at").collect())
            firsts = batch.where((kind == transforms.NEW_USER_TYPE) & F.col("is_event"))
            pairs.extend((r.user_id, r.event_type) for r in firsts.select("user_id", "event_type").collect())

        stream = self.spark.readStream.schema(KAFKA_SCHEMA).parquet(str(self.source))
        parsed = transforms.parse_records(stream, DLQ_TOPIC, RAW_MAX_CHARS)
        query = (
            transforms.counted_rows(parsed, "1 hour")
            .writeStream.foreachBatch(collect)
            .option("checkpointLocation", str(self.checkpoint))
            .trigger(availableNow=True)
            .start()
        )
        query.awaitTermination()
        self.new_pairs.append(sorted(pairs))
        return sorted(seen, key=lambda r: r.offset)


def test_copies_across_batches_within_the_window_count_once(spark: SparkSession, tmp_path: Path) -> None:
    stream = _Stream(spark, tmp_path)
    first = stream.run([event(event_id="a"), event(), event()], ARRIVAL)
    assert [r.offset for r in first] == [0, 1]

    # 30 minutes later (Kafka arrival time): copies of both, plus an event stamped 2019 that was never seen
    second = stream.run(
        [event(event_id="a", user_id="x"), event(), event(timestamp="2019-05-01T00:00:00Z")],
        ARRIVAL + timedelta(minutes=30),
    )
    assert [(r.offset, r.event_at) for r in second] == [(5, datetime(2019, 5, 1))]


def test_copy_arriving_long_after_the_window_counts_again(spark: SparkSession, tmp_path: Path) -> None:
    stream = _Stream(spark, tmp_path)
    assert len(stream.run([event(event_id="a")], ARRIVAL)) == 1
    # Traffic three hours later moves the watermark past the first copy's window...
    assert len(stream.run([event(event_id="b")], ARRIVAL + timedelta(hours=3))) == 1
    # ...so a copy arriving then is a new arrival of the event (the window is about arrival times)
    again = stream.run([event(event_id="a")], ARRIVAL + timedelta(hours=3, minutes=1))
    assert [r.offset for r in again] == [2]


def test_event_with_old_timestamp_is_never_late(spark: SparkSession, tmp_path: Path) -> None:
    stream = _Stream(spark, tmp_path)
    stream.run([event(timestamp="2026-12-04T12:00:00Z")], ARRIVAL)
    later = stream.run(
        [event(timestamp="2019-01-01T00:00:00Z"), event(timestamp="2001-01-01T00:00:00Z")],
        ARRIVAL + timedelta(hours=5),
    )
    assert [r.event_at.year for r in later] == [2019, 2001]


def test_arrival_time_not_event_time_drives_the_window(spark: SparkSession, tmp_path: Path) -> None:
    # Given an event whose own timestamp is years old, then a copy 10 minutes (arrival) later
    stream = _Stream(spark, tmp_path)
    old = event(timestamp="2019-01-01T00:00:00Z")
    assert len(stream.run([old], ARRIVAL)) == 1
    # Then the copy is a duplicate although its timestamp is far outside the window
    assert stream.run([old], ARRIVAL + timedelta(minutes=10)) == []


def test_partition_read_hours_behind_another_loses_nothing(spark: SparkSession, tmp_path: Path) -> None:
    # Given a catch-up: partition 0's backlog from five hours ago, and partition 1 already read up to now
    stream = _Stream(spark, tmp_path)
    assert len(stream.run([event(event_id="a")], ARRIVAL - timedelta(hours=5), partition=0)) == 1
    assert len(stream.run([event(event_id="b")], ARRIVAL - timedelta(minutes=10), partition=1)) == 1
    # When partition 0's next records (4 h 55 min old: far behind the watermark of partition 1's arrivals) come
    late = stream.run(
        [event(event_id="c"), event(event_id="a", user_id="copy")], ARRIVAL - timedelta(hours=4, minutes=55)
    )
    # Then the new event counts (not dropped as late), and the copy of "a" (5 minutes after it) still counts once
    assert [r.offset for r in late] == [2]


def test_user_type_pairs_are_new_once_ever_even_after_the_window(spark: SparkSession, tmp_path: Path) -> None:
    # Given a user's first click and view, then more of them (and a bad record) later
    stream = _Stream(spark, tmp_path)
    stream.run([event(user_id="u", event_id="1"), event(user_id="u", event_id="2", event_type="View")], ARRIVAL)
    stream.run([event(user_id="u", event_id="3"), event(user_id="v", event_id="4"), "{bad"], ARRIVAL)
    # When the same pairs come back long after the deduplication window (its state of events expired)
    stream.run(
        [event(user_id="u", event_id="5", event_type=" CLICK "), event(user_id="u", event_id="6")],
        ARRIVAL + timedelta(hours=5),
    )
    # Then each (user, type) pair is new exactly once: unique users per type stay exact across batches
    assert stream.new_pairs == [[("u", "click"), ("u", "view")], [("v", "click")], []]


def test_static_counted_rows_hold_records_once_and_each_pair_once(spark: SparkSession) -> None:
    parsed = parse(spark, [event(user_id="u"), event(user_id="u"), event(user_id="u", event_id="x"), "{bad"])
    rows = transforms.counted_rows(parsed, "1 hour")
    kinds = sorted((r[transforms.ROW_KIND], r.is_event) for r in rows.collect())
    assert kinds == [("new_user_type", True), ("record", False), ("record", True), ("record", True)]
