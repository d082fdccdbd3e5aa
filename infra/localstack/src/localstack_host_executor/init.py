"""The init of one execution environment: run as ``python -I -m localstack_host_executor.init``.

One process per execution environment, the host counterpart of LocalStack's Go init (``/var/rapid/init``):

1. binds a free loopback port and prints ``port=<n>`` as its first line of output (the executor waits for it);
2. starts the runtime, ``<runtime venv>/bin/python -m awslambdaric <handler>``, with ``AWS_LAMBDA_RUNTIME_API``
   pointing at itself, from one long-lived supervisor thread (the runtime gets ``PR_SET_PDEATHSIG``);
3. serves the Lambda Runtime API to it (``/2018-06-01/runtime/invocation/next``, ``.../<id>/response``,
   ``.../<id>/error``, ``/2018-06-01/runtime/init/error``); the first ``next`` means the runtime is initialised,
   which it reports to LocalStack (``POST <endpoint>/status/<id>/ready``), an init error as ``.../error``;
4. serves LocalStack's ``POST /invoke``: answers at once, hands the event to the runtime, enforces the function
   timeout, then sends the invocation's logs (``START``, the runtime's output, ``END``, ``REPORT``) to
   ``<endpoint>/invocations/<id>/logs`` and the result to ``.../response`` or ``.../error``.

A timed-out or crashed runtime is killed (its whole process group) and started again, so the next invocation works.
The init exits, killing its runtime, on SIGTERM/SIGINT, when its parent dies (``PR_SET_PDEATHSIG`` and a parent-pid
watch), and never outlives LocalStack. Only the standard library is used, for a fast start.
"""

from __future__ import annotations

import codecs
import contextlib
import http.client
import json
import os
import queue
import select
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, BinaryIO

from localstack_host_executor import protocol
from localstack_host_executor.environment import EXECUTOR_VARIABLE_PREFIX, RuntimeLayout, runtime_environment
from localstack_host_executor.processes import (
    kill_on_parent_death,
    peak_rss_mb,
    set_parent_death_signal,
    signal_group,
)

CONFIG_VARIABLE = EXECUTOR_VARIABLE_PREFIX + "_CONFIG"
PARENT_POLL_SECONDS = 0.5
UPSTREAM_TIMEOUT_SECONDS = 30.0


def log(event: str, **fields: object) -> None:
    """One structured (JSON) line on stderr, which the executor keeps as the environment's log."""
    record = {"ts": round(time.time(), 3), "component": "host-init", "event": event, **fields}
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.write(json.dumps(record, default=str) + "\n")
        sys.stderr.flush()


@dataclass(frozen=True)
class InitConfig:
    """What the executor tells the init (JSON in ``_LOCALSTACK_HOST_EXECUTOR_CONFIG``)."""

    runtime: str
    python: str
    runtime_dir: str
    task_root: str
    handler: str
    parent_pid: int
    environment: dict[str, str]
    layers: tuple[str, ...] = ()
    tmp_dir: str | None = None

    @classmethod
    def from_json(cls, text: str) -> InitConfig:
        data = json.loads(text)
        return cls(
            runtime=data["runtime"],
            python=data["python"],
            runtime_dir=data["runtime_dir"],
            task_root=data["task_root"],
            handler=data["handler"],
            parent_pid=int(data["parent_pid"]),
            environment={str(k): str(v) for k, v in data["environment"].items()},
            layers=tuple(data.get("layers") or ()),
            tmp_dir=data.get("tmp_dir"),
        )

    def to_json(self) -> str:
        return json.dumps(
            {
                "runtime": self.runtime,
                "python": self.python,
                "runtime_dir": self.runtime_dir,
                "task_root": self.task_root,
                "handler": self.handler,
                "parent_pid": self.parent_pid,
                "environment": self.environment,
                "layers": list(self.layers),
                "tmp_dir": self.tmp_dir,
            }
        )

    @property
    def layout(self) -> RuntimeLayout:
        return RuntimeLayout(
            runtime=self.runtime,
            runtime_dir=self.runtime_dir,
            task_root=self.task_root,
            layer_dirs=self.layers,
            tmp_dir=self.tmp_dir,
        )

    def variable(self, name: str, default: str) -> str:
        return self.environment.get(name) or default


