"""Benchmark of the host Lambda executor against a running LocalStack (LAMBDA_RUNTIME_EXECUTOR=host).

    .venv/bin/python bench/lambda_executor.py [--endpoint http://127.0.0.1:4566] [--cold 8] [--warm 300]

Measures, with boto3 as the client:

* cold start: CreateFunction -> Active, then the first Invoke of a handler that imports boto3 (spawning the
  environment, starting the interpreter, importing the handler, the invocation itself), one new function per sample;
* warm invoke: Invoke of a no-op handler on a warm environment. The handler's body takes microseconds, so the
  whole client round trip counts as overhead (LocalStack's Invoke API, the executor, the Runtime API, the callbacks);
  the REPORT line's Duration (measured by the init, from LocalStack's /invoke to the runtime's answer) is shown too;
* for reference, the round trip of a LocalStack API call that runs no function (GetFunctionConfiguration).

Targets: warm overhead <= 50 ms median, cold start with boto3 <= 1.5 s. Prints a table, writes
bench/results/lambda_executor.json. Not a test: numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import platform
import re
import statistics
import sys
import time
import uuid
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "lambda_executor.json"
ROLE_ARN = "arn:aws:iam::000000000000:role/bench"
TARGET_WARM_OVERHEAD_MS = 50.0
TARGET_COLD_START_MS = 1500.0

HANDLER_SOURCE = """
import boto3  # what makes a realistic cold start: the SDK import dominates

def with_boto3(event, context):
    return {"ok": True, "boto3": boto3.__version__}

def noop(event, context):
    return {"ok": True}
"""
DURATION = re.compile(r"\tDuration: ([\d.]+) ms")
INIT_DURATION = re.compile(r"Init Duration: ([\d.]+) ms")


def package() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("bench_handler.py", HANDLER_SOURCE)
    return buffer.getvalue()


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "median_ms": round(statistics.median(values), 2),
        "p95_ms": round(percentile(values, 0.95), 2),
        "min_ms": round(min(values), 2),
        "max_ms": round(max(values), 2),
    }


class Bench:
    def __init__(self, endpoint: str) -> None:
        config = Config(retries={"max_attempts": 1}, read_timeout=120)
        self.client = boto3.client(
            "lambda",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",  # noqa: S106 - LocalStack's fixed test credentials
            config=config,
        )
        self.zip = package()
        self.created: list[str] = []

    def create(self, handler: str) -> str:
        name = f"bench-{uuid.uuid4().hex[:10]}"
        self.client.create_function(
            FunctionName=name,
            Runtime="python3.11",
            Handler=f"bench_handler.{handler}",
            Role=ROLE_ARN,
            Code={"ZipFile": self.zip},
            Timeout=30,
            MemorySize=256,
        )
        self.created.append(name)
        deadline = time.monotonic() + 60
        while (state := self.client.get_function_configuration(FunctionName=name)["State"]) == "Pending":
            if time.monotonic() > deadline:
                raise RuntimeError(f"function {name} stayed Pending")
            time.sleep(0.05)
        if state != "Active":
            raise RuntimeError(f"function {name} is {state}: is LocalStack running with LAMBDA_RUNTIME_EXECUTOR=host?")
        return name

    def invoke(self, name: str) -> tuple[float, str]:
        started = time.perf_counter()
        response = self.client.invoke(FunctionName=name, Payload=b"{}", LogType="Tail")
        response["Payload"].read()
        elapsed_ms = (time.perf_counter() - started) * 1000
        if response.get("FunctionError"):
            raise RuntimeError(f"benchmark handler failed: {response}")
        return elapsed_ms, base64.b64decode(response.get("LogResult", "")).decode(errors="replace")

    def cleanup(self) -> None:
        for name in self.created:
            self.client.delete_function(FunctionName=name)

    def cold(self, samples: int) -> dict[str, Any]:
        totals, inits = [], []
        for _ in range(samples):
            name = self.create("with_boto3")
            elapsed, logs = self.invoke(name)
            totals.append(elapsed)
            if match := INIT_DURATION.search(logs):
                inits.append(float(match.group(1)))
            self.client.delete_function(FunctionName=name)
            self.created.remove(name)
        return {"first_invoke": summary(totals), "init_duration": summary(inits) if inits else None}

    def warm(self, samples: int) -> dict[str, Any]:
        name = self.create("noop")
        for _ in range(10):  # start the environment and warm both ends' connections
            self.invoke(name)
        round_trips, durations = [], []
        for _ in range(samples):
            elapsed, logs = self.invoke(name)
            round_trips.append(elapsed)
            if match := DURATION.search(logs):
                durations.append(float(match.group(1)))
        api = []
        for _ in range(samples):
            started = time.perf_counter()
            self.client.get_function_configuration(FunctionName=name)
            api.append((time.perf_counter() - started) * 1000)
        return {
            "overhead": summary(round_trips),
            "report_duration": summary(durations),
            "api_call_reference": summary(api),
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--endpoint", default="http://127.0.0.1:4566")
    parser.add_argument("--cold", type=int, default=8, help="cold-start samples (one new function each)")
    parser.add_argument("--warm", type=int, default=300, help="warm invocations")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    bench = Bench(args.endpoint)
    try:
        cold = bench.cold(args.cold)
        warm = bench.warm(args.warm)
    finally:
        bench.cleanup()

    result = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "cpus": __import__("os").cpu_count()},
        "endpoint": args.endpoint,
        "cold_start_with_boto3": cold,
        "warm_invoke": warm,
        "targets": {
            "warm_overhead_median_ms": TARGET_WARM_OVERHEAD_MS,
            "cold_start_median_ms": TARGET_COLD_START_MS,
            "warm_overhead_met": warm["overhead"]["median_ms"] <= TARGET_WARM_OVERHEAD_MS,
            "cold_start_met": cold["first_invoke"]["median_ms"] <= TARGET_COLD_START_MS,
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")

    rows = [
        ("cold start: first invoke (boto3 handler)", cold["first_invoke"]),
        ("cold start: Init Duration (REPORT)", cold["init_duration"]),
        ("warm invoke overhead: round trip of a no-op", warm["overhead"]),
        ("warm invoke: REPORT Duration (inside the init)", warm["report_duration"]),
        ("reference: GetFunctionConfiguration", warm["api_call_reference"]),
    ]
    print(f"{'measure':<48} {'n':>4} {'median ms':>10} {'p95 ms':>9} {'min ms':>8} {'max ms':>8}")
    for label, stats in rows:
        if stats:
            print(
                f"{label:<48} {stats['n']:>4} {stats['median_ms']:>10.1f} {stats['p95_ms']:>9.1f} "
                f"{stats['min_ms']:>8.1f} {stats['max_ms']:>8.1f}"
            )
    targets = result["targets"]
    print(
        f"targets: warm overhead median <= {TARGET_WARM_OVERHEAD_MS:.0f} ms: "
        f"{'met' if targets['warm_overhead_met'] else 'MISSED'}; cold start median <= {TARGET_COLD_START_MS:.0f} ms: "
        f"{'met' if targets['cold_start_met'] else 'MISSED'}"
    )
    print(f"results written to {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
