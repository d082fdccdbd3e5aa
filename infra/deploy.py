#!/usr/bin/env python3
"""Build the producer Lambda and deploy template.yaml to LocalStack through CloudFormation (SAM transform).

What it does, like `sam build` + `sam package` + `sam deploy` would, without Docker:

1. build: `pip install` the pinned runtime dependencies for the Lambda platform (manylinux x86_64, CPython 3.11)
   into build/producer/, cached by the hash of requirements.txt, and copy the code (functions/producer/ as the
   package `producer`);
2. package: zip build/producer/ reproducibly, upload it to the artifacts bucket under its SHA-256, and rewrite the
   function's local CodeUri to that S3 location (nothing else in the template is touched);
3. deploy: create the stack, or update it ("no updates" is fine), with the SAM transform done by CloudFormation;
   wait for it and for the function to be active, then print the stack outputs.

Usage: python infra/deploy.py [--build-only] [--recreate] [--stack-name NAME] [--parameter Key=Value ...]

Environment (defaults in brackets): AWS_ENDPOINT_URL [http://127.0.0.1:4566], AWS_DEFAULT_REGION [us-east-1],
AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY [test / test: LocalStack's documented dummy credentials, not secrets],
STACK_NAME [game-events], ARTIFACTS_BUCKET [game-events-artifacts], and template parameters from
KAFKA_BOOTSTRAP_SERVERS, EVENTS_TOPIC, DLQ_TOPIC, EVENTS_BUCKET, POLL_ENABLED, POLL_INTERVAL_SECONDS,
SCHEDULE_ENABLED (a --parameter wins over the environment).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import yaml
from botocore.config import Config
from botocore.exceptions import ClientError, WaiterError

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "template.yaml"
CODE = ROOT / "functions" / "producer"
REQUIREMENTS = CODE / "requirements.txt"
BUILD = ROOT / "build"
BUILD_DIR = BUILD / "producer"
# The AWS python3.11 runtime is Amazon Linux 2 (glibc 2.26): only manylinux2014 wheels load there. That is why
# functions/producer/requirements.in pins confluent-kafka 2.4.0 (later releases ship manylinux_2_28 wheels only).
PLATFORMS = ("manylinux2014_x86_64",)
FIXED_ZIP_TIME = (2020, 1, 1, 0, 0, 0)
# Template parameters that may come from the environment.
PARAMETERS_FROM_ENV = {
    "KAFKA_BOOTSTRAP_SERVERS": "KafkaBootstrapServers",
    "EVENTS_TOPIC": "EventsTopic",
    "DLQ_TOPIC": "DeadLetterTopic",
    "EVENTS_BUCKET": "EventsBucketName",
    "POLL_ENABLED": "PollEnabled",
    "POLL_INTERVAL_SECONDS": "PollIntervalSeconds",
    "SCHEDULE_ENABLED": "ScheduleEnabled",
}
TERMINAL_FAILURES = {"ROLLBACK_COMPLETE", "ROLLBACK_FAILED", "CREATE_FAILED", "DELETE_FAILED"}


def log(message: str) -> None:
    print(f"[deploy] {message}", flush=True)


# -- build ------------------------------------------------------------------------------------------------------


def build() -> Path:
    """build/producer/: the dependencies (cached per requirements.txt hash) plus the code as package `producer`."""
    digest = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()[:16]
    deps = BUILD / "cache" / f"producer-deps-{digest}"
    if not deps.is_dir():
        log(f"installing {REQUIREMENTS.relative_to(ROOT)} for Lambda (python 3.11, x86_64)")
        partial = deps.with_name(deps.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        command = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        for platform in PLATFORMS:
            command += ["--platform", platform]
        command += ["--only-binary=:all:", "--implementation", "cp", "--python-version", "3.11"]
        command += ["--target", str(partial), "-r", str(REQUIREMENTS)]
        subprocess.run(command, check=True)
        partial.rename(deps)
    shutil.rmtree(BUILD_DIR, ignore_errors=True)
    shutil.copytree(deps, BUILD_DIR, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    package = BUILD_DIR / "producer"
    package.mkdir()
    for source in sorted(CODE.glob("*.py")):
        shutil.copy2(source, package / source.name)
    log(f"built {BUILD_DIR.relative_to(ROOT)} (handler producer.handler.lambda_handler)")
    return BUILD_DIR


def zip_directory(directory: Path) -> bytes:
    """A reproducible zip (sorted entries, fixed times): the same code gives the same S3 key."""
    target = BUILD / f"{directory.name}.zip"
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        for path in sorted(p for p in directory.rglob("*") if p.is_file()):
            info = zipfile.ZipInfo(str(path.relative_to(directory)), date_time=FIXED_ZIP_TIME)
            info.external_attr = (0o755 if os.access(path, os.X_OK) else 0o644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())
    return target.read_bytes()


# -- template ---------------------------------------------------------------------------------------------------


class _TemplateLoader(yaml.SafeLoader):
    """YAML loader that reads CloudFormation short forms (!Ref, !GetAtt, !Sub, ...) as their long forms."""


def _intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


_TemplateLoader.add_multi_constructor("!", _intrinsic)


def package(template: dict[str, Any], s3: Any, bucket: str) -> dict[str, Any]:
    """Upload each function's local CodeUri as a zip and point CodeUri at it (what `sam package` does)."""
    for name, resource in template.get("Resources", {}).items():
        properties = resource.get("Properties", {})
        code_uri = properties.get("CodeUri")
        if resource.get("Type") != "AWS::Serverless::Function" or not isinstance(code_uri, str):
            continue
        body = zip_directory(ROOT / code_uri)
        key = f"{name}/{hashlib.sha256(body).hexdigest()}.zip"
        try:
            s3.head_object(Bucket=bucket, Key=key)
        except ClientError:
            s3.put_object(Bucket=bucket, Key=key, Body=body)
        log(f"{name}: {code_uri} -> s3://{bucket}/{key} ({len(body) / 2**20:.1f} MiB)")
        properties["CodeUri"] = {"Bucket": bucket, "Key": key}
    return template


