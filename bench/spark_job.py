"""Benchmark of the Spark job: Kafka -> committed MySQL rows per micro-batch (Spark's triggerExecution).

    python bench/spark_job.py             # sizes 100k / 1M / 3M, then a 1M batch after 1, 10 and 50 earlier ones
    python bench/spark_job.py --quick     # the same at small sizes (development)
    python bench/spark_job.py --parts flat --flat-after 1,3 --batch-events 100000

Needs the native stack (make up). Each part runs `python -m spark.job` on a private topic (3 partitions,
LogAppendTime), database and checkpoint (tests/integration/spark_harness.py). A batch's time is Spark's
triggerExecution from the job's progress log: from fetching the Kafka offsets to the database commit of the batch
(and the checkpoint commit after it). Events: 100,000 users (uniform), 5 event types, new events (no event_id:
the identity is the hash of the normalized tuple), ~140 bytes each.

Parts:
* sizes: one job (MAX_OFFSETS_PER_TRIGGER=0, trigger every SIZES_TRIGGER) gets a warm-up batch, then batches of
  100k, 1M and 3M events. Spark's processing-time trigger fires at multiples of its interval (epoch-aligned), so each
  size is published right after a tick and flushed well before the next one: the next micro-batch takes exactly that
  size (checked: a split batch is published again).
* flat: (max(after) + 1) x 1M events are published before the job starts; MAX_OFFSETS_PER_TRIGGER=1M makes each
  micro-batch one batch worth. The figures are the batches after 1, 10 and 50 earlier batches (batch ids 1, 10, 50);
  flat = batch 50 / batch 1 <= 1.2.

Publishing tens of millions of messages from Python: messages are built from a bytes template (no json.dumps, a
cached per-second timestamp prefix, numpy random draws per chunk) and produced in a tight loop by several processes
(lz4, 1 MB batches, idempotent). The setup time is measured and reported. Results: bench/results/spark.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from confluent_kafka import Consumer, Producer, TopicPartition

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.integration import spark_harness as h  # noqa: E402

RESULTS_DIR = ROOT / "bench" / "results"
QUICK_RESULTS_DIR = ROOT / "bench" / "tmp" / "results-quick"
TYPES = (b"click", b"view", b"purchase", b"level_start", b"login")
BASE = datetime(2026, 12, 1, tzinfo=UTC)
VALUE_TEMPLATE = (
    b'{"user_id":"player-%d","event_type":"%s","timestamp":"%s.%06dZ","game_id":"g%d","payload":{"level":%d,"seq":%d}}'
)
CHUNK_EVENTS = 250_000
FLAT_TARGET = 1.2
SIZES_TRIGGER_SECONDS = 20


# ---------------------------------------------------------------------------------------------------------------
# Fast message generation and publishing
# ---------------------------------------------------------------------------------------------------------------
def chunk_messages(first: int, count: int, users: int, seed: int) -> Iterator[tuple[bytes, bytes]]:
    """Events first .. first+count-1 of the benchmark's sequence: the same bytes for the same (first, seed).

    Event n: user uniform in [0, users), type TYPES[n % 5], timestamp BASE + n x 997 us + jitter < 1 ms (so
    timestamps increase with n), payload with seq = n (every event distinct).
    """
    rng = np.random.default_rng([seed, first])
    user_ids: list[int] = rng.integers(0, users, count).tolist()
    jitters: list[int] = rng.integers(0, 1000, count).tolist()
    keys = [b"player-%d" % u for u in range(users)]
    prefixes: dict[int, bytes] = {}
    template = VALUE_TEMPLATE
    for i in range(count):
        n = first + i
        user = user_ids[i]
        second, micros = divmod(n * 997 + jitters[i], 1_000_000)
        prefix = prefixes.get(second)
        if prefix is None:
            prefix = (BASE + timedelta(seconds=second)).strftime("%Y-%m-%dT%H:%M:%S").encode()
            prefixes[second] = prefix
        yield keys[user], template % (user, TYPES[n % 5], prefix, micros, n % 50, n % 100, n)


def producer_config() -> dict[str, Any]:
    return {
        "bootstrap.servers": h.KAFKA_BOOTSTRAP,
        "linger.ms": 50,
        "batch.size": 1_000_000,
        "batch.num.messages": 100_000,
        "compression.type": "lz4",
        "enable.idempotence": True,
        "queue.buffering.max.messages": 2_000_000,
        "queue.buffering.max.kbytes": 1_048_576,
    }


def produce_chunk(task: tuple[str, int, int, int, int]) -> int:
    """Worker: publish one chunk of the sequence and wait for every acknowledgement."""
    topic, first, count, users, seed = task
    producer = Producer(producer_config())
    produce, poll = producer.produce, producer.poll
    sent = 0
    for key, value in chunk_messages(first, count, users, seed):
        while True:
            try:
                produce(topic, value, key)
                break
            except BufferError:
                poll(0.05)
        sent += 1
        if not sent % 50_000:
            poll(0)
    if producer.flush(300):
        raise RuntimeError(f"messages of chunk {first}+{count} not delivered to {topic}")
    return sent


def end_offsets(topic: str) -> dict[str, int]:
    """Kafka end offsets of every partition of `topic` ({"0": n, ...}, as Spark's offset JSON has them)."""
    consumer = Consumer({"bootstrap.servers": h.KAFKA_BOOTSTRAP, "group.id": "bench-end-offsets"})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return {
            str(p): consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in sorted(partitions)
        }
    finally:
        consumer.close()


@dataclass
class Publisher:
    """Publishes the benchmark's event sequence to one topic with a pool of processes; remembers boundaries."""

    topic: str
    users: int
    seed: int = 1
    processes: int = 2
    published: int = 0
    seconds: float = 0.0
    boundaries: dict[int, dict[str, int]] = field(default_factory=dict)  # events published -> end offsets

    def publish(self, count: int) -> float:
        """Publish the next `count` events of the sequence; returns the seconds it took (flushed)."""
        tasks = []
        for first in range(self.published, self.published + count, CHUNK_EVENTS):
            size = min(CHUNK_EVENTS, self.published + count - first)
            tasks.append((self.topic, first, size, self.users, self.seed))
        started = time.monotonic()
        if self.processes <= 1 or len(tasks) == 1:
            sent = sum(produce_chunk(task) for task in tasks)
        else:
            context = multiprocessing.get_context("spawn")  # no fork of a process that has librdkafka threads
            with ProcessPoolExecutor(min(self.processes, len(tasks)), mp_context=context) as pool:
                sent = sum(pool.map(produce_chunk, tasks))
        took = time.monotonic() - started
        if sent != count:
            raise RuntimeError(f"published {sent} of {count} events to {self.topic}")
        self.published += count
        self.seconds += took
        self.boundaries[self.published] = end_offsets(self.topic)
        return took

    def publish_to(self, boundaries: Sequence[int]) -> None:
        """Publish up to each boundary in turn (each one recorded with its exact end offsets)."""
        for boundary in sorted(set(boundaries)):
            if boundary > self.published:
                self.publish(boundary - self.published)

    def summary(self) -> dict[str, Any]:
        return {
            "events": self.published,
            "seconds": round(self.seconds, 1),
            "events_per_second": round(self.published / self.seconds) if self.seconds else None,
            "processes": self.processes,
        }


# ---------------------------------------------------------------------------------------------------------------
# The job's progress log
# ---------------------------------------------------------------------------------------------------------------
def progress_lines(log_text: str) -> list[dict[str, Any]]:
    """'batch progress' entries of batches that read rows (idle triggers and empty batches are left out)."""
    out = []
    for line in log_text.splitlines():
        if line.startswith("{") and '"batch progress"' in line:
            entry = json.loads(line)
            if entry.get("input_rows"):
                out.append(entry)
    return out


def sink_lines(log_text: str) -> dict[int, dict[str, Any]]:
    out = {}
    for line in log_text.splitlines():
        if line.startswith("{") and '"batch committed"' in line:
            entry = json.loads(line)
            out[entry["batch_id"]] = entry
    return out


class LogTail:
    """Reads the progress entries appended to the job's log since the last look."""

    def __init__(self, path: Path) -> None:
        self.path, self.position, self.rest = path, 0, ""

    def batches(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        with self.path.open(errors="replace") as handle:
            handle.seek(self.position)
            chunk = handle.read()
            self.position = handle.tell()
        complete, _, self.rest = (self.rest + chunk).rpartition("\n")
        return progress_lines(complete)


def wait_batches(run: h.JobRun, tail: LogTail, count: int, timeout: float) -> list[dict[str, Any]]:
    """Wait until the job logged `count` more non-empty batches; fail early if the job exits."""
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while len(got) < count:
        got += tail.batches()
        if len(got) >= count:
            break
        if run.process is not None and run.process.poll() is not None:
            raise SystemExit(f"the Spark job exited with {run.process.returncode}:\n{run.logs()}")
        if time.monotonic() > deadline:
            raise SystemExit(f"only {len(got)} of {count} batches after {timeout:.0f}s:\n{run.logs()}")
        time.sleep(0.5)
    return got


def batch_row(entry: dict[str, Any], sinks: dict[int, dict[str, Any]]) -> dict[str, Any]:
    sink = sinks.get(entry["batch_id"], {})
    return {
        "batch_id": entry["batch_id"],
        "input_rows": entry["input_rows"],
        "seconds": round(entry["trigger_ms"] / 1000, 3),
        "add_batch_seconds": round((entry.get("add_batch_ms") or 0) / 1000, 3),
        "sink_load_seconds": sink.get("load_seconds"),
        "sink_merge_seconds": sink.get("merge_seconds"),
        # [event deduplication, (user, type) pairs]; state_rows counts keys only with STATE_ROW_COUNT=true
        "state_rows": entry.get("state_rows"),
        "state_memory_bytes": entry.get("state_memory_bytes"),
        "state_removal_ms": entry.get("state_removal_ms"),  # the dedup state's eviction scan (summed over tasks)
    }


def committed_events(database: str, last_batch_id: int) -> int:
    conn = h.connect(database)
    try:
        with conn.cursor() as cursor:
            cursor.execute(
                "SELECT COALESCE(SUM(event_rows), 0) FROM spark_batch_ledger WHERE batch_id <= %s", [last_batch_id]
            )
            row = cursor.fetchone()
            return int(row[0]) if row else 0
    finally:
        conn.close()


def new_run(trigger: str, extra_env: dict[str, str]) -> h.JobRun:
    workdir = Path(tempfile.mkdtemp(prefix="spark-bench-", dir=ROOT / ".stack"))
    run = h.JobRun(workdir=workdir, trigger=trigger, extra_env={"RESTART_BACKOFF_INITIAL_SECONDS": "5", **extra_env})
    run.setup()
    return run


def close_run(run: h.JobRun) -> None:
    run.teardown()
    shutil.rmtree(run.workdir, ignore_errors=True)


# ---------------------------------------------------------------------------------------------------------------
# Part 1: batch time by batch size
# ---------------------------------------------------------------------------------------------------------------
def seconds_to_next_tick(interval: float, now: float | None = None) -> float:
    """Seconds until Spark's next processing-time tick (ticks at multiples of the interval since the epoch)."""
    now = time.time() if now is None else now
    return interval - (now % interval)


def bench_sizes(
    sizes: Sequence[int], warmup: int, users: int, processes: int, interval: int = SIZES_TRIGGER_SECONDS
) -> dict[str, Any]:
    """One job; a warm-up batch, then one micro-batch per size (published between two trigger ticks)."""
    run = new_run(f"{interval} seconds", {"MAX_OFFSETS_PER_TRIGGER": "0"})
    publisher = Publisher(run.events_topic, users, seed=2, processes=processes)
    measured: list[dict[str, Any]] = []
    try:
        run.start()
        run.wait_log('"query started"', timeout=300)
        tail = LogTail(run.workdir / "job-1.log")
        for label, size in [("warm-up", warmup), *((f"{s:,}", s) for s in sizes)]:
            for attempt in range(3):
                time.sleep(seconds_to_next_tick(interval) + 0.5)  # just after a tick: the job is idle until the next
                took = publisher.publish(size)
                if took > interval - 2:
                    print(f"publishing {size:,} took {took:.1f}s: more than a trigger interval", flush=True)
                got = wait_batches(run, tail, 1, timeout=900)
                entry = got[0]
                if entry["input_rows"] == size:
                    break
                # a tick fell inside the publishing: the size was split over two batches; let the rest go through
                print(f"{label}: a batch took {entry['input_rows']:,} of {size:,}; again ({attempt + 1})", flush=True)
                while sum(g["input_rows"] for g in got) < size:
                    got += wait_batches(run, tail, 1, timeout=900)
            else:
                raise SystemExit(f"could not get one micro-batch of exactly {size:,} events")
            measured.append({"label": label, "events": size, "publish_seconds": round(took, 1), **entry})
            print(f"sizes: {label} events -> {entry['trigger_ms'] / 1000:.1f}s", flush=True)
        sinks = sink_lines(run.logs_full())
        last_id = measured[-1]["batch_id"]
        return {
            "method": f"one job, trigger every {interval} s, MAX_OFFSETS_PER_TRIGGER=0; each size published between "
            "two ticks so that one micro-batch takes exactly it; first a warm-up batch (cold JVM)",
            "users": users,
            "warmup": {**batch_row(measured[0], sinks), "events": warmup},
            "batches": [{"events": m["events"], **batch_row(m, sinks)} for m in measured[1:]],
            "setup": publisher.summary(),
            "checks": {
                "events_committed": committed_events(run.database, last_id),
                "events_published": publisher.published,
            },
        }
    finally:
        close_run(run)


# ---------------------------------------------------------------------------------------------------------------
# Part 2: a 1M batch after 1, 10 and 50 earlier batches
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class FlatRun:
    """The flat run's job and topic; the topic can outlive the job (the recompute baseline reads it)."""

    run: h.JobRun
    publisher: Publisher
    result: dict[str, Any]

    def close(self) -> None:
        close_run(self.run)


def median_of(times: Sequence[float]) -> float | None:
    return round(statistics.median(times), 3) if times else None


def bench_flat(
    batch_events: int, after: Sequence[int], users: int, processes: int, extra_events: Sequence[int] = ()
) -> FlatRun:
    """Publish (max(after)+1) batches (and up to any `extra_events` boundary), then time the job's batches."""
    batches = max(after) + 1
    run = new_run("1 second", {"MAX_OFFSETS_PER_TRIGGER": str(batch_events)})
    publisher = Publisher(run.events_topic, users, seed=1, processes=processes)
    try:
        publisher.publish_to([batch_events * batches, *extra_events])
        print(f"flat: published {publisher.published:,} events in {publisher.seconds:.0f}s", flush=True)
        run.start()
        tail = LogTail(run.workdir / "job-1.log")
        seen: list[dict[str, Any]] = []
        while len(seen) < batches:
            seen += wait_batches(run, tail, 1, timeout=1800)
            print(f"flat: batch {seen[-1]['batch_id']}: {seen[-1]['trigger_ms'] / 1000:.1f}s", flush=True)
        run.kill()
        seen = seen[:batches]
        sinks = sink_lines(run.logs_full())
        rows = [batch_row(b, sinks) for b in seen]
        times = [r["seconds"] for r in rows]
        at = {str(k): times[k] for k in after}
        first_k, last_k = min(after), max(after)
        ratio = times[last_k] / times[first_k]
        window = 3
        result = {
            "method": f"{batches} x {batch_events:,} events published first; MAX_OFFSETS_PER_TRIGGER={batch_events}; "
            "batch k has k earlier batches in the dedup state and the tables",
            "batch_events": batch_events,
            "batches": batches,
            "users": users,
            "cold_first_batch_seconds": times[0],
            "seconds_after_earlier_batches": at,
            "ratio": round(ratio, 3),
            "ratio_definition": f"batch {last_k} / batch {first_k} (both after a warm JVM)",
            "median_of_3": {
                str(first_k): median_of(times[first_k : first_k + window]),
                str(last_k): median_of(times[max(first_k, last_k - window + 1) : last_k + 1]),
            },
            "median_warm_batch_seconds": median_of(times[1:]),
            "target_ratio_max": FLAT_TARGET,
            "met": ratio <= FLAT_TARGET,
            "setup": publisher.summary(),
            "checks": {
                "events_committed": committed_events(run.database, rows[-1]["batch_id"]),
                "input_rows_of_the_batches": sum(r["input_rows"] for r in rows),
            },
            "rows": rows,
        }
        return FlatRun(run, publisher, result)
    except BaseException:
        close_run(run)
        raise


# ---------------------------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Plan:
    sizes: tuple[int, ...]
    warmup: int
    batch_events: int
    after: tuple[int, ...]
    users: int

    @staticmethod
    def full() -> Plan:
        return Plan((100_000, 1_000_000, 3_000_000), 100_000, 1_000_000, (1, 10, 50), 100_000)

    @staticmethod
    def quick() -> Plan:
        return Plan((10_000, 100_000, 300_000), 10_000, 100_000, (1, 3), 100_000)


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_1m_before": round(os.getloadavg()[0], 2),
    }


def int_list(text: str) -> tuple[int, ...]:
    return tuple(int(part.replace("_", "")) for part in text.split(",") if part.strip())


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes for development (results in bench/tmp)")
    parser.add_argument("--parts", default="sizes,flat", help="comma-separated: sizes, flat")
    parser.add_argument("--sizes", type=int_list, help="batch sizes of the sizes part (default 100k,1M,3M)")
    parser.add_argument("--batch-events", type=int, help="events per batch of the flat part (default 1M)")
    parser.add_argument("--flat-after", type=int_list, help="earlier batches before the measured ones (1,10,50)")
    parser.add_argument("--users", type=int)
    parser.add_argument("--producers", type=int, default=2, help="processes publishing to Kafka")
    parser.add_argument("--output", type=Path)
    return parser.parse_args(argv)


def plan_from(args: argparse.Namespace) -> Plan:
    base = Plan.quick() if args.quick else Plan.full()
    return Plan(
        sizes=args.sizes or base.sizes,
        warmup=base.warmup,
        batch_events=args.batch_events or base.batch_events,
        after=args.flat_after or base.after,
        users=args.users or base.users,
    )


def results_dir(quick: bool) -> Path:
    return QUICK_RESULTS_DIR if quick else RESULTS_DIR


def write_result(result: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}", flush=True)


def base_result(plan: Plan, quick: bool, processes: int) -> dict[str, Any]:
    return {
        "benchmark": "spark_job",
        "description": "Kafka -> committed MySQL rows per micro-batch (Spark triggerExecution from the job's log)",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": quick,
        "machine": machine(),
        "config": {
            "users": plan.users,
            "master": "local[*] (the job's default)",
            "shuffle_partitions": h.JobRun(Path()).env().get("SHUFFLE_PARTITIONS", "4"),
            "publishing_processes": processes,
        },
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    plan = plan_from(args)
    parts = {p.strip() for p in args.parts.split(",")}
    result = base_result(plan, args.quick, args.producers)
    if "sizes" in parts:
        result["sizes"] = bench_sizes(plan.sizes, plan.warmup, plan.users, args.producers)
    if "flat" in parts:
        flat = bench_flat(plan.batch_events, plan.after, plan.users, args.producers)
        flat.close()
        result["flat"] = flat.result
    write_result(result, args.output or results_dir(args.quick) / "spark.json")
    print(json.dumps({k: v for k, v in result.items() if k not in ("flat", "sizes")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
