"""Settings of the Spark job (spark/settings.py) and the Spark configuration built from them (spark/job.py)."""

from __future__ import annotations

import pytest

from spark import job
from spark.settings import Settings, SettingsError, load_settings


def test_defaults_follow_the_contract(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "EVENTS_TOPIC", "TRIGGER_INTERVAL", "MYSQL_DATABASE", "DEDUP_WINDOW"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings()
    assert (settings.kafka_bootstrap_servers, settings.events_topic, settings.trigger_interval) == (
        "127.0.0.1:9092",
        "game-events",
        "1 minute",
    )
    assert (settings.mysql_host, settings.mysql_port, settings.mysql_database) == ("127.0.0.1", 3306, "analytics")
    assert settings.dedup_window == "1 hour"


def test_wrong_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRIGGER_INTERVAL", "every minute")
    with pytest.raises(SettingsError, match="TRIGGER_INTERVAL='every minute'"):
        load_settings()


def test_jdbc_url_batches_inserts_and_keeps_the_password_out() -> None:
    url = Settings(mysql_host="db", mysql_port=3307, mysql_database="analytics").jdbc_url
    assert url.startswith("jdbc:mysql://db:3307/analytics?")
    assert "rewriteBatchedStatements=true" in url
    assert "password" not in url.lower()


def test_spark_conf_is_sized_for_two_cores_with_rocksdb_state() -> None:
    conf = job.spark_conf(Settings(spark_jars_dir="/nonexistent"))
    assert conf["spark.sql.shuffle.partitions"] == "4"
    assert conf["spark.sql.streaming.stateStore.providerClass"].endswith("RocksDBStateStoreProvider")
    assert conf["spark.sql.streaming.stateStore.rocksdb.changelogCheckpointing.enabled"] == "true"
    assert conf["spark.sql.session.timeZone"] == "UTC"
    assert "spark.jars" not in conf
    # The per-write key count of the state stores is off unless asked for
    assert conf["spark.sql.streaming.stateStore.rocksdb.trackTotalNumberOfRows"] == "false"
    counted = job.spark_conf(Settings(spark_jars_dir="/nonexistent", state_row_count=True))
    assert counted["spark.sql.streaming.stateStore.rocksdb.trackTotalNumberOfRows"] == "true"
