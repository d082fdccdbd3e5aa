"""The Spark job's configuration: the only place that reads the environment (docs/spark-job.md, "Settings")."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final
from urllib.parse import quote

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ROOT: Final = Path(__file__).resolve().parent.parent

_INTERVAL_RE: Final = re.compile(r"\d+(\.\d+)?\s+(millisecond|second|minute|hour)s?", re.IGNORECASE)


class SettingsError(Exception):
    """The environment holds a value the job cannot run with; the message names the variable."""


class Settings(BaseSettings):
    """Every field is read from the environment variable of the same name in upper case."""

    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore", frozen=True)

    # Kafka source
    kafka_bootstrap_servers: str = Field(default="127.0.0.1:9092", min_length=1)
    events_topic: str = Field(default="game-events", min_length=1)
    dlq_topic: str = Field(default="game-events-dlq", min_length=1)
    # Upper bound of Kafka records per micro-batch (0 = no bound). Bounds the first batch after a long outage.
    max_offsets_per_trigger: int = Field(default=2_000_000, ge=0)
    # Spark tasks per micro-batch at least (big Kafka partitions are split): 3 Kafka partitions on 2 cores would
    # leave one core idle a third of the time. Spark splits a partition into round(its share x this) tasks, so
    # with 3 equal partitions 4 still gives 3 tasks; 6 gives 6 (two per partition). 0 = one task per partition.
    kafka_min_partitions: int = Field(default=6, ge=0)
    # "true" makes a gap in the offsets (retention deleted unread records) stop the job instead of skipping.
    fail_on_data_loss: bool = True

    # Streaming
    trigger_interval: str = "1 minute"
    checkpoint_location: str = str(ROOT / ".stack" / "spark" / "checkpoints" / "game-events-metrics")
    # Copies of an event reaching Kafka within this window (by Kafka arrival time) count once (contract §3).
    dedup_window: str = "1 hour"
    # Shuffle partitions: also the number of state-store partitions, fixed at the first start of a checkpoint.
    shuffle_partitions: int = Field(default=4, ge=1, le=10_000)
    # Count the keys of each state store (progress log `state_rows`): one more RocksDB read per write, ~1.3 s of a
    # 1M-event batch on 2 cores. Off: `state_rows` reads 0 (`state_memory_bytes` is still reported).
    state_row_count: bool = False
    spark_master: str | None = None
    # Heap of the driver JVM (with master local[*] also the executor: the batch's local checkpoint and the state
    # stores' caches). Only applies when the job starts its own JVM (python -m spark.job); under spark-submit use
    # --driver-memory.
    driver_memory: str = Field(default="2g", pattern=r"^\d+[kmgt]?$")
    query_name: str = Field(default="game-events-metrics", min_length=1, max_length=64)

    # Rejected records: raw text is kept up to this many characters, then truncated (flagged raw_truncated).
    rejected_raw_max_chars: int = Field(default=65_536, ge=256, le=4_000_000)

    # MySQL / MariaDB
    mysql_host: str = "127.0.0.1"
    mysql_port: int = Field(default=3306, ge=1, le=65_535)
    mysql_database: str = Field(default="analytics", min_length=1)
    mysql_user: str = Field(default="analytics", min_length=1)
    mysql_password: SecretStr = SecretStr("analytics")
    jdbc_batch_size: int = Field(default=10_000, ge=1)
    mysql_connect_timeout_seconds: int = Field(default=10, ge=1)

    # Restart of a failed query (MySQL down, Kafka down): exponential backoff between these bounds.
    restart_backoff_initial_seconds: float = Field(default=2.0, gt=0)
    restart_backoff_max_seconds: float = Field(default=60.0, gt=0)
    # 0 = restart forever; otherwise give up (exit non-zero) after this many consecutive failures.
    max_consecutive_failures: int = Field(default=0, ge=0)

    # Extra jars (comma-separated paths) for a local run: the Kafka source and the JDBC driver.
    spark_jars_dir: str = str(ROOT / ".stack" / "jars" / "spark")

    @field_validator("trigger_interval", "dedup_window")
    @classmethod
    def _is_interval(cls, value: str) -> str:
        if _INTERVAL_RE.fullmatch(value.strip()) is None:
            raise ValueError("must be an interval such as '1 minute', '2 seconds' or '1 hour'")
        return value.strip()

    @property
    def jdbc_url(self) -> str:
        """JDBC URL of the database for Spark's executors (MySQL Connector/J; works with MariaDB too)."""
        params = (
            "rewriteBatchedStatements=true&useServerPrepStmts=false&cachePrepStmts=true"
            "&connectionTimeZone=UTC&forceConnectionTimeZoneToSession=true&characterEncoding=UTF-8"
            f"&connectTimeout={self.mysql_connect_timeout_seconds * 1000}"
        )
        return f"jdbc:mysql://{self.mysql_host}:{self.mysql_port}/{quote(self.mysql_database)}?{params}"

    def jars(self) -> list[str]:
        """The jar files of spark_jars_dir (empty when the directory does not exist, e.g. under spark-submit)."""
        folder = Path(self.spark_jars_dir)
        return sorted(str(p) for p in folder.glob("*.jar")) if folder.is_dir() else []


def load_settings() -> Settings:
    """Build the settings once from the environment. Raises SettingsError naming each wrong variable."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(part) for part in error['loc']).upper()}={error.get('input')!r}: {error['msg']}"
            for error in exc.errors(include_url=False)
        ]
        raise SettingsError("invalid Spark job settings: " + "; ".join(problems)) from None
