"""Code execution through RQ on a real Redis, against a real `swarm executor` process with the
local jail, and the hostile-code suite: every program in tests/hostile/ is run through it, must
be stopped with a reason, must not leak a secret or touch the host, and the executor must go
on serving."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner
from rq import Queue, Worker
from rq.results import Result
from rq.serializers import JSONSerializer

from swarm.cli.helpers import exec_settings
from swarm.cli.sandbox import executor as executor_command
from swarm.cli.sandbox import sandbox as sandbox_group
from swarm.config import redis_settings
from swarm.sandbox.admission import MAX_DATA_BYTES, refusal
from swarm.sandbox.client import (
    EXECUTE,
    SERVED_TTL_S,
    ExecClient,
    check_plain_redis,
    exec_queue_name,
    runner_factory,
)
from swarm.sandbox.executor import ExecJob, ExecQueue, ExecWorker
from swarm.sandbox.limits import ExecLimits

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap")

HOSTILE = sorted(Path(__file__).with_name("hostile").glob("*.py"))
LIMITS = ExecLimits(
    timeout_s=3, cpu_s=2, memory_mb=256, processes=16, file_mb=8, workdir_mb=16, output_bytes=4000
)
SECRETS = {
    "SWARM_TEST_SECRET": f"s3cret-{uuid.uuid4().hex}",
    "E2B_API_KEY": f"e2b_{uuid.uuid4().hex}",
}
JAIL_UID_FLOOR = 1_500_000_000


def _limits_env(limits: ExecLimits) -> dict[str, str]:
    names = (
        "timeout_s",
        "cpu_s",
        "memory_mb",
        "processes",
        "file_mb",
        "workdir_mb",
        "output_bytes",
    )
    return {f"SWARM_EXEC_{n.upper()}": str(getattr(limits, n)) for n in names}


def _executor(url: str, queue: str, *extra: str, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, **_limits_env(LIMITS), **SECRETS}
    env.pop("SWARM_EXEC_REDIS_URL", None)
    cmd = [sys.executable, "-m", "swarm", "executor", "--redis", url, "--queue", queue]
    with log.open("wb") as out:
        return subprocess.Popen(
            [*cmd, "--sandbox", "local", *extra], env=env, stdout=out, stderr=out
        )


def _wait_for_worker(
    conn: redis.Redis, queue: str, proc: subprocess.Popen[bytes], log: Path
) -> None:
    deadline = time.monotonic() + 20
    while not Worker.all(queue=Queue(queue, connection=conn)):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"executor did not start:\n{log.read_text()}")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def conn(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture(scope="module")
def executor(
    redis_url: str, conn: redis.Redis, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    queue = f"test-exec-{uuid.uuid4().hex[:8]}"
    log = tmp_path_factory.mktemp("executor") / "executor.log"
    proc = _executor(redis_url, queue, log=log)
    _wait_for_worker(conn, queue, proc, log)
    yield queue, proc
    proc.send_signal(signal.SIGTERM)  # warm shutdown: finishes the job in hand, then exits
    assert proc.wait(timeout=20) == 0, log.read_text()
    Queue(queue, connection=conn).delete(delete_jobs=True)


@pytest.fixture
def client(conn: redis.Redis, executor: tuple[str, subprocess.Popen[bytes]]) -> ExecClient:
    return ExecClient(conn, executor[0], LIMITS, keepalive_every_s=0.2)


def _assert_serving(client: ExecClient, proc: subprocess.Popen[bytes]) -> None:
    assert proc.poll() is None, "the executor died"
    out = client.run("print(1)", 3)
    assert (out.stdout, out.error) == ("1\n", "")


# ------------------------------------------------------------------ the exec path


def test_round_trip_returns_what_ran(client: ExecClient) -> None:
    out = client.run("import sys\nprint('out')\nprint('err', file=sys.stderr)\nsys.exit(2)", 3)
    assert (out.stdout, out.stderr, out.error) == ("out\n", "err\n", "exit status 2")
    assert out.duration_s > 0


def test_nothing_is_left_in_redis_after_a_run(client: ExecClient, conn: redis.Redis) -> None:
    before = set(conn.scan_iter("rq:job:*")) | set(conn.scan_iter("rq:results:*"))
    client.run("print(1)", 3)
    after = set(conn.scan_iter("rq:job:*")) | set(conn.scan_iter("rq:results:*"))
    assert after <= before


def test_keepalive_is_called_while_waiting(client: ExecClient) -> None:
    calls: list[float] = []
    out = client.run(
        "import time; time.sleep(1); print('done')", 3, keepalive=lambda: calls.append(1)
    )
    assert out.stdout == "done\n"
    assert len(calls) >= 3


def test_jobs_are_json_not_pickle(conn: redis.Redis) -> None:
    queue = Queue(
        f"test-unserved-{uuid.uuid4().hex[:8]}", connection=conn, serializer=JSONSerializer
    )
    job = queue.enqueue_call(EXECUTE, args=("print(1)", 1.0))
    raw = conn.hget(f"rq:job:{job.id}", "data")
    assert raw is not None
    assert json.loads(zlib.decompress(raw)) == [EXECUTE, None, ["print(1)", 1.0], {}]
    queue.delete(delete_jobs=True)


def test_no_executor_gives_a_clear_error_without_real_waiting(conn: redis.Redis) -> None:
    now = [0.0]

    def clock() -> float:
        now[0] += 5.0  # every look at the clock is five seconds later
        return now[0]

    queue = f"test-unserved-{uuid.uuid4().hex[:8]}"
    pings: list[int] = []
    lonely = ExecClient(conn, queue, LIMITS, queue_wait_s=5, keepalive_every_s=0.01, clock=clock)
    started = time.monotonic()
    out = lonely.run("print(1)", 3, keepalive=lambda: pings.append(1))
    assert time.monotonic() - started < 2
    assert out.error.startswith("no executor answered within 8s; start one with `swarm executor`")
    assert pings
    assert Queue(queue, connection=conn).count == 0  # the abandoned job is withdrawn


def test_executor_runs_only_the_execute_function(
    client: ExecClient, conn: redis.Redis, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    queue = Queue(client.queue.name, connection=conn, serializer=JSONSerializer)
    job = queue.enqueue_call("os.system", args=(f"touch {marker}",))
    deadline = time.monotonic() + 10
    while conn.exists(job.key) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not conn.exists(job.key), "the job was not dropped"
    assert Result.fetch_latest(job, serializer=JSONSerializer) is None  # refused, unanswered
    assert not marker.exists()


def test_malformed_job_arguments_are_an_error_not_a_crash(
    client: ExecClient, conn: redis.Redis
) -> None:
    queue = Queue(client.queue.name, connection=conn, serializer=JSONSerializer)
    job = queue.enqueue_call(EXECUTE, args=(["not", "code"], "soon"))
    result = Result.fetch_latest(job, serializer=JSONSerializer, timeout=10)
    assert result is not None and result.type == Result.Type.SUCCESSFUL
    assert result.return_value["error"].startswith("malformed exec job")
    job.delete()


class _Listener:
    """A TCP server on 127.0.0.1 that records every connection and never answers: a webhook
    sent to it would both show up here and stall its sender for the webhook's timeout."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.connections: list[tuple[str, int]] = []
        self._held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                peer, address = self.sock.accept()
            except OSError:
                return
            self.connections.append(address)
            self._held.append(peer)  # held open, never answered

    def close(self) -> None:
        self.sock.close()
        for peer in self._held:
            peer.close()


