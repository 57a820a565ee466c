"""`swarm executor` and `swarm sandbox run`: thin click commands over the sandbox package."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict
from typing import IO

import click

from swarm.cli.helpers import exec_settings, one_line
from swarm.config import ConnectionFailed
from swarm.protocol import ExecOutput
from swarm.sandbox import KINDS, ExecLimits, SandboxUnavailable, make_sandbox
from swarm.sandbox.limits import LimitsError

_SANDBOX_HELP = "auto: E2B when E2B_API_KEY is set, else the local bubblewrap jail."
# Set-up problems with a one-line explanation; anything else is a bug and keeps its traceback.
_EXPECTED: tuple[type[Exception], ...] = (SandboxUnavailable, ConnectionFailed, LimitsError)


@click.command("executor")
@click.option("--redis", "redis_url", help="Redis URL of the exec queue (default: see docs).")
@click.option(
    "--queue",
    "queues",
    multiple=True,
    help="Queue to serve, repeatable (default: $SWARM_EXEC_QUEUE or swarm-exec).",
)
@click.option("--burst", is_flag=True, help="Exit once the queues are empty.")
@click.option(
    "--sandbox",
    "kind",
    type=click.Choice(["auto", "local", "e2b"]),
    default="auto",
    envvar="SWARM_SANDBOX",
    show_default=True,
    help=_SANDBOX_HELP,
)
@click.option(
    "--processes",
    envvar="SWARM_EXEC_PROCESSES",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="RQ workers.",
)
def executor(
    redis_url: str | None, queues: tuple[str, ...], burst: bool, kind: str, processes: int
) -> None:
    """Run code jobs from the exec queue in a sandbox (limits: SWARM_EXEC_* env)."""
    # RQ is imported only by the commands that use it, not by every `swarm` invocation.
    from swarm.sandbox.client import UnsupportedRedis, exec_connection, exec_queue_name
    from swarm.sandbox.executor import run_executor

    expected: tuple[type[Exception], ...] = (*_EXPECTED, UnsupportedRedis)
    try:
        limits = ExecLimits.from_env(os.environ)
        conn = exec_connection(exec_settings(redis_url))
        run_executor(
            conn,
            list(queues) or [exec_queue_name()],
            burst=burst,
            sandbox_kind=kind,
            workers=processes,
            limits=limits,
        )
    except expected as exc:
        raise one_line(exc) from None


@click.group("sandbox")
def sandbox() -> None:
    """Check the code sandbox on this machine."""


@sandbox.command("run")
@click.argument("file", type=click.File("r"))
@click.option(
    "--sandbox",
    "kind",
    type=click.Choice(KINDS),
    default="auto",
    envvar="SWARM_SANDBOX",
    show_default=True,
    help=_SANDBOX_HELP,
)
@click.option("--timeout", "timeout_s", type=float, help="Wall-clock seconds (default: limits).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def run(file: IO[str], kind: str, timeout_s: float | None, as_json: bool) -> None:
    """Run FILE (or - for stdin) in the sandbox and print what a mind would see.

    Exits 1 when the code failed or was stopped."""
    code = file.read()
    try:
        limits = ExecLimits.from_env(os.environ)
        box = make_sandbox(kind, limits)
    except _EXPECTED as exc:
        raise one_line(exc) from None
    try:
        output = box.run(code, limits.wall_s(timeout_s))
    finally:
        box.close()
    click.echo(json.dumps(asdict(output)) if as_json else render(output))
    sys.exit(0 if output.ok else 1)


def render(output: ExecOutput) -> str:
    """The result as a person reads it: each non-empty stream, then the verdict."""
    parts = []
    for name, text in (("stdout", output.stdout), ("stderr", output.stderr)):
        if text:
            parts.append(f"--- {name} ---\n{text.rstrip(chr(10))}")
    verdict = f"error: {output.error}" if output.error else "ok"
    parts.append(f"--- {verdict} ({output.duration_s:.3f} s)")
    return "\n".join(parts)
