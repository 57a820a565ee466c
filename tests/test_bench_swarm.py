"""The swarm bench's purpose (scripts/bench_swarm.py): six model steps whatever the model
writes, so both arms of the comparison do the same work."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
from bench_swarm import LEAVES, PURPOSE

from swarm.purpose import load_purpose


def test_the_bench_purpose_is_five_leaves_and_the_roots_synthesis(tmp_path: Path) -> None:
    path = tmp_path / "purpose.md"
    path.write_text(PURPOSE)
    purpose = load_purpose(str(path))
    assert len(purpose.tasks) == LEAVES == 5
    # The root tasks sit at the depth limit: each is answered, none splits; with the root
    # that is every task the budget allows.
    assert purpose.budgets.max_depth == 1
    assert purpose.budgets.max_tasks == LEAVES + 1
    assert purpose.sandbox == "none"
