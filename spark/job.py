"""Entry point of the streaming job: Kafka (events + dead-letter topic) -> validation -> dedup -> MySQL.

    python -m spark.job                      # local[2] with the jars of .stack/jars/spark (make spark-run)
    spark-submit --master spark://host:7077 spark/job.py   # jars from --jars / the image (spark/Dockerfile)

One streaming query subscribes to both topics; each micro-batch is parsed and validated (transforms.py),
deduplicated by identity within the window of Kafka arrival times (RocksDB state store in the checkpoint) and
written exactly once by sink.MetricsSink. A failed query (MySQL or Kafka unavailable) is restarted from its
checkpoint with exponential backoff. SIGTERM/SIGINT stop it between batches. docs/spark-job.md has the design.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType

from pyspark.errors import StreamingQueryException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.streaming.listener import (
    QueryIdleEvent,
    QueryProgressEvent,
    QueryStartedEvent,
    QueryTerminatedEvent,
    StreamingQueryListener,
)
from pyspark.sql.streaming.query import StreamingQuery

if __package__ in (None, ""):  # run as a file by spark-submit: make the `spark` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from spark import logs, transforms
from spark.logs import KeyValueLogger
from spark.settings import Settings, SettingsError, load_settings
from spark.sink import MetricsSink

log = KeyValueLogger("game_events.spark.job")

JVM_OPTIONS = "-Duser.timezone=UTC -XX:-DontCompileHugeMethods"
ROCKSDB_PROVIDER = "org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider"


def spark_conf(settings: Settings) -> dict[str, str]:
    """Spark settings of the job (docs/spark-job.md, "Settings"), sized for 2 cores by default."""
    conf = {
        "spark.app.name": settings.query_name,
        "spark.sql.session.timeZone": "UTC",
        # UTC everywhere; and let the JIT compile Spark's large generated methods (the validation of an event is
        # one wide projection): without it HotSpot interprets methods over 8,000 bytes, ~2x slower here.
        "spark.driver.extraJavaOptions": JVM_OPTIONS,
        "spark.executor.extraJavaOptions": JVM_OPTIONS,
        # Shuffle partitions = state-store partitions; fixed in the checkpoint at its first start.
        "spark.sql.shuffle.partitions": str(settings.shuffle_partitions),
        "spark.sql.streaming.stateStore.providerClass": ROCKSDB_PROVIDER,
        # Each batch uploads only the changes of the state, not a snapshot of all of it.
        "spark.sql.streaming.stateStore.rocksdb.changelogCheckpointing.enabled": "true",
        # The key count of a store costs a read before every write; off unless STATE_ROW_COUNT asks for it.
        "spark.sql.streaming.stateStore.rocksdb.trackTotalNumberOfRows": str(settings.state_row_count).lower(),
        # Like Python's json (the producer): a repeated key keeps the last value instead of failing the parse.
        "spark.sql.variant.allowDuplicateKeys": "true",
        "spark.sql.streaming.stopGracefullyOnShutdown": "true",
        "spark.ui.showConsoleProgress": "false",
    }
    if settings.driver_memory:
        conf["spark.driver.memory"] = settings.driver_memory
    jars = settings.jars()
    if jars:
        conf["spark.jars"] = ",".join(jars)
    return conf


def build_session(settings: Settings) -> SparkSession:
    builder = SparkSession.builder
    if settings.spark_master:
        builder = builder.master(settings.spark_master)
    for key, value in spark_conf(settings).items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark


def source(spark: SparkSession, settings: Settings) -> DataFrame:
    """Both topics; `startingOffsets` only matters at the first start of a checkpoint."""
    reader = (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", settings.kafka_bootstrap_servers)
        .option("subscribe", f"{settings.events_topic},{settings.dlq_topic}")
        .option("startingOffsets", "earliest")
        .option("failOnDataLoss", str(settings.fail_on_data_loss).lower())
    )
    if settings.max_offsets_per_trigger:
        reader = reader.option("maxOffsetsPerTrigger", settings.max_offsets_per_trigger)
    if settings.kafka_min_partitions:
        reader = reader.option("minPartitions", settings.kafka_min_partitions)
    return reader.load()


def pipeline(records: DataFrame, settings: Settings) -> DataFrame:
    """Kafka rows -> the rows a micro-batch writes (transforms.counted_rows): deduplicated records, and the
    (user, event type) pairs seen for the first time."""
    parsed = transforms.parse_records(
        transforms.kafka_records(records), settings.dlq_topic, settings.rejected_raw_max_chars
    )
    return transforms.counted_rows(parsed, settings.dedup_window)


class ProgressLogger(StreamingQueryListener):
    """Logs every micro-batch's progress; an error when the watermark dropped rows (see docs/spark-job.md)."""

    def onQueryStarted(self, event: QueryStartedEvent) -> None:
        pass

    def onQueryProgress(self, event: QueryProgressEvent) -> None:
        progress = event.progress
        durations = progress.durationMs
        # State operators in plan order: the deduplication of events, then the set of (user, event type) pairs.
        states = list(progress.stateOperators)
        dropped = sum(state.numRowsDroppedByWatermark for state in states)
        log.info(
            "batch progress",
            batch_id=progress.batchId,
            input_rows=progress.numInputRows,
            trigger_ms=durations.get("triggerExecution"),
            add_batch_ms=durations.get("addBatch"),
            get_offsets_ms=durations.get("latestOffset"),
            commit_ms=durations.get("commitOffsets"),
            state_rows=[state.numRowsTotal for state in states],
            state_memory_bytes=[state.memoryUsedBytes for state in states],
            state_removal_ms=[state.allRemovalsTimeMs for state in states],
            rows_dropped_by_watermark=dropped,
            watermark=progress.eventTime.get("watermark"),
        )
        if dropped:
            log.error(
                "rows dropped by the watermark (not counted): did the Kafka broker's clock jump by more than "
                "DEDUP_WINDOW? Reprocess from scratch to count them (docs/troubleshooting.md)",
                batch_id=progress.batchId,
                rows=dropped,
            )

    def onQueryIdle(self, event: QueryIdleEvent) -> None:
        pass

    def onQueryTerminated(self, event: QueryTerminatedEvent) -> None:
        pass


