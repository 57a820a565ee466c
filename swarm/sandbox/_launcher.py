"""Runs first inside the jail: bounds the writable filesystems, applies the limits, gives up
every privilege (root's uid, or the capabilities bwrap lent it), then runs /work/main.py.

Stdlib only and self-contained: it is passed to the jailed interpreter with `-c`. Running the
snippet in this same interpreter, rather than exec'ing a second Python, saves an interpreter
start (about 10 ms of a 25 ms run).

argv: cpu_s memory_bytes processes file_bytes open_files uid workdir_bytes workdir_files
(uid -1: already unprivileged, in a user namespace)
"""

import _ctypes
import builtins
import os
import resource
import struct
import sys
import types
from typing import Any

MAIN = "/work/main.py"
# Mount flags and prctl/capset constants (linux/mount.h, linux/prctl.h, linux/capability.h).
_MS_NOSUID, _MS_NODEV, _MS_NOEXEC, _MS_REMOUNT, _MS_BIND = 2, 4, 8, 32, 4096
_CLONE_NEWNS = 0x00020000
_PR_SET_NO_NEW_PRIVS = 38
_CAP_VERSION_3 = 0x20080522
_MAX_PTYS = 16  # a jail needs a terminal or two at most; each one is kernel memory


class _Int(_ctypes._SimpleCData):  # type: ignore[type-arg]  # not subscriptable at run time
    _type_ = "i"


class _Function(_ctypes.CFuncPtr):
    """A libc function returning int and setting errno: what ctypes.CDLL builds, from _ctypes
    directly, because importing the ctypes package costs every run several milliseconds."""

    _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO
    _restype_ = _Int


class _Libc:
    """The process's own symbols (libc), as CDLL(None) would load them."""

    def __init__(self) -> None:
        self._handle = _ctypes.dlopen(None)  # type: ignore[arg-type]  # NULL: this process

    def __getattr__(self, name: str) -> Any:
        return _Function((name, self))  # type: ignore[arg-type]  # what CDLL passes too


def _call(result: int, what: str) -> None:
    if result != 0:
        err = _ctypes.get_errno()
        raise OSError(err, f"jail set-up: {what}: {os.strerror(err)}")


def _mount(
    libc: _Libc,
    source: bytes | None,
    target: str,
    fstype: bytes | None,
    flags: int,
    data: bytes | None = None,
) -> None:
    _call(libc.mount(source, target.encode(), fstype, flags, data), f"mount {target}")


def _bound_filesystems(libc: _Libc, size: int, inodes: int) -> None:
    """One tmpfs, bounded in bytes and in files (bwrap's own tmpfs bounds bytes only, and
    millions of empty files are gigabytes of kernel memory), shared by /work and /dev/shm, so
    the jail has exactly one writable budget; and a devpts with a few terminals only."""
    with open(MAIN, "rb") as f:
        source = f.read()
    # A mount namespace of the launcher's own: in a user namespace bwrap starts the jail one
    # user namespace below the one owning bwrap's mounts (--disable-userns needs that), where
    # the capability it lends cannot mount; in this one it can.
    _call(libc.unshare(_CLONE_NEWNS), "unshare a mount namespace")
    fs = b"tmpfs"
    options = f"size={size},nr_inodes={inodes + 3},mode=0755".encode()
    _mount(libc, fs, "/work", fs, _MS_NOSUID | _MS_NODEV, options)
    for part, target in (("/work/shm", "/dev/shm"), ("/work/work", "/work")):
        os.mkdir(part)
        os.chmod(part, 0o1777)  # sticky, like /tmp: writable by the uid the jail drops to
        _mount(libc, part.encode(), target, None, _MS_BIND)
        _mount(libc, None, target, None, _MS_REMOUNT | _MS_BIND | _MS_NOSUID | _MS_NODEV)
    with open(MAIN, "wb") as f:
        f.write(source)
    os.chmod(MAIN, 0o444)
    os.chdir("/work")  # bwrap's --chdir left the cwd in the tmpfs now hidden underneath
    pts = f"newinstance,ptmxmode=0666,mode=0620,max={_MAX_PTYS}".encode()
    _mount(libc, b"devpts", "/dev/pts", b"devpts", _MS_NOSUID | _MS_NOEXEC, pts)


def _set_limits(cpu_s: int, memory: int, processes: int, file_bytes: int, open_files: int) -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    # Soft limit sends SIGXCPU (reported as "CPU time limit exceeded"); the hard one a second
    # later is SIGKILL, for code that catches SIGXCPU.
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 1))
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_FSIZE, (file_bytes, file_bytes))
    resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, open_files))
    resource.setrlimit(resource.RLIMIT_NPROC, (processes, processes))


def _drop_root(uid: int) -> None:
    # The jail was started by root without a user namespace (see local.py): become an
    # unprivileged uid, which clears every capability and makes RLIMIT_NPROC count.
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)


def _drop_capabilities(libc: _Libc) -> None:
    # In a user namespace bwrap lent CAP_SYS_ADMIN for the mounts above: give it back (all
    # sets empty; the ambient set empties with them) before any of the snippet runs.
    # Passed as char *; the kernel only reads them (it writes the header only if it rejects it).
    _call(libc.capset(struct.pack("Ii", _CAP_VERSION_3, 0), bytes(24)), "capset")


def _main_module() -> types.ModuleType:
    # -S skips site, which is what defines exit() and quit(); model-written code uses them.
    import _sitebuiltins

    builtins.exit = _sitebuiltins.Quitter("exit", "Ctrl-D (i.e. EOF)")
    builtins.quit = _sitebuiltins.Quitter("quit", "Ctrl-D (i.e. EOF)")
    module = types.ModuleType("__main__")
    module.__file__ = MAIN
    sys.modules["__main__"] = module
    sys.argv = [MAIN]
    sys.path.insert(0, "/work")
    return module


def _run(module: types.ModuleType) -> None:
    with open(MAIN, "rb") as f:
        source = f.read()
    try:
        code = compile(source, MAIN, "exec")
        exec(code, module.__dict__)
    except SystemExit:
        raise
    except BaseException as exc:  # shown as Python shows an uncaught error, minus this frame
        tb = exc.__traceback__.tb_next if exc.__traceback__ else None
        sys.excepthook(type(exc), exc, exc.with_traceback(tb).__traceback__)
        sys.exit(1)


def main() -> None:
    cpu_s, memory, processes, file_bytes, open_files, uid, size, inodes = (
        int(a) for a in sys.argv[1:9]
    )
    libc = _Libc()
    _bound_filesystems(libc, size, inodes)
    _call(libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    _set_limits(cpu_s, memory, processes, file_bytes, open_files)
    if uid >= 0:
        _drop_root(uid)
    else:
        _drop_capabilities(libc)
    _run(_main_module())


if __name__ == "__main__":  # true under `python -c`; importing this module must not jail anyone
    main()
