"""A real `docker compose` run of docker-compose.yml: opt-in, `pytest -m compose`.

Builds the image, starts Redis, four sim workers and an executor, seeds a purpose whose leaves
run code in the executor's sandbox, kills the two worker containers that hold tasks mid-run,
and checks that the answer still has every leaf and that every task completed exactly once.
Then `down` and `up` again: the blackboard survives in the AOF volume.

Needs a Docker engine and Compose v2 (`docker compose`) or docker-compose 1.29. Settings:
SWARM_COMPOSE="docker-compose" picks the compose command; SWARM_TEST_IMAGE=tag uses an image
already built (else the test builds one with `docker build --network host` and removes it);
SWARM_TEST_WORKERS sets --scale (default 4). Cleans up its containers, network and volumes.
"""

from __future__ import annotations

import os
import re
import secrets
import shlex
import shutil
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from swarm.board import Board, list_swarms
from swarm.config import ConnectionFailed, RedisSettings, connect
from swarm.sandbox.client import executors_serving

pytestmark = [pytest.mark.compose, pytest.mark.timeout(1800)]

REPO = Path(__file__).resolve().parents[1]
WORKERS = int(os.environ.get("SWARM_TEST_WORKERS", "4"))
# Three children, each of three leaves; every leaf runs a line of Python in the executor.
MIND = "sim:branch=3,depth=2,think=1,code=1"
LEAVES = 9
PURPOSE = """\
---
name: compose-test
sandbox: local
budgets:
  max_tasks: 40
  max_depth: 2
  lease_s: 5
---
# Count the leaves

Split in three, twice, run a line of code at each leaf, and join the leaves.
"""


def _run(argv: list[str], timeout: float = 600, **kw: Any) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)
    if done.returncode != 0:
        raise AssertionError(
            f"{shlex.join(argv)} failed ({done.returncode}):\n{done.stderr[-3000:]}"
        )
    return done


def _compose_command() -> list[str]:
    if shutil.which("docker") is None:
        pytest.skip("no docker command")
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        pytest.skip("no Docker engine answers (../shared/tools/docker-local.sh starts one)")
    chosen = os.environ.get("SWARM_COMPOSE")
    if chosen:
        return shlex.split(chosen)
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    pytest.skip("neither `docker compose` nor docker-compose is installed")


