"""Many claimants, one task: exactly one wins (threads and processes, real Redis)."""

from __future__ import annotations

import multiprocessing as mp
import threading
from typing import Any

import redis

from swarm.board import Board, ClaimStatus
from tests.conftest import make_purpose


def _claim_in_process(url: str, swarm_id: str, worker: str, start: Any, out: Any) -> None:
    client = redis.Redis.from_url(url, decode_responses=True)
    board = Board(client, swarm_id)
    start.wait()
    outcome = board.claim(worker)
    out.put((worker, outcome.status.value, outcome.claim.fence if outcome.claim else 0))


def test_threads_race_for_one_task(real_redis: redis.Redis) -> None:
    board = Board.seed(real_redis, make_purpose())
    barrier = threading.Barrier(16)
    wins: list[str] = []

    def go(n: int) -> None:
        mine = Board(redis.Redis(connection_pool=real_redis.connection_pool), board.id)
        barrier.wait()
        if mine.claim(f"t{n}").status is ClaimStatus.OK:
            wins.append(f"t{n}")

    threads = [threading.Thread(target=go, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1
    assert board.task("0").owner == wins[0]  # type: ignore[union-attr]
    claimed = [f for _, f in board.events() if f["type"] == "claimed"]
    assert len(claimed) == 1


def test_processes_race_for_one_task(real_redis: redis.Redis, redis_url: str) -> None:
    board = Board.seed(real_redis, make_purpose())
    ctx = mp.get_context("spawn")
    start, out = ctx.Event(), ctx.Queue()
    procs = [
        ctx.Process(target=_claim_in_process, args=(redis_url, board.id, f"p{n}", start, out))
        for n in range(8)
    ]
    for p in procs:
        p.start()
    start.set()
    results = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(30)
    winners = [r for r in results if r[1] == "ok"]
    assert len(winners) == 1
    assert sorted(r[1] for r in results).count("empty") == 7


def test_many_tasks_many_threads_each_claimed_once(real_redis: redis.Redis) -> None:
    from swarm.protocol import Subtask
    from swarm.purpose import Budgets

    board = Board.seed(real_redis, make_purpose(budgets=Budgets(max_children=32)))
    root = board.claim("seed").claim
    assert root is not None
    board.split(root, "seed", [Subtask(f"t{i}") for i in range(30)])
    got: list[str] = []
    lock = threading.Lock()

    def drain(n: int) -> None:
        mine = Board(real_redis, board.id)
        while True:
            outcome = mine.claim(f"d{n}")
            if outcome.status is not ClaimStatus.OK or outcome.claim is None:
                return
            with lock:
                got.append(outcome.claim.task.id)

    threads = [threading.Thread(target=drain, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got, key=int) == [str(i) for i in range(1, 31)]
