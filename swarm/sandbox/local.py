"""LocalSandbox: model-written Python in a bubblewrap jail on this machine.

The jail has no network, a read-only view of the system and of this Python, a fresh tmpfs
work dir, an empty environment, and no view of other processes. The launcher (_launcher.py)
applies rlimits before the snippet runs; this side enforces the wall clock, kills the whole
process group and reads output incrementally within a cap.

When the executor runs as root, bwrap runs without a user namespace (root's jail could not
read a Python under /root otherwise) and the launcher drops to an unprivileged uid: under a
user namespace mapped onto root, RLIMIT_NPROC is not enforced and a fork bomb would escape.

In both modes the jail's bounds hold against code that tries to go around them: a seccomp
filter (seccomp.py) refuses nested user namespaces, memfds and System V shared memory; the
launcher mounts the only writable filesystem (/work and /dev/shm share one tmpfs, bounded in
bytes and in files) with a capability bwrap lends it and gives back before the snippet runs;
the root and /dev are read-only; IPC is unshared.
"""

from __future__ import annotations

import contextlib
import os
import re
import selectors
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources

from swarm.protocol import ExecOutput
from swarm.sandbox.base import SandboxUnavailable
from swarm.sandbox.capture import OutputCapture
from swarm.sandbox.limits import ExecLimits
from swarm.sandbox.seccomp import filter_for

WORKDIR = "/work"
_LAUNCHER = resources.files("swarm.sandbox").joinpath("_launcher.py").read_text()
_TOP_DIRS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# What a stdlib Python and ordinary tools need from /etc; nothing with secrets or user lists.
_ETC_FILES = ("/etc/ld.so.cache", "/etc/localtime", "/etc/alternatives")
_JAIL_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "HOME": WORKDIR,
    "TMPDIR": WORKDIR,
    "LANG": "C.UTF-8",
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONIOENCODING": "utf-8",
    "PYTHONUNBUFFERED": "1",
}
# Root-mode jails run as base + pid % span, so two executors on one host never share an
# RLIMIT_NPROC count (which is per uid without a user namespace). Far above real accounts.
_JAIL_UID_BASE = 1_500_000_000
_JAIL_UID_SPAN = 1_000_000
_READ_CHUNK = 1 << 16
_WATCH_S = 0.1  # how often a long run's total memory is checked
_PAGE = os.sysconf("SC_PAGE_SIZE")
_USERNS_HELP = (
    "enable unprivileged user namespaces (sysctl -w kernel.unprivileged_userns_clone=1 "
    "user.max_user_namespaces=15000; on Ubuntu 24.04+ also "
    "kernel.apparmor_restrict_unprivileged_userns=0), or inside a container allow them "
    "(docker run --security-opt seccomp=unconfined --security-opt apparmor=unconfined), "
    "or use --sandbox e2b"
)


@dataclass(frozen=True)
class Interpreter:
    """The Python the jail runs: a real binary and the prefix holding its stdlib."""

    path: str
    prefix: str

    @classmethod
    def current(cls) -> Interpreter:
        # A venv's python is a symlink (or copy) that needs pyvenv.cfg; the base binary does not.
        prefix = os.path.realpath(sys.base_prefix)
        base = os.path.join(prefix, "bin", f"python{sys.version_info[0]}.{sys.version_info[1]}")
        path = base if os.access(base, os.X_OK) else os.path.realpath(sys.executable)
        return cls(os.path.realpath(path), prefix)


@dataclass
class _Collected:
    stdout: OutputCapture
    stderr: OutputCapture
    stopped: str = ""  # why this side killed the jail, if it did


def _parent_dirs(paths: list[str]) -> list[str]:
    """`--dir` for every ancestor of the bind targets: bwrap creates missing ones 0700, which a
    jail that dropped root could not traverse (a Python under /root would not import)."""
    ancestors: set[str] = set()
    for path in paths:
        parent = os.path.dirname(path)
        while parent not in ("/", ""):
            ancestors.add(parent)
            parent = os.path.dirname(parent)
    return [arg for parent in sorted(ancestors) for arg in ("--dir", parent)]


def _system_binds(interpreter: Interpreter) -> list[str]:
    args = ["--ro-bind", "/usr", "/usr"]
    for top in _TOP_DIRS:
        if os.path.islink(top):
            args += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            args += ["--ro-bind", top, top]
    extra = [path for path in _ETC_FILES if os.path.exists(path)]
    if os.path.commonpath([interpreter.prefix, "/usr"]) != "/usr":  # a system Python is in
        extra.append(interpreter.prefix)
    args += _parent_dirs(extra)
    for path in extra:
        args += ["--ro-bind", path, path]
    return args


