"""The input event of contract §1 and the messages the producer writes to Kafka.

`GameEvent` validates and normalizes one event. Its validators are plain functions (no pydantic coercion
behind them) so that exactly the rules of the contract apply: a float user_id, a boolean game_id or a
timestamp without a zone are rejected, each with a reason that names the field.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Final

from pydantic import BaseModel, ConfigDict, PlainValidator, ValidationError
from pydantic_core import PydanticCustomError, to_json

USER_ID_MAX_CHARS: Final = 128
EVENT_TYPE_MAX_CHARS: Final = 64

# ISO-8601 extended format with a mandatory zone: date "T" hh:mm[:ss[.fraction]] then "Z" or +hh:mm/-hh:mm.
# datetime.fromisoformat alone is more lenient (no zone, basic format, space separator), hence the gate.
_TIMESTAMP_RE: Final = re.compile(
    r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:Z|[+-]\d{2}:\d{2})", re.ASCII
)


# Length of that form: 'YYYY-MM-DDThh:mm:ss.ffffffZ'.
_UTC_TEXT_CHARS: Final = 27


def utc_text(moment: datetime) -> str:
    """An aware datetime as 'YYYY-MM-DDThh:mm:ss.ffffffZ' in UTC (the one text form the producer writes).
    Raises OverflowError when the instant in UTC falls outside years 1..9999."""
    in_utc = moment if moment.tzinfo is UTC else moment.astimezone(UTC)
    return in_utc.isoformat(timespec="microseconds")[:-6] + "Z"


def _invalid(field: str, message: str, **context: Any) -> PydanticCustomError:
    return PydanticCustomError(field, message, context)


def _shown(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def _trimmed(field: str, value: str, limit: int) -> str:
    """`value` without surrounding blanks; it must then be non-empty and at most `limit` characters."""
    trimmed = value.strip()
    if not trimmed:
        raise _invalid(field, "must not be empty or blank")
    if len(trimmed) > limit:
        raise _invalid(field, "is {length} characters long, at most {limit} allowed", length=len(trimmed), limit=limit)
    return trimmed


def _user_id(value: Any) -> str:
    if isinstance(value, str):
        return _trimmed("user_id", value, USER_ID_MAX_CHARS)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise _invalid("user_id", "must be a string or an integer, got {value}", value=_shown(value))


def _event_type(value: Any) -> str:
    if not isinstance(value, str):
        raise _invalid("event_type", "must be a string, got {value}", value=_shown(value))
    normalized = _trimmed("event_type", value, EVENT_TYPE_MAX_CHARS).lower()
    if len(normalized) > EVENT_TYPE_MAX_CHARS:  # a few characters grow when lower-cased ('İ' -> 'i̇')
        raise _invalid("event_type", "is longer than {limit} characters once lower-cased", limit=EVENT_TYPE_MAX_CHARS)
    return normalized


def _timestamp(value: Any) -> str:
    if not isinstance(value, str):
        raise _invalid("timestamp", "must be an ISO-8601 string, got {value}", value=_shown(value))
    if _TIMESTAMP_RE.fullmatch(value) is None:
        raise _invalid(
            "timestamp",
            "{value} is not ISO-8601 'YYYY-MM-DDThh:mm[:ss[.fff]]' with a zone ('Z' or +hh:mm/-hh:mm)",
            value=_shown(value),
        )
    try:
        # fromisoformat keeps the fraction to the microsecond (further digits are truncated).
        moment = datetime.fromisoformat(value)
        # Already 'YYYY-MM-DDThh:mm:ss.ffffffZ' (the form the generator and the producer write): the text is its
        # own normal form, and formatting it again would cost more than all the other rules together.
        canonical = len(value) == _UTC_TEXT_CHARS and value[19] == "." and value[-1] == "Z"
        text = value if canonical else utc_text(moment)
    except (ValueError, OverflowError) as exc:
        raise _invalid(
            "timestamp", "{value} is not a valid date and time: {error}", value=_shown(value), error=str(exc)
        ) from None
    if text[0] == "0":  # years 0001-0999 in UTC: outside DATETIME(6) of MySQL/MariaDB (the Spark job's rule too)
        raise _invalid(
            "timestamp", "{value} is outside the supported range 1000-01-01 .. 9999-12-31 (UTC)", value=_shown(value)
        )
    return text


def _game_id(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise _invalid("game_id", "must be a string or an integer, got {value}", value=_shown(value))


def _payload(value: Any) -> dict[str, Any] | None:
    if value is None or isinstance(value, dict):
        return value
    raise _invalid("payload", "must be a JSON object, got {value}", value=_shown(value))


def _event_id(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise _invalid("event_id", "must be a string, got {value}", value=_shown(value))
    if not value.strip():
        raise _invalid("event_id", "must not be empty or blank")
    return value


class GameEvent(BaseModel):
    """One valid, normalized event (contract §1). Unknown fields are ignored.

    `timestamp` holds the instant as its one normal text, 'YYYY-MM-DDThh:mm:ss.ffffffZ' (UTC, six fraction
    digits): two forms of one instant give one text, texts sort in time order, and it is what the message
    carries. `instant` gives it as an aware datetime.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    user_id: Annotated[str, PlainValidator(_user_id)]
    event_type: Annotated[str, PlainValidator(_event_type)]
    timestamp: Annotated[str, PlainValidator(_timestamp)]
    game_id: Annotated[str | None, PlainValidator(_game_id)] = None
    payload: Annotated[dict[str, Any] | None, PlainValidator(_payload)] = None
    event_id: Annotated[str | None, PlainValidator(_event_id)] = None

    @property
    def instant(self) -> datetime:
        """The timestamp as an aware datetime in UTC."""
        return datetime.fromisoformat(self.timestamp)

    def dedup_key(self) -> str:
        """The identity of contract §3: 'id:<event_id>', else 'sha256:<hex>' of the normalized tuple."""
        if self.event_id is not None:
            return "id:" + self.event_id
        canonical = json.dumps(
            [self.user_id, self.event_type, self.timestamp, self.game_id, self.payload],
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
        )
        return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()

    def to_message(self, source: str) -> bytes:
        """The value written to the events topic (docs/producer.md, "game-events message")."""
        event_id = self.event_id
        return to_json(
            {
                "event_id": event_id,
                "user_id": self.user_id,
                "event_type": self.event_type,
                "timestamp": self.timestamp,
                "game_id": self.game_id,
                "payload": self.payload,
                "dedup_key": self.dedup_key() if event_id is None else "id:" + event_id,
                "source": source,
            }
        )


