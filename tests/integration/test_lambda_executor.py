"""LocalStack's Lambda service with the host executor (LAMBDA_RUNTIME_EXECUTOR=host), against the real LocalStack.

Each test deploys the handlers of lambda_handlers/ as a fresh function and deletes it afterwards.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.integration.lambda_fixtures import (
    ROLE_ARN,
    Aws,
    Deploy,
    aws,
    deploy,
    handlers_zip,
    invoke,
    ls_endpoint,
    marker_bucket,
    poll,
    unique,
)

# the fixtures are defined in lambda_fixtures (tests/integration/conftest.py belongs to the stack tooling)
__all__ = ["aws", "deploy", "handlers_zip", "ls_endpoint", "marker_bucket"]

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie is dead for our purpose
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_create_function_becomes_active(deploy: Deploy) -> None:
    configuration = deploy("handlers.echo")

    assert configuration["State"] == "Active", configuration.get("StateReason")
    assert configuration["LastUpdateStatus"] == "Successful"


def test_sync_invoke_returns_the_handlers_result(aws: Aws, deploy: Deploy) -> None:
    name = deploy("handlers.echo")["FunctionName"]

    response, result = invoke(aws, name, {"answer": 42, "nested": {"list": [1, 2]}})

    assert response["StatusCode"] == 200
    assert "FunctionError" not in response
    assert result["event"] == {"answer": 42, "nested": {"list": [1, 2]}}
    assert result["function_name"] == name
    assert 0 < result["remaining_ms"] <= 10_000


def test_handler_runs_in_a_clean_lambda_environment(aws: Aws, deploy: Deploy) -> None:
    name = deploy("handlers.echo", env={"GAME_SETTING": "on"})["FunctionName"]

    _, result = invoke(aws, name, {})

    env = result["env"]
    assert env["GAME_SETTING"] == "on"
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == name
    assert env["AWS_REGION"] == "us-east-1"
    for credential in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        assert env[credential], credential
    assert env["_HANDLER"] == "handlers.echo"
    assert env["AWS_EXECUTION_ENV"] == "AWS_Lambda_python3.11"
    assert env["LAMBDA_TASK_ROOT"] == result["cwd"]
    assert Path(env["LAMBDA_TASK_ROOT"], "handlers.py").is_file()
    assert re.fullmatch(r"127\.0\.0\.1:\d+", env["AWS_LAMBDA_RUNTIME_API"])
    assert env["AWS_ENDPOINT_URL"].startswith("http://127.0.0.1:")
    # LocalStack's internals and LocalStack's own process environment stay out
    leaked = [k for k in env if k.startswith(("LOCALSTACK_RUNTIME", "_LOCALSTACK_HOST", "LOCALSTACK_FUNCTION"))]
    assert leaked == []
    for variable in ("GATEWAY_LISTEN", "SERVICES", "LAMBDA_RUNTIME_EXECUTOR", "HOST_LAMBDA_RUNTIMES_DIR", "HOME"):
        assert variable not in env


@pytest.mark.parametrize("runtime", ["python3.11", "python3.12", "python3.13"])
def test_function_runs_on_the_python_its_runtime_declares(aws: Aws, deploy: Deploy, runtime: str) -> None:
    configuration = deploy("handlers.echo", runtime=runtime)
    assert configuration["State"] == "Active", configuration.get("StateReason")

    _, result = invoke(aws, configuration["FunctionName"], {})

    assert f"python{result['python']}" == runtime
    assert result["boto3"]  # the runtime ships boto3 like the managed one


def test_missing_interpreter_fails_the_function_with_a_reason(deploy: Deploy) -> None:
    # python3.9 is deliberately not among the runtime environments install_runtimes.sh builds
    configuration = deploy("handlers.echo", runtime="python3.9")

    assert configuration["State"] == "Failed"
    assert "python3.9" in configuration["StateReason"]
    assert "not available on this host" in configuration["StateReason"]


def test_async_invoke_runs_the_handler(aws: Aws, deploy: Deploy, marker_bucket: str) -> None:
    name = deploy("handlers.put_marker", env={"MARKER_BUCKET": marker_bucket})["FunctionName"]
    token = unique("async")

    response = aws.lambda_.invoke(
        FunctionName=name, InvocationType="Event", Payload=json.dumps({"token": token}).encode()
    )

    assert response["StatusCode"] == 202

    def marker() -> Any:
        listing = aws.s3.list_objects_v2(Bucket=marker_bucket, Prefix=f"markers/{token}")
        return listing.get("Contents")

    poll(marker, timeout=60, what="the async invocation's S3 marker")
    body = aws.s3.get_object(Bucket=marker_bucket, Key=f"markers/{token}.json")["Body"].read()
    assert json.loads(body) == {"token": token}


def test_handler_exception_becomes_a_function_error(aws: Aws, deploy: Deploy) -> None:
    name = deploy("handlers.fail")["FunctionName"]

    response, error = invoke(aws, name, {"value": 7})

    assert response["FunctionError"] == "Unhandled"
    assert error["errorMessage"] == "bad input: 7"
    assert error["errorType"] == "ValueError"
    assert isinstance(error["stackTrace"], list)
    assert any("handlers.py" in frame and "in fail" in frame for frame in error["stackTrace"])


def test_import_error_becomes_a_function_error(aws: Aws, deploy: Deploy) -> None:
    name = deploy("broken_import.handler")["FunctionName"]

    response, error = invoke(aws, name, {})

    assert response["FunctionError"] == "Unhandled"
    assert error["errorType"] == "Runtime.ImportModuleError"
    assert "module_that_does_not_exist" in error["errorMessage"]


def test_crashed_runtime_is_an_error_and_the_next_invoke_works(aws: Aws, deploy: Deploy) -> None:
    name = deploy("handlers.crash")["FunctionName"]

    response, error = invoke(aws, name, {"crash": True})
    assert response["FunctionError"] == "Unhandled"
    assert error["errorType"] == "Runtime.ExitError"
    assert "exit status 3" in error["errorMessage"]

    response, result = invoke(aws, name, {"crash": False})
    assert "FunctionError" not in response
    assert result == {"crashed": False}


def test_timeout_is_enforced_and_the_next_invoke_works(aws: Aws, deploy: Deploy) -> None:
    name = deploy("handlers.sleep", timeout=1)["FunctionName"]

    started = time.monotonic()
    response, error = invoke(aws, name, {"seconds": 8}, LogType="Tail")
    elapsed = time.monotonic() - started

    assert response["FunctionError"] == "Unhandled"
    assert error["errorMessage"].endswith("Task timed out after 1.00 seconds")
    assert elapsed < 5, f"the invocation took {elapsed:.1f}s although the function times out after 1s"
    assert "Task timed out after 1.00 seconds" in base64.b64decode(response["LogResult"]).decode()

    response, result = invoke(aws, name, {"seconds": 0})
    assert "FunctionError" not in response
    assert result == {"slept": 0}


def test_log_tail_has_the_report_lines_and_the_handlers_output(aws: Aws, deploy: Deploy) -> None:
    name = deploy("handlers.echo")["FunctionName"]
    token = unique("tail")

    response, result = invoke(aws, name, {"token": token}, LogType="Tail")

    tail = base64.b64decode(response["LogResult"]).decode()
    request_id = result["request_id"]
    assert f"START RequestId: {request_id} Version: $LATEST" in tail
    assert token in tail  # stdout
    assert "a line on stderr" in tail  # stderr
    assert f"END RequestId: {request_id}" in tail
    assert re.search(rf"REPORT RequestId: {request_id}\tInit Duration: [\d.]+ ms\tDuration: [\d.]+ ms", tail)


def test_logs_reach_cloudwatch_logs(aws: Aws, deploy: Deploy) -> None:
    name = deploy("handlers.echo")["FunctionName"]
    token = unique("cwl")

    _, result = invoke(aws, name, {"token": token})

    def events() -> list[str]:
        try:
            found = aws.logs.filter_log_events(logGroupName=f"/aws/lambda/{name}")["events"]
        except aws.logs.exceptions.ResourceNotFoundException:
            return []
        messages = [event["message"] for event in found]
        return messages if any(token in message for message in messages) else []

    messages = poll(events, timeout=30, what="the invocation's lines in CloudWatch Logs")
    assert any(m.startswith(f"START RequestId: {result['request_id']}") for m in messages)
    assert any(m.startswith(f"REPORT RequestId: {result['request_id']}") for m in messages)


def test_awslocal_lambda_invoke_works(aws: Aws, deploy: Deploy, tmp_path: Path) -> None:
    awslocal = shutil.which("awslocal", path=str(Path(sys.executable).parent)) or shutil.which("awslocal")
    assert awslocal, "awslocal (awscli-local) is not installed in the test virtualenv"
    name = deploy("handlers.echo")["FunctionName"]
    outfile = tmp_path / "out.json"
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "LOCALSTACK_HOST": aws.endpoint.removeprefix("http://"),
    }

    completed = subprocess.run(
        [awslocal, "lambda", "invoke", "--function-name", name, "--payload", '{"via": "awslocal"}', str(outfile)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )

    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout)["StatusCode"] == 200
    assert json.loads(outfile.read_text())["event"] == {"via": "awslocal"}


def test_environment_processes_end_when_the_function_is_deleted(aws: Aws, deploy: Deploy) -> None:
    name = deploy("handlers.whoami")["FunctionName"]
    _, processes = invoke(aws, name, {})
    runtime_pid, init_pid = processes["pid"], processes["ppid"]
    assert pid_alive(runtime_pid)
    assert pid_alive(init_pid)

    aws.lambda_.delete_function(FunctionName=name)

    poll(lambda: not pid_alive(runtime_pid) and not pid_alive(init_pid), timeout=15, what="the processes to end")


@pytest.mark.slow
def test_eventbridge_rate_rule_fires_the_function(aws: Aws, deploy: Deploy, marker_bucket: str) -> None:
    configuration = deploy("handlers.put_marker", env={"MARKER_BUCKET": marker_bucket})
    rule = unique("lx-every-minute")
    rule_arn = aws.events.put_rule(Name=rule, ScheduleExpression="rate(1 minute)", State="ENABLED")["RuleArn"]
    try:
        aws.lambda_.add_permission(
            FunctionName=configuration["FunctionName"],
            StatementId=rule,
            Action="lambda:InvokeFunction",
            Principal="events.amazonaws.com",
            SourceArn=rule_arn,
        )
        aws.events.put_targets(Rule=rule, Targets=[{"Id": "function", "Arn": configuration["FunctionArn"]}])

        def scheduled_marker() -> Any:
            listing = aws.s3.list_objects_v2(Bucket=marker_bucket, Prefix="markers/")
            return listing.get("Contents")

        contents = poll(scheduled_marker, timeout=150, interval=2, what="the rule to fire the function")
        event = json.loads(aws.s3.get_object(Bucket=marker_bucket, Key=contents[0]["Key"])["Body"].read())
        assert event["detail-type"] == "Scheduled Event"
        assert event["source"] == "aws.events"
        assert rule_arn in event["resources"]
    finally:
        aws.events.remove_targets(Rule=rule, Ids=["function"])
        aws.events.delete_rule(Name=rule)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _localstack_env(port: int, home: Path) -> dict[str, str]:
    """The environment infra/stack.py gives LocalStack, on another port and with throw-away folders."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOCALSTACK_", "LAMBDA_", "AWS_"))}
    for line in (ROOT / "infra" / "localstack" / "localstack.env").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            env[key.strip()] = value.strip()
    env.update(
        GATEWAY_LISTEN=f"127.0.0.1:{port}",
        FILESYSTEM_ROOT=str(home / "fs"),
        HOST_LAMBDA_WORK_DIR=str(home / "lambda"),
        HOST_LAMBDA_RUNTIMES_DIR=os.environ.get("HOST_LAMBDA_RUNTIMES_DIR", str(ROOT / ".stack" / "lambda-runtimes")),
        SERVICES="lambda,iam,sts,s3,logs",
    )
    return env


