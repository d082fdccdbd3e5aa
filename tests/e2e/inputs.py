"""Input files for the end-to-end tests: event records and the bytes of NDJSON / JSON / gzip files."""

from __future__ import annotations

import gzip
import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any


def event(user_id: Any, event_type: Any, timestamp: Any, **fields: Any) -> dict[str, Any]:
    """One input record; a field given as ... is left out."""
    record = {"user_id": user_id, "event_type": event_type, "timestamp": timestamp, **fields}
    return {k: v for k, v in record.items() if v is not ...}


def line(record: Any) -> str:
    """A record as one NDJSON line (a str is taken as the line's text as is)."""
    return record if isinstance(record, str) else json.dumps(record, ensure_ascii=False)


def ndjson(records: list[Any], newline: str = "\n") -> bytes:
    return (newline.join(line(r) for r in records) + newline).encode()


def json_array(records: Any) -> bytes:
    """A .json file: an array of records (or one object)."""
    return json.dumps(records, ensure_ascii=False, indent=1).encode()


def gz(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def iso(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def sessions(tag: str, events: int, *, users: int = 50, seed: int = 0) -> bytes:
    """NDJSON of `events` valid records of users `<tag>-u<n>` (out of order, some with an event_id, some old),
    with exact copies of some records (a tenth) mixed in."""
    rng = random.Random(seed)  # noqa: S311 - reproducible test data
    start = datetime(2026, 1, 1, tzinfo=UTC)
    kinds = ["login", "click", "level_up", "match_start", "match_end", "purchase", "logout"]
    lines: list[str] = []
    for number in range(events):
        at = start + timedelta(seconds=rng.randrange(86_400), microseconds=rng.randrange(1_000_000))
        if number % 50 == 0:
            at = datetime(2019, 6, 1, tzinfo=UTC) + timedelta(seconds=rng.randrange(10**6))
        record = event(
            f"{tag}-u{rng.randrange(users)}",
            rng.choice(kinds),
            iso(at),
            game_id=rng.choice([None, f"g{rng.randrange(5)}", rng.randrange(5)]),
            payload={"n": number, "score": rng.randrange(1000)},
        )
        if number % 4 == 0:
            record["event_id"] = f"{tag}-ev-{number}"
        text = json.dumps(record, separators=(",", ":"))
        lines.append(text)
        if number % 10 == 0:
            lines.append(text)
    return ("\n".join(lines) + "\n").encode()
