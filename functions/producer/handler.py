"""Lambda entry point: Powertools wiring only. The work is done by service.ProducerService."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.typing import LambdaContext

from producer.invocation import Invocation
from producer.publisher import KafkaPublisher
from producer.service import SERVICE_NAME, ProducerService, Summary
from producer.settings import Settings, load_settings
from producer.source import S3Source

logger = Logger(service=SERVICE_NAME)
metrics = Metrics(namespace="GameEvents", service=SERVICE_NAME)


@dataclass(frozen=True, slots=True)
class Dependencies:
    settings: Settings
    service: ProducerService


@cache
def dependencies() -> Dependencies:
    """Built once per container (cold start): settings, the S3 client and the Kafka producer."""
    settings = load_settings()
    source = S3Source.create(
        settings.events_bucket, settings.claims_prefix, settings.claim_ttl_seconds, settings.s3_endpoint_url
    )
    publisher = KafkaPublisher(
        settings.kafka_bootstrap_servers,
        compression=settings.kafka_compression,
        linger_ms=settings.kafka_linger_ms,
        batch_bytes=settings.kafka_batch_bytes,
        max_message_bytes=settings.kafka_max_message_bytes,
        delivery_timeout_ms=settings.kafka_delivery_timeout_ms,
        connect_timeout_seconds=settings.kafka_connect_timeout_seconds,
    )
    return Dependencies(settings, ProducerService(settings, source, publisher))


def _record_metrics(summary: Summary) -> None:
    metrics.add_dimension(name="mode", value=summary.mode)
    metrics.add_metric(name="FilesProcessed", unit=MetricUnit.Count, value=summary.files)
    metrics.add_metric(name="FilesRejected", unit=MetricUnit.Count, value=summary.files_rejected)
    metrics.add_metric(name="EventsPublished", unit=MetricUnit.Count, value=summary.events_published)
    metrics.add_metric(name="EventsRejected", unit=MetricUnit.Count, value=summary.events_rejected)
    metrics.add_metric(name="BytesRead", unit=MetricUnit.Bytes, value=summary.bytes_read)
    metrics.add_metric(name="InvocationSeconds", unit=MetricUnit.Seconds, value=summary.seconds)


@metrics.log_metrics(capture_cold_start_metric=True)
@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        request: Invocation = parse(event=event, model=Invocation)  # type: ignore[call-overload]
        summary = dependencies().service.run(
            request, lambda: context.get_remaining_time_in_millis() / 1000, owner=context.aws_request_id
        )
    except Exception:
        metrics.add_metric(name="InvocationErrors", unit=MetricUnit.Count, value=1)
        raise
    _record_metrics(summary)
    logger.info("invocation done", **summary.as_dict())
    return summary.as_dict()
