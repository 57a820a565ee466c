"""A swarm whose mind asks for code gets real sandbox output into its answers (RQ + bwrap)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest
import redis

from swarm.board import Board
from swarm.config import redis_settings
from swarm.minds.sim import SimMind, parse_sim_spec
from swarm.sandbox.client import runner_factory
from swarm.worker import Worker, WorkerConfig
from tests.conftest import make_purpose

pytestmark = pytest.mark.slow


def test_sim_code_swarm_runs_code_in_the_local_jail(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue = f"swarm-exec-test-{uuid.uuid4().hex[:6]}"
    env = {**os.environ, "SWARM_EXEC_QUEUE": queue}
    executor = subprocess.Popen(
        [sys.executable, "-m", "swarm", "executor", "--redis", redis_url, "--sandbox", "local"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        monkeypatch.setenv("SWARM_EXEC_QUEUE", queue)
        client = redis.Redis.from_url(redis_url, decode_responses=True)
        board = Board.seed(client, make_purpose(tasks=("alpha", "be")))
        settings = redis_settings(redis_url, env={})
        assert settings is not None
        worker = Worker(
            client,
            SimMind(parse_sim_spec("branch=2,depth=1,code=1")),
            WorkerConfig(swarm_id=board.id, burst=True, slots=2),
            code_runner=runner_factory(settings),
        )
        assert worker.run(install_signals=False) == 0
        # The sim mind runs print(len(title)) in the jail and quotes the output.
        assert board.answer() == "leaf alpha [ran: 5] | leaf be [ran: 2]"
    finally:
        executor.terminate()
        executor.wait(20)
