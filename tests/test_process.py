"""Real `swarm worker` processes, some killed with SIGKILL mid-run: nothing lost, nothing twice."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import redis

from swarm.board import Board
from swarm.task import SwarmState
from tests.test_worker import leaves

pytestmark = pytest.mark.slow

PURPOSE = """---
budgets:
  max_tasks: 200
  max_depth: 3
  lease_s: 5
---
# Process test

Split and answer.

## Tasks

- a
- b
"""


def swarm_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "swarm", *args]


def start_worker(redis_url: str, swarm_id: str, mind: str, *more: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        swarm_cmd(
            "worker",
            "--redis",
            redis_url,
            "--swarm",
            swarm_id,
            "--mind",
            mind,
            "--burst",
            "--lease",
            "2",
            *more,
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def seed_cli(tmp_path: Path, redis_url: str) -> str:
    """Seed PURPOSE through `swarm seed`, as a user would; returns the swarm id."""
    purpose = tmp_path / "purpose.md"
    purpose.write_text(PURPOSE)
    seeded = subprocess.run(
        swarm_cmd("seed", str(purpose), "--redis", redis_url),
        capture_output=True,
        text=True,
        check=True,
    )
    return seeded.stdout.strip()


def test_sigkilled_workers_lose_nothing(tmp_path: Path, redis_url: str) -> None:
    swarm_id = seed_cli(tmp_path, redis_url)
    mind = "sim:branch=3,depth=3,think=0.03"
    workers = [start_worker(redis_url, swarm_id, mind) for _ in range(4)]
    time.sleep(1.0)
    for victim in workers[:2]:  # killed while holding tasks: their leases must be reaped
        victim.send_signal(signal.SIGKILL)
    workers.append(start_worker(redis_url, swarm_id, mind))
    for w in workers[2:]:
        w.wait(120)
        assert w.returncode == 0, w.stderr.read().decode() if w.stderr else ""

    status = json.loads(
        subprocess.run(
            swarm_cmd("status", "--json", "--redis", redis_url, "--swarm", swarm_id),
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    assert status["state"] == "done"
    expected_tasks = 1 + 2 + 6 + 18
    assert status["tasks"] == expected_tasks
    assert status["by_state"]["done"] == expected_tasks  # none lost, none dead
    assert sum(status["by_state"].values()) == expected_tasks

    answer = subprocess.run(
        swarm_cmd("result", "--redis", redis_url, "--swarm", swarm_id),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert Counter(answer.split(" | ")) == Counter(leaves(["a", "b"], 3, 2))

    client = redis.Redis.from_url(redis_url, decode_responses=True)
    board = Board(client, swarm_id)
    completed = Counter(
        f["task"] for _, f in board.events(count=10_000) if f["type"] == "completed"
    )
    assert len(completed) == expected_tasks and set(completed.values()) == {1}
    assert board.state() is SwarmState.DONE


def test_sigterm_exits_zero_and_releases(tmp_path: Path, redis_url: str) -> None:
    swarm_id = seed_cli(tmp_path, redis_url)
    # a short grace: the step (30 s) outlasts any, and waiting out the default 5 s tests nothing
    worker = start_worker(redis_url, swarm_id, "sim:branch=2,depth=1,think=30", "--grace", "0.5")
    board = Board(redis.Redis.from_url(redis_url, decode_responses=True), swarm_id)
    deadline = time.monotonic() + 30
    while board.status()["by_state"]["claimed"] == 0:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(30) == 0
    st = board.status()
    assert st["by_state"]["claimed"] == 0 and st["by_state"]["open"] == 2
    assert "released" in [f["type"] for _, f in board.events()]
