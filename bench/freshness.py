"""Freshness: seconds from an S3 upload to its row being visible in MySQL, through the real deployed pipeline.

    python bench/freshness.py           # (a) and (b), 12 probes each (make bench-freshness)
    python bench/freshness.py --quick   # 3 + 4 probes (development)

Needs the native stack and the deployed producer (make up; make deploy). Uses the real function
`game-events-producer`, which publishes to the real `game-events` / `game-events-dlq` topics, and the real Spark job
(`python -m spark.job`) reading those topics into a private database with a private checkpoint (so the pipeline's
own `analytics` database and checkpoint are untouched; a new checkpoint first reads the topics' history).

A probe is one small NDJSON file (one event of a user id unique to the probe) uploaded to
`s3://game-events/incoming/freshness/` at a random moment: probe times are drawn uniformly over the mode's window,
so they fall at random phases of the schedule and of the trigger. Its latency = the first MySQL query (every
~200 ms, the application user, autocommit) that sees the probe's user in `user_metrics` - the moment the upload
(PutObject) returned. Reported: p50 and p95 (linear interpolation), min, mean, max and every probe.

Modes:
(a) the contract's defaults: the function as deployed (EventBridge rule rate(1 minute), polling off; checked), the
    job's trigger every 1 minute;
(b) the producer's few-seconds polling and a 5-second trigger: the function invoked with {"mode": "s3", "poll": true}
    (the documented per-invocation form of POLL_ENABLED=true; interval = the deployed POLL_INTERVAL_SECONDS, 5 s),
    kept running for the whole window (re-invoked when an invocation ends), and the job's trigger every 5 seconds.
    The deployment is not changed; the last polling invocation ends by itself (function timeout).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import spark_job as sj  # noqa: E402
from tests.integration import spark_harness as h  # noqa: E402

FUNCTION = "game-events-producer"
RULE = f"{FUNCTION}-schedule"
BUCKET = "game-events"
PREFIX = "incoming/freshness/"
QUERY_EVERY_SECONDS = 0.2


# ---------------------------------------------------------------------------------------------------------------
# Pure helpers
# ---------------------------------------------------------------------------------------------------------------
def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation between the closest ranks (numpy's default)."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def stats(latencies: Sequence[float]) -> dict[str, float | int | None]:
    if not latencies:
        return {"probes_seen": 0, "p50_seconds": None, "p95_seconds": None}
    return {
        "probes_seen": len(latencies),
        "p50_seconds": round(percentile(latencies, 50), 2),
        "p95_seconds": round(percentile(latencies, 95), 2),
        "min_seconds": round(min(latencies), 2),
        "mean_seconds": round(sum(latencies) / len(latencies), 2),
        "max_seconds": round(max(latencies), 2),
    }


def upload_times(count: int, window: float, rng: random.Random) -> list[float]:
    """`count` moments drawn uniformly in [0, window), sorted (seconds from the start of the window)."""
    return sorted(rng.uniform(0, window) for _ in range(count))


def probe_line(user_id: str, index: int, at: datetime) -> bytes:
    event = {
        "user_id": user_id,
        "event_type": "freshness_probe",
        "timestamp": at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "payload": {"probe": index},
    }
    return (json.dumps(event, separators=(",", ":")) + "\n").encode()


@dataclass
class Probe:
    index: int
    user_id: str
    key: str
    due: float  # seconds after the start of the window
    uploaded_at: float | None = None
    seen_at: float | None = None

    @property
    def latency(self) -> float | None:
        if self.uploaded_at is None or self.seen_at is None:
            return None
        return self.seen_at - self.uploaded_at


# ---------------------------------------------------------------------------------------------------------------
# The pipeline's pieces
# ---------------------------------------------------------------------------------------------------------------
def aws(service: str, read_timeout: int = 60) -> Any:
    """A client of LocalStack (AWS_ENDPOINT_URL; LocalStack's documented dummy credentials by default)."""
    return boto3.client(
        service,  # type: ignore[call-overload]
        endpoint_url=os.environ.get("AWS_ENDPOINT_URL", "http://127.0.0.1:4566"),
        region_name=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
        aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "test"),
        aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "test"),
        config=Config(read_timeout=read_timeout, retries={"max_attempts": 0}),
    )


def deployed_configuration() -> dict[str, Any]:
    """The deployed function's polling settings and its schedule; stops with what to do when it is missing."""
    try:
        config = aws("lambda").get_function_configuration(FunctionName=FUNCTION)
    except Exception as exc:
        raise SystemExit(f"the producer {FUNCTION} is not deployed ({exc}); run `make deploy` first") from None
    env = config.get("Environment", {}).get("Variables", {})
    rule = aws("events").describe_rule(Name=RULE)
    return {
        "function": FUNCTION,
        "poll_enabled": env.get("POLL_ENABLED", "false"),
        "poll_interval_seconds": float(env.get("POLL_INTERVAL_SECONDS", "5")),
        "schedule": rule.get("ScheduleExpression"),
        "schedule_state": rule.get("State"),
        "events_topic": env.get("EVENTS_TOPIC"),
    }


