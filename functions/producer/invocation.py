"""What the function can be invoked with: the EventBridge scheduled event, or a direct invoke with options."""

from __future__ import annotations

from typing import Literal

from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field


class S3Request(BaseModel):
    """`{"mode": "s3"}` drains incoming/; `{"mode": "s3", "key": "incoming/x.ndjson"}` takes one object."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["s3"]
    key: str | None = Field(default=None, min_length=1)
    poll: bool | None = None  # overrides POLL_ENABLED for this invocation


class GenerateRequest(BaseModel):
    """`{"mode": "generate", "count": 1000}`: synthetic traffic (see generator.py)."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["generate"]
    count: int = Field(default=1000, ge=1, le=10_000_000)
    users: int = Field(default=1000, ge=1, le=10_000_000)
    games: int = Field(default=5, ge=1, le=1000)
    seed: int | None = None
    rate: float = Field(default=50.0, gt=0, description="events per second of simulated time")
    start: AwareDatetime | None = None
    zipf_exponent: float = Field(default=1.1, gt=0, le=5)
    target: Literal["kafka", "s3"] = "kafka"
    realtime: bool = False  # publish at `rate` events per wall-clock second instead of as fast as possible


# What the handler parses an event into (Powertools parser): a scheduled tick or a direct invoke.
Invocation = EventBridgeModel | S3Request | GenerateRequest
