"""A swarm whose mind asks for code gets real sandbox output into its answers (RQ + bwrap)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid

import pytest
import redis

from swarm.board import Board
from swarm.config import redis_settings
from swarm.minds.sim import SimMind, parse_sim_spec
from swarm.sandbox.client import executors_serving, runner_factory
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
        # Code is offered only once an executor serves the queue: wait for it to register.
        deadline = time.monotonic() + 20
        while not executors_serving(redis.Redis.from_url(redis_url), queue):
            assert time.monotonic() < deadline and executor.poll() is None, "no executor"
            time.sleep(0.05)
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


def test_code_is_not_offered_when_no_executor_serves_the_queue(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SWARM_EXEC_QUEUE", f"swarm-exec-nobody-{uuid.uuid4().hex[:6]}")
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
    started = time.monotonic()
    assert worker.run(install_signals=False) == 0
    assert time.monotonic() - started < 10  # no job waits for an executor that is not there
    assert board.answer() == "leaf alpha | leaf be"  # answered without code, nothing failed
