"""A person in the loop: inject, boost, cancel, pause and resume, on the board (real Redis and
fakeredis) and through the CLI against a swarm worked by real `swarm worker` processes."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from click.testing import CliRunner

from swarm.board import BOOST_OVER_TOP, Board, BoardError
from swarm.cli import cli
from swarm.pheromone import level
from swarm.protocol import Subtask
from swarm.purpose import Budgets
from swarm.task import Kind, State
from swarm.trace import delete_swarm
from tests.conftest import FakeClock, claim

WHO = "person:ann"


def last_event(board: Board) -> dict[str, str]:
    return dict(board.client.xrevrange(board.keys.events, "+", "-", count=1)[0][1])


# -- inject on the board ----------------------------------------------------------------------


def test_inject_under_the_waiting_root(seeded: Any) -> None:
    board = seeded(tasks=("a", "b"))
    tid = board.inject("c: nesting boxes", WHO, detail="which boxes", tags=["diy", "birds"])
    task = board.task(tid)
    assert task is not None
    assert (task.parent, task.depth, task.state, task.kind) == ("0", 1, State.OPEN, Kind.WORK)
    assert task.tags == ("diy", "birds") and task.detail == "which boxes"
    assert board.child_ids("0")[-1] == tid
    assert board.client.hget(board.keys.task("0"), "pending") == "3"
    st = board.status()
    assert st["tasks"] == 4 and st["by_state"]["open"] == 3
    assert board.client.zscore(board.keys.open, tid) is not None
    assert board.client.hget(board.keys.traits, tid).endswith("|diy,birds")
    ev = last_event(board)
    assert (ev["type"], ev["task"], ev["worker"], ev["parent"]) == ("injected", tid, WHO, "0")


def test_parent_waits_for_the_injected_task(seeded: Any) -> None:
    board = seeded(tasks=("a",))
    extra = board.inject("b", WHO)
    first = claim(board)
    board.complete(first, "w1", "one")
    assert board.task("0").state is State.WAITING
    second = claim(board)
    board.complete(second, "w1", "two")
    root = claim(board)
    assert root.task.id == "0" and root.task.kind is Kind.SYNTHESIZE
    assert {first.task.id, second.task.id} == {"1", extra}


def test_inject_deeper_under_a_split_task(seeded: Any) -> None:
    board = seeded(tasks=("a",))
    a = claim(board)
    board.split(a, "w1", [Subtask("a.1")])
    tid = board.inject("a.extra", WHO, parent="1")
    task = board.task(tid)
    assert task is not None and task.depth == 2 and task.path == ("0", "1")
    assert board.client.hget(board.keys.task("1"), "pending") == "2"


def test_a_person_may_exceed_max_children(seeded: Any) -> None:
    board = seeded(tasks=("a", "b"), budgets=Budgets(max_children=2))
    board.inject("c", WHO)
    assert len(board.child_ids("0")) == 3


def refused(board: Board, match: str, parent: str = "0") -> None:
    before = (board.client.hgetall(board.keys.meta), board.client.xlen(board.keys.events))
    with pytest.raises(BoardError, match=match):
        board.inject("more", WHO, parent=parent)
    after = (board.client.hgetall(board.keys.meta), board.client.xlen(board.keys.events))
    assert after == before  # a refusal changes nothing


def test_inject_refusals_say_why_and_change_nothing(seeded: Any, clock: FakeClock) -> None:
    refused(seeded(), "the root has not been split yet; boost it or wait")
    board = seeded(tasks=("a", "b"))
    refused(board, "task 1 is open, not split", parent="1")
    claim(board)
    claimed = board.client.zrange(board.keys.leases, 0, 0)[0]
    refused(board, f"task {claimed} is claimed, not split", parent=claimed)
    refused(board, "no task 99", parent="99")

    synth = seeded(tasks=("a",))
    board_done = claim(synth)
    synth.complete(board_done, "w1", "x")
    refused(synth, "task 0 is already synthesising")
    refused(synth, "task 1 is done", parent="1")
    synth.complete(claim(synth), "w1", "answer")
    refused(synth, "the swarm is done")

    cancelled = seeded(tasks=("a",))
    cancelled.cancel(None, WHO)
    refused(cancelled, "the swarm is cancelled")

    full = seeded(tasks=("a", "b"), budgets=Budgets(max_tasks=3))
    refused(full, r"task budget spent \(3 of 3\)")

    late = seeded(tasks=("a", "b"), budgets=Budgets(deadline_s=60))
    clock.advance(61)
    claim(late)  # the claim notices the deadline
    refused(late, r"wrapping up \(deadline passed\)")


def test_inject_while_paused_is_allowed(seeded: Any) -> None:
    board = seeded(tasks=("a",))
    assert board.pause(WHO)
    assert board.inject("while paused", WHO)


@pytest.mark.parametrize(
    ("title", "tags", "match"),
    [
        ("   ", (), "needs a title"),
        ("x" * 301, (), "put the rest in --detail"),
        ("ok", ("a", "b", "c", "d", "e"), "at most 4"),
        ("ok", ("a|b",), "bad tag"),
    ],
)
def test_bad_injections_are_refused_before_redis(
    title: str, tags: tuple[str, ...], match: str
) -> None:
    class NoRedis:
        def register_script(self, _: str) -> Any:
            return lambda **_: pytest.fail("reached Redis")

    with pytest.raises(ValueError, match=match):
        Board(NoRedis(), "x").inject(title, WHO, tags=tags)


# -- boost on the board -----------------------------------------------------------------------


def test_default_boost_outweighs_every_other_candidate(seeded: Any, clock: FakeClock) -> None:
    board = seeded(tasks=tuple("abcdefgh"))
    last = board.client.zrange(board.keys.open, 0, 0)[0]
    amount = BOOST_OVER_TOP * max(board.top_pheromone(), 1.0)
    assert board.boost(last, amount, WHO)
    lam = float(board.client.hget(board.keys.meta, "lambda"))
    t_s = (board.now_ms() - int(board.client.hget(board.keys.meta, "created"))) / 1000
    levels = {
        t: level(s, t_s, lam)
        for t, s in board.client.zrange(board.keys.open, 0, -1, withscores=True)
    }
    assert levels[last] / sum(levels.values()) > 0.99
    assert claim(board).task.id == last
    ev = [f for _, f in board.events(count=100) if f["type"] == "boosted"]
    assert ev and ev[0]["worker"] == WHO and ev[0]["task"] == last


# -- through the CLI, against real worker processes ---------------------------------------------

PURPOSE = """---
name: control
sandbox: none
budgets:
  max_tasks: 80
  max_depth: 2
  lease_s: 5
