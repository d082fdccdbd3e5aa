"""``HostRuntimeExecutor``: LocalStack's ``RuntimeExecutor`` that runs execution environments as host processes.

LocalStack drives it exactly as it drives its Docker executor (``docker_runtime_executor.py`` in 4.9.2):

* ``prepare_version`` (CreateFunction, UpdateFunctionCode, PublishVersion, start-up): checks that the function's
  ``Runtime`` has a runtime environment on this host - else it raises, and LocalStack marks the version ``Failed``
  with the message as ``StateReason`` - and unzips the code (and layers) into a per-function directory;
* ``start``: registers the executor endpoint, spawns the init process (``localstack_host_executor.init``) with
  LocalStack's environment variables, learns its port and waits for its ``ready``/``error`` status callback;
* ``invoke``: LocalStack's ``ExecutorEndpoint`` POSTs to the init's ``/invoke`` and waits for the callbacks;
* ``stop``: SIGTERM to the init's process group, SIGKILL after a grace period.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import uuid
from concurrent.futures import Future
from pathlib import Path
from typing import IO, Any

from localstack import config
from localstack.aws.api.lambda_ import PackageType
from localstack.services.lambda_.invocation.executor_endpoint import ExecutorEndpoint
from localstack.services.lambda_.invocation.lambda_models import FunctionVersion, InvocationResult
from localstack.services.lambda_.invocation.runtime_executor import LambdaRuntimeException, RuntimeExecutor

from localstack_host_executor.environment import BASE_PATH
from localstack_host_executor.init import CONFIG_VARIABLE, InitConfig
from localstack_host_executor.processes import signal_group
from localstack_host_executor.runtimes import (
    RuntimeEnvironment,
    RuntimeUnavailableError,
    available_runtimes,
    resolve_runtime,
    runtimes_dir,
    work_dir,
)

LOG = logging.getLogger(__name__)

INIT_PORT_TIMEOUT_SECONDS = 15.0
STOP_GRACE_SECONDS = 2.0
KEPT_LOG_LINES = 2000


def _kv(event: str, **fields: object) -> str:
    """``event key=value ...``: structured log lines in LocalStack's plain-text log."""
    return " ".join([event, *(f"{key}={value!r}" for key, value in fields.items())])


class _Spawner:
    """Forks every init process from one thread that lives as long as LocalStack.

    The init asks for ``PR_SET_PDEATHSIG``, which fires when the *thread* that forked it exits; LocalStack starts
    environments from short-lived worker threads, so forking there would kill environments at random.
    """

    def __init__(self) -> None:
        self._requests: queue.SimpleQueue[tuple[list[str], dict[str, Any], Future[subprocess.Popen[bytes]]]] = (
            queue.SimpleQueue()
        )
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def popen(self, command: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._serve, name="host-executor-spawner", daemon=True)
                self._thread.start()
        future: Future[subprocess.Popen[bytes]] = Future()
        self._requests.put((command, kwargs, future))
        return future.result()

    def _serve(self) -> None:
        while True:
            command, kwargs, future = self._requests.get()
            try:
                future.set_result(subprocess.Popen(command, **kwargs))
            except BaseException as exc:
                future.set_exception(exc)


SPAWNER = _Spawner()


def gateway_host() -> str:
    """The address a host process reaches LocalStack's gateway at (a wildcard listen address means loopback)."""
    host = str(config.GATEWAY_LISTEN[0].host)
    if host in ("", "0.0.0.0", "::", "[::]"):  # noqa: S104 - comparing, not binding
        return "127.0.0.1"
    return host


def _materialise(code: Any, target_root: Path) -> Path:
    """Unzip (via LocalStack's cache) a code archive into ``target_root/<code id>``; hot-reload folders as they are."""
    code.prepare_for_execution()
    source = Path(code.get_unzipped_code_location())
    if code.is_hot_reloading():
        return source
    code_id = str(getattr(code, "id", None) or getattr(code, "code_sha256", "code"))
    target = target_root / code_id
    if target.is_dir():
        return target
    target_root.mkdir(parents=True, exist_ok=True)
    staging = target_root / f".{code_id}.{uuid.uuid4().hex[:8]}"
    shutil.copytree(source, staging, symlinks=True)
    try:
        staging.rename(target)
    except OSError:
        # another environment of the same version won the race: theirs is identical
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _code_dirs(function_version: FunctionVersion) -> tuple[Path, list[Path]]:
    """Task root and layer directories of a version, unzipped under ``HOST_LAMBDA_WORK_DIR`` if not yet."""
    base = work_dir()
    function_name = function_version.id.function_name
    task_root = _materialise(function_version.config.code, base / "functions" / function_name)
    layers = [
        _materialise(layer.code, base / "layers" / layer.layer_arn.rsplit(":", 1)[-1] / str(layer.version))
        for layer in (function_version.config.layers or [])
    ]
    return task_root, layers


def _runtime_for(function_version: FunctionVersion) -> RuntimeEnvironment:
    if function_version.config.package_type != PackageType.Zip:
        raise RuntimeUnavailableError(
            "The host Lambda executor runs only Zip functions; container images (PackageType Image) need "
            "LocalStack's Docker executor"
        )
    return resolve_runtime(function_version.config.runtime, runtimes_dir())


