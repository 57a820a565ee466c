"""What differs between Linux, macOS and Windows, in one place: stop signals, file locks,
child processes, and where model-written code can run.

Everything a worker or the CLI imports must import on Windows too, so the POSIX-only
modules (fcntl) are imported only when a POSIX-only call is made, and Windows-only ones
(msvcrt) only on Windows. tests/test_portable.py imports the worker and CLI path with
the POSIX-only modules and calls made unavailable.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

WINDOWS = sys.platform == "win32"
# The local jail is bubblewrap: Linux namespaces. Elsewhere code runs on an executor
# (`swarm executor`, on Linux, or with E2B) through the shared exec queue.
LOCAL_JAIL = sys.platform.startswith("linux")

# SIGTERM: `kill`, systemd, Docker; SIGINT: Ctrl+C (and a Windows service manager's stop,
# which sends Ctrl+C to a console program); SIGBREAK: Ctrl+Break on Windows, which is also
# how `swarm up` asks its worker processes there to stop.
_STOP_SIGNALS = ("SIGTERM", "SIGINT", "SIGBREAK")


def stop_signals() -> tuple[signal.Signals, ...]:
    """The signals that mean "finish or release, then exit 0" on this system."""
    return tuple(getattr(signal, name) for name in _STOP_SIGNALS if hasattr(signal, name))


def on_stop(handler: Callable[[], None]) -> None:
    """Call `handler` (from the main thread) on each stop signal this system has."""
    for number in stop_signals():
        signal.signal(number, lambda *_: handler())


class Locked(RuntimeError):
    """Another process holds the lock."""


@contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `path` (created) until the block ends; Locked if taken."""
    with open(path, "a+") as fh:
        _lock(fh)
        yield


def _lock(fh: IO[str]) -> None:
    # Imported here, not at the top: fcntl does not exist on Windows, msvcrt only there.
    if sys.platform == "win32":
        import msvcrt

        fh.seek(0)
        try:
            msvcrt.locking(fh.fileno(), msvcrt.LK_NBLCK, 1)  # released when the file closes
        except OSError:
            raise Locked(str(fh.name)) from None
    else:
        import fcntl

        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released when the file closes
        except BlockingIOError:
            raise Locked(str(fh.name)) from None


def child_options() -> dict[str, Any]:
    """Popen options for a child that `ask_to_stop` can stop politely."""
    if sys.platform == "win32":  # (not WINDOWS: mypy narrows on sys.platform only)
        # Its own process group, so Ctrl+Break can be sent to it alone.
        return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}
    return {}


def ask_to_stop(proc: subprocess.Popen[Any]) -> None:
    """The polite stop: SIGTERM, or Ctrl+Break on Windows (where SIGTERM is TerminateProcess,
    which would leave the child no chance to release its tasks)."""
    if sys.platform == "win32":
        proc.send_signal(signal.CTRL_BREAK_EVENT)
    else:
        proc.send_signal(signal.SIGTERM)


def executor_can_run_here(env: Mapping[str, str] = os.environ) -> bool:
    """Whether `swarm executor` can run code on this machine: the local jail on Linux, E2B
    (with a key) on macOS. RQ's workers do not run on Windows."""
    if LOCAL_JAIL:
        return True
    return not WINDOWS and bool(env.get("E2B_API_KEY"))
