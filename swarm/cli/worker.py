"""`swarm worker`: one worker process, with its mind, code runner and metrics."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import PurePath
from typing import Any

import click

from swarm import system
from swarm.cli.helpers import (
    console,
    redis_option,
    settings_for,
    setup_logging,
    swarm_option,
    user_errors,
)
from swarm.config import RedisSettings, connect


@click.command()
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
@click.option(
    "--class",
    "worker_class",
    envvar="SWARM_WORKER_CLASS",
    default="",
    callback=lambda _ctx, _param, value: _checked_class(value),
    help="What kind of worker this is, for the division of labour: workers of one class "
    "share trails (default: the mind and its model, e.g. onnx:phi3-mini).",
)
@click.option(
    "--strength",
    envvar="SWARM_STRENGTH",
    default=None,
    callback=lambda _ctx, _param, value: _checked_strength(value),
    help="How capable this worker's model is, 0 to 9, for tasks that require a minimum "
    "(default by mind: sim 1, onnx 2, openai 3).",
)
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
    worker_class: str,
    strength: int | None,
    no_code: bool,
    grace: float,
    metrics_port: int | None,
    metrics_host: str,
    wait_for_model: bool,
    verbose: int,
) -> None:
    """Run one worker: claim, think, act, post, until stopped (SIGTERM finishes or releases)."""
    from swarm.minds import make_mind, make_mind_waiting
    from swarm.trails import default_class
    from swarm.worker import Worker, WorkerConfig

    setup_logging(verbose)
    settings = settings_for(redis_url)
    client = connect(settings)
    # `model` is only --model: SWARM_MODEL is read where the model is found
    # (swarm/models.py `find_model`), which then names it as where the folder came from.
    if wait_for_model:
        say = logging.getLogger("swarm.worker").warning
        the_mind = make_mind_waiting(mind, model=model, slots=slots, say=say)
    else:
        the_mind = make_mind(mind, model=model, slots=slots)
    _say_memory(the_mind)
    label = _model_label(the_mind.name, mind, model)
    config = WorkerConfig(
        swarm_id=swarm_id,
        slots=slots,
        burst=burst,
        skills=tuple(s for s in skills.split(",") if s),
        lease_s=lease,
        name=name,
        grace_s=grace,
        worker_class=worker_class or default_class(the_mind.name, label),
        strength=strength,
        model=label,
    )
    runner = None if no_code else _code_runner(settings)
    metrics = None if metrics_port is None else _prometheus()
    the_worker = Worker(client, the_mind, config, code_runner=runner, metrics=metrics)
    if metrics is not None and metrics_port is not None:
        _serve_metrics(metrics, the_worker.id, the_mind.name, metrics_host, metrics_port)
    sys.exit(the_worker.run())


def _checked_class(value: str) -> str:
    """A class given on the command line, checked before any model is loaded."""
    from swarm.trails import InvalidWorkerClass, check_class

    try:
        return check_class(value) if value else value
    except InvalidWorkerClass as exc:
        raise click.ClickException(str(exc)) from None  # one line, not a usage screen


def _checked_strength(value: str | None) -> int | None:
    """A strength given on the command line or in SWARM_STRENGTH, checked before any model
    is loaded; None leaves the mind's default."""
    from swarm.requirements import InvalidStrength, check_strength

    if value is None or value == "":
        return None
    try:
        return check_strength(value)
    except InvalidStrength as exc:
        raise click.ClickException(str(exc)) from None  # one line, not a usage screen


def _model_label(mind_name: str, spec: str | None, model: str | None) -> str:
    """What names the model: the model folder, or an OpenAI server's #MODEL ('' for none)."""
    if spec and "#" in spec:
        return spec.partition("#")[2]
    if model or (spec and ":" in spec and mind_name == "onnx"):
        folder = model or (spec or "").partition(":")[2].partition("?")[0]
        return PurePath(folder.rstrip("/\\")).name
    return ""


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