def _bwrap_version(bwrap: str) -> tuple[int, ...]:
    try:
        out = subprocess.run([bwrap, "--version"], capture_output=True, text=True, timeout=10)
    except OSError as exc:
        raise SandboxUnavailable(f"cannot run {bwrap}: {exc}") from None
    found = re.search(r"(\d+)\.(\d+)", out.stdout)
    return tuple(int(part) for part in found.groups()) if found else (0, 0)


def _namespace_args(as_root: bool, modern: bool) -> list[str]:
    # The launcher needs CAP_SYS_ADMIN for its mounts, and gives it up before the snippet runs.
    if as_root:
        # No user namespace: see the module docstring. Keep only what the launcher needs to
        # mount and change uid; bwrap run by root would otherwise keep every capability.
        return [
            "--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts",
            "--unshare-cgroup-try",
            "--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID",
            "--cap-add", "CAP_SYS_ADMIN",
        ]  # fmt: skip
    # --disable-userns (bwrap 0.8+) stops the snippet from nesting a user namespace of its own;
    # the seccomp filter does too, with older bwrap as well.
    return [
        "--unshare-all", "--unshare-user", *(["--disable-userns"] if modern else []),
        "--cap-add", "CAP_SYS_ADMIN",
    ]  # fmt: skip


def _jail_uid() -> int:
    return _JAIL_UID_BASE + os.getpid() % _JAIL_UID_SPAN


def _data_fd(name: str, data: bytes) -> int:
    # A memfd, so bwrap reads the snippet (or the filter) without a pipe to feed or a host file.
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    # bwrap leads its own process group; once it dies the jail's pid 1 gets SIGKILL
    # (--die-with-parent) and with it every process in the jail's pid namespace.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    for pipe in (proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()


def _tree_rss(root: int) -> int:
    """Resident anonymous bytes of a process and all its descendants, from /proc (best effort:
    processes come and go while it reads). File-backed pages (the interpreter, shared by every
    process) are left out; the tmpfs has its own bound."""
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        try:
            with open(f"/proc/{pid}/statm") as f:
                _, resident, shared = f.read().split()[:3]
            total += (int(resident) - int(shared)) * _PAGE
            for tid in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{tid}/children") as f:
                    todo.extend(int(child) for child in f.read().split())
        except (OSError, ValueError, IndexError):
            continue
    return total


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1].strip()[:200] if lines else ""


def _describe_exit(returncode: int, stderr: str) -> str:
    """The reason shown to the mind for a non-zero exit of the jailed program."""
    last = _last_line(stderr)
    if last.startswith("bwrap:"):
        return f"sandbox failed to start ({last})"
    if returncode > 128:
        number = returncode - 128
        if number == signal.SIGXCPU:
            return "CPU time limit exceeded"
        if number == signal.SIGXFSZ:
            return "file size limit exceeded"
        if number in signal.valid_signals():
            return f"killed by signal {_signal_name(number)}"
    if last.startswith("MemoryError"):
        return "memory limit exceeded (MemoryError)"
    if "File too large" in last:
        return f"file size limit exceeded ({last})"
    if "No space left on device" in last:
        return f"work dir full ({last})"
    # Status 1 is how Python ends on an uncaught exception, whose last line names it.
    detail = f" ({last})" if returncode == 1 and last else ""
    return f"exit status {returncode}{detail}"


