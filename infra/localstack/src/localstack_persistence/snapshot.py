"""The on-disk layout of saved state: complete snapshots switched atomically, plain files, no LocalStack imports.

::

    $LOCALSTACK_STATE_DIR/
      CURRENT                      name of the snapshot to load (replaced atomically: temp file, fsync, rename)
      .lock                        flock'ed by the LocalStack that owns the directory
      snapshot-<UTC time>-<id>/    one complete snapshot
        manifest.json              format, LocalStack version, time, every file with its size and SHA-256
        <service>/<kind>-<name>.pkl  a pickled state container (localstack: AccountRegionBundle, moto: BackendDict)
        s3/objects/<identity>      the bytes of one S3 object version
      corrupt-<snapshot name>/     a snapshot that could not be loaded, moved aside for inspection
      .tmp-<id>/                   a snapshot being written (left-overs are deleted)

A snapshot is written into ``.tmp-<id>``, every file fsync'ed, then renamed to ``snapshot-…`` and named in
``CURRENT``. A crash at any point leaves ``CURRENT`` naming the previous complete snapshot. Files whose content did
not change since the previous snapshot are hard links to it, so an unchanged S3 object is never copied again. The
previous snapshot is kept as a fallback; older ones are deleted.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

FORMAT = 1
CURRENT = "CURRENT"
MANIFEST = "manifest.json"
LOCK = ".lock"
SNAPSHOT_PREFIX = "snapshot-"
TMP_PREFIX = ".tmp-"
CORRUPT_PREFIX = "corrupt-"
CHUNK = 1024 * 1024


class SnapshotError(Exception):
    """A snapshot (or one of its files) cannot be read; ``path`` names the file."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


@dataclass(frozen=True)
class FileEntry:
    size: int
    sha256: str


@dataclass
class Manifest:
    localstack_version: str
    saved_at: str
    files: dict[str, FileEntry] = field(default_factory=dict)
    format: int = FORMAT

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": self.format,
                "localstack_version": self.localstack_version,
                "saved_at": self.saved_at,
                "files": {name: {"size": e.size, "sha256": e.sha256} for name, e in sorted(self.files.items())},
            },
            indent=1,
        )

    @classmethod
    def read(cls, snapshot: Path) -> Manifest:
        path = snapshot / MANIFEST
        try:
            raw = json.loads(path.read_text())
            if raw.get("format") != FORMAT:
                raise SnapshotError(path, f"format {raw.get('format')!r}, this plugin reads format {FORMAT}")
            files = {str(name): FileEntry(int(e["size"]), str(e["sha256"])) for name, e in raw["files"].items()}
            return cls(str(raw["localstack_version"]), str(raw["saved_at"]), files)
        except SnapshotError:
            raise
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise SnapshotError(path, f"unreadable manifest ({type(exc).__name__}: {exc})") from exc

    def services(self) -> list[str]:
        return sorted({name.split("/", 1)[0] for name in self.files})


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_verified(snapshot: Path, name: str, entry: FileEntry) -> bytes:
    """A file of a snapshot, checked against its manifest entry (size and SHA-256)."""
    path = snapshot / name
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SnapshotError(path, f"cannot be read ({exc.strerror or exc})") from exc
    if len(data) != entry.size:
        raise SnapshotError(path, f"{len(data)} bytes, the manifest says {entry.size} (truncated or replaced)")
    if hashlib.sha256(data).hexdigest() != entry.sha256:
        raise SnapshotError(path, "SHA-256 differs from the manifest (corrupt)")
    return data


def check_present(snapshot: Path, name: str, entry: FileEntry) -> None:
    """Cheap check for large files (S3 objects): present with the right size; the hash is checked while reading."""
    path = snapshot / name
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise SnapshotError(path, f"missing ({exc.strerror or exc})") from exc
    if size != entry.size:
        raise SnapshotError(path, f"{size} bytes, the manifest says {entry.size} (truncated or replaced)")


