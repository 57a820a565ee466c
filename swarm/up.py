"""`swarm up`: one command from a purpose file to an answer on this machine.

Starts (or uses) a Redis, seeds the purpose, runs N identical worker processes and a
sandbox executor, shows progress, prints the root's answer, and cleans up.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from rich.console import Console, RenderableType
from rich.live import Live
from rich.text import Text

from swarm import system
from swarm.board import Board
from swarm.config import (
    RedisSettings,
    connect,
    data_dir,
    embedded_available,
    redis_settings,
    start_embedded,
)
from swarm.display import safe_line
from swarm.purpose import load_purpose
from swarm.task import SwarmState
from swarm.watch import WatchState, render, snapshot

console = Console(stderr=True)


class UpError(RuntimeError):
    """`swarm up` could not run the swarm to an answer."""


@dataclass(frozen=True)
class UpOptions:
    purpose: str
    workers: int = 2
    mind: str | None = None
    model: str | None = None
    redis_url: str | None = None
    slots: int = 1
    code: bool = True
    show: bool = True


@contextmanager
def _home_lock(home: Path) -> Iterator[None]:
    """One `swarm up` per data dir: two Valkeys on one AOF would corrupt it."""
    home.mkdir(parents=True, exist_ok=True)
    try:
        with system.exclusive_lock(home / "up.lock"):
            yield
    except system.Locked:
        raise UpError(
            f"another `swarm up` is using {home}; wait for it or set SWARM_HOME elsewhere"
        ) from None


@contextmanager
def _redis(opts: UpOptions, home: Path) -> Iterator[RedisSettings]:
    settings = redis_settings(opts.redis_url)
    if settings is not None:
        yield settings
        return
    if not embedded_available():
        raise UpError(
            "swarm up needs --redis URL here: the embedded Valkey has no build for this "
            "platform; any Redis 7 will do (Docker, WSL, Memurai, or a server elsewhere)"
        )
    with _home_lock(home):
        server, settings = start_embedded(home)
        where = f"embedded Valkey at {settings.url}, data in {home / 'valkey'}"
        console.print(Text(safe_line(where), style="dim"))
        try:
            yield settings
        finally:
            server.stop()


def _spawn(args: list[str], env: dict[str, str], log: IO[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "swarm", *args],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        **system.child_options(),
    )


def _worker_args(opts: UpOptions, swarm_id: str) -> list[str]:
    args = ["worker", "--swarm", swarm_id, "--burst", "--slots", str(opts.slots)]
    if opts.mind:
        args += ["--mind", opts.mind]
    if opts.model:
        args += ["--model", opts.model]
    if not opts.code:
        args.append("--no-code")
    return args


def executor_available() -> bool:
    if not system.executor_can_run_here():
        return False
    try:
        import swarm.sandbox.executor  # noqa: F401  (the executor needs rq)
    except ImportError:
        return False
    return True


def await_executor(settings: RedisSettings, proc: subprocess.Popen[bytes]) -> None:
    """Workers offer code only once an executor serves the queue: let it register first. One
    that dies (no sandbox here) leaves the swarm to run without code."""
    from swarm.sandbox.client import exec_connection, exec_queue_name, wait_for_executor

    conn = exec_connection(settings.for_exec())
    try:
        wait_for_executor(conn, exec_queue_name(), 30.0, alive=lambda: proc.poll() is None)
    finally:
        conn.close()


def stop_all(procs: list[subprocess.Popen[bytes]], timeout_s: float = 10.0) -> None:
    for p in procs:
        if p.poll() is None:
            system.ask_to_stop(p)
    deadline = time.monotonic() + timeout_s
    for p in procs:
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


class _View:
    """The live view of `swarm watch`, drawn under `swarm up` while the swarm works."""

    def __init__(self, board: Board) -> None:
        self.board = board
        self.state = WatchState()

    def frame(self) -> RenderableType:
        height = max(12, min(console.height - 1, 30))
        snap = snapshot(self.board.client, self.board.id, self.state, height=height)
        return render(snap, console.width, height)


def _wait(board: Board, workers: list[subprocess.Popen[bytes]], show: bool) -> None:
    view = _View(board)
    with ExitStack() as stack:
        live = None
        if show:
            live = stack.enter_context(Live(view.frame(), console=console, auto_refresh=False))
        while True:
            state = board.state()
            if live is not None:
                live.update(view.frame(), refresh=True)
            if state.terminal:
                break
            if all(w.poll() is not None for w in workers):
                raise UpError(f"every worker exited while the swarm was {state.value}")
            time.sleep(0.3)
    if show and not console.is_terminal:
        console.line()  # a piped log gets the last frame's line ended


def _log_tails(logs: list[Path], lines: int = 5) -> str:
    parts = []
    for path in logs:
        tail = path.read_text(errors="replace").splitlines()[-lines:]
        if tail:
            parts.append(f"--- {path}\n" + "\n".join(tail))
    return "\n".join(parts)


def check_mind(opts: UpOptions) -> None:
    """Fail before seeding when the workers could not think (a missing model, a bad spec);
    `swarm eval` asks the same of each arm's mind."""
    kind, _, rest = (opts.mind or "onnx").partition(":")
    if kind == "onnx":
        from swarm.models import check_model_dir, find_model

        folder = rest.partition("?")[0]  # onnx:DIR?provider=dml
        check_model_dir(find_model(folder or opts.model))
    elif kind in ("sim", "scripted"):
        from swarm.minds import MindSpecError
        from swarm.minds.scripted import load_answers, parse_scripted_spec
        from swarm.minds.sim import parse_sim_spec

        try:
            if kind == "sim":
                parse_sim_spec(rest)
            else:
                load_answers(parse_scripted_spec(rest).answers)
        except ValueError as exc:  # a bad option or answers file: the user's to fix
            raise MindSpecError(str(exc)) from None


