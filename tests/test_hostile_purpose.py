"""Parsing is bounded: every hostile purpose file is refused by `swarm seed` in one line,
quickly, in bounded memory, with nothing written; or, where it is fine, seeded correctly.

Each case runs the real CLI in a subprocess with a 1 GiB address-space limit and a timeout
far above what a bounded parse needs (the old parser took minutes and gigabytes on these).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from swarm.purpose import Budgets, Tuning
from swarm.trace import delete_swarm
from tests.conftest import make_purpose

MAX_FILE = 256 * 1024 - 64  # just under the size limit: the worst a file may be


def _bomb(levels: int = 9) -> str:
    """A billion laughs in flow style: each list holds nine aliases of the one before."""
    lists = ["&a [" + ", ".join(["lol"] * 9) + "]"]
    for i in range(1, levels):
        lists.append(f"&{chr(97 + i)} [" + ", ".join([f"*{chr(96 + i)}"] * 9) + "]")
    return "[" + ", ".join(lists) + "]"


# As a wrong value, it used to be quoted back in the error message: gigabytes of repr.
BOMB = f"---\nsandbox: {_bomb()}\n---\n# Bomb\n"
BOMB_UNDER_BUDGETS = f"---\nbudgets:\n  max_tasks: {_bomb()}\n---\n# Bomb\n"


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))


def seed(path: Path, url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "swarm", "seed", str(path), "--redis", url],
        capture_output=True,
        text=True,
        timeout=60,
        env=os.environ.copy(),
        preexec_fn=_limit_memory,
    )


def swarms_on(client: redis.Redis) -> tuple[set[str], set[str]]:
    """The index and every swarm's meta key: what a seed, whole or half done, would add to
    (dbsize is no measure on a shared database, where worker records expire meanwhile)."""
    return set(client.zrange("swarm:index", 0, -1)), set(client.scan_iter("swarm:{*}:meta"))


@pytest.fixture
def board_state(real_redis: redis.Redis) -> Iterator[tuple[set[str], set[str]]]:
    yield swarms_on(real_redis)


HOSTILE = {
    "alias_bomb": BOMB,
    "alias_bomb_in_budgets": BOMB_UNDER_BUDGETS,
    "deep_flow_nesting": "---\nname: " + "[" * 100_000 + "]" * 100_000 + "\n---\n# Deep\n",
    "deep_block_nesting": "---\n" + "".join(" " * i + "a:\n" for i in range(700)) + "---\n# D\n",
    "deep_flow_under_16k": "---\nname: " + "[" * 7_000 + "]" * 7_000 + "\n---\n# Deep\n",
    "deep_block_under_16k": "---\n" + "".join(" " * i + "a:\n" for i in range(150)) + "---\n# D\n",
    "many_nodes_under_16k": "---\nname: [" + "1, " * 5_000 + "]\n---\n# Many\n",
    "long_wrong_value_under_16k": "---\nsandbox: " + "k" * 15_000 + "\n---\n# T\n",
    "huge_front_matter": "---\nname: x\n" + "# comment\n" * 2_000 + "---\n# T\n",
    "many_nodes": "---\nname: [" + "1, " * 40_000 + "]\n---\n# Many\n",
    "tags_line": "# T\n\n## Tasks\n\n- a " + "[tags:" * (MAX_FILE // 6) + "\n",
    "spaces_in_task": "# T\n\n## Tasks\n\n- a" + " " * MAX_FILE + "x\n",
    "huge_integer": "---\nbudgets:\n  max_tasks: " + "9" * 100_000 + "\n---\n# T\n",
    "impossible_date": "---\nname: 2001-13-45\n---\n# T\n",
    "tiny_half_life": "---\npheromone:\n  half_life_s: 1.0e-310\n---\n# T\n\nText.\n",
    "small_half_life": "---\npheromone:\n  half_life_s: 1.0e-300\n---\n# T\n\nText.\n",
    "huge_deadline": "---\nbudgets:\n  deadline_s: 1.0e+300\n---\n# T\n\nText.\n",
    "huge_lease": "---\nbudgets:\n  lease_s: 1.0e+300\n---\n# T\n\nText.\n",
    "huge_alpha": "---\npheromone:\n  alpha: 1.0e+300\n---\n# T\n\nText.\n",
    "long_wrong_value": "---\nsandbox: " + "k" * 200_000 + "\n---\n# T\n",
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_purpose_is_refused_in_one_line(
    case: str,
    tmp_path: Path,
    redis_url: str,
    real_redis: redis.Redis,
    board_state: tuple[set[str], set[str]],
) -> None:
    path = tmp_path / "purpose.md"
    path.write_text(HOSTILE[case])
    assert path.stat().st_size <= 256 * 1024
    proc = seed(path, redis_url)
    assert proc.returncode == 1, proc.stdout
    assert "Traceback" not in proc.stderr and "Error" in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and len(lines[0]) < 400, proc.stderr[:2000]
    assert "purpose.md" in lines[0]
    assert swarms_on(real_redis) == board_state


@pytest.mark.parametrize("ending", ["\r", "\r\n", "\n"])
def test_every_line_ending_keeps_the_front_matter(
    ending: str, tmp_path: Path, redis_url: str, real_redis: redis.Redis
) -> None:
    text = (
        "---\nname: endings\nbudgets:\n  max_tasks: 7\n---\n# Line endings\n\nText.\n\n"
        "## Tasks\n\n- one [tags: a]\n- two\n"
    )
    path = tmp_path / "purpose.md"
    path.write_bytes(text.replace("\n", ending).encode())
    proc = seed(path, redis_url)
    assert proc.returncode == 0, proc.stderr
    sid = proc.stdout.strip()
    try:
        assert sid.startswith("endings-")
        status = subprocess.run(
            [
                sys.executable,
                "-m",
                "swarm",
                "status",
                "--json",
                "--redis",
                redis_url,
                "--swarm",
                sid,
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        data = json.loads(status.stdout)
        assert data["title"] == "Line endings"
        assert data["budgets"]["max_tasks"] == 7 and data["tasks"] == 3
    finally:
        delete_swarm(real_redis, sid)


@pytest.mark.parametrize(
    "purpose",
    [
        make_purpose(tuning=Tuning(half_life_s=1e-310)),
        make_purpose(tuning=Tuning(initial=float("inf"))),
        make_purpose(tuning=Tuning(alpha=float("nan"))),
        make_purpose(budgets=Budgets(deadline_s=1e300)),
        make_purpose(budgets=Budgets(lease_s=1e300)),
    ],
)
def test_board_checks_ranges_before_writing(purpose: object, client: redis.Redis) -> None:
    from swarm.board import Board
    from swarm.purpose import PurposeError

    before = swarms_on(client)
    with pytest.raises(PurposeError, match="must be"):
        Board.seed(client, purpose)  # type: ignore[arg-type]
    assert swarms_on(client) == before
