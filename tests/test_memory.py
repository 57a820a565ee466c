"""Memory: what the host has free, what a process holds, and the worker's start-up report
and warning when its slots cannot fit."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest_models import tiny_model  # noqa: F401  (a fixture)

from swarm import memory
from swarm.cli import cli

ROOT = Path(__file__).resolve().parent.parent
MEMINFO = "MemTotal:       24000000 kB\nMemFree:  100 kB\nMemAvailable:    8000000 kB\n"


def test_available_is_the_hosts_or_the_cgroups_room_whichever_is_less(tmp_path: Path) -> None:
    info = tmp_path / "meminfo"
    info.write_text(MEMINFO)
    group = tmp_path / "cg"
    group.mkdir()
    assert memory.available_bytes(info, group) == 8000000 * 1024  # no cgroup files
    (group / "memory.max").write_text("max\n")
    (group / "memory.current").write_text("5\n")
    assert memory.available_bytes(info, group) == 8000000 * 1024  # unlimited
    (group / "memory.max").write_text(f"{3 * memory.MB}\n")
    (group / "memory.current").write_text(f"{memory.MB}\n")
    assert memory.available_bytes(info, group) == 2 * memory.MB  # a container's mem_limit
    assert memory.available_bytes(tmp_path / "none", tmp_path / "none") is None


def test_a_shortfall_is_one_line_and_only_when_short() -> None:
    assert memory.shortfall(10, 20) is None
    assert memory.shortfall(10, None) is None
    line = memory.shortfall(3 * memory.MB, memory.MB)
    assert line == "needs up to 3 MB more but only 1 MB is free"


def test_rss_and_pss_of_this_process() -> None:
    rss, pss = memory.rss_bytes(), memory.pss_bytes(os.getpid())
    assert 0 < pss <= rss * 1.1
    blob = bytearray(64 * memory.MB)  # touched: resident
    assert memory.rss_bytes() - rss > 50 * memory.MB
    del blob


@pytest.mark.parametrize(("free_mb", "warned"), [(1, True), (10_000, False)])
def test_the_worker_says_what_its_model_and_slots_take_and_warns_when_they_cannot_fit(
    tiny_model: Path,  # noqa: F811
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
    free_mb: int,
    warned: bool,
) -> None:
    monkeypatch.setattr(memory, "available_bytes", lambda: free_mb * memory.MB)
    runner = CliRunner()
    seeded = runner.invoke(
        cli, ["seed", str(ROOT / "examples" / "purpose.md"), "--redis", redis_url]
    )
    sid = seeded.output.strip()
    assert (
        runner.invoke(cli, ["cancel", "--all", "--redis", redis_url, "--swarm", sid]).exit_code == 0
    )
    spec = f"onnx:{tiny_model}?context=2048"
    res = runner.invoke(
        cli,
        ["worker", "--redis", redis_url, "--swarm", sid, "--mind", spec, "--slots", "4", "--burst"],
    )
    assert res.exit_code == 0, res.output
    # tiny: 2 layers x 4 KV heads x 16 x float32, keys and values: 1 KB a token, 2 MB a slot
    assert re.search(
        r"onnx mind: model [\d,]+ MB, KV cache 2 MB per slot \(2048 tokens at 1 KB\), 4 slot",
        res.output,
    ), res.output
    assert ("warning: 4 slot(s) of 2048 tokens needs up to 8 MB more" in res.output) is warned
