"""Runtime environments on this host: one virtualenv per Python version, built by ``install_runtimes.sh``.

A runtime environment ``<runtimes dir>/python3.X`` is a virtualenv of a python3.X interpreter with the pinned
``awslambdaric`` and ``boto3`` (what the managed AWS runtime ships). ``install_runtimes.sh`` writes the marker file
``.ready`` last, so a half-built environment is never used.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from localstack_host_executor.environment import python_version_of

RUNTIMES_DIR_VARIABLE = "HOST_LAMBDA_RUNTIMES_DIR"
WORK_DIR_VARIABLE = "HOST_LAMBDA_WORK_DIR"
DEFAULT_RUNTIMES_DIR = os.path.join(".stack", "lambda-runtimes")
DEFAULT_WORK_DIR = os.path.join(".stack", "localstack", "lambda")
READY_MARKER = ".ready"
INSTALL_HINT = "infra/localstack/install_runtimes.sh"


class RuntimeUnavailableError(Exception):
    """The function's Runtime cannot run on this host; the message says which and what to do."""


@dataclass(frozen=True)
class RuntimeEnvironment:
    runtime: str
    directory: Path

    @property
    def python(self) -> Path:
        return self.directory / "bin" / "python"


def runtimes_dir(environ: dict[str, str] | None = None) -> Path:
    """``HOST_LAMBDA_RUNTIMES_DIR``, or ``.stack/lambda-runtimes`` under the working directory."""
    value = (environ if environ is not None else dict(os.environ)).get(RUNTIMES_DIR_VARIABLE, "").strip()
    return Path(value or DEFAULT_RUNTIMES_DIR).absolute()


def work_dir(environ: dict[str, str] | None = None) -> Path:
    """``HOST_LAMBDA_WORK_DIR`` (function code and scratch), or ``.stack/localstack/lambda``."""
    value = (environ if environ is not None else dict(os.environ)).get(WORK_DIR_VARIABLE, "").strip()
    return Path(value or DEFAULT_WORK_DIR).absolute()


def resolve_runtime(runtime: str | None, directory: Path) -> RuntimeEnvironment:
    """The runtime environment for a function's ``Runtime``, or ``RuntimeUnavailableError`` saying what is missing."""
    if not runtime:
        raise RuntimeUnavailableError(
            "The host Lambda executor runs only Zip functions with a python3.x Runtime; container images "
            "(PackageType Image) need LocalStack's Docker executor"
        )
    version = python_version_of(runtime)
    if version is None:
        raise RuntimeUnavailableError(
            f"Runtime {runtime} is not supported by the host Lambda executor, which runs python3.x runtimes only"
        )
    environment = RuntimeEnvironment(runtime=runtime, directory=directory / runtime)
    if not (environment.directory / READY_MARKER).is_file() or not environment.python.exists():
        raise RuntimeUnavailableError(
            f"Runtime {runtime} is not available on this host: no python{version} runtime environment in "
            f"{directory} (install a python{version} interpreter, then run {INSTALL_HINT} {directory})"
        )
    return environment


def available_runtimes(directory: Path) -> list[str]:
    """The runtimes that are ready in ``directory``, sorted (``python3.11``, ``python3.12``...)."""
    if not directory.is_dir():
        return []
    return sorted(
        entry.name
        for entry in directory.iterdir()
        if python_version_of(entry.name) and (entry / READY_MARKER).is_file()
    )