def _call(*call: object) -> bytes:
    return zlib.compress(json.dumps(list(call)).encode())


def _plant(conn: redis.Redis, queue: str, **fields: object) -> str:
    """Write a job hash straight to Redis, as anyone with access to it could, and queue it."""
    job_id = f"planted-{uuid.uuid4().hex}"
    stamp = "2026-01-01T00:00:00.000000Z"
    base: dict[str, object] = {
        "status": "queued", "origin": queue, "created_at": stamp, "enqueued_at": stamp,
        "data": _call(EXECUTE, None, ["print('planted')", 3.0], {}), "description": "x",
        "timeout": "33", "result_ttl": "300", "failure_ttl": "3600", "ttl": "30",
    }  # fmt: skip
    base.update(fields)
    with conn.pipeline() as pipe:  # atomically, so the executor never sees half a job
        pipe.hset(f"rq:job:{job_id}", mapping=base)  # type: ignore[arg-type]
        pipe.rpush(f"rq:queue:{queue}", job_id)
        pipe.execute()
    return job_id


def _hostile_jobs(url: str) -> dict[str, dict[str, object]]:
    hook = [{"url": url, "job_status": s, "method": "POST", "headers": None, "timeout": 600}
            for s in ("finished", "failed")]  # fmt: skip
    webhooks = json.dumps(hook)
    return {
        "webhook on a refused function": {
            "data": _call("os.getcwd", None, [], {}), "webhooks": webhooks,
        },
        "webhook on execute": {"webhooks": webhooks},
        "success callback": {"success_callback_name": "os.getcwd"},
        "failure callback": {"failure_callback_name": "os.getcwd", "timeout": "not a number"},
        "stopped callback": {"stopped_callback_name": "os.getcwd"},
        "dependency": {"dependency_ids": json.dumps(["some-other-job"])},
        "retries": {"retries_left": "5", "retry_intervals": "[0]"},
        "repeats": {"repeats_left": "100", "repeat_intervals": "[0]"},
        "rate limit": {"rate_limit_key": "k", "rate_limit_concurrency": "1"},
        "group": {"group_id": "g"},
        "meta": {"meta": json.dumps({"k": "v"})},
        "result kept forever": {"result_ttl": "-1"},
        "unknown field": {"callback_url": url},
        "kwargs": {"data": _call(EXECUTE, None, ["print(1)"], {"timeout_s": 1})},
        "zlib bomb": {"data": zlib.compress(b"[" + b" " * (4 * MAX_DATA_BYTES))},
        "unparseable date": {"enqueued_at": "yesterday"},
        "escapes in the description": {"description": "\x1b]52;c;cHduZWQ=\x07"},
    }  # fmt: skip


