"""The native stack: Kafka, MariaDB and LocalStack as local processes on 127.0.0.1, without Docker.

    python infra/stack.py install            # apt packages, Maven jars, virtualenvs, Lambda runtimes
    python infra/stack.py up                 # install what is missing, start everything, wait until healthy
    python infra/stack.py status             # each service, its pid and health
    python infra/stack.py down               # stop everything (data is kept)
    python infra/stack.py clean              # stop and delete all data
    python infra/stack.py start|stop|restart SERVICE...
    python infra/stack.py run-tests -- CMD   # start what is not running, run CMD, stop what it started

Everything generated lives under ``.stack/`` (ignored by git): jars, data directories, logs (``.stack/logs``),
pid files. Every service listens on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "infra" / "kafka"))

from topics import ensure_topics  # noqa: E402


class StackSettings(BaseSettings):
    """Ports, paths and credentials of the native stack; defaults follow the contract (§6)."""

    model_config = SettingsConfigDict(extra="ignore")

    stack_dir: Path = Field(default=ROOT / ".stack", alias="GAME_EVENTS_STACK_DIR")
    python: str = Field(default="python3.11", alias="STACK_PYTHON")
    kafka_port: int = Field(default=9092, alias="KAFKA_PORT")
    kafka_controller_port: int = Field(default=9093, alias="KAFKA_CONTROLLER_PORT")
    kafka_heap: str = Field(default="1g", alias="KAFKA_HEAP")
    mysql_port: int = Field(default=3306, alias="MYSQL_PORT")
    mysql_database: str = Field(default="analytics", alias="MYSQL_DATABASE")
    mysql_user: str = Field(default="analytics", alias="MYSQL_USER")
    mysql_password: str = Field(default="analytics", alias="MYSQL_PASSWORD")
    localstack_port: int = Field(default=4566, alias="LOCALSTACK_PORT")
    start_timeout: float = Field(default=120.0, alias="STACK_START_TIMEOUT")


S = StackSettings()
LOGS = S.stack_dir / "logs"
RUN = S.stack_dir / "run"
LOCALSTACK_VENV = ROOT / ".venv-localstack"
LAMBDA_RUNTIMES = S.stack_dir / "lambda-runtimes"


class StackError(RuntimeError):
    """A service could not be installed or started; the message says which and why."""


def say(message: str) -> None:
    print(f"[stack] {message}", flush=True)


def run(cmd: Sequence[str | Path], **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run a command, raising StackError with its output when it fails."""
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, check=False, **kwargs)  # type: ignore[call-overload]
    if proc.returncode != 0:
        output = (proc.stdout + proc.stderr).strip()[-3000:]
        raise StackError(f"command failed ({proc.returncode}): {' '.join(map(str, cmd))}\n{output}")
    return proc  # type: ignore[no-any-return]


