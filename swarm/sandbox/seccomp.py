"""The local jail's seccomp filter: a classic-BPF program that bubblewrap loads (`--seccomp FD`)
just before it starts the jailed interpreter.

It closes the ways jailed code could hold host memory outside every bound the jail sets
(tmpfs sizes, RLIMIT_AS, the resident-memory watch), or leave its namespaces:

- a user namespace of its own (unshare/clone with CLONE_NEWUSER), in which it would be root
  and could mount an unbounded tmpfs; clone3 answers ENOSYS, so libc falls back to clone,
  whose flags the filter can read;
- memfd_create/memfd_secret: anonymous files, which count as shared memory and are not
  mapped, so neither RLIMIT_AS nor the resident-memory watch sees them;
- System V shared memory and message queues, and POSIX message queues: kernel-held memory
  that outlives the process that made it;
- io_uring, which runs work outside the process's own syscalls.

Everything else is allowed; the other bounds are namespaces, rlimits and capabilities.
Written out by hand (a few dozen instructions) rather than through libseccomp, whose Python
binding is not on PyPI; `tests/test_sandbox_local.py` proves each rule from inside the jail.
"""

from __future__ import annotations

import errno
import platform
import struct
from dataclasses import dataclass

from swarm.sandbox.base import SandboxUnavailable

CLONE_NEWUSER = 0x10000000

# Classic BPF opcodes (linux/filter.h) and seccomp return values (linux/seccomp.h).
_LD_ABS_W = 0x20  # BPF_LD | BPF_W | BPF_ABS
_JEQ = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
_JGE = 0x35  # BPF_JMP | BPF_JGE | BPF_K
_JSET = 0x45  # BPF_JMP | BPF_JSET | BPF_K
_RET = 0x06  # BPF_RET | BPF_K
_ALLOW = 0x7FFF0000
_ERRNO = 0x00050000
_KILL_PROCESS = 0x80000000
# struct seccomp_data: int nr; u32 arch; u64 instruction_pointer; u64 args[6] (little endian).
_NR, _ARCH, _ARG0_LOW = 0, 4, 16


@dataclass(frozen=True)
class _Arch:
    audit: int  # AUDIT_ARCH_*: any other ABI (e.g. 32-bit calls from a 64-bit process) is killed
    x32_bit: int  # x86_64's x32 ABI sets this bit in the syscall number; 0 where there is none
    flag_checked: tuple[int, ...]  # clone, unshare: refused when they ask for CLONE_NEWUSER
    enosys: tuple[int, ...]  # clone3
    refused: tuple[int, ...]


_ARCHES = {
    "x86_64": _Arch(
        audit=0xC000003E,
        x32_bit=0x40000000,
        flag_checked=(56, 272),
        enosys=(435,),
        # memfd_create, memfd_secret, shmget, shmat, shmctl, shmdt, msgget, msgsnd, msgrcv,
        # msgctl, mq_open, io_uring_setup, io_uring_enter, io_uring_register
        refused=(319, 447, 29, 30, 31, 67, 68, 69, 70, 71, 240, 425, 426, 427),
    ),
    "aarch64": _Arch(
        audit=0xC00000B7,
        x32_bit=0,
        flag_checked=(220, 97),
        enosys=(435,),
        refused=(279, 447, 194, 196, 195, 197, 186, 189, 188, 187, 180, 425, 426, 427),
    ),
}


_Instruction = tuple[int, int | str, int | str, int]  # code, jump if true, if false, k
_LABEL = -1  # a pseudo-instruction naming the next real one


def _assemble(program: list[_Instruction]) -> bytes:
    """Pack the program, turning jumps to label names into BPF's forward offsets."""
    at: dict[int | str, int] = {}
    index = 0
    for code, name, _, _ in program:
        if code == _LABEL:
            at[name] = index
        else:
            index += 1
    out: list[bytes] = []
    for code, jt, jf, k in (ins for ins in program if ins[0] != _LABEL):
        here = len(out)
        jumps = [at[j] - here - 1 if isinstance(j, str) else j for j in (jt, jf)]
        assert all(0 <= j <= 255 for j in jumps), "a seccomp jump out of range"
        out.append(struct.pack("=HBBI", code, jumps[0], jumps[1], k))
    return b"".join(out)


def _label(name: str) -> _Instruction:
    return (_LABEL, name, 0, 0)


def filter_for(machine: str | None = None) -> bytes:
    """The compiled filter for this machine's architecture, as bubblewrap's --seccomp wants it."""
    machine = machine or platform.machine()
    arch = _ARCHES.get(machine)
    if arch is None:
        raise SandboxUnavailable(
            f"the local sandbox's seccomp filter knows {', '.join(_ARCHES)}, not {machine}; "
            "use --sandbox e2b"
        )
    refuse = _ERRNO | errno.EPERM
    program: list[_Instruction] = [
        (_LD_ABS_W, 0, 0, _ARCH),
        (_JEQ, 0, "kill", arch.audit),
        (_LD_ABS_W, 0, 0, _NR),
    ]
    if arch.x32_bit:
        program.append((_JGE, "refuse", 0, arch.x32_bit))
    program += [(_JEQ, "enosys", 0, nr) for nr in arch.enosys]
    program += [(_JEQ, "refuse", 0, nr) for nr in arch.refused]
    program += [(_JEQ, "flags", 0, nr) for nr in arch.flag_checked]
    program += [
        (_RET, 0, 0, _ALLOW),
        _label("flags"),
        (_LD_ABS_W, 0, 0, _ARG0_LOW),
        (_JSET, "refuse", 0, CLONE_NEWUSER),
        (_RET, 0, 0, _ALLOW),
        _label("refuse"),
        (_RET, 0, 0, refuse),
        _label("enosys"),
        (_RET, 0, 0, _ERRNO | errno.ENOSYS),
        _label("kill"),
        (_RET, 0, 0, _KILL_PROCESS),
    ]
    return _assemble(program)