def test_hostile_jobs_are_dropped_with_no_request_and_no_delay(
    client: ExecClient, conn: redis.Redis, executor: tuple[str, subprocess.Popen[bytes]]
) -> None:
    listener = _Listener()
    try:
        url = f"http://127.0.0.1:{listener.port}/hook"
        planted = {name: _plant(conn, client.queue.name, **fields)
                   for name, fields in _hostile_jobs(url).items()}  # fmt: skip
        started = time.monotonic()
        out = client.run("print('real')", 3)  # queued behind every hostile job
        assert (out.stdout, out.error) == ("real\n", "")
        assert time.monotonic() - started < 5, "a hostile job delayed the next real one"
        _assert_serving(client, executor[1])
        time.sleep(0.5)  # a request sent late would still show up
        assert listener.connections == []
        left = [name for name, job_id in planted.items() if conn.exists(f"rq:job:{job_id}")]
        assert left == [], f"not dropped: {left}"
        assert not any(conn.exists(f"rq:results:{job_id}") for job_id in planted.values())
        intermediate = conn.lrange(f"rq:queue:{client.queue.name}:intermediate", 0, -1)
        assert not {j.decode() for j in intermediate} & set(planted.values())
    finally:
        listener.close()


def test_jobs_planted_in_rq_registries_are_dropped_by_the_clean_up(conn: redis.Redis) -> None:
    listener = _Listener()
    name = f"test-reg-{uuid.uuid4().hex[:8]}"
    try:
        url = f"http://127.0.0.1:{listener.port}/hook"
        hook = json.dumps([{"url": url, "job_status": "failed", "method": "POST",
                            "headers": None, "timeout": 600}])  # fmt: skip
        # "Abandoned" by a dead worker: RQ's clean-up fails it, which sends its webhooks.
        started = _plant(conn, name, status="started", webhooks=hook)
        ready = _plant(conn, name, status="ready_to_enqueue", webhooks=hook)
        conn.zadd(f"rq:wip:{name}", {started: 1})
        conn.zadd(f"rq:ready:{name}", {ready: 1})
        queue = ExecQueue(name, connection=conn, serializer=JSONSerializer, job_class=ExecJob)
        worker = ExecWorker([queue], connection=conn, serializer=JSONSerializer, job_class=ExecJob)
        worker.run_maintenance_tasks()  # what a serving executor does every few minutes
        time.sleep(0.5)
        assert listener.connections == []
        assert not conn.exists(f"rq:job:{started}", f"rq:job:{ready}")
        assert not conn.zcard(f"rq:wip:{name}") and not conn.zcard(f"rq:ready:{name}")
    finally:
        listener.close()
        queue.delete(delete_jobs=True)