class HostRuntimeExecutor(RuntimeExecutor):  # type: ignore[misc,unused-ignore]  # Any without LocalStack
    """One execution environment = one init process (+ its runtime process) on this host."""

    def __init__(self, id: str, function_version: FunctionVersion) -> None:
        super().__init__(id=id, function_version=function_version)
        self.executor_endpoint = ExecutorEndpoint(self.id, container_address="127.0.0.1", container_port=None)
        self._process: subprocess.Popen[bytes] | None = None
        self._port: Future[int] = Future()
        self._lines: collections.deque[str] = collections.deque(maxlen=KEPT_LOG_LINES)
        self._tmp_dir = work_dir() / "environments" / self.id / "tmp"

    # -- lifecycle --------------------------------------------------------------------------------------------------

    def start(self, env_vars: dict[str, str]) -> None:
        self.executor_endpoint.start()
        function_version = self.function_version
        try:
            runtime = _runtime_for(function_version)
        except RuntimeUnavailableError as exc:
            raise LambdaRuntimeException(str(exc)) from exc
        task_root, layers = _code_dirs(function_version)
        self._tmp_dir.mkdir(parents=True, exist_ok=True)
        init_config = InitConfig(
            runtime=runtime.runtime,
            python=str(runtime.python),
            runtime_dir=str(runtime.directory),
            task_root=str(task_root),
            handler=str(function_version.config.handler),
            parent_pid=os.getpid(),
            environment={key: "" if value is None else str(value) for key, value in env_vars.items()},
            layers=tuple(str(layer) for layer in layers),
            tmp_dir=str(self._tmp_dir),
        )
        init_env = {"PATH": BASE_PATH, "LANG": "C.UTF-8", CONFIG_VARIABLE: init_config.to_json()}
        self._process = SPAWNER.popen(
            [sys.executable, "-I", "-m", "localstack_host_executor.init"],
            cwd=str(task_root),
            env=init_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        if self._process.stdout is None:
            raise LambdaRuntimeException("host init started without an output pipe")
        threading.Thread(
            target=self._follow_output,
            args=(self._process.stdout,),
            name=f"host-executor-output-{self.id}",
            daemon=True,
        ).start()
        try:
            port = self._port.result(timeout=INIT_PORT_TIMEOUT_SECONDS)
        except Exception as exc:
            raise LambdaRuntimeException(
                f"Host init of environment {self.id} did not start: {exc}. Output: {self.get_logs()[-2000:]}"
            ) from exc
        self.executor_endpoint.container_port = port
        LOG.debug(
            _kv(
                "host environment starting",
                environment=self.id,
                function=function_version.qualified_arn,
                runtime=runtime.runtime,
                pid=self._process.pid,
                port=port,
            )
        )
        self.executor_endpoint.wait_for_startup()  # type: ignore[no-untyped-call,unused-ignore]
        LOG.debug(_kv("host environment ready", environment=self.id, port=port))

    def _follow_output(self, stream: IO[bytes]) -> None:
        """First line: ``port=<n>``; the rest is the environment's log (init events and the runtime's output)."""
        for raw in stream:
            line = raw.decode(errors="replace").rstrip("\n")
            if not self._port.done() and line.startswith("port="):
                self._port.set_result(int(line.removeprefix("port=")))
                continue
            self._lines.append(line)
        if not self._port.done():
            self._port.set_exception(RuntimeError("init exited before it reported its port"))
        with contextlib.suppress(OSError):
            stream.close()

    def stop(self) -> None:
        process = self._process
        if process is not None and process.poll() is None:
            signal_group(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                LOG.warning(_kv("host environment did not stop in time, killing it", environment=self.id))
                signal_group(process.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=STOP_GRACE_SECONDS)
        try:
            self.executor_endpoint.shutdown()
        except Exception as exc:
            LOG.debug(_kv("error while stopping executor endpoint", environment=self.id, error=exc))
        shutil.rmtree(self._tmp_dir.parent, ignore_errors=True)
        LOG.debug(_kv("host environment stopped", environment=self.id))

    # -- addresses ----------------------------------------------------------------------------------------------------

    def get_address(self) -> str:
        return "127.0.0.1"

    def get_endpoint_from_executor(self) -> str:
        return gateway_host()

    def get_runtime_endpoint(self) -> str:
        port = config.GATEWAY_LISTEN[0].port
        return f"http://{gateway_host()}:{port}{self.executor_endpoint.get_endpoint_prefix()}"  # type: ignore[no-untyped-call,unused-ignore]

    # -- invocations --------------------------------------------------------------------------------------------------

    def invoke(self, payload: dict[str, str]) -> InvocationResult:
        return self.executor_endpoint.invoke(payload)

    def get_logs(self) -> str:
        return "\n".join(self._lines)

    # -- versions -----------------------------------------------------------------------------------------------------

    @classmethod
    def prepare_version(cls, function_version: FunctionVersion) -> None:
        try:
            _runtime_for(function_version)
        except RuntimeUnavailableError as exc:
            LOG.warning(_kv("function cannot run on this host", function=function_version.qualified_arn, reason=exc))
            raise LambdaRuntimeException(str(exc)) from exc
        _code_dirs(function_version)

    @classmethod
    def cleanup_version(cls, function_version: FunctionVersion) -> None:
        """Nothing to undo: the unzipped code is shared by versions with the same code and kept for restarts."""

    @classmethod
    def validate_environment(cls) -> bool:
        directory = runtimes_dir()
        runtimes = available_runtimes(directory)
        if not runtimes:
            LOG.warning(
                _kv(
                    "no Lambda runtime environments: Python functions will fail to start",
                    directory=str(directory),
                    fix="infra/localstack/install_runtimes.sh",
                )
            )
        else:
            LOG.info(_kv("host Lambda executor", runtimes=",".join(runtimes), directory=str(directory)))
        return True
