"""The producer's logic: take new S3 objects, validate every record, publish, then move the object.

Nothing here knows about Lambda, boto3 or confluent_kafka: the handler passes in an `S3Source`, a
`Publisher` and a function telling how many seconds the invocation has left.
"""

from __future__ import annotations

import gzip
import json
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger

from producer.formats import (
    MAX_LINE_BYTES,
    SUPPORTED,
    Element,
    FileFormat,
    IntegerBeyond64BitsError,
    RawLine,
    UnreadableFileError,
    detect_format,
    read_elements,
    read_lines,
)
from producer.generator import TrafficGenerator
from producer.invocation import GenerateRequest, Invocation, S3Request
from producer.models import RejectedRecord, Rejection, parse_event, parse_json_event, utc_text
from producer.publisher import Publisher
from producer.settings import Settings
from producer.source import S3Object, S3Source

SERVICE_NAME = "game-events-producer"
logger = Logger(service=SERVICE_NAME, child=True)

RemainingSeconds = Callable[[], float]
# Time kept back from a flush so that the claim can still be released before the function times out.
_FLUSH_RESERVE_SECONDS = 5.0


# How often (in records) a long file checks that the invocation still has time to flush.
_DEADLINE_CHECK_EVERY = 10_000


def _too_large(value: bytes, limit: int) -> Rejection:
    return Rejection(
        f"event too large for Kafka: {len(value)} bytes as a message, the limit is {limit} (KAFKA_MAX_MESSAGE_BYTES)"
    )


class DeadlineError(RuntimeError):
    """The invocation ran out of time in the middle of an object (which stays in incoming/)."""


class InvalidRequestError(ValueError):
    """The invocation asked for something the producer cannot do (for example a key outside incoming/)."""


@dataclass(slots=True)
class Summary:
    """What one invocation did; returned by the function, logged, and turned into metrics."""

    mode: str
    files: int = 0
    files_rejected: int = 0
    files_skipped: int = 0
    files_left: int = 0
    events_published: int = 0
    events_rejected: int = 0
    bytes_read: int = 0
    seconds: float = 0.0
    polls: int = 0

    def as_dict(self) -> dict[str, Any]:
        result = asdict(self)
        result["seconds"] = round(self.seconds, 3)
        result["events_per_second"] = round(self.events_published / self.seconds) if self.seconds else 0
        return result


@dataclass(slots=True)
class _FileCounts:
    published: int = 0
    rejected: int = 0


