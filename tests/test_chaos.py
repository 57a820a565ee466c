"""A short chaos run (scripts/chaos.py): kills, a server crash on AOF and a frozen worker.

The full run and its options are in the script; this one is sized for CI. It asserts no
timings, only that nothing was lost or accepted twice and every fault actually happened.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
from chaos import ChaosConfig, expected_leaves, print_report, run

pytestmark = pytest.mark.slow


def test_expected_leaves_follow_the_sim_tree() -> None:
    assert expected_leaves(2, 2) == [
        "leaf Chaos.1.1", "leaf Chaos.1.2", "leaf Chaos.2.1", "leaf Chaos.2.2",
    ]  # fmt: skip
    assert expected_leaves(3, 0) == ["leaf Chaos"]
    assert ChaosConfig(branch=3, depth=4).tasks == 1 + 3 + 9 + 27 + 81


def test_chaos_loses_nothing_and_accepts_nothing_twice() -> None:
    cfg = ChaosConfig(
        workers=6,
        think_min=0.02,
        think_max=0.2,
        branch=3,
        depth=4,
        kill_every=1.0,
        lease=1.5,
        restart_redis=True,
        restart_at=0.5,
        appendfsync="always",
        cut=True,
        cut_at=0.2,
        timeout=50,
        seed=6,
    )
    lines: list[str] = []
    report = run(cfg, say=lines.append)
    print_report(report, say=lines.append)
    print("\n".join(lines))
    assert report.ok, report.failures
    assert report.tasks == cfg.tasks and report.by_state == {"done": cfg.tasks}
    assert report.completions == cfg.tasks
    assert report.kills >= 1
    assert report.redis_restarts == 1
    assert report.cut["reaped_while_frozen"] and report.cut["late_posts_accepted"] == 0
