"""The native stack itself: Kafka, MariaDB and the stack manager's promises (idempotent start, data kept)."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path
from types import ModuleType

import pymysql
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

from tests.integration.conftest import require

ROOT = Path(__file__).resolve().parents[2]
STACK = [sys.executable, str(ROOT / "infra" / "stack.py")]


def stack_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*STACK, *args], capture_output=True, text=True, timeout=300, check=False)


def produce_one(bootstrap: str, topic: str, key: bytes, value: bytes) -> tuple[int, int]:
    """Produce one message with acks=all and return (partition, offset) from its delivery report."""
    reports: list[tuple[int, int]] = []

    def on_delivery(err: object, msg: object) -> None:
        assert err is None, f"delivery failed: {err}"
        reports.append((msg.partition(), msg.offset()))  # type: ignore[attr-defined]

    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True})
    producer.produce(topic, key=key, value=value, on_delivery=on_delivery)
    assert producer.flush(30) == 0
    assert len(reports) == 1
    return reports[0]


def read_at(bootstrap: str, topic: str, partition: int, offset: int) -> tuple[bytes | None, bytes | None, int]:
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"test-{uuid.uuid4()}", "enable.auto.commit": False}
    )
    try:
        consumer.assign([TopicPartition(topic, partition, offset)])
        msg = consumer.poll(30)
        assert msg is not None, f"no message at {topic}/{partition}@{offset}"
        assert msg.error() is None, msg.error()
        timestamp_type, _ = msg.timestamp()
        return msg.key(), msg.value(), timestamp_type
    finally:
        consumer.close()


def test_kafka_round_trip_keeps_key_value_and_uses_broker_time(kafka_bootstrap: str) -> None:
    # Given a message keyed by user
    key, value = b"user-42", b'{"event_type": "click", "id": "%s"}' % uuid.uuid4().hex.encode()

    # When it is produced with acks=all and read back from its offset
    partition, offset = produce_one(kafka_bootstrap, "game-events", key, value)
    got_key, got_value, timestamp_type = read_at(kafka_bootstrap, "game-events", partition, offset)

    # Then it is the same message, stamped with the broker's append time
    assert (got_key, got_value) == (key, value)
    assert timestamp_type == 2  # confluent_kafka.TIMESTAMP_LOG_APPEND_TIME


def test_topics_have_the_pipeline_settings(kafka_bootstrap: str) -> None:
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    topics = admin.list_topics(timeout=10).topics
    assert len(topics["game-events"].partitions) == 3
    assert "game-events-dlq" in topics
    for name in ("game-events", "game-events-dlq"):
        (future,) = admin.describe_configs([ConfigResource(ResourceType.TOPIC, name)]).values()
        assert future.result()["message.timestamp.type"].value == "LogAppendTime"


def test_auto_topic_creation_is_off(kafka_bootstrap: str) -> None:
    # A typo in a topic name must fail, not silently create a topic.
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "message.timeout.ms": 5000})
    errors: list[object] = []
    producer.produce("game-events-typo", value=b"x", on_delivery=lambda err, _msg: errors.append(err))
    producer.flush(15)
    assert errors
    assert errors[0] is not None
    assert "game-events-typo" not in AdminClient({"bootstrap.servers": kafka_bootstrap}).list_topics(timeout=10).topics


def test_app_user_reads_and_writes_rows(app_db: pymysql.connections.Connection) -> None:
    with app_db.cursor() as cursor:
        cursor.execute("CREATE TEMPORARY TABLE scratch (id INT PRIMARY KEY, name VARCHAR(10))")
        cursor.execute("INSERT INTO scratch VALUES (%s, %s)", (1, "Ana"))
        cursor.execute("UPDATE scratch SET name = %s WHERE id = %s", ("ana", 1))
        cursor.execute("SELECT name FROM scratch WHERE id = %s", (1,))
        assert cursor.fetchone() == ("ana",)


@pytest.mark.parametrize(
    "statement",
    [
        "DROP TABLE event_type_metrics",
        "CREATE TABLE intruder (id INT)",
        "ALTER TABLE event_type_metrics ADD COLUMN intruder INT",
        "TRUNCATE TABLE event_type_metrics",
        "GRANT SELECT ON analytics.* TO 'someone'@'%'",
        "CREATE DATABASE intruder",
        "SELECT COUNT(*) FROM mysql.user",
    ],
)
def test_app_user_cannot_change_schema_or_privileges(app_db: pymysql.connections.Connection, statement: str) -> None:
    with app_db.cursor() as cursor, pytest.raises(pymysql.err.OperationalError) as denied:
        cursor.execute(statement)
    assert denied.value.args[0] in (1044, 1142, 1227, 1045, 1143), denied.value.args


def test_up_twice_is_harmless(native_stack: ModuleType) -> None:
    # Given the stack is running
    pids = {name: service.pid() for name, service in native_stack.SERVICES.items()}

    # When it is started again
    result = stack_cli("up")

    # Then nothing restarts and it says so
    assert result.returncode == 0, result.stderr
    assert "already running" in result.stdout
    assert {name: service.pid() for name, service in native_stack.SERVICES.items()} == pids


def test_down_then_up_keeps_kafka_messages_and_database_rows(kafka_bootstrap: str) -> None:
    # Given a message in Kafka and a row in the database
    marker = uuid.uuid4().hex
    partition, offset = produce_one(kafka_bootstrap, "game-events-dlq", b"k", marker.encode())
    native_stack = require("kafka", "mariadb")
    mariadb = native_stack.SERVICES["mariadb"]
    mariadb.admin("CREATE TABLE IF NOT EXISTS stack_test_marker (marker CHAR(32) PRIMARY KEY)", database="analytics")
    mariadb.admin(f"INSERT INTO stack_test_marker VALUES ('{marker}')", database="analytics")  # noqa: S608 - uuid hex

    # When both services stop and start again
    assert stack_cli("stop", "kafka", "mariadb").returncode == 0
    assert not native_stack.SERVICES["kafka"].running()
    started = stack_cli("start", "kafka", "mariadb")
    assert started.returncode == 0, started.stdout + started.stderr

    # Then both still hold what they held
    try:
        assert read_at(kafka_bootstrap, "game-events-dlq", partition, offset)[1] == marker.encode()
        assert marker in mariadb.admin("SELECT marker FROM stack_test_marker", database="analytics")
    finally:
        mariadb.admin("DROP TABLE IF EXISTS stack_test_marker", database="analytics")


def test_status_reports_every_service_healthy() -> None:
    result = stack_cli("status")
    assert result.returncode == 0, result.stdout
    for name in ("kafka", "mariadb", "localstack"):
        assert any(line.startswith(name) and "healthy" in line for line in result.stdout.splitlines()), result.stdout


def listening_addresses(port: int) -> list[str]:
    """Local addresses of the TCP sockets listening on a port, from the kernel's tables."""
    addresses = []
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, port_hex = local.split(":")
            if state == "0A" and int(port_hex, 16) == port:  # 0A = LISTEN
                assert len(address) == width
                addresses.append(address)
    return addresses


@pytest.mark.parametrize("service", ["kafka", "mariadb", "localstack"])
def test_every_service_listens_on_loopback_only(service: str) -> None:
    settings = require(service).S
    port = {"kafka": settings.kafka_port, "mariadb": settings.mysql_port, "localstack": settings.localstack_port}[
        service
    ]
    loopback = {
        "0100007F",  # 127.0.0.1 in /proc/net/tcp (little-endian)
        "0000000000000000FFFF00000100007F",  # ::ffff:127.0.0.1
        "00000000000000000000000001000000",  # ::1
    }
    addresses = listening_addresses(port)
    assert addresses, f"nothing listens on port {port}"
    assert set(addresses) <= loopback, f"{service} listens beyond loopback on port {port}: {addresses}"
