"""The project's rules for docker-compose.yml and its Dockerfiles, as pure functions over the resolved project.

The resolved project is the JSON that tools/composecheck (compose-go) prints: the file validated against the
Compose Specification, interpolated and normalized (ports as objects with host_ip, volumes with type/source,
build contexts as absolute paths). Each function returns a list of problems, empty when the rule holds, so a
test can show every problem at once and the rules themselves can be tested on small bad examples.
"""

from __future__ import annotations

import configparser
import json
import re
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Service = Mapping[str, Any]
Services = Mapping[str, Service]

# An exact version: at least major.minor.patch (optionally a "v" and a variant suffix: 3.11.16-slim-bookworm).
_EXACT_VERSION = re.compile(r"^v?\d+\.\d+\.\d+([._+-][0-9A-Za-z._+-]+)?$")
_DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
_VARIABLE = re.compile(r"\$(\$|\{([^}]*)\}|([A-Za-z_][A-Za-z0-9_]*))")
_PYTHON = re.compile(r"^(.*/)?python(3(\.\d+)?)?$")
_SHELLS = {"sh", "bash", "/bin/sh", "/bin/bash", "/usr/bin/env"}


# --------------------------------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------------------------------
def image_pin_problem(ref: str) -> str | None:
    """Why an image reference is not pinned to an exact version or digest (None when it is)."""
    if _DIGEST.search(ref):
        return None
    name = ref.rsplit("/", 1)[-1]
    if ":" not in name:
        return f"{ref}: no tag (means latest); use an exact version such as name:1.2.3 or a digest"
    tag = name.rsplit(":", 1)[1]
    if not _EXACT_VERSION.match(tag):
        return f"{ref}: tag {tag!r} floats; use an exact version (major.minor.patch) or a digest"
    return None


def image_problems(services: Services) -> list[str]:
    """Every service names an image pinned exactly (for a built service, the tag its build is given)."""
    problems = []
    for name, service in sorted(services.items()):
        ref = service.get("image")
        if not ref:
            problems.append(f"service {name}: no image name (a built service needs one, with an exact tag)")
            continue
        problem = image_pin_problem(str(ref))
        if problem:
            problems.append(f"service {name}: {problem}")
    return problems


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str
    line: int


def dockerfile_instructions(text: str) -> list[Instruction]:
    """The instructions of a Dockerfile: keyword, arguments with continuation lines joined, first line number."""
    instructions: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if not pending:
            start = number
        if line.endswith("\\"):
            pending.append(line[:-1].strip())
            continue
        pending.append(line)
        joined = " ".join(part for part in pending if part)
        pending = []
        keyword, _, arguments = joined.partition(" ")
        instructions.append(Instruction(keyword.upper(), arguments.strip(), start))
    return instructions


def dockerfile_from_problems(text: str) -> list[str]:
    """Every FROM of a Dockerfile names a pinned image (or an earlier stage, or scratch)."""
    problems = []
    args: dict[str, str] = {}
    stages: set[str] = set()
    instructions = dockerfile_instructions(text)
    for ins in instructions:
        if ins.keyword == "ARG" and not any(i.keyword == "FROM" and i.line < ins.line for i in instructions):
            key, _, default = ins.arguments.partition("=")
            args[key.strip()] = default.strip().strip("\"'")
        if ins.keyword != "FROM":
            continue
        words = [w for w in ins.arguments.split() if not w.startswith("--")]
        if not words:
            problems.append(f"line {ins.line}: FROM without an image")
            continue
        ref = _VARIABLE.sub(lambda m: args.get(m.group(2) or m.group(3) or "", m.group(0)), words[0])
        if "$" in ref:
            problems.append(f"line {ins.line}: FROM {words[0]}: a variable without a pinned ARG default")
        elif ref.lower() not in stages and ref != "scratch":
            problem = image_pin_problem(ref)
            if problem:
                problems.append(f"line {ins.line}: FROM {problem}")
        if len(words) >= 3 and words[1].upper() == "AS":
            stages.add(words[2].lower())
    if not any(ins.keyword == "FROM" for ins in instructions):
        problems.append("no FROM instruction")
    return problems


