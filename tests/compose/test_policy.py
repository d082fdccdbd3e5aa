"""The compose rules themselves, on small good and bad examples: each rule can fail."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.compose import policy
from tests.compose.conftest import COMPOSECHECK_SOURCE, RunCheck


@pytest.mark.parametrize(
    "ref",
    [
        "apache/kafka:4.1.1",
        "mysql:8.4.11",
        "python:3.11.16-slim-bookworm",
        "game-events-init:0.1.0",
        f"x@sha256:{'a' * 64}",
    ],
)
def test_exact_versions_and_digests_are_pinned(ref: str) -> None:
    assert policy.image_pin_problem(ref) is None


@pytest.mark.parametrize(
    "ref", ["mysql", "mysql:latest", "mysql:8", "mysql:8.4", "python:3.11-slim", "localhost:5000/app", "x:lts"]
)
def test_floating_references_are_not_pinned(ref: str) -> None:
    assert policy.image_pin_problem(ref)


def test_a_service_without_an_image_name_is_reported() -> None:
    problems = policy.image_problems({"app": {"build": {"context": "."}}, "db": {"image": "mysql:8.4"}})

    assert len(problems) == 2


def test_dockerfile_from_lines_are_checked_through_args_and_stages() -> None:
    good = "ARG BASE=python:3.11.16-slim-bookworm\nFROM ${BASE} AS build\nFROM build\nFROM scratch\n"
    bad = "FROM python:3.11 AS build\nFROM --platform=linux/amd64 eclipse-temurin:21-jre\nARG X\nFROM $X\n"

    assert policy.dockerfile_from_problems(good) == []
    problems = policy.dockerfile_from_problems(bad)
    assert [p.split(":")[0] for p in problems] == ["line 1", "line 2", "line 4"]


def test_dockerfile_without_from_is_reported() -> None:
    assert policy.dockerfile_from_problems("# nothing\nRUN true\n") == ["no FROM instruction"]


def test_dockerfile_copy_sources_must_be_in_the_context(tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "main.py").write_text("")
    (tmp_path / "requirements.txt").write_text("")
    dockerfile = (
        "FROM python:3.11.16-slim-bookworm AS base\n"
        "COPY --chown=1000:1000 requirements.txt app/*.py /app/\n"
        'COPY ["missing.txt", "/app/"]\n'
        "COPY --from=base /usr/bin/true /true\n"
        "ADD nothere/ \\\n    /dest/\n"
    )

    problems = policy.dockerfile_copy_problems(dockerfile, tmp_path)

    assert len(problems) == 2
    assert "missing.txt" in problems[0]
    assert problems[1].startswith("line 5: ADD nothere/")


def test_dockerfile_command_and_user_come_from_the_last_stage() -> None:
    text = 'FROM a:1.0.0 AS x\nUSER app\nCMD ["x"]\nFROM b:1.0.0\nENTRYPOINT ["python", "-m"]\nCMD ["spark.job"]\n'

    assert policy.dockerfile_command(text) == ["python", "-m", "spark.job"]
    assert policy.dockerfile_user(text) is None


def test_ports_on_every_interface_or_off_contract_are_reported() -> None:
    services: dict[str, Any] = {
        "kafka": {"ports": [{"host_ip": "127.0.0.1", "published": "19092", "target": 9092}]},
        "mysql": {"ports": [{"published": "3306", "target": 3306}]},
    }

    problems = policy.port_problems(services, {"kafka": 9092, "mysql": 3306, "localstack": 4566})

    assert len(problems) == 3
    assert "every interface" in problems[0]
    assert "kafka: contract port 9092" in problems[1]
    assert "localstack: contract port 4566" in problems[2]


def test_docker_socket_and_privileged_are_reported() -> None:
    services: dict[str, Any] = {
        "a": {"volumes": [{"type": "bind", "source": "/var/run/docker.sock", "target": "/var/run/docker.sock"}]},
        "b": {"privileged": True},
        "c": {"volumes": [{"type": "volume", "source": "data", "target": "/data"}]},
    }

    assert len(policy.socket_problems(services)) == 2


def test_missing_healthchecks_and_weak_conditions_are_reported() -> None:
    services: dict[str, Any] = {
        "db": {"restart": "unless-stopped"},
        "init": {"restart": "no", "depends_on": {"db": {"condition": "service_started"}}},
        "app": {
            "restart": "always",
            "healthcheck": {"test": ["CMD", "true"]},
            "depends_on": {"init": {"condition": "service_healthy"}, "opt": {"required": False}},
        },
    }

    problems = policy.health_problems(services)

    assert problems == [
        "service app: depends_on init with 'service_healthy'; use 'service_completed_successfully'",
        "service db: no healthcheck",
        "service init: depends_on db with 'service_started'; use 'service_healthy'",
    ]


def test_variables_without_defaults_are_reported() -> None:
    raw = "a: ${A:-x}\nb: ${B}\nc: $C\nd: $${NOT_A_VARIABLE}\ne: ${E-}\nf: ${F:?required}\n"

    assert policy.variables(raw) == {"A": "x", "B": None, "C": None, "E": "", "F": None}
    assert len(policy.interpolation_problems(raw)) == 3


def test_env_example_must_match_the_variables_and_their_defaults() -> None:
    raw = "a: ${A:-1}\nb: ${B:-two words}\n"

    assert policy.env_example_problems(raw, '# doc\nA=1\nB="two words"\n') == []
    problems = policy.env_example_problems(raw, "A=2\nC=3\n")
    assert problems == [
        "B is read by docker-compose.yml but not documented in .env.example",
        "C is in .env.example but docker-compose.yml does not read it",
        "A: .env.example says '2', docker-compose.yml defaults to '1'",
    ]


def test_argv_references_find_modules_and_scripts() -> None:
    refs = policy.argv_references(["python", "-m", "spark.job", "--x", "y.py"])
    shell = policy.argv_references(["CMD-SHELL", "bash infra/init/run.sh && python3 -c 'print(1)'"])
    absolute = policy.argv_references(["/opt/kafka/bin/kafka-topics.sh", "--list"])

    assert refs == [policy.Reference("module", "spark.job")]
    assert shell == [policy.Reference("file", "infra/init/run.sh")]
    assert absolute == []


def test_commands_that_run_missing_code_are_reported(tmp_path: Path) -> None:
    (tmp_path / "spark").mkdir()
    (tmp_path / "spark" / "job.py").write_text("")
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("localstack-core[runtime]==4.9.2\n")
    third_party = {"localstack": (requirements, "localstack-core"), "other": (requirements, "other-dist")}

    def problems(*argv: str) -> list[str]:
        return policy.reference_problems("svc", argv, tmp_path, third_party)

    assert problems("python", "-m", "spark.job") == []
    assert problems("python", "-m", "localstack.runtime.main") == []
    assert len(problems("python", "-m", "spark.jobs")) == 1
    assert len(problems("python", "-m", "other.main")) == 1
    assert len(problems("python", "-m", "unknown")) == 1
    assert len(problems("bash", "run.sh")) == 1


def test_python_snippets_that_do_not_compile_are_reported() -> None:
    good = ["CMD", "python", "-c", "import sys; raise SystemExit(0)"]
    bad = ["CMD", "python3", "-c", "import sys; raise SystemExit(any(x for x in)"]

    assert policy.python_snippet_problems("svc", good) == []
    assert len(policy.python_snippet_problems("svc", bad)) == 1
    assert policy.python_snippet_problems("svc", ["bash", "-c", "not python ("]) == []


def test_kafka_settings_that_differ_from_server_properties_are_reported() -> None:
    native = "listeners=PLAINTEXT://127.0.0.1:9092\nauto.create.topics.enable=false\nnum.partitions=3\nlog.dirs=/x\n"
    env = {"KAFKA_AUTO_CREATE_TOPICS_ENABLE": "true", "KAFKA_LISTENERS": "PLAINTEXT://:9092"}

    problems = policy.kafka_parity_problems(native, env)

    assert problems == [
        "auto.create.topics.enable: server.properties says false, kafka service KAFKA_AUTO_CREATE_TOPICS_ENABLE=true",
        "num.partitions=3 (infra/kafka/server.properties) is missing: set KAFKA_NUM_PARTITIONS: 3",
    ]
    assert policy.kafka_env_name("a.b_c-d") == "KAFKA_A_B__C___D"


def test_mysql_options_that_differ_from_my_cnf_are_reported() -> None:
    native = (
        "[mariadbd]\ndatadir = /x\nskip-name-resolve\ncharacter-set-server = utf8mb4\n"
        "max_connections = 200\ninnodb_log_file_size = 256M\n[client]\nport = 1\n"
    )
    compose = "[mysqld]\nskip_name_resolve\ncharacter_set_server = latin1\n"

    problems = policy.mysql_parity_problems(native, compose)

    assert problems == [
        "character_set_server: native 'utf8mb4', compose 'latin1'",
        "innodb_log_file_size (native) has no MySQL counterpart innodb_redo_log_capacity in the compose .cnf",
        "max_connections = 200 (infra/mariadb/my.cnf) is missing from the compose .cnf",
    ]


# --------------------------------------------------------------------------------------------------------------
# composecheck (compose-go) on small bad files
# --------------------------------------------------------------------------------------------------------------
GOOD = """
services:
  db:
    image: mysql:8.4.11
    healthcheck:
      test: ["CMD", "true"]
  app:
    image: app:1.0.0
    depends_on:
      db:
        condition: service_healthy
