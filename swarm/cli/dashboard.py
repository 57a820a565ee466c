"""`swarm dashboard`: serve the web dashboard and /metrics under uvicorn.

Imports the web stack only when run, so `swarm` works without the `dashboard` extra.
"""

from __future__ import annotations

import os
import secrets
from typing import Any

import click

from swarm.cli.helpers import redis_option, settings_for, user_errors

TOKEN_ENV = "SWARM_DASHBOARD_TOKEN"


def _exec_depth(settings: Any) -> Any:
    """Reads the exec queue's length, or None when there is no plain Redis to read it on."""
    try:
        from swarm.dashboard.prometheus import exec_depth_reader
        from swarm.sandbox.client import exec_connection, exec_queue_name

        return exec_depth_reader(exec_connection(settings.for_exec()), exec_queue_name())
    except Exception:  # no rq, or a cluster with no exec Redis: the gauge is left out
        return None


@click.command()
@redis_option
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to bind. Off loopback, reads need the token too.",
)
@click.option("--port", default=8800, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--period",
    default=1.0,
    show_default=True,
    type=click.FloatRange(0.2, 60),
    help="Seconds between live updates.",
)
@click.option(
    "--rows",
    default=100,
    show_default=True,
    type=click.IntRange(10, 1000),
    help="Tasks drawn per swarm (the rest are counted, not read).",
)
@user_errors
def dashboard(redis_url: str | None, host: str, port: int, period: float, rows: int) -> None:
    """Web dashboard (live tree, workers, events, steering) and Prometheus /metrics.

    Writes from the page need the token: $SWARM_DASHBOARD_TOKEN, or one made up and printed
    at start. Bound to loopback (the default), reading needs no token; anywhere else it does.
    """
    try:
        import uvicorn

        from swarm.dashboard.app import Settings, create_app
        from swarm.dashboard.control import Access, is_loopback
    except ImportError as exc:
        raise click.ClickException(
            f"the dashboard needs its extra: pip install 'swarm-blackboard[dashboard]' ({exc})"
        ) from None
    from swarm.config import connect

    settings = settings_for(redis_url)
    client = connect(settings)
    token = os.environ.get(TOKEN_ENV) or secrets.token_urlsafe(24)
    loopback = is_loopback(host)
    app = create_app(
        client,
        Settings(
            access=Access(token, open_reads=loopback),
            period_s=period,
            rows=rows,
            check_host=loopback,
        ),
        exec_depth=_exec_depth(settings),
    )
    wildcard = host in ("0.0.0.0", "::", "")
    shown = "localhost" if wildcard else f"[{host}]" if ":" in host else host
    if wildcard:
        click.echo(f"listening on all addresses, port {port}", err=True)
    if not os.environ.get(TOKEN_ENV):
        click.echo(f"token: {token}  (set ${TOKEN_ENV} to choose it)", err=True)
    click.echo(
        f"dashboard: http://{shown}:{port}/  (with the token: http://{shown}:{port}/#token=...)"
        if os.environ.get(TOKEN_ENV)
        else f"dashboard: http://{shown}:{port}/#token={token}",
        err=True,
    )
    click.echo(f"metrics:   http://{shown}:{port}/metrics", err=True)
    # Live streams never end on their own: on Ctrl-C or SIGTERM, close them after a moment.
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=2,
    )
