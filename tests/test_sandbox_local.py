"""The local bubblewrap sandbox, run for real: outcomes, limits, output caps, set-up errors,
and the hostile programs of tests/hostile/ with host shared memory watched while they run.

Every jail test runs in both of the jail's modes: `root` (bwrap started by root, no user
namespace, the launcher drops to a jail uid) and `unprivileged` (bwrap started by an ordinary
uid, in a user namespace). Run as root, the suite starts the unprivileged jail as a fresh uid
through setpriv (tests/jail_as_user.py); run as an ordinary user, the root mode is skipped.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from swarm.protocol import ExecOutput
from swarm.sandbox import Sandbox, SandboxUnavailable, make_sandbox, resolve_kind
from swarm.sandbox.capture import OutputCapture, clip
from swarm.sandbox.limits import ExecLimits
from swarm.sandbox.local import LocalSandbox

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap")

LIMITS = ExecLimits(
    timeout_s=3, cpu_s=2, memory_mb=256, processes=16, file_mb=8, workdir_mb=16,
    workdir_files=500, output_bytes=2000,
)  # fmt: skip
REPO = Path(__file__).resolve().parent.parent
HOSTILE = sorted(Path(__file__).with_name("hostile").glob("*.py"))
# Host shared memory a jail may add: its tmpfs, plus room for whatever else runs on the machine.
SHMEM_SLACK = (LIMITS.workdir_mb + 64) << 20


class UserBox:
    """The jail as an unprivileged uid runs it: a tests/jail_as_user.py process under setpriv."""

    def __init__(self, proc: subprocess.Popen[str], uid: int) -> None:
        self.proc, self.uid = proc, uid

    def run(self, code: str, timeout_s: float) -> ExecOutput:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"code": code, "timeout_s": timeout_s}) + "\n")
        self.proc.stdin.flush()
        return ExecOutput(**json.loads(self.proc.stdout.readline()))

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=20)


def _as_uid(uid: int) -> list[str]:
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--"]


def _start_user_box(uid: int) -> UserBox:
    """A uid with no account and no groups (nothing to create or clean up); skips where no
    Python here can be run by it or bubblewrap cannot make a user namespace."""
    if shutil.which("setpriv") is None:
        pytest.skip("needs setpriv (util-linux) to run the jail as an unprivileged uid")
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "PYTHONDONTWRITEBYTECODE": "1"}
    # This Python may sit where the uid cannot read (a pyenv under /root): the system one works.
    for python in dict.fromkeys([os.path.realpath(sys.executable), "/usr/bin/python3"]):
        check = [*_as_uid(uid), python, "-c", "import swarm.sandbox.local"]
        if subprocess.run(check, env=env, cwd="/", capture_output=True).returncode == 0:
            break
    else:
        pytest.skip(f"no Python here that uid {uid} can run with {REPO} importable")
    limits = json.dumps({k: getattr(LIMITS, k) for k in LIMITS.__dataclass_fields__})
    helper = [python, str(REPO / "tests" / "jail_as_user.py"), limits]
    proc = subprocess.Popen(
        [*_as_uid(uid), *helper], env=env, cwd="/", text=True,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    first = proc.stdout.readline().strip()
    if first != "ready":
        proc.kill()
        pytest.skip(f"the unprivileged jail cannot run here: {first or 'no answer'}")
    return UserBox(proc, uid)


@pytest.fixture(scope="module", params=["root", "unprivileged"])
def box(request: pytest.FixtureRequest) -> Iterator[Sandbox]:
    as_root = os.geteuid() == 0
    if request.param == "root":
        if not as_root:
            pytest.skip("the root mode needs the tests to run as root")
        yield LocalSandbox(LIMITS)
    elif as_root:
        user_box = _start_user_box(1_400_000_000 + os.getpid() % 100_000)
        yield user_box
        user_box.close()
    else:
        yield LocalSandbox(LIMITS)  # this process is itself an ordinary uid


def test_runs_python_and_returns_its_output(box: Sandbox) -> None:
    out = box.run("import sys\nprint('hi')\nprint('warn', file=sys.stderr)", 3)
    assert (out.stdout, out.stderr, out.error) == ("hi\n", "warn\n", "")
    assert 0 < out.duration_s < 3


def test_stdlib_and_work_dir_are_usable(box: Sandbox) -> None:
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


def test_exit_and_quit_work_as_in_a_script(box: Sandbox) -> None:
    assert box.run("exit(3)", 3).error == "exit status 3"
    assert box.run("import sys; sys.exit(0)", 3).error == ""


def test_uncaught_exception_shows_traceback_without_the_launcher(box: Sandbox) -> None:
    out = box.run("def f():\n    return 1 / 0\nf()", 3)
    assert out.error == "exit status 1 (ZeroDivisionError: division by zero)"
    assert 'File "/work/main.py", line 2, in f' in out.stderr
    assert "<string>" not in out.stderr


def test_syntax_error_is_reported(box: Sandbox) -> None:
    out = box.run("def f(:\n", 3)
    assert out.error.startswith("exit status 1 (SyntaxError")


def test_each_run_starts_fresh(box: Sandbox) -> None:
    box.run("open('left.txt', 'w').write('x')", 3)
    assert box.run("import os; print(os.listdir('.'))", 3).stdout == "['main.py']\n"


def test_wall_clock_timeout_is_the_smaller_of_request_and_limit(box: Sandbox) -> None:
    out = box.run("import time\nprint('started', flush=True)\ntime.sleep(30)", 0.5)
    assert out.error == "timeout after 0.5s"
    assert out.stdout == "started\n"  # what came before the kill is kept
    assert box.run("import time; time.sleep(30)", 99).error == "timeout after 3s"


def test_output_is_cut_in_the_middle_with_a_marker(box: Sandbox) -> None:
    out = box.run("for i in range(2000): print(f'line {i}')", 3)
    assert out.error == ""
    assert out.stdout.startswith("line 0\n")
    assert out.stdout.endswith("line 1999\n")
    assert "…[truncated " in out.stdout
    assert len(out.stdout.encode()) < LIMITS.output_bytes + 100


def test_stdin_is_empty(box: Sandbox) -> None:
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


def test_runs_as_an_unprivileged_user_with_no_privilege(box: Sandbox) -> None:
    code = (
        "import os\nprint(os.getuid(), os.geteuid())\n"
        "status = dict(l.split(':', 1) for l in open('/proc/self/status'))\n"
        "print(*(status[k].strip() for k in ('CapEff', 'CapPrm', 'CapAmb', 'NoNewPrivs')))"
    )
    out = box.run(code, 3)
    ids, caps = out.stdout.splitlines()
    uid, euid = (int(x) for x in ids.split())
    if isinstance(box, LocalSandbox) and os.geteuid() == 0:
        assert uid == euid and uid >= 1_000_000  # dropped to the jail uid, never root
    else:
        assert uid == euid == getattr(box, "uid", os.getuid())  # the caller's own uid
    assert caps.split() == ["0000000000000000"] * 3 + ["1"]  # the lent capability is gone


# ------------------------------------------------------------------ hostile code, both modes


def _shmem() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("Shmem:"):
                return int(line.split()[1]) << 10
    raise AssertionError("no Shmem in /proc/meminfo")


class ShmemPeak:
    """Samples the host's shared memory (tmpfs, memfd, System V) every few ms while a run goes."""

    def __init__(self) -> None:
        self.baseline = self.peak = _shmem()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._done.wait(0.005):
            self.peak = max(self.peak, _shmem())

    def stop(self) -> int:
        self._done.set()
        self._thread.join()
        return self.peak - self.baseline


