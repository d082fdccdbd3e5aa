"""The recompute-from-history approach, timed side by side with our incremental job.

    python bench/recompute_baseline.py            # history of 1M, 5M, 10M events (make bench-baseline)
    python bench/recompute_baseline.py --quick    # 100k, 500k, 1M

What typical solutions do every minute, implemented as well as we can so that the comparison is fair: re-read the
whole topic from the earliest offset and recompute all the metrics over all events, then overwrite the tables.
One trigger (`recompute`):

1. batch read of the events and dead-letter topics from `earliest` to the end of the history (Kafka source);
2. the job's own parsing and validation (spark/transforms.py `kafka_records` + `parse_records`: the same JSON
   parse, rules and identity), valid events only;
3. exact deduplication over the whole history by identity, and the metrics with window functions: per user
   `lag(event_at)` ordered by time -> the gaps -> count, first, last and `avg(gap)`; per event type `count` and
   `countDistinct(user_id)`. The distinct events are partitioned by user once: the dedup (by user and identity),
   the window and the per-user aggregate share that one shuffle; they are cached for the per-type aggregate;
4. JDBC overwrite (`mode=overwrite, truncate=true`, batched inserts, timestamps as text like the job's sink) of
   `user_metrics` and `event_type_metrics` in a private database.

Same Spark session settings as the job (spark/job.py `spark_conf`: 4 shuffle partitions, UTC, JIT option), master
local[2]. Time per trigger = wall time of steps 1-4. It does not write rejected records or the per-minute
table (the job does both: the baseline does less work per event).

Comparison ("ours for the same new batch"): history H = the first H events of a topic; the new batch = its last
1M events (one minute at the benchmark's rate of 1M events per minute). Ours(H) = our job's triggerExecution for the
micro-batch that brought its tables to H events, i.e. batch H/1M - 1 of the flat run of bench/spark_job.py (it
processes only those 1M events, with H - 1M events already in its state and tables). Ratio = baseline(H) / ours(H).
Before the timed triggers, one warm-up trigger on a small history (JIT, code generation): the baseline is timed
warm, as a job that runs every minute would be. Ours at H = 1M is the job's first, cold, batch.

Standalone, it publishes its own 10M events to a private topic (same generator as bench/spark_job.py) and takes
ours from bench/results/spark.json (the flat run). `make bench` (bench/run_all.py) runs it on the flat run's own
topic instead, right after the flat run, so both read the very same events.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import spark_job as sj  # noqa: E402
from spark import sink, transforms  # noqa: E402
from spark.job import spark_conf  # noqa: E402
from spark.settings import Settings  # noqa: E402
from tests.integration import spark_harness as h  # noqa: E402

TARGET_RATIO_MIN = 10.0
MASTER = "local[2]"


# ---------------------------------------------------------------------------------------------------------------
# The recompute approach
# ---------------------------------------------------------------------------------------------------------------
def metrics_from_parsed(parsed: DataFrame) -> tuple[DataFrame, DataFrame, DataFrame]:
    """transforms.parse_records' rows -> (distinct events, user_metrics, event_type_metrics) over all of them."""
    distinct = (
        parsed.where(F.col("is_event"))
        .select("user_id", "event_type", "event_at", "dedup_key")
        .repartition("user_id")
        .dropDuplicates(["user_id", "dedup_key"])  # the identity includes the user: copies share a partition
        .select("user_id", "event_type", "event_at")
    )
    by_time = Window.partitionBy("user_id").orderBy("event_at")
    gap_seconds = (F.unix_micros("event_at") - F.unix_micros(F.lag("event_at").over(by_time))) / F.lit(1_000_000.0)
    user_metrics = (
        distinct.select("user_id", "event_at", gap_seconds.alias("gap_seconds"))
        .groupBy("user_id")
        .agg(
            F.count(F.lit(1)).alias("event_count"),
            F.min("event_at").alias("first_event_at"),
            F.max("event_at").alias("last_event_at"),
            F.avg("gap_seconds").alias("avg_seconds_between_events"),  # NULL for one event (no gap)
        )
    )
    event_type_metrics = distinct.groupBy("event_type").agg(
        F.count(F.lit(1)).alias("total_events"), F.countDistinct("user_id").alias("unique_users")
    )
    return distinct, user_metrics, event_type_metrics


