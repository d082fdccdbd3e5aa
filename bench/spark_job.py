"""Benchmark of the Spark job: Kafka -> committed MySQL rows for batches of 1,000,000 events (100,000 users).

    python bench/spark_job.py                      # 50 batches of 1,000,000 events (make spark-bench)
    python bench/spark_job.py --batches 3 --events 100000 --users 10000   # a quick look

Needs the native stack (make up). Publishes batches x events messages to a private topic (3 partitions,
LogAppendTime) before the job starts, then runs `python -m spark.job` with MAX_OFFSETS_PER_TRIGGER=events so that
every micro-batch takes exactly one batch worth of events, on a private database and checkpoint. Each batch's
time is Spark's triggerExecution: from fetching the Kafka offsets to the database commit of the batch (and the
checkpoint commit after it). Every batch has the same 100,000 users, 10 events each on average, 5 event types,
new events (no event_id: the identity is the hash of the normalized tuple). Results go to
bench/results/spark.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.integration import spark_harness as h  # noqa: E402

TYPES = ("click", "view", "purchase", "level_start", "login")
RESULTS = ROOT / "bench" / "results" / "spark.json"


def messages(batches: int, events: int, users: int, seed: int = 1) -> Iterator[tuple[bytes, bytes]]:
    rng = random.Random(seed)  # noqa: S311 - reproducible test data
    base = datetime(2026, 12, 1, tzinfo=UTC)
    for n in range(batches * events):
        user = rng.randrange(users)
        at = base + timedelta(microseconds=n * 997 + rng.randrange(1000))
        ts = at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        value = (
            f'{{"user_id":"player-{user}","event_type":"{TYPES[n % 5]}","timestamp":"{ts}",'
            f'"game_id":"g{n % 50}","payload":{{"level":{n % 100},"seq":{n}}}}}'
        )
        yield f"player-{user}".encode(), value.encode()


def progress_lines(log_text: str) -> list[dict[str, Any]]:
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=50)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="spark-bench-", dir=ROOT / ".stack"))
    run = h.JobRun(
        workdir=workdir,
        trigger="1 second",
        extra_env={"MAX_OFFSETS_PER_TRIGGER": str(args.events), "RESTART_BACKOFF_INITIAL_SECONDS": "5"},
    )
    run.setup()
    try:
        started = time.monotonic()
        produced = h.produce(run.events_topic, messages(args.batches, args.events, args.users))
        produce_seconds = time.monotonic() - started
        print(f"published {produced} events in {produce_seconds:.0f}s", flush=True)

        run.start()
        deadline = time.monotonic() + args.timeout
        batches: list[dict[str, Any]] = []
        log_path, position, tail = workdir / "job-1.log", 0, ""
        while time.monotonic() < deadline:
            if log_path.exists():  # read only what was appended since the last look
                with log_path.open(errors="replace") as handle:
                    handle.seek(position)
                    chunk = handle.read()
                    position = handle.tell()
                complete, _, tail = (tail + chunk).rpartition("\n")
                batches += progress_lines(complete)
            if len(batches) >= args.batches:
                break
            if run.process is not None and run.process.poll() is not None:
                raise SystemExit(f"job exited with {run.process.returncode}:\n{run.logs()}")
            time.sleep(5)
        log_text = run.logs_full()
        run.kill()
        sinks = sink_lines(log_text)

        ledger_events = int(h.scalar(run.database, "SELECT COALESCE(SUM(event_rows), 0) FROM spark_batch_ledger"))
        users_in_db = int(h.scalar(run.database, "SELECT COUNT(*) FROM user_metrics"))
        total_in_db = int(h.scalar(run.database, "SELECT COALESCE(SUM(event_count), 0) FROM user_metrics"))
        times = [b["trigger_ms"] / 1000 for b in batches]
        first, last = times[0], times[-1]
        result = {
            "benchmark": "spark_job",
            "description": "Kafka -> committed MySQL rows per micro-batch (Spark triggerExecution)",
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
            "config": {
                "events_per_batch": args.events,
                "users": args.users,
                "batches": args.batches,
                "shuffle_partitions": run.env().get("SHUFFLE_PARTITIONS", "4"),
                "master": "local[*]",
            },
            "produce_seconds": round(produce_seconds, 1),
            "first_batch_seconds": round(first, 3),
            "last_batch_seconds": round(last, 3),
            "last_over_first": round(last / first, 3),
            "median_batch_seconds": round(sorted(times)[len(times) // 2], 3),
            "max_batch_seconds": round(max(times), 3),
            "target": {"first_batch_max_seconds": 10.0, "last_over_first_max": 1.2},
            "met": {"first_batch": first <= 10.0, "last_over_first": last / first <= 1.2},
            "checks": {
                "events_committed": ledger_events,
                "events_expected": args.batches * args.events,
                "user_metrics_rows": users_in_db,
                "user_metrics_event_total": total_in_db,
            },
            "batches": [
                {
                    "batch_id": b["batch_id"],
                    "input_rows": b["input_rows"],
                    "seconds": round(b["trigger_ms"] / 1000, 3),
                    "add_batch_seconds": round((b.get("add_batch_ms") or 0) / 1000, 3),
                    "sink_load_seconds": sinks.get(b["batch_id"], {}).get("load_seconds"),
                    "sink_merge_seconds": sinks.get(b["batch_id"], {}).get("merge_seconds"),
                    "state_rows": b.get("state_rows"),
                }
                for b in batches
            ],
        }
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps({k: v for k, v in result.items() if k != "batches"}, indent=2))
        return 0
    finally:
        run.teardown()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