@pytest.mark.parametrize("program", HOSTILE, ids=[p.stem for p in HOSTILE])
def test_hostile_code_is_contained_and_host_memory_unchanged(program: Path, box: Sandbox) -> None:
    expected = re.search(r"^# expect: (.*)$", program.read_text(), re.M)
    assert expected, f"{program.name} needs an '# expect: <regex>' line"
    watch = ShmemPeak()
    out = box.run(program.read_text(), LIMITS.timeout_s)
    grown = watch.stop()
    shown = out.stdout + out.stderr + out.error
    assert "ESCAPED" not in shown, shown
    assert re.search(expected.group(1), out.error), f"error {out.error!r}, stderr {out.stderr!r}"
    assert grown < SHMEM_SLACK, f"host shared memory grew {grown >> 20} MB during the run"
    assert _shmem() - watch.baseline < SHMEM_SLACK
    assert box.run("print(1)", 3).stdout == "1\n"  # the jail still works


def test_work_dir_and_dev_shm_share_one_bounded_budget(box: Sandbox) -> None:
    code = (
        "import os\nn = 0\ntry:\n"
        "    for n in range(100_000): open(f'/dev/shm/f{n}' if n % 2 else f'f{n}', 'w').close()\n"
        "except OSError as exc:\n    print(n, exc.strerror)\n"
        "print(sorted(os.listdir('.'))[:2])"
    )
    out = box.run(code, 3)
    count, _, rest = out.stdout.partition(" ")
    assert LIMITS.workdir_files - 10 <= int(count) <= LIMITS.workdir_files
    assert rest.startswith("No space left on device")


def test_seccomp_filter_refuses_an_unknown_architecture() -> None:
    from swarm.sandbox.seccomp import filter_for

    assert len(filter_for("x86_64")) % 8 == 0 and len(filter_for("aarch64")) % 8 == 0
    with pytest.raises(SandboxUnavailable, match="knows x86_64, aarch64, not riscv64"):
        filter_for("riscv64")
