"""The stack manager's own behaviour with throw-away local processes (no Kafka, MariaDB or LocalStack needed)."""

from __future__ import annotations

import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import load_module

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """A fresh copy of infra/stack.py whose logs and pid files live in a temporary folder."""
    monkeypatch.setenv("GAME_EVENTS_STACK_DIR", str(tmp_path))
    monkeypatch.setenv("STACK_START_TIMEOUT", "5")
    yield load_module("stack_under_test", ROOT / "infra" / "stack.py")
    del sys.modules["stack_under_test"]


def make_service(stack: ModuleType, script: str, port: int = 0, healthy: bool = False) -> object:
    class Fake(stack.Service):  # type: ignore[name-defined,misc]
        name = "fake"

        def command(self) -> tuple[list[str], dict[str, str]]:
            return ["sh", "-c", script], {"PATH": "/usr/bin:/bin"}

        def health(self) -> tuple[bool, str]:
            return healthy, "fake health"

    service = Fake()
    service.port = port
    return service


def test_a_service_that_exits_is_named_with_the_tail_of_its_log(stack: ModuleType) -> None:
    # Given a service whose process fails at once, explaining why on stderr
    service = make_service(stack, "echo 'config error: listeners is malformed' >&2; exit 3")

    # When it is started
    with pytest.raises(stack.StackError) as failure:
        service.start()  # type: ignore[attr-defined]

    # Then the error names the service, says it exited, and shows the reason from its log
    message = str(failure.value)
    assert message.startswith("fake failed to start: the process exited")
    assert "config error: listeners is malformed" in message


def test_a_service_that_never_becomes_healthy_times_out_with_its_log(stack: ModuleType) -> None:
    service = make_service(stack, "echo waiting-for-godot; exec sleep 60")
    try:
        with pytest.raises(stack.StackError) as failure:
            service.start()  # type: ignore[attr-defined]
        assert "not healthy after 5s (fake health)" in str(failure.value)
        assert "waiting-for-godot" in str(failure.value)
    finally:
        service.stop(timeout=5)  # type: ignore[attr-defined]
    assert not service.running()  # type: ignore[attr-defined]


def test_a_port_taken_by_another_program_is_reported_before_starting(stack: ModuleType) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        service = make_service(stack, "exit 0", port=listener.getsockname()[1])
        with pytest.raises(stack.StackError, match=r"already taken by another program"):
            service.start()  # type: ignore[attr-defined]


def test_stop_ends_the_whole_process_group(stack: ModuleType, tmp_path: Path) -> None:
    # Given a healthy service that has a child process of its own
    child_pid_file = tmp_path / "child.pid"
    service = make_service(
        stack,
        f"sleep 60 & echo $! > {child_pid_file}.tmp; mv {child_pid_file}.tmp {child_pid_file}; wait",
        healthy=True,
    )
    service.start()  # type: ignore[attr-defined]
    try:
        deadline = time.monotonic() + 5
        while not child_pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        child = int(child_pid_file.read_text())

        # When it is stopped
        service.stop(timeout=5)  # type: ignore[attr-defined]

        # Then neither it nor its child is left
        assert not service.running()  # type: ignore[attr-defined]
        assert not Path(f"/proc/{child}").exists() or "Z" in Path(f"/proc/{child}/stat").read_text().split()[2]
    finally:
        service.stop(timeout=5)  # type: ignore[attr-defined]
