"""`make bench`: every benchmark in one run on this machine, then a combined summary.

    python bench/run_all.py                 # everything (about 45-60 minutes on 2 idle cores, see docs)
    python bench/run_all.py --quick         # small sizes, for development (results in bench/tmp/results-quick/)
    python bench/run_all.py --skip freshness
    python bench/run_all.py --summary-only  # rebuild summary.json / summary.md from the results already there

Steps, one after the other (never two at once: they share the 2 cores):
1. producer  - bench/producer.py, unchanged: one Lambda invocation publishing a 1M-event file from S3 to Kafka
               (not in --quick, which would overwrite its results: the summary then shows the last full run);
2. sizes     - bench/spark_job.py: our job's batch time for 100k, 1M and 3M events;
3. flat      - bench/spark_job.py: a 1M batch after 1, 10 and 50 earlier ones, on a topic that also holds the
               history boundaries of step 4;
4. baseline  - bench/recompute_baseline.py on that same topic, right after the flat run: recompute-from-history
               at 1M, 5M and 10M events of history vs our batch that brought our tables to the same history;
5. freshness - bench/freshness.py: upload -> visible in MySQL, p50/p95, (a) 1-minute schedule and trigger,
               (b) 5-second polling and trigger, through the deployed function and the real topic.
Results: bench/results/{spark,recompute_baseline,freshness,producer}.json and summary.json + summary.md (the
Markdown table is also printed at the end).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import freshness as fr  # noqa: E402
from bench import recompute_baseline as rb  # noqa: E402
from bench import spark_job as sj  # noqa: E402

STEPS = ("producer", "sizes", "flat", "baseline", "freshness")
PRODUCER_RESULTS = ROOT / "bench" / "results" / "producer.json"


# ---------------------------------------------------------------------------------------------------------------
# The summary (pure: results in, summary and Markdown out)
# ---------------------------------------------------------------------------------------------------------------
def _seconds(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.1f} s" if value < 100 else f"{value:.0f} s"


def _count(value: int) -> str:
    if value >= 1_000_000 and not value % 100_000:
        return f"{value / 1_000_000:g}M"
    if value >= 1000 and not value % 1000:
        return f"{value // 1000}k"
    return f"{value:,}"


def _met(value: bool | None) -> str:
    return "—" if value is None else ("yes" if value else "**no**")


def summarize(results: dict[str, dict[str, Any] | None]) -> dict[str, Any]:
    """The headline figures of each benchmark's result file (missing files give None)."""
    summary: dict[str, Any] = {}
    producer = (results.get("producer") or {}).get("lambda")
    if producer:
        summary["producer"] = {
            "events_per_second": producer["events_per_second"],
            "target": producer["target_events_per_second"],
            "met": producer["target_met"],
            "measured_at": producer["measured_at"],
            "load_average_1m_before": producer["machine"]["load_average_1m_before"],
        }
    spark = results.get("spark") or {}
    if sizes := spark.get("sizes"):
        summary["sizes"] = {str(b["events"]): b["seconds"] for b in sizes["batches"]}
        summary["sizes_cold_warmup_seconds"] = sizes["warmup"]["seconds"]
    if flat := spark.get("flat"):
        summary["flat"] = {
            "batch_events": flat["batch_events"],
            "seconds_after_earlier_batches": flat["seconds_after_earlier_batches"],
            "ratio": flat["ratio"],
            "ratio_definition": flat["ratio_definition"],
            "target_ratio_max": flat["target_ratio_max"],
            "met": flat["met"],
            "median_warm_batch_seconds": flat["median_warm_batch_seconds"],
        }
    setups = [part["setup"] for part in (spark.get("sizes"), spark.get("flat")) if part]
    if setups:
        events = sum(s["events"] for s in setups)
        seconds = sum(s["seconds"] for s in setups)
        summary["setup"] = {
            "events_published": events,
            "seconds": round(seconds, 1),
            "events_per_second": round(events / seconds) if seconds else None,
        }
    if baseline := results.get("recompute_baseline"):
        summary["baseline"] = {
            "rows": [
                {k: r[k] for k in ("history_events", "baseline_seconds", "ours_seconds", "ratio", "correct")}
                for r in baseline["rows"]
            ],
            "new_batch": baseline["definition"]["new_batch"],
            "target": baseline["target"],
            "met": baseline["met"],
        }
    if fresh := results.get("freshness"):
        summary["freshness"] = {
            name: {k: mode.get(k) for k in ("label", "probes", "probes_seen", "p50_seconds", "p95_seconds")}
            for name, mode in fresh["modes"].items()
        }
    return summary


