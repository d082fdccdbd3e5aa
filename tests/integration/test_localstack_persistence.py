"""LocalStack keeps its state across restarts (the persistence plugin, infra/localstack/src/localstack_persistence).

Given a bucket with objects, a deployed function, EventBridge rules targeting it, a log group with events, an IAM role
and a CloudFormation stack, when LocalStack is stopped (SIGTERM, as `make down`) and started again with
`infra/stack.py`, then all of it is there and works. Also: a SIGKILL loses at most the last save interval, and a
snapshot that cannot be loaded is moved aside while LocalStack starts anyway (on a private LocalStack).

Needs the native stack's LocalStack (`make up`) with STATE_PERSISTENCE=1 (infra/localstack/localstack.env).
These tests restart it.
"""

from __future__ import annotations

import calendar
import contextlib
import json
import os
import shlex
import signal
import socket
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from botocore.config import Config

from tests.integration.conftest import require
from tests.integration.lambda_fixtures import build_handlers_zip, poll, wait_for_state

ROOT = Path(__file__).resolve().parents[2]
ENV_FILE = ROOT / "infra" / "localstack" / "localstack.env"
# How the tests drive the stack (the brief of `make down`/`make up`, one service); overridable for a private stack.
STACK = shlex.split(os.environ.get("STACK_COMMAND", f"{ROOT / '.venv' / 'bin' / 'python'} infra/stack.py"))
ROLE_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}],
}
TEMPLATE: dict[str, Any] = {
    "AWSTemplateFormatVersion": "2010-09-09",
    "Parameters": {"BucketName": {"Type": "String"}, "LogGroupName": {"Type": "String"}},
    "Resources": {
        "Bucket": {"Type": "AWS::S3::Bucket", "Properties": {"BucketName": {"Ref": "BucketName"}}},
        "Logs": {
            "Type": "AWS::Logs::LogGroup",
            "Properties": {"LogGroupName": {"Ref": "LogGroupName"}, "RetentionInDays": 7},
        },
    },
    "Outputs": {
        "BucketArn": {"Value": {"Fn::GetAtt": ["Bucket", "Arn"]}},
        "LogGroup": {"Value": {"Ref": "Logs"}},
    },
}


def env_file_value(name: str, default: str) -> str:
    for line in ENV_FILE.read_text().splitlines():
        key, _, value = line.partition("=")
        if key.strip() == name and not line.lstrip().startswith("#"):
            return value.strip()
    return default


def stack_command(*args: str) -> None:
    result = subprocess.run([*STACK, *args], cwd=ROOT, capture_output=True, text=True, check=False, timeout=300)
    assert result.returncode == 0, f"{shlex.join([*STACK, *args])} failed:\n{result.stdout}\n{result.stderr}"


@dataclass
class Clients:
    s3: Any
    lambda_: Any
    events: Any
    logs: Any
    iam: Any
    cloudformation: Any

    @classmethod
    def create(cls, endpoint: str) -> Clients:
        options: dict[str, Any] = {
            "endpoint_url": endpoint,
            "region_name": "us-east-1",
            "aws_access_key_id": "test",
            "aws_secret_access_key": "test",
            "config": Config(retries={"max_attempts": 2}, read_timeout=120, connect_timeout=5),
        }
        return cls(
            *(boto3.client(name, **options) for name in ("s3", "lambda", "events", "logs", "iam", "cloudformation"))
        )


@dataclass
class World:
    """Everything created before the restart, and what it looked like."""

    clients: Clients
    uid: str
    bucket: str
    function: str
    function_arn: str
    pattern_rule: str
    schedule_rule: str
    log_group: str
    role: str
    stack: str
    objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    invoke_result: Any = None
    stack_outputs: dict[str, str] = field(default_factory=dict)
    log_messages: list[str] = field(default_factory=list)
    restarted_at: float = 0.0


def invoke(clients: Clients, name: str, event: object) -> Any:
    response = clients.lambda_.invoke(FunctionName=name, Payload=json.dumps(event).encode())
    assert "FunctionError" not in response, response["Payload"].read()
    return json.loads(response["Payload"].read())


def markers(clients: Clients, bucket: str) -> list[dict[str, Any]]:
    listing = clients.s3.list_objects_v2(Bucket=bucket, Prefix="markers/")
    return [
        json.loads(clients.s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read())
        for o in listing.get("Contents", [])
    ]


