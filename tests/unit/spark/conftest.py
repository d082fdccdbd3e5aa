"""Fixtures of the Spark job's unit tests: record builders (the local SparkSession is in tests/unit/conftest.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from pyspark.sql import DataFrame, SparkSession

from spark import transforms
from tests.conftest import contract_event

EVENTS_TOPIC = "game-events"
DLQ_TOPIC = "game-events-dlq"
RAW_MAX_CHARS = 300
KAFKA_SCHEMA = "topic string, partition int, offset long, kafka_ts timestamp, value binary"
ARRIVAL = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


event = contract_event  # the contract's example event with fields replaced (tests/conftest.py)


def value_of(item: dict[str, Any] | str | bytes | None) -> bytes | None:
    if item is None or isinstance(item, bytes):
        return item
    if isinstance(item, str):
        return item.encode()
    return json.dumps(item, ensure_ascii=False).encode()


def records(
    spark: SparkSession,
    values: list[dict[str, Any] | str | bytes | None],
    *,
    topic: str = EVENTS_TOPIC,
    arrival: datetime = ARRIVAL,
    first_offset: int = 0,
) -> DataFrame:
    """Kafka-like rows (kafka_records' columns): one per value, consecutive offsets, one arrival time."""
    rows = [(topic, 0, first_offset + i, arrival, value_of(v)) for i, v in enumerate(values)]
    return spark.createDataFrame(rows, KAFKA_SCHEMA)


def parse(spark: SparkSession, values: list[dict[str, Any] | str | bytes | None], **kwargs: Any) -> DataFrame:
    return transforms.parse_records(records(spark, values, **kwargs), DLQ_TOPIC, RAW_MAX_CHARS)
