"""The database write of one micro-batch: bulk-load staging tables, then merge set-wise in one transaction.

Exactly once (docs/spark-job.md, "Exactly once"):
1. A batch whose (query_id, batch_id) is in spark_batch_ledger was committed before (Spark replays the last
   batch after a crash): it is skipped. Its plan still runs without output, so that the dedup state store
   commits the batch's version (Spark 4.2 checks that every state store committed).
2. Leftover staging rows of this query (a load that died half-way) are deleted.
3. Spark's executors load the batch's aggregates into the stg_* tables over JDBC (batched inserts); each row
   carries the batch id, and the staging primary keys refuse a second copy of a row. The aggregates are per event
   type (events, and users new to the type: the job keeps the set of (user, type) pairs in its state store), per
   user (count, first, last), per (minute, type), and the rejected records.
4. One transaction inserts the ledger row (a duplicate key there means another attempt won: roll back) and
   merges every staging table into the metrics with INSERT ... SELECT ... ON DUPLICATE KEY UPDATE, then commits.
5. The batch's staging rows are deleted (a separate statement: correctness does not depend on it).
Any failure raises, which fails the streaming query; the job restarts it from the checkpoint (job.py).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import pymysql
from pyspark.sql import DataFrame, DataFrameWriter
from pyspark.sql import functions as F

from spark import transforms
from spark.logs import KeyValueLogger
from spark.settings import Settings

log = KeyValueLogger("game_events.spark.sink")

STAGING_TABLES = (
    "stg_event_type_metrics",
    "stg_user_metrics",
    "stg_event_type_minute_metrics",
    "stg_rejected_events",
)

# Unique users per type add up: the job counts, per type, the (user, type) pairs it sees for the first time.
MERGE_EVENT_TYPES = """
INSERT INTO event_type_metrics (event_type, total_events, unique_users)
SELECT s.event_type, s.event_count, s.new_users
FROM stg_event_type_metrics s
WHERE s.query_id = %(query_id)s AND s.batch_id = %(batch_id)s
ON DUPLICATE KEY UPDATE
    total_events = event_type_metrics.total_events + VALUES(total_events),
    unique_users = event_type_metrics.unique_users + VALUES(unique_users)
"""

# The average is assigned first, from the old row and the batch's values: it does not depend on whether the
# server evaluates the assignments left to right (MySQL) or simultaneously.
MERGE_USERS = """
INSERT INTO user_metrics (user_id, event_count, first_event_at, last_event_at, avg_seconds_between_events)
SELECT s.user_id, s.event_count, s.first_event_at, s.last_event_at,
       CASE WHEN s.event_count > 1
            THEN TIMESTAMPDIFF(MICROSECOND, s.first_event_at, s.last_event_at) / 1e6 / (s.event_count - 1)
       END
FROM stg_user_metrics s
WHERE s.query_id = %(query_id)s AND s.batch_id = %(batch_id)s
ON DUPLICATE KEY UPDATE
    avg_seconds_between_events = CASE
        WHEN user_metrics.event_count + VALUES(event_count) > 1
        THEN TIMESTAMPDIFF(
                 MICROSECOND,
                 LEAST(user_metrics.first_event_at, VALUES(first_event_at)),
                 GREATEST(user_metrics.last_event_at, VALUES(last_event_at))
             ) / 1e6 / (user_metrics.event_count + VALUES(event_count) - 1)
    END,
    event_count = user_metrics.event_count + VALUES(event_count),
    first_event_at = LEAST(user_metrics.first_event_at, VALUES(first_event_at)),
    last_event_at = GREATEST(user_metrics.last_event_at, VALUES(last_event_at))
"""

MERGE_MINUTES = """
INSERT INTO event_type_minute_metrics (minute_start, event_type, total_events)
SELECT s.minute_start, s.event_type, s.event_count
FROM stg_event_type_minute_metrics s
WHERE s.query_id = %(query_id)s AND s.batch_id = %(batch_id)s
ON DUPLICATE KEY UPDATE total_events = event_type_minute_metrics.total_events + VALUES(total_events)
"""

MERGE_REJECTED = """
INSERT INTO rejected_events (
    reason, kafka_topic, kafka_partition, kafka_offset, received_at, s3_bucket, s3_key, s3_record_kind,
    s3_record_number, raw_text, raw_bytes, raw_truncated, batch_id)
SELECT s.reason, s.kafka_topic, s.kafka_partition, s.kafka_offset, s.received_at, s.s3_bucket, s.s3_key,
       s.s3_record_kind, s.s3_record_number, s.raw_text, s.raw_bytes, s.raw_truncated, s.batch_id
FROM stg_rejected_events s
WHERE s.query_id = %(query_id)s AND s.batch_id = %(batch_id)s
ORDER BY s.kafka_topic, s.kafka_partition, s.kafka_offset
ON DUPLICATE KEY UPDATE id = rejected_events.id
"""

INSERT_LEDGER = """
INSERT INTO spark_batch_ledger (
    query_id, batch_id, query_name, event_rows, user_type_rows, rejected_rows, load_seconds)