def put_objects(clients: Clients, bucket: str) -> dict[str, dict[str, Any]]:
    objects: dict[str, dict[str, Any]] = {
        "incoming/2026/12/04/events-0001.ndjson": {
            "Body": b"".join(json.dumps({"user": i, "score": i * 7}).encode() + b"\n" for i in range(500)),
            "ContentType": "application/x-ndjson",
            "Metadata": {"source": "persistence-test", "batch": "0001"},
        },
        "incoming/blob.bin": {"Body": os.urandom(3 * 1024 * 1024 + 17), "ContentType": "application/octet-stream"},
        "processed/2026/12/04/events-0000.ndjson": {"Body": b'{"user": 1}\n', "Metadata": {"moved": "yes"}},
        "rejected/bad.json": {"Body": b"\x00\xff not json", "ContentType": "text/plain"},
    }
    for key, spec in objects.items():
        clients.s3.put_object(Bucket=bucket, Key=key, **spec)
    # a multipart upload: its ETag is not the MD5 of the content and must survive as it was
    multipart_key = "incoming/multipart.bin"
    parts = [os.urandom(5 * 1024 * 1024), os.urandom(1024)]
    upload = clients.s3.create_multipart_upload(Bucket=bucket, Key=multipart_key)
    etags = [
        clients.s3.upload_part(Bucket=bucket, Key=multipart_key, UploadId=upload["UploadId"], PartNumber=n, Body=body)[
            "ETag"
        ]
        for n, body in enumerate(parts, start=1)
    ]
    clients.s3.complete_multipart_upload(
        Bucket=bucket,
        Key=multipart_key,
        UploadId=upload["UploadId"],
        MultipartUpload={"Parts": [{"ETag": e, "PartNumber": n} for n, e in enumerate(etags, start=1)]},
    )
    objects[multipart_key] = {"Body": b"".join(parts)}
    described = {}
    for key in objects:
        head = clients.s3.head_object(Bucket=bucket, Key=key)
        described[key] = {
            "Body": objects[key]["Body"],
            "ETag": head["ETag"],
            "ContentType": head["ContentType"],
            "Metadata": head["Metadata"],
            "ContentLength": head["ContentLength"],
        }
    return described


def restart_gracefully() -> None:
    stack_command("stop", "localstack")
    stack_command("start", "localstack")


@pytest.fixture(scope="module")
def endpoint() -> str:
    stack = require("localstack")
    if env_file_value("STATE_PERSISTENCE", "0") not in ("1", "true", "True"):
        pytest.fail(f"STATE_PERSISTENCE is not on in {ENV_FILE}", pytrace=False)
    return f"http://127.0.0.1:{stack.S.localstack_port}"


@pytest.fixture(scope="module")
def world(endpoint: str) -> Iterator[World]:
    """Given: resources of every persisted service. When: LocalStack is stopped gracefully and started."""
    clients = Clients.create(endpoint)
    uid = uuid.uuid4().hex[:8]
    w = World(
        clients=clients,
        uid=uid,
        bucket=f"persist-{uid}",
        function=f"persist-fn-{uid}",
        function_arn="",
        pattern_rule=f"persist-pattern-{uid}",
        schedule_rule=f"persist-schedule-{uid}",
        log_group=f"/persistence-test/{uid}",
        role=f"persist-role-{uid}",
        stack=f"persist-stack-{uid}",
    )
    try:
        clients.s3.create_bucket(Bucket=w.bucket)
        w.objects = put_objects(clients, w.bucket)

        role_arn = clients.iam.create_role(RoleName=w.role, AssumeRolePolicyDocument=json.dumps(ROLE_POLICY))["Role"][
            "Arn"
        ]
        clients.lambda_.create_function(
            FunctionName=w.function,
            Runtime="python3.11",
            Handler="handlers.put_marker",
            Role=role_arn,
            Code={"ZipFile": build_handlers_zip()},
            Timeout=30,
            Environment={"Variables": {"MARKER_BUCKET": w.bucket}},
        )
        w.function_arn = wait_for_state(_aws_like(clients), w.function)["FunctionArn"]
        w.invoke_result = invoke(clients, w.function, {"token": "before-restart"})
        version = clients.lambda_.publish_version(FunctionName=w.function)["Version"]
        clients.lambda_.create_alias(FunctionName=w.function, Name="live", FunctionVersion=version)

        for rule, spec in (
            (w.pattern_rule, {"EventPattern": json.dumps({"source": ["persistence.test"]})}),
            (w.schedule_rule, {"ScheduleExpression": "rate(1 minute)"}),
        ):
            rule_arn = clients.events.put_rule(Name=rule, State="ENABLED", **spec)["RuleArn"]
            clients.lambda_.add_permission(
                FunctionName=w.function,
                StatementId=rule,
                Action="lambda:InvokeFunction",
                Principal="events.amazonaws.com",
                SourceArn=rule_arn,
            )
            clients.events.put_targets(Rule=rule, Targets=[{"Id": "function", "Arn": w.function_arn}])

        clients.logs.create_log_group(logGroupName=w.log_group)
        clients.logs.create_log_stream(logGroupName=w.log_group, logStreamName="stream-1")
        now_ms = int(time.time() * 1000)
        w.log_messages = [f"event {i} of {uid}" for i in range(3)]
        clients.logs.put_log_events(
            logGroupName=w.log_group,
            logStreamName="stream-1",
            logEvents=[{"timestamp": now_ms + i, "message": m} for i, m in enumerate(w.log_messages)],
        )

        clients.cloudformation.create_stack(
            StackName=w.stack,
            TemplateBody=json.dumps(TEMPLATE),
            Parameters=[
                {"ParameterKey": "BucketName", "ParameterValue": f"persist-cfn-{uid}"},
                {"ParameterKey": "LogGroupName", "ParameterValue": f"/persistence-test/cfn-{uid}"},
            ],
        )
        clients.cloudformation.get_waiter("stack_create_complete").wait(
            StackName=w.stack, WaiterConfig={"Delay": 1, "MaxAttempts": 120}
        )
        outputs = clients.cloudformation.describe_stacks(StackName=w.stack)["Stacks"][0]["Outputs"]
        w.stack_outputs = {o["OutputKey"]: o["OutputValue"] for o in outputs}

        restart_gracefully()
        w.restarted_at = time.time()
        yield w
    finally:
        _clean_up(w)


