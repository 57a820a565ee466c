"""The compose stack's Redis users (workers/redis-users.sh), on a real redis-server of our own.

Each role is tried with what it is for (a worker and an executor run a swarm whose leaves run
code in the jail; the reader watches; the admin seeds) and against what it must not touch.
The ACL file is then rewritten and the server restarted, as every `docker compose up` does:
the stack's users and one an operator saved with ACL SAVE are still there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from scripts._servers import free_port
from swarm.board import Board
from swarm.config import RedisSettings, connect
from swarm.minds.sim import SimMind, parse_sim_spec
from swarm.sandbox.client import executors_serving, runner_factory
from swarm.worker import Worker, WorkerConfig
from tests.conftest import make_purpose

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "workers" / "redis-users.sh"
ROLES = ("admin", "worker", "executor", "reader")
# redis-py retries a refused login (an AuthenticationError is a ConnectionError) with
# backoff, seconds per expected refusal; one try shows the server's answer just as well.
ONCE = Retry(NoBackoff(), 0)

pytestmark = pytest.mark.skipif(
    shutil.which("redis-server") is None, reason="needs redis-server on PATH"
)


@dataclass
class AclServer:
    port: int
    directory: Path
    passwords: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None

    @property
    def acl(self) -> Path:
        return self.directory / "users.acl"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def write_users(self) -> subprocess.CompletedProcess[str]:
        env = {"PATH": os.environ["PATH"]}
        env.update({f"REDIS_{r.upper()}_PASSWORD": p for r, p in self.passwords.items()})
        return subprocess.run(
            ["sh", str(SCRIPT), str(self.acl)], env=env, capture_output=True, text=True
        )

    def start(self) -> None:
        assert self.write_users().returncode == 0
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--dir", str(self.directory), "--aclfile", str(self.acl),
             "--appendonly", "yes", "--appendfsync", "always"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 15
        while True:
            try:
                self.client("admin").close()
                return
            except Exception:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)

    def settings(self, role: str) -> RedisSettings:
        return RedisSettings(self.url, username=f"swarm-{role}", password=self.passwords[role])

    def client(self, role: str) -> Any:
        return connect(self.settings(role), cluster=False)

    def env(self, role: str) -> dict[str, str]:
        return {
            **os.environ,
            "SWARM_REDIS_URL": self.url,
            "SWARM_REDIS_USERNAME": f"swarm-{role}",
            "SWARM_REDIS_PASSWORD": self.passwords[role],
        }


@pytest.fixture
def server(tmp_path: Path) -> Iterator[AclServer]:
    # Odd characters: the file stores hashes, so a password may hold anything.
    passwords = {r: f"{r} pw #{uuid.uuid4().hex} ~&" for r in ROLES}
    srv = AclServer(free_port(), tmp_path, passwords)
    srv.start()
    yield srv
    srv.stop()


def _refused(fn: Any) -> bool:
    try:
        fn()
    except redis.exceptions.NoPermissionError:
        return True
    return False


def test_the_file_holds_hashes_and_the_default_user_is_the_admin(server: AclServer) -> None:
    text = server.acl.read_text()
    for password in server.passwords.values():
        assert password not in text
    assert oct(server.acl.stat().st_mode & 0o777) == "0o600"
    anonymous = redis.Redis(port=server.port, retry=ONCE)
    with pytest.raises(redis.AuthenticationError):
        anonymous.ping()
    for role in ("worker", "executor", "reader"):
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=server.port, password=server.passwords[role], retry=ONCE).ping()
    # A password-only login is the admin's (the default user, which replays the AOF).
    admin = redis.Redis(port=server.port, password=server.passwords["admin"])
    assert admin.acl_whoami() == "default"
    for client in (anonymous, admin):
        client.close()


def test_an_empty_password_stops_the_start(tmp_path: Path) -> None:
    srv = AclServer(0, tmp_path, {r: "x" for r in ROLES} | {"executor": ""})
    done = srv.write_users()
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "redis-users.sh: REDIS_EXECUTOR_PASSWORD is empty: set it in .env (see .env.example)"
    )
    assert not srv.acl.exists()


def test_each_role_does_its_job_and_nothing_else(
    server: AclServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin = server.client("admin")
    board = Board.seed(admin, make_purpose(tasks=("alpha", "be")))

    queue = f"swarm-exec-test-{uuid.uuid4().hex[:6]}"
    monkeypatch.setenv("SWARM_EXEC_QUEUE", queue)
    executor = subprocess.Popen(
        [sys.executable, "-m", "swarm", "executor", "--sandbox", "local"],
        env={**server.env("executor"), "SWARM_EXEC_QUEUE": queue},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        # Code is offered only once an executor serves the queue (RQ's worker registry).
        deadline = time.monotonic() + 60
        while executors_serving(admin, queue) == 0:
            assert executor.poll() is None and time.monotonic() < deadline, "no executor"
            time.sleep(0.1)
        worker = Worker(
            server.client("worker"),
            SimMind(parse_sim_spec("branch=2,depth=1,code=1")),
            WorkerConfig(swarm_id=board.id, burst=True, slots=2),
            code_runner=runner_factory(server.settings("worker")),
        )
        assert worker.run(install_signals=False) == 0
    finally:
        executor.terminate()
        executor.wait(20)
    # The leaves' code ran in the jail, through the executor's queue-only user.
    assert Board(admin, board.id).answer() == "leaf alpha [ran: 5] | leaf be [ran: 2]"

    # The reader sees everything on the board, as `swarm watch` and `swarm status` do...
    for command in (["status", "--json"], ["watch", "--once"], ["result"]):
        done = subprocess.run(
            [sys.executable, "-m", "swarm", *command, "--swarm", board.id],
            env=server.env("reader"), capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
    # ...and changes nothing.
    reader = server.client("reader")
    meta = board.keys.meta
    assert reader.hget(meta, "state") == "done"
    assert _refused(lambda: reader.hset(meta, "state", "running"))
    assert _refused(lambda: reader.delete(meta))
    assert _refused(lambda: reader.eval("return 1", 0))
    assert _refused(lambda: reader.lpush("rq:queue:swarm-exec", "x"))
    done = subprocess.run(
        [sys.executable, "-m", "swarm", "pause", "--swarm", board.id],
        env=server.env("reader"), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip() == (
        "Error: Redis refused it: this user has no permissions to run the 'evalsha' command"
    )

    # The executor reaches the exec queue and nothing of the blackboard.
    executor_client = server.client("executor")
    executor_client.lpush("rq:queue:probe", "x")
    assert _refused(lambda: executor_client.hget(meta, "state"))
    assert _refused(lambda: executor_client.zrange("swarm:index", 0, -1))
    assert _refused(lambda: executor_client.set("elsewhere", "x"))

    # No role but the admin may wipe, reconfigure or list the server, or change the users.
    for role in ("worker", "executor", "reader"):
        client = server.client(role)
        assert _refused(client.flushall)
        assert _refused(lambda c=client: c.config_set("appendonly", "no"))
        assert _refused(lambda c=client: c.keys("*"))
        assert _refused(lambda c=client: c.acl_setuser("x", enabled=True))
        assert _refused(lambda c=client: c.set("elsewhere", "x"))
        client.close()
    assert admin.acl_whoami() == "swarm-admin"


def test_users_and_the_blackboard_survive_a_restart(server: AclServer) -> None:
    admin = server.client("admin")
    # Seeding writes through a Lua script, which the AOF keeps as MULTI/EXEC: replayed as the
    # default user, it is lost if that user may not run it (Redis 7.0 with `default off`).
    board = Board.seed(admin, make_purpose(tasks=("alpha",)))
    # What the README's old advice did by hand: an extra user, saved to the ACL file.
    admin.acl_setuser(
        "extra", enabled=True, passwords=["+extra-pw"], keys=["x:*"], commands=["+get"]
    )
    admin.acl_save()
    admin.close()
    server.stop()
    old = server.passwords["worker"]
    server.passwords["worker"] = "a new worker password"
    server.start()  # rewrites the file from the environment first, as the container does
    assert server.client("worker").acl_whoami() == "swarm-worker"
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=server.port, username="swarm-worker", password=old, retry=ONCE).ping()
    extra = redis.Redis(port=server.port, username="extra", password="extra-pw")
    assert extra.get("x:1") is None
    assert server.acl.read_text().count("user swarm-worker ") == 1
    reader = server.client("reader")
    assert Board(reader, board.id).state().value == "running"
    assert reader.hget(board.keys.meta, "tasks") == "2"
    reader.close()
