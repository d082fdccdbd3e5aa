"""Integration tests run against the real native stack (Kafka, MariaDB, LocalStack) on 127.0.0.1.

`make test` starts the stack before pytest and stops it afterwards (infra/stack.py run-tests). Running pytest by
hand needs `make up` first; a service that is not healthy fails the test run at once with its name and reason
(never a skip: a missing service is a broken set-up, not a passing test).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pymysql
import pytest

from tests.conftest import load_module

ROOT = Path(__file__).resolve().parents[2]


stack = load_module("stack", ROOT / "infra" / "stack.py")


def require(*names: str) -> ModuleType:
    """The stack manager module, after checking the named services are up and healthy (fails, never skips)."""
    problems = []
    for name in names:
        service = stack.SERVICES[name]
        healthy, detail = service.health() if service.running() else (False, "not running")
        if not healthy:
            problems.append(f"{name}: {detail}")
    if problems:
        pytest.fail("native stack not ready (run `make up`): " + "; ".join(problems), pytrace=False)
    return stack


@pytest.fixture(scope="session")
def native_stack() -> ModuleType:
    return require(*stack.SERVICES)


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    return f"127.0.0.1:{require('kafka').S.kafka_port}"


@pytest.fixture(scope="session")
def localstack_endpoint() -> str:
    return f"http://127.0.0.1:{require('localstack').S.localstack_port}"


@pytest.fixture
def app_db() -> Iterator[pymysql.connections.Connection]:
    """A connection as the pipeline's application user (least privilege), over TCP like the Spark job."""
    settings = require("mariadb").S
    connection = pymysql.connect(
        host="127.0.0.1",
        port=settings.mysql_port,
        user=settings.mysql_user,
        password=settings.mysql_password,
        database=settings.mysql_database,
        autocommit=True,
    )
    try:
        yield connection
    finally:
        connection.close()