def run_up(opts: UpOptions) -> str:
    """Run a purpose to its answer; returns the answer."""
    purpose = load_purpose(opts.purpose)  # a bad file fails here, before anything starts
    check_mind(opts)
    home = data_dir()
    logs_dir = home / "logs"
    logs_dir.mkdir(parents=True, exist_ok=True)
    with _redis(opts, home) as settings, ExitStack() as stack:
        client = connect(settings)
        board = Board.seed(client, purpose)
        console.print(Text.assemble("seeded ", (board.id, "bold"), ": ", safe_line(purpose.title)))
        env = {**os.environ, "SWARM_REDIS_URL": settings.url}
        procs: list[subprocess.Popen[bytes]] = []
        logs: list[Path] = []
        stack.callback(stop_all, procs)
        if opts.code and purpose.sandbox != "none" and executor_available():
            path = logs_dir / f"{board.id}-executor.log"
            fh = stack.enter_context(open(path, "w"))
            procs.append(_spawn(["executor"], env, fh))
            await_executor(settings, procs[-1])
        workers = []
        for n in range(opts.workers):
            path = logs_dir / f"{board.id}-worker-{n}.log"
            logs.append(path)
            fh = stack.enter_context(open(path, "w"))
            workers.append(_spawn(_worker_args(opts, board.id), env, fh))
        procs.extend(workers)
        try:
            _wait(board, workers, opts.show)
        except UpError as exc:
            raise UpError(f"{exc}; worker logs:\n{_log_tails(logs)}") from None
        st = board.status()
        if st["state"] != SwarmState.DONE.value or st["outcome"] != "answered":
            raise UpError(f"swarm {board.id} ended {st['state']} ({st['outcome'] or 'no answer'})")
        check = st["check"]
        if check["verdict"]:  # the purpose has a check: say how the answer fared, beside it
            said = f"check {check['verdict']} after {check['checks']} check(s): {check['output']}"
            console.print(
                Text(safe_line(said), style="green" if check["verdict"] == "pass" else "red")
            )
        return board.answer() or ""
