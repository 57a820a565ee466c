"""A suite: a folder of purpose files, each with a check (swarm/check.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from swarm.purpose import Purpose, PurposeError, load_purpose

MAX_PURPOSES = 1000


class SuiteError(ValueError):
    """A suite that cannot be run; one line."""


@dataclass(frozen=True)
class SuiteItem:
    name: str  # the file name without `.md`: names the purpose in results
    path: Path
    purpose: Purpose


def load_suite(folder: str | Path) -> list[SuiteItem]:
    """Every `*.md` in `folder` but README.md, in name order; each must parse and carry a
    check, or the whole suite is refused before anything runs."""
    root = Path(folder)
    if not root.is_dir():
        raise SuiteError(f"{folder}: not a folder of purpose files")
    files = sorted(p for p in root.glob("*.md") if p.name.lower() != "readme.md")
    if not files:
        raise SuiteError(f"{folder}: no purpose files (*.md) in it")
    if len(files) > MAX_PURPOSES:
        raise SuiteError(f"{folder}: more than {MAX_PURPOSES} purpose files")
    items = []
    titles: dict[str, str] = {}
    for path in files:
        purpose = load_purpose(path)  # PurposeError names the file and the line
        if purpose.check is None:
            raise PurposeError(f"{path}: no check: a suite's purposes must say how to check them")
        if purpose.title in titles:
            raise SuiteError(f"{path}: same title as {titles[purpose.title]}")
        titles[purpose.title] = path.name
        items.append(SuiteItem(path.stem, path, purpose))
    return items
