"""`swarm dashboard` in a real browser: Debian's chromium driven by Selenium (chromium-driver).

The server is the real command (`python -m swarm dashboard`) on the test's Redis database;
the swarm is worked by real sim workers. scripts/test.sh installs chromium and
chromium-driver; without them these tests skip and say why.

SWARM_DASHBOARD_SCREENSHOT=docs/dashboard.png saves the README's screenshot of a running swarm.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

pytest.importorskip("starlette")
webdriver = pytest.importorskip("selenium.webdriver")

from selenium.common.exceptions import (  # noqa: E402
    NoAlertPresentException,
    StaleElementReferenceException,
    WebDriverException,
)
from selenium.webdriver.common.by import By  # noqa: E402

from swarm.board import Board  # noqa: E402
from swarm.trace import delete_swarm  # noqa: E402
from tests.conftest import make_purpose  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        CHROMIUM is None or DRIVER is None,
        reason="needs Debian's chromium and chromium-driver (scripts/test.sh installs them)",
    ),
]

TOKEN = "browser-test-token"
HOSTILE = "<img src=x onerror=alert(1)>"

PURPOSE = """---
name: dash-live
sandbox: none
budgets:
  max_tasks: 60
  max_depth: 2
  lease_s: 5
---
# A field guide to garden birds

Write a short field guide.

## Tasks

- robins
- sparrows
- blackbirds
"""


def swarm_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "swarm", *args]


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except (StaleElementReferenceException, WebDriverException):
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def server(redis_url: str) -> Iterator[str]:
    from scripts._servers import free_port

    port = free_port()
    env = {**os.environ, "SWARM_DASHBOARD_TOKEN": TOKEN}
    proc = subprocess.Popen(
        swarm_cmd("dashboard", "--redis", redis_url, "--port", str(port)),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return urllib.request.urlopen(f"{base}/api/swarms", timeout=1).status == 200
        except OSError:
            return proc.poll() is not None  # exited: stop waiting, fail below

    wait_for(up, 20, "the dashboard to answer")
    assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
    yield base
    proc.terminate()
    proc.wait(10)


@pytest.fixture(scope="module")
def driver(server: str) -> Iterator[Any]:  # closed before the server, so no stream is open
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                "--window-size=1400,1100", "--disable-gpu"):  # fmt: skip
        options.add_argument(arg)
    service = webdriver.ChromeService(executable_path=DRIVER)
    d = webdriver.Chrome(service=service, options=options)
    yield d
    d.quit()


@pytest.fixture
def page(driver: Any, server: str) -> Callable[[str, bool], Any]:
    """page(swarm_id, with_token) opens the swarm's page in a fresh session storage."""

    def open_(sid: str, with_token: bool = False) -> Any:
        driver.get(f"{server}/")
        driver.execute_script("sessionStorage.clear(); localStorage.clear();")
        driver.get(f"{server}/swarm/{sid}" + (f"#token={TOKEN}" if with_token else ""))
        wait_for(lambda: nodes(driver), 15, "the tree to be drawn")
        return driver

    return open_


@pytest.fixture
def boards(real_redis: redis.Redis) -> Iterator[list[str]]:
    made: list[str] = []
    yield made
    for sid in made:
        delete_swarm(real_redis, sid)


def nodes(d: Any) -> dict[str, dict[str, str]]:
    """The drawn tree: task id -> its state, heat and label, as the page shows them."""
    rows = d.execute_script(
        "return [...document.querySelectorAll('#graph g.node')].map(g => ["
        "g.dataset.id, g.dataset.state, g.dataset.heat, g.querySelector('text.label').textContent])"
    )
    return {r[0]: {"state": r[1], "heat": r[2], "label": r[3]} for r in rows}


