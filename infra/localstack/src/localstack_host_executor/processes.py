"""Process helpers: parent-death signals and process-group signalling (Linux).

``PR_SET_PDEATHSIG`` fires when the *thread* that forked the child exits, not only when the parent process dies, so
every child whose lifetime depends on it must be forked from a thread that lives as long as its process: the
executor uses one spawner thread per LocalStack process, the init one supervisor thread.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import sys

PR_SET_PDEATHSIG = 1

_libc: ctypes.CDLL | None = None
if sys.platform.startswith("linux"):
    _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def set_parent_death_signal(signum: int) -> bool:
    """Ask the kernel to send ``signum`` to this process when its parent (thread) dies. False where unsupported."""
    if _libc is None:
        return False
    return int(_libc.prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0)) == 0


def kill_on_parent_death() -> None:
    """``preexec_fn`` for children that must not outlive the forking thread (async-signal-safe enough: one call)."""
    if _libc is not None:
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def signal_group(pgid: int, signum: int) -> bool:
    """Send ``signum`` to a process group; False when the group is already gone."""
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False
    return True


def signal_process(pid: int, signum: int) -> bool:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signum)
        return True
    return False


def peak_rss_mb(pid: int) -> int | None:
    """Peak resident memory (``VmHWM``) of a live process in MB, or None."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return max(1, round(int(line.split()[1]) / 1024))
    except (OSError, ValueError, IndexError):
        return None
    return None
