"""Exactly-once bookkeeping of spark/sink.py against an in-memory fake connection (no database)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pymysql
import pytest
from pyspark.sql import SparkSession

from spark import sink
from spark.settings import Settings

from .conftest import event, parse

QUERY_ID = "00000000-0000-0000-0000-000000000001"


@dataclass
class FakeConnection:
    committed_batches: set[int] = field(default_factory=set)
    fail_on: str | None = None
    statements: list[str] = field(default_factory=list)
    log: list[str] = field(default_factory=list)

    def cursor(self) -> FakeCursor:
        return FakeCursor(self)

    def commit(self) -> None:
        self.log.append("commit")

    def rollback(self) -> None:
        self.log.append("rollback")

    def close(self) -> None:
        self.log.append("close")


@dataclass
class FakeCursor:
    conn: FakeConnection
    _row: Any = None

    def execute(self, sql: str, params: Any = None) -> None:
        self.conn.statements.append(" ".join(sql.split()))
        if self.conn.fail_on and self.conn.fail_on in sql:
            raise pymysql.err.OperationalError(2013, "Lost connection to MySQL server during query")
        ledger_insert = sql.lstrip().startswith("INSERT INTO spark_batch_ledger")
        if ledger_insert and params["batch_id"] in self.conn.committed_batches:
            raise pymysql.err.IntegrityError(sink.ER_DUP_ENTRY, "Duplicate entry")
        self._row = (1,) if "FROM spark_batch_ledger" in sql and params[1] in self.conn.committed_batches else None

    def fetchone(self) -> Any:
        return self._row

    def close(self) -> None:
        pass


COUNTS = sink.BatchCounts(event_rows=10, new_user_types=4, rejected_rows=2)


def _kinds(conn: FakeConnection) -> list[str]:
    return [" ".join(s.split()[:3]) for s in conn.statements]


def test_merge_is_one_transaction_starting_with_the_ledger_row() -> None:
    conn = FakeConnection()
    assert sink.MetricsSink(Settings(), lambda: QUERY_ID).merge(conn, QUERY_ID, 7, COUNTS) is True
    assert _kinds(conn) == [
        "INSERT INTO spark_batch_ledger",
        "INSERT INTO event_type_metrics",
        "INSERT INTO user_metrics",
        "INSERT INTO event_type_minute_metrics",
        "INSERT INTO rejected_events",
        "UPDATE spark_batch_ledger SET",
    ]
    assert conn.log == ["commit"]


def test_unique_users_add_the_batch_s_new_pairs_per_type() -> None:
    conn = FakeConnection()
    sink.MetricsSink(Settings(), lambda: QUERY_ID).merge(conn, QUERY_ID, 7, COUNTS)
    assert "unique_users = event_type_metrics.unique_users + VALUES(unique_users)" in conn.statements[1]
    assert "s.new_users" in conn.statements[1]


def test_batch_already_in_the_ledger_is_rolled_back_not_merged() -> None:
    conn = FakeConnection(committed_batches={7})
    assert sink.MetricsSink(Settings(), lambda: QUERY_ID).merge(conn, QUERY_ID, 7, COUNTS) is False
    assert _kinds(conn) == ["INSERT INTO spark_batch_ledger"]
    assert conn.log == ["rollback"]


def test_failure_during_the_merge_rolls_back_and_raises() -> None:
    conn = FakeConnection(fail_on="INSERT INTO user_metrics")
    with pytest.raises(pymysql.err.OperationalError):
        sink.MetricsSink(Settings(), lambda: QUERY_ID).merge(conn, QUERY_ID, 7, COUNTS)
    assert conn.log == ["rollback"]


def test_replayed_committed_batch_is_skipped_without_loading(spark: SparkSession) -> None:
    # Given a batch id that the ledger already holds
    conn = FakeConnection(committed_batches={3})
    metrics_sink = sink.MetricsSink(Settings(), lambda: QUERY_ID, connection_factory=lambda: conn)

    # When Spark replays it
    metrics_sink(parse(spark, [event()]), 3)

    # Then nothing is loaded or merged
    assert conn.statements == ["SELECT 1 FROM spark_batch_ledger WHERE query_id = %s AND batch_id = %s"]
    assert metrics_sink.committed_batches == 0
    assert conn.log[-1] == "close"


def test_a_batch_s_local_checkpoint_is_freed_when_released(spark: SparkSession) -> None:
    # Given a batch kept as a local checkpoint, as the sink keeps it for its aggregates
    kept = parse(spark, [event(), event(user_id="ana")]).localCheckpoint(eager=True)
    storage = spark.sparkContext._jsc.sc()
    rdd_id = sink.local_checkpoint_rdd(kept).id()

    def blocks() -> int:
        return sum(info.numCachedPartitions() for info in storage.getRDDStorageInfo() if info.id() == rdd_id)

    assert blocks() > 0
    # When the sink releases it at the end of the batch
    sink.release_local_checkpoint(kept)
    # Then no block of it stays in storage
    assert blocks() == 0


def test_merge_sql_uses_only_syntax_common_to_mysql_and_mariadb() -> None:
    for statement in (sink.MERGE_EVENT_TYPES, sink.MERGE_USERS, sink.MERGE_MINUTES, sink.MERGE_REJECTED):
        assert "ON DUPLICATE KEY UPDATE" in statement
        assert " AS new" not in statement  # the row-alias form is MySQL-only
