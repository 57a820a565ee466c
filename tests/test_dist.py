"""`make dist` builds a wheel that installs this project (distribution swarm-blackboard, import
package swarm) into a fresh virtual environment, whose `swarm worker` then joins a swarm."""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest
import redis

from swarm.board import Board
from swarm.trace import delete_swarm
from tests.conftest import make_purpose

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

REPO = Path(__file__).resolve().parents[1]


def _run(argv: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=500, **kw)  # type: ignore[call-overload]
    assert done.returncode == 0, f"{argv} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done


def test_the_built_wheel_installs_this_project_and_runs_a_worker(
    tmp_path: Path, redis_url: str
) -> None:
    dist = tmp_path / "dist"
    built = _run(["make", "-s", "dist", f"VENV={sys.prefix}", f"DIST={dist}"], cwd=REPO)
    (wheel,) = dist.glob("swarm_blackboard-*.whl")
    assert built.stdout.strip() == str(wheel)

    # A clean environment: no system packages, no PYTHONPATH, run from elsewhere.
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    bare = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    _run([str(env_dir / "bin" / "pip"), "install", "-q", str(wheel)], env=bare, cwd=tmp_path)
    where = _run(
        [str(env_dir / "bin" / "python"), "-c", "import swarm; print(swarm.__file__)"],
        env=bare, cwd=tmp_path,
    )  # fmt: skip
    assert where.stdout.strip().startswith(str(env_dir))

    client = redis.Redis.from_url(redis_url, decode_responses=True)
    board = Board.seed(client, make_purpose())
    try:
        _run(
            [str(env_dir / "bin" / "swarm"), "worker", "--redis", redis_url, "--swarm", board.id,
             "--burst", "--mind", "sim:branch=2,depth=1"],
            env=bare, cwd=tmp_path,
        )  # fmt: skip
        assert board.state().value == "done"
        assert board.answer() == "leaf Test purpose.1 | leaf Test purpose.2"
    finally:
        delete_swarm(client, board.id)
        client.close()
