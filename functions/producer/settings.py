"""The producer's configuration: the only place that reads the environment (docs/producer.md, "Settings")."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class SettingsError(Exception):
    """The environment holds a value the producer cannot run with; the message names the variable."""


class Settings(BaseSettings):
    """Every field is read from the environment variable of the same name in upper case."""

    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore", frozen=True)

    # S3 source
    events_bucket: str = Field(default="game-events", min_length=3)
    incoming_prefix: str = "incoming/"
    processed_prefix: str = "processed/"
    rejected_prefix: str = "rejected/"
    claims_prefix: str = "claims/"
    # Longer than the longest Lambda timeout (900 s): a claim this old belongs to an invocation that died.
    claim_ttl_seconds: int = Field(default=960, ge=901)
    # Explicit S3 endpoint (sam local invoke against LocalStack). Unset or empty: boto3's own resolution, which
    # honours AWS_ENDPOINT_URL (LocalStack sets it inside the functions it runs).
    s3_endpoint_url: str | None = None

    # Kafka
    kafka_bootstrap_servers: str = Field(default="127.0.0.1:9092", min_length=1)
    events_topic: str = Field(default="game-events", min_length=1)
    dlq_topic: str = Field(default="game-events-dlq", min_length=1)
    kafka_compression: Literal["lz4", "zstd", "snappy", "gzip", "none"] = "lz4"
    kafka_linger_ms: int = Field(default=20, ge=0, le=5000)
    kafka_batch_bytes: int = Field(default=1_000_000, ge=1000)
    kafka_max_message_bytes: int = Field(default=1_000_000, ge=1000)
    kafka_delivery_timeout_ms: int = Field(default=60_000, ge=1000)
    kafka_connect_timeout_seconds: float = Field(default=10.0, gt=0)
    dlq_raw_max_bytes: int = Field(default=65_536, ge=256)

    # Scheduling
    poll_enabled: bool = False
    poll_interval_seconds: float = Field(default=5.0, gt=0)
    deadline_margin_seconds: float = Field(default=20.0, ge=1)

    @field_validator("s3_endpoint_url")
    @classmethod
    def _empty_is_unset(cls, value: str | None) -> str | None:
        return value or None

    @field_validator("incoming_prefix", "processed_prefix", "rejected_prefix", "claims_prefix")
    @classmethod
    def _is_folder(cls, value: str) -> str:
        if not value.endswith("/") or value.startswith("/"):
            raise ValueError("must be a folder prefix such as 'incoming/' (ends with '/', no leading '/')")
        return value

    @model_validator(mode="after")
    def _prefixes_apart(self) -> Settings:
        others = {
            "PROCESSED_PREFIX": self.processed_prefix,
            "REJECTED_PREFIX": self.rejected_prefix,
            "CLAIMS_PREFIX": self.claims_prefix,
        }
        for name, prefix in others.items():
            if prefix.startswith(self.incoming_prefix) or self.incoming_prefix.startswith(prefix):
                raise ValueError(
                    f"{name}={prefix!r} overlaps INCOMING_PREFIX={self.incoming_prefix!r}: moved objects "
                    "would be taken again"
                )
        return self


def load_settings() -> Settings:
    """Build the settings once from the environment. Raises SettingsError naming each wrong variable."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(part) for part in error['loc']).upper()}={error.get('input')!r}: {error['msg']}"
            if error["loc"]
            else error["msg"].removeprefix("Value error, ")
            for error in exc.errors(include_url=False)
        ]
        raise SettingsError("invalid producer configuration: " + "; ".join(problems)) from None
