"""Offline checks of docker-compose.yml: builds tools/composecheck (compose-go) once and loads the project."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
COMPOSECHECK_SOURCE = ROOT / "tools" / "composecheck"
COMPOSECHECK = ROOT / ".stack" / "bin" / "composecheck"

RunCheck = Callable[..., "subprocess.CompletedProcess[str]"]


@pytest.fixture(scope="session")
def composecheck() -> Path:
    """tools/composecheck built into .stack/bin (go build caches, so this is quick after the first time)."""
    go = shutil.which("go")
    if go is None:
        pytest.fail("the Go toolchain is needed to build tools/composecheck: install Go 1.24+ and put `go` on PATH")
    proc = subprocess.run(
        [go, "build", "-o", str(COMPOSECHECK), "."],
        cwd=COMPOSECHECK_SOURCE,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    if proc.returncode != 0:
        pytest.fail(f"go build of tools/composecheck failed:\n{proc.stdout}{proc.stderr}")
    return COMPOSECHECK


@pytest.fixture(scope="session")
def run_check(composecheck: Path) -> RunCheck:
    """Runs composecheck with the given arguments (never raises on a non-zero exit)."""

    def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(composecheck), *map(str, args)], capture_output=True, text=True, check=False, timeout=120
        )

    return run


@pytest.fixture(scope="session")
def project(run_check: RunCheck) -> dict[str, Any]:
    """docker-compose.yml resolved with every profile enabled and no .env: what a fresh checkout gets."""
    proc = run_check("-f", COMPOSE_FILE)
    assert proc.returncode == 0, f"docker-compose.yml is not a valid Compose file:\n{proc.stderr}"
    resolved: dict[str, Any] = json.loads(proc.stdout)
    return resolved


@pytest.fixture(scope="session")
def services(project: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = project["services"]
    return found
