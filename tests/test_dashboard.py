"""`swarm dashboard` without a browser: bounded reads per tick, one reader per swarm, the
token rules, writes through the board's scripts, /metrics parsed as Prometheus text, and a
worker's --metrics-port. (tests/test_dashboard_browser.py drives the page in chromium.)"""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

pytest.importorskip("starlette")
pytest.importorskip("prometheus_client")

import httpx
import uvicorn
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from swarm import watch
from swarm.board import Board
from swarm.dashboard import view
from swarm.dashboard.app import Settings, create_app
from swarm.dashboard.control import Access, host_of, is_loopback
from swarm.dashboard.feed import Hub
from swarm.metrics import PrometheusMetrics
from swarm.minds.sim import SimMind, parse_sim_spec
from swarm.protocol import Confidence, Subtask
from swarm.purpose import Budgets
from swarm.trace import delete_swarm
from swarm.worker import Worker, WorkerConfig
from tests.conftest import FakeClock, claim, make_purpose
from tests.test_watch import bulk, counting_client  # noqa: F401

TOKEN = "test-token-123"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


# -- reads per tick --------------------------------------------------------------------------


def tick_cost(url: str, board: Board) -> tuple[int, int, Any, dict[str, Any]]:
    """Commands and round trips of one steady-state tick (the second; the first reads history)."""
    client, tally = counting_client(url)
    reader = view.Reader(client, board.id, clock=board.clock)
    reader.read()
    tally.reset()
    data = reader.read()
    return sum(tally.commands.values()), tally.trips, tally.commands, data


def test_commands_per_tick_are_bounded_for_70_and_600_tasks(
    bulk: Any,  # noqa: F811
    redis_url: str,
) -> None:
    small, large, huge = bulk(69, 4), bulk(599, 4), bulk(5999, 4)  # 70, 600, 6000 with roots
    cmds_s, trips_s, _, data_s = tick_cost(redis_url, small)
    cmds_l, trips_l, seen_l, data_l = tick_cost(redis_url, large)
    cmds_h, trips_h, _, data_h = tick_cost(redis_url, huge)
    print(
        f"Redis commands per tick: 70 tasks {cmds_s} ({trips_s} round trips), "
        f"600 tasks {cmds_l} ({trips_l}), 6000 tasks {cmds_h} ({trips_h})"
    )
    # 70 tasks all fit in the drawn tree; 600 fill the row budget; 6000 cost the same as 600
    assert len(data_s["tree"]) == 70
    assert len(data_l["tree"]) == len(data_h["tree"]) >= view.TREE_ROWS
    assert cmds_l == cmds_h and trips_l == trips_h
    # the bound: four reads per drawn task plus a fixed head, whatever the swarm's size
    bound = 4 * len(data_l["tree"]) + 30
    assert cmds_s <= cmds_l <= bound
    assert trips_l <= 10
    assert not {"SCAN", "KEYS", "HGETALL", "SMEMBERS", "ZRANGE"} & set(seen_l)
    assert data_l["counts"]["open"] + data_l["counts"]["waiting"] == 600  # counters, not walks
    hidden = sum(r["hidden"] for r in data_l["tree"])
    assert hidden > 0  # children beyond the budget are counted, not read


def test_payload_gives_each_row_its_parent_and_the_answer(seeded: Any, clock: FakeClock) -> None:
    board = seeded(tasks=("a", "b"))
    c = claim(board)
    board.split(c, "w1", [Subtask("a1"), Subtask("a2")])
    data = view.Reader(board.client, board.id, clock=clock).read()
    parents = {r["id"]: r["parent"] for r in data["tree"]}
    assert parents["0"] == "" and parents[c.task.id] == "0"
    kids = [r for r in data["tree"] if r["parent"] == c.task.id]
    assert [r["title"] for r in kids] == ["a1", "a2"]
    assert all(r["heat_fraction"] > 0 for r in kids) and data["answer"] is None


