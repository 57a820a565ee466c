"""A worker started before its model waits, says once what to run, and starts by itself when
the model appears (the compose stack's workers, whose models mount is read-only)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import redis

from swarm.board import Board
from swarm.trace import delete_swarm
from tests.conftest import make_purpose
from tests.conftest_models import tiny_model_dir

pytestmark = pytest.mark.slow

HINT = "docker compose run --rm model pull"


def _lines(proc: subprocess.Popen[str], into: list[str]) -> threading.Thread:
    def read() -> None:
        assert proc.stderr is not None
        into.extend(proc.stderr)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    return reader


def _wait_for(lines: list[str], text: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not any(text in line for line in lines):
        assert time.monotonic() < deadline, f"no {text!r} in: {''.join(lines)[-2000:]}"
        time.sleep(0.1)


def test_a_worker_waits_for_its_model_then_starts(tmp_path: Path, redis_url: str) -> None:
    tiny = tiny_model_dir()
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    board = Board.seed(client, make_purpose())
    board.cancel(None, "test")  # closed: once it thinks, the worker finds nothing and exits
    env = {
        **os.environ,
        "SWARM_HOME": str(tmp_path),
        "SWARM_MIND": "onnx",
        "SWARM_PULL_COMMAND": HINT,
        "SWARM_LOG_LEVEL": "INFO",
    }
    env.pop("SWARM_MODEL", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "swarm", "worker", "--redis", redis_url, "--swarm", board.id,
         "--burst", "--wait-for-model"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    lines: list[str] = []
    reader = _lines(proc, lines)
    try:
        _wait_for(lines, "waiting for it", timeout=60)
        # A pull under way (as `swarm model pull` leaves it) is not a model yet.
        partial = tmp_path / "models" / ".phi3-mini-4k-cpu.partial"
        shutil.copytree(tiny, partial / "cpu_and_mobile" / "tiny")
        time.sleep(7)  # more than one look (every 5 s)
        assert proc.poll() is None, "".join(lines)
        partial.rename(tmp_path / "models" / "phi3-mini-4k-cpu")
        assert proc.wait(120) == 0, "".join(lines)
    finally:
        if proc.poll() is None:
            proc.kill()
        reader.join(10)
        delete_swarm(client, board.id)
        client.close()
    said = [line for line in lines if "no model found" in line]
    assert len(said) == 1, "".join(lines)
    assert f"run `{HINT}`" in said[0]
    assert any("the model is there now; starting" in line for line in lines)
