"""`swarm health worker|executor`, the containers' healthchecks, on the real Redis."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis
from rq import Queue, Worker

from swarm.board import Board
from swarm.health import Health, executor_health, worker_health
from swarm.trace import delete_swarm
from tests.conftest import make_purpose


@pytest.fixture
def board(real_redis: redis.Redis) -> Any:
    made = Board.seed(real_redis, make_purpose())
    yield made
    delete_swarm(real_redis, made.id)


def _other_running(client: Any, board: Board) -> None:
    """Other tests' swarms on this database must not make the worker look idle or stuck."""
    from swarm.board import list_swarms

    for sid in list_swarms(client, 100_000):
        if sid != board.id and client.hget(Board(client, sid).keys.meta, "state") != "done":
            delete_swarm(client, sid)


def test_a_worker_is_healthy_while_its_heartbeat_is_fresh(
    real_redis: redis.Redis, board: Board
) -> None:
    _other_running(real_redis, board)
    now = board.now_ms() / 1000
    assert not worker_health(real_redis, "box-a", now=now).ok
    board.heartbeat("box-a-1-ab", {"host": "box-a"}, ttl_s=60, now=now)
    board.heartbeat("box-b-1-cd", {"host": "box-b"}, ttl_s=60, now=now)
    health = worker_health(real_redis, "box-a", now=now + 1)
    assert health.ok and health.why == f"worker box-a-1-ab beats on swarm {board.id}"
    # Stuck: the same worker, its heartbeat more than two and a half beats old.
    stuck = worker_health(real_redis, "box-a", now=now + 60)
    assert not stuck.ok and stuck.why.startswith("no fresh heartbeat from host box-a on ")


def test_with_no_swarm_to_serve_a_worker_with_a_model_is_idle_and_healthy(
    real_redis: redis.Redis, board: Board
) -> None:
    _other_running(real_redis, board)
    board.cancel(None, "test")
    for host in ("box-a", "box-z"):
        assert worker_health(real_redis, host) == Health(True, "idle: no swarm wants work")
    missing = worker_health(real_redis, "box-a", model_check=lambda: "no model found; run X")
    assert not missing.ok and missing.why == "no model found; run X"


def test_the_command_says_why_in_one_line(tmp_path: Path, redis_url: str) -> None:
    env = {
        **os.environ,
        "SWARM_REDIS_URL": redis_url,
        "SWARM_MIND": "onnx",
        "SWARM_HOME": str(tmp_path),
        "SWARM_PULL_COMMAND": "docker compose run --rm model pull",
    }
    env.pop("SWARM_MODEL", None)
    done = subprocess.run(
        [sys.executable, "-m", "swarm", "health", "worker"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stdout.startswith("unhealthy: no model found; run `docker compose run --rm model")
    assert len(done.stdout.splitlines()) == 1
    unreachable = {**env, "SWARM_REDIS_URL": "redis://127.0.0.1:1/0", "SWARM_MIND": "sim:"}
    done = subprocess.run(
        [sys.executable, "-m", "swarm", "health", "executor"],
        env=unreachable, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1 and done.stdout.startswith("unhealthy: cannot connect to Redis")


def test_an_executor_is_healthy_while_registered_and_alive(redis_url: str) -> None:
    conn = redis.Redis.from_url(redis_url)
    queue = Queue(f"swarm-exec-health-{uuid.uuid4().hex[:6]}", connection=conn)
    assert not executor_health(conn, queue.name, socket.gethostname()).ok
    rq_worker = Worker([queue], connection=conn)
    rq_worker.register_birth()
    try:
        here = executor_health(conn, queue.name, socket.gethostname())
        assert here.ok and here.why == f"1 executor process(es) on queue {queue.name}"
        assert not executor_health(conn, queue.name, "another-host").ok
        gone = executor_health(conn, queue.name, socket.gethostname(), alive=lambda pid: False)
        assert not gone.ok and gone.why.endswith("are gone")
        # The command, as the container's healthcheck runs it.
        done = subprocess.run(
            [sys.executable, "-m", "swarm", "health", "executor", "--queue", queue.name],
            env={**os.environ, "SWARM_REDIS_URL": redis_url}, capture_output=True, text=True,
            timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
    finally:
        rq_worker.register_death()
        conn.close()