class HashingReader:
    """Reads a snapshot file in chunks and tells at the end whether its SHA-256 matched the manifest."""

    def __init__(self, file: IO[bytes]) -> None:
        self._file = file
        self._hash = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self._file.read(size)
        self._hash.update(data)
        return data

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


class SnapshotWriter:
    """Writes one snapshot into a temporary directory; ``StateDirectory.commit`` makes it the current one."""

    def __init__(self, tmp: Path, previous: Path | None, previous_manifest: Manifest | None) -> None:
        self.tmp = tmp
        self.previous = previous
        self.previous_files: dict[str, FileEntry] = previous_manifest.files if previous_manifest else {}
        self.files: dict[str, FileEntry] = {}
        self.written_bytes = 0
        self.linked = 0

    def _target(self, name: str) -> Path:
        if name.startswith("/") or ".." in Path(name).parts or name == MANIFEST:
            raise ValueError(f"bad snapshot file name {name!r}")
        path = self.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def try_link(self, name: str, entry: FileEntry | None = None) -> bool:
        """Hard-link ``name`` from the previous snapshot if it holds the same content (by manifest entry)."""
        old = self.previous_files.get(name)
        if self.previous is None or old is None or (entry is not None and old != entry):
            return False
        source = self.previous / name
        target = self._target(name)
        try:
            os.link(source, target)
        except FileNotFoundError:
            return False
        except OSError:
            shutil.copyfile(source, target)  # a file system without hard links
        self.files[name] = old
        self.linked += 1
        return True

    def write_bytes(self, name: str, data: bytes) -> FileEntry:
        entry = FileEntry(len(data), hashlib.sha256(data).hexdigest())
        if self.try_link(name, entry):
            return entry
        with self._target(name).open("wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        self.files[name] = entry
        self.written_bytes += entry.size
        return entry

    def write_stream(self, name: str, chunks: Iterable[bytes]) -> FileEntry:
        digest = hashlib.sha256()
        size = 0
        with self._target(name).open("wb") as out:
            for chunk in chunks:
                out.write(chunk)
                digest.update(chunk)
                size += len(chunk)
            out.flush()
            os.fsync(out.fileno())
        entry = FileEntry(size, digest.hexdigest())
        self.files[name] = entry
        self.written_bytes += size
        return entry

    def discard(self, name: str) -> None:
        self.files.pop(name, None)
        with contextlib.suppress(FileNotFoundError):
            (self.tmp / name).unlink()

    def finish(self, localstack_version: str) -> Manifest:
        manifest = Manifest(localstack_version, utc_now(), dict(self.files))
        with (self.tmp / MANIFEST).open("w") as out:
            out.write(manifest.to_json())
            out.flush()
            os.fsync(out.fileno())
        for directory in sorted({(self.tmp / n).parent for n in self.files} | {self.tmp}, reverse=True):
            _fsync_dir(directory)
        return manifest


def utc_now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class StateDirectory:
    """``LOCALSTACK_STATE_DIR``: its snapshots, the ``CURRENT`` pointer and the owner lock."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock_file: IO[bytes] | None = None

    def lock(self) -> bool:
        """Take the directory for this process (released when the process ends, even by SIGKILL)."""
        self.root.mkdir(parents=True, exist_ok=True)
        handle = (self.root / LOCK).open("ab")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        self._lock_file = handle
        return True

    def current(self) -> Path | None:
        try:
            name = (self.root / CURRENT).read_text().strip()
        except FileNotFoundError:
            return None
        if not name.startswith(SNAPSHOT_PREFIX) or "/" in name:
            return None
        path = self.root / name
        return path if path.is_dir() else None

    def snapshots(self) -> list[Path]:
        """Complete snapshots, newest first (names sort by time)."""
        if not self.root.is_dir():
            return []
        found = [p for p in self.root.iterdir() if p.name.startswith(SNAPSHOT_PREFIX) and p.is_dir()]
        return sorted(found, key=lambda p: p.name, reverse=True)

    def candidates(self) -> list[Path]:
        """What to try loading, in order: the one ``CURRENT`` names, then the others, newest first."""
        current = self.current()
        rest = [p for p in self.snapshots() if p != current]
        return ([current] if current else []) + rest

    def begin(self) -> SnapshotWriter:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f"{TMP_PREFIX}{uuid.uuid4().hex[:12]}"
        tmp.mkdir()
        previous = self.current()
        manifest = None
        if previous is not None:
            with contextlib.suppress(SnapshotError):
                manifest = Manifest.read(previous)
        return SnapshotWriter(tmp, previous, manifest)

    def commit(self, writer: SnapshotWriter) -> Path:
        """Make the written snapshot the current one (atomic), then delete all but it and its predecessor."""
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        final = self.root / f"{SNAPSHOT_PREFIX}{stamp}-{writer.tmp.name.removeprefix(TMP_PREFIX)}"
        writer.tmp.rename(final)
        pointer = self.root / f"{TMP_PREFIX}{CURRENT}"
        with pointer.open("w") as out:
            out.write(final.name + "\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(pointer, self.root / CURRENT)
        _fsync_dir(self.root)
        self.prune(keep={final, *([writer.previous] if writer.previous else [])})
        return final

    def abort(self, writer: SnapshotWriter) -> None:
        shutil.rmtree(writer.tmp, ignore_errors=True)

    def prune(self, keep: set[Path]) -> None:
        for path in self.snapshots():
            if path not in keep:
                shutil.rmtree(path, ignore_errors=True)
        for path in self.root.iterdir():
            if path.name.startswith(TMP_PREFIX) and path.is_dir():
                shutil.rmtree(path, ignore_errors=True)

    def move_aside(self, snapshot: Path) -> Path:
        """Rename a snapshot that failed to load to ``corrupt-<name>``; ``CURRENT`` then names the next candidate."""
        target = self.root / f"{CORRUPT_PREFIX}{snapshot.name}"
        if target.exists():
            target = self.root / f"{CORRUPT_PREFIX}{snapshot.name}-{uuid.uuid4().hex[:6]}"
        snapshot.rename(target)
        if (self.root / CURRENT).exists() and self.current() is None:
            remaining = self.snapshots()
            if remaining:
                pointer = self.root / f"{TMP_PREFIX}{CURRENT}"
                pointer.write_text(remaining[0].name + "\n")
                os.replace(pointer, self.root / CURRENT)
            else:
                (self.root / CURRENT).unlink()
        return target

    def copy_aside(self, snapshot: Path) -> Path:
        """Keep a copy (hard links) of a snapshot that loaded only in part, for inspection."""
        target = self.root / f"{CORRUPT_PREFIX}{snapshot.name}-{uuid.uuid4().hex[:6]}"
        shutil.copytree(snapshot, target, copy_function=_link_or_copy)
        return target


def _link_or_copy(source: str, target: str) -> Any:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)
    return target


@contextlib.contextmanager
def open_verified(snapshot: Path, name: str) -> Iterator[HashingReader]:
    path = snapshot / name
    try:
        with path.open("rb") as handle:
            yield HashingReader(handle)
    except OSError as exc:
        raise SnapshotError(path, f"cannot be read ({exc.strerror or exc})") from exc


def object_identity(
    account_id: str,
    bucket: str,
    *,
    key: str,
    version_id: str | None,
    etag: str | None,
    size: int | None,
    checksum: str | None,
    last_modified: str,
) -> str:
    """A stable name for the content of one S3 object version: equal across saves and restarts while the object is
    unchanged (S3's own identity: key, version, ETag, size, checksum, LastModified), different after any write."""
    parts = [account_id, bucket, key, version_id or "null", etag or "", str(size), checksum or "", last_modified]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()
