"""Kafka side of the producer: the only confluent_kafka importer.

`Publisher` is what the service needs; `KafkaPublisher` implements it with an idempotent confluent-kafka
Producer (acks=all). Deliveries are asynchronous: `publish` queues, `flush` waits until every queued message
is acknowledged by the brokers and raises `PublishError` when any was not.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from confluent_kafka import KafkaError, KafkaException, Message, Producer

# Headroom for the record batch and key inside message.max.bytes.
RECORD_OVERHEAD_BYTES = 512


class PublishError(Exception):
    """Kafka did not acknowledge every message; the caller must not treat the input as published."""


class KafkaUnavailableError(PublishError):
    """No broker answered in time, or a topic is missing."""


class Publisher(Protocol):
    max_value_bytes: int

    def ensure_ready(self, topics: Sequence[str]) -> None:
        """Raise KafkaUnavailableError unless the cluster answers and every topic exists."""

    def publish(self, topic: str, key: bytes | None, value: bytes) -> None:
        """Queue one message (non-blocking unless the local queue is full)."""

    def flush(self, timeout_seconds: float) -> None:
        """Wait for every queued message; raise PublishError if any was not acknowledged."""


class KafkaPublisher:
    def __init__(
        self,
        bootstrap_servers: str,
        *,
        compression: str = "lz4",
        linger_ms: int = 20,
        batch_bytes: int = 1_000_000,
        max_message_bytes: int = 1_000_000,
        delivery_timeout_ms: int = 60_000,
        connect_timeout_seconds: float = 10.0,
        client_id: str = "game-events-producer",
    ) -> None:
        self._bootstrap = bootstrap_servers
        self._connect_timeout = connect_timeout_seconds
        self.max_value_bytes = max_message_bytes - RECORD_OVERHEAD_BYTES
        self._failures = 0
        self._first_failure: str | None = None
        self._last_client_error: str | None = None
        self._producer = Producer(
            {
                "bootstrap.servers": bootstrap_servers,
                "client.id": client_id,
                "enable.idempotence": True,
                "acks": "all",
                "compression.type": compression,
                "linger.ms": linger_ms,
                "batch.size": batch_bytes,
                "message.max.bytes": max_message_bytes,
                "delivery.timeout.ms": delivery_timeout_ms,
                "queue.buffering.max.messages": 1_000_000,
                "queue.buffering.max.kbytes": 262_144,
                # Only failures call back into Python; success is "nothing left in the queue after flush".
                "delivery.report.only.error": True,
                "on_delivery": self._on_delivery,
                "error_cb": self._on_error,
            }
        )
        self._produce = self._producer.produce  # bound once: publish() runs a million times a file

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self._failures += 1
            if self._first_failure is None:
                self._first_failure = f"topic {msg.topic()}: {err.str()}"

    def _on_error(self, err: KafkaError) -> None:
        self._last_client_error = err.str()

    def ensure_ready(self, topics: Sequence[str]) -> None:
        try:
            metadata = self._producer.list_topics(timeout=self._connect_timeout)
        except KafkaException as exc:
            raise KafkaUnavailableError(
                f"Kafka at {self._bootstrap} did not answer within {self._connect_timeout:g}s "
                f"({self._last_client_error or exc.args[0]}); check KAFKA_BOOTSTRAP_SERVERS and that the "
                "brokers are up"
            ) from None
        missing = [t for t in topics if t not in metadata.topics or metadata.topics[t].error is not None]
        if missing:
            raise KafkaUnavailableError(
                f"Kafka at {self._bootstrap} has no topic {', '.join(missing)}; create it (make up does) "
                "or check EVENTS_TOPIC / DLQ_TOPIC"
            )

    def publish(self, topic: str, key: bytes | None, value: bytes) -> None:
        try:
            self._produce(topic, value, key)
        except BufferError:
            self._produce_when_room(topic, key, value)

    def _produce_when_room(self, topic: str, key: bytes | None, value: bytes) -> None:
        """The local queue is full: serve delivery reports (failures are counted there) until it takes the
        message. This is the only poll outside flush(): a failed message keeps its place in the queue until its
        report is served, so failures cannot pile up unseen; they fill the queue and bring publish() here."""
        while True:
            self._producer.poll(0.05)
            try:
                self._produce(topic, value, key)
                return
            except BufferError:
                continue

    def flush(self, timeout_seconds: float) -> None:
        remaining = self._producer.flush(max(timeout_seconds, 0.0))
        if remaining:
            # Drop what is left so that a later flush in this warm container does not report it.
            self._producer.purge()
            self._producer.flush(0)
        failures, first = self._failures, self._first_failure
        self._failures, self._first_failure = 0, None
        if remaining:
            raise PublishError(
                f"{remaining} messages not acknowledged by Kafka at {self._bootstrap} within "
                f"{timeout_seconds:.0f}s ({self._last_client_error or 'no error reported'})"
            )
        if failures:
            raise PublishError(f"{failures} messages were not delivered to Kafka; first: {first}")
