"""The suite leaves no trace: tests/conftest.py run on small suites against a server of its own.

Each case runs pytest in a subprocess with this repository's conftest and a throwaway server
(SWARM_TEST_PORT), then looks at what is left there.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from swarm.board import Board
from tests.conftest import make_purpose

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
from _servers import Server, start_server

CONFTEST = Path(__file__).resolve().parent / "conftest.py"
DB = 5

WRITES_AND_WALKS_AWAY = """
import subprocess, sys
from swarm.board import Board
from conftest import make_purpose

def test_seeds_and_forgets(real_redis):
    Board.seed(real_redis, make_purpose(tasks=("a", "b"))).claim("w")

def test_a_swarm_process_seeds_and_forgets(redis_url):
    purpose = "{purpose}"
    done = subprocess.run([sys.executable, "-m", "swarm", "seed", purpose, "--redis", redis_url])
    assert done.returncode == 0

def test_fakeredis_too(client):
    Board.seed(client, make_purpose())
"""

LEAKS_FROM_A_SESSION_FIXTURE = """
import pytest, redis

@pytest.fixture(scope="session")
def stray(redis_url):
    redis.Redis.from_url(redis_url).set("stray", "1")

def test_uses_it(stray):
    pass
"""

WRITES_INTO_DB0 = """
import redis
from swarm.board import Board
from conftest import make_purpose

def test_writes_where_real_swarms_live(redis_url):
    db0 = redis.Redis.from_url(redis_url.rsplit("/", 1)[0] + "/0", decode_responses=True)
    Board.seed(db0, make_purpose(), swarm_id="oops-in-db0")
"""


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    srv = start_server()
    yield srv
    srv.stop()


@pytest.fixture
def db(server: Server) -> Iterator[redis.Redis]:
    client = redis.Redis(port=server.port, db=DB, decode_responses=True)
    yield client
    client.flushall()  # the server is this module's own
    client.close()


def run_suite(tmp_path: Path, server: Server, source: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "conftest.py").write_text(CONFTEST.read_text())
    (tmp_path / "test_inner.py").write_text(source)
    env = {**os.environ, "SWARM_TEST_PORT": str(server.port), "SWARM_TEST_DB": str(DB)}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), env.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )


def db0(server: Server) -> redis.Redis:
    return redis.Redis(port=server.port, db=0, decode_responses=True)


def test_tests_that_write_and_walk_away_leave_nothing(
    tmp_path: Path, server: Server, db: redis.Redis
) -> None:
    Board.seed(db0(server), make_purpose(), swarm_id="a-real-swarm")  # someone's real work
    before = sorted(db0(server).scan_iter())
    purpose = Path(__file__).resolve().parent.parent / "examples" / "purpose.md"
    done = run_suite(tmp_path, server, WRITES_AND_WALKS_AWAY.format(purpose=purpose))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 passed" in done.stdout  # fakeredis and the real server for `client`
    assert db.dbsize() == 0  # the suite's database is empty again, marker included
    assert sorted(db0(server).scan_iter()) == before  # and db 0 is untouched


def test_a_leak_past_every_test_fails_the_run(
    tmp_path: Path, server: Server, db: redis.Redis
) -> None:
    done = run_suite(tmp_path, server, LEAKS_FROM_A_SESSION_FIXTURE)
    assert done.returncode != 0
    assert "the tests left 1 keys" in done.stdout and "stray" in done.stdout
    assert db.dbsize() == 0  # and cleaned up all the same


def test_a_swarm_written_into_db0_fails_the_run(
    tmp_path: Path, server: Server, db: redis.Redis
) -> None:
    done = run_suite(tmp_path, server, WRITES_INTO_DB0)
    assert done.returncode != 0
    assert "wrote swarms into db 0" in done.stdout and "oops-in-db0" in done.stdout


def test_a_database_with_someone_elses_keys_is_refused_untouched(
    tmp_path: Path, server: Server, db: redis.Redis
) -> None:
    db.set("precious", "data")
    done = run_suite(tmp_path, server, "def test_x(redis_url):\n    pass\n")
    assert done.returncode != 0
    assert "holds keys that are not the test suite's" in done.stdout + done.stderr
    assert db.get("precious") == "data" and db.dbsize() == 1