# -- one reader per swarm ---------------------------------------------------------------------


def test_hub_reads_once_per_tick_however_many_subscribers() -> None:
    reads: list[float] = []

    def read() -> bytes:
        reads.append(time.monotonic())
        return str(len(reads)).encode()

    async def scenario() -> tuple[list[list[bytes]], int]:
        hub = Hub(lambda sid: read, period_s=0.05)

        async def browser() -> list[bytes]:
            got: list[bytes] = []
            async with hub.watch("s") as feed:
                seen = 0
                while len(got) < 5:
                    seen, data = await feed.next(seen)
                    got.append(data)
            return got

        results = await asyncio.gather(*(browser() for _ in range(10)))
        await asyncio.sleep(0.2)  # the feed notices it has nobody left and stops
        return list(results), len(hub.feeds)

    results, feeds_left = asyncio.run(scenario())
    assert len(reads) <= 7  # 5 ticks for 10 subscribers, not 50
    assert all(r == results[0] for r in results)  # every page got the same ticks
    assert feeds_left == 0


class LiveServer:
    """The app under uvicorn on a thread, on a free port."""

    def __init__(self, app: Any) -> None:
        self.config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning")
        self.server = uvicorn.Server(self.config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def read_stream(url: str, ticks: int) -> list[dict[str, Any]]:
    got = []
    with httpx.stream("GET", url, timeout=10) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("data: "):
                got.append(json.loads(line[6:]))
                if len(got) >= ticks:
                    break
    return got


def test_three_pages_cost_redis_what_one_does(board3: Board, redis_url: str) -> None:
    board = board3
    client, tally = counting_client(redis_url)
    app = create_app(client, Settings(Access(TOKEN, open_reads=True), period_s=0.2))
    with LiveServer(app) as base:
        url = f"{base}/api/swarms/{board.id}/stream"

        def cost(pages: int) -> float:
            read_stream(url, 2)  # warm: the feed has read its history
            hub = app.state.hub
            with ThreadPool(pages) as pool:
                tally.reset()
                before = hub.reads
                list(pool.map(lambda _: read_stream(url, 6), range(pages)))
                ticks = hub.reads - before
            return sum(tally.commands.values()) / max(ticks, 1)

        one, three = cost(1), cost(3)
        # pages gone: the reader stops (nobody left to read for)
        deadline = time.monotonic() + 5
        while app.state.hub.feeds and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not app.state.hub.feeds and app.state.hub.subscribers == 0
    print(f"commands per tick: 1 page {one:.1f}, 3 pages {three:.1f}")
    assert three <= one * 1.2 + 2


class ThreadPool:
    def __init__(self, n: int) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.pool = ThreadPoolExecutor(n)

    def __enter__(self) -> Any:
        return self.pool

    def __exit__(self, *exc: Any) -> None:
        self.pool.shutdown(wait=True)


# -- access and writes ----------------------------------------------------------------------------


def test_loopback_and_host_header_parsing() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4")
    assert host_of("127.0.0.1:8800") == "127.0.0.1" and host_of("[::1]:80") == "::1"
    assert host_of("localhost") == "localhost"
    a = Access(TOKEN, open_reads=False)
    assert a.may_write({"authorization": f"Bearer {TOKEN}"})
    assert not a.may_write({"authorization": "Bearer nope"}) and not a.may_write({})
    assert not a.may_read({}) and Access(TOKEN, open_reads=True).may_read({})


@pytest.fixture
def app_client(real_redis: redis.Redis) -> Iterator[TestClient]:
    app = create_app(real_redis, Settings(Access(TOKEN, open_reads=True), check_host=True))
    with TestClient(app, base_url="http://127.0.0.1:8800") as tc:
        yield tc


@pytest.fixture
def board3(real_redis: redis.Redis) -> Iterator[Board]:
    board = Board.seed(real_redis, make_purpose(tasks=("a", "b", "c")), rng=random.Random(3))
    yield board
    delete_swarm(real_redis, board.id)


def board_state(board: Board) -> tuple[Any, ...]:
    c = board.client
    return (
        c.zrange(board.keys.open, 0, -1, withscores=True),
        c.hgetall(board.keys.meta),
        c.xlen(board.keys.events),
    )


@pytest.mark.parametrize(
    ("action", "body"),
    [
        ("pause", {}),
        ("boost", {"task": "1"}),
        ("inject", {"title": "more"}),
        ("cancel", {"task": "2"}),
        ("cancel", {"all": True}),
    ],
)
def test_writes_without_the_token_are_refused_and_change_nothing(
    app_client: TestClient, board3: Board, action: str, body: dict[str, Any]
) -> None:
    before = board_state(board3)
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        r = app_client.post(f"/api/swarms/{board3.id}/{action}", json=body, headers=headers)
        assert r.status_code == 401, r.text
        assert "token" in r.json()["error"]
    assert board_state(board3) == before


def test_writes_with_the_token_go_through_the_board_and_name_who(
    app_client: TestClient, board3: Board
) -> None:
    c = board3.client
    base = f"/api/swarms/{board3.id}"
    before = float(c.zscore(board3.keys.open, "1"))
    r = app_client.post(f"{base}/boost", json={"task": "1", "who": "ann"}, headers=AUTH)
    assert r.status_code == 200 and r.json()["message"].startswith("boosted 1")
    assert float(c.zscore(board3.keys.open, "1")) > before
    r = app_client.post(f"{base}/boost", json={"task": "1", "amount": 2.5}, headers=AUTH)
    assert r.status_code == 200 and "2.5" in r.json()["message"]
    assert app_client.post(f"{base}/pause", json={"who": "ann"}, headers=AUTH).status_code == 200
    assert board3.state().value == "paused"
    assert app_client.post(f"{base}/pause", headers=AUTH).status_code == 409  # not running
    assert app_client.post(f"{base}/resume", json={"who": "bob"}, headers=AUTH).status_code == 200
    r = app_client.post(
        f"{base}/inject", json={"title": "<b>x</b>", "detail": "d", "who": "ann"}, headers=AUTH
    )
    assert r.status_code == 200, r.text
    r = app_client.post(f"{base}/cancel", json={"task": "2", "who": "ann"}, headers=AUTH)
    assert r.status_code == 200 and board3.task("2").state.value == "cancelled"
    events = [(f["type"], f["worker"]) for _, f in board3.events(count=100)]
    assert ("boosted", "person:ann@dashboard") in events
    assert ("boosted", "person:anonymous@dashboard") in events
    assert ("paused", "person:ann@dashboard") in events
    assert ("resumed", "person:bob@dashboard") in events
    assert ("injected", "person:ann@dashboard") in events
    assert ("cancelled", "person:ann@dashboard") in events
    titles = [t.title for t in board3.children("0")]
    assert "<b>x</b>" in titles  # stored as typed; the page shows it as text
    r = app_client.post(f"{base}/cancel", json={"all": True}, headers=AUTH)
    assert r.status_code == 200 and board3.state().value == "cancelled"


def test_bad_writes_get_one_line_reasons(app_client: TestClient, board3: Board) -> None:
    base = f"/api/swarms/{board3.id}"
    before = board_state(board3)
    cases = [
        ("boost", b'{"task": "0"}', 409),  # the root is waiting, not open
        ("boost", b'{"task": "1; DEL x"}', 400),
        ("boost", b'{"task": "1", "amount": -3}', 400),
        ("boost", b"[1, 2]", 400),
        ("boost", b"not json", 400),
        ("inject", b'{"title": ""}', 409),
        ("inject", b'{"title": 5}', 400),
        ("inject", json.dumps({"title": "x" * 20_000}).encode(), 413),
        ("frobnicate", b"{}", 404),
    ]
    for action, raw, status in cases:
        r = app_client.post(f"{base}/{action}", content=raw, headers=AUTH)
        assert r.status_code == status, (action, raw[:40], r.text)
        assert "\n" not in r.json()["error"]
    assert app_client.post("/api/swarms/nope-000/pause", headers=AUTH).status_code == 404
    assert app_client.get("/api/swarms/%7Bbad%7D").status_code == 400
    assert board_state(board3) == before


def test_every_response_carries_a_strict_csp_and_loopback_checks_host(
    app_client: TestClient, board3: Board
) -> None:
    for path in ("/", f"/swarm/{board3.id}", "/static/app.js", "/api/swarms", "/metrics"):
        r = app_client.get(path)
        assert r.status_code == 200, path
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "default-src 'none'" in csp
        assert "unsafe-inline" not in csp and r.headers["x-content-type-options"] == "nosniff"
    # DNS rebinding: a page on another name that resolves to 127.0.0.1 gets nothing
    r = app_client.get("/api/swarms", headers={"host": "evil.example:8800"})
    assert r.status_code == 421 and "content-security-policy" in r.headers


def test_off_loopback_reads_need_the_token_too(real_redis: redis.Redis, board3: Board) -> None:
    app = create_app(real_redis, Settings(Access(TOKEN, open_reads=False)))
    with TestClient(app) as tc:
        for path in ("/api/swarms", f"/api/swarms/{board3.id}", "/metrics"):
            assert tc.get(path).status_code == 401
            assert tc.get(path, headers=AUTH).status_code == 200
        assert tc.get("/").status_code == 200  # the page itself holds no data


def test_static_assets_build_dom_from_text_only() -> None:
    """The page's script never parses data as HTML (the browser test shows it end to end)."""
    static = Path(view.__file__).parent / "static"
    source = (static / "app.js").read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in source
    html = (static / "index.html").read_text()
    assert (
        "<script>" not in html
        and " style=" not in html
        and "http" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    )


# -- /metrics ------------------------------------------------------------------------------


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics_parse_and_count_what_happened(
    real_redis: redis.Redis, app_client: TestClient
) -> None:
    clock = FakeClock(time.time())
    board = Board.seed(
        real_redis,
        make_purpose(tasks=("a", "b", "c"), budgets=Budgets(max_attempts=5, max_tasks=40)),
        clock=clock,
        rng=random.Random(1),
    )
    try:
        c1 = claim(board, "w1")
        board.complete(c1, "w1", "answer a", Confidence.HIGH, tokens=7)
        c2 = claim(board, "w1")
        board.fail(c2, "w1", "broke", tokens=3)
        claim(board, "w2")  # then w2 vanishes
        clock.advance(120)
        claim(board, "w3")  # reaps w2's lease
        board.heartbeat("w3", {"host": "h"}, ttl_s=60)
        real_redis.hset(board.keys.meta, "title", 'a "title"\\ with\nlines } {')
        r = app_client.get("/metrics")
        assert r.headers["content-type"].startswith("text/plain; version=")
        got = samples(r.text)
    finally:
        delete_swarm(real_redis, board.id)
    sid = ("swarm", board.id)

    def v(name: str, *labels: tuple[str, str]) -> float:
        return got[(name, tuple(sorted((sid, *labels))))]

    assert v("swarm_completions_total") == 1
    assert v("swarm_failures_total") == 1
    assert v("swarm_reaps_total") == 1
    assert v("swarm_tokens_total") == 10
    assert v("swarm_tasks", ("state", "done")) == 1
    assert v("swarm_tasks", ("state", "claimed")) == 1
    assert v("swarm_tasks_created_total") == 4
    assert v("swarm_state", ("state", "running")) == 1
    assert v("swarm_state", ("state", "done")) == 0
    assert v("swarm_budget_used_ratio", ("budget", "tasks")) == pytest.approx(4 / 40)
    assert v("swarm_workers_registered") == 1
    assert v("swarm_info", ("title", 'a "title"\\ with\nlines } {')) == 1  # escaped, parsed back
    assert ("swarm_dashboard_readers", ()) in got
    assert any(name == "swarm_exec_queue_depth" for name, _ in got) is False  # none wired here


# -- a worker's own metrics ----------------------------------------------------------------


def test_worker_metrics_count_claims_thinking_and_tokens(
    seeded: Any, client: Any, clock: FakeClock
) -> None:
    board = seeded(tasks=("a", "b"), budgets=Budgets(max_tasks=20, max_depth=1))
    metrics = PrometheusMetrics()
    config = WorkerConfig(swarm_id=board.id, burst=True, poll_s=0.01)
    mind = SimMind(parse_sim_spec("branch=2,depth=1"))
    worker = Worker(client, mind, config, metrics=metrics, clock=clock)
    worker.run(install_signals=False)
    metrics.identify(worker.id, "here", "sim")
    port = metrics.serve(0)
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    got = samples(text)
    steps = got[("swarm_worker_claims_total", ())]
    assert steps >= 3  # the two tasks, their children, the syntheses
    assert got[("swarm_worker_think_seconds_count", ())] == steps
    assert got[("swarm_worker_tokens_total", ())] == steps  # the sim mind spends one a step
    assert got[("swarm_worker_tokens_per_second", ())] > 0
    assert got[("swarm_worker_redis_errors_total", ())] == 0
    assert got[("swarm_worker_info", (("host", "here"), ("mind", "sim"), ("worker", worker.id)))]


def test_worker_metrics_count_redis_errors() -> None:
    metrics = PrometheusMetrics()
    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    worker = Worker(dead, SimMind(parse_sim_spec("")), WorkerConfig(swarm_id="x"), metrics=metrics)
    until = time.monotonic() + 0.5
    worker._retry(dead.ping, until=until)
    got = samples(_text(metrics))
    assert got[("swarm_worker_redis_errors_total", ())] >= 1


def _text(metrics: PrometheusMetrics) -> str:
    from prometheus_client import generate_latest

    return generate_latest(metrics.registry).decode()


@pytest.mark.slow
def test_worker_cli_serves_metrics_on_its_port(redis_url: str, real_redis: redis.Redis) -> None:
    from scripts._servers import free_port

    board = Board.seed(real_redis, make_purpose(tasks=("a", "b", "c")))
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "swarm", "worker", "--redis", redis_url, "--swarm", board.id,
         "--mind", "sim:branch=2,depth=1,think=0.3", "--metrics-port", str(port), "--no-code"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        got: dict[Any, float] = {}
        while time.monotonic() < deadline:
            try:
                text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2)
                got = samples(text.read().decode())
                if got.get(("swarm_worker_claims_total", ()), 0) >= 2:
                    break
            except OSError:
                pass
            time.sleep(0.2)
        assert got.get(("swarm_worker_claims_total", ()), 0) >= 2, got
        assert got[("swarm_worker_think_seconds_sum", ())] > 0.3
    finally:
        proc.terminate()
        proc.wait(20)
        delete_swarm(real_redis, board.id)