def dockerfile_copy_problems(text: str, context: Path) -> list[str]:
    """Every COPY/ADD source taken from the build context exists there."""
    problems = []
    for ins in dockerfile_instructions(text):
        if ins.keyword not in ("COPY", "ADD"):
            continue
        words = list(json.loads(ins.arguments)) if ins.arguments.startswith("[") else shlex.split(ins.arguments)
        if any(w.startswith("--from=") for w in words):
            continue
        paths = [w for w in words if not w.startswith("--")][:-1]
        for source in paths:
            if re.match(r"^[a-z]+://", source):
                continue
            if not _matches(context, source):
                problems.append(f"line {ins.line}: {ins.keyword} {source}: not in the build context {context}")
    return problems


def _matches(context: Path, pattern: str) -> bool:
    pattern = pattern.lstrip("/").rstrip("/") or "."
    if not any(ch in pattern for ch in "*?["):
        return (context / pattern).exists()
    return any(True for _ in context.glob(pattern))


def dockerfile_command(text: str) -> list[str]:
    """The exec-form argv an image runs by default: ENTRYPOINT + CMD of the last stage ([] if shell form)."""
    entrypoint: list[str] = []
    cmd: list[str] = []
    for ins in dockerfile_instructions(text):
        if ins.keyword == "FROM":
            entrypoint, cmd = [], []
        elif ins.keyword in ("CMD", "ENTRYPOINT") and ins.arguments.startswith("["):
            argv = [str(a) for a in json.loads(ins.arguments)]
            if ins.keyword == "CMD":
                cmd = argv
            else:
                entrypoint, cmd = argv, []
    return entrypoint + cmd


def dockerfile_user(text: str) -> str | None:
    """The user the last stage runs as (None: root by default)."""
    user: str | None = None
    for ins in dockerfile_instructions(text):
        if ins.keyword == "FROM":
            user = None
        elif ins.keyword == "USER":
            user = ins.arguments
    return user


# --------------------------------------------------------------------------------------------------------------
# Exposure: ports, the Docker socket, privileges
# --------------------------------------------------------------------------------------------------------------
def port_problems(services: Services, contract: Mapping[str, int]) -> list[str]:
    """Published ports bind 127.0.0.1 only; each contract port is published by its service as the same number."""
    problems = []
    for name, service in sorted(services.items()):
        for port in service.get("ports") or []:
            if port.get("host_ip") != "127.0.0.1":
                problems.append(
                    f"service {name}: port {port.get('target')} published on {port.get('host_ip') or 'every interface'}"
                    " (bind it to 127.0.0.1: '127.0.0.1:HOST:CONTAINER')"
                )
    for name, number in sorted(contract.items()):
        published = {
            (str(p.get("published")), int(p.get("target", 0))) for p in (services.get(name) or {}).get("ports") or []
        }
        if (str(number), number) not in published:
            problems.append(f"service {name}: contract port {number} not published as 127.0.0.1:{number}:{number}")
    return problems


def socket_problems(services: Services) -> list[str]:
    """No service mounts the Docker socket or runs privileged."""
    problems = []
    for name, service in sorted(services.items()):
        for volume in service.get("volumes") or []:
            if "docker.sock" in str(volume.get("source", "")) or "docker.sock" in str(volume.get("target", "")):
                problems.append(f"service {name}: mounts the Docker socket ({volume.get('source')})")
        if service.get("privileged"):
            problems.append(f"service {name}: privileged")
    return problems


# --------------------------------------------------------------------------------------------------------------
# Start-up order and health
# --------------------------------------------------------------------------------------------------------------
def is_one_shot(service: Service) -> bool:
    return str(service.get("restart", "no")) == "no"


def health_problems(services: Services) -> list[str]:
    """Long-running services have a healthcheck; every dependency waits on a condition that means ready."""
    problems = []
    for name, service in sorted(services.items()):
        test = (service.get("healthcheck") or {}).get("test") or []
        if not is_one_shot(service) and (not test or test[0] == "NONE"):
            problems.append(f"service {name}: no healthcheck")
        for dependency, spec in sorted((service.get("depends_on") or {}).items()):
            condition = spec.get("condition")
            target = services.get(dependency)
            if target is None:
                if spec.get("required", True):
                    problems.append(f"service {name}: depends on unknown service {dependency}")
                continue
            wanted = "service_completed_successfully" if is_one_shot(target) else "service_healthy"
            if condition != wanted:
                problems.append(f"service {name}: depends_on {dependency} with {condition!r}; use {wanted!r}")
    return problems