def _aws_like(clients: Clients) -> Any:
    @dataclass
    class _Aws:
        lambda_: Any

    return _Aws(clients.lambda_)


def _clean_up(w: World) -> None:
    c = w.clients
    for rule in (w.pattern_rule, w.schedule_rule):
        with contextlib.suppress(Exception):
            c.events.remove_targets(Rule=rule, Ids=["function"])
        with contextlib.suppress(Exception):
            c.events.delete_rule(Name=rule)
    with contextlib.suppress(Exception):
        c.lambda_.delete_function(FunctionName=w.function)
    with contextlib.suppress(Exception):
        c.cloudformation.delete_stack(StackName=w.stack)
    with contextlib.suppress(Exception):
        c.logs.delete_log_group(logGroupName=w.log_group)
    with contextlib.suppress(Exception):
        c.iam.delete_role(RoleName=w.role)
    with contextlib.suppress(Exception):
        for page in c.s3.get_paginator("list_objects_v2").paginate(Bucket=w.bucket):
            for item in page.get("Contents", []):
                c.s3.delete_object(Bucket=w.bucket, Key=item["Key"])
        c.s3.delete_bucket(Bucket=w.bucket)


# -- Then: after a graceful restart ------------------------------------------------------------------------------------


def test_s3_objects_keep_their_bytes_and_metadata(world: World) -> None:
    s3 = world.clients.s3
    listed = {o["Key"] for o in s3.list_objects_v2(Bucket=world.bucket, Prefix="incoming/")["Contents"]}
    assert {k for k in world.objects if k.startswith("incoming/")} <= listed
    for key, before in world.objects.items():
        after = s3.get_object(Bucket=world.bucket, Key=key)
        assert after["Body"].read() == before["Body"], key
        assert after["ETag"] == before["ETag"], key
        assert after["ContentType"] == before["ContentType"], key
        assert after["Metadata"] == before["Metadata"], key
        assert after["ContentLength"] == before["ContentLength"], key


def test_s3_accepts_writes_after_the_restart(world: World) -> None:
    s3 = world.clients.s3
    s3.put_object(Bucket=world.bucket, Key="incoming/after-restart.json", Body=b"{}")
    s3.copy_object(Bucket=world.bucket, Key="processed/blob.bin", CopySource=f"{world.bucket}/incoming/blob.bin")
    assert (
        s3.get_object(Bucket=world.bucket, Key="processed/blob.bin")["Body"].read()
        == world.objects["incoming/blob.bin"]["Body"]
    )