class PollingInvoker(threading.Thread):
    """Keeps one invocation {"mode": "s3", "poll": true} of the real function running until stopped."""

    def __init__(self) -> None:
        super().__init__(daemon=True, name="polling-invoker")
        self.stopping = threading.Event()
        self.invocations: list[dict[str, Any]] = []
        self.client = aws("lambda", read_timeout=900)

    def run(self) -> None:
        payload = json.dumps({"mode": "s3", "poll": True}).encode()
        while not self.stopping.is_set():
            started = time.time()
            try:
                response = self.client.invoke(FunctionName=FUNCTION, Payload=payload)
                body = json.loads(response["Payload"].read() or b"{}")
                self.invocations.append({"started": started, "seconds": round(time.time() - started, 1), **body})
            except Exception as exc:  # throttled by a scheduled tick (reserved concurrency 1): try again shortly
                self.invocations.append({"started": started, "error": str(exc)[:200]})
                self.stopping.wait(1)


# ---------------------------------------------------------------------------------------------------------------
# One mode
# ---------------------------------------------------------------------------------------------------------------
def measure(
    database: str, run_id: str, mode: str, *, count: int, window: float, timeout: float, rng: random.Random
) -> list[Probe]:
    """Upload `count` probes at random moments of `window` seconds; poll MySQL until each is visible."""
    s3 = aws("s3")
    probes = [
        Probe(i, f"fresh-{run_id}-{mode}-{i}", f"{PREFIX}{run_id}-{mode}-{i}.ndjson", due)
        for i, due in enumerate(upload_times(count, window, rng))
    ]
    by_user = {p.user_id: p for p in probes}
    conn = h.connect(database)
    start = time.time()
    try:
        with conn.cursor() as cursor:
            while True:
                now = time.time()
                for probe in probes:
                    if probe.uploaded_at is None and now >= start + probe.due:
                        body = probe_line(probe.user_id, probe.index, datetime.now(UTC))
                        s3.put_object(Bucket=BUCKET, Key=probe.key, Body=body)
                        probe.uploaded_at = time.time()
                pending = [p.user_id for p in probes if p.uploaded_at is not None and p.seen_at is None]
                if pending:
                    asked = time.time()
                    marks = ",".join(["%s"] * len(pending))
                    cursor.execute(f"SELECT user_id FROM user_metrics WHERE user_id IN ({marks})", pending)  # noqa: S608
                    for (user_id,) in cursor.fetchall():
                        by_user[user_id].seen_at = asked
                        print(
                            f"freshness {mode}: probe {by_user[user_id].index} {by_user[user_id].latency:.1f}s",
                            flush=True,
                        )
                if all(p.seen_at is not None for p in probes):
                    break
                if now > start + window + timeout:
                    print(f"freshness {mode}: {len(pending)} probes not visible after {timeout:.0f}s", flush=True)
                    break
                time.sleep(QUERY_EVERY_SECONDS)
    finally:
        conn.close()
    return probes


def mode_result(probes: Sequence[Probe], setup: dict[str, Any]) -> dict[str, Any]:
    latencies = [p.latency for p in probes if p.latency is not None]
    return {
        **setup,
        "probes": len(probes),
        **stats(latencies),
        "samples": [
            {"probe": p.index, "upload_offset_seconds": round(p.due, 1), "latency_seconds": round(p.latency, 2)}
            if p.latency is not None
            else {"probe": p.index, "upload_offset_seconds": round(p.due, 1), "latency_seconds": None}
            for p in probes
        ],
    }


def start_job(run: h.JobRun, trigger: str) -> None:
    run.trigger = trigger
    run.start()
    run.wait_log('"query started"', timeout=300)


def warm_up(run: h.JobRun, run_id: str, mode: str, *, probe: bool = False) -> None:
    """Let the (re)started job run its cold first batch before the measured probes.

    Without `probe`, when the topics hold events, that batch is the one reading their history; otherwise a
    warm-up probe goes through the whole pipeline (not counted).
    """
    history: int = sum(sj.end_offsets("game-events").values())
    if not probe and history:
        run.wait_commit_count(0, timeout=900)
        return
    (warm,) = measure(run.database, run_id, f"{mode}-warm-up", count=1, window=0.0, timeout=600, rng=random.Random())  # noqa: S311
    if warm.latency is None:
        raise SystemExit(f"mode ({mode}): the warm-up probe never reached MySQL:\n{run.logs()}")