class Upstream:
    """HTTP client for LocalStack's executor endpoint (``LOCALSTACK_RUNTIME_ENDPOINT``), one kept-alive connection."""

    def __init__(self, endpoint: str) -> None:
        url = urllib.parse.urlsplit(endpoint)
        if url.scheme != "http" or not url.hostname:
            raise ValueError(f"LOCALSTACK_RUNTIME_ENDPOINT must be an http URL, got {endpoint!r}")
        self._host = url.hostname
        self._port = url.port or 80
        self._prefix = url.path.rstrip("/")
        self._lock = threading.Lock()
        self._connection: http.client.HTTPConnection | None = None

    def post(self, path: str, body: bytes, content_type: str = "application/json") -> int:
        """POST ``body`` to ``<endpoint><path>``; retries once on a dropped keep-alive connection."""
        headers = {"Content-Type": content_type, "Content-Length": str(len(body))}
        with self._lock:
            for attempt in (1, 2):
                connection = self._connection or http.client.HTTPConnection(
                    self._host, self._port, timeout=UPSTREAM_TIMEOUT_SECONDS
                )
                self._connection = connection
                try:
                    connection.request("POST", self._prefix + path, body=body, headers=headers)
                    response = connection.getresponse()
                    response.read()
                    if response.will_close:
                        connection.close()
                        self._connection = None
                    return response.status
                except (OSError, http.client.HTTPException) as exc:
                    connection.close()
                    self._connection = None
                    if attempt == 2:
                        log("upstream request failed", path=path, error=repr(exc))
                        raise
        raise AssertionError("unreachable")


class OutputCollector:
    """Collects the runtime's stdout/stderr (one pipe) for CloudWatch Logs and ``LogType=Tail``.

    The runtime writes its output unbuffered *before* it posts the result, so once the result is in, everything it
    printed is either already collected or still in the pipe: ``drain()`` reads the pipe empty under the same lock
    the reader thread holds while it appends, so an invocation's logs are complete and in order.
    """

    def __init__(self, echo: BinaryIO | None) -> None:
        self._lock = threading.Lock()
        self._chunks: list[str] = []
        self._pipes: dict[int, codecs.IncrementalDecoder] = {}
        self._echo = echo

    def attach(self, fd: int) -> None:
        os.set_blocking(fd, False)
        with self._lock:
            self._pipes[fd] = codecs.getincrementaldecoder("utf-8")(errors="replace")
        threading.Thread(target=self._follow, args=(fd,), name=f"runtime-output-{fd}", daemon=True).start()

    def _follow(self, fd: int) -> None:
        while True:
            try:
                select.select([fd], [], [])
            except (OSError, ValueError):
                return
            with self._lock:
                if fd not in self._pipes or self._read_available(fd):
                    return

    def _read_available(self, fd: int) -> bool:
        """Read what the pipe holds now (lock held); True at end of file, the pipe then closed."""
        decoder = self._pipes[fd]
        while True:
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                return False
            except OSError:
                data = b""
            if not data:
                tail = decoder.decode(b"", final=True)
                if tail:
                    self._chunks.append(tail)
                del self._pipes[fd]
                with contextlib.suppress(OSError):
                    os.close(fd)
                return True
            self._chunks.append(decoder.decode(data))
            if self._echo is not None:
                with contextlib.suppress(OSError, ValueError):
                    self._echo.write(data)
                    self._echo.flush()

    def drain(self) -> None:
        with self._lock:
            for fd in list(self._pipes):
                self._read_available(fd)

    def append(self, text: str) -> None:
        with self._lock:
            self._chunks.append(text)

    def take(self) -> str:
        with self._lock:
            text = "".join(self._chunks)
            self._chunks.clear()
            return text


@dataclass
class Invocation:
    request_id: str
    invoked_function_arn: str
    payload: bytes
    trace_id: str
    deadline_ms: int
    done: threading.Event = field(default_factory=threading.Event)
    is_error: bool = False
    result: bytes = b""
    delivered_to: int | None = None
    timed_out: bool = False

    def complete(self, result: bytes, *, is_error: bool) -> None:
        if not self.done.is_set():
            self.result = result
            self.is_error = is_error
            self.done.set()


