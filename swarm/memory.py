"""Memory of this host and of processes, as Linux reports it: what is free, what a process
holds (RSS) and its fair share of what it shares with others (PSS)."""

from __future__ import annotations

from pathlib import Path

MB = 1024 * 1024
_CGROUP = Path("/sys/fs/cgroup")
_MEMINFO = Path("/proc/meminfo")


def available_bytes(meminfo: Path = _MEMINFO, cgroup: Path = _CGROUP) -> int | None:
    """Memory this process can still take: the host's MemAvailable, or less when its
    cgroup (a container's `mem_limit`) has less room left; None when neither is known."""
    found: list[int] = []
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    try:
        limit = (cgroup / "memory.max").read_text().strip()
        if limit != "max":
            used = int((cgroup / "memory.current").read_text().strip())
            found.append(max(0, int(limit) - used))
    except (OSError, ValueError):
        pass
    return min(found) if found else None


def _status_kb(pid: int | str, path: str, key: str) -> int:
    for line in Path(f"/proc/{pid}/{path}").read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1])
    raise ValueError(f"/proc/{pid}/{path} has no {key}")


def rss_bytes(pid: int | str = "self") -> int:
    """Resident memory of a process."""
    return _status_kb(pid, "status", "VmRSS:") * 1024


def pss_bytes(pid: int | str = "self") -> int:
    """Proportional set size: private memory plus an equal share of pages shared with others."""
    return _status_kb(pid, "smaps_rollup", "Pss:") * 1024


def shortfall(needed: int, available: int | None) -> str | None:
    """A one-line warning when `needed` bytes will not fit in `available`, else None."""
    if available is None or needed <= available:
        return None
    return f"needs up to {needed / MB:,.0f} MB more but only {available / MB:,.0f} MB is free"
