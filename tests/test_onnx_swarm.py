"""A real swarm of `onnx` workers on the tiny random-weight Phi-3, end to end.

The answers are gibberish; the protocol, guidance, budgets and tree must still hold.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis
from conftest_models import tiny_model  # noqa: F401  (a fixture)

from swarm.board import Board, list_swarms

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(("workers", "slots"), [(2, 1), (1, 4)])
def test_swarm_up_with_the_tiny_model(
    tiny_model: Path,  # noqa: F811
    redis_url: str,
    tmp_path: Path,
    workers: int,
    slots: int,
) -> None:
    env = {**os.environ, "SWARM_HOME": str(tmp_path)}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "swarm",
            "up",
            str(ROOT / "examples" / "purpose.md"),
            "--workers",
            str(workers),
            "--slots",
            str(slots),
            "--model",
            str(tiny_model),
            "--redis",
            redis_url,
            "-q",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip()

    client = redis.Redis.from_url(redis_url, decode_responses=True)
    board = Board(client, list_swarms(client, 1)[0])
    st = board.status()
    assert st["state"] == "done" and st["outcome"] == "answered"
    assert st["tokens"] > 0
    assert st["tasks"] <= st["budgets"]["max_tasks"]
    assert st["by_state"]["open"] == st["by_state"]["claimed"] == st["by_state"]["waiting"] == 0
    failures = [f for _, f in board.events(count=10_000) if f["type"] == "failed"]
    assert not [f for f in failures if "InvalidAction" in f.get("reason", "")]
    assert int(board.meta()["depth_reached"]) <= st["budgets"]["max_depth"]


def test_up_with_a_missing_model_seeds_nothing(tmp_path: Path, redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    before = client.zcard("swarm:index")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "swarm",
            "up",
            str(ROOT / "examples" / "purpose.md"),
            "--model",
            str(tmp_path / "nope"),
            "--redis",
            redis_url,
            "-q",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert len([line for line in proc.stderr.splitlines() if line.strip()]) == 1
    assert client.zcard("swarm:index") == before
