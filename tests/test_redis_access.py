"""Redis refusing who we are (a wrong password, an ACL user without a command) is no outage:
waiting does not fix it, so a worker or a command stops at once with one line saying so.

The tests own their server (scripts/_servers.py), so they can change its password and users.
"""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
import redis
from rich.console import Console

from swarm.board import Board
from swarm.cli.helpers import user_errors
from swarm.config import RedisSettings, connect
from swarm.logs import NoticingRetry
from swarm.minds.base import ScriptedMind
from swarm.outage import access_refused, is_outage
from swarm.protocol import Answer, Confidence, ThinkRequest
from swarm.watch import periodic
from swarm.worker import Worker, WorkerConfig
from tests.conftest import make_purpose

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
from _servers import Server, start_server

PASSWORD = "old pw #1 ~&"


@pytest.fixture
def server() -> Iterator[Server]:
    srv = start_server()
    admin = srv.client()
    admin.config_set("requirepass", PASSWORD)  # after the start: its probe has no password
    admin.close()
    yield srv
    srv.stop()


def admin(server: Server) -> redis.Redis:
    return redis.Redis(port=server.port, password=PASSWORD, decode_responses=True)


@pytest.mark.parametrize(
    "exc",
    [
        redis.AuthenticationError("WRONGPASS invalid username-password pair or user is disabled."),
        redis.AuthenticationError("Invalid Username or Password"),
        redis.exceptions.AuthenticationWrongNumberOfArgsError("wrong number of arguments"),
        redis.exceptions.NoPermissionError("NOPERM User u has no permissions to run 'evalsha'"),
        redis.ResponseError("NOAUTH Authentication required."),
        redis.ResponseError("ERR Error running script: @user_script:3: -NOPERM User u cannot"),
    ],
)
def test_access_refusals_are_not_outages(exc: redis.RedisError) -> None:
    said = access_refused(exc)
    assert said is not None and "\n" not in said
    assert not is_outage(exc)


def test_outages_are_not_access_refusals() -> None:
    for exc in (redis.ConnectionError("refused"), redis.ResponseError("OOM full")):
        assert access_refused(exc) is None and is_outage(exc)


def test_redis_py_does_not_retry_a_wrong_password(server: Server) -> None:
    """The client's own retries (six, with backoff) would only repeat the refusal."""
    calls = []

    def login() -> None:
        calls.append(1)
        raise redis.AuthenticationError("WRONGPASS invalid username-password pair")

    retry = NoticingRetry(redis.backoff.NoBackoff(), retries=6)
    with pytest.raises(redis.AuthenticationError):
        retry.call_with_retry(login, lambda *_: None)
    assert len(calls) == 1


def test_a_worker_whose_password_stops_working_exits_1_at_once(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    client = connect(RedisSettings(server.url, password=PASSWORD), cluster=False)
    board = Board.seed(client, make_purpose())
    other = admin(server)

    def think(req: ThinkRequest) -> Answer:
        # The operator changes the password and drops every connection but its own.
        other.config_set("requirepass", "new password")
        other.client_kill_filter(_type="normal", skipme=True)
        return Answer("done", Confidence.HIGH)

    worker = Worker(client, ScriptedMind(think), WorkerConfig(swarm_id=board.id, grace_s=0.1))
    code: list[int] = []
    with caplog.at_level(logging.INFO):
        runner = threading.Thread(target=lambda: code.append(worker.run(install_signals=False)))
        runner.start()
        runner.join(20)
        stuck = runner.is_alive()
        if stuck:  # the old behaviour: retrying for ever; stop it so the test ends
            worker.stop()
            runner.join(20)
    assert not stuck, "the worker kept retrying a refused login"
    assert code == [1]
    gave_up = [r.getMessage() for r in caplog.records if "gives up" in r.getMessage()]
    assert len(gave_up) == 1
    assert "Redis refused the login (invalid username-password pair" in gave_up[0]
    assert "new password" not in caplog.text and PASSWORD not in caplog.text
    assert not [r for r in caplog.records if r.name == "swarm.redis"]  # no "outage" said
    other.close()


def _swarm(
    server: Server, user: str, password: str, *args: str
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "SWARM_REDIS_URL": server.url,
        "SWARM_REDIS_USERNAME": user,
        "SWARM_REDIS_PASSWORD": password,
    }
    return subprocess.run(
        [sys.executable, "-m", "swarm", *args], capture_output=True, text=True, timeout=60, env=env
    )


def test_a_worker_whose_user_may_not_run_scripts_exits_1_with_one_line(server: Server) -> None:
    boss = admin(server)
    board = Board.seed(boss, make_purpose())
    boss.acl_setuser(
        "limited", enabled=True, passwords=["+limited pw"], keys=["*"], channels=["*"],
        commands=["+@all", "-evalsha", "-eval", "-script"],
    )  # fmt: skip
    done = _swarm(
        server, "limited", "limited pw", "worker", "--mind", "sim", "--no-code", "--swarm", board.id
    )
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert "gives up: Redis refused a command to this user (User limited has no" in lines[0]
    assert "limited pw" not in done.stderr
    boss.close()


def test_watch_stops_with_one_line_when_its_password_stops_working(server: Server) -> None:
    """`swarm watch` without a terminal prints a frame a period; an outage is shown and
    waited out, a refused login ends it through the commands' one error path."""
    client = connect(RedisSettings(server.url, password=PASSWORD), cluster=False)
    board = Board.seed(client, make_purpose())
    other = admin(server)
    other.config_set("requirepass", "new password")
    other.client_kill_filter(_type="normal", skipme=True)
    naps: list[float] = []

    def sleep(s: float) -> None:
        naps.append(s)
        if len(naps) > 3:
            raise AssertionError("watch kept retrying a refused login")

    @user_errors
    def watch() -> None:
        periodic(client, board.id, 1.0, Console(file=io.StringIO()), sleep=sleep)

    with pytest.raises(click.ClickException) as stopped:
        watch()
    assert stopped.value.message.startswith("Redis refused the login (invalid username-password")
    assert "new password" not in stopped.value.message and not naps
    other.close()
