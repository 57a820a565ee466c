"""The `swarm` command line: thin; each command parses, calls the library, prints."""

from __future__ import annotations

import importlib
import json
import logging
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.text import Text

from swarm import __version__, logs, system
from swarm.board import Board, check_boost, list_swarms
from swarm.config import (
    RedisSettings,
    connect,
    redis_settings,
)
from swarm.display import json_safe, safe_line, safe_text
from swarm.errors import checked_swarm_id, user_errors
from swarm.pheromone import MAX_LEVEL
from swarm.purpose import load_purpose

F = TypeVar("F", bound=Callable[..., Any])

console = Console(stderr=True)
out = Console(highlight=False, soft_wrap=True)


def redis_option(fn: F) -> F:
    return click.option(
        "--redis",
        "redis_url",
        metavar="URL",
        help="Redis URL (redis://, rediss://, unix://); default $SWARM_REDIS_URL or $REDIS_URL.",
    )(fn)


def swarm_option(fn: F) -> F:
    return click.option(
        "--swarm",
        "swarm_id",
        metavar="ID",
        callback=checked_swarm_id,
        help="Which swarm (default: the newest).",
    )(fn)


def _settings(redis_url: str | None) -> RedisSettings:
    settings = redis_settings(redis_url)
    if settings is None:
        raise click.ClickException(
            "no Redis named: pass --redis URL or set SWARM_REDIS_URL "
            "(or use `swarm up`, which starts an embedded Valkey)"
        )
    return settings


def _client(redis_url: str | None) -> Any:
    return connect(_settings(redis_url))


def _board(client: Any, swarm_id: str | None) -> Board:
    if swarm_id is None:
        ids = list_swarms(client, 1)
        if not ids:
            raise click.ClickException("no swarm on this Redis yet: run `swarm seed PURPOSE`")
        swarm_id = ids[0]
    board = Board(client, swarm_id)
    board.state()  # raises NoSuchSwarm with a clear message
    return board


