#!/usr/bin/env python3
"""Benchmark of the producer: one invocation publishing a 1,000,000-event NDJSON file from S3 to Kafka.

Needs Kafka and LocalStack (`make up`). So that a million synthetic events do not land in the pipeline's own
topic and bucket, it deploys template.yaml a second time, as stack `game-events-bench`: the same code and settings,
with function `game-events-producer-bench`, bucket `game-events-bench`, topics `game-events-bench` /
`game-events-bench-dlq` (created like the real ones: 3 partitions, LogAppendTime) and the schedule off. Steps:
1. deploy that stack with infra/deploy.py (the real deployment path);
2. generate the file with the producer's own traffic generator (seeded) into bench/tmp/ and upload it;
3. invoke the function with {"mode": "s3", "key": ...} and wait for it (acks=all: every delivery is confirmed
   before it returns);
4. check with Kafka's end offsets that the topic grew by the number of events, write bench/results/producer.json,
   and delete the bench topics (--keep-topics keeps them).

`--in-process` runs the same ProducerService in this process instead of through Lambda (same S3 and Kafka),
which separates the cost of the function's work from that of the Lambda executor.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "functions"))

from producer.generator import TrafficGenerator  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "producer.json"
SCRATCH = ROOT / "bench" / "tmp"
STACK = "game-events-bench"
FUNCTION = "game-events-producer-bench"
BUCKET = "game-events-bench"
TOPIC = "game-events-bench"
DLQ_TOPIC = "game-events-bench-dlq"
TARGET_EVENTS_PER_SECOND = 100_000


def make_file(count: int, seed: int) -> Path:
    path = SCRATCH / f"bench-{count}-seed{seed}.ndjson"
    if not path.exists():
        SCRATCH.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        partial = path.with_suffix(".partial")
        start = datetime(2024, 1, 1, tzinfo=UTC)
        with partial.open("w") as out:
            for event in TrafficGenerator(users=100_000, games=20, seed=seed, rate=1000.0, start=start).events(count):
                out.write(json.dumps(event, separators=(",", ":")) + "\n")
        partial.rename(path)
        print(f"generated {path.relative_to(ROOT)} in {time.monotonic() - started:.0f}s")
    return path


def deploy_bench_stack(endpoint: str, bootstrap: str) -> None:
    parameters = {
        "FunctionName": FUNCTION,
        "EventsBucketName": BUCKET,
        "EventsTopic": TOPIC,
        "DeadLetterTopic": DLQ_TOPIC,
        "KafkaBootstrapServers": bootstrap,
        "ScheduleEnabled": "false",
    }
    command = [sys.executable, str(ROOT / "infra" / "deploy.py"), "--stack-name", STACK]
    for key, value in parameters.items():
        command += ["--parameter", f"{key}={value}"]
    subprocess.run(command, check=True, env={**os.environ, "AWS_ENDPOINT_URL": endpoint})  # noqa: S603 (own script)


def create_topics(admin: AdminClient) -> None:
    config = {"message.timestamp.type": "LogAppendTime"}
    futures = admin.create_topics([NewTopic(t, 3, 1, config=config) for t in (TOPIC, DLQ_TOPIC)])
    for future in futures.values():
        try:
            future.result()
        except KafkaException as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise


def end_offsets(bootstrap: str, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-producer-offsets"})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        total = 0
        for partition in partitions:
            _, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            total += high
        return total
    finally:
        consumer.close()


def invoke_lambda(session: Any, endpoint: str, key: str) -> dict[str, Any]:
    client = session.client(
        "lambda", endpoint_url=endpoint, config=Config(read_timeout=900, retries={"max_attempts": 0})
    )
    response = client.invoke(FunctionName=FUNCTION, Payload=json.dumps({"mode": "s3", "key": key}).encode())
    body = json.loads(response["Payload"].read())
    if response.get("FunctionError"):
        raise SystemExit(f"the function failed: {body}")
    result: dict[str, Any] = body
    return result


def invoke_in_process(endpoint: str, key: str) -> dict[str, Any]:
    os.environ.update(AWS_ENDPOINT_URL=endpoint, EVENTS_BUCKET=BUCKET, EVENTS_TOPIC=TOPIC, DLQ_TOPIC=DLQ_TOPIC)
    # The function's S3 client takes boto3's default credentials: LocalStack's dummy ones unless set (as in main).
    defaults = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}
    for name, default in defaults.items():
        os.environ.setdefault(name, default)
    from producer.handler import dependencies  # noqa: PLC0415 (reads the environment set just above)

    result: dict[str, Any] = dependencies().service.drain(lambda: 900.0, owner="bench", key=key).as_dict()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=20240101)
    parser.add_argument("--in-process", action="store_true", help="run the service here instead of in Lambda")
    parser.add_argument("--keep-topics", action="store_true", help="do not delete the bench topics afterwards")
    args = parser.parse_args()

    endpoint = os.environ.get("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    session = boto3.session.Session(
        aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "test"),
        aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "test"),
        region_name=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
    )
    s3 = session.client("s3", endpoint_url=endpoint)
    admin = AdminClient({"bootstrap.servers": bootstrap})

    deploy_bench_stack(endpoint, bootstrap)
    create_topics(admin)
    path = make_file(args.events, args.seed)
    key = f"incoming/bench/{datetime.now(UTC):%Y%m%dT%H%M%S}-{path.name}"
    started = time.monotonic()
    s3.upload_file(str(path), BUCKET, key)
    print(f"uploaded {path.stat().st_size / 2**20:.0f} MiB to s3://{BUCKET}/{key} in {time.monotonic() - started:.0f}s")

    before = end_offsets(bootstrap, TOPIC)
    load_before = round(os.getloadavg()[0], 2)  # other work on the same cores lowers the figure
    mode = "in-process" if args.in_process else "lambda"
    started = time.monotonic()
    summary = invoke_in_process(endpoint, key) if args.in_process else invoke_lambda(session, endpoint, key)
    wall = time.monotonic() - started
    grown = end_offsets(bootstrap, TOPIC) - before
    s3.delete_object(Bucket=BUCKET, Key="processed/" + key.removeprefix("incoming/"))  # 208 MiB of LocalStack memory
    if not args.keep_topics:
        for future in admin.delete_topics([TOPIC, DLQ_TOPIC]).values():
            future.result()

    result = {
        "benchmark": "producer: one invocation, NDJSON file from LocalStack S3 to Kafka (acks=all, idempotent)",
        "stack": f"{STACK} (template.yaml; function {FUNCTION}, topic {TOPIC})",
        "mode": mode,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "load_average_1m_before": load_before,
        },
        "events": args.events,
        "file_bytes": path.stat().st_size,
        "function_summary": summary,
        "function_seconds": summary["seconds"],
        "events_per_second": round(summary["events_published"] / summary["seconds"]),
        "invoke_wall_seconds": round(wall, 3),
        "events_per_second_wall": round(summary["events_published"] / wall),
        "topic_offsets_grown": grown,
        "target_events_per_second": TARGET_EVENTS_PER_SECOND,
        "command": "make bench-producer" + (" ARGS=--in-process" if args.in_process else ""),
    }
    result["target_met"] = result["events_per_second"] >= TARGET_EVENTS_PER_SECOND
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    existing = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    existing[mode] = result
    RESULTS.write_text(json.dumps(existing, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    if summary["events_published"] != args.events or grown < args.events:
        print(f"MISMATCH: published {summary['events_published']}, topic grew by {grown}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
