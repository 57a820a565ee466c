"""ExecLimits: the bounds one code run is held to, whichever sandbox runs it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any


class LimitsError(ValueError):
    """Sandbox limits out of range (SWARM_EXEC_* set to something unusable)."""


@dataclass(frozen=True)
class ExecLimits:
    """Per-run bounds. An executor's limits are a ceiling: callers may ask for less time only."""

    timeout_s: float = 30.0  # wall clock, from start to kill
    cpu_s: int = 20  # CPU seconds per process (RLIMIT_CPU)
    memory_mb: int = 512  # address space of each process (RLIMIT_AS), and RSS of all together
    processes: int = 32  # processes and threads together (RLIMIT_NPROC)
    file_mb: int = 64  # largest file the code may write (RLIMIT_FSIZE)
    workdir_mb: int = 128  # size of the tmpfs work dir (and /dev/shm), all files together
    workdir_files: int = 10_000  # files and directories in it: each one is kernel memory
    open_files: int = 256  # RLIMIT_NOFILE
    output_bytes: int = 16_000  # kept of each of stdout and stderr; the rest is cut with a marker

    def __post_init__(self) -> None:
        positive = ("timeout_s", "cpu_s", "memory_mb", "processes", "file_mb", "workdir_mb")
        for name in (*positive, "workdir_files"):
            if getattr(self, name) <= 0:
                raise LimitsError(f"ExecLimits.{name} must be positive")
        if self.open_files < 16:
            raise LimitsError("ExecLimits.open_files must be at least 16 (Python needs a few)")
        if self.output_bytes < 256:
            raise LimitsError("ExecLimits.output_bytes must be at least 256")

    def wall_s(self, requested_s: float | None) -> float:
        """The wall-clock limit of one run: what the caller asked for, capped by this ceiling."""
        if requested_s is None or requested_s <= 0:
            return self.timeout_s
        return min(requested_s, self.timeout_s)

    @property
    def flood_bytes(self) -> int:
        """Output past which a run is stopped rather than read and thrown away until its timeout."""
        return max(64 * self.output_bytes, 4 << 20)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ExecLimits:
        """Defaults, overridden by SWARM_EXEC_<FIELD> (SWARM_EXEC_TIMEOUT_S=10, ...)."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(f"SWARM_EXEC_{f.name.upper()}")
            if raw:
                try:
                    values[f.name] = float(raw) if f.name == "timeout_s" else int(raw)
                except ValueError:
                    raise LimitsError(
                        f"SWARM_EXEC_{f.name.upper()} must be a number, got {raw!r}"
                    ) from None
        return cls(**values)