class _SafeRecords(logging.Filter):
    """Log lines quote tasks, answers and server replies: shown as text, never acted on."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a malformed call: show it rather than fail the caller
            message = f"{record.msg} {record.args}"
        record.msg, record.args = safe_text(message), None
        return True


def _logging(verbose: int) -> None:
    try:
        logs.setup(verbose)
    except logs.LogSetupError as exc:
        raise click.ClickException(str(exc)) from None
    for handler in logging.getLogger().handlers:
        handler.addFilter(_SafeRecords())


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="swarm")
def cli() -> None:
    """A swarm of identical small-model workers solving a purpose on a Redis blackboard."""


@cli.command()
@click.argument("purpose", type=click.Path(dir_okay=False, path_type=str))
@redis_option
@click.option(
    "--id",
    "swarm_id",
    callback=checked_swarm_id,
    help="Choose the swarm id (default: from the purpose's name).",
)
@user_errors
def seed(purpose: str, redis_url: str | None, swarm_id: str | None) -> None:
    """Put PURPOSE (a purpose.md file) on the blackboard; prints the swarm id."""
    parsed = load_purpose(purpose)  # validate before touching Redis: bad input changes nothing
    board = Board.seed(_client(redis_url), parsed, swarm_id=swarm_id)
    click.echo(board.id)


@cli.command()
@redis_option
@swarm_option
@click.option(
    "--mind", envvar="SWARM_MIND", help="sim:..., onnx[:DIR] or openai:URL#MODEL ($SWARM_MIND)."
)
@click.option("--model", default=None, help="ORT GenAI model folder (default $SWARM_MODEL).")
@click.option(
    "--slots", envvar="SWARM_SLOTS", default=1, show_default=True, type=click.IntRange(1, 64)
)
@click.option("--burst", is_flag=True, help="Exit when the swarm is done or nothing is left.")
@click.option("--skills", default="", help="Comma-separated tags this worker prefers.")
@click.option(
    "--lease",
    envvar="SWARM_LEASE",
    type=click.FloatRange(1, None),
    help="Lease seconds (default: the swarm's, raised to what the mind needs).",
)
@click.option("--name", default="", help="Worker name prefix (default: host name).")
@click.option("--no-code", is_flag=True, help="Never offer the mind code execution.")
@click.option(
    "--grace",
    envvar="SWARM_GRACE",
    default=5.0,
    show_default=True,
    type=click.FloatRange(0, None),
    help="After SIGTERM, seconds held tasks may finish before they are released.",
)
@click.option(
    "--metrics-port",
    envvar="SWARM_METRICS_PORT",
    type=click.IntRange(0, 65535),
    help="Serve this worker's Prometheus metrics on PORT (needs swarm-blackboard[dashboard]).",
)
@click.option(
    "--metrics-host",
    envvar="SWARM_METRICS_HOST",
    default="127.0.0.1",
    show_default=True,
    help="Address the metrics port binds.",
)
@click.option(
    "--wait-for-model",
    is_flag=True,
    envvar="SWARM_WAIT_FOR_MODEL",
    help="With no model yet, say so once and wait for one instead of exiting.",
)
@click.option("-v", "--verbose", count=True)
@user_errors
def worker(
    redis_url: str | None,
    swarm_id: str | None,
    mind: str | None,
    model: str | None,
    slots: int,
    burst: bool,
    skills: str,
    lease: float | None,
    name: str,
    no_code: bool,
    grace: float,
    metrics_port: int | None,
    metrics_host: str,
    wait_for_model: bool,
    verbose: int,
) -> None:
    """Run one worker: claim, think, act, post, until stopped (SIGTERM finishes or releases)."""
    from swarm.minds import make_mind, make_mind_waiting
    from swarm.worker import Worker, WorkerConfig

    _logging(verbose)
    settings = _settings(redis_url)
    client = connect(settings)
    model = model or os.environ.get("SWARM_MODEL")
    if wait_for_model:
        say = logging.getLogger("swarm.worker").warning
        the_mind = make_mind_waiting(mind, model=model, slots=slots, say=say)
    else:
        the_mind = make_mind(mind, model=model, slots=slots)
    _say_memory(the_mind)
    config = WorkerConfig(
        swarm_id=swarm_id,
        slots=slots,
        burst=burst,
        skills=tuple(s for s in skills.split(",") if s),
        lease_s=lease,
        name=name,
        grace_s=grace,
    )
    runner = None if no_code else _code_runner(settings)
    metrics = None if metrics_port is None else _prometheus()
    the_worker = Worker(client, the_mind, config, code_runner=runner, metrics=metrics)
    if metrics is not None and metrics_port is not None:
        _serve_metrics(metrics, the_worker.id, the_mind.name, metrics_host, metrics_port)
    sys.exit(the_worker.run())


def _prometheus() -> Any:
    try:
        from swarm.metrics import PrometheusMetrics

        return PrometheusMetrics()
    except ImportError:
        raise click.ClickException(
            "--metrics-port needs prometheus_client: pip install 'swarm-blackboard[dashboard]'"
        ) from None


def _serve_metrics(metrics: Any, worker_id: str, mind: str, host: str, port: int) -> None:
    import socket

    metrics.identify(worker_id, socket.gethostname(), mind)
    try:
        bound = metrics.serve(port, host)
    except OSError as exc:
        raise click.ClickException(f"cannot serve metrics on {host}:{port}: {exc}") from None
    console.print(f"metrics of {worker_id} on http://{host}:{bound}/metrics", markup=False)


def _say_memory(mind: object) -> None:
    """What the model and each slot take, and a warning when the slots cannot fit."""
    from swarm import memory

    plan = getattr(mind, "memory", None)
    if plan is None:  # a mind that holds no model here
        return
    click.echo(f"{getattr(mind, 'name', 'mind')} mind: {plan.describe()}", err=True)
    # The model is loaded by now; the KV cache grows as the slots' sequences do.
    short = memory.shortfall(plan.slots * plan.slot_bytes, memory.available_bytes())
    if short:
        click.echo(
            f"warning: {plan.slots} slot(s) of {plan.context} tokens {short}; "
            "lower --slots or the mind's context (onnx:?context=N), or give it more memory",
            err=True,
        )


def _code_runner(settings: RedisSettings) -> Callable[[str], Any] | None:
    try:
        from swarm.sandbox.client import runner_factory
    except ImportError:
        return None
    if not system.LOCAL_JAIL:
        logging.getLogger("swarm.worker").warning(
            "the local jail is Linux-only: code runs on executors serving the exec queue "
            "(`swarm executor` on a Linux machine, or with E2B), and is offered only while one does"
        )
    # Code is offered only while an executor serves the queue (RQ's worker registry).
    return runner_factory(settings.for_exec())


@cli.command()
@redis_option
@swarm_option
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@user_errors
def status(redis_url: str | None, swarm_id: str | None, as_json: bool) -> None:
    """Counters of one swarm: state, tasks by state, tokens, live workers."""
    board = _board(_client(redis_url), swarm_id)
    st = board.status()
    if as_json:
        click.echo(json_safe(json.dumps(st, indent=2, ensure_ascii=False)))
        return
    states = "  ".join(f"{k} {v}" for k, v in st["by_state"].items() if v)
    # Everything here came from Redis: Text, never markup, and made safe to show.
    out.print(Text.assemble((safe_line(st["id"]), "bold"), "  ", safe_line(st["title"])))
    budgets = st["budgets"]
    tasks = f"tasks {st['tasks']}/{budgets['max_tasks']}"
    out.print(Text(safe_line(f"state {st['state']}  {tasks}  {states}")))
    out.print(Text(f"tokens {st['tokens']}/{budgets['max_tokens']}  workers {st['workers_alive']}"))


@cli.command()
@redis_option
@swarm_option
@click.option("--json", "as_json", is_flag=True)
@user_errors
def result(redis_url: str | None, swarm_id: str | None, as_json: bool) -> None:
    """The root's answer (exit status 2 while the swarm is still working)."""
    board = _board(_client(redis_url), swarm_id)
    st = board.status()
    answer = board.answer()
    if as_json:
        data = {"id": board.id, "state": st["state"], "outcome": st["outcome"], "answer": answer}
        click.echo(json_safe(json.dumps(data, indent=2, ensure_ascii=False)))
    elif answer is not None:
        click.echo(safe_text(answer))
    else:
        click.echo(safe_line(f"swarm {board.id} is {st['state']}: no answer yet"), err=True)
    if answer is None:
        sys.exit(2)