# --------------------------------------------------------------------------------------------------------------
# Interpolation
# --------------------------------------------------------------------------------------------------------------
def variables(raw: str) -> dict[str, str | None]:
    """Each variable a Compose file interpolates, with its default (None when it has none)."""
    found: dict[str, str | None] = {}
    for match in _VARIABLE.finditer(raw):
        if match.group(1) == "$":
            continue
        if match.group(3):
            found[match.group(3)] = None
            continue
        body = match.group(2)
        name = re.match(r"[A-Za-z_][A-Za-z0-9_]*", body)
        key = name.group(0) if name else body
        rest = body[len(key) :]
        default = rest[2:] if rest.startswith(":-") else rest[1:] if rest.startswith("-") else None
        found[key] = default
    return found


def interpolation_problems(raw: str) -> list[str]:
    """Every variable has a default, so `docker compose up` works without a .env file."""
    return [
        f"${{{name}}} has no default: write ${{{name}:-value}} and document the value in .env.example"
        for name, default in sorted(variables(raw).items())
        if default is None
    ]


def dotenv_keys(text: str) -> dict[str, str]:
    """KEY=value lines of a .env file (comments and blank lines skipped; surrounding quotes removed)."""
    keys = {}
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            keys[key.strip()] = value.strip().strip("\"'")
    return keys


def env_example_problems(raw: str, example: str) -> list[str]:
    """.env.example documents exactly the variables the Compose file reads, with the same defaults."""
    used = variables(raw)
    documented = dotenv_keys(example)
    problems = [
        f"{name} is read by docker-compose.yml but not documented in .env.example"
        for name in sorted(set(used) - set(documented))
    ]
    problems += [
        f"{name} is in .env.example but docker-compose.yml does not read it"
        for name in sorted(set(documented) - set(used))
    ]
    problems += [
        f"{name}: .env.example says {documented[name]!r}, docker-compose.yml defaults to {used[name]!r}"
        for name in sorted(set(used) & set(documented))
        if used[name] is not None and documented[name] != used[name]
    ]
    return problems


# --------------------------------------------------------------------------------------------------------------
# What a service runs must exist
# --------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Reference:
    kind: str  # "module" or "file"
    name: str


def argv_references(argv: Iterable[str]) -> list[Reference]:
    """The project modules and files an argv runs: `python -m pkg.mod`, `python x.py`, `bash x.sh`, `./x.sh`."""
    args = list(argv)
    if args[:1] in (["CMD"], ["CMD-SHELL"]):
        args = shlex.split(" ".join(args[1:])) if args[0] == "CMD-SHELL" else args[1:]
    refs = []
    for index, word in enumerate(args):
        previous = args[index - 1] if index else ""
        if previous == "-m" and index >= 2 and _PYTHON.match(args[index - 2]):
            refs.append(Reference("module", word))
        elif (
            word.endswith((".py", ".sh"))
            and not word.startswith("/")
            and "$" not in word
            and (_PYTHON.match(previous) or previous in _SHELLS or index == 0 or word.startswith("./"))
        ):
            refs.append(Reference("file", word))
    return refs


def reference_problems(
    where: str, argv: Iterable[str], base: Path, third_party: Mapping[str, tuple[Path, str]]
) -> list[str]:
    """The modules and files an argv runs exist under base (the build context the image copies).

    third_party maps a top-level module that comes from a dependency (e.g. localstack) to the requirements file
    that must pin it and the distribution name (e.g. localstack-core).
    """
    problems = []
    for ref in argv_references(argv):
        if ref.kind == "file":
            if not (base / ref.name).is_file():
                problems.append(f"{where}: runs {ref.name}, which is not a file under {base}")
            continue
        top = ref.name.split(".")[0]
        path = base.joinpath(*ref.name.split("."))
        if (base / top).exists():
            if not (path.with_suffix(".py").is_file() or (path / "__main__.py").is_file()):
                problems.append(f"{where}: runs module {ref.name}, but {path}.py does not exist")
        elif top in third_party:
            requirements, distribution = third_party[top]
            pins = requirements.read_text() if requirements.is_file() else ""
            if not re.search(rf"^{re.escape(distribution)}(\[[^\]]*\])?==", pins, re.MULTILINE | re.IGNORECASE):
                problems.append(f"{where}: runs module {ref.name}; {requirements} must pin {distribution}==...")
        else:
            problems.append(f"{where}: runs module {ref.name}, found neither under {base} nor as a known dependency")
    return problems


