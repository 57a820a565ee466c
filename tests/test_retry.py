"""Retries apply once: redis-py resends a command whose reply it lost, so every control write
carries a request id and every post recognises itself; `seed` writes its index entry with it.

The stalls are real: a server this module owns runs DEBUG SLEEP past the client's socket
timeout, so the production client (swarm.config.connect) times out and resends; the cut link
is a small TCP proxy that swallows one reply and then lets nobody through.
"""

from __future__ import annotations

import random
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from swarm.board import Board, BoardError, list_swarms
from swarm.config import RedisSettings, connect
from swarm.protocol import Subtask
from swarm.task import State, SwarmState
from tests.conftest import FakeClock, claim, make_purpose

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
from _servers import Server, free_port, start_server

WHO = "person:ann"
TIMEOUT_S = 0.5  # the client's socket timeout; each stall is longer


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    srv = start_server(extra={"enable-debug-command": "yes"})
    yield srv
    srv.stop()


@pytest.fixture
def stalling(server: Server) -> Iterator[Any]:
    """The production client on the module's server, with a short socket timeout."""
    client = connect(RedisSettings(server.url), timeout_s=TIMEOUT_S)
    yield client
    client.flushdb()  # the server is this module's own
    client.close()


def stalled(server: Server, op: Callable[[], Any], seconds: float = 1.2) -> Any:
    """Run op while the server sleeps: the client times out and redis-py resends the command."""
    admin = redis.Redis(port=server.port)
    sleeper = threading.Thread(target=admin.execute_command, args=("DEBUG", "SLEEP", seconds))
    sleeper.start()
    time.sleep(0.1)  # the server is asleep before op sends
    started = time.monotonic()
    try:
        return op()
    finally:
        sleeper.join()
        admin.close()
        assert time.monotonic() - started > TIMEOUT_S  # it did wait past a timeout


@pytest.fixture
def lossy(server: Server) -> Iterator[tuple[Any, Callable[[Callable[[], Any]], Any]]]:
    """(client, reply_lost): reply_lost(op) runs op with its first reply lost on the way."""
    link = LossyLink(server.port)
    client = connect(RedisSettings(f"redis://127.0.0.1:{link.port}/0"), timeout_s=TIMEOUT_S)

    def reply_lost(op: Callable[[], Any]) -> Any:
        link.armed.set()
        try:
            return op()
        finally:
            assert not link.armed.is_set()  # a reply was lost, and redis-py sent it again

    yield client, reply_lost
    client.flushdb()
    client.close()
    link.close()


def events(board: Board, kind: str) -> list[dict[str, str]]:
    return [f for _, f in board.client.xrange(board.keys.events) if f["type"] == kind]


def test_a_stall_does_not_inject_twice(server: Server, stalling: Any) -> None:
    board = Board.seed(stalling, make_purpose(tasks=("a",)))
    board.inject("warm up", WHO)  # the script is loaded; the stalled call is the EVALSHA
    tid = stalled(server, lambda: board.inject("stalled", WHO))
    titles = [t.title for t in board.children("0")]
    assert titles == ["a", "warm up", "stalled"]
    assert board.task(tid) is not None and len(events(board, "injected")) == 2
    assert board.meta()["tasks"] == "4"


def test_a_stall_does_not_boost_twice(server: Server, stalling: Any) -> None:
    board = Board.seed(stalling, make_purpose(tasks=("a", "b")), clock=FakeClock())
    board.boost("2", 1.0, WHO)
    before = float(stalling.zscore(board.keys.open, "1"))
    assert stalled(server, lambda: board.boost("1", 1.0, WHO))
    once = before + 0.6931471805599453  # ln 2: one unit on top of the initial one
    assert float(stalling.zscore(board.keys.open, "1")) == pytest.approx(once)
    assert len(events(board, "boosted")) == 2


def test_a_lost_reply_is_answered_as_the_first_was(lossy: Any) -> None:
    client, reply_lost = lossy
    board = Board.seed(client, make_purpose(tasks=("a", "b")), clock=FakeClock())
    board.boost("2", 1.0, WHO)  # the scripts are loaded
    assert reply_lost(lambda: board.boost("1", 1.0, WHO))
    assert reply_lost(lambda: board.pause(WHO))  # not "the swarm is paused, not running"
    assert reply_lost(lambda: board.resume(WHO))
    assert reply_lost(lambda: board.cancel("2", WHO)) == 1
    tid = reply_lost(lambda: board.inject("one more", WHO))
    assert [t.title for t in board.children("0")] == ["a", "b", "one more"] and tid == "3"
    kinds = ("boosted", "paused", "resumed", "cancelled", "injected")
    assert [len(events(board, k)) for k in kinds] == [2, 1, 1, 1, 1]


def test_a_stall_seeds_once_and_says_so(server: Server, stalling: Any) -> None:
    Board.seed(stalling, make_purpose())  # loads the script
    board = stalled(server, lambda: Board.seed(stalling, make_purpose(), swarm_id="stalled-1"))
    assert board.state() is SwarmState.RUNNING  # not "already exists" from its own resend
    assert list_swarms(stalling).count("stalled-1") == 1


