"""`make demo`: the whole pipeline end to end on the native stack, with progress, then the metrics and a chart.

1. start Kafka, MariaDB and LocalStack (installing what is missing);
2. deploy the producer from template.yaml to LocalStack (CloudFormation with the SAM transform);
3. start the Spark job in the background (trigger every DEMO_TRIGGER, default 1 minute);
4. upload the sample data set (events/data/) to s3://game-events/incoming/;
5. wait, showing progress, until the scheduled producer has taken every file and a Spark batch has committed
   everything that reached Kafka;
6. print the metrics (tools/report.py) and write a chart.

The stack and the job keep running afterwards; `make down` stops them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
from confluent_kafka import Consumer, TopicPartition

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "events" / "data"
OUT = ROOT / "out"
BUCKET = "game-events"
TOPICS = ("game-events", "game-events-dlq")


def load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


stack = load("stack", ROOT / "infra" / "stack.py")
report = load("report", ROOT / "tools" / "report.py")
STARTED = time.monotonic()


def step(number: int, text: str) -> None:
    print(f"\n[demo {time.monotonic() - STARTED:5.0f}s] {number}/6 {text}", flush=True)


def note(text: str) -> None:
    print(f"              {text}", flush=True)


def s3_client() -> Any:
    return boto3.client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{stack.S.localstack_port}",
        region_name=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
        aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "test"),
        aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "test"),
    )


def keys(s3: Any, prefix: str) -> set[str]:
    found: set[str] = set()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        found.update(obj["Key"] for obj in page.get("Contents", []))
    return found


def kafka_end_offsets(consumer: Consumer) -> dict[str, dict[str, int]]:
    ends: dict[str, dict[str, int]] = {}
    metadata = consumer.list_topics(timeout=10)
    for topic in TOPICS:
        for partition in metadata.topics[topic].partitions:
            _, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            ends.setdefault(topic, {})[str(partition)] = high
    return ends


def committed_offsets(checkpoint: Path) -> dict[str, dict[str, int]]:
    """Kafka offsets up to which the newest committed micro-batch has read (from the checkpoint's logs)."""
    job = stack.JOBS["spark"]
    last = job.last_commit()
    if last is None:
        return {}
    offsets_file = checkpoint / "offsets" / str(last[0])
    merged: dict[str, dict[str, int]] = {}
    for line in offsets_file.read_text().splitlines()[2:]:
        if line.startswith("{"):
            for topic, partitions in json.loads(line).items():
                merged.setdefault(topic, {}).update({p: int(o) for p, o in partitions.items()})
    return merged


def caught_up(ends: dict[str, dict[str, int]], done: dict[str, dict[str, int]]) -> bool:
    return all(done.get(t, {}).get(p, 0) >= end for t, parts in ends.items() for p, end in parts.items())


def wait_for_pipeline(uploaded: list[str], timeout: float) -> None:
    s3 = s3_client()
    consumer = Consumer({"bootstrap.servers": f"127.0.0.1:{stack.S.kafka_port}", "group.id": "demo-progress"})
    job = stack.JOBS["spark"]
    deadline = time.monotonic() + timeout
    last_line = ""
    try:
        while time.monotonic() < deadline:
            pending = keys(s3, "incoming/") & {f"incoming/{name}" for name in uploaded}
            ends = kafka_end_offsets(consumer)
            in_kafka = sum(ends["game-events"].values())
            rejected = sum(ends["game-events-dlq"].values())
            done = committed_offsets(job.checkpoint)
            last = job.last_commit()
            batch = f"last batch #{last[0]} committed {time.time() - last[1]:.0f}s ago" if last else "no batch yet"
            line = (
                f"files taken {len(uploaded) - len(pending)}/{len(uploaded)} · events in Kafka {in_kafka:,} "
                f"(+{rejected:,} rejected) · {batch}"
            )
            if line != last_line:
                note(f"[{time.monotonic() - STARTED:4.0f}s] {line}")
                last_line = line
            if not job.running():
                raise SystemExit(f"the Spark job stopped; see {stack.show(job.log_file)}")
            if not pending and in_kafka and caught_up(ends, done):
                note("every file was taken and every event in Kafka is committed to MySQL")
                return
            time.sleep(5)
    finally:
        consumer.close()
    raise SystemExit(
        f"the pipeline did not finish within {timeout:.0f}s. Look at `make status`, the producer's logs "
        "(`.venv/bin/awslocal logs filter-log-events --log-group-name /aws/lambda/game-events-producer`) "
        "and .stack/logs/spark.log"
    )


def write_chart(settings: Any, path: Path) -> Path:
    """Events per type over event time (per minute), totals per type, and the distribution of average gaps."""
    import matplotlib  # noqa: PLC0415 - only the demo draws

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    connection = report.connect(settings)
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT minute_start, event_type, total_events FROM event_type_minute_metrics ORDER BY minute_start"
            )
            minutes = cursor.fetchall()
            cursor.execute("SELECT event_type, total_events, unique_users FROM event_type_metrics ORDER BY event_type")
            per_type = cursor.fetchall()
            cursor.execute(
                "SELECT avg_seconds_between_events FROM user_metrics WHERE avg_seconds_between_events IS NOT NULL"
            )
            gaps = [float(row[0]) for row in cursor.fetchall()]
    finally:
        connection.close()

    figure, (timeline, bars, histogram) = plt.subplots(1, 3, figsize=(19, 5))
    # The last two hours of event time that hold events: a few old events (an event of 2019) would squash the axis.
    recent = [row for row in minutes if row[0] >= minutes[-1][0] - dt.timedelta(hours=2)] if minutes else []
    older = sum(int(row[2]) for row in minutes) - sum(int(row[2]) for row in recent)
    series: dict[str, tuple[list[Any], list[int]]] = {}
    for minute, kind, count in recent:
        xs, ys = series.setdefault(str(kind), ([], []))
        xs.append(minute)
        ys.append(int(count))
    for kind, (xs, ys) in sorted(series.items()):
        timeline.plot(xs, ys, marker="o", markersize=4, linewidth=1, label=kind)
    omitted = f"; {older:,} older events not shown" if older else ""
    timeline.set_title(f"Events per type and minute of event time (UTC, last 2 h with data{omitted})", fontsize=10)
    timeline.set_ylabel("events")
    timeline.legend(fontsize="small")
    figure.autofmt_xdate()
    names = [str(row[0]) for row in per_type]
    positions = range(len(names))
    bars.bar([p - 0.2 for p in positions], [int(row[1]) for row in per_type], width=0.4, label="events")
    bars.bar([p + 0.2 for p in positions], [int(row[2]) for row in per_type], width=0.4, label="unique users")
    bars.set_xticks(list(positions), names, rotation=30, ha="right")
    bars.set_title("Events and unique users per event type (all time)")
    bars.legend()
    histogram.hist(gaps, bins=30, color="tab:purple")
    histogram.set_title(f"Average time between a user's events ({len(gaps):,} users with ≥ 2 events)")
    histogram.set_xlabel("seconds")
    histogram.set_ylabel("users")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trigger", default=os.environ.get("DEMO_TRIGGER", "1 minute"), help="Spark trigger")
    parser.add_argument("--timeout", type=float, default=600, help="seconds to wait for the pipeline")
    parser.add_argument("--chart", type=Path, default=OUT / "demo-chart.png")
    args = parser.parse_args(argv)

    step(1, "starting the native stack: Kafka, MariaDB, LocalStack (installs what is missing)")
    stack.up(list(stack.SERVICES.values()))

    step(2, "deploying the producer: template.yaml -> CloudFormation (SAM transform) on LocalStack")
    subprocess.run([sys.executable, str(ROOT / "infra" / "deploy.py")], check=True, cwd=ROOT)  # noqa: S603

    step(3, f"starting the Spark job in the background (trigger every {args.trigger})")
    os.environ["TRIGGER_INTERVAL"] = args.trigger
    stack.up([stack.JOBS["spark"]])

    files = sorted(p for p in DATA.iterdir() if p.is_file())
    step(4, f"uploading {len(files)} sample files to s3://{BUCKET}/incoming/")
    s3 = s3_client()
    for path in files:
        s3.upload_file(str(path), BUCKET, f"incoming/{path.name}")
        note(f"{path.name} ({path.stat().st_size:,} bytes)")

    step(5, "waiting for the pipeline")
    note(
        "The EventBridge rule fires the producer once a minute (rate(1 minute), the minimum AWS and LocalStack allow),"
    )
    note(f"and the Spark job runs a micro-batch every {args.trigger}: expect one to three minutes.")
    wait_for_pipeline([p.name for p in files], args.timeout)

    step(6, "metrics in MySQL")
    settings = report.ReportSettings()
    report.render(report.fetch(settings, limit=10), report.Console(width=120))
    chart = write_chart(settings, args.chart)
    print(f"\nChart (events per type over time, totals per type, average-gap distribution): {stack.show(chart)}")
    print(
        f"""
The stack and the Spark job keep running. Explore:
  .venv/bin/awslocal s3 ls s3://{BUCKET}/ --recursive          # processed/ and rejected/ files
  .venv/bin/awslocal lambda invoke --function-name game-events-producer \\
      --payload file://events/manual-generate.json out/invoke.json  # publish synthetic events now
  .venv/bin/awslocal logs filter-log-events --log-group-name /aws/lambda/game-events-producer --limit 20
  mariadb -h 127.0.0.1 -u analytics -panalytics analytics       # or any MySQL client
  make report                                                    # the metrics again (make report ARGS=--json)
  make status                                                    # services and the job
Stop everything with `make down` (data is kept; `make clean` deletes it).
Finished in {time.monotonic() - STARTED:.0f}s."""
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