def markdown(summary: dict[str, Any]) -> str:
    rows: list[tuple[str, str, str, str, str]] = []
    if p := summary.get("producer"):
        rows.append(
            (
                "Producer",
                "events/s, 1M-event NDJSON file S3 → Kafka, one Lambda invocation",
                f"{p['events_per_second']:,} (load {p['load_average_1m_before']} before)",
                f"≥ {p['target']:,}",
                _met(p["met"]),
            )
        )
    if sizes := summary.get("sizes"):
        rows.append(
            (
                "Spark (ours)",
                "batch time for " + " / ".join(_count(int(k)) for k in sizes) + " events (100k users)",
                " / ".join(_seconds(v) for v in sizes.values()),
                "",
                "",
            )
        )
    if flat := summary.get("flat"):
        after = flat["seconds_after_earlier_batches"]
        rows.append(
            (
                "Spark (ours)",
                f"{_count(flat['batch_events'])} batch after " + " / ".join(after) + " earlier batches",
                " / ".join(_seconds(v) for v in after.values()) + f"; last/first = {flat['ratio']}",
                f"≤ {flat['target_ratio_max']}",
                _met(flat["met"]),
            )
        )
    if base := summary.get("baseline"):
        histories = " / ".join(_count(r["history_events"]) for r in base["rows"])
        rows.append(
            (
                "Recompute baseline",
                f"time per trigger at {histories} events of history",
                " / ".join(_seconds(r["baseline_seconds"]) for r in base["rows"]),
                "",
                "",
            )
        )
        rows.append(
            (
                "Ours vs recompute",
                f"speed-up for the same new batch ({base['new_batch']}) at {histories}",
                " / ".join("—" if r["ratio"] is None else f"{r['ratio']:g}x" for r in base["rows"]),
                f"≥ {base['target']['ratio_min']:g}x at {_count(base['target']['history_events'])}",
                _met(base["met"]),
            )
        )
    for name, mode in (summary.get("freshness") or {}).items():
        rows.append(
            (
                f"Freshness ({name})",
                f"S3 upload → row in MySQL, {mode['label']}, p50 / p95 ({mode['probes_seen']}/{mode['probes']} probes)",
                f"{_seconds(mode['p50_seconds'])} / {_seconds(mode['p95_seconds'])}",
                "",
                "",
            )
        )
    if setup := summary.get("setup"):
        rows.append(
            (
                "Setup",
                f"publishing {setup['events_published']:,} benchmark events to Kafka (Python, lz4)",
                f"{_seconds(setup['seconds'])} ({setup['events_per_second']:,} events/s)",
                "",
                "",
            )
        )
    lines = ["| benchmark | measure | result | target | met |", "|---|---|---|---|---|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def load_results(directory: Path) -> dict[str, dict[str, Any] | None]:
    def read(path: Path) -> dict[str, Any] | None:
        return dict(json.loads(path.read_text())) if path.exists() else None

    found = {name: read(directory / f"{name}.json") for name in ("spark", "recompute_baseline", "freshness")}
    found["producer"] = read(directory / "producer.json") or read(PRODUCER_RESULTS)
    return found


def write_summary(directory: Path, extra: dict[str, Any]) -> str:
    summary = {**extra, **summarize(load_results(directory))}
    table = markdown(summary)
    (directory / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (directory / "summary.md").write_text(
        f"<!-- bench/run_all.py, {summary.get('date', '')}; details in the *.json files next to this one -->\n\n"
        + table
    )
    return table


# ---------------------------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------------------------
def timed(name: str, wall: dict[str, float], action: Callable[[], object]) -> None:
    print(f"\n=== {name} ({datetime.now(UTC):%H:%M:%S} UTC) ===", flush=True)
    started = time.monotonic()
    try:
        action()
    finally:
        wall[name] = round(time.monotonic() - started, 1)
        print(f"=== {name}: {wall[name]:.0f}s ===", flush=True)


def run(args: argparse.Namespace) -> dict[str, float]:
    out = sj.results_dir(args.quick)
    out.mkdir(parents=True, exist_ok=True)
    plan = sj.Plan.quick() if args.quick else sj.Plan.full()
    histories = tuple(plan.batch_events * k for k in (1, 5, 10))
    steps = [s for s in STEPS if s not in args.skip]
    wall: dict[str, float] = {}
    spark = sj.base_result(plan, args.quick, args.producers)

    if "producer" in steps and not args.quick:
        command = [sys.executable, str(ROOT / "bench" / "producer.py")]
        timed("producer", wall, lambda: subprocess.run(command, check=True, cwd=ROOT))  # noqa: S603 (own script)

    def sizes() -> None:
        spark["sizes"] = sj.bench_sizes(plan.sizes, plan.warmup, plan.users, args.producers)
        sj.write_result(spark, out / "spark.json")

    if "sizes" in steps:
        timed("sizes", wall, sizes)

    def flat_and_baseline() -> None:
        flat_started = time.monotonic()
        extra = (plan.warmup, *histories) if "baseline" in steps else ()
        flat = sj.bench_flat(plan.batch_events, plan.after, plan.users, args.producers, extra_events=extra)
        try:
            spark["flat"] = flat.result
            sj.write_result(spark, out / "spark.json")
            wall["flat"] = round(time.monotonic() - flat_started, 1)
            if "baseline" in steps:
                result = rb.run_baseline(
                    flat.run.events_topic,
                    flat.run.dlq_topic,
                    flat.publisher.boundaries,
                    histories=histories,
                    warmup=plan.warmup,
                    ours=rb.Ours(flat.result["rows"], plan.batch_events),
                )
                result["setup"] = "the flat run's topic (its events up to each history boundary)"
                result["quick"] = args.quick
                sj.write_result(result, out / "recompute_baseline.json")
        finally:
            flat.close()

    if "flat" in steps:
        timed("flat+baseline", wall, flat_and_baseline)

    if "freshness" in steps:
        fresh_plan = fr.Plan.quick() if args.quick else fr.Plan()

        def freshness() -> None:
            result = fr.run_freshness(fresh_plan)
            result["quick"] = args.quick
            sj.write_result(result, out / "freshness.json")

        timed("freshness", wall, freshness)
    return wall


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes (results in bench/tmp/results-quick/)")
    parser.add_argument("--skip", type=lambda s: {p.strip() for p in s.split(",")}, default=set(), help=",".join(STEPS))
    parser.add_argument("--producers", type=int, default=2, help="processes publishing benchmark events to Kafka")
    parser.add_argument("--summary-only", action="store_true", help="only rebuild the summary from the results")
    args = parser.parse_args(argv)
    out = sj.results_dir(args.quick)
    started = time.monotonic()
    extra: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "machine": sj.machine(),
    }
    if not args.summary_only:
        wall = run(args)
        extra["wall_seconds"] = {**wall, "total": round(time.monotonic() - started, 1)}
    table = write_summary(out, extra)
    print("\n" + table)
    print(f"summary: {(out / 'summary.md').relative_to(ROOT)}, {(out / 'summary.json').relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