def test_admission_takes_what_the_client_writes_and_nothing_more(conn: redis.Redis) -> None:
    queue = Queue(f"test-adm-{uuid.uuid4().hex[:8]}", connection=conn, serializer=JSONSerializer)
    job = queue.enqueue_call(
        EXECUTE, args=("print(1)", 3.0), timeout=33, ttl=30, result_ttl=300, failure_ttl=3600
    )
    raw = conn.hgetall(job.key)
    assert refusal(raw) == ""
    assert refusal({**raw, b"webhooks": b"[]x"}) == "it carries webhooks"
    assert refusal({**raw, b"ttl": b"1e400"}) == "its ttl is outside 1..86400"
    assert refusal({k: v for k, v in raw.items() if k != b"data"}) == "it has no call"
    assert refusal({**raw, b"origin": b"q\x1b[2J"}) == "its origin holds control characters"
    queue.delete(delete_jobs=True)


def test_queue_names_and_plain_redis_check(conn: redis.Redis) -> None:
    assert exec_queue_name(env={}) == "swarm-exec"
    assert exec_queue_name("abc", env={}) == "swarm-exec:abc"
    assert exec_queue_name(env={"SWARM_EXEC_QUEUE": "q"}) == "q"
    check_plain_redis(conn)  # the test server is not a cluster: no error


def test_runner_factory_connects_lazily_and_reports_a_dead_redis(
    redis_url: str, executor: tuple[str, subprocess.Popen[bytes]], monkeypatch: pytest.MonkeyPatch
) -> None:
    dead = redis_settings("redis://127.0.0.1:1/0", env={})
    runner = runner_factory(dead)("swarm-1")  # cannot ask the registry: offered, to say why
    assert runner is not None
    assert runner.run("print(1)", 3).error.startswith("exec queue unavailable: cannot connect")
    monkeypatch.setenv("SWARM_EXEC_QUEUE", executor[0])
    live = runner_factory(redis_settings(redis_url, env={}), limits=LIMITS)
    runner = live("swarm-1")
    assert runner is not None and runner is live("swarm-2")  # one shared queue unless per_swarm
    assert runner.run("print(6 * 7)", 3).stdout == "42\n"