def python_snippet_problems(where: str, argv: Iterable[str]) -> list[str]:
    """Every `python -c CODE` of an argv (command or healthcheck) is valid Python."""
    args = list(argv)
    problems = []
    for index, word in enumerate(args[:-1]):
        if word == "-c" and index and _PYTHON.match(args[index - 1]):
            try:
                compile(args[index + 1], f"<{where}>", "exec")
            except SyntaxError as exc:
                problems.append(f"{where}: python -c code does not compile: {exc.msg} (line {exc.lineno})")
    return problems


# --------------------------------------------------------------------------------------------------------------
# Same configuration as the native stack
# --------------------------------------------------------------------------------------------------------------
# Broker settings that name hosts, ports or paths: they differ by design between the host and a container.
KAFKA_PLACEMENT_KEYS = frozenset(
    {
        "listeners",
        "advertised.listeners",
        "controller.quorum.voters",
        "controller.quorum.bootstrap.servers",
        "listener.security.protocol.map",
        "inter.broker.listener.name",
        "log.dirs",
    }
)


def kafka_env_name(key: str) -> str:
    """The apache/kafka image's environment variable for a server.properties key."""
    return "KAFKA_" + key.replace("_", "__").replace("-", "___").replace(".", "_").upper()


def properties(text: str) -> dict[str, str]:
    result = {}
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith(("#", "!")) and "=" in line:
            key, value = line.split("=", 1)
            result[key.strip()] = value.strip()
    return result


def kafka_parity_problems(server_properties: str, environment: Mapping[str, str | None]) -> list[str]:
    """Every broker setting of the native server.properties has the same value in the kafka service."""
    problems = []
    for key, value in sorted(properties(server_properties).items()):
        if key in KAFKA_PLACEMENT_KEYS:
            continue
        name = kafka_env_name(key)
        if name not in environment:
            problems.append(f"{key}={value} (infra/kafka/server.properties) is missing: set {name}: {value}")
        elif str(environment[name]) != value:
            problems.append(f"{key}: server.properties says {value}, kafka service {name}={environment[name]}")
    return problems


# MariaDB options that place a private native instance (paths, socket, interface, port): a container has its own.
MYSQL_PLACEMENT_KEYS = frozenset({"datadir", "socket", "pid_file", "log_error", "bind_address", "port"})
# MariaDB option -> the MySQL 8.4 option that carries the same intent (documented in the .cnf file).
MYSQL_EQUIVALENTS = {"innodb_log_file_size": "innodb_redo_log_capacity"}


def _mysql_options(text: str, sections: tuple[str, ...]) -> dict[str, str]:
    parser = configparser.ConfigParser(allow_no_value=True, interpolation=None, strict=False)
    parser.optionxform = lambda name: name.replace("-", "_").lower()  # type: ignore[assignment,method-assign]
    parser.read_string(text)
    options: dict[str, str] = {}
    for section in sections:
        if parser.has_section(section):
            for key, value in parser.items(section):
                options[key] = "" if value is None else value.strip().strip("'\"")
    return options


def mysql_parity_problems(native_cnf: str, compose_cnf: str) -> list[str]:
    """The compose MySQL sets every server option of the native MariaDB's my.cnf, with the same value."""
    native = _mysql_options(native_cnf, ("mariadbd", "mysqld", "server"))
    compose = _mysql_options(compose_cnf, ("mysqld",))
    problems = []
    for key, value in sorted(native.items()):
        if key in MYSQL_PLACEMENT_KEYS:
            continue
        if key in MYSQL_EQUIVALENTS:
            if MYSQL_EQUIVALENTS[key] not in compose:
                problems.append(f"{key} (native) has no MySQL counterpart {MYSQL_EQUIVALENTS[key]} in the compose .cnf")
            continue
        if key not in compose:
            problems.append(f"{key} = {value} (infra/mariadb/my.cnf) is missing from the compose .cnf")
        elif compose[key] != value:
            problems.append(f"{key}: native {value!r}, compose {compose[key]!r}")
    return problems
