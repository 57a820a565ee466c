"""A real `docker compose` run of docker-compose.yml: opt-in, `pytest -m compose`.

Builds the image and brings the stack up as docs/compose.md says, then checks each promise:
Redis is not published by default; workers started with no model wait (no restart loop), say
once what to run and start by themselves when the model lands in the volume; each role's Redis
user is refused what it must not touch, and only the admin logs in without a name; the executor
holds only the capabilities docs/compose.md lists (`docker inspect`); a swarm whose leaves run
code in the executor's jail survives two worker containers killed mid-run, with every task
completed exactly once; `docker compose logs` has a line per task outcome and per Redis outage
and recovery; `ps` shows workers and executor healthy, and a frozen worker unhealthy; `watch`
without a terminal prints frames; after `down` and `up` the blackboard and the users are back.

Needs a Docker engine and Compose v2 (`docker compose`) or docker-compose 1.29. Settings:
SWARM_COMPOSE="docker-compose" picks the compose command; SWARM_TEST_IMAGE=tag uses an image
already built (else the test builds one with `docker build --network host` and removes it);
SWARM_TEST_WORKERS sets --scale (default 4); SWARM_TEST_MODEL_DIR is the tiny model copied in
as "the pulled model". Cleans up its containers, network and volumes.
"""

from __future__ import annotations

import json
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
import redis
import yaml
from conftest_models import tiny_model_dir

from swarm.board import Board, list_swarms
from swarm.config import ConnectionFailed, RedisSettings, connect
from swarm.sandbox.client import executors_serving

pytestmark = [pytest.mark.compose, pytest.mark.timeout(2400)]

REPO = Path(__file__).resolve().parents[1]
WORKERS = int(os.environ.get("SWARM_TEST_WORKERS", "4"))
ROLES = ("admin", "worker", "executor", "reader")
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
        pytest.skip("no Docker engine answers (see docs/compose.md, 'Test the compose file')")
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
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    # docker-compose 1.29 gives up on an engine busy creating containers after 60 s.
    env.setdefault("COMPOSE_HTTP_TIMEOUT", "600")
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# The host reaches Redis through the publish file, as an operator adding machines would.
FILES = ["-f", "docker-compose.yml", "-f", "docker-compose.publish.yml"]


