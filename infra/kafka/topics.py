"""Create the pipeline's Kafka topics, idempotently.

Used by the native stack (``infra/stack.py up``) and by docker compose's ``init`` service::

    KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092 python infra/kafka/topics.py

A topic that exists keeps its partitions (they can only grow, and re-keying would move users between
partitions); its settings from ``TOPICS`` are re-applied, so a changed retention or timestamp type takes effect.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from dataclasses import dataclass, field

from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
    ResourceType,
)

log = logging.getLogger("topics")


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str] = field(default_factory=dict)


TOPICS: tuple[TopicSpec, ...] = (
    # Keyed by user_id, so one user's events stay in order within a partition. LogAppendTime: the message
    # timestamp is the broker's arrival time, which the Spark job uses for its deduplication window.
    TopicSpec(
        name="game-events",
        partitions=3,
        config={"message.timestamp.type": "LogAppendTime", "retention.ms": str(7 * 24 * 3600 * 1000)},
    ),
    # Records the producer rejected (reason, S3 key, line/element, raw text); Spark stores them in rejected_events.
    TopicSpec(
        name="game-events-dlq",
        partitions=1,
        config={"message.timestamp.type": "LogAppendTime", "retention.ms": str(7 * 24 * 3600 * 1000)},
    ),
)


def ensure_topics(bootstrap_servers: str, topics: tuple[TopicSpec, ...] = TOPICS, timeout: float = 30.0) -> list[str]:
    """Create missing topics and re-apply the settings of existing ones. Returns the names created."""
    admin = AdminClient({"bootstrap.servers": bootstrap_servers})
    existing = admin.list_topics(timeout=timeout).topics
    missing = [t for t in topics if t.name not in existing]
    created: list[str] = []
    if missing:
        futures = admin.create_topics(
            [NewTopic(t.name, num_partitions=t.partitions, replication_factor=1, config=t.config) for t in missing],
            operation_timeout=timeout,
            request_timeout=timeout,
        )
        for name, future in futures.items():
            try:
                future.result()
                created.append(name)
            except KafkaException as exc:
                # Another process created it between our list and create: that is the state we want.
                if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":
                    raise
    present = [t for t in topics if t.name not in created]
    if present:
        resources = [
            ConfigResource(
                ResourceType.TOPIC,
                t.name,
                incremental_configs=[
                    ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET) for k, v in t.config.items()
                ],
            )
            for t in present
        ]
        for future in admin.incremental_alter_configs(resources, request_timeout=timeout).values():
            future.result()
    for t in topics:
        log.info("topic ready: %s (%s)", t.name, "created" if t.name in created else "exists")
    return created


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--bootstrap-servers",
        default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
        help="Kafka bootstrap servers (env KAFKA_BOOTSTRAP_SERVERS, default 127.0.0.1:9092)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        ensure_topics(args.bootstrap_servers)
    except KafkaException as exc:
        log.error("cannot create topics on %s: %s — is the broker up?", args.bootstrap_servers, exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