def _compose_env() -> dict[str, str]:
    """This environment less the variables the compose file reads: only the env file counts."""
    prefixes = ("SWARM_", "REDIS_", "E2B_", "COMPOSE_PROJECT_NAME", "COMPOSE_FILE")
    return {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Stack:
    command: list[str]
    project: str
    env_file: Path
    password: str
    port: int
    dashboard: str = ""  # the dashboard's published URL
    token: str = ""
    timings: dict[str, float] = field(default_factory=dict)

    def compose(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        argv = [*self.command, "-p", self.project, "--env-file", str(self.env_file), *args]
        return _run(argv, timeout=timeout, cwd=REPO, env=_compose_env())

    def timed(self, label: str, fn: Callable[[], Any]) -> Any:
        start = time.monotonic()
        value = fn()
        self.timings[label] = round(time.monotonic() - start, 1)
        return value

    def client(self, wait_s: float = 120) -> Any:
        """A client on the published Redis port, once Redis answers."""
        settings = RedisSettings(url=f"redis://127.0.0.1:{self.port}/0", password=self.password)
        deadline = time.monotonic() + wait_s
        while True:
            try:
                return connect(settings, cluster=False)
            except ConnectionFailed:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    command = _compose_command()
    tmp = tmp_path_factory.mktemp("compose")
    image = os.environ.get("SWARM_TEST_IMAGE")
    built = image is None
    image = image or f"swarm:compose-test-{os.getpid()}"
    password = secrets.token_urlsafe(18)
    port = _free_port()
    dashboard_port = _free_port()
    token = secrets.token_urlsafe(18)
    env_file = tmp / "compose.env"
    env_file.write_text(
        "\n".join(
            [
                f"REDIS_PASSWORD={password}",
                f"REDIS_PORT={port}",
                f"SWARM_IMAGE={image}",
                f"SWARM_MIND={MIND}",
                "SWARM_EXEC_PROCESSES=2",
                f"DASHBOARD_PORT={dashboard_port}",
                f"SWARM_DASHBOARD_TOKEN={token}",
                "",
            ]
        )
    )
    st = Stack(command, f"swarmtest{os.getpid()}", env_file, password, port)
    st.dashboard, st.token = f"http://127.0.0.1:{dashboard_port}", token
    if built:
        # --network host: where the engine's bridge has no way out (as on the dev machine).
        st.timed(
            "docker build",
            lambda: _run(
                [
                    "docker",
                    "build",
                    "--network",
                    "host",
                    "-f",
                    "workers/Dockerfile",
                    "-t",
                    image,
                    ".",
                ],
                timeout=1500,
                cwd=REPO,
            ),
        )
    try:
        yield st
    finally:
        subprocess.run(
            [
                *command,
                "-p",
                st.project,
                "--env-file",
                str(env_file),
                "down",
                "-v",
                "--remove-orphans",
            ],
            cwd=REPO,
            env=_compose_env(),
            capture_output=True,
            timeout=300,
        )
        if built:
            subprocess.run(["docker", "rmi", "-f", image], capture_output=True, timeout=300)
        print(f"\ncompose timings (s): {st.timings}")


def _busy_containers(board: Board, stack: Stack) -> dict[str, set[str]]:
    """Running worker containers whose worker holds a claimed task now -> those worker ids."""
    client = board.client
    owners = {
        client.hget(board.keys.task(t), "owner") for t in client.zrange(board.keys.leases, 0, -1)
    }
    host_of = {w: client.hget(board.keys.worker(w), "host") for w in owners if w}
    busy: dict[str, set[str]] = {}
    for cid in stack.compose("ps", "-q", "worker").stdout.split():
        # A container's host name is the start of its id.
        held = {w for w, host in host_of.items() if host and cid.startswith(host)}
        if held:
            busy[cid] = held
    return busy


def _held_by(board: Board, workers: set[str]) -> set[str]:
    client = board.client
    leased = client.zrange(board.keys.leases, 0, -1)
    return {t for t in leased if client.hget(board.keys.task(t), "owner") in workers}


def _wait(what: str, check: Callable[[], bool], timeout: float, every: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(every)


def test_compose_stack_survives_dead_workers_and_a_restart(stack: Stack, tmp_path: Path) -> None:
    stack.timed(
        "up", lambda: stack.compose("up", "-d", "--no-build", "--scale", f"worker={WORKERS}")
    )
    client = stack.client()
    # Workers offer code only once an executor serves the queue.
    _wait("an executor", lambda: executors_serving(client, "swarm-exec") > 0, timeout=120)
    (tmp_path / "purpose.md").write_text(PURPOSE)
    # The container runs as an unprivileged user; pytest's directories are private.
    tmp_path.chmod(0o755)
    (tmp_path / "purpose.md").chmod(0o644)
    seeded = stack.timed(
        "seed",
        lambda: stack.compose(
            "run", "--rm", "-v", f"{tmp_path}:/t:ro", "seed", "swarm", "seed", "/t/purpose.md"
        ),
    )
    swarm_id = seeded.stdout.strip().splitlines()[-1]
    board = Board(client, swarm_id)
    started = time.monotonic()

    # Mid-run: two containers whose workers hold leases die without a word.
    busy: dict[str, set[str]] = {}

    def two_busy() -> bool:
        busy.clear()
        busy.update(_busy_containers(board, stack))
        return len(busy) >= 2 or board.state().value == "done"

    _wait("two workers holding tasks", two_busy, timeout=120, every=0.2)
    assert len(busy) >= 2, "the swarm finished before two workers held tasks at once"
    victims = sorted(busy)[:2]
    _run(["docker", "kill", *victims])
    orphaned = _held_by(board, set().union(*(busy[v] for v in victims)))
    assert orphaned, "the killed workers held nothing when they died"

    _wait("the answer", lambda: board.state().value == "done", timeout=300, every=0.5)
    stack.timings["seed to answer"] = round(time.monotonic() - started, 1)

    status = board.status()
    assert status["by_state"]["dead"] == 0 and status["by_state"]["cancelled"] == 0
    assert status["by_state"]["done"] == status["tasks"]
    answer = board.answer()
    assert answer is not None
    # Every leaf is there, each with what its code printed in the executor's sandbox.
    assert len(re.findall(r"leaf [^|]*\[ran: \d+\]", answer)) == LEAVES, answer
    events = [fields for _, fields in board.events(count=10_000)]
    completed = Counter(e["task"] for e in events if e["type"] == "completed")
    assert completed and max(completed.values()) == 1  # no result accepted twice
    reaped = {e["task"] for e in events if e["type"] == "reaped"}
    assert orphaned <= reaped, "the dead workers' tasks were not reaped"
    _check_dashboard(stack, swarm_id, sum(e["type"] == "reaped" for e in events))
    client.close()

    # `down` keeps named volumes: the blackboard comes back from the AOF.
    stack.timed("down", lambda: stack.compose("down"))
    stack.timed("up again", lambda: stack.compose("up", "-d", "--no-build", "--scale", "worker=1"))
    again = stack.client()
    assert swarm_id in list_swarms(again, 100)
    assert Board(again, swarm_id).answer() == answer
    again.close()


def _check_dashboard(stack: Stack, swarm_id: str, reaps: int) -> None:
    """The dashboard service, published on loopback, serves /metrics to the token only."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    def get(headers: dict[str, str]) -> httpx.Response:
        deadline = time.monotonic() + 60
        while True:
            try:
                return httpx.get(f"{stack.dashboard}/metrics", headers=headers, timeout=10)
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    assert get({}).status_code == 401  # bound to 0.0.0.0 in its container: reads need it
    r = get({"Authorization": f"Bearer {stack.token}"})
    assert r.status_code == 200
    values = {
        (s.name, s.labels.get("swarm"), s.labels.get("state")): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }
    assert values[("swarm_state", swarm_id, "done")] == 1
    assert values[("swarm_reaps_total", swarm_id, None)] == reaps
    assert values[("swarm_completions_total", swarm_id, None)] > 0