class LocalSandbox:
    """Runs each snippet in a fresh bubblewrap jail; nothing survives from one run to the next."""

    name = "local"

    def __init__(
        self,
        limits: ExecLimits | None = None,
        *,
        bwrap: str | None = None,
        interpreter: Interpreter | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limits = limits or ExecLimits()
        self._clock = clock
        self._as_root = os.geteuid() == 0
        found = bwrap or shutil.which("bwrap")
        if not found:
            raise SandboxUnavailable(
                "the local sandbox needs bubblewrap: apt-get install bubblewrap "
                "(dnf install bubblewrap, apk add bubblewrap), or use --sandbox e2b"
            )
        interp = interpreter or Interpreter.current()
        self._seccomp = filter_for()
        modern = _bwrap_version(found) >= (0, 8)
        # bwrap's own /work only holds main.py until the launcher mounts the bounded tmpfs over
        # it; --size (0.8+) bounds it all the same.
        size = ["--size", str(self.limits.workdir_mb << 20)] if modern else []
        # Built once: no path resolution or probing on the per-run path.
        self._head = [
            found, "--die-with-parent", "--new-session",
            *_namespace_args(self._as_root, modern), "--hostname", "sandbox",
            *_system_binds(interp),
            "--proc", "/proc", "--dev", "/dev",
            *size, "--tmpfs", WORKDIR,
            "--symlink", WORKDIR, "/tmp",
            # Read-only from here: bwrap's own tmpfs root and /dev are unbounded, and in a user
            # namespace the jail would own them. The launcher mounts /work and /dev/shm anew.
            "--remount-ro", "/dev", "--remount-ro", "/",
        ]  # fmt: skip
        env = [arg for key, value in _JAIL_ENV.items() for arg in ("--setenv", key, value)]
        self._tail = [
            "--chdir", WORKDIR, "--clearenv", *env,
            interp.path, "-I", "-S", "-B", "-u", "-X", "utf8", "-c", _LAUNCHER,
        ]  # fmt: skip
        self._probe()

    def _argv(self, code_fd: int, seccomp_fd: int) -> list[str]:
        lim = self.limits
        limit_args = [
            str(lim.cpu_s), str(lim.memory_mb << 20), str(lim.processes),
            str(lim.file_mb << 20), str(lim.open_files),
            str(_jail_uid() if self._as_root else -1),
            str(lim.workdir_mb << 20), str(lim.workdir_files),
        ]  # fmt: skip
        code_args = ["--perms", "0444", "--ro-bind-data", str(code_fd), f"{WORKDIR}/main.py"]
        fd_args = [*code_args, "--seccomp", str(seccomp_fd)]
        return [*self._head, *fd_args, *self._tail, *limit_args]

    def _probe(self) -> None:
        out = self.run("pass", timeout_s=min(10.0, self.limits.timeout_s))
        if out.ok:
            return
        detail = _last_line(out.stderr) or out.error
        if "namespace" in detail or "uid map" in detail or "Operation not permitted" in detail:
            raise SandboxUnavailable(
                f"bubblewrap cannot create a jail here ({detail}): {_USERNS_HELP}"
            )
        raise SandboxUnavailable(f"the local sandbox does not work here: {detail}")

    def run(self, code: str, timeout_s: float) -> ExecOutput:
        wall_s = self.limits.wall_s(timeout_s)
        fds = (
            _data_fd("swarm-snippet", code.encode("utf-8", "replace")),
            _data_fd("swarm-seccomp", self._seccomp),
        )
        try:
            start = self._clock()
            proc = subprocess.Popen(
                self._argv(*fds),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=fds,
                start_new_session=True,
                env={},  # bwrap's own environment is readable from inside via /proc/1/environ
            )
        finally:
            for fd in fds:
                os.close(fd)
        try:
            got = self._collect(proc, start, wall_s)
        finally:
            _kill_group(proc)
        stderr = got.stderr.text()
        error = got.stopped or (_describe_exit(proc.returncode, stderr) if proc.returncode else "")
        duration = round(self._clock() - start, 4)
        return ExecOutput(got.stdout.text(), stderr, error, duration)

    def _collect(self, proc: subprocess.Popen[bytes], start: float, wall_s: float) -> _Collected:
        """Read both pipes until they close, or until this side must stop the jail."""
        assert proc.stdout is not None and proc.stderr is not None
        cap = self.limits.output_bytes
        got = _Collected(OutputCapture(cap), OutputCapture(cap))
        streams = {proc.stdout.fileno(): got.stdout, proc.stderr.fileno(): got.stderr}
        deadline, next_watch = start + wall_s, start + _WATCH_S
        with selectors.DefaultSelector() as sel:
            for fileno in streams:
                sel.register(fileno, selectors.EVENT_READ)
            while sel.get_map():
                now = self._clock()
                if now >= deadline:
                    got.stopped = f"timeout after {wall_s:g}s"
                    return got
                for key, _ in sel.select(min(deadline - now, _WATCH_S)):
                    chunk = os.read(key.fd, _READ_CHUNK)
                    if chunk:
                        streams[key.fd].feed(chunk)
                    else:
                        sel.unregister(key.fd)
                if self._clock() >= next_watch:
                    next_watch = self._clock() + _WATCH_S
                    got.stopped = self._memory_overrun(proc.pid)
                got.stopped = got.stopped or self._output_overrun(got)
                if got.stopped:
                    return got
        # Both pipes closed: the jail is gone or about to be; its exit status is moments away.
        try:
            proc.wait(max(0.0, deadline - self._clock()))
        except subprocess.TimeoutExpired:
            got.stopped = f"timeout after {wall_s:g}s"
        return got

    def _output_overrun(self, got: _Collected) -> str:
        if got.stdout.total + got.stderr.total <= self.limits.flood_bytes:
            return ""
        return f"output limit exceeded (over {self.limits.flood_bytes} bytes); stopped"

    def _memory_overrun(self, pid: int) -> str:
        # RLIMIT_AS bounds each process; this bounds them together, or 32 processes could hold
        # 32 times the limit between them.
        resident = _tree_rss(pid)
        if resident <= self.limits.memory_mb << 20:
            return ""
        return f"memory limit exceeded ({resident >> 20} MB resident across processes)"

    def close(self) -> None:
        """Nothing to release: every run has its own jail."""