class Rejection(Exception):
    """A record that is not a valid event; `reason` says why in one line."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _reason(error: ValidationError) -> str:
    parts = []
    for item in error.errors(include_url=False):
        kind = item["type"]
        field = ".".join(str(part) for part in item["loc"])
        if kind == "missing":
            parts.append(f"{field}: required field is missing")
        elif kind == "json_invalid":
            parts.append(f"not valid JSON: {item['ctx'].get('error', item['msg'])}")
        elif kind in {"model_type", "model_attributes_type"}:
            parts.append("not a JSON object")
        elif field:
            parts.append(f"{field}: {item['msg']}")
        else:
            parts.append(item["msg"])
    return "; ".join(parts)


_validate_json = GameEvent.__pydantic_validator__.validate_json  # model_validate_json minus a Python frame


def parse_json_event(raw: bytes | str) -> GameEvent:
    """Validate one JSON document (an NDJSON line). Raises Rejection with every broken rule."""
    try:
        event: GameEvent = _validate_json(raw)
        return event
    except ValidationError as exc:
        raise Rejection(_reason(exc)) from None


def parse_event(record: Any) -> GameEvent:
    """Validate one already-decoded JSON value (an element of a JSON array). Raises Rejection."""
    try:
        return GameEvent.model_validate(record)
    except ValidationError as exc:
        raise Rejection(_reason(exc)) from None


@dataclass(frozen=True, slots=True)
class RejectedRecord:
    """A record the producer did not publish as an event; it goes to the dead-letter topic."""

    reason: str
    bucket: str
    key: str
    record_kind: str  # "line" (NDJSON, 1-based), "element" (JSON array, 0-based) or "file"
    record_number: int | None
    raw: str
    # Size of the whole original when `raw` is only its beginning (a "file" record: the first bytes of the object).
    original_bytes: int | None = None
    # The object's ETag: with bucket, key, kind and number it names the record, so that the Spark job stores a
    # record once when a retry of the file (or the same file uploaded again) publishes its dead letter again.
    etag: str | None = None

    def to_message(self, raw_max_bytes: int, rejected_at: datetime) -> bytes:
        """The value written to the dead-letter topic (docs/producer.md, "dead-letter message")."""
        raw_bytes = self.raw.encode("utf-8", "replace")
        truncated = len(raw_bytes) > raw_max_bytes
        raw = raw_bytes[:raw_max_bytes].decode("utf-8", "replace") if truncated else self.raw
        size = len(raw_bytes)
        if self.original_bytes is not None:
            size = self.original_bytes
            truncated = truncated or self.original_bytes > raw_max_bytes
        return json.dumps(
            {
                "reason": self.reason,
                "source": "s3",
                "s3_bucket": self.bucket,
                "s3_key": self.key,
                "s3_etag": self.etag,
                "record_kind": self.record_kind,
                "record_number": self.record_number,
                "raw": raw,
                "raw_bytes": size,
                "raw_truncated": truncated,
                "rejected_at": utc_text(rejected_at),
                "producer": "game-events-producer",
            },
            ensure_ascii=False,
            separators=(",", ":"),
        ).encode("utf-8", "replace")