@cli.command("ls")
@redis_option
@user_errors
def ls_(redis_url: str | None) -> None:
    """List swarms, newest first."""
    client = _client(redis_url)
    for sid in list_swarms(client, 1000):
        m = client.hmget(Board(client, sid).keys.meta, "state", "tasks", "title")
        if m[0] is not None:
            # one safe line per swarm: a tab or newline in a title cannot forge a row
            state, tasks, title = (safe_line(v or "") for v in m)
            click.echo(f"{sid}\t{state}\t{tasks} tasks\t{title}")


@cli.command()
@redis_option
@swarm_option
@user_errors
def pause(redis_url: str | None, swarm_id: str | None) -> None:
    """Workers finish what they hold and claim nothing new."""
    board = _board(_client(redis_url), swarm_id)
    if not board.pause(_who()):
        raise click.ClickException(f"swarm {board.id} is {board.state().value}, not running")
    click.echo(f"paused {board.id}")


@cli.command()
@redis_option
@swarm_option
@user_errors
def resume(redis_url: str | None, swarm_id: str | None) -> None:
    """Undo `swarm pause`."""
    board = _board(_client(redis_url), swarm_id)
    if not board.resume(_who()):
        raise click.ClickException(f"swarm {board.id} is {board.state().value}, not paused")
    click.echo(f"resumed {board.id}")


def _checked_amount(_ctx: Any, _param: Any, value: float | None) -> float | None:
    try:
        return None if value is None else check_boost(value)
    except ValueError as exc:
        raise click.ClickException(f"--amount: {exc}") from None


# A default boost outweighs everything the claim rule now weighs, so the task is taken next
# (unless a worker explores at random, with probability epsilon).
BOOST_OVER_TOP = 100.0


@cli.command()
@click.argument("task_id")
@click.option(
    "--amount",
    type=float,
    callback=_checked_amount,
    help=f"Pheromone to deposit, at most {MAX_LEVEL:g} (default: 100 times all the top "
    "candidates hold, so it is next).",
)
@redis_option
@swarm_option
@user_errors
def boost(task_id: str, amount: float | None, redis_url: str | None, swarm_id: str | None) -> None:
    """Deposit pheromone on an open task so the swarm takes it sooner."""
    board = _board(_client(redis_url), swarm_id)
    if amount is None:
        amount = min(BOOST_OVER_TOP * max(board.top_pheromone(), 1.0), MAX_LEVEL)
    if not board.boost(task_id, amount, _who()):
        raise click.ClickException(f"task {task_id} is not open")
    click.echo(f"boosted {task_id} by {amount:.4g}")


@cli.command()
@click.argument("task_id", required=False)
@click.option(
    "--all", "--swarm-too", "whole", is_flag=True, help="Cancel the whole swarm (see --swarm)."
)
@redis_option
@swarm_option
@user_errors
def cancel(task_id: str | None, whole: bool, redis_url: str | None, swarm_id: str | None) -> None:
    """Cancel TASK_ID and everything under it, or the whole swarm with --all.

    `--swarm ID` picks which swarm (default: the newest): `swarm cancel --all --swarm ID`.
    """
    if task_id and whole:
        raise click.UsageError("name a TASK_ID or pass --all, not both")
    if not task_id and not whole:
        raise click.UsageError("name a TASK_ID, or pass --all to cancel the whole swarm")
    board = _board(_client(redis_url), swarm_id)
    n = board.cancel(None if whole else task_id, _who())
    click.echo(f"cancelled {n} task(s)" if not whole else f"cancelled swarm {board.id}")


def _who() -> str:
    # USER on POSIX, USERNAME on Windows.
    return f"person:{os.environ.get('USER') or os.environ.get('USERNAME') or 'someone'}"


def _register_families() -> None:
    """Commands that live beside their noun (sandbox, models, watch, trace, up)."""
    for module, names in (
        ("swarm.up", ("up",)),
        ("swarm.sandbox.commands", ("executor", "sandbox")),
        ("swarm.minds.commands", ("model",)),
        ("swarm.watch", ("watch",)),
        ("swarm.trace", ("export", "rm", "inject")),
        ("swarm.dashboard.commands", ("dashboard",)),
        ("swarm.health", ("health",)),
        ("swarm.evals.commands", ("eval_",)),
    ):
        mod = importlib.import_module(module)
        for name in names:
            cli.add_command(getattr(mod, name))


_register_families()


def main() -> None:
    cli(prog_name="swarm")
