"""`swarm health worker|executor`: exit 0 when this host's worker or executor works (the
judging is swarm/health.py)."""

from __future__ import annotations

import os
import socket
import sys

import click

from swarm.cli.helpers import exec_settings, redis_option, settings_for
from swarm.config import ConnectionFailed, connect
from swarm.health import Health, executor_health, model_check, worker_health


def _report(health: Health) -> None:
    click.echo(("healthy: " if health.ok else "unhealthy: ") + health.why)
    sys.exit(0 if health.ok else 1)


@click.group("health")
def health() -> None:
    """Exit 0 when this host's worker or executor is working (for container healthchecks)."""


@health.command("worker")
@redis_option
@click.option("--mind", envvar="SWARM_MIND", help="The worker's mind ($SWARM_MIND).")
@click.option("--model", help="The worker's model ($SWARM_MODEL).")
def worker(redis_url: str | None, mind: str | None, model: str | None) -> None:
    """This host's worker beats on a swarm that wants work, or none wants any."""
    try:
        client = connect(settings_for(redis_url))
        check = lambda: model_check(mind, model, os.environ)  # noqa: E731
        result = worker_health(client, socket.gethostname(), model_check=check)
    except ConnectionFailed as exc:
        result = Health(False, str(exc))
    _report(result)


@health.command("executor")
@click.option("--redis", "redis_url", help="Redis URL of the exec queue (default: as executor).")
@click.option("--queue", help="The queue (default: $SWARM_EXEC_QUEUE or swarm-exec).")
def executor(redis_url: str | None, queue: str | None) -> None:
    """An executor process of this host is registered on the exec queue."""
    from swarm.sandbox.client import exec_connection, exec_queue_name

    try:
        conn = exec_connection(exec_settings(redis_url))
        result = executor_health(conn, queue or exec_queue_name(), socket.gethostname())
    except ConnectionFailed as exc:
        result = Health(False, str(exc))
    _report(result)