def show(path: Path) -> str:
    """A path as the user would type it: relative to the project when inside it."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def tail(path: Path, lines: int = 25) -> str:
    if not path.exists():
        return f"(no log at {path})"
    with path.open("rb") as fh:
        fh.seek(0, os.SEEK_END)
        fh.seek(max(0, fh.tell() - 64 * 1024))
        text = fh.read().decode("utf-8", "replace")
    return "\n".join(text.splitlines()[-lines:])


def files_digest(*paths: Path) -> str:
    """A digest of files (or of every file under directories) that an install step depends on."""
    digest = hashlib.sha256()
    for path in paths:
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            if "__pycache__" in file.parts or ".egg-info" in str(file):
                continue
            digest.update(str(file.relative_to(ROOT)).encode())
            digest.update(file.read_bytes())
    return digest.hexdigest()


@dataclass
class Stamp:
    """Marks an install step done for a given digest of its inputs, so `install` is cheap when nothing changed."""

    path: Path

    def valid(self, digest: str) -> bool:
        return self.path.exists() and self.path.read_text() == digest

    def write(self, digest: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(digest)


class Service:
    """A long-running local process with a pid file, a log file and a health check."""

    name = ""
    port = 0
    extra_ports: tuple[int, ...] = ()  # further ports the service binds (checked free before a start)
    optional = False  # a stopped optional service does not make `status` fail

    @property
    def pid_file(self) -> Path:
        return RUN / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return LOGS / f"{self.name}.log"

    # -- to implement ---------------------------------------------------------------------------------------------
    def install(self) -> None:
        raise NotImplementedError

    def prepare(self) -> None:
        """First-start work before the process starts (format storage, initialise the data directory)."""

    def command(self) -> tuple[list[str], dict[str, str]]:
        raise NotImplementedError

    def health(self) -> tuple[bool, str]:
        raise NotImplementedError

    def after_start(self) -> None:
        """Idempotent set-up once healthy (topics, schema, users)."""

    # -- process management ---------------------------------------------------------------------------------------
    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return pid
        # A zombie or a recycled pid of another program is not our service.
        try:
            state = Path(f"/proc/{pid}/stat").read_text().split(") ")[-1].split()[0]
        except OSError:
            return None
        return None if state == "Z" else pid

    def running(self) -> bool:
        return self.pid() is not None

    def start(self) -> None:
        if self.running():
            healthy, detail = self.health()
            if healthy:
                say(f"{self.name}: already running (pid {self.pid()}), {detail}")
                self.after_start()
                return
            say(f"{self.name}: running (pid {self.pid()}) but not healthy yet ({detail}); waiting")
        else:
            for port in (self.port, *self.extra_ports):
                if port and port_open(port):
                    raise StackError(
                        f"{self.name}: port 127.0.0.1:{port} is already taken by another program "
                        f"(not started by this stack). Stop it, or set the port variable (see docs/operations.md)."
                    )
            self.prepare()
            cmd, env = self.command()
            LOGS.mkdir(parents=True, exist_ok=True)
            RUN.mkdir(parents=True, exist_ok=True)
            with self.log_file.open("ab") as log:
                log.write(f"\n===== {time.strftime('%Y-%m-%dT%H:%M:%S')} starting {self.name}\n".encode())
                log.flush()
                proc = subprocess.Popen(
                    cmd,
                    cwd=ROOT,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # survives `make up`; stopped by `make down`
                )
            self.pid_file.write_text(str(proc.pid))
            say(f"{self.name}: started (pid {proc.pid}), log {show(self.log_file)}")
        self.wait_healthy()
        self.after_start()

    def wait_healthy(self) -> None:
        started = time.monotonic()
        detail = "no answer yet"
        while time.monotonic() - started < S.start_timeout:
            if not self.running():
                raise StackError(
                    f"{self.name} failed to start: the process exited. Last lines of {show(self.log_file)}:\n"
                    f"{tail(self.log_file)}"
                )
            healthy, detail = self.health()
            if healthy:
                say(f"{self.name}: healthy after {time.monotonic() - started:.1f}s ({detail})")
                return
            time.sleep(0.5)
        raise StackError(
            f"{self.name} failed to start: not healthy after {S.start_timeout:.0f}s ({detail}). "
            f"Last lines of {show(self.log_file)}:\n{tail(self.log_file)}"
        )

    def stop(self, timeout: float = 60.0) -> None:
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            say(f"{self.name}: not running")
            return
        say(f"{self.name}: stopping (pid {pid})")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self._group_alive(pid):
            time.sleep(0.2)
        if self._group_alive(pid):
            say(f"{self.name}: did not stop within {timeout:.0f}s; killing it")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)
        say(f"{self.name}: stopped")

    @staticmethod
    def _group_alive(pgid: int) -> bool:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        # Reap our own child if we started it in this process (tests restart services).
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pgid, os.WNOHANG)
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().split(") ")[-1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                return True
        return False

    def clean(self) -> None:
        raise NotImplementedError


class Kafka(Service):
    name = "kafka"

    def __init__(self) -> None:
        self.port = S.kafka_port
        self.extra_ports = (S.kafka_controller_port,)
        self.jars = S.stack_dir / "jars" / "kafka"
        self.home = S.stack_dir / "kafka"
        self.data = self.home / "data"
        self.config = self.home / "server.properties"

    def install(self) -> None:
        pom = ROOT / "infra" / "kafka" / "pom.xml"
        stamp = Stamp(self.jars / ".stamp")
        digest = files_digest(pom)
        if stamp.valid(digest):
            return
        if shutil.which("mvn") is None or shutil.which("java") is None:
            raise StackError("kafka: Java 17+ and Maven are needed to fetch the broker jars (apt-get install maven)")
        say("kafka: resolving broker jars with Maven")
        shutil.rmtree(self.jars, ignore_errors=True)
        run(["mvn", "-q", "-B", "-f", pom, "dependency:copy-dependencies", f"-DoutputDirectory={self.jars}"])
        stamp.write(digest)

    def render_config(self) -> None:
        template = (ROOT / "infra" / "kafka" / "server.properties").read_text()
        template = template.replace("127.0.0.1:9092", f"127.0.0.1:{S.kafka_port}")
        template = template.replace("127.0.0.1:9093", f"127.0.0.1:{S.kafka_controller_port}")
        self.home.mkdir(parents=True, exist_ok=True)
        self.config.write_text(f"{template}\n# Added by infra/stack.py\nlog.dirs={self.data}\n")

    def java(self, main: str, *args: str) -> list[str]:
        return [
            "java",
            "-Xms256m",
            f"-Xmx{S.kafka_heap}",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={ROOT / 'infra' / 'kafka' / 'log4j2.properties'}",
            "-cp",
            f"{self.jars}/*",
            main,
            *args,
        ]

    def prepare(self) -> None:
        self.render_config()
        if (self.data / "meta.properties").exists():
            return
        cluster_id = "-"
        while cluster_id.startswith("-"):  # like Kafka's own Uuid.randomUuid: never a leading dash
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        say(f"kafka: formatting storage (cluster id {cluster_id})")
        run(self.java("kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}", "-c", str(self.config)))

    def command(self) -> tuple[list[str], dict[str, str]]:
        return self.java("kafka.Kafka", str(self.config)), dict(os.environ)

    def health(self) -> tuple[bool, str]:
        if not port_open(S.kafka_port):
            return False, f"port {S.kafka_port} closed"
        from confluent_kafka.admin import AdminClient  # noqa: PLC0415 - only when Kafka is up

        try:
            metadata = AdminClient({"bootstrap.servers": self.bootstrap}).list_topics(timeout=3)
        except Exception as exc:
            return False, f"metadata request failed: {exc}"
        return True, f"{len(metadata.brokers)} broker, {len(metadata.topics)} topics"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{S.kafka_port}"

    def after_start(self) -> None:
        created = ensure_topics(self.bootstrap)
        say(f"kafka: topics ready{' (created ' + ', '.join(created) + ')' if created else ''}")

    def clean(self) -> None:
        shutil.rmtree(self.home, ignore_errors=True)


class MariaDB(Service):
    name = "mariadb"

    def __init__(self) -> None:
        self.port = S.mysql_port
        self.home = S.stack_dir / "mariadb"
        self.data = self.home / "data"
        self.config = self.home / "my.cnf"

    @property
    def socket_path(self) -> Path:
        return self.home / "run" / "mysqld.sock"

    def install(self) -> None:
        if shutil.which("mariadbd") and shutil.which("mariadb"):
            return
        if os.geteuid() != 0:
            raise StackError(
                "mariadb: the server is not installed. Run as root, or install it yourself: "
                "sudo apt-get install -y mariadb-server mariadb-client"
            )
        if shutil.which("apt-get") is None:
            raise StackError(
                "mariadb: the server is not installed and this machine has no apt-get. Install MariaDB 10.11+ "
                "(the mariadbd server and the mariadb client) with your package manager, then run again."
            )
        say("mariadb: installing mariadb-server and mariadb-client from Debian packages")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        # Keep the package from starting the system service: we run a private instance.
        policy = Path("/usr/sbin/policy-rc.d")
        created_policy = not policy.exists()
        if created_policy:
            policy.write_text("#!/bin/sh\nexit 101\n")
            policy.chmod(0o755)
        try:
            run(["apt-get", "update", "-qq"], env=env)
            run(
                [
                    "apt-get",
                    "install",
                    "-y",
                    "-qq",
                    "--no-install-recommends",
                    "mariadb-server",
                    "mariadb-client",
                ],
                env=env,
            )
        finally:
            if created_policy:
                policy.unlink(missing_ok=True)

    def render_config(self) -> None:
        template = (ROOT / "infra" / "mariadb" / "my.cnf").read_text()
        rendered = (
            template.replace("@STACK@", str(self.home))
            .replace("@LOGS@", str(LOGS))
            .replace("@PORT@", str(S.mysql_port))
        )
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "run").mkdir(exist_ok=True)
        self.config.write_text(rendered)

    def user_args(self) -> list[str]:
        # mariadbd refuses to run as root unless told to; the data directory belongs to whoever runs the stack.
        return ["--user=root"] if os.geteuid() == 0 else []

    def prepare(self) -> None:
        self.render_config()
        if len(str(self.socket_path)) > 100:
            raise StackError(f"mariadb: socket path too long for a unix socket: {self.socket_path}")
        if (self.data / "mysql").is_dir():
            return
        say("mariadb: initialising the data directory")
        self.data.mkdir(parents=True, exist_ok=True)
        run(
            [
                "mariadb-install-db",
                f"--defaults-file={self.config}",
                *self.user_args(),
                "--auth-root-authentication-method=socket",
                "--skip-test-db",
            ]
        )

    def command(self) -> tuple[list[str], dict[str, str]]:
        return ["mariadbd", f"--defaults-file={self.config}", *self.user_args()], dict(os.environ)

    def admin(self, sql: str | None = None, *, stdin: str | None = None, database: str | None = None) -> str:
        """Run SQL as the administrator over the private socket (unix_socket authentication)."""
        cmd: list[str | Path] = [
            "mariadb",
            f"--defaults-file={self.config}",
            "--batch",
            "--skip-column-names",
        ]
        if database:
            cmd.append(database)
        if sql is not None:
            cmd += ["-e", sql]
        return run(cmd, input=stdin).stdout

    def health(self) -> tuple[bool, str]:
        if not self.socket_path.exists():
            return False, "socket not there yet"
        try:
            version = self.admin("SELECT VERSION()").strip()
        except StackError as exc:
            return False, str(exc).splitlines()[-1]
        return True, f"MariaDB {version}"

    def after_start(self) -> None:
        database = S.mysql_database
        self.admin(f"CREATE DATABASE IF NOT EXISTS `{database}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
        schema = ROOT / "db" / "schema.sql"
        if schema.exists():
            self.admin(stdin=schema.read_text(), database=database)
        # Credentials go in through session variables set on stdin, never on a command line or in a file.
        setup = (
            f"SET @app_user = {sql_quote(S.mysql_user)}, @app_password = {sql_quote(S.mysql_password)}, "
            f"@app_host = '%';\n{(ROOT / 'db' / 'app_user.sql').read_text()}"
        )
        self.admin(stdin=setup, database=database)
        say(f"mariadb: database `{database}` ready, schema applied, user `{S.mysql_user}` granted")

    def clean(self) -> None:
        shutil.rmtree(self.home, ignore_errors=True)


def sql_quote(value: str) -> str:
    """Quote a string literal for the mariadb client's input (used only for the admin's own set-up script)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class LocalStack(Service):
    name = "localstack"

    def __init__(self) -> None:
        self.port = S.localstack_port
        self.home = S.stack_dir / "localstack"
        self.plugin = ROOT / "infra" / "localstack"

    @property
    def python(self) -> Path:
        return LOCALSTACK_VENV / "bin" / "python"

    def install(self) -> None:
        requirements = self.plugin / "requirements.txt"
        stamp = Stamp(LOCALSTACK_VENV / ".stamp")
        digest = files_digest(requirements, self.plugin / "pyproject.toml", self.plugin / "src")
        if not stamp.valid(digest):
            say("localstack: building .venv-localstack (localstack-core and the host Lambda executor)")
            if not self.python.exists():
                run([S.python, "-m", "venv", LOCALSTACK_VENV])
                run([self.python, "-m", "pip", "install", "--quiet", "--upgrade", "pip"])
            run([self.python, "-m", "pip", "install", "--quiet", "-r", requirements])
            run(
                [
                    self.python,
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--no-deps",
                    "--force-reinstall",
                    self.plugin,
                ]
            )
            stamp.write(digest)
        self.install_runtimes()

    def install_runtimes(self) -> None:
        """Lambda runtime environments (awslambdaric + boto3 per Python version) for the host executor."""
        script = self.plugin / "install_runtimes.sh"
        if not script.exists():
            return
        stamp = Stamp(LAMBDA_RUNTIMES / ".stamp")
        digest = files_digest(script, *sorted(self.plugin.glob("runtime*.txt")))
        if stamp.valid(digest):
            return
        say(f"localstack: building Lambda runtime environments in {show(LAMBDA_RUNTIMES)}")
        run(["bash", script, LAMBDA_RUNTIMES])
        stamp.write(digest)

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LOCALSTACK_", "LAMBDA_"))}
        env_file = self.plugin / "localstack.env"
        for raw in env_file.read_text().splitlines():
            line = raw.strip()
            if line and not line.startswith("#") and "=" in line:
                key, value = line.split("=", 1)
                env[key.strip()] = value.strip()
        self.home.mkdir(parents=True, exist_ok=True)
        env.update(
            GATEWAY_LISTEN=f"127.0.0.1:{S.localstack_port}",
            HOST_LAMBDA_RUNTIMES_DIR=str(LAMBDA_RUNTIMES),
            HOST_LAMBDA_WORK_DIR=str(self.home / "lambda"),
            # LocalStack's own folders (cache, tmp, logs); it would otherwise write into its site-packages.
            FILESYSTEM_ROOT=str(self.home / "fs"),
            # Snapshots of LocalStack's state (infra/localstack/src/localstack_persistence): kept across down/up.
            LOCALSTACK_STATE_DIR=str(self.home / "state"),
            PATH=f"{LOCALSTACK_VENV / 'bin'}:{os.environ.get('PATH', '')}",
        )
        return env

    def command(self) -> tuple[list[str], dict[str, str]]:
        return [str(self.python), "-m", "localstack.runtime.main"], self.env()

    def health(self) -> tuple[bool, str]:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{S.localstack_port}/_localstack/health", timeout=3
            ) as response:
                body = json.load(response)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            return False, f"health endpoint: {exc}"
        services = body.get("services", {})
        wanted = [s.strip() for s in self.env().get("SERVICES", "").split(",") if s.strip()]
        bad = {s: services.get(s, "missing") for s in wanted if services.get(s) not in ("available", "running")}
        if bad:
            return False, f"services not ready: {bad}"
        return True, f"LocalStack {body.get('version', '?')}: {', '.join(wanted)}"

    def clean(self) -> None:
        shutil.rmtree(self.home, ignore_errors=True)