# -- deploy -----------------------------------------------------------------------------------------------------


def ensure_bucket(s3: Any, bucket: str) -> None:
    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError:
        s3.create_bucket(Bucket=bucket)
        log(f"created artifacts bucket {bucket}")


def stack_status(cfn: Any, stack: str) -> str | None:
    try:
        return str(cfn.describe_stacks(StackName=stack)["Stacks"][0]["StackStatus"])
    except ClientError as exc:
        if "does not exist" in str(exc):
            return None
        raise


def failure_events(cfn: Any, stack: str, since: datetime) -> list[str]:
    """The failed resource operations of the stack since `since`, newest first."""
    events = cfn.describe_stack_events(StackName=stack).get("StackEvents", [])
    return [
        f"{e['LogicalResourceId']} {e['ResourceStatus']}: {e.get('ResourceStatusReason', '')}"
        for e in events
        if e["Timestamp"] >= since and ("FAILED" in e["ResourceStatus"] or "ROLLBACK" in e["ResourceStatus"])
    ][:10]


def deploy(cfn: Any, stack: str, body: str, parameters: dict[str, str], *, recreate: bool = False) -> None:
    arguments: dict[str, Any] = {
        "StackName": stack,
        "TemplateBody": body,
        "Parameters": [{"ParameterKey": k, "ParameterValue": v} for k, v in sorted(parameters.items())],
        "Capabilities": ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"],
    }
    status = stack_status(cfn, stack)
    if status is not None and (recreate or status in TERMINAL_FAILURES):
        log(f"deleting stack {stack} ({status}) before creating it again")
        since = datetime.now(UTC) - timedelta(seconds=5)
        cfn.delete_stack(StackName=stack)
        try:
            cfn.get_waiter("stack_delete_complete").wait(StackName=stack, WaiterConfig={"Delay": 2, "MaxAttempts": 150})
        except WaiterError:
            if stack_status(cfn, stack) not in (None, "DELETE_COMPLETE"):
                details = "\n  ".join(failure_events(cfn, stack, since))
                raise SystemExit(f"[deploy] could not delete stack {stack}:\n  {details}") from None
        status = None
    since = datetime.now(UTC) - timedelta(seconds=5)
    try:
        if status is None:
            log(f"creating stack {stack}")
            cfn.create_stack(**arguments)
            waiter = "stack_create_complete"
        else:
            log(f"updating stack {stack} (was {status})")
            cfn.update_stack(**arguments)
            waiter = "stack_update_complete"
    except ClientError as exc:
        if "No updates are to be performed" in str(exc):
            log(f"stack {stack} is up to date")
            return
        raise
    try:
        cfn.get_waiter(waiter).wait(StackName=stack, WaiterConfig={"Delay": 2, "MaxAttempts": 300})
        failures = failure_events(cfn, stack, since)
    except WaiterError as exc:
        failures = [str(exc), *failure_events(cfn, stack, since)]
    if failures:
        # LocalStack may end a failed update in UPDATE_COMPLETE after rolling back: read the events, not the status.
        details = "\n  ".join(failures)
        raise SystemExit(
            f"[deploy] stack {stack} failed:\n  {details}\n"
            f"[deploy] fix the cause; `python infra/deploy.py --recreate` deletes the stack and creates it again"
        )