VALUES (
    %(query_id)s, %(batch_id)s, %(query_name)s, %(event_rows)s, %(user_type_rows)s, %(rejected_rows)s,
    %(load_seconds)s)
"""

# Last statement of the merge transaction: the time the merge took, in the row that commits with it.
SET_MERGE_SECONDS = """
UPDATE spark_batch_ledger SET merge_seconds = %(merge_seconds)s
WHERE query_id = %(query_id)s AND batch_id = %(batch_id)s
"""

ER_DUP_ENTRY = 1062


class Connection(Protocol):
    """The part of a DB-API connection the sink uses (pymysql's, or a fake in tests)."""

    def cursor(self) -> Any: ...
    def commit(self) -> None: ...
    def rollback(self) -> None: ...
    def close(self) -> None: ...


def connect(settings: Settings) -> pymysql.connections.Connection[Any]:
    """A new connection of the job's driver to the metrics database (UTC session, no autocommit)."""
    return pymysql.connect(
        host=settings.mysql_host,
        port=settings.mysql_port,
        user=settings.mysql_user,
        password=settings.mysql_password.get_secret_value(),
        database=settings.mysql_database,
        charset="utf8mb4",
        autocommit=False,
        connect_timeout=settings.mysql_connect_timeout_seconds,
        init_command="SET time_zone = '+00:00'",
    )


def jdbc_writer(frame: DataFrame, table: str, settings: Settings) -> DataFrameWriter:
    """A JDBC writer of `frame` into `table` of the metrics database (batched inserts from the executors)."""
    return (
        frame.write.format("jdbc")
        .option("url", settings.jdbc_url)
        .option("driver", "com.mysql.cj.jdbc.Driver")
        .option("dbtable", table)
        .option("user", settings.mysql_user)
        .option("password", settings.mysql_password.get_secret_value())
        .option("batchsize", settings.jdbc_batch_size)
    )


def local_checkpoint_rdd(frame: DataFrame) -> Any:
    """The JVM RDD holding the rows of `frame`, a DataFrame.localCheckpoint (its plan is a LogicalRDD)."""
    return frame._jdf.queryExecution().analyzed().rdd()


def release_local_checkpoint(frame: DataFrame) -> None:
    """Free the blocks of `frame`, a DataFrame.localCheckpoint, now: Spark frees them only once the JVM garbage
    collects the plan (ContextCleaner), so without this every batch's rows would pile up in storage memory, then
    on disk."""
    local_checkpoint_rdd(frame).unpersist(False)


@dataclass(frozen=True)
class BatchCounts:
    event_rows: int
    new_user_types: int  # (user, event type) pairs seen for the first time (ledger column user_type_rows)
    rejected_rows: int


@contextmanager
def _cursor(conn: Connection) -> Iterator[Any]:
    cur = conn.cursor()
    try:
        yield cur
    finally:
        cur.close()


class MetricsSink:
    """foreachBatch function: writes one deduplicated micro-batch (transforms.PARSED_COLUMNS) exactly once."""

    def __init__(
        self,
        settings: Settings,
        query_id: Callable[[], str],
        connection_factory: Callable[[], Connection] | None = None,
    ) -> None:
        self._settings = settings
        self._query_id = query_id
        self._connect: Callable[[], Connection] = connection_factory or (lambda: connect(settings))
        self.committed_batches = 0

    # -- foreachBatch entry point --------------------------------------------------------------------------
    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        started = time.monotonic()
        query_id = self._query_id()
        conn = self._connect()
        try:
            if self.is_committed(conn, query_id, batch_id):
                # Still run the batch's plan (no output): Spark validates that its state stores committed.
                batch.write.format("noop").mode("overwrite").save()
                log.info("batch already committed, skipped", query_id=query_id, batch_id=batch_id)
                return
            self.clear_staging(conn, query_id)
            counts = self.load_staging(batch, query_id, batch_id)
            loaded = time.monotonic()
            committed = self.merge(conn, query_id, batch_id, counts, load_seconds=round(loaded - started, 3))
            merged = time.monotonic()
            if committed:
                self.committed_batches += 1
            self.clear_staging(conn, query_id, batch_id)
            log.info(
                "batch committed" if committed else "batch committed by another attempt, skipped",
                query_id=query_id,
                batch_id=batch_id,
                events=counts.event_rows,
                new_user_types=counts.new_user_types,
                rejected=counts.rejected_rows,
                load_seconds=round(loaded - started, 3),
                merge_seconds=round(merged - loaded, 3),
                total_seconds=round(time.monotonic() - started, 3),
            )
        finally:
            conn.close()

    # -- steps -----------------------------------------------------------------------------------------------
    @staticmethod
    def is_committed(conn: Connection, query_id: str, batch_id: int) -> bool:
        with _cursor(conn) as cur:
            cur.execute(
                "SELECT 1 FROM spark_batch_ledger WHERE query_id = %s AND batch_id = %s",
                (query_id, batch_id),
            )
            found = cur.fetchone() is not None
        conn.rollback()  # end the read-only transaction
        return found

    @staticmethod
    def clear_staging(conn: Connection, query_id: str, batch_id: int | None = None) -> None:
        """Delete this query's staging rows (of one batch, or all: leftovers of an attempt that died)."""
        with _cursor(conn) as cur:
            for table in STAGING_TABLES:
                if batch_id is None:
                    cur.execute(f"DELETE FROM {table} WHERE query_id = %s", (query_id,))  # noqa: S608
                else:
                    cur.execute(
                        f"DELETE FROM {table} WHERE query_id = %s AND batch_id = %s",  # noqa: S608
                        (query_id, batch_id),
                    )
        conn.commit()

    def load_staging(self, batch: DataFrame, query_id: str, batch_id: int) -> BatchCounts:
        """Aggregate the batch (transforms.counted_rows' rows) and bulk-load the stg_* tables from the executors
        (JDBC batched inserts). The batch is computed once (which commits its state stores) into a local checkpoint
        that the aggregates below read."""
        started = time.monotonic()
        # The identities and dedup times are not needed any more. A local checkpoint keeps the rows as they are
        # (a cache would first re-encode them column by column: ~2 s more per 1M events here, docs/spark-job.md).
        batch = batch.drop("dedup_key", "dedup_at").localCheckpoint(eager=True)
        try:
            kind, is_event = F.col(transforms.ROW_KIND), F.col("is_event")
            record = kind == F.lit(transforms.RECORD)
            totals = batch.agg(
                F.count_if(record & is_event).alias("events"),
                F.count_if((kind == F.lit(transforms.NEW_USER_TYPE)) & is_event).alias("new_pairs"),
                F.count_if(record & ~is_event).alias("rejected"),
            ).first()
            counts = BatchCounts(
                event_rows=int(totals["events"]) if totals else 0,
                new_user_types=int(totals["new_pairs"]) if totals else 0,
                rejected_rows=int(totals["rejected"]) if totals else 0,
            )
            computed = time.monotonic()
            records = transforms.counted_records(batch)
            keyed: Callable[[DataFrame], DataFrame] = lambda df: transforms.timestamps_as_text(  # noqa: E731
                df.select(F.lit(query_id).alias("query_id"), F.lit(batch_id).cast("bigint").alias("batch_id"), "*")
            )
            if counts.event_rows:
                self._jdbc_append(keyed(transforms.event_type_aggregates(batch)), "stg_event_type_metrics")
                self._jdbc_append(keyed(transforms.user_aggregates(records)), "stg_user_metrics")
                minutes = transforms.event_type_minute_aggregates(records)
                self._jdbc_append(keyed(minutes), "stg_event_type_minute_metrics")
            if counts.rejected_rows:
                self._jdbc_append(keyed(transforms.rejected_rows(records)), "stg_rejected_events")
            log.info(
                "batch staged",
                batch_id=batch_id,
                compute_seconds=round(computed - started, 3),  # Kafka read, parse, deduplications, checkpoint
                stage_seconds=round(time.monotonic() - computed, 3),  # aggregates and JDBC loads
            )
            return counts
        finally:
            release_local_checkpoint(batch)

    def _jdbc_append(self, frame: DataFrame, table: str) -> None:
        jdbc_writer(frame, table, self._settings).option("isolationLevel", "READ_COMMITTED").mode("append").save()

    def merge(
        self, conn: Connection, query_id: str, batch_id: int, counts: BatchCounts, load_seconds: float | None = None
    ) -> bool:
        """One transaction: ledger row (with the load's duration) + every merge. False when the ledger already had
        the batch."""
        started = time.monotonic()
        params: dict[str, Any] = {
            "query_id": query_id,
            "batch_id": batch_id,
            "query_name": self._settings.query_name,
            "event_rows": counts.event_rows,
            "user_type_rows": counts.new_user_types,
            "rejected_rows": counts.rejected_rows,
            "load_seconds": load_seconds,
        }
        try:
            with _cursor(conn) as cur:
                try:
                    cur.execute(INSERT_LEDGER, params)
                except pymysql.err.IntegrityError as exc:
                    if exc.args and exc.args[0] == ER_DUP_ENTRY:
                        conn.rollback()
                        return False
                    raise
                if counts.event_rows:
                    cur.execute(MERGE_EVENT_TYPES, params)
                    cur.execute(MERGE_USERS, params)
                    cur.execute(MERGE_MINUTES, params)
                if counts.rejected_rows:
                    cur.execute(MERGE_REJECTED, params)
                cur.execute(SET_MERGE_SECONDS, {**params, "merge_seconds": round(time.monotonic() - started, 3)})
            conn.commit()
            return True
        except BaseException:
            with contextlib.suppress(Exception):  # the connection may be the thing that failed
                conn.rollback()
            raise