class SparkJob(Service):
    """The streaming job (spark/job.py) as a background process: `stack.py start spark`. Not part of a plain `up`:
    the tests start their own job with a short trigger; `make demo` and `make spark-start` start this one."""

    name = "spark"
    optional = True

    def __init__(self) -> None:
        self.port = 0
        self.jars = S.stack_dir / "jars" / "spark"

    def install(self) -> None:
        pom = ROOT / "spark" / "pom.xml"
        stamp = Stamp(self.jars / ".stamp")
        digest = files_digest(pom)
        if stamp.valid(digest):
            return
        if shutil.which("mvn") is None or shutil.which("java") is None:
            raise StackError("spark: Java 17+ and Maven are needed to fetch the job's jars (apt-get install maven)")
        say("spark: resolving the Kafka connector and JDBC driver jars with Maven")
        shutil.rmtree(self.jars, ignore_errors=True)
        run(["mvn", "-q", "-B", "-f", pom, "dependency:copy-dependencies", f"-DoutputDirectory={self.jars}"])
        stamp.write(digest)

    @property
    def checkpoint(self) -> Path:
        return Path(
            os.environ.get("CHECKPOINT_LOCATION", S.stack_dir / "spark" / "checkpoints" / "game-events-metrics")
        )

    def command(self) -> tuple[list[str], dict[str, str]]:
        # The driver, its UI (4040) and block manager listen on the loopback address only.
        env = dict(os.environ, SPARK_LOCAL_IP="127.0.0.1", SPARK_JARS_DIR=str(self.jars))
        return [sys.executable, "-m", "spark.job"], env

    def last_commit(self) -> tuple[int, float] | None:
        """(batch id, commit time) of the newest batch in the checkpoint's commit log."""
        commits = [p for p in (self.checkpoint / "commits").glob("[0-9]*") if p.name.isdigit()]
        if not commits:
            return None
        newest = max(commits, key=lambda p: int(p.name))
        return int(newest.name), newest.stat().st_mtime

    def health(self) -> tuple[bool, str]:
        if not (self.checkpoint / "metadata").exists():
            return False, "query not started yet (no checkpoint)"
        last = self.last_commit()
        if last is None:
            return True, "query started, no batch committed yet"
        batch, at = last
        return True, f"last batch {batch} committed {time.time() - at:.0f}s ago"

    def clean(self) -> None:
        shutil.rmtree(S.stack_dir / "spark", ignore_errors=True)