def test_function_is_restored_and_returns_the_same_result(world: World) -> None:
    configuration = wait_for_state(_aws_like(world.clients), world.function)
    assert configuration["State"] == "Active", configuration.get("StateReason")
    assert configuration["Environment"]["Variables"] == {"MARKER_BUCKET": world.bucket}
    assert invoke(world.clients, world.function, {"token": "before-restart"}) == world.invoke_result
    policy = json.loads(world.clients.lambda_.get_policy(FunctionName=world.function)["Policy"])
    assert {s["Sid"] for s in policy["Statement"]} == {world.pattern_rule, world.schedule_rule}


def test_published_version_and_alias_are_restored_and_invocable(world: World) -> None:
    alias = world.clients.lambda_.get_alias(FunctionName=world.function, Name="live")
    versions = world.clients.lambda_.list_versions_by_function(FunctionName=world.function)["Versions"]
    assert [v["Version"] for v in versions] == ["$LATEST", alias["FunctionVersion"]]

    def active() -> bool:
        configuration = world.clients.lambda_.get_function_configuration(
            FunctionName=world.function, Qualifier=alias["FunctionVersion"]
        )
        return bool(configuration["State"] == "Active")

    poll(active, timeout=60, what="the aliased version to become Active")
    response = world.clients.lambda_.invoke(
        FunctionName=world.function, Qualifier="live", Payload=json.dumps({"token": "before-restart"}).encode()
    )
    assert response["ExecutedVersion"] == alias["FunctionVersion"]
    assert json.loads(response["Payload"].read()) == world.invoke_result


def test_event_pattern_rule_still_fires_the_function(world: World) -> None:
    wait_for_state(_aws_like(world.clients), world.function)
    events = world.clients.events
    assert events.describe_rule(Name=world.pattern_rule)["State"] == "ENABLED"
    targets = events.list_targets_by_rule(Rule=world.pattern_rule)["Targets"]
    assert [t["Arn"] for t in targets] == [world.function_arn]
    token = uuid.uuid4().hex
    entries = [{"Source": "persistence.test", "DetailType": "check", "Detail": json.dumps({"token": token})}]
    assert events.put_events(Entries=entries)["FailedEntryCount"] == 0

    def delivered() -> bool:
        return any(m.get("detail", {}).get("token") == token for m in markers(world.clients, world.bucket))

    poll(delivered, timeout=60, interval=1, what="the restored rule to invoke the function")


def test_log_group_keeps_its_events(world: World) -> None:
    logs = world.clients.logs
    groups = logs.describe_log_groups(logGroupNamePrefix=world.log_group)["logGroups"]
    assert [g["logGroupName"] for g in groups] == [world.log_group]
    events = logs.get_log_events(logGroupName=world.log_group, logStreamName="stream-1", startFromHead=True)
    assert [e["message"] for e in events["events"]] == world.log_messages


def test_cloudformation_stack_keeps_its_outputs(world: World) -> None:
    stack = world.clients.cloudformation.describe_stacks(StackName=world.stack)["Stacks"][0]
    assert stack["StackStatus"] == "CREATE_COMPLETE"
    assert {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]} == world.stack_outputs
    assert world.clients.s3.head_bucket(Bucket=f"persist-cfn-{world.uid}")


def test_cloudformation_stack_can_be_updated_after_the_restart(world: World) -> None:
    cfn = world.clients.cloudformation
    template = {**TEMPLATE, "Outputs": {**TEMPLATE["Outputs"], "Updated": {"Value": "yes"}}}
    cfn.update_stack(
        StackName=world.stack,
        TemplateBody=json.dumps(template),
        Parameters=[{"ParameterKey": k, "UsePreviousValue": True} for k in ("BucketName", "LogGroupName")],
    )
    cfn.get_waiter("stack_update_complete").wait(StackName=world.stack, WaiterConfig={"Delay": 1, "MaxAttempts": 120})
    outputs = cfn.describe_stacks(StackName=world.stack)["Stacks"][0]["Outputs"]
    assert {o["OutputKey"]: o["OutputValue"] for o in outputs} == {**world.stack_outputs, "Updated": "yes"}


def test_iam_role_is_kept(world: World) -> None:
    role = world.clients.iam.get_role(RoleName=world.role)["Role"]
    assert json.loads(json.dumps(role["AssumeRolePolicyDocument"])) == ROLE_POLICY


@pytest.mark.slow
def test_schedule_rule_still_fires_the_function(world: World) -> None:
    def scheduled_after_restart() -> bool:
        return any(
            m.get("detail-type") == "Scheduled Event"
            and f":rule/{world.schedule_rule}" in "".join(m.get("resources", []))
            and calendar.timegm(time.strptime(m["time"], "%Y-%m-%dT%H:%M:%SZ")) >= world.restarted_at - 5
            for m in markers(world.clients, world.bucket)
        )

    poll(scheduled_after_restart, timeout=150, interval=3, what="the restored rate(1 minute) rule to fire")