def read_history(spark: SparkSession, settings: Settings, ending: Mapping[str, Mapping[str, int]] | None) -> DataFrame:
    """Both topics from the earliest offset to `ending` ({topic: {partition: offset}}), or to the latest."""
    return (
        spark.read.format("kafka")
        .option("kafka.bootstrap.servers", settings.kafka_bootstrap_servers)
        .option("subscribe", f"{settings.events_topic},{settings.dlq_topic}")
        .option("startingOffsets", "earliest")
        .option("endingOffsets", json.dumps(ending) if ending else "latest")
        .option("failOnDataLoss", "true")
        .load()
    )


def overwrite(frame: DataFrame, table: str, settings: Settings) -> None:
    # truncate: keep the schema's table (types, keys); TRUNCATE then batched INSERTs
    writer = sink.jdbc_writer(transforms.timestamps_as_text(frame), table, settings)
    writer.option("truncate", "true").mode("overwrite").save()


def recompute(spark: SparkSession, settings: Settings, ending: Mapping[str, Mapping[str, int]] | None = None) -> float:
    """One trigger of the recompute approach; returns its wall time in seconds."""
    started = time.monotonic()
    parsed = transforms.parse_records(
        transforms.kafka_records(read_history(spark, settings, ending)),
        settings.dlq_topic,
        settings.rejected_raw_max_chars,
    )
    distinct, user_metrics, event_type_metrics = metrics_from_parsed(parsed)
    distinct.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        overwrite(user_metrics, "user_metrics", settings)
        overwrite(event_type_metrics, "event_type_metrics", settings)
    finally:
        distinct.unpersist()
    return time.monotonic() - started


def build_session(settings: Settings) -> SparkSession:
    """A session with the job's own settings (spark/job.py spark_conf), on local[2]."""
    builder = SparkSession.builder.master(MASTER)
    for key, value in {**spark_conf(settings), "spark.app.name": settings.query_name}.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark


# ---------------------------------------------------------------------------------------------------------------
# The benchmark
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Ours:
    """Our job's batch for history H: the flat run's rows (bench/spark_job.py) and its batch size."""

    rows: Sequence[Mapping[str, Any]]
    batch_events: int

    def at(self, history: int) -> dict[str, Any]:
        index = history // self.batch_events - 1
        if not self.rows:
            return {"ours_batch_id": None, "ours_seconds": None, "ours_note": "no flat run of bench/spark_job.py"}
        note = None
        if index >= len(self.rows):
            index = len(self.rows) - 1
            note = f"the flat run has {len(self.rows)} batches: its last one stands in (ours is flat with history)"
        row = self.rows[index]
        return {"ours_batch_id": row["batch_id"], "ours_seconds": row["seconds"], "ours_note": note}


def ratio(baseline: float | None, ours: float | None) -> float | None:
    return round(baseline / ours, 2) if baseline and ours else None


def private_settings(events_topic: str, dlq_topic: str, database: str) -> Settings:
    return Settings(
        events_topic=events_topic,
        dlq_topic=dlq_topic,
        mysql_database=database,
        mysql_port=h.MYSQL_PORT,
        kafka_bootstrap_servers=h.KAFKA_BOOTSTRAP,
        query_name="recompute-baseline",
    )


def create_baseline_database(name: str) -> None:
    """The private database; the application user may also TRUNCATE its tables there (overwrite needs DROP)."""
    h.create_database(name)
    h.admin(f"GRANT DROP ON `{name}`.* TO '{h.MYSQL_USER}'@'%'")


def check_tables(database: str) -> dict[str, int]:
    return {
        "events": int(h.scalar(database, "SELECT COALESCE(SUM(total_events), 0) FROM event_type_metrics")),
        "users": int(h.scalar(database, "SELECT COUNT(*) FROM user_metrics")),
        "users_event_total": int(h.scalar(database, "SELECT COALESCE(SUM(event_count), 0) FROM user_metrics")),
    }