def test_the_grafana_sample_queries_only_metrics_that_exist(
    real_redis: redis.Redis, board3: Board
) -> None:
    import re

    app = create_app(
        real_redis,
        Settings(Access(TOKEN, open_reads=True)),
        exec_depth=lambda: {"swarm-exec": 0},
    )
    with TestClient(app) as tc:
        text = tc.get("/metrics").text
    worker = PrometheusMetrics()
    worker.identify("w", "h", "sim")
    worker.thought(0.5, 10)
    worker.executed(0.2)
    exported = {name for name, _ in samples(text) | samples(_text(worker))}
    root = Path(__file__).parent.parent
    dashboard = json.loads((root / "examples" / "grafana-dashboard.json").read_text())
    queried = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"\bswarm_[a-z_]+", target["expr"])
    }
    queried |= set(re.findall(r"\bswarm_[a-z_]+", json.dumps(dashboard["templating"])))
    assert queried and queried <= exported, queried - exported


def test_compose_publishes_the_dashboard_on_loopback_by_default() -> None:
    import yaml

    root = Path(__file__).parent.parent
    service = yaml.safe_load((root / "docker-compose.yml").read_text())["services"]["dashboard"]
    assert service["command"][:2] == ["swarm", "dashboard"]
    assert service["ports"] == ["${DASHBOARD_BIND:-127.0.0.1}:${DASHBOARD_PORT:-8800}:8800"]
    assert "SWARM_DASHBOARD_TOKEN" in service["environment"]