def wait_for_functions(lambda_client: Any, outputs: dict[str, str]) -> None:
    name = outputs.get("FunctionName")
    if name:
        config = {"Delay": 1, "MaxAttempts": 120}
        lambda_client.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig=config)
        lambda_client.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig=config)


def parse_parameters(pairs: list[str]) -> dict[str, str]:
    parameters = {key: os.environ[env] for env, key in PARAMETERS_FROM_ENV.items() if os.environ.get(env)}
    for pair in pairs:
        key, separator, value = pair.partition("=")
        if not separator:
            raise SystemExit(f"[deploy] --parameter {pair!r}: expected Key=Value")
        parameters[key] = value
    return parameters


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build-only", action="store_true", help="only build build/producer/ (for sam local)")
    parser.add_argument("--stack-name", default=os.environ.get("STACK_NAME", "game-events"))
    parser.add_argument("--parameter", action="append", default=[], metavar="Key=Value")
    parser.add_argument("--recreate", action="store_true", help="delete the stack first (the bucket is retained)")
    args = parser.parse_args(argv)

    started = time.monotonic()
    build()
    if args.build_only:
        return 0
    session = boto3.session.Session(
        aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "test"),
        aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "test"),
        region_name=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
    )
    endpoint = os.environ.get("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")
    config = Config(retries={"max_attempts": 10, "mode": "standard"})
    s3 = session.client("s3", endpoint_url=endpoint, config=config)
    cfn = session.client("cloudformation", endpoint_url=endpoint, config=config)
    lambda_client = session.client("lambda", endpoint_url=endpoint, config=config)

    artifacts = os.environ.get("ARTIFACTS_BUCKET", "game-events-artifacts")
    ensure_bucket(s3, artifacts)
    template = yaml.load(TEMPLATE.read_text(), Loader=_TemplateLoader)  # noqa: S506 (SafeLoader subclass)
    body = json.dumps(package(template, s3, artifacts), indent=1)
    deploy(cfn, args.stack_name, body, parse_parameters(args.parameter), recreate=args.recreate)
    stack = cfn.describe_stacks(StackName=args.stack_name)["Stacks"][0]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    if not outputs:
        raise SystemExit(f"[deploy] stack {args.stack_name} has no outputs; redeploy with --recreate")
    wait_for_functions(lambda_client, outputs)
    log(f"stack {args.stack_name}: {stack['StackStatus']} in {time.monotonic() - started:.0f}s; outputs:")
    for key, value in sorted(outputs.items()):
        print(f"  {key} = {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