class QueryId:
    """The running query's id, known only once it started; the sink waits for it."""

    def __init__(self) -> None:
        self._value: str | None = None
        self._ready = threading.Event()

    def set(self, value: str) -> None:
        self._value = value
        self._ready.set()

    def __call__(self) -> str:
        if not self._ready.wait(timeout=300) or self._value is None:
            raise RuntimeError("the streaming query id is not known: the query did not start")
        return self._value


def start_query(spark: SparkSession, settings: Settings, sink: MetricsSink) -> StreamingQuery:
    return (
        pipeline(source(spark, settings), settings)
        .writeStream.queryName(settings.query_name)
        .foreachBatch(sink)
        .trigger(processingTime=settings.trigger_interval)
        .option("checkpointLocation", settings.checkpoint_location)
        .start()
    )


def run_query_once(spark: SparkSession, settings: Settings, stop: threading.Event) -> tuple[str | None, int]:
    """Start the query and wait until it ends: (why it failed or None when stopped, batches it committed)."""
    query_id = QueryId()
    sink = MetricsSink(settings, query_id)
    try:
        query = start_query(spark, settings, sink)
    except Exception as exc:  # e.g. an unreadable checkpoint; treated like a failed query
        return str(exc).splitlines()[0], 0
    query_id.set(str(query.id))
    log.info(
        "query started",
        query_id=str(query.id),
        run_id=str(query.runId),
        checkpoint=settings.checkpoint_location,
        trigger=settings.trigger_interval,
    )
    try:
        while not query.awaitTermination(1):
            if stop.is_set():
                log.info("stopping query", query_id=str(query.id))
                query.stop()
        failure = None if stop.is_set() else query.exception()
    except StreamingQueryException as exc:
        failure = exc
    if failure is None and not stop.is_set():
        return "the query stopped without an error", sink.committed_batches
    return (str(failure).splitlines()[0] if failure else None), sink.committed_batches


def run(settings: Settings, stop: threading.Event) -> int:
    """Run the query until `stop` is set; restart it from its checkpoint with backoff after a failure."""
    spark = build_session(settings)
    spark.streams.addListener(ProgressLogger())
    failures = 0
    backoff = settings.restart_backoff_initial_seconds
    while not stop.is_set():
        failure, committed = run_query_once(spark, settings, stop)
        if failure is None:
            break
        if committed:
            failures, backoff = 0, settings.restart_backoff_initial_seconds
        failures += 1
        log.error(
            "query failed; restarting from the checkpoint",
            error=failure,
            consecutive_failures=failures,
            retry_in_seconds=backoff,
        )
        if settings.max_consecutive_failures and failures >= settings.max_consecutive_failures:
            log.error("giving up after consecutive failures", consecutive_failures=failures)
            return 1
        stop.wait(backoff)
        backoff = min(backoff * 2, settings.restart_backoff_max_seconds)
    spark.stop()
    return 0


def main() -> int:
    logs.configure()
    try:
        settings = load_settings()
    except SettingsError as exc:
        log.error("cannot start", error=str(exc))
        return 2
    stop = threading.Event()

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        log.info("stop requested", signal=signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    started = time.monotonic()
    code = run(settings, stop)
    log.info("job ended", exit_code=code, seconds=round(time.monotonic() - started, 1))
    return code


if __name__ == "__main__":
    sys.exit(main())
