"""Wire formats shared with LocalStack and the Lambda Runtime API: error documents, log lines, paths.

Pure functions, no I/O. The formats follow LocalStack's Go init (lambda-runtime-init ``cmd/localstack``) and the
AWS Lambda Runtime API, so a handler run here fails and logs as it does in LocalStack's Docker executor and in AWS.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any, TypedDict

RUNTIME_API_PREFIX = "/2018-06-01/runtime"
NEXT_PATH = f"{RUNTIME_API_PREFIX}/invocation/next"
INIT_ERROR_PATH = f"{RUNTIME_API_PREFIX}/init/error"
ERROR_TYPE_HEADER = "Lambda-Runtime-Function-Error-Type"

# LocalStack's payload limit for the Runtime API (LOCALSTACK_MAX_PAYLOAD_SIZE default of the Go init)
DEFAULT_MAX_PAYLOAD_SIZE = 6291556


class ErrorDocument(TypedDict, total=False):
    """The JSON body of a failed invocation, as AWS returns it with ``FunctionError: Unhandled``."""

    errorMessage: str
    errorType: str
    requestId: str
    stackTrace: list[str]


class InvokeRequest(TypedDict):
    """What LocalStack POSTs to ``/invoke`` of an execution environment (``ExecutionEnvironment.invoke``)."""

    invoke_id: str
    invoked_function_arn: str
    payload: str
    trace_id: str


def parse_invoke_request(body: bytes) -> InvokeRequest:
    """Parse LocalStack's ``/invoke`` body; a missing field raises ``ValueError`` naming it."""
    data = json.loads(body)
    if not isinstance(data, dict):
        raise ValueError("invoke request must be a JSON object")
    try:
        return InvokeRequest(
            invoke_id=str(data["invoke-id"]),
            invoked_function_arn=str(data["invoked-function-arn"]),
            payload=str(data.get("payload") or ""),
            trace_id=str(data.get("trace-id") or ""),
        )
    except KeyError as exc:
        raise ValueError(f"invoke request lacks the field {exc.args[0]!r}") from exc


def _utc_stamp(now: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))


def timeout_message(request_id: str, timeout_seconds: int, now: float | None = None) -> str:
    """``2024-01-01T00:00:00Z <id> Task timed out after 3.00 seconds``: the line AWS logs and returns."""
    stamp = _utc_stamp(time.time() if now is None else now)
    return f"{stamp} {request_id} Task timed out after {timeout_seconds}.00 seconds"


def timeout_error(request_id: str, timeout_seconds: int, now: float | None = None) -> ErrorDocument:
    """The invocation result of a timeout (only ``errorMessage``, as LocalStack's init and AWS return it)."""
    return ErrorDocument(errorMessage=timeout_message(request_id, timeout_seconds, now))


def exit_description(returncode: int) -> str:
    """How Go's ``os/exec`` names a process exit: ``exit status 1`` or ``signal: killed``."""
    if returncode >= 0:
        return f"exit status {returncode}"
    signal_names = {6: "aborted", 9: "killed", 11: "segmentation fault", 15: "terminated"}
    signum = -returncode
    return f"signal: {signal_names.get(signum, f'signal {signum}')}"


def runtime_exit_error(request_id: str | None, returncode: int) -> ErrorDocument:
    """The result when the runtime process dies (``sys.exit``, ``os._exit``, a crash) before it answers."""
    prefix = f"RequestId: {request_id} " if request_id else ""
    return ErrorDocument(
        errorMessage=f"{prefix}Error: Runtime exited with error: {exit_description(returncode)}",
        errorType="Runtime.ExitError",
    )


def runtime_start_error(message: str) -> ErrorDocument:
    """The result when the runtime process cannot even be started (no interpreter, bad code directory...)."""
    return ErrorDocument(errorMessage=message, errorType="Runtime.InvalidEntrypoint")


def error_bytes(error: ErrorDocument | dict[str, Any]) -> bytes:
    return json.dumps(error).encode()


def start_line(request_id: str, version: str) -> str:
    return f"START RequestId: {request_id} Version: {version}\n"


def end_lines(
    request_id: str,
    duration_ms: float,
    memory_size_mb: str,
    *,
    max_memory_used_mb: int | None = None,
    init_duration_ms: float | None = None,
    status: str | None = None,
) -> str:
    """``END`` and ``REPORT`` lines (the Go init's ``PrintEndReports``, plus AWS's Init Duration and Status)."""
    init = f"Init Duration: {init_duration_ms:.2f} ms\t" if init_duration_ms is not None else ""
    used = str(max_memory_used_mb) if max_memory_used_mb is not None else memory_size_mb
    report = (
        f"REPORT RequestId: {request_id}\t"
        f"{init}"
        f"Duration: {duration_ms:.2f} ms\t"
        f"Billed Duration: {math.ceil(duration_ms):.0f} ms\t"
        f"Memory Size: {memory_size_mb} MB\t"
        f"Max Memory Used: {used} MB\t"
    )
    if status:
        report += f"Status: {status}\t"
    return f"END RequestId: {request_id}\n{report}\n"


def logs_body(logs: str) -> bytes:
    """Body of the ``/invocations/<id>/logs`` callback (``{"logs": "..."}``, as the Go init sends it)."""
    return json.dumps({"logs": logs}).encode()