pheromone:
  epsilon: 0
---
# Control test

Be steered.

## Tasks

- a
- b
- c
"""
MIND = "sim:branch=3,depth=2,think=0.25"


def swarm(redis_url: str, *args: str) -> str:
    """Run a CLI command in-process (a person at the keyboard); returns its output."""
    result = CliRunner().invoke(cli, [*args, "--redis", redis_url], env={"USER": "ann"})
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.fixture
def running(tmp_path: Path, redis_url: str, real_redis: redis.Redis) -> Iterator[Any]:
    """start(n) -> (board, worker processes): a seeded swarm worked by n sim workers."""
    made: list[tuple[Board, list[subprocess.Popen[bytes]]]] = []

    def start(n: int) -> tuple[Board, list[subprocess.Popen[bytes]]]:
        purpose = tmp_path / "purpose.md"
        purpose.write_text(PURPOSE)
        sid = swarm(redis_url, "seed", str(purpose)).strip()
        cmd = [sys.executable, "-m", "swarm", "worker", "--redis", redis_url, "--swarm", sid]
        procs = [
            subprocess.Popen([*cmd, "--mind", MIND, "--burst"], stderr=subprocess.PIPE)
            for _ in range(n)
        ]
        made.append((Board(real_redis, sid), procs))
        return made[-1]

    yield start
    for board, procs in made:
        for p in procs:
            p.kill()
            p.wait()
        delete_swarm(real_redis, board.id)


def events(board: Board) -> list[dict[str, str]]:
    return [{"id": eid, **f} for eid, f in board.events(count=100_000)]


def wait_until(predicate: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def claims(board: Board) -> int:
    return sum(e["type"] == "claimed" for e in events(board))


def after(evs: list[dict[str, str]], etype: str) -> list[dict[str, str]]:
    i = next(i for i, e in enumerate(evs) if e["type"] == etype)
    return evs[i + 1 :]


def drained(board: Board) -> bool:
    return bool(board.client.hget(board.keys.meta, "n_claimed") == "0")


@pytest.mark.slow
def test_pause_stops_new_claims_and_resume_goes_on(redis_url: str, running: Any) -> None:
    board, workers = running(2)
    wait_until(lambda: claims(board) >= 3)
    assert "paused" in swarm(redis_url, "pause", "--swarm", board.id)
    wait_until(lambda: drained(board))  # what was held is finished
    time.sleep(0.6)  # workers keep asking while paused
    evs = events(board)
    assert not [e for e in after(evs, "paused") if e["type"] == "claimed"]
    assert [e["worker"] for e in evs if e["type"] == "paused"] == ["person:ann"]
    assert board.state().value == "paused"

    swarm(redis_url, "resume", "--swarm", board.id)
    wait_until(lambda: any(e["type"] == "claimed" for e in after(events(board), "resumed")))
    swarm(redis_url, "cancel", "--all", "--swarm", board.id)
    for w in workers:
        assert w.wait(10) == 0  # --burst workers leave a cancelled swarm
    assert board.state().value == "cancelled"
    cancelled = [e for e in events(board) if e["type"] == "cancelled"]
    assert cancelled[-1]["worker"] == "person:ann"


@pytest.mark.slow
def test_boost_inject_and_cancel_steer_a_running_swarm(redis_url: str, running: Any) -> None:
    board, workers = running(2)
    wait_until(lambda: board.status()["tasks"] >= 7)  # one branch split: several tasks open
    swarm(redis_url, "pause", "--swarm", board.id)
    wait_until(lambda: drained(board))
    open_ids = board.client.zrange(board.keys.open, 0, -1)
    assert len(open_ids) >= 2
    boosted, dropped = open_ids[0], open_ids[-1]  # the least and the most attractive
    dropped_title = board.task(dropped).title

    swarm(redis_url, "cancel", dropped, "--swarm", board.id)
    out = swarm(redis_url, "inject", "nesting boxes", "--tags", "diy", "--swarm", board.id)
    injected = out.split()[2]
    swarm(redis_url, "boost", boosted, "--amount", "1e9", "--swarm", board.id)
    swarm(redis_url, "resume", "--swarm", board.id)

    for w in workers:
        assert w.wait(30) == 0
    evs = events(board)
    first_claim = next(e for e in after(evs, "resumed") if e["type"] == "claimed")
    assert first_claim["task"] == boosted  # the boosted task is taken next
    by_type = {e["type"]: e for e in evs if e["worker"] == "person:ann"}
    assert {"paused", "resumed", "cancelled", "injected", "boosted"} <= set(by_type)
    assert board.task(dropped).state is State.CANCELLED
    assert board.task(injected).state is State.DONE
    answer = board.answer()
    assert answer is not None
    assert "leaf nesting boxes.1" in answer  # the injected task's work reached the answer
    assert f"leaf {dropped_title}" not in answer


def test_cancel_needs_a_task_or_all(redis_url: str) -> None:
    runner = CliRunner()
    neither = runner.invoke(cli, ["cancel", "--redis", redis_url])
    both = runner.invoke(cli, ["cancel", "3", "--all", "--redis", redis_url])
    assert neither.exit_code == both.exit_code == 2
    assert "--all" in neither.output and "not both" in both.output