@pytest.mark.slow
def test_environments_die_when_localstack_is_killed(handlers_zip: bytes, tmp_path: Path) -> None:
    """SIGKILL leaves LocalStack no chance to stop its environments: the inits and runtimes must go by themselves."""
    python = ROOT / ".venv-localstack" / "bin" / "python"
    assert python.exists(), "LocalStack's virtualenv .venv-localstack is missing (make install)"
    port = _free_port()
    log = (tmp_path / "localstack.log").open("wb")
    localstack = subprocess.Popen(
        [str(python), "-m", "localstack.runtime.main"],
        env=_localstack_env(port, tmp_path),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        endpoint = f"http://127.0.0.1:{port}"

        def healthy() -> bool:
            try:
                with urllib.request.urlopen(f"{endpoint}/_localstack/health", timeout=2) as response:  # noqa: S310
                    return bool(json.load(response)["services"].get("lambda") == "available")
            except OSError:
                return False

        poll(healthy, timeout=90, interval=0.5, what="a second LocalStack to start")
        client = boto3.client(
            "lambda",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",  # noqa: S106 - LocalStack's fixed test credentials
        )
        client.create_function(
            FunctionName="orphan-check",
            Runtime="python3.11",
            Handler="handlers.whoami",
            Role=ROLE_ARN,
            Code={"ZipFile": handlers_zip},
        )
        poll(
            lambda: client.get_function_configuration(FunctionName="orphan-check")["State"] == "Active",
            timeout=60,
            what="the function to become Active",
        )
        processes = json.loads(client.invoke(FunctionName="orphan-check", Payload=b"{}")["Payload"].read())
        runtime_pid, init_pid = processes["pid"], processes["ppid"]
        assert pid_alive(runtime_pid)
        assert pid_alive(init_pid)

        localstack.kill()
        localstack.wait(timeout=10)

        poll(lambda: not pid_alive(runtime_pid) and not pid_alive(init_pid), timeout=10, what="the orphans to end")
    finally:
        if localstack.poll() is None:
            localstack.kill()
            localstack.wait(timeout=10)
        log.close()