@dataclass
class Stack:
    command: list[str]
    project: str
    env_file: Path
    settings: dict[str, str]
    dashboard: str = ""  # the dashboard's published URL
    token: str = ""
    timings: dict[str, float] = field(default_factory=dict)

    def write_env(self, **changes: str) -> None:
        self.settings.update(changes)
        self.env_file.write_text("".join(f"{k}={v}\n" for k, v in self.settings.items()))

    def password(self, role: str) -> str:
        return self.settings[f"REDIS_{role.upper()}_PASSWORD"]

    @property
    def port(self) -> int:
        return int(self.settings["REDIS_PORT"])

    def argv(self, *args: str, files: list[str] = FILES) -> list[str]:
        return [*self.command, *files, "-p", self.project, "--env-file", str(self.env_file), *args]

    def compose(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return _run(self.argv(*args), timeout=timeout, cwd=REPO, env=_compose_env())

    def timed(self, label: str, fn: Callable[[], Any]) -> Any:
        start = time.monotonic()
        value = fn()
        self.timings[label] = round(time.monotonic() - start, 1)
        return value

    def client(self, role: str = "admin", wait_s: float = 120) -> Any:
        """A client of `role` on the published Redis port, once Redis answers."""
        settings = RedisSettings(
            url=f"redis://127.0.0.1:{self.port}/0",
            username=f"swarm-{role}",
            password=self.password(role),
        )
        deadline = time.monotonic() + wait_s
        while True:
            try:
                return connect(settings, cluster=False)
            except ConnectionFailed:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def containers(self, service: str) -> list[str]:
        return self.compose("ps", "-q", service).stdout.split()

    def logs(self, service: str) -> str:
        return self.compose("logs", "--no-color", service).stdout


def _inspect(cid: str) -> dict[str, Any]:
    return json.loads(_run(["docker", "inspect", cid]).stdout)[0]  # type: ignore[no-any-return]


def _health(cid: str) -> str:
    state = _inspect(cid)["State"]
    return str(state.get("Health", {}).get("Status", "none"))


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    command = _compose_command()
    tmp = tmp_path_factory.mktemp("compose")
    image = os.environ.get("SWARM_TEST_IMAGE")
    built = image is None
    image = image or f"swarm:compose-test-{os.getpid()}"
    settings = {f"REDIS_{r.upper()}_PASSWORD": secrets.token_urlsafe(18) for r in ROLES}
    dashboard_port = _free_port()
    token = secrets.token_urlsafe(18)
    settings.update(
        REDIS_PORT=str(_free_port()), SWARM_IMAGE=image, SWARM_MIND="onnx",
        SWARM_EXEC_PROCESSES="2", DASHBOARD_PORT=str(dashboard_port),
        SWARM_DASHBOARD_TOKEN=token,
    )  # fmt: skip
    st = Stack(command, f"swarmtest{os.getpid()}", tmp / "compose.env", settings)
    st.dashboard, st.token = f"http://127.0.0.1:{dashboard_port}", token
    st.write_env()
    if built:
        # --network host: where the engine's bridge has no way out (as on the dev machine).
        st.timed(
            "docker build",
            lambda: _run(
                ["docker", "build", "--network", "host", "-f", "workers/Dockerfile",
                 "-t", image, "."],
                timeout=1500, cwd=REPO,
            ),
        )  # fmt: skip
    try:
        yield st
    finally:
        subprocess.run(
            st.argv("down", "-v", "--remove-orphans"),
            cwd=REPO, env=_compose_env(), capture_output=True, timeout=300,
        )  # fmt: skip
        if built:
            subprocess.run(["docker", "rmi", "-f", image], capture_output=True, timeout=300)
        print(f"\ncompose timings (s): {st.timings}")


def _wait(what: str, check: Callable[[], bool], timeout: float, every: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(every)


def test_the_default_stack_publishes_no_redis_port(stack: Stack) -> None:
    """A Redis already on the host's 6379 cannot collide with a stack that publishes nothing."""
    argv = stack.argv("config", files=["-f", "docker-compose.yml"])
    config = yaml.safe_load(_run(argv, cwd=REPO, env=_compose_env()).stdout)
    assert "ports" not in config["services"]["redis"]
    published = yaml.safe_load(stack.compose("config").stdout)["services"]["redis"]["ports"]
    assert len(published) == 1 and str(stack.port) in json.dumps(published)


def test_workers_without_a_model_wait_say_so_once_and_start_when_it_lands(stack: Stack) -> None:
    stack.timed("up (no model)", lambda: stack.compose("up", "-d", "--no-build", "worker"))
    (cid,) = stack.containers("worker")
    _wait("the worker to say what to run", lambda: "waiting for it" in stack.logs("worker"), 120)
    time.sleep(12)  # two more looks at the models volume
    logs = stack.logs("worker")
    said = [line for line in logs.splitlines() if "no model found" in line]
    assert len(said) == 1 and "run `docker compose run --rm model pull`" in said[0], logs
    state = _inspect(cid)["State"]
    assert state["Running"] and _inspect(cid)["RestartCount"] == 0  # no crash loop
    # What `docker compose run --rm model` does, with the tiny model for the 2.7 GB download:
    # a hidden folder, renamed when complete.
    stack.compose(
        "run", "--rm", "-v", f"{tiny_model_dir()}:/src:ro", "--entrypoint", "sh", "model", "-c",
        "mkdir -p /swarm/models/.p/cpu && cp -r /src /swarm/models/.p/cpu/tiny"
        " && mv /swarm/models/.p /swarm/models/phi3-mini-4k-cpu",
    )  # fmt: skip
    _wait(
        "the worker to start by itself",
        lambda: "the model is there now; starting" in stack.logs("worker"),
        120,
    )
    # No swarm wants work yet and the model is there: healthy (idle).
    _wait("a healthy idle worker", lambda: _health(cid) == "healthy", 120, every=2)
    assert _inspect(cid)["RestartCount"] == 0


def _refused(fn: Callable[[], Any]) -> bool:
    try:
        fn()
    except redis.exceptions.NoPermissionError:
        return True
    return False


def test_each_redis_user_is_refused_what_its_role_must_not_touch(stack: Stack) -> None:
    admin = stack.client("admin")
    admin.hset("swarm:{probe}:meta", "state", "done")
    anonymous = redis.Redis(port=stack.port)
    with pytest.raises(redis.AuthenticationError):
        anonymous.ping()
    with pytest.raises(redis.AuthenticationError):  # only the admin's password is the default's
        redis.Redis(port=stack.port, password=stack.password("worker")).ping()
    executor = stack.client("executor")
    assert _refused(lambda: executor.hget("swarm:{probe}:meta", "state"))
    assert _refused(lambda: executor.zrange("swarm:index", 0, -1))
    reader = stack.client("reader")
    assert reader.hget("swarm:{probe}:meta", "state") == "done"
    assert _refused(lambda: reader.hset("swarm:{probe}:meta", "state", "running"))
    for role in ("worker", "executor", "reader"):
        client = stack.client(role)
        assert _refused(client.flushall)
        assert _refused(lambda c=client: c.config_get("*"))
        assert _refused(lambda c=client: c.acl_list())
        client.close()
    admin.delete("swarm:{probe}:meta")
    for client in (admin, anonymous, executor, reader):
        client.close()


def test_the_executor_holds_only_what_its_jail_needs(stack: Stack) -> None:
    stack.compose("up", "-d", "--no-build", "executor")
    (cid,) = stack.containers("executor")
    host = _inspect(cid)["HostConfig"]
    assert host["CapDrop"] == ["ALL"]
    assert sorted(host["CapAdd"]) == ["NET_ADMIN", "SETGID", "SETUID", "SYS_ADMIN"]
    assert sorted(host["SecurityOpt"]) == [
        "apparmor=unconfined",
        "no-new-privileges:true",
        "seccomp=unconfined",
    ]
    assert not host["Privileged"]
    env = _inspect(cid)["Config"]["Env"]
    assert "SWARM_REDIS_USERNAME=swarm-executor" in env
    _wait("a healthy executor", lambda: _health(cid) == "healthy", 120, every=2)


def _busy_containers(board: Board, stack: Stack) -> dict[str, set[str]]:
    """Running worker containers whose worker holds a claimed task now -> those worker ids."""
    client = board.client
    owners = {
        client.hget(board.keys.task(t), "owner") for t in client.zrange(board.keys.leases, 0, -1)
    }
    host_of = {w: client.hget(board.keys.worker(w), "host") for w in owners if w}
    busy: dict[str, set[str]] = {}
    for cid in stack.containers("worker"):
        # A container's host name is the start of its id.
        held = {w for w, host in host_of.items() if host and cid.startswith(host)}
        if held:
            busy[cid] = held
    return busy


def _held_by(board: Board, workers: set[str]) -> set[str]:
    client = board.client
    leased = client.zrange(board.keys.leases, 0, -1)
    return {t for t in leased if client.hget(board.keys.task(t), "owner") in workers}


def test_compose_stack_survives_dead_workers_and_a_restart(stack: Stack, tmp_path: Path) -> None:
    stack.write_env(SWARM_MIND=MIND)
    stack.timed(
        "up", lambda: stack.compose("up", "-d", "--no-build", "--scale", f"worker={WORKERS}")
    )
    client = stack.client("reader")
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

    _wait("two workers holding tasks", two_busy, timeout=180, every=0.2)
    assert len(busy) >= 2, "the swarm finished before two workers held tasks at once"
    victims = sorted(busy)[:2]
    _run(["docker", "kill", *victims])
    orphaned = _held_by(board, set().union(*(busy[v] for v in victims)))
    assert orphaned, "the killed workers held nothing when they died"
    # Meanwhile `ps` does not show the dead as healthy.
    ps = stack.compose("ps", "worker").stdout
    for victim in victims:
        name = _inspect(victim)["Name"].lstrip("/")
        (line,) = [row for row in ps.splitlines() if name in row]
        assert "(healthy)" not in line, ps

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

    # The logs say what happened to every task: one line per outcome.
    logs = stack.logs("worker")
    answered = set(re.findall(r"task (\S+) answered \(\d+ tokens, [\d.]+ s\)", logs))
    assert answered >= {e["task"] for e in events if e["type"] == "completed"} - orphaned
    assert re.search(r"task \S+ split \(\d+ tokens, [\d.]+ s\): into 3 subtasks", logs)

    # Every live worker is healthy; one frozen mid-life turns unhealthy.
    live = [c for c in stack.containers("worker") if _inspect(c)["State"]["Running"]]
    for cid in live:
        _wait(f"worker {cid[:12]} healthy", lambda c=cid: _health(c) == "healthy", 120, every=2)
    client.close()
    _frozen_worker_turns_unhealthy(stack, live[0])

    # `down` keeps named volumes: the blackboard and the Redis users come back.
    stack.timed("down", lambda: stack.compose("down"))
    stack.timed("up again", lambda: stack.compose("up", "-d", "--no-build", "--scale", "worker=1"))
    again = stack.client("reader")
    assert swarm_id in list_swarms(again, 100)
    assert Board(again, swarm_id).answer() == answer
    assert stack.client("worker").acl_whoami() == "swarm-worker"  # the remote workers' user
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


def _frozen_worker_turns_unhealthy(stack: Stack, cid: str) -> None:
    """SIGSTOP the worker process: its heartbeat stops, `ps` must say so."""
    # A swarm to serve, so a healthy worker has a heartbeat to keep fresh.
    stack.compose("run", "--rm", "seed")
    freeze = (
        "import os, signal\n"
        "for pid in filter(str.isdigit, os.listdir('/proc')):\n"
        "    cmd = open(f'/proc/{pid}/cmdline', 'rb').read().split(b'\\0')\n"
        "    if b'worker' in cmd and b'health' not in cmd and int(pid) not in (1, os.getpid()):\n"
        "        os.kill(int(pid), signal.SIGSTOP)\n"
    )
    _run(["docker", "exec", cid, "python", "-c", freeze])
    _wait(f"frozen worker {cid[:12]} unhealthy", lambda: _health(cid) == "unhealthy", 180, every=2)
    why = _inspect(cid)["State"]["Health"]["Log"][-1]["Output"]
    assert why.startswith("unhealthy: no fresh heartbeat from host"), why
    _run(["docker", "kill", cid])


def test_a_redis_outage_is_one_line_in_each_workers_log(stack: Stack) -> None:
    stack.write_env(SWARM_MIND=MIND)
    stack.compose("up", "-d", "--no-build", "--scale", "worker=1")  # as the test before left it
    _wait("a worker", lambda: "INFO" in stack.logs("worker") or _any_healthy(stack), 180, 2)
    stack.compose("stop", "redis")
    time.sleep(12)
    stack.compose("start", "redis")
    try:
        _wait("the recovery line", lambda: "Redis is back after" in stack.logs("worker"), 120, 2)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; worker logs:\n{stack.logs('worker')[-3000:]}") from None
    logs = stack.logs("worker")
    assert logs.count("Redis unavailable (") == 1 and logs.count("Redis is back after") == 1, logs


def _any_healthy(stack: Stack) -> bool:
    return any(_health(c) == "healthy" for c in stack.containers("worker"))


def test_watch_without_a_terminal_prints_frames(stack: Stack) -> None:
    stack.compose("run", "--rm", "seed")  # a swarm to watch, as the admin
    done = subprocess.run(
        stack.argv("run", "--rm", "-T", "watch", "timeout", "8", "swarm", "watch", "--every", "2"),
        cwd=REPO, env=_compose_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 124, done.stderr  # stopped by `timeout`, printing until then
    assert done.stdout.startswith("not a terminal: printing a frame every 2 s"), done.stdout
    reader = stack.client("reader")
    newest = list_swarms(reader, 1)[0]
    reader.close()
    assert done.stdout.count(newest) >= 2, done.stdout