def cleanup_probes(run_id: str) -> None:
    s3 = aws("s3")
    for prefix in (f"processed/freshness/{run_id}-", f"{PREFIX}{run_id}-"):
        for obj in s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", []):
            s3.delete_object(Bucket=BUCKET, Key=obj["Key"])


@dataclass(frozen=True)
class Plan:
    probes_a: int = 12
    window_a: float = 240.0
    timeout_a: float = 240.0
    probes_b: int = 12
    window_b: float = 120.0
    timeout_b: float = 90.0
    trigger_b: str = "5 seconds"
    modes: tuple[str, ...] = field(default=("a", "b"))

    @staticmethod
    def quick() -> Plan:
        return Plan(probes_a=3, window_a=60.0, probes_b=4, window_b=30.0)


def run_freshness(plan: Plan, seed: int | None = None) -> dict[str, Any]:
    deployed = deployed_configuration()
    if deployed["events_topic"] != "game-events":
        raise SystemExit(f"{FUNCTION} publishes to {deployed['events_topic']}, not game-events: run `make deploy`")
    run_id = uuid.uuid4().hex[:8]
    rng = random.Random(seed)  # noqa: S311 - random moments, not secrets
    run = h.JobRun(
        workdir=Path(tempfile.mkdtemp(prefix="freshness-", dir=ROOT / ".stack")),
        extra_env={
            "EVENTS_TOPIC": "game-events",
            "DLQ_TOPIC": "game-events-dlq",
            "QUERY_NAME": f"freshness-{run_id}",
            "RESTART_BACKOFF_INITIAL_SECONDS": "2",
        },
    )
    h.ensure_jars()
    h.create_database(run.database)
    result: dict[str, Any] = {
        "benchmark": "freshness",
        "description": "seconds from an S3 upload to the row being visible in MySQL (real function, real job)",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": sj.machine(),
        "deployed": deployed,
        "method": "one-event NDJSON file per probe, uploaded at a uniformly random moment of the window; latency = "
        f"first MySQL poll (every {QUERY_EVERY_SECONDS}s) seeing the probe's user - end of PutObject",
        "modes": {},
    }
    try:
        if "a" in plan.modes:
            if deployed["poll_enabled"] != "false" or deployed["schedule_state"] != "ENABLED":
                raise SystemExit(f"mode (a) needs the deployed defaults (schedule on, polling off): {deployed}")
            start_job(run, "1 minute")
            warm_up(run, run_id, "a")
            probes = measure(
                run.database, run_id, "a", count=plan.probes_a, window=plan.window_a, timeout=plan.timeout_a, rng=rng
            )
            result["modes"]["a"] = mode_result(
                probes,
                {
                    "label": "1-minute schedule, 1-minute trigger",
                    "producer": f"EventBridge {deployed['schedule']}, polling off (as deployed)",
                    "trigger": "1 minute",
                    "window_seconds": plan.window_a,
                },
            )
            run.kill()
        if "b" in plan.modes:
            start_job(run, plan.trigger_b)
            invoker = PollingInvoker()
            invoker.start()
            time.sleep(3)  # the invocation is running and has drained incoming/ once
            warm_up(run, run_id, "b", probe=True)
            probes = measure(
                run.database, run_id, "b", count=plan.probes_b, window=plan.window_b, timeout=plan.timeout_b, rng=rng
            )
            invoker.stopping.set()
            result["modes"]["b"] = mode_result(
                probes,
                {
                    "label": f"{deployed['poll_interval_seconds']:g}-second polling, {plan.trigger_b} trigger",
                    "producer": 'invoke {"mode": "s3", "poll": true} kept running '
                    f"(POLL_INTERVAL_SECONDS={deployed['poll_interval_seconds']:g} as deployed)",
                    "trigger": plan.trigger_b,
                    "window_seconds": plan.window_b,
                    "invocations": [
                        {k: v for k, v in i.items() if k in ("seconds", "polls", "files", "error")}
                        for i in invoker.invocations
                    ],
                },
            )
    finally:
        run.kill()
        h.drop_database(run.database)
        shutil.rmtree(run.workdir, ignore_errors=True)
        cleanup_probes(run_id)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="3 + 4 probes over short windows (results in bench/tmp)")
    parser.add_argument("--modes", default="a,b", help="a (1-minute schedule and trigger), b (polling, 5 s trigger)")
    parser.add_argument("--seed", type=int, help="seed of the random upload moments")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args(argv)
    base = Plan.quick() if args.quick else Plan()
    modes = tuple(m.strip() for m in args.modes.split(",") if m.strip())
    plan = dataclasses.replace(base, modes=modes)
    result = run_freshness(plan, args.seed)
    result["quick"] = args.quick
    sj.write_result(result, args.output or sj.results_dir(args.quick) / "freshness.json")
    for name, mode in result["modes"].items():
        print(f"({name}) {mode['label']}: p50 {mode['p50_seconds']}s, p95 {mode['p95_seconds']}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
