"""Settings come from the environment once; errors name the variable."""

from __future__ import annotations

import pytest
from producer.settings import SettingsError, load_settings


def test_defaults_follow_the_contract() -> None:
    settings = load_settings()
    assert settings.events_bucket == "game-events"
    assert settings.incoming_prefix == "incoming/"
    assert settings.kafka_bootstrap_servers == "127.0.0.1:9092"
    assert settings.events_topic == "game-events"
    assert settings.dlq_topic == "game-events-dlq"
    assert settings.poll_enabled is False
    assert settings.poll_interval_seconds == 5.0


def test_values_are_read_from_upper_case_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "kafka:29092")
    monkeypatch.setenv("POLL_ENABLED", "true")
    settings = load_settings()
    assert settings.kafka_bootstrap_servers == "kafka:29092"
    assert settings.poll_enabled is True


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("POLL_INTERVAL_SECONDS", "soon"),
        ("POLL_INTERVAL_SECONDS", "0"),
        ("POLL_ENABLED", "maybe"),
        ("KAFKA_COMPRESSION", "brotli"),
        ("INCOMING_PREFIX", "incoming"),
        ("KAFKA_LINGER_MS", "-1"),
        ("EVENTS_TOPIC", ""),
        ("CLAIM_TTL_SECONDS", "600"),
    ],
)
def test_a_bad_value_is_an_error_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert f"{variable}={value!r}" in str(caught.value)


def test_a_destination_inside_incoming_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROCESSED_PREFIX", "incoming/done/")
    with pytest.raises(SettingsError, match="PROCESSED_PREFIX='incoming/done/' overlaps INCOMING_PREFIX"):
        load_settings()