def run_baseline(
    events_topic: str,
    dlq_topic: str,
    boundaries: Mapping[int, Mapping[str, int]],
    *,
    histories: Sequence[int],
    warmup: int,
    ours: Ours,
) -> dict[str, Any]:
    """Time one recompute trigger per history (after a warm-up one) on `events_topic` up to each boundary."""
    database = f"baseline_{int(time.time())}"
    create_baseline_database(database)
    settings = private_settings(events_topic, dlq_topic, database)
    spark = build_session(settings)
    dlq_end = sj.end_offsets(dlq_topic)

    def ending(history: int) -> dict[str, dict[str, int]]:
        return {events_topic: dict(boundaries[history]), dlq_topic: dlq_end}

    try:
        warm = recompute(spark, settings, ending(warmup))
        print(f"baseline: warm-up trigger ({warmup:,} events) {warm:.1f}s", flush=True)
        rows = []
        for history in histories:
            seconds = recompute(spark, settings, ending(history))
            checks = check_tables(database)
            mine = ours.at(history)
            rows.append(
                {
                    "history_events": history,
                    "baseline_seconds": round(seconds, 3),
                    **mine,
                    "ratio": ratio(seconds, mine["ours_seconds"]),
                    "checks": checks,
                    "correct": checks["events"] == history == checks["users_event_total"],
                }
            )
            print(f"baseline: history {history:,} -> {seconds:.1f}s (ours {mine['ours_seconds']}s)", flush=True)
    finally:
        spark.stop()
        h.drop_database(database)
    last = rows[-1]
    return {
        "benchmark": "recompute_baseline",
        "description": "recompute-from-history every trigger (re-read the topic, window functions, JDBC overwrite) "
        "vs our incremental job, for the same new batch",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": sj.machine(),
        "config": {"master": MASTER, "shuffle_partitions": settings.shuffle_partitions, "users": 100_000},
        "definition": {
            "history": "the first H events of the topic (exact Kafka offsets recorded when publishing)",
            "new_batch": f"the last {ours.batch_events:,} events of that history",
            "baseline_seconds": "wall time of one recompute trigger over all H events (read, parse, dedup, window "
            "functions, JDBC overwrite of user_metrics and event_type_metrics), after a warm-up trigger",
            "ours_seconds": "our job's triggerExecution for the micro-batch that brought its tables to H events "
            "(bench/spark_job.py flat run, batch H / new_batch - 1); the first batch is a cold JVM",
            "ratio": "baseline_seconds / ours_seconds",
        },
        "warmup": {"history_events": warmup, "baseline_seconds": round(warm, 3)},
        "rows": rows,
        "baseline_growth": round(last["baseline_seconds"] / rows[0]["baseline_seconds"], 2),
        "target": {"history_events": last["history_events"], "ratio_min": TARGET_RATIO_MIN},
        "met": bool(last["ratio"] and last["ratio"] >= TARGET_RATIO_MIN),
    }


def ours_from_file(path: Path) -> Ours:
    if not path.exists():
        return Ours([], 1_000_000)
    flat = json.loads(path.read_text()).get("flat") or {}
    return Ours(flat.get("rows", []), flat.get("batch_events", 1_000_000))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="histories of 100k, 500k, 1M (results in bench/tmp)")
    parser.add_argument("--histories", type=sj.int_list, help="events of history (default 1M,5M,10M)")
    parser.add_argument("--producers", type=int, default=2)
    parser.add_argument("--ours", type=Path, help="spark.json with our flat run (default: next to the output)")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args(argv)
    plan = sj.Plan.quick() if args.quick else sj.Plan.full()
    histories = args.histories or tuple(plan.batch_events * k for k in (1, 5, 10))
    out_dir = sj.results_dir(args.quick)
    ours = ours_from_file(args.ours or out_dir / "spark.json")

    run = h.JobRun(workdir=Path(tempfile.mkdtemp(prefix="baseline-", dir=ROOT / ".stack")))
    h.create_topics([run.events_topic, run.dlq_topic])
    try:
        publisher = sj.Publisher(run.events_topic, plan.users, seed=1, processes=args.producers)
        publisher.publish_to([plan.warmup, *histories])
        print(f"baseline: published {publisher.published:,} events in {publisher.seconds:.0f}s", flush=True)
        result = run_baseline(
            run.events_topic, run.dlq_topic, publisher.boundaries, histories=histories, warmup=plan.warmup, ours=ours
        )
        result["setup"] = publisher.summary()
        result["quick"] = args.quick
    finally:
        h.delete_topics([run.events_topic, run.dlq_topic])
        run.workdir.rmdir()
    sj.write_result(result, args.output or out_dir / "recompute_baseline.json")
    print(json.dumps({k: v for k, v in result.items() if k != "definition"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
