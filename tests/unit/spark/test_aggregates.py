"""Contract §5: per-batch aggregates and the merge arithmetic that makes them exact across batches."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from spark import transforms

from .conftest import event, parse

USER_SCHEMA = "user_id string, event_count long, first_event_at timestamp, last_event_at timestamp"
USER_AVG_SCHEMA = USER_SCHEMA + ", avg_seconds_between_events double"


def _users(spark: SparkSession, values: list[Any]) -> DataFrame:
    return transforms.user_aggregates(parse(spark, values))


def _with_avg(users: DataFrame) -> DataFrame:
    return users.withColumn(
        "avg_seconds_between_events",
        transforms.avg_seconds_between_events(F.col("event_count"), F.col("first_event_at"), F.col("last_event_at")),
    )


def test_out_of_order_events_give_first_last_and_average_gap(spark: SparkSession) -> None:
    values = [
        event(user_id="u", timestamp="2023-10-27T10:05:00Z"),
        event(user_id="u", timestamp="2023-10-27T10:00:00Z"),
        event(user_id="u", timestamp="2023-10-27T10:10:00Z", event_type="view"),
    ]
    got = _with_avg(_users(spark, values))
    expected = spark.createDataFrame(
        [("u", 3, datetime(2023, 10, 27, 10, 0), datetime(2023, 10, 27, 10, 10), 300.0)], USER_AVG_SCHEMA
    )
    assertDataFrameEqual(got, expected)


def test_single_event_user_has_null_average_and_same_instant_events_zero(spark: SparkSession) -> None:
    values = [
        event(user_id="single"),
        event(user_id="twins", event_id="t1"),
        event(user_id="twins", event_id="t2"),
    ]
    got = _with_avg(_users(spark, values))
    at = datetime(2023, 10, 27, 10, 0)
    expected = spark.createDataFrame([("single", 1, at, at, None), ("twins", 2, at, at, 0.0)], USER_AVG_SCHEMA)
    assertDataFrameEqual(got, expected)


def test_users_differing_in_case_or_script_are_distinct(spark: SparkSession) -> None:
    values = [event(user_id=u) for u in ("Ana", "ana", "ANA", "Ána", "アナ", "アナ")]
    got = _users(spark, values).select("user_id", "event_count")
    expected = spark.createDataFrame(
        [("Ana", 1), ("ana", 1), ("ANA", 1), ("Ána", 1), ("アナ", 2)], "user_id string, event_count long"
    )
    assertDataFrameEqual(got, expected)


def test_per_type_counts_events_once_and_users_new_to_the_type(spark: SparkSession) -> None:
    values: list[Any] = [
        event(user_id="u", event_type="Click", timestamp="2023-10-27T10:00:00Z"),
        event(user_id="u", event_type="click", timestamp="2023-10-27T09:00:00Z"),
        event(user_id="u", event_type="click", timestamp="2023-10-27T09:00:00Z"),  # a copy: counts once
        event(user_id="v", event_type="click"),
        event(user_id="u", event_type="view"),
        "{bad",
    ]
    got = transforms.event_type_aggregates(transforms.counted_rows(parse(spark, values), "1 hour"))
    expected = spark.createDataFrame(
        [("click", 3, 2), ("view", 1, 1)], "event_type string, event_count long, new_users long"
    )
    assertDataFrameEqual(got, expected)


def test_per_minute_counts_by_event_time_in_utc(spark: SparkSession) -> None:
    values: list[Any] = [
        event(event_type="Click", timestamp="2023-10-27T10:00:00Z"),
        event(event_type="click", timestamp="2023-10-27T10:00:59.999999Z", user_id="v"),
        event(event_type="click", timestamp="2023-10-27T12:01:00+02:00", user_id="w"),  # 10:01 UTC
        event(event_type="view", timestamp="2019-01-01T00:00:30Z"),
        "{bad",
    ]
    got = transforms.event_type_minute_aggregates(parse(spark, values))
    expected = spark.createDataFrame(
        [
            (datetime(2023, 10, 27, 10, 0), "click", 2),
            (datetime(2023, 10, 27, 10, 1), "click", 1),
            (datetime(2019, 1, 1, 0, 0), "view", 1),
        ],
        "minute_start timestamp, event_type string, event_count long",
    )
    assertDataFrameEqual(got, expected)


def test_merging_batches_equals_aggregating_everything_at_once(spark: SparkSession) -> None:
    # Given events of three users with arbitrary times, split into two batches in scrambled order
    minutes = [7, 3, 59, 0, 31, 12, 44, 3, 18, 25]
    values = [
        event(user_id=f"u{i % 3}", event_id=f"e{i}", timestamp=f"2023-10-27T10:{m:02d}:00Z")
        for i, m in enumerate(minutes)
    ]
    first, second = values[::2], values[1::2]

    # When the second batch is merged into the first one's totals
    empty = spark.createDataFrame([], USER_SCHEMA)
    after_first = transforms.merge_user_metrics(empty, _users(spark, first)).drop("avg_seconds_between_events")
    merged = transforms.merge_user_metrics(after_first, _users(spark, second))

    # Then it equals the aggregate of all events in one batch (count adds up; first = min; last = max)
    assertDataFrameEqual(merged, _with_avg(_users(spark, values)))


def test_merge_keeps_users_missing_from_the_batch(spark: SparkSession) -> None:
    at = datetime(2023, 10, 27, 10, 0)
    current = spark.createDataFrame([("old", 4, at, datetime(2023, 10, 27, 10, 3))], USER_SCHEMA)
    got = transforms.merge_user_metrics(current, _users(spark, [event(user_id="new")]))
    expected = spark.createDataFrame(
        [("old", 4, at, datetime(2023, 10, 27, 10, 3), 60.0), ("new", 1, at, at, None)], USER_AVG_SCHEMA
    )
    assertDataFrameEqual(got, expected)


def test_rejected_rows_have_the_columns_of_rejected_events(spark: SparkSession) -> None:
    got = transforms.rejected_rows(parse(spark, [event(), "{bad"]))
    assert got.columns == [
        "reason",
        "kafka_topic",
        "kafka_partition",
        "kafka_offset",
        "received_at",
        "s3_bucket",
        "s3_key",
        "s3_record_kind",
        "s3_record_number",
        "raw_text",
        "raw_bytes",
        "raw_truncated",
    ]
    assert [r.kafka_offset for r in got.collect()] == [1]


def test_timestamps_become_exact_utc_text_for_the_jdbc_load(spark: SparkSession) -> None:
    frame = spark.createDataFrame([("u", datetime(2019, 1, 2, 3, 4, 5, 6))], "user_id string, at timestamp")
    got = transforms.timestamps_as_text(frame)
    expected = spark.createDataFrame([("u", "2019-01-02 03:04:05.000006")], "user_id string, at string")
    assertDataFrameEqual(got, expected)
