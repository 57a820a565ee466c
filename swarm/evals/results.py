"""Finished runs, one JSON line each, appended as they finish: what an interrupted eval
resumes from.

Each line is written with one `write` on a file opened for appending, then fsynced, so a
killed eval leaves every finished run whole and at most a torn last line, which loading
drops (and cuts from the file) so the run is done again.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

MAX_LINE = 64 * 1024
MAX_FILE = 256 * 1024 * 1024


class ResultsError(ValueError):
    """A results file that cannot be resumed from; one line."""


@dataclass(frozen=True)
class RunResult:
    purpose: str  # the suite item's name
    title: str
    arm: str  # the arm's label
    seed: int
    budget: int  # the token budget the run had (equal across arms)
    passed: bool  # answered and the check passed
    verdict: str  # pass | fail | error | none (no answer was checked)
    checks: int  # how many times the root's answer was checked
    outcome: str  # answered | failed | cancelled | timeout
    tokens: int
    tasks: int
    wall_s: float
    answer: str
    swarm: str
    note: str = ""  # why a run ended without a checked answer

    @property
    def key(self) -> tuple[str, str, int, int]:
        return (self.purpose, self.arm, self.seed, self.budget)

    @property
    def fixed(self) -> bool:
        """Passed after the check had sent an answer back: the re-check paid off."""
        return self.passed and self.checks > 1

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> RunResult:
        names = {f.name: f.type for f in fields(cls)}
        missing = [n for n in names if n not in raw and n != "note"]
        if missing:
            raise ValueError(f"missing {', '.join(missing)}")
        kinds: dict[str, type | tuple[type, ...]] = {
            "bool": bool,
            "int": int,
            "float": (int, float),
            "str": str,
        }
        for name, kind in names.items():
            if name in raw and not isinstance(raw[name], kinds[str(kind)]):
                raise ValueError(f"{name} has the wrong type")
        return cls(**{n: raw[n] for n in names if n in raw})


class ResultsFile:
    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> list[RunResult]:
        """The finished runs; a torn last line (a run being written when the eval was killed)
        is cut off. Any other bad line is an error: the file is not ours to rewrite."""
        if not self.path.exists():
            return []
        size = self.path.stat().st_size
        if size > MAX_FILE:
            raise ResultsError(f"{self.path}: over {MAX_FILE >> 20} MiB")
        data = self.path.read_bytes()
        runs: list[RunResult] = []
        start = 0
        for number, line in enumerate(data.splitlines(keepends=True), 1):
            if not line.endswith(b"\n"):  # torn: the write that would end it never happened
                self._cut(start)
                break
            runs.append(self._parse(line, number))
            start += len(line)
        return runs

    def _parse(self, line: bytes, number: int) -> RunResult:
        try:
            if len(line) > MAX_LINE:
                raise ValueError("line too long")
            raw = json.loads(line)
            if not isinstance(raw, dict):
                raise ValueError("not an object")
            return RunResult.from_dict(raw)
        except (ValueError, RecursionError, TypeError) as exc:
            raise ResultsError(f"{self.path}:{number}: not a run record ({exc})") from None

    def _cut(self, size: int) -> None:
        with open(self.path, "r+b") as f:
            f.truncate(size)
            os.fsync(f.fileno())

    def append(self, run: RunResult) -> None:
        line = (json.dumps(asdict(run), ensure_ascii=False) + "\n").encode("utf-8")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            view = memoryview(line)
            while view:  # a regular file takes it in one write; a short one is finished here
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
