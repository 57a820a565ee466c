"""`swarm export` (json, md) and `swarm rm`: the whole trace out, every key gone."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from click.testing import CliRunner

from swarm.board import Board, BoardError
from swarm.cli import cli
from swarm.minds.sim import SimConfig, SimMind
from swarm.purpose import Budgets
from swarm.trace import CHUNK, delete_swarm, export_swarm, to_markdown, walk
from swarm.worker import Worker, WorkerConfig
from tests.conftest import FakeClock, make_purpose
from tests.test_watch import bulk_tree


def swarm_keys(client: redis.Redis, sid: str) -> list[str]:
    """Every key of one swarm, by a scan: fine in a test, never in the product."""
    return list(client.scan_iter(match=f"swarm:{{{sid}}}:*", count=1000))


@pytest.fixture
def boards(real_redis: redis.Redis) -> Iterator[list[Board]]:
    made: list[Board] = []
    yield made
    for board in made:
        delete_swarm(real_redis, board.id)


@pytest.fixture
def finished(real_redis: redis.Redis, boards: list[Board]) -> Board:
    """A small swarm run to its answer by two in-process sim workers."""
    board = Board.seed(real_redis, make_purpose(tasks=("a", "b")))
    boards.append(board)
    board.inject("c", "person:ann")
    cfg = WorkerConfig(swarm_id=board.id, burst=True)
    workers = [Worker(real_redis, SimMind(SimConfig(branch=2, depth=2)), cfg) for _ in range(2)]
    threads = [threading.Thread(target=w.run, kwargs={"install_signals": False}) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert board.answer() is not None
    return board


def flatten(tree: dict[str, Any]) -> list[dict[str, Any]]:
    out, stack = [], [tree]
    while stack:
        task = stack.pop()
        out.append(task)
        stack.extend(reversed(task["children"]))
    return out


def test_export_json_has_the_whole_swarm(finished: Board) -> None:
    data = json.loads(json.dumps(export_swarm(finished.client, finished.id)))
    st = finished.status()
    tasks = flatten(data["tree"])
    assert data["format"] == "swarm-export/1" and data["swarm"] == finished.id
    assert data["answer"] == finished.answer() and data["state"] == "done"
    assert data["purpose"] == "Test purpose\n\nDo the thing."
    assert len(tasks) == data["task_count"] == st["tasks"] == 1 + 3 + 6
    assert all(t["state"] == "done" and t["result"] for t in tasks)
    assert [c["title"] for c in data["tree"]["children"]] == ["a", "b", "c"]
    assert next(t for t in tasks if t["title"] == "c")["injected_by"] == "person:ann"
    assert len(data["events"]) == finished.client.xlen(finished.keys.events)
    completed = [e["task"] for e in data["events"] if e["type"] == "completed"]
    assert sorted(completed) == sorted(t["id"] for t in tasks)  # every result, once
    assert data["budgets"]["tasks"] == {"spent": 10, "limit": 200}
    assert data["budgets"]["tokens"]["spent"] == st["tokens"] > 0
    assert data["budgets"]["depth"]["spent"] == 2 and data["counts"]["done"] == 10


def test_export_markdown_reads_top_down(finished: Board) -> None:
    md = to_markdown(export_swarm(finished.client, finished.id))
    assert md.startswith("# Test purpose\n")
    answer_at, tasks_at, events_at = (
        md.index("## Answer"),
        md.index("## Tasks"),
        md.index("## Events"),
    )
    assert answer_at < tasks_at < events_at
    assert finished.answer() in md  # type: ignore[operator]
    assert "- **#0 Test purpose**" in md and "  - **#1 a**" in md and "injected by person:ann" in md
    assert "| tasks | 10 | 200 |" in md
    assert md.count("| completed |") == 10


def test_export_cli_picks_the_format_from_the_file(
    finished: Board, tmp_path: Path, redis_url: str
) -> None:
    runner = CliRunner()
    base = ["export", "--redis", redis_url, "--swarm", finished.id]
    md = runner.invoke(cli, [*base, "-o", str(tmp_path / "trace.md")])
    assert md.exit_code == 0, md.output
    assert (tmp_path / "trace.md").read_text().startswith("# Test purpose")
    js = runner.invoke(cli, [*base, "--format", "json"])
    assert json.loads(js.stdout)["swarm"] == finished.id


def test_rm_refuses_a_running_swarm_unless_forced(
    real_redis: redis.Redis, boards: list[Board], redis_url: str
) -> None:
    board = Board.seed(real_redis, make_purpose(tasks=("a", "b")))
    other = Board.seed(real_redis, make_purpose(tasks=("x",)))
    boards += [board, other]
    board.heartbeat("w1", {"host": "h"}, ttl_s=60)
    board.inject("c", "person:ann")  # a control write leaves its request id behind
    assert real_redis.exists(board.keys.requests, board.keys.requests_until) == 2
    runner = CliRunner()
    refused = runner.invoke(cli, ["rm", board.id, "--redis", redis_url])
    assert refused.exit_code == 1 and "is running" in refused.output and "--force" in refused.output
    assert board.state().value == "running"
    forced = runner.invoke(cli, ["rm", board.id, "--force", "--redis", redis_url])
    assert forced.exit_code == 0, forced.output
    assert swarm_keys(real_redis, board.id) == []  # tasks, lists, meta, events, worker hashes
    assert real_redis.zscore("swarm:index", board.id) is None
    assert other.state().value == "running" and len(swarm_keys(real_redis, other.id)) > 3
    again = runner.invoke(cli, ["rm", board.id, "--redis", redis_url])
    assert again.exit_code == 1 and "no swarm" in again.output


def test_rm_of_a_finished_swarm(finished: Board, redis_url: str) -> None:
    result = CliRunner().invoke(cli, ["rm", finished.id, "--redis", redis_url])
    assert result.exit_code == 0 and "removed" in result.output
    assert swarm_keys(finished.client, finished.id) == []


def test_walk_export_and_rm_cross_pipeline_chunks(
    real_redis: redis.Redis, boards: list[Board]
) -> None:
    board = Board.seed(real_redis, make_purpose(budgets=Budgets(max_depth=8)), clock=FakeClock())
    boards.append(board)
    n = 2 * CHUNK + 500
    bulk_tree(real_redis, board, n, 7)
    assert len(walk(real_redis, board.keys, hashes=False)) == n + 1
    data = export_swarm(real_redis, board.id)
    assert data["task_count"] == len(flatten(data["tree"])) == n + 1
    existing = len(swarm_keys(real_redis, board.id))
    assert existing > n + 1 and delete_swarm(real_redis, board.id) == existing
    assert swarm_keys(real_redis, board.id) == []


def test_export_of_a_missing_swarm(real_redis: redis.Redis) -> None:
    with pytest.raises(BoardError, match="no swarm"):
        export_swarm(real_redis, "no-such-swarm")