SERVICES: dict[str, Service] = {s.name: s for s in (Kafka(), MariaDB(), LocalStack())}
JOBS: dict[str, Service] = {s.name: s for s in (SparkJob(),)}


def selected(names: Sequence[str]) -> list[Service]:
    """The named services and jobs, or by default the services (the Spark job starts only when named)."""
    known = {**SERVICES, **JOBS}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise StackError(f"unknown service(s) {unknown}; known: {', '.join(known)}")
    return [known[n] for n in names] if names else list(SERVICES.values())


def install(services: Sequence[Service]) -> None:
    for service in services:
        service.install()


def up(services: Sequence[Service]) -> None:
    started = time.monotonic()
    install(services)
    failures: list[str] = []
    for service in services:
        try:
            service.start()
        except StackError as exc:
            failures.append(str(exc))
    if failures:
        raise StackError("\n\n".join(failures))
    endpoints = {
        "kafka": f"Kafka 127.0.0.1:{S.kafka_port}",
        "mariadb": f"MariaDB 127.0.0.1:{S.mysql_port}/{S.mysql_database}",
        "localstack": f"LocalStack http://127.0.0.1:{S.localstack_port}",
        "spark": "Spark job (UI http://127.0.0.1:4040)",
    }
    say(f"up in {time.monotonic() - started:.1f}s: {', '.join(endpoints[s.name] for s in services)}")


