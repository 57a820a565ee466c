"""The local bubblewrap sandbox, run for real: outcomes, limits, output caps, set-up errors."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest

from swarm.sandbox import SandboxUnavailable, make_sandbox, resolve_kind
from swarm.sandbox.capture import OutputCapture, clip
from swarm.sandbox.limits import ExecLimits
from swarm.sandbox.local import LocalSandbox

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap")

LIMITS = ExecLimits(
    timeout_s=3, cpu_s=2, memory_mb=256, processes=16, file_mb=8, workdir_mb=16, output_bytes=2000
)


@pytest.fixture(scope="module")
def box() -> LocalSandbox:
    return LocalSandbox(LIMITS)


def test_runs_python_and_returns_its_output(box: LocalSandbox) -> None:
    out = box.run("import sys\nprint('hi')\nprint('warn', file=sys.stderr)", 3)
    assert (out.stdout, out.stderr, out.error) == ("hi\n", "warn\n", "")
    assert 0 < out.duration_s < 3


def test_stdlib_and_work_dir_are_usable(box: LocalSandbox) -> None:
    code = (
        "import json, os, sqlite3, tempfile, decimal, ctypes\n"
        "open('a.txt', 'w').write('x')\n"
        "with tempfile.NamedTemporaryFile() as f: pass\n"
        "print(os.getcwd(), os.listdir('.'), json.dumps([1]))"
    )
    out = box.run(code, 3)
    assert out.error == ""
    assert out.stdout.startswith("/work ['")
    assert "a.txt" in out.stdout


def test_exit_and_quit_work_as_in_a_script(box: LocalSandbox) -> None:
    assert box.run("exit(3)", 3).error == "exit status 3"
    assert box.run("import sys; sys.exit(0)", 3).error == ""


def test_uncaught_exception_shows_traceback_without_the_launcher(box: LocalSandbox) -> None:
    out = box.run("def f():\n    return 1 / 0\nf()", 3)
    assert out.error == "exit status 1 (ZeroDivisionError: division by zero)"
    assert 'File "/work/main.py", line 2, in f' in out.stderr
    assert "<string>" not in out.stderr


def test_syntax_error_is_reported(box: LocalSandbox) -> None:
    out = box.run("def f(:\n", 3)
    assert out.error.startswith("exit status 1 (SyntaxError")


def test_each_run_starts_fresh(box: LocalSandbox) -> None:
    box.run("open('left.txt', 'w').write('x')", 3)
    assert box.run("import os; print(os.listdir('.'))", 3).stdout == "['main.py']\n"


def test_wall_clock_timeout_is_the_smaller_of_request_and_limit(box: LocalSandbox) -> None:
    out = box.run("import time\nprint('started', flush=True)\ntime.sleep(30)", 0.5)
    assert out.error == "timeout after 0.5s"
    assert out.stdout == "started\n"  # what came before the kill is kept
    assert box.run("import time; time.sleep(30)", 99).error == "timeout after 3s"


def test_output_is_cut_in_the_middle_with_a_marker(box: LocalSandbox) -> None:
    out = box.run("for i in range(2000): print(f'line {i}')", 3)
    assert out.error == ""
    assert out.stdout.startswith("line 0\n")
    assert out.stdout.endswith("line 1999\n")
    assert "…[truncated " in out.stdout
    assert len(out.stdout.encode()) < LIMITS.output_bytes + 100


def test_stdin_is_empty(box: LocalSandbox) -> None:
    out = box.run("print(input())", 3)
    assert "EOFError" in out.error


def test_limits_from_env_and_wall_s() -> None:
    limits = ExecLimits.from_env({"SWARM_EXEC_TIMEOUT_S": "2.5", "SWARM_EXEC_MEMORY_MB": "64"})
    assert (limits.timeout_s, limits.memory_mb, limits.cpu_s) == (2.5, 64, ExecLimits().cpu_s)
    assert limits.wall_s(None) == 2.5 and limits.wall_s(1) == 1 and limits.wall_s(10) == 2.5
    with pytest.raises(ValueError, match="SWARM_EXEC_CPU_S"):
        ExecLimits.from_env({"SWARM_EXEC_CPU_S": "lots"})


def test_capture_keeps_head_and_tail_in_bounded_memory() -> None:
    capture = OutputCapture(1000)
    for _ in range(10_000):
        capture.feed(b"x" * 100)
    capture.feed(b"THE END")
    text = capture.text()
    assert text.endswith("THE END")
    assert f"[truncated {capture.total - 1000} bytes]" in text
    assert len(capture._tail) <= 8192  # bounded, not a growing buffer
    assert clip("short", 1000) == "short"


def test_missing_bwrap_says_how_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SandboxUnavailable, match="apt-get install bubblewrap"):
        LocalSandbox(LIMITS)


def test_namespace_failure_explains_the_sysctl(tmp_path: Path) -> None:
    # User namespaces cannot be switched off inside a test run, so this one failure path uses a
    # stand-in bwrap that answers as bwrap does on a kernel without them.
    stub = tmp_path / "bwrap"
    stub.write_text(
        "#!/bin/sh\n"
        '[ "$1" = --version ] && { echo "bubblewrap 0.8.0"; exit 0; }\n'
        "echo 'bwrap: No permissions to creating new namespace, likely because the kernel "
        "does not allow non-privileged user namespaces.' >&2\nexit 1\n"
    )
    stub.chmod(stub.stat().st_mode | stat.S_IXUSR)
    with pytest.raises(SandboxUnavailable, match=r"kernel\.unprivileged_userns_clone=1"):
        LocalSandbox(LIMITS, bwrap=str(stub))


def test_make_sandbox_picks_by_kind_and_key() -> None:
    assert resolve_kind("auto", {}) == "local"
    assert resolve_kind("auto", {"E2B_API_KEY": "k"}) == "e2b"
    assert make_sandbox("local", LIMITS, {}).name == "local"
    none = make_sandbox("none", LIMITS, {})
    assert "disabled" in none.run("print(1)", 1).error
    with pytest.raises(ValueError, match="unknown sandbox"):
        make_sandbox("docker", LIMITS, {})
    with pytest.raises(SandboxUnavailable, match="E2B_API_KEY"):
        make_sandbox("e2b", LIMITS, {})


def test_runs_as_an_unprivileged_user(box: LocalSandbox) -> None:
    out = box.run("import os; print(os.getuid(), os.geteuid())", 3)
    uid, euid = (int(x) for x in out.stdout.split())
    if os.geteuid() == 0:
        assert uid == euid and uid >= 1_000_000  # dropped to the jail uid, never root
    else:
        assert uid == os.getuid()  # the caller's own uid, inside a user namespace