def test_a_garbled_board_reads_as_a_message_not_a_dead_feed(real_redis: redis.Redis) -> None:
    board = Board.seed(real_redis, make_purpose(tasks=("a",)))
    try:
        real_redis.hset(board.keys.task("1"), "depth", "deep")  # not a number
        real_redis.hset(board.keys.meta, "lease_ms", "{}")
        data = json.loads(view.read_encoded(view.Reader(real_redis, board.id)))
        assert "error" in data or data["tree"]
        missing = json.loads(view.read_encoded(view.Reader(real_redis, "no-such-swarm")))
        assert missing == {"error": "no swarm 'no-such-swarm' on this Redis"}
    finally:
        delete_swarm(real_redis, board.id)


def test_a_refused_login_reads_as_what_to_fix_not_as_an_outage() -> None:
    class Refused:
        swarm_id = "s"

        def read(self) -> dict[str, Any]:
            raise redis.AuthenticationError("invalid username-password pair or user is disabled.")

    data = json.loads(view.read_encoded(Refused()))  # type: ignore[arg-type]
    assert data["error"].startswith("Redis refused the login (invalid username-password pair")


@pytest.mark.slow
def test_the_command_prints_a_token_that_unlocks_writes(
    redis_url: str, real_redis: redis.Redis, board3: Board
) -> None:
    import os

    from scripts._servers import free_port

    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "SWARM_DASHBOARD_TOKEN"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "swarm", "dashboard", "--redis", redis_url, "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert line.startswith("token: "), line
        token = line.split()[1]
        link = proc.stderr.readline()
        assert f"http://127.0.0.1:{port}/#token={token}" in link
        base = f"http://127.0.0.1:{port}/api/swarms/{board3.id}"
        deadline = time.monotonic() + 20
        while True:
            try:
                r = httpx.post(f"{base}/pause", json={})
                break
            except httpx.ConnectError:
                assert time.monotonic() < deadline
                time.sleep(0.2)
        assert r.status_code == 401 and board3.state().value == "running"
        r = httpx.post(f"{base}/pause", json={}, headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200 and board3.state().value == "paused"
    finally:
        proc.terminate()
        assert proc.wait(15) in (0, -15)  # uvicorn re-raises the SIGTERM it handled


@pytest.mark.parametrize("n", [16, 64])
def test_every_worker_of_a_big_swarm_is_listed(real_redis: redis.Redis, n: int) -> None:
    """The terminal's watch lists at most 8 workers (its rows are few); the page scrolls, so
    a swarm of 16 or 64 workers is shown whole."""
    board = Board.seed(real_redis, make_purpose())
    try:
        for i in range(n):
            board.heartbeat(f"w{i:02d}", {"host": "h", "mind": "sim", "slots": 1}, ttl_s=60)
        data = view.Reader(real_redis, board.id).read()
        assert data["workers_total"] == data["workers_alive"] == n
        assert sorted(w["id"] for w in data["workers"]) == [f"w{i:02d}" for i in range(n)]
        assert len(watch.snapshot(real_redis, board.id, height=60).workers) == 8
    finally:
        delete_swarm(real_redis, board.id)