class Environment:
    """State of the execution environment: the runtime process and the invocation in flight."""

    def __init__(self, config: InitConfig, upstream: Upstream, output: OutputCollector) -> None:
        self.config = config
        self.upstream = upstream
        self.output = output
        self.runtime_id = config.variable("LOCALSTACK_RUNTIME_ID", "")
        self.timeout_seconds = int(config.variable("AWS_LAMBDA_FUNCTION_TIMEOUT", "3"))
        self.version = config.variable("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        self.memory_size = config.variable("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        self.max_payload = int(config.variable("LOCALSTACK_MAX_PAYLOAD_SIZE", str(protocol.DEFAULT_MAX_PAYLOAD_SIZE)))
        self.port = 0
        self.cv = threading.Condition()
        # runtime process (guarded by cv)
        self.generation = 0
        self.live_generation: int | None = None
        self.runtime_pid: int | None = None
        self.initialised = False
        self.spawned_at = 0.0
        self.init_duration_ms: float | None = None
        self.deliberate_kills: set[int] = set()
        self.init_error_generations: set[int] = set()
        # invocations (guarded by cv)
        self.pending: Invocation | None = None
        self.current: Invocation | None = None
        # LocalStack status (guarded by cv)
        self.status_sent = False
        self.shutting_down = False
        self.start_pending = False
        self.start_requests: queue.Queue[bool] = queue.Queue()

    # -- runtime process ------------------------------------------------------------------------------------------

    def supervise(self) -> None:
        """Supervisor thread: spawns the runtime (so PR_SET_PDEATHSIG stays tied to a thread that lives), waits for
        it to exit, reports the exit, and restarts it when asked to."""
        while self.start_requests.get():
            while self._run_runtime_once():
                pass

    def request_start_locked(self) -> None:
        """Ask the supervisor for a runtime unless one runs or is coming (cv held)."""
        if self.shutting_down or self.start_pending or self.live_generation is not None:
            return
        self.start_pending = True
        self.start_requests.put(True)

    def _run_runtime_once(self) -> bool:
        with self.cv:
            self.start_pending = False
            if self.shutting_down:
                return False
            self.generation += 1
            generation = self.generation
            # live before the process exists: its first `next` may come before Popen returns
            self.live_generation = generation
            self.initialised = False
            self.spawned_at = time.perf_counter()
        env = runtime_environment(
            self.config.environment, self.config.layout, f"127.0.0.1:{self.port}", drop=(CONFIG_VARIABLE,)
        )
        command = [self.config.python, "-m", "awslambdaric", self.config.handler]
        try:
            process = subprocess.Popen(
                command,
                cwd=self.config.task_root,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=kill_on_parent_death,  # noqa: PLW1509 - one prctl call, nothing else
            )
        except OSError as exc:
            log("runtime start failed", error=repr(exc), command=command)
            self._runtime_gone(generation, None, protocol.runtime_start_error(f"Cannot start the runtime: {exc}"))
            return False
        if process.stdout is not None:
            self.output.attach(os.dup(process.stdout.fileno()))
            process.stdout.close()
        with self.cv:
            self.runtime_pid = process.pid
            stop_now = self.shutting_down
        if stop_now:
            signal_group(process.pid, signal.SIGKILL)
        log("runtime started", pid=process.pid, generation=generation, runtime=self.config.runtime)
        returncode = process.wait()
        # the process group may still hold children of the handler: they go with it
        signal_group(process.pid, signal.SIGKILL)
        log("runtime exited", pid=process.pid, generation=generation, returncode=returncode)
        return self._runtime_gone(generation, returncode, None)

    def _runtime_gone(self, generation: int, returncode: int | None, error: protocol.ErrorDocument | None) -> bool:
        """Bookkeeping after the runtime ended; True when it should be started again right away."""
        self.output.drain()
        send_status_error: bytes | None = None
        with self.cv:
            if self.live_generation == generation:
                self.live_generation = None
                self.runtime_pid = None
            deliberate = generation in self.deliberate_kills
            reported_init_error = generation in self.init_error_generations
            was_initialised = self.initialised
            self.initialised = False
            crashed_in_invoke = False
            if not deliberate:
                current = self.current
                request_id = current.request_id if current else (self.pending.request_id if self.pending else None)
                document = error or protocol.runtime_exit_error(request_id, returncode if returncode is not None else 1)
                if current is not None:
                    current.complete(protocol.error_bytes(document), is_error=True)
                    self.current = None
                    crashed_in_invoke = True
                elif self.pending is not None and not reported_init_error:
                    self.pending.complete(protocol.error_bytes(document), is_error=True)
                    self.pending = None
                if not self.status_sent and not reported_init_error:
                    self.status_sent = True
                    send_status_error = protocol.error_bytes(document)
            # a runtime killed for a timeout or crashed in an invocation comes back at once, warm for the next
            # one; one that failed its init waits for the next invocation (no restart loop)
            restart = (
                not self.shutting_down and self.status_sent and (deliberate or (crashed_in_invoke and was_initialised))
            )
            if restart:
                self.start_pending = True
            self.cv.notify_all()
        if send_status_error is not None:
            self._send_status("error", send_status_error)
        return restart

    def kill_runtime(self, reason: str) -> None:
        """Kill the runtime's process group (cv held by the caller or not: only reads)."""
        with self.cv:
            pid = self.runtime_pid
            if pid is None or self.live_generation is None:
                return
            self.deliberate_kills.add(self.live_generation)
        log("killing runtime", pid=pid, reason=reason)
        signal_group(pid, signal.SIGKILL)

    def shutdown(self, reason: str) -> None:
        with self.cv:
            if self.shutting_down:
                return
            self.shutting_down = True
            self.cv.notify_all()
        log("shutting down", reason=reason)
        self.kill_runtime(reason)
        self.start_requests.put(False)

    # -- LocalStack callbacks ---------------------------------------------------------------------------------------

    def _send_status(self, status: str, body: bytes) -> None:
        try:
            self.upstream.post(f"/status/{self.runtime_id}/{status}", body)
        except (OSError, http.client.HTTPException):
            log("status callback failed", status=status)

    # -- Runtime API --------------------------------------------------------------------------------------------------

    def next_invocation(self) -> Invocation | None:
        """``GET /invocation/next``: blocks until LocalStack invokes; None when this runtime is gone."""
        send_ready = False
        with self.cv:
            generation = self.live_generation
            if generation is None:
                return None
            if not self.initialised:
                self.initialised = True
                self.init_duration_ms = (time.perf_counter() - self.spawned_at) * 1000
                if not self.status_sent:
                    self.status_sent = True
                    send_ready = True
        if send_ready:
            log("runtime ready", init_ms=round(self.init_duration_ms or 0.0, 1))
            self._send_status("ready", b"")
        with self.cv:
            while self.pending is None:
                if self.shutting_down or self.live_generation != generation:
                    return None
                self.cv.wait()
            if self.live_generation != generation:
                return None
            invocation = self.pending
            self.pending = None
            invocation.delivered_to = generation
            self.current = invocation
            return invocation

    def finish_invocation(self, request_id: str, body: bytes, *, is_error: bool) -> bool:
        with self.cv:
            current = self.current
            if current is None or current.request_id != request_id:
                return False
            self.current = None
            current.complete(body, is_error=is_error)
            return True

    def init_error(self, body: bytes) -> None:
        send_status: bytes | None = None
        with self.cv:
            if self.live_generation is not None:
                self.init_error_generations.add(self.live_generation)
            if not self.status_sent:
                self.status_sent = True
                send_status = body
            elif self.pending is not None:
                # a restarted runtime failed its init: the waiting invocation fails with that error (as in AWS)
                self.pending.complete(body, is_error=True)
                self.pending = None
            self.cv.notify_all()
        if send_status is not None:
            log("runtime init failed", body=body[:500].decode(errors="replace"))
            self._send_status("error", send_status)

    # -- LocalStack's /invoke -----------------------------------------------------------------------------------------

    def invoke(self, request: protocol.InvokeRequest) -> None:
        """Run one invocation to its end and report it (a thread of its own per invocation)."""
        started = time.perf_counter()
        invocation = Invocation(
            request_id=request["invoke_id"],
            invoked_function_arn=request["invoked_function_arn"],
            payload=request["payload"].encode(),
            trace_id=request["trace_id"],
            deadline_ms=int(time.time() * 1000) + self.timeout_seconds * 1000,
        )
        self.output.append(protocol.start_line(invocation.request_id, self.version))
        with self.cv:
            self.pending = invocation
            self.request_start_locked()
            self.cv.notify_all()
        if not invocation.done.wait(self.timeout_seconds):
            with self.cv:
                timed_out = not invocation.done.is_set()
                if timed_out:
                    invocation.timed_out = True
                    invocation.complete(
                        protocol.error_bytes(protocol.timeout_error(invocation.request_id, self.timeout_seconds)),
                        is_error=True,
                    )
                    if self.pending is invocation:
                        self.pending = None
                    if self.current is invocation:
                        self.current = None
            if timed_out:
                self.kill_runtime("timeout")
        duration_ms = (time.perf_counter() - started) * 1000
        self.output.drain()
        with self.cv:
            init_ms = self.init_duration_ms if invocation.delivered_to is not None else None
            if init_ms is not None:
                self.init_duration_ms = None
            pid = self.runtime_pid
        if invocation.timed_out:
            self.output.append(protocol.timeout_message(invocation.request_id, self.timeout_seconds) + "\n")
            duration_ms = min(duration_ms, self.timeout_seconds * 1000.0)
        self.output.append(
            protocol.end_lines(
                invocation.request_id,
                duration_ms,
                self.memory_size,
                max_memory_used_mb=peak_rss_mb(pid) if pid else None,
                init_duration_ms=init_ms,
                status="timeout" if invocation.timed_out else None,
            )
        )
        logs = self.output.take()
        outcome = "error" if invocation.is_error else "response"
        try:
            self.upstream.post(f"/invocations/{invocation.request_id}/logs", protocol.logs_body(logs))
            self.upstream.post(f"/invocations/{invocation.request_id}/{outcome}", invocation.result)
        except (OSError, http.client.HTTPException):
            log("invocation callback failed", request_id=invocation.request_id)


class RequestHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 with keep-alive: the runtime client (aws-lambda-cpp over curl) reuses one connection."""

    protocol_version = "HTTP/1.1"
    # headers and body go out as separate writes: with Nagle on, the client's delayed ACK stalls each reply ~40 ms
    disable_nagle_algorithm = True
    server: InitServer

    def log_message(self, format: str, *args: Any) -> None:
        return

    # -- helpers --

    def _body(self) -> bytes | None:
        """The request body (Content-Length or chunked); None after answering 413 when it is too large."""
        limit = self.server.environment.max_payload
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts: list[bytes] = []
            size = 0
            while True:
                line = self.rfile.readline(65537)
                chunk_size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if chunk_size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                parts.append(self.rfile.read(chunk_size))
                self.rfile.readline(65537)
                size += chunk_size
            body = b"".join(parts)
        else:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
        if len(body) > limit:
            self._reply(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                {"errorMessage": "Payload too large", "errorType": "RequestEntityTooLarge"},
            )
            return None
        return body

    def _reply(self, status: int, document: object = None, headers: dict[str, str] | None = None) -> None:
        body = b"" if document is None else (document if isinstance(document, bytes) else json.dumps(document).encode())
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)

    # -- routes --

    def do_GET(self) -> None:
        if self.path != protocol.NEXT_PATH:
            self._reply(HTTPStatus.NOT_FOUND, {"errorMessage": f"Unknown path {self.path}"})
            return
        invocation = self.server.environment.next_invocation()
        if invocation is None:
            self.close_connection = True
            self._reply(HTTPStatus.GONE, {"errorMessage": "Environment is shutting down"})
            return
        headers = {
            "Content-Type": "application/json",
            "Lambda-Runtime-Aws-Request-Id": invocation.request_id,
            "Lambda-Runtime-Deadline-Ms": str(invocation.deadline_ms),
            "Lambda-Runtime-Invoked-Function-Arn": invocation.invoked_function_arn,
        }
        if invocation.trace_id:
            headers["Lambda-Runtime-Trace-Id"] = invocation.trace_id
        self._reply(HTTPStatus.OK, invocation.payload, headers)

    def do_POST(self) -> None:
        environment = self.server.environment
        path = self.path
        if path == "/invoke":
            body = self._body()
            if body is None:
                return
            try:
                request = protocol.parse_invoke_request(body)
            except ValueError as exc:
                self._reply(HTTPStatus.BAD_REQUEST, {"errorMessage": str(exc)})
                return
            threading.Thread(
                target=environment.invoke, args=(request,), name=f"invoke-{request['invoke_id']}", daemon=True
            ).start()
            self._reply(HTTPStatus.OK, b"OK")
            return
        if path == protocol.INIT_ERROR_PATH:
            body = self._body()
            if body is None:
                return
            environment.init_error(body or self._error_from_header())
            self._reply(HTTPStatus.ACCEPTED, {"status": "OK"})
            return
        prefix = protocol.RUNTIME_API_PREFIX + "/invocation/"
        if path.startswith(prefix) and path.count("/") == 5:
            request_id, _, outcome = path[len(prefix) :].partition("/")
            if outcome in ("response", "error"):
                self._finish(request_id, outcome == "error")
                return
        self._reply(HTTPStatus.NOT_FOUND, {"errorMessage": f"Unknown path {path}"})

    def _error_from_header(self) -> bytes:
        error_type = self.headers.get(protocol.ERROR_TYPE_HEADER) or "Runtime.Unknown"
        body: bytes = protocol.error_bytes({"errorMessage": "", "errorType": error_type})
        return body

    def _finish(self, request_id: str, is_error: bool) -> None:
        environment = self.server.environment
        if self.headers.get("Transfer-Encoding", "").lower() != "chunked":
            length = int(self.headers.get("Content-Length") or 0)
            if length > environment.max_payload:
                self.rfile.read(length)
                document = {
                    "errorMessage": f"Response payload size ({length} bytes) exceeded maximum allowed payload "
                    f"size ({environment.max_payload} bytes).",
                    "errorType": "Function.ResponseSizeTooLarge",
                }
                environment.finish_invocation(request_id, protocol.error_bytes(document), is_error=True)
                self._reply(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, document)
                return
        body = self._body()
        if body is None:
            return
        if is_error and not body:
            body = self._error_from_header()
        if environment.finish_invocation(request_id, body, is_error=is_error):
            self._reply(HTTPStatus.ACCEPTED, {"status": "OK"})
        else:
            self._reply(
                HTTPStatus.BAD_REQUEST,
                {"errorMessage": f"Invalid request ID: {request_id}", "errorType": "InvalidRequestID"},
            )


class InitServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = False

    def __init__(self, environment: Environment) -> None:
        self.environment = environment
        super().__init__(("127.0.0.1", 0), RequestHandler)


def main() -> int:
    config = InitConfig.from_json(os.environ[CONFIG_VARIABLE])
    # die with the thread that started us (LocalStack's spawner thread); then make sure it had not died already
    set_parent_death_signal(signal.SIGTERM)
    if os.getppid() != config.parent_pid:
        log("parent already gone", expected=config.parent_pid, actual=os.getppid())
        return 1
    endpoint = config.variable("LOCALSTACK_RUNTIME_ENDPOINT", "")
    output = OutputCollector(echo=sys.stderr.buffer)
    environment = Environment(config, Upstream(endpoint), output)
    server = InitServer(environment)
    environment.port = server.server_address[1]
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        environment.shutdown(f"signal {signum}")
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    supervisor = threading.Thread(target=environment.supervise, name="supervisor", daemon=True)
    supervisor.start()
    with environment.cv:
        environment.request_start_locked()
    # the executor waits for this line (the first on our stdout) before it sends anything
    sys.stdout.write(f"port={environment.port}\n")
    sys.stdout.flush()
    log("listening", port=environment.port, handler=config.handler, runtime=config.runtime)
    while not stop.wait(PARENT_POLL_SECONDS):
        if os.getppid() != config.parent_pid:
            environment.shutdown("parent process died")
            break
    supervisor.join(timeout=2)
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
