"""Large objects are streamed: peak memory stays flat while the file grows (tracemalloc)."""

from __future__ import annotations

import gzip
import json
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from producer.service import ProducerService
from producer.settings import Settings
from producer.source import S3Object, S3Source

from .conftest import InMemoryPublisher, event, keys, plenty_of_time, put

FILE_BYTES = 12 * 1024 * 1024
PEAK_LIMIT = 2 * 1024 * 1024


def write_events(path: Path, kind: str) -> int:
    """Write about FILE_BYTES of events to `path`; return how many."""
    line = json.dumps(event(payload={"button_id": "789", "screen": "shop", "padding": "p" * 100}))
    count = FILE_BYTES // (len(line) + 2)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wt") as out:
        if kind == "json":
            out.write("[\n" + ",\n".join([line] * count) + "\n]")
        else:
            out.write("\n".join([line] * count) + "\n")
    return count


@pytest.mark.parametrize(
    ("name", "kind"), [("big.ndjson", "ndjson"), ("big.json", "json"), ("big.ndjson.gz", "ndjson")]
)
def test_peak_memory_does_not_grow_with_the_file(  # noqa: PLR0917
    s3: Any, settings: Settings, source: S3Source, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, kind: str
) -> None:
    local = tmp_path / name
    count = write_events(local, kind)
    uncompressed = FILE_BYTES
    put(s3, f"incoming/{name}", b"placeholder")  # the object to claim and move; its body comes from disk

    def open_from_disk(obj: S3Object) -> Any:
        return local.open("rb")

    monkeypatch.setattr(source, "open", open_from_disk)
    publisher = InMemoryPublisher(keep=False)  # counts, keeps nothing
    service = ProducerService(settings, source, publisher)

    tracemalloc.start()
    try:
        summary = service.drain(plenty_of_time, owner="x")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert summary.events_published == count
    assert summary.events_rejected == 0
    assert keys(s3) == [f"processed/{name}"]
    assert uncompressed > 4 * PEAK_LIMIT
    assert peak < PEAK_LIMIT, f"peak {peak / 2**20:.1f} MiB for a {uncompressed / 2**20:.0f} MiB file"
