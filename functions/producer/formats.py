"""Input file formats of contract §2, read as streams so that memory stays bounded by one record.

- `.ndjson` / `.jsonl`: one event per line; blank lines are skipped; numbering is the 1-based line number.
- `.json`: one JSON array of events (numbering is the 0-based element index) or one object (element 0).
  The array is parsed incrementally with ijson: a 1 GB file needs memory for one element, not 1 GB.
- Any of them with `.gz`: decompressed on the fly.

A problem of the whole file (not gzip, broken JSON syntax, an unknown suffix) raises `UnreadableFileError`;
a problem of one record is the caller's to judge.
"""

from __future__ import annotations

import gzip
import io
import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any, Final, Literal

import ijson

# A line longer than this is rejected without being held in memory in full.
MAX_LINE_BYTES: Final = 16 * 1024 * 1024
_WHITESPACE: Final = b" \t\r\n"


class UnreadableFileError(Exception):
    """The object cannot be read as its format; `position` says how far reading got."""

    def __init__(self, reason: str, position: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.position = position


@dataclass(frozen=True, slots=True)
class FileFormat:
    kind: Literal["ndjson", "json"]
    gzip: bool


# One NDJSON line: (1-based line number, the line without its terminator and surrounding blanks, too_long).
# When too_long, the bytes are only the line's first 4096. A plain tuple, not a NamedTuple: one is made per line,
# and a NamedTuple's constructor costs more than splitting the line out of the buffer.
RawLine = tuple[int, bytes, bool]

# Bytes of an oversized line that are kept (for the dead letter's raw text).
TOO_LONG_HEAD_BYTES: Final = 4096


@dataclass(frozen=True, slots=True)
class Element:
    """One decoded value of a JSON file."""

    number: int
    value: Any

    def text(self) -> str:
        """The element as JSON text (re-serialized: the array is parsed as a stream, not kept)."""
        return json.dumps(self.value, ensure_ascii=False)


SUPPORTED: Final = ".json, .ndjson, .jsonl, each optionally .gz"


def detect_format(key: str) -> FileFormat | None:
    name = key.lower()
    compressed = name.endswith(".gz")
    if compressed:
        name = name[:-3]
    if name.endswith((".ndjson", ".jsonl")):
        return FileFormat("ndjson", compressed)
    if name.endswith(".json"):
        return FileFormat("json", compressed)
    return None


# Errors that mean "this is not a readable file of its format", as opposed to an S3 or network failure.
_FORMAT_ERRORS = (gzip.BadGzipFile, EOFError, zlib.error, ijson.JSONError, UnicodeDecodeError)


def _decompressed(stream: IO[bytes], fmt: FileFormat) -> IO[bytes]:
    if fmt.gzip:
        return gzip.GzipFile(fileobj=stream, mode="rb")  # type: ignore[return-value]
    return stream


def read_lines(stream: IO[bytes], fmt: FileFormat) -> Iterator[RawLine]:
    """The non-blank lines of an NDJSON `stream`, lazily. Raises UnreadableFileError when the format breaks
    (gzip)."""
    source = _decompressed(stream, fmt)
    readline, limit, blanks = source.readline, MAX_LINE_BYTES, _WHITESPACE
    number = 0
    try:
        while line := readline(limit + 1):
            number += 1
            if len(line) > limit and not line.endswith(b"\n"):
                head = line[:TOO_LONG_HEAD_BYTES]
                while (rest := readline(limit)) and not rest.endswith(b"\n"):
                    pass  # skip the remainder of the oversized line without holding it
                yield number, head, True
                continue
            stripped = line.strip(blanks)
            if stripped:
                yield number, stripped, False
    except _FORMAT_ERRORS as exc:
        raise UnreadableFileError(_describe(exc), f"line {number + 1}") from None


class IntegerBeyond64BitsError(Exception):
    """ijson's C backend (yajl) cannot hold an integer beyond 64 bits, which JSON and the contract allow (a user
    id 2**64). Raised at the element holding one: read the object again with `exact_integers=True` from there."""

    def __init__(self, number: int) -> None:
        super().__init__(f"element {number} holds an integer beyond 64 bits")
        self.number = number


def read_elements(
    stream: IO[bytes], fmt: FileFormat, *, exact_integers: bool = False, start: int = 0
) -> Iterator[Element]:
    """The elements of a JSON array `stream` (or its one object) from element `start` on, lazily. Raises
    UnreadableFileError when the format breaks, IntegerBeyond64BitsError when the fast parser cannot hold a number
    (then `exact_integers=True` — ijson's pure-Python backend, slower — reads any integer)."""
    return _elements(_decompressed(stream, fmt), exact_integers=exact_integers, start=start)


class _Prefixed(io.RawIOBase):
    """`head` followed by the rest of `stream` (used after peeking at the first JSON token)."""

    def __init__(self, head: bytes, stream: IO[bytes]) -> None:
        self._head = head
        self._stream = stream

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if size == 0:  # ijson probes with read(0) to tell bytes from text
            return b""
        if self._head:
            head, self._head = self._head, b""
            return head
        return self._stream.read(size)

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


_PYTHON_BACKEND: Final = ijson.get_backend("python")


def _elements(source: IO[bytes], *, exact_integers: bool = False, start: int = 0) -> Iterator[Element]:
    number = 0
    try:
        head = b""
        while not (head := head.lstrip(_WHITESPACE)):
            chunk = source.read(64 * 1024)
            if not chunk:
                raise UnreadableFileError("empty file: expected a JSON array or object")
            head = chunk
        if head.startswith(b"\xef\xbb\xbf"):
            raise UnreadableFileError("the file starts with a UTF-8 byte order mark; JSON must not")
        first = head[:1]
        if first not in (b"[", b"{"):
            raise UnreadableFileError(f"expected a JSON array or object, found {head[:20]!r}")
        stream = _Prefixed(head, source)
        backend = _PYTHON_BACKEND if exact_integers else ijson
        for value in backend.items(stream, "item" if first == b"[" else "", use_float=True):
            if number >= start:
                yield Element(number, value)
            number += 1
    except _FORMAT_ERRORS as exc:
        if not exact_integers and "integer overflow" in str(exc):
            raise IntegerBeyond64BitsError(number) from None
        raise UnreadableFileError(_describe(exc), f"element {number}") from None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, gzip.BadGzipFile | zlib.error):
        return f"not a valid gzip stream: {exc}"
    if isinstance(exc, EOFError):
        return "the gzip stream ends before its end marker (truncated file)"
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 text: {exc}"
    return f"not valid JSON: {exc}"