"""


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("db:\n        condition", "nope:\n        condition"), 'undefined service "nope"'),
        (("    image: app:1.0.0", "    image: app:1.0.0\n    restart_policy: always"), "restart_policy"),
        (('test: ["CMD", "true"]', 'test: ["RUN", "true"]'), "healthcheck.test must start"),
        (("    image: app:1.0.0", "    image: app:1.0.0\n    volumes: [data:/data]"), "undefined volume data"),
    ],
)
def test_composecheck_rejects_invalid_files(
    run_check: RunCheck, tmp_path: Path, change: tuple[str, str], message: str
) -> None:
    good = tmp_path / "good.yml"
    good.write_text(GOOD)
    bad = tmp_path / "compose.yml"
    bad.write_text(GOOD.replace(*change))

    assert run_check("-f", good).returncode == 0
    proc = run_check("-f", bad)
    assert proc.returncode == 1
    assert message in proc.stderr


def test_composecheck_reports_missing_build_files(run_check: RunCheck, tmp_path: Path) -> None:
    compose = tmp_path / "compose.yml"
    compose.write_text("services:\n  app:\n    build: ./app\n    image: app:1.0.0\n    env_file: app.env\n")
    (tmp_path / "app.env").write_text("")

    proc = run_check("-f", compose)

    assert proc.returncode == 1
    assert "build context" in proc.stderr


def test_composecheck_own_go_tests_pass(composecheck: Path) -> None:  # the fixture checks that Go is there
    """tools/composecheck's Go tests (valid project, env files, schema, depends_on, missing files)."""
    proc = subprocess.run(
        ["go", "test", "./..."],
        cwd=COMPOSECHECK_SOURCE,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )

    assert proc.returncode == 0, proc.stdout + proc.stderr
