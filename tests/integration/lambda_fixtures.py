"""Fixtures of the Lambda executor tests: LocalStack clients, the handlers' zip, deploy-and-clean-up helpers.

They need only LocalStack (127.0.0.1:4566, or ``LOCALSTACK_ENDPOINT``), started with ``LAMBDA_RUNTIME_EXECUTOR=host``
by ``infra/stack.py``. LocalStack not answering fails the tests (never a skip).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import time
import urllib.request
import uuid
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

HANDLERS_DIR = Path(__file__).resolve().parent / "lambda_handlers"
ROLE_ARN = "arn:aws:iam::000000000000:role/lambda-executor-tests"
REGION = "us-east-1"
CREDENTIALS = {"aws_access_key_id": "test", "aws_secret_access_key": "test"}
LAMBDA_SERVICES = ("lambda", "s3", "logs", "events", "iam", "sts")


def localstack_url() -> str:
    return os.environ.get("LOCALSTACK_ENDPOINT", "http://127.0.0.1:4566").rstrip("/")


def poll(
    condition: Callable[[], Any],
    timeout: float,
    interval: float = 0.25,
    what: str = "condition",
    detail: Callable[[], str] | None = None,
) -> Any:
    """Call ``condition`` until it returns something truthy; fail the test after ``timeout`` seconds (with
    ``detail()`` appended to the message when given)."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            suffix = f"\n{detail()}" if detail else ""
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}{suffix}", pytrace=bool(not detail))
        time.sleep(interval)


@dataclass(frozen=True)
class Aws:
    endpoint: str
    lambda_: Any
    s3: Any
    logs: Any
    events: Any


@pytest.fixture(scope="session")
def ls_endpoint() -> str:
    """LocalStack's edge URL, after checking that the services the Lambda tests use are available."""
    url = localstack_url()
    try:
        with urllib.request.urlopen(f"{url}/_localstack/health", timeout=5) as response:  # noqa: S310 - loopback
            services = json.load(response).get("services", {})
    except OSError as exc:
        pytest.fail(f"LocalStack is not running at {url} (start it with `make up`): {exc}", pytrace=False)
    missing = [s for s in LAMBDA_SERVICES if services.get(s) not in ("available", "running")]
    if missing:
        pytest.fail(f"LocalStack at {url} lacks services {missing}", pytrace=False)
    return url


@pytest.fixture(scope="session")
def aws(ls_endpoint: str) -> Aws:
    options: dict[str, Any] = {
        "endpoint_url": ls_endpoint,
        "region_name": REGION,
        "config": Config(retries={"max_attempts": 1}, read_timeout=120, connect_timeout=5),
        **CREDENTIALS,
    }
    return Aws(
        ls_endpoint,
        boto3.client("lambda", **options),
        boto3.client("s3", **options),
        boto3.client("logs", **options),
        boto3.client("events", **options),
    )


@pytest.fixture(scope="session")
def handlers_zip() -> bytes:
    """A deployment package of tests/integration/lambda_handlers (handlers at the zip's root)."""
    return build_handlers_zip()


def build_handlers_zip() -> bytes:
    """Zip tests/integration/lambda_handlers/*.py at the archive's root."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(HANDLERS_DIR.glob("*.py")):
            archive.write(path, path.name)
    return buffer.getvalue()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def wait_for_state(aws: Aws, name: str, timeout: float = 60) -> dict[str, Any]:
    """The function configuration once it has left ``Pending``."""

    def settled() -> dict[str, Any] | None:
        configuration: dict[str, Any] = aws.lambda_.get_function_configuration(FunctionName=name)
        return configuration if configuration["State"] != "Pending" else None

    result: dict[str, Any] = poll(settled, timeout, what=f"function {name} to leave Pending")
    return result


Deploy = Callable[..., dict[str, Any]]


@pytest.fixture
def deploy(aws: Aws, handlers_zip: bytes) -> Iterator[Deploy]:
    """``deploy(handler, runtime=..., timeout=..., env=...)`` creates a function and returns its settled
    configuration; every function is deleted after the test (which also stops its environments)."""
    created: list[str] = []

    def _deploy(
        handler: str,
        *,
        runtime: str = "python3.11",
        timeout: int = 10,
        env: dict[str, str] | None = None,
        name: str | None = None,
    ) -> dict[str, Any]:
        function_name = name or unique("lx")
        aws.lambda_.create_function(
            FunctionName=function_name,
            Runtime=runtime,
            Handler=handler,
            Role=ROLE_ARN,
            Code={"ZipFile": handlers_zip},
            Timeout=timeout,
            MemorySize=256,
            Environment={"Variables": env or {}},
        )
        created.append(function_name)
        return wait_for_state(aws, function_name)

    yield _deploy
    for function_name in created:
        with contextlib.suppress(aws.lambda_.exceptions.ResourceNotFoundException):
            aws.lambda_.delete_function(FunctionName=function_name)


@pytest.fixture
def marker_bucket(aws: Aws) -> Iterator[str]:
    """An empty bucket for handlers' side effects, emptied and deleted afterwards."""
    bucket = unique("lx-markers")
    aws.s3.create_bucket(Bucket=bucket)
    yield bucket
    for page in aws.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            aws.s3.delete_object(Bucket=bucket, Key=item["Key"])
    aws.s3.delete_bucket(Bucket=bucket)


def invoke(aws: Aws, name: str, event: object, **kwargs: Any) -> tuple[dict[str, Any], Any]:
    """Synchronous invoke: (the raw response, the decoded payload)."""
    response: dict[str, Any] = aws.lambda_.invoke(FunctionName=name, Payload=json.dumps(event).encode(), **kwargs)
    body = response["Payload"].read()
    return response, json.loads(body) if body else None