class ProducerService:
    def __init__(
        self,
        settings: Settings,
        source: S3Source,
        publisher: Publisher,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._source = source
        self._publisher = publisher
        self._sleep = sleep
        self._clock = clock

    def run(self, request: Invocation, remaining: RemainingSeconds, *, owner: str) -> Summary:
        """Do what one invocation asks: the scheduled event and {"mode": "s3"} drain incoming/."""
        if isinstance(request, GenerateRequest):
            return self.generate(request, remaining)
        if isinstance(request, S3Request):
            return self.drain(remaining, owner=owner, key=request.key, poll=request.poll)
        return self.drain(remaining, owner=owner)

    # -- S3 mode ------------------------------------------------------------------------------------------

    def drain(
        self, remaining: RemainingSeconds, *, owner: str, key: str | None = None, poll: bool | None = None
    ) -> Summary:
        """Publish every new object under incoming/ (or only `key`), oldest first. With polling on, look
        again every POLL_INTERVAL_SECONDS until DEADLINE_MARGIN_SECONDS before the timeout."""
        settings = self._settings
        if key is not None and not key.startswith(settings.incoming_prefix):
            raise InvalidRequestError(f"key {key!r} is not under {settings.incoming_prefix!r}")
        summary = Summary(mode="s3")
        started = self._clock()
        self._publisher.ensure_ready([settings.events_topic, settings.dlq_topic])
        polling = settings.poll_enabled if poll is None else poll
        while True:
            summary.polls += 1
            if key is None:
                objects = self._source.list_new(settings.incoming_prefix)
            else:
                found = self._source.head(key)
                if found is None:
                    raise InvalidRequestError(f"no object s3://{settings.events_bucket}/{key}")
                objects = [found]
            for index, obj in enumerate(objects):
                if remaining() < settings.deadline_margin_seconds:
                    summary.files_left = len(objects) - index
                    logger.warning("deadline near, leaving objects for the next run", left=summary.files_left)
                    break
                self._take(obj, summary, remaining, owner)
            if key is not None or not polling:
                break
            if remaining() < settings.deadline_margin_seconds + settings.poll_interval_seconds:
                break
            self._sleep(settings.poll_interval_seconds)
        summary.seconds = self._clock() - started
        return summary

    def _take(self, obj: S3Object, summary: Summary, remaining: RemainingSeconds, owner: str) -> None:
        if not self._source.claim(obj, owner):
            summary.files_skipped += 1
            logger.info("object claimed by another invocation, skipped", s3_key=obj.key)
            return
        try:
            self._process(obj, summary, remaining)
        finally:
            self._source.release(obj.key)

    def _process(self, obj: S3Object, summary: Summary, remaining: RemainingSeconds) -> None:
        settings = self._settings
        started = self._clock()
        counts = _FileCounts()
        relative = obj.key[len(settings.incoming_prefix) :]
        fmt = detect_format(obj.key)
        failure: UnreadableFileError | None = None
        if fmt is None:
            failure = UnreadableFileError(f"unsupported file name: expected {SUPPORTED}")
        else:
            try:
                self._publish_records(obj, fmt, counts, remaining)
            except UnreadableFileError as exc:
                failure = exc
        if failure is not None:
            self._reject_file(obj, failure, counts)
        self._publisher.flush(max(remaining() - _FLUSH_RESERVE_SECONDS, 1.0))
        # Every message of this object is acknowledged: only now does it leave incoming/.
        if failure is None:
            self._source.move(obj, settings.processed_prefix + relative)
        else:
            report = {
                "s3_key": obj.key,
                "moved_to": settings.rejected_prefix + relative,
                "reason": failure.reason,
                "position": failure.position,
                "events_published_before_the_error": counts.published,
                "records_rejected": counts.rejected,
                "rejected_at": utc_text(datetime.now(UTC)),
            }
            self._source.put_json(settings.rejected_prefix + relative + ".report.json", report)
            self._source.move(obj, settings.rejected_prefix + relative)
            summary.files_rejected += 1
        summary.files += 1
        summary.events_published += counts.published
        summary.events_rejected += counts.rejected
        summary.bytes_read += obj.size
        logger.info(
            "object published",
            s3_key=obj.key,
            outcome="processed" if failure is None else "rejected",
            events=counts.published,
            rejected=counts.rejected,
            bytes=obj.size,
            seconds=round(self._clock() - started, 3),
        )

    def _publish_records(
        self, obj: S3Object, fmt: FileFormat, counts: _FileCounts, remaining: RemainingSeconds
    ) -> None:
        with self._source.open(obj) as stream:
            if fmt.kind == "ndjson":
                self._publish_lines(obj, read_lines(stream, fmt), counts, remaining)
            else:
                try:
                    self._publish_elements(obj, read_elements(stream, fmt), counts, remaining)
                except IntegerBeyond64BitsError as exc:
                    # The elements before it are published; read the object again, exactly, from that element on.
                    logger.info("integer beyond 64 bits: reading on with the exact parser", s3_key=obj.key)
                    with self._source.open(obj) as again:
                        elements = read_elements(again, fmt, exact_integers=True, start=exc.number)
                        self._publish_elements(obj, elements, counts, remaining)

    def _publish_lines(
        self, obj: S3Object, lines: Iterator[RawLine], counts: _FileCounts, remaining: RemainingSeconds
    ) -> None:
        """The hot loop (a million lines a run): locals only, nothing per line that one check can do per file."""
        publish = self._publisher.publish
        topic = self._settings.events_topic
        limit = self._publisher.max_value_bytes
        origin = f"s3://{self._settings.events_bucket}/{obj.key}#"
        published = 0
        try:
            for number, raw, too_long in lines:
                if number % _DEADLINE_CHECK_EVERY == 0:
                    self._check_deadline(obj, number, remaining)
                try:
                    if too_long:
                        raise Rejection(f"line too long: more than {MAX_LINE_BYTES} bytes")
                    event = parse_json_event(raw)
                    value = event.to_message(origin + str(number))
                    if len(value) > limit:
                        raise _too_large(value, limit)
                except Rejection as rejection:
                    counts.rejected += 1
                    self._dead_letter(obj, rejection, "line", number, raw.decode("utf-8", "replace"))
                    continue
                publish(topic, event.user_id.encode(), value)
                published += 1
        finally:
            counts.published += published  # also when the file breaks half-way (its report says how many)

    def _publish_elements(
        self, obj: S3Object, elements: Iterator[Element], counts: _FileCounts, remaining: RemainingSeconds
    ) -> None:
        publish = self._publisher.publish
        topic = self._settings.events_topic
        limit = self._publisher.max_value_bytes
        origin = f"s3://{self._settings.events_bucket}/{obj.key}#"
        for element in elements:
            if element.number % _DEADLINE_CHECK_EVERY == 0:
                self._check_deadline(obj, element.number, remaining)
            try:
                event = parse_event(element.value)
                value = event.to_message(origin + str(element.number))
                if len(value) > limit:
                    raise _too_large(value, limit)
            except Rejection as rejection:
                counts.rejected += 1
                self._dead_letter(obj, rejection, "element", element.number, element.text())
                continue
            publish(topic, event.user_id.encode(), value)
            counts.published += 1

    def _check_deadline(self, obj: S3Object, number: int, remaining: RemainingSeconds) -> None:
        if remaining() < 2 * _FLUSH_RESERVE_SECONDS:
            raise DeadlineError(
                f"s3://{self._settings.events_bucket}/{obj.key} not finished within the function's timeout "
                f"(at record {number}); it stays in incoming/: raise the timeout or split the file"
            )

    def _dead_letter(self, obj: S3Object, rejection: Rejection, kind: str, number: int, raw: str) -> None:
        self._publish_dead_letter(
            RejectedRecord(
                reason=rejection.reason,
                bucket=self._settings.events_bucket,
                key=obj.key,
                record_kind=kind,
                record_number=number,
                raw=raw,
                etag=obj.etag,
            )
        )

    def _reject_file(self, obj: S3Object, failure: UnreadableFileError, counts: _FileCounts) -> None:
        counts.rejected += 1
        where = f" (at {failure.position})" if failure.position else ""
        logger.warning("object unreadable", s3_key=obj.key, reason=failure.reason, position=failure.position)
        self._publish_dead_letter(
            RejectedRecord(
                reason=f"unreadable file{where}: {failure.reason}",
                bucket=self._settings.events_bucket,
                key=obj.key,
                record_kind="file",
                record_number=None,
                raw=self._source.read_head(obj, self._settings.dlq_raw_max_bytes).decode("utf-8", "replace"),
                original_bytes=obj.size,
                etag=obj.etag,
            )
        )

    def _publish_dead_letter(self, record: RejectedRecord) -> None:
        value = record.to_message(self._settings.dlq_raw_max_bytes, datetime.now(UTC))
        self._publisher.publish(self._settings.dlq_topic, record.key.encode(), value)

    # -- generate mode ------------------------------------------------------------------------------------

    def generate(self, request: GenerateRequest, remaining: RemainingSeconds) -> Summary:
        """Synthetic traffic straight to the events topic, or as one NDJSON.gz object in incoming/."""
        settings = self._settings
        summary = Summary(mode="generate")
        started = self._clock()
        generator = TrafficGenerator(
            users=request.users,
            games=request.games,
            seed=request.seed,
            rate=request.rate,
            start=request.start,
            zipf_exponent=request.zipf_exponent,
        )
        events = generator.events(request.count)
        if request.target == "s3":
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
            key = f"{settings.incoming_prefix}generated/{stamp}-seed{generator.seed}.ndjson.gz"
            with tempfile.TemporaryFile() as spool:
                with gzip.GzipFile(fileobj=spool, mode="wb") as compressed:
                    for generated in events:
                        compressed.write(json.dumps(generated).encode() + b"\n")
                        summary.events_published += 1
                summary.bytes_read = spool.tell()
                spool.seek(0)
                self._source.upload(key, spool)
            summary.files = 1
            logger.info("generated object uploaded", s3_key=key, events=summary.events_published)
        else:
            self._publisher.ensure_ready([settings.events_topic])
            origin = f"generator:seed={generator.seed}#"
            for number, generated in enumerate(events):
                event = parse_event(generated)
                self._publisher.publish(
                    settings.events_topic, event.user_id.encode(), event.to_message(origin + str(number))
                )
                summary.events_published += 1
                if request.realtime:
                    lag = number / request.rate - (self._clock() - started)
                    if lag > 0:
                        self._sleep(lag)
                if remaining() < settings.deadline_margin_seconds:
                    logger.warning("deadline near, generation stopped", events=summary.events_published)
                    break
            self._publisher.flush(max(remaining() - _FLUSH_RESERVE_SECONDS, 1.0))
        summary.seconds = self._clock() - started
        return summary
