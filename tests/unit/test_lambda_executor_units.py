"""Pure pieces of the host Lambda executor: the handler's environment, error documents, log lines, runtimes."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

# the plugin is installed in LocalStack's virtualenv, not in the developer's: import its pure modules from source
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "infra" / "localstack" / "src"))

from localstack_host_executor import protocol
from localstack_host_executor.environment import (
    RuntimeLayout,
    python_path,
    python_version_of,
    runtime_environment,
)
from localstack_host_executor.init import InitConfig
from localstack_host_executor.runtimes import (
    READY_MARKER,
    RuntimeUnavailableError,
    available_runtimes,
    resolve_runtime,
)

pytestmark = pytest.mark.unit

LAYOUT = RuntimeLayout(
    runtime="python3.11",
    runtime_dir="/rt/python3.11",
    task_root="/work/functions/f/code1",
    layer_dirs=("/work/layers/a/1", "/work/layers/b/2"),
    tmp_dir="/work/environments/e1/tmp",
)

LOCALSTACK_VARIABLES: dict[str, object] = {
    "AWS_REGION": "eu-west-1",
    "AWS_LAMBDA_FUNCTION_NAME": "game-events-producer",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": 256,
    "AWS_LAMBDA_FUNCTION_TIMEOUT": 30,
    "AWS_ACCESS_KEY_ID": "LSIA",
    "AWS_SECRET_ACCESS_KEY": "secret",
    "AWS_SESSION_TOKEN": "session",
    "AWS_ENDPOINT_URL": "http://127.0.0.1:4566",
    "LAMBDA_TASK_ROOT": "/var/task",
    "LAMBDA_RUNTIME_DIR": "/var/runtime",
    "AWS_EXECUTION_ENV": "AWS_Lambda_rapid",
    "_HANDLER": "handler.handle",
    "LOCALSTACK_HOSTNAME": "127.0.0.1",
    "EDGE_PORT": "4566",
    "LOCALSTACK_RUNTIME_ID": "abc",
    "LOCALSTACK_RUNTIME_ENDPOINT": "http://127.0.0.1:4566/_localstack_lambda/abc",
    "LOCALSTACK_FUNCTION_ACCOUNT_ID": "000000000000",
    "LOCALSTACK_MAX_PAYLOAD_SIZE": 6291556,
    "HOME": "/root",
    "_LOCALSTACK_HOST_EXECUTOR_CONFIG": "{}",
    "KAFKA_BOOTSTRAP": "127.0.0.1:9092",
}


def test_runtime_environment_strips_localstack_internals() -> None:
    env = runtime_environment(LOCALSTACK_VARIABLES, LAYOUT, "127.0.0.1:40000")

    for internal in (
        "LOCALSTACK_RUNTIME_ID",
        "LOCALSTACK_RUNTIME_ENDPOINT",
        "LOCALSTACK_FUNCTION_ACCOUNT_ID",
        "LOCALSTACK_MAX_PAYLOAD_SIZE",
        "HOME",
        "_LOCALSTACK_HOST_EXECUTOR_CONFIG",
    ):
        assert internal not in env


def test_runtime_environment_keeps_aws_public_and_function_variables_as_strings() -> None:
    env = runtime_environment(LOCALSTACK_VARIABLES, LAYOUT, "127.0.0.1:40000")

    assert env["AWS_REGION"] == "eu-west-1"
    assert env["AWS_SESSION_TOKEN"] == LOCALSTACK_VARIABLES["AWS_SESSION_TOKEN"]
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "256"
    assert env["AWS_ENDPOINT_URL"] == "http://127.0.0.1:4566"
    assert env["LOCALSTACK_HOSTNAME"] == "127.0.0.1"
    assert env["KAFKA_BOOTSTRAP"] == "127.0.0.1:9092"
    assert env["_HANDLER"] == "handler.handle"


def test_runtime_environment_points_the_runtime_at_this_host() -> None:
    env = runtime_environment(LOCALSTACK_VARIABLES, LAYOUT, "127.0.0.1:40000")

    assert env["AWS_LAMBDA_RUNTIME_API"] == "127.0.0.1:40000"
    assert env["LAMBDA_TASK_ROOT"] == "/work/functions/f/code1"
    assert env["LAMBDA_RUNTIME_DIR"] == "/rt/python3.11"
    assert env["AWS_EXECUTION_ENV"] == "AWS_Lambda_python3.11"
    assert env["PATH"].split(":")[0] == "/rt/python3.11/bin"
    assert env["TMPDIR"] == "/work/environments/e1/tmp"


def test_function_configuration_may_override_unreserved_variables() -> None:
    variables = {**LOCALSTACK_VARIABLES, "PATH": "/opt/bin:/usr/bin", "LANG": "C.UTF-8"}

    env = runtime_environment(variables, LAYOUT, "127.0.0.1:1")

    assert env["PATH"] == "/opt/bin:/usr/bin"
    assert env["LANG"] == "C.UTF-8"


def test_python_path_puts_the_task_root_first_and_later_layers_before_earlier_ones() -> None:
    assert python_path(LAYOUT) == [
        "/work/functions/f/code1",
        "/work/layers/b/2/python",
        "/work/layers/b/2/python/lib/python3.11/site-packages",
        "/work/layers/a/1/python",
        "/work/layers/a/1/python/lib/python3.11/site-packages",
    ]


@pytest.mark.parametrize(
    ("runtime", "version"),
    [("python3.11", "3.11"), ("python3.13", "3.13"), ("nodejs20.x", None), ("python3", None), ("python", None)],
)
def test_python_version_of_runtime_names(runtime: str, version: str | None) -> None:
    assert python_version_of(runtime) == version


def test_timeout_error_is_the_aws_message() -> None:
    error = protocol.timeout_error("req-1", 3, now=0.0)

    assert error == {"errorMessage": "1970-01-01T00:00:00Z req-1 Task timed out after 3.00 seconds"}


@pytest.mark.parametrize(
    ("returncode", "description"),
    [(1, "exit status 1"), (0, "exit status 0"), (-9, "signal: killed"), (-11, "signal: segmentation fault")],
)
def test_runtime_exit_error_names_the_exit(returncode: int, description: str) -> None:
    error = protocol.runtime_exit_error("req-2", returncode)

    assert error["errorType"] == "Runtime.ExitError"
    assert error["errorMessage"] == f"RequestId: req-2 Error: Runtime exited with error: {description}"


def test_end_lines_have_end_and_report_with_init_duration() -> None:
    text = protocol.end_lines("req-3", 12.345, "256", max_memory_used_mb=40, init_duration_ms=150.0)

    assert text == (
        "END RequestId: req-3\n"
        "REPORT RequestId: req-3\tInit Duration: 150.00 ms\tDuration: 12.35 ms\tBilled Duration: 13 ms\t"
        "Memory Size: 256 MB\tMax Memory Used: 40 MB\t\n"
    )


def test_logs_body_is_the_go_init_format() -> None:
    assert json.loads(protocol.logs_body("START x\n")) == {"logs": "START x\n"}


def test_parse_invoke_request_reads_localstacks_fields() -> None:
    body = json.dumps(
        {"invoke-id": "r1", "invoked-function-arn": "arn:f", "payload": '{"a": 1}', "trace-id": "Root=1"}
    ).encode()

    assert protocol.parse_invoke_request(body) == {
        "invoke_id": "r1",
        "invoked_function_arn": "arn:f",
        "payload": '{"a": 1}',
        "trace_id": "Root=1",
    }


def test_parse_invoke_request_names_a_missing_field() -> None:
    with pytest.raises(ValueError, match="invoke-id"):
        protocol.parse_invoke_request(b'{"payload": "{}"}')


def test_init_config_survives_its_json_round_trip() -> None:
    config = InitConfig(
        runtime="python3.12",
        python="/rt/python3.12/bin/python",
        runtime_dir="/rt/python3.12",
        task_root="/code",
        handler="h.f",
        parent_pid=42,
        environment={"A": "1"},
        layers=("/l1",),
        tmp_dir="/tmp/e",
    )

    assert InitConfig.from_json(config.to_json()) == config


def _make_runtime(directory: Path, runtime: str) -> None:
    (directory / runtime / "bin").mkdir(parents=True)
    (directory / runtime / "bin" / "python").touch()
    (directory / runtime / READY_MARKER).write_text("digest\n")


def test_resolve_runtime_finds_a_ready_environment(tmp_path: Path) -> None:
    _make_runtime(tmp_path, "python3.11")

    environment = resolve_runtime("python3.11", tmp_path)

    assert environment.python == tmp_path / "python3.11" / "bin" / "python"


def test_resolve_runtime_names_the_missing_python(tmp_path: Path) -> None:
    _make_runtime(tmp_path, "python3.11")

    with pytest.raises(RuntimeUnavailableError, match=r"python3\.9 is not available.*python3\.9 interpreter"):
        resolve_runtime("python3.9", tmp_path)


def test_resolve_runtime_ignores_a_half_built_environment(tmp_path: Path) -> None:
    (tmp_path / "python3.12" / "bin").mkdir(parents=True)
    (tmp_path / "python3.12" / "bin" / "python").touch()

    with pytest.raises(RuntimeUnavailableError, match=r"python3\.12"):
        resolve_runtime("python3.12", tmp_path)
    assert available_runtimes(tmp_path) == []


def test_resolve_runtime_rejects_other_languages(tmp_path: Path) -> None:
    with pytest.raises(RuntimeUnavailableError, match=r"nodejs20\.x is not supported"):
        resolve_runtime("nodejs20.x", tmp_path)