def click_task(d: Any, tid: str) -> None:
    def once() -> bool:
        d.find_element(By.CSS_SELECTOR, f'#graph g.node[data-id="{tid}"] text.label').click()
        return d.find_element(By.ID, "d-id").text == f"#{tid}"

    wait_for(once, 10, f"task {tid} to be selected")


def message(d: Any) -> str:
    return str(d.find_element(By.ID, "message").text)


def ticks(d: Any) -> int:
    return int(d.execute_script("return Number(document.body.dataset.ticks || 0)"))


def test_page_shows_a_running_sim_swarm_and_updates_without_reload(
    page: Any, redis_url: str, real_redis: redis.Redis, tmp_path: Path, boards: list[str]
) -> None:
    purpose = tmp_path / "purpose.md"
    purpose.write_text(PURPOSE)
    sid = subprocess.run(
        swarm_cmd("seed", str(purpose), "--redis", redis_url),
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    boards.append(sid)
    d = page(sid)
    d.execute_script("window.__samePage = 'yes'")  # a reload would lose it
    loaded = ticks(d)
    first = nodes(d)
    assert set(first) == {"0", "1", "2", "3"} and first["1"]["label"] == "robins"
    assert first["1"]["state"] == "open" and float(first["1"]["heat"]) > 0
    work = swarm_cmd(
        "worker", "--redis", redis_url, "--swarm", sid, "--burst",
        "--mind", "sim:branch=3,depth=2,think=0.6",
    )  # fmt: skip
    workers = [
        subprocess.Popen(work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(2)
    ]
    try:
        grown = wait_for(
            lambda: (n := nodes(d)) and len(n) > 4 and any(v["state"] == "done" for v in n.values())
            and n,
            30, "the tree to grow and tasks to finish",
        )  # fmt: skip
        birds = ("robins.", "sparrows.", "blackbirds.")
        assert any(v["label"].startswith(birds) for v in grown.values())  # splits are drawn
        wait_for(lambda: "2 alive" in d.find_element(By.ID, "w-count").text, 15, "2 workers")
        rows = d.find_elements(By.CSS_SELECTOR, "#workers tbody tr")
        assert len(rows) == 2 and all("sim" in r.text for r in rows)
        # where work flows, per worker class (both workers are of the mind's class, `sim`)
        flow = wait_for(lambda: d.find_element(By.ID, "flow").text, 15, "the flow per class")
        assert flow.startswith("sim ") and " done" in flow
        assert d.find_elements(By.CSS_SELECTOR, "#events li")
        shot = os.environ.get("SWARM_DASHBOARD_SCREENSHOT")
        if shot:  # the README's picture: some answers delivered, one branch selected
            wait_for(lambda: sum(v["state"] == "done" for v in nodes(d).values()) >= 4, 30)
            click_task(d, "1")
            d.save_screenshot(shot)
        done = wait_for(
            lambda: d.find_element(By.ID, "state").text.startswith("done"), 60, "the end"
        )
        assert done and ticks(d) > loaded + 2  # it kept updating on its own
        assert d.execute_script("return window.__samePage") == "yes"  # no reload
        answer = real_redis.hget(Board(real_redis, sid).keys.meta, "answer")
        wait_for(lambda: d.find_element(By.ID, "answer").text.strip(), 10, "the answer")
        assert d.find_element(By.ID, "answer").text.strip() == answer.strip()
        assert d.find_elements(By.CSS_SELECTOR, "#chart rect")  # throughput bars
        assert all(v["state"] == "done" for v in nodes(d).values())
    finally:
        for w in workers:
            w.kill()
            w.wait()


def seed3(real_redis: redis.Redis, boards: list[str]) -> Board:
    board = Board.seed(real_redis, make_purpose(tasks=("a", "b", "c")), rng=random.Random(5))
    boards.append(board.id)
    return board


def test_boost_from_the_page_changes_pheromone_on_redis(
    page: Any, real_redis: redis.Redis, boards: list[str]
) -> None:
    board = seed3(real_redis, boards)
    d = page(board.id, with_token=True)
    name = d.find_element(By.ID, "who")
    name.send_keys("ann")
    d.find_element(By.ID, "title").click()  # blur: the name is kept on change
    before = float(real_redis.zscore(board.keys.open, "2"))
    heat_before = float(nodes(d)["2"]["heat"])
    click_task(d, "2")
    d.find_element(By.ID, "boost").click()
    wait_for(lambda: message(d).startswith("boosted 2"), 10, "the boost's answer")
    assert float(real_redis.zscore(board.keys.open, "2")) > before
    events = [(f["type"], f["task"], f["worker"]) for _, f in board.events(count=100)]
    assert ("boosted", "2", "person:ann@dashboard") in events
    # the page shows the new pheromone on a later tick, without a reload
    wait_for(lambda: float(nodes(d)["2"]["heat"]) > heat_before * 10, 10, "the hotter node")
    assert float(real_redis.zscore(board.keys.open, "1")) < float(
        real_redis.zscore(board.keys.open, "2")
    )


def test_writes_from_the_page_are_refused_without_the_token(
    page: Any, real_redis: redis.Redis, boards: list[str]
) -> None:
    board = seed3(real_redis, boards)
    d = page(board.id, with_token=False)
    before = real_redis.zrange(board.keys.open, 0, -1, withscores=True)
    n_events = real_redis.xlen(board.keys.events)
    click_task(d, "1")
    d.find_element(By.ID, "boost").click()
    wait_for(lambda: message(d).startswith("refused (401)"), 10, "the refusal")
    assert "token" in message(d)
    d.find_element(By.ID, "pause").click()
    wait_for(lambda: "refused (401)" in message(d) and "boost" not in message(d), 10)
    d.find_element(By.ID, "inject-title").send_keys("sneaky")
    d.find_element(By.ID, "inject").click()
    time.sleep(0.5)
    assert message(d).startswith("refused (401)")
    assert real_redis.zrange(board.keys.open, 0, -1, withscores=True) == before
    assert real_redis.xlen(board.keys.events) == n_events
    assert board.state().value == "running"
    # with a wrong token typed in, still refused
    token = d.find_element(By.ID, "token")
    token.send_keys("not-the-token")
    d.find_element(By.ID, "title").click()
    d.find_element(By.ID, "boost").click()
    time.sleep(0.5)
    wait_for(lambda: message(d).startswith("refused (401)"), 10)
    assert real_redis.zrange(board.keys.open, 0, -1, withscores=True) == before


def test_a_hostile_title_renders_as_text(
    page: Any, real_redis: redis.Redis, boards: list[str]
) -> None:
    board = seed3(real_redis, boards)
    d = page(board.id, with_token=True)
    # injected from the page itself, then drawn in the tree, the detail and the events
    d.find_element(By.ID, "inject-title").send_keys(HOSTILE)
    d.find_element(By.ID, "inject-detail").send_keys("<script>window.__xss = 1</script>")
    d.find_element(By.ID, "inject").click()
    wait_for(lambda: message(d).startswith("injected task"), 10, "the injection")
    tid = message(d).split()[2]
    assert board.task(tid).title == HOSTILE
    wait_for(lambda: tid in nodes(d), 10, "the injected task on the page")
    assert nodes(d)[tid]["label"] == HOSTILE
    click_task(d, tid)
    assert d.find_element(By.ID, "d-title").text == HOSTILE
    wait_for(lambda: HOSTILE in d.find_element(By.ID, "events").text, 10, "the event")
    found = "return document.querySelectorAll('img, script:not([src])').length"
    assert d.execute_script(found) == 0
    assert d.execute_script("return window.__xss") is None
    with pytest.raises(NoAlertPresentException):
        d.switch_to.alert.text  # noqa: B018
    logs = " ".join(str(e) for e in d.get_log("browser"))
    assert "Content Security Policy" not in logs  # nothing even tried to run