# -- SIGKILL ----------------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_sigkill_keeps_what_was_saved_before_the_last_interval(endpoint: str) -> None:
    """Given an object written more than one save interval ago, when LocalStack is killed with SIGKILL and started,
    then the object is there (what changed within the last interval may be lost: the documented bound)."""
    stack = require("localstack")
    clients = Clients.create(endpoint)
    bucket = f"persist-kill-{uuid.uuid4().hex[:8]}"
    clients.s3.create_bucket(Bucket=bucket)
    clients.s3.put_object(Bucket=bucket, Key="incoming/saved.json", Body=b'{"saved": true}')
    interval = float(env_file_value("STATE_SAVE_INTERVAL", "30"))
    time.sleep(interval + 10)  # one periodic save (plus its own duration)
    try:
        pid = int(stack.SERVICES["localstack"].pid_file.read_text())
        os.kill(pid, signal.SIGKILL)
        poll(lambda: not stack.SERVICES["localstack"].running(), timeout=30, what="LocalStack to die")
        stack_command("start", "localstack")
        body = clients.s3.get_object(Bucket=bucket, Key="incoming/saved.json")["Body"].read()
        assert body == b'{"saved": true}'
    finally:
        with contextlib.suppress(Exception):
            clients.s3.delete_object(Bucket=bucket, Key="incoming/saved.json")
            clients.s3.delete_bucket(Bucket=bucket)


# -- unloadable state (a private LocalStack on another port, with its own state directory) ----------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _private_env(port: int, home: Path, stack: ModuleType) -> dict[str, str]:
    env: dict[str, str] = dict(stack.SERVICES["localstack"].env())
    env.update(
        GATEWAY_LISTEN=f"127.0.0.1:{port}",
        FILESYSTEM_ROOT=str(home / "fs"),
        HOST_LAMBDA_WORK_DIR=str(home / "lambda"),
        LOCALSTACK_STATE_DIR=str(home / "state"),
        STATE_PERSISTENCE="1",
        STATE_SAVE_INTERVAL="0",  # snapshots at shutdown only: exactly one per run
        SERVICES="s3,sts",
    )
    return env


@contextlib.contextmanager
def private_localstack(env: dict[str, str], log: Path) -> Iterator[str]:
    stack = require("localstack")
    port = int(env["GATEWAY_LISTEN"].rsplit(":", 1)[1])
    python = stack.SERVICES["localstack"].python
    with log.open("ab") as out:
        process = subprocess.Popen(
            [str(python), "-m", "localstack.runtime.main"],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:

        def healthy() -> bool:
            if process.poll() is not None:
                pytest.fail(f"the private LocalStack exited ({process.returncode}):\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{url}/_localstack/health", timeout=2) as response:  # noqa: S310
                    return json.load(response)["services"].get("s3") in ("available", "running")
            except OSError:
                return False

        poll(healthy, timeout=90, interval=0.5, what="the private LocalStack to start")
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def test_unloadable_snapshot_is_moved_aside_and_localstack_starts(tmp_path: Path) -> None:
    stack = require("localstack")
    env = _private_env(_free_port(), tmp_path, stack)
    log = tmp_path / "localstack.log"
    state = tmp_path / "state"
    # Given: a saved state (one bucket) whose S3 store file is then damaged
    with private_localstack(env, log) as url:
        Clients.create(url).s3.create_bucket(Bucket="survivor")
    current = state / (state / "CURRENT").read_text().strip()
    store_file = current / "s3" / "localstack-s3.pkl"
    store_file.write_bytes(b"not a pickle")
    # When: LocalStack starts on it
    with private_localstack(env, log) as url:
        # Then: it serves (empty), the error names the file, and the bad snapshot is kept aside
        assert Clients.create(url).s3.list_buckets()["Buckets"] == []
        text = log.read_text()
        assert "saved LocalStack state cannot be loaded" in text
        assert str(store_file) in text
        assert (state / f"corrupt-{current.name}" / "s3" / "localstack-s3.pkl").read_bytes() == b"not a pickle"
        Clients.create(url).s3.create_bucket(Bucket="after")
    # and the state saved at its shutdown loads again
    with private_localstack(env, log) as url:
        assert [b["Name"] for b in Clients.create(url).s3.list_buckets()["Buckets"]] == ["after"]