def down(services: Sequence[Service]) -> None:
    # Reverse order: LocalStack (and its Lambda environments) first, then the stores.
    for service in reversed(services):
        service.stop()


def status(services: Sequence[Service]) -> bool:
    all_ok = True
    print(f"{'service':<12} {'state':<10} {'pid':<8} health")
    for service in services:
        pid = service.pid()
        if pid is None:
            state, detail = "stopped", ""
            all_ok = all_ok and service.optional
        else:
            healthy, detail = service.health()
            state = "healthy" if healthy else "unhealthy"
            all_ok = all_ok and healthy
        print(f"{service.name:<12} {state:<10} {pid or '-':<8} {detail}")
    print(f"logs: {LOGS}")
    return all_ok


def restart(services: Sequence[Service]) -> None:
    down(services)
    up(services)


def clean(services: Sequence[Service]) -> None:
    down(services)
    for service in services:
        service.clean()
    say(f"data deleted: {', '.join(s.name for s in services)}")


@contextlib.contextmanager
def services_running(services: Sequence[Service]) -> Iterator[None]:
    """Start the services that are not running; on exit stop exactly those, even when the body failed."""
    ours = [s for s in services if not s.running()]
    try:
        up(services)
        yield
    finally:
        down(ours)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="stack", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="action", required=True)
    for action in ("install", "up", "down", "status", "clean", "start", "stop", "restart"):
        p = sub.add_parser(action)
        p.add_argument("services", nargs="*", help=f"default: all ({', '.join(SERVICES)})")
    p = sub.add_parser("run-tests", help="start what is not running, run a command, stop what was started")
    p.add_argument("cmd", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)

    actions: dict[str, Callable[[list[Service]], None]] = {
        "install": install,
        "up": up,
        "start": up,
        "down": down,
        "stop": down,
        "restart": restart,
        "clean": clean,
    }
    # Stopping, cleaning and showing everything includes the Spark job (stopped first: it writes to the others).
    everything = [*SERVICES.values(), *JOBS.values()]
    try:
        if args.action == "status":
            return 0 if status(selected(args.services) if args.services else everything) else 1
        if args.action in ("install", "down", "clean") and not args.services:
            actions[args.action](everything)
            return 0
        if args.action == "run-tests":
            cmd = [c for c in args.cmd if c != "--"] or ["pytest"]
            with services_running(selected([])):
                return subprocess.call(cmd, cwd=ROOT)
        actions[args.action](selected(args.services))
    except StackError as exc:
        print(f"[stack] ERROR: {exc}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
