"""The `swarm` group: each family of commands lives in one module of this package."""

from __future__ import annotations

import click

from swarm import __version__
from swarm.cli import (
    control,
    dashboard,
    evals,
    health,
    models,
    sandbox,
    swarms,
    trails,
    up,
    watch,
    worker,
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="swarm")
def cli() -> None:
    """A swarm of identical small-model workers solving a purpose on a Redis blackboard."""


# In the order `swarm --help` has always listed them (click sorts them by name anyway).
for command in (
    swarms.seed,
    worker.worker,
    swarms.status,
    swarms.result,
    swarms.ls_,
    control.pause,
    control.resume,
    control.boost,
    control.cancel,
    up.up,
    sandbox.executor,
    sandbox.sandbox,
    models.model,
    watch.watch,
    swarms.export,
    swarms.rm,
    control.inject,
    dashboard.dashboard,
    health.health,
    trails.trails,
    evals.eval_,
):
    cli.add_command(command)


def main() -> None:
    cli(prog_name="swarm")
