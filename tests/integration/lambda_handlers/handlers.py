"""Handlers the Lambda executor integration tests deploy (one zip of this folder, one handler per behaviour)."""

from __future__ import annotations

import json
import os
import sys
import time
from functools import cache
from typing import Any

import boto3  # the managed runtime ships boto3: importing it is part of a realistic cold start


def echo(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Returns the event and facts about the process it ran in."""
    print(f"echo handler got {json.dumps(event)}")  # the tests look for this line in the logs
    print("a line on stderr", file=sys.stderr)
    return {
        "event": event,
        "request_id": context.aws_request_id,
        "function_name": context.function_name,
        "remaining_ms": context.get_remaining_time_in_millis(),
        "python": f"{sys.version_info.major}.{sys.version_info.minor}",
        "cwd": os.getcwd(),
        "env": dict(os.environ),
        "boto3": boto3.__version__,
    }


def fail(event: dict[str, Any], context: Any) -> None:
    raise ValueError(f"bad input: {event.get('value')}")


def sleep(event: dict[str, Any], context: Any) -> dict[str, Any]:
    seconds = float(event.get("seconds", 0))
    print(f"sleeping {seconds}s")
    time.sleep(seconds)
    return {"slept": seconds}


def crash(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Kills its own process when asked to (``{"crash": true}``), else answers normally."""
    if event.get("crash"):
        print("about to exit the process")
        sys.stdout.flush()
        os._exit(3)
    return {"crashed": False}


def whoami(event: dict[str, Any], context: Any) -> dict[str, int]:
    """The runtime's pid and its parent's (the environment's init): for the process-lifetime tests."""
    return {"pid": os.getpid(), "ppid": os.getppid()}


@cache
def _s3() -> Any:
    """One client per environment, created on first use (as a handler creates clients at cold start)."""
    return boto3.client("s3")


def put_marker(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Writes an S3 object named after the request: the side effect of an async (Event) or scheduled invocation."""
    bucket = os.environ["MARKER_BUCKET"]
    key = f"markers/{event.get('token') or context.aws_request_id}.json"
    _s3().put_object(Bucket=bucket, Key=key, Body=json.dumps(event).encode())
    print(f"marker written s3://{bucket}/{key}")
    return {"bucket": bucket, "key": key}


def noop(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return {"ok": True}
