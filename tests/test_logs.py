"""Logs an operator can read: one line per task outcome, one per Redis outage and recovery,
as text or as JSON (SWARM_LOG_FORMAT=json), from real `swarm worker` processes."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import redis

from scripts._servers import start_server
from swarm import logs
from swarm.board import Board
from swarm.trace import delete_swarm
from tests.conftest import make_purpose


def _worker(url: str, *args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "swarm", "worker", "--redis", url, *args],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_json_lines_carry_the_fields() -> None:
    out = io.StringIO()
    logs.setup(env={"SWARM_LOG_FORMAT": "json", "SWARM_LOG_LEVEL": "info"}, stream=out)
    log = logging.getLogger("swarm.test")
    try:
        logs.task_outcome(
            log, "failed", swarm="s", task="t1", worker="w", tokens=3, seconds=1.234,
            detail="bad\x1b[2J\nline",
        )  # fmt: skip
        log.debug("not at info")
    finally:
        logs.setup()
    (line,) = out.getvalue().splitlines()
    doc = json.loads(line)
    assert doc["level"] == "info" and doc["logger"] == "swarm.test"
    assert doc["outcome"] == "failed" and doc["task"] == "t1" and doc["swarm"] == "s"
    assert doc["tokens"] == 3 and doc["seconds"] == 1.23
    # Model text is shown literally: no escape sequence or newline reaches the log.
    assert doc["detail"] == "bad\\x1b[2J line"
    assert doc["message"] == "task t1 failed (3 tokens, 1.23 s): bad\\x1b[2J line"


def test_text_lines_off_a_terminal_are_whole_lines() -> None:
    out = io.StringIO()
    logs.setup(env={"SWARM_LOG_LEVEL": "INFO"}, stream=out)
    try:
        logs.task_outcome(logging.getLogger("swarm.worker"), "answered", swarm="s", task="t2",
                          worker="w", tokens=120, seconds=2.5)  # fmt: skip
    finally:
        logs.setup()
    (line,) = out.getvalue().splitlines()
    assert line.endswith(" INFO swarm.worker: task t2 answered (120 tokens, 2.50 s)")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SWARM_LOG_FORMAT": "xml"}, "SWARM_LOG_FORMAT='xml' is unknown: use text or json"),
        ({"SWARM_LOG_LEVEL": "loud"}, "SWARM_LOG_LEVEL='LOUD' is not a level"),
    ],
)
def test_a_bad_setting_is_one_line(env: dict[str, str], message: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "swarm", "worker", "--redis", "redis://127.0.0.1:1/0"],
        env={**os.environ, **env}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1
    assert len(done.stderr.strip().splitlines()) == 1 and message in done.stderr


def test_an_outage_is_one_line_down_and_one_line_up(caplog: pytest.LogCaptureFixture) -> None:
    now = [100.0]
    outage = logs.Outage(logging.getLogger("swarm.test"), clock=lambda: now[0])
    with caplog.at_level(logging.INFO, "swarm.test"):
        outage.ok()
        for _ in range(5):
            outage.failed(redis.ConnectionError("Connection refused"))
        now[0] += 3.25
        outage.ok()
        outage.ok()
    assert [r.getMessage() for r in caplog.records] == [
        "Redis unavailable (Connection refused); retrying with backoff",
        "Redis is back after 3.2 s",
    ]


@pytest.mark.slow
def test_a_worker_logs_every_task_outcome_as_json(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    board = Board.seed(client, make_purpose())
    try:
        proc = _worker(
            redis_url, "--swarm", board.id, "--burst", "--mind", "sim:branch=2,depth=1",
            env={"SWARM_LOG_FORMAT": "json", "SWARM_LOG_LEVEL": "INFO"},
        )  # fmt: skip
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert board.state().value == "done"
        records = [json.loads(line) for line in err.splitlines()]
        tasks = [r for r in records if r.get("event") == "task"]
        outcomes = Counter(r["outcome"] for r in tasks)
        # The root split in two, each leaf answered, then the root's synthesis answered.
        assert outcomes == {"claimed": 4, "answered": 3, "split": 1}, outcomes
        ids = {e["task"] for _, e in board.events(count=1000) if e.get("task")}
        assert {r["task"] for r in tasks} == ids
        assert all(r["swarm"] == board.id and r["seconds"] >= 0 for r in tasks)
        split = next(r for r in tasks if r["outcome"] == "split")
        assert split["detail"] == "into 2 subtasks" and split["tokens"] > 0
    finally:
        delete_swarm(client, board.id)
        client.close()


@pytest.mark.slow
def test_a_worker_says_once_that_redis_went_away_and_once_that_it_is_back(
    tmp_path: Path,
) -> None:
    server = start_server(kind="redis", directory=tmp_path, aof=True)
    try:
        client = server.client()
        board = Board.seed(client, make_purpose(tasks=tuple(f"t{n}" for n in range(15))))
        proc = _worker(
            server.url, "--swarm", board.id, "--burst", "--mind", "sim:branch=2,depth=1,think=0.2",
            env={"SWARM_LOG_LEVEL": "INFO"},
        )  # fmt: skip
        # Redis goes away mid-swarm: once the worker has answered something (seconds of work
        # are left), rather than after a fixed wait that a loaded machine may outlast.
        deadline = time.monotonic() + 30
        while board.status()["by_state"]["done"] == 0:
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        client.close()
        server.kill()
        time.sleep(3.0)  # shorter than redis-py's own retries: noticed all the same
        server.start()
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        down = [line for line in err.splitlines() if "Redis unavailable" in line]
        up = [line for line in err.splitlines() if "Redis is back after" in line]
        assert len(down) == 1 and len(up) == 1, err[-3000:]
        assert " WARNING swarm.redis: Redis unavailable (" in down[0]
    finally:
        server.stop()