def test_a_post_whose_reply_was_lost_is_not_lost(lossy: Any) -> None:
    client, reply_lost = lossy
    board = Board.seed(client, make_purpose(tasks=("a", "b")))
    first = claim(board, "w1")
    reply_lost(lambda: board.complete(first, "w1", "answer a"))  # no LeaseLost
    second = claim(board, "w1")
    children = reply_lost(lambda: board.split(second, "w1", [Subtask("x"), Subtask("y")]))
    assert board.meta()["completions"] == "1" and board.meta()["tasks"] == "5"
    assert children == [c.id for c in board.children(second.task.id)]


# -- the same request twice, on both clients ----------------------------------------------------


def test_a_request_id_applies_once_and_is_kept_for_a_while(
    client: Any, clock: FakeClock, seeded: Any
) -> None:
    board = seeded(tasks=("a",))
    tid = board.inject("x", WHO, request="r1")
    assert board.inject("x", WHO, request="r1") == tid
    assert board.inject("x", WHO, request="r2") != tid
    assert board.boost(tid, 1.0, WHO, request="r3") and board.boost(tid, 1.0, WHO, request="r3")
    assert len(events(board, "boosted")) == 1
    assert board.pause(WHO, request="r4") and board.pause(WHO, request="r4")
    assert not board.pause(WHO, request="r5")  # a new request sees the swarm paused
    # Ids are dropped once expired, by the next control write: the table stays bounded.
    assert client.hlen(board.keys.requests) == 4
    clock.advance(601)
    assert board.resume(WHO, request="r6")
    assert client.hlen(board.keys.requests) == 1


def test_seed_with_the_same_request_is_one_swarm_and_another_is_refused(
    client: Any, clock: FakeClock
) -> None:
    from swarm.trace import delete_swarm

    sid = f"resend-{random.Random().getrandbits(32):x}"
    try:
        Board.seed(client, make_purpose(), swarm_id=sid, clock=clock, request="s1")
        Board.seed(client, make_purpose(), swarm_id=sid, clock=clock, request="s1")
        with pytest.raises(BoardError, match="already exists"):
            Board.seed(client, make_purpose(), swarm_id=sid, clock=clock, request="s2")
        assert list_swarms(client, 1000).count(sid) == 1
    finally:
        delete_swarm(client, sid)


def test_a_resent_post_is_not_lost_and_applies_once(seeded: Any) -> None:
    board = seeded(tasks=("a", "b"))
    first = claim(board, "w1")
    assert board.complete(first, "w1", "a!") is board.complete(first, "w1", "a!")
    second = claim(board, "w2")
    ids = board.split(second, "w2", [Subtask("x")])
    assert board.split(second, "w2", [Subtask("x")]) == ids
    assert board.meta()["completions"] == "1" and board.meta()["tasks"] == "4"
    task = board.task(second.task.id)
    assert task is not None and task.state is State.WAITING


# -- seed and its index entry -----------------------------------------------------------------


class LossyLink:
    """A TCP proxy to a server that, once armed, swallows the reply to the next EVALSHA the
    server ran (a NOSCRIPT reply passes) and drops that connection; with `refuse_after` it
    then refuses every connection too, as a link that dies for good right after the server
    acted."""

    def __init__(self, upstream_port: int, *, refuse_after: bool = False) -> None:
        self.upstream = upstream_port
        self.refuse_after = refuse_after
        self.port = free_port()
        self.armed = threading.Event()
        self.cut = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            if self.cut.is_set():
                conn.close()
                continue
            up = socket.create_connection(("127.0.0.1", self.upstream))
            marked = threading.Event()
            threading.Thread(target=self._up, args=(conn, up, marked), daemon=True).start()
            threading.Thread(target=self._down, args=(up, conn, marked), daemon=True).start()

    def _up(self, conn: socket.socket, up: socket.socket, marked: threading.Event) -> None:
        while data := _recv(conn):
            if self.armed.is_set() and b"EVALSHA" in data.upper():
                self.armed.clear()
                marked.set()
            up.sendall(data)
        up.close()

    def _down(self, up: socket.socket, conn: socket.socket, marked: threading.Event) -> None:
        while data := _recv(up):
            if marked.is_set() and data.startswith(b"-NOSCRIPT"):  # not run: wait for the load
                marked.clear()
                self.armed.set()
            elif marked.is_set():  # the server has acted; its answer never arrives
                if self.refuse_after:
                    self.cut.set()
                conn.close()
                up.close()
                return
            conn.sendall(data)
        conn.close()

    def close(self) -> None:
        self._listener.close()


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(65536)
    except OSError:
        return b""


def test_a_seed_cut_off_after_the_server_acted_is_listed(server: Server) -> None:
    link = LossyLink(server.port, refuse_after=True)
    client = connect(RedisSettings(f"redis://127.0.0.1:{link.port}/0"), timeout_s=TIMEOUT_S)
    direct = redis.Redis(port=server.port, decode_responses=True)
    try:
        Board.seed(client, make_purpose())  # the scripts are loaded
        link.armed.set()
        with pytest.raises(redis.ConnectionError):
            Board.seed(client, make_purpose(), swarm_id="cut-1")
        assert direct.exists(Board(direct, "cut-1").keys.meta)  # the server made the swarm
        assert "cut-1" in list_swarms(direct)  # and `ls` shows it
    finally:
        link.close()
        client.close()
        direct.flushdb()
        direct.close()
