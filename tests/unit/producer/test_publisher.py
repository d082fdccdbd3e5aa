"""KafkaPublisher without a broker: a clear error, fast."""

from __future__ import annotations

import re
import time

import pytest
from producer.publisher import KafkaPublisher, KafkaUnavailableError, PublishError


def test_unreachable_kafka_is_a_clear_error_within_the_connect_timeout() -> None:
    publisher = KafkaPublisher("127.0.0.1:1", connect_timeout_seconds=1.0)
    started = time.monotonic()
    with pytest.raises(KafkaUnavailableError) as caught:
        publisher.ensure_ready(["game-events"])
    assert time.monotonic() - started < 5
    assert "Kafka at 127.0.0.1:1 did not answer within 1s" in str(caught.value)
    assert "KAFKA_BOOTSTRAP_SERVERS" in str(caught.value)


def test_the_largest_value_leaves_room_for_the_record_overhead() -> None:
    assert KafkaPublisher("127.0.0.1:1", max_message_bytes=100_000).max_value_bytes == 100_000 - 512


def test_messages_that_cannot_be_delivered_make_flush_fail_with_the_count() -> None:
    publisher = KafkaPublisher("127.0.0.1:1", delivery_timeout_ms=1000, linger_ms=0)
    for number in range(3):
        publisher.publish("game-events", b"user", b'{"n": %d}' % number)
    with pytest.raises(PublishError, match=r"^3 messages were not delivered to Kafka; first: topic game-events: "):
        publisher.flush(timeout_seconds=10)


def test_flush_gives_up_at_its_timeout_and_drops_what_is_left() -> None:
    publisher = KafkaPublisher("127.0.0.1:1", delivery_timeout_ms=60_000)
    publisher.publish("game-events", b"user", b"{}")
    started = time.monotonic()
    with pytest.raises(PublishError, match=re.escape("1 messages not acknowledged by Kafka at 127.0.0.1:1 within 1s")):
        publisher.flush(timeout_seconds=1)
    assert time.monotonic() - started < 5
    publisher.flush(timeout_seconds=1)  # nothing left over for the next object


def test_a_full_local_queue_serves_delivery_reports_until_the_message_fits() -> None:
    publisher = KafkaPublisher("127.0.0.1:1", delivery_timeout_ms=1000, linger_ms=0)
    produce, attempts = publisher._produce, []

    def full_twice(topic: str, value: bytes, key: bytes | None) -> None:
        attempts.append(value)
        if len(attempts) <= 2:
            raise BufferError("Local: Queue full")
        produce(topic, value, key)

    publisher._produce = full_twice

    publisher.publish("game-events", b"user", b"{}")

    assert attempts == [b"{}"] * 3
    with pytest.raises(PublishError, match=r"^1 messages were not delivered to Kafka"):
        publisher.flush(timeout_seconds=10)
