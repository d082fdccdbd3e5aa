"""The process environment of a function: what the handler sees in ``os.environ``.

Pure functions, no I/O: the executor and the init process both use them, and unit tests pin them down.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

# Variables LocalStack hands to an execution environment for its own init only. LocalStack's Go init removes the
# same list before it starts the runtime (lambda-runtime-init, cmd/localstack/main.go UnsetLsEnvs).
LOCALSTACK_INTERNAL_VARIABLES = frozenset(
    {
        "LOCALSTACK_RUNTIME_ENDPOINT",
        "LOCALSTACK_RUNTIME_ID",
        "LOCALSTACK_INTEROP_PORT",
        "LOCALSTACK_RUNTIME_TRACING_PORT",
        "LOCALSTACK_USER",
        "LOCALSTACK_CODE_ARCHIVES",
        "LOCALSTACK_HOT_RELOADING_PATHS",
        "LOCALSTACK_ENABLE_XRAY_TELEMETRY",
        "LOCALSTACK_INIT_LOG_LEVEL",
        "LOCALSTACK_POST_INVOKE_WAIT_MS",
        "LOCALSTACK_FUNCTION_ACCOUNT_ID",
        "LOCALSTACK_MAX_PAYLOAD_SIZE",
        "LOCALSTACK_CHMOD_PATHS",
        # a Docker container id and the user's home in the Go init; never meaningful for a function here
        "HOSTNAME",
        "HOME",
    }
)

# Variables of this executor (configuration of the init process); never passed on to the handler.
EXECUTOR_VARIABLE_PREFIX = "_LOCALSTACK_HOST_EXECUTOR"

# Set by the runtime itself, whatever the function configuration says (as in the managed runtimes).
BASE_PATH = "/usr/local/bin:/usr/bin:/bin"
DEFAULT_LANG = "en_US.UTF-8"


@dataclass(frozen=True)
class RuntimeLayout:
    """Where a function's pieces live on this host."""

    runtime: str
    """The function's ``Runtime``, e.g. ``python3.11``."""
    runtime_dir: str
    """The runtime environment (a virtualenv with awslambdaric and boto3): ``LAMBDA_RUNTIME_DIR``."""
    task_root: str
    """The unzipped deployment package: ``LAMBDA_TASK_ROOT`` and the working directory."""
    layer_dirs: tuple[str, ...] = field(default_factory=tuple)
    """Unzipped layers in the function's order (what AWS merges into ``/opt``)."""
    tmp_dir: str | None = None
    """A private scratch directory (the function's ``/tmp``), exported as ``TMPDIR``."""


def python_version_of(runtime: str) -> str | None:
    """``python3.11`` -> ``3.11``; None for anything that is not a CPython runtime name."""
    prefix = "python"
    if not runtime.startswith(prefix):
        return None
    version = runtime[len(prefix) :]
    major, _, minor = version.partition(".")
    if not (major.isdigit() and minor.isdigit()):
        return None
    return version


def python_path(layout: RuntimeLayout) -> list[str]:
    """Import path of the handler: the task root first, then the layers' Python folders (``/opt/python``...).

    AWS merges layers into ``/opt`` in order, a later layer overwriting an earlier one, so later layers come first.
    """
    entries = [layout.task_root]
    version = python_version_of(layout.runtime)
    for layer in reversed(layout.layer_dirs):
        entries.append(os.path.join(layer, "python"))
        if version:
            entries.append(os.path.join(layer, "python", "lib", f"python{version}", "site-packages"))
    return entries


def _strings(values: Mapping[str, object]) -> dict[str, str]:
    return {str(key): "" if value is None else str(value) for key, value in values.items()}


def runtime_environment(
    lambda_variables: Mapping[str, object],
    layout: RuntimeLayout,
    runtime_api: str,
    *,
    drop: Iterable[str] = (),
) -> dict[str, str]:
    """The complete environment of the runtime process (``python -m awslambdaric``).

    ``lambda_variables`` is what LocalStack computed for the execution environment: the AWS reserved variables
    (region, function name, memory, log group, credentials of the assumed role, ``_HANDLER``...), the public
    LocalStack endpoint (``AWS_ENDPOINT_URL``, ``LOCALSTACK_HOSTNAME``, ``EDGE_PORT``) and the function's own
    variables. LocalStack's internal variables and this executor's configuration are removed; nothing of the
    LocalStack process's own environment is inherited.
    """
    dropped = set(drop) | LOCALSTACK_INTERNAL_VARIABLES
    env = {
        key: value
        for key, value in _strings(lambda_variables).items()
        if key not in dropped and not key.startswith(EXECUTOR_VARIABLE_PREFIX)
    }
    # reserved: always the runtime's own values
    env.update(
        {
            "AWS_LAMBDA_RUNTIME_API": runtime_api,
            "LAMBDA_TASK_ROOT": layout.task_root,
            "LAMBDA_RUNTIME_DIR": layout.runtime_dir,
            # the managed runtime's image sets this (the Go init's "AWS_Lambda_rapid" is only a placeholder)
            "AWS_EXECUTION_ENV": f"AWS_Lambda_{layout.runtime}",
        }
    )
    # unreserved: defaults that the function's own configuration may override (LocalStack sets none of them)
    env.setdefault("PATH", f"{os.path.join(layout.runtime_dir, 'bin')}:{BASE_PATH}")
    env.setdefault("PYTHONPATH", os.pathsep.join(python_path(layout)))
    env.setdefault("LANG", DEFAULT_LANG)
    if layout.tmp_dir:
        env.setdefault("TMPDIR", layout.tmp_dir)
    return env