def test_code_is_offered_only_while_an_executor_serves_the_queue(
    redis_url: str, conn: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue = f"test-served-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("SWARM_EXEC_QUEUE", queue)
    now = [0.0]
    runners = runner_factory(redis_settings(redis_url, env={}), clock=lambda: now[0])
    assert runners("s") is None
    rq_worker = Worker([Queue(queue, connection=conn)], connection=conn)
    rq_worker.register_birth()  # an executor starts serving the queue
    try:
        assert runners("s") is None  # the answer is cached for a few seconds
        now[0] += SERVED_TTL_S
        assert runners("s") is not None
    finally:
        rq_worker.register_death()
    now[0] += SERVED_TTL_S
    assert runners("s") is None


def test_an_expired_unclaimed_job_is_an_error_not_a_crash(conn: redis.Redis) -> None:
    now = [0.0]

    def clock() -> float:
        now[0] += 5.0
        return now[0]

    name = f"test-unserved-{uuid.uuid4().hex[:8]}"
    queue = Queue(name, connection=conn)

    def expire() -> None:  # the job's ttl runs out while nobody serves the queue
        for job_id in queue.job_ids:
            conn.delete(f"rq:job:{job_id}")

    lonely = ExecClient(conn, name, LIMITS, queue_wait_s=5, keepalive_every_s=0.01, clock=clock)
    out = lonely.run("print(1)", 3, keepalive=expire)
    assert out.error.startswith("no executor answered within 8s")
    queue.delete(delete_jobs=True)


def test_exec_redis_url_resolution() -> None:
    env = {"SWARM_REDIS_URL": "redis://board:6379/0", "SWARM_EXEC_REDIS_URL": "redis://q:6379/1"}
    assert exec_settings(None, env).url == "redis://q:6379/1"
    assert exec_settings("redis://flag:6379/2", env).url == "redis://flag:6379/2"
    assert exec_settings(None, {"REDIS_URL": "redis://r:6379/0"}).url == "redis://r:6379/0"
    assert exec_settings(None, {}).url == "redis://127.0.0.1:6379/0"


def test_executor_refuses_to_start_without_a_working_sandbox(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("E2B_API_KEY", raising=False)
    args = ["--redis", redis_url, "--queue", "test-never-served", "--sandbox", "e2b", "--burst"]
    result = CliRunner().invoke(executor_command, args)
    assert result.exit_code == 1
    assert "needs E2B_API_KEY" in result.output


def test_burst_pool_serves_a_backlog_and_exits(
    redis_url: str, conn: redis.Redis, tmp_path: Path
) -> None:
    name = f"test-pool-{uuid.uuid4().hex[:8]}"
    queue = Queue(name, connection=conn, serializer=JSONSerializer)
    jobs = [queue.enqueue_call(EXECUTE, args=(f"print({i})", 3.0)) for i in range(4)]
    proc = _executor(redis_url, name, "--burst", "--processes", "2", log=tmp_path / "pool.log")
    assert proc.wait(timeout=60) == 0, (tmp_path / "pool.log").read_text()
    outputs = [Result.fetch_latest(job, serializer=JSONSerializer) for job in jobs]
    assert [r.return_value["stdout"] for r in outputs if r] == [f"{i}\n" for i in range(4)]
    queue.delete(delete_jobs=True)


def test_sandbox_run_command_prints_what_the_mind_sees(tmp_path: Path) -> None:
    runner = CliRunner()
    good = tmp_path / "good.py"
    good.write_text("print('hello')")
    result = runner.invoke(sandbox_group, ["run", str(good), "--sandbox", "local"])
    assert result.exit_code == 0, result.output
    assert "--- stdout ---\nhello\n--- ok (" in result.output
    result = runner.invoke(sandbox_group, ["run", "-", "--sandbox", "local", "--timeout", "0.5"],
                           input="import time; time.sleep(5)")  # fmt: skip
    assert result.exit_code == 1
    assert "error: timeout after 0.5s" in result.output


# ------------------------------------------------------------------ hostile code


def _expectations(program: Path) -> tuple[str, list[Path]]:
    text = program.read_text()
    found = re.search(r"^# expect: (.*)$", text, re.M)
    assert found, f"{program.name} needs an '# expect: <regex>' line"
    return found.group(1), [Path(p) for p in re.findall(r"^# host-absent: (.*)$", text, re.M)]


@pytest.mark.parametrize("program", HOSTILE, ids=[p.stem for p in HOSTILE])
def test_hostile_code_is_contained(
    program: Path, client: ExecClient, executor: tuple[str, subprocess.Popen[bytes]]
) -> None:
    expected, host_absent = _expectations(program)
    for path in host_absent:
        assert not path.exists(), f"{path} exists before the run; remove it"
    out = client.run(program.read_text(), LIMITS.timeout_s)
    shown = out.stdout + out.stderr + out.error
    assert re.search(expected, out.error), f"error {out.error!r} does not match {expected!r}"
    assert "ESCAPED" not in shown, shown
    for secret in SECRETS.values():
        assert secret not in shown
    for path in host_absent:
        assert not path.exists(), f"the jail wrote {path} on the host"
    assert len(out.stdout.encode()) <= LIMITS.output_bytes + 100
    _assert_serving(client, executor[1])


@pytest.mark.skipif(os.geteuid() != 0, reason="jail uids are only distinct when run by root")
def test_no_jailed_process_outlives_its_run(client: ExecClient) -> None:
    client.run((HOSTILE[0].parent / "daemon.py").read_text(), 3)
    time.sleep(0.2)
    ps = subprocess.run(["ps", "-eo", "uid=,pid=,args="], capture_output=True, text=True).stdout
    survivors = [line for line in ps.splitlines() if int(line.split()[0]) >= JAIL_UID_FLOOR]
    assert survivors == []
