"""Shared test set-up: tier markers by folder, paths, and the sample events as fixtures."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
TIERS = {"unit": "unit", "integration": "integration", "e2e": "e2e", "compose": "compose"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Each test carries the marker of its folder (tests/unit -> unit, ...), so `-m unit` selects a tier."""
    for item in items:
        parts = Path(str(item.fspath)).relative_to(ROOT / "tests").parts
        if parts and parts[0] in TIERS:
            item.add_marker(getattr(pytest.mark, TIERS[parts[0]]))


def load_module(name: str, path: Path) -> ModuleType:
    """Load a script that is not in a package (infra/stack.py) as module `name`, registered in sys.modules."""
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def contract_event(**fields: Any) -> dict[str, Any]:
    """The contract's example event (§1) with `fields` replaced; a field set to ... is removed."""
    base: dict[str, Any] = {
        "user_id": "123",
        "event_type": "click",
        "timestamp": "2023-10-27T10:00:00Z",
        "game_id": "456",
        "payload": {"button_id": "789"},
    }
    base.update(fields)
    return {k: v for k, v in base.items() if v is not ...}


def load_event(relative_path: str) -> dict[str, Any]:
    """A sample event from events/ (they double as fixtures): load_event("events/scheduled.json")."""
    data: dict[str, Any] = json.loads((ROOT / relative_path).read_text())
    return data


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT
