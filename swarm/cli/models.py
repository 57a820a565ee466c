"""`swarm model pull|list|info`: get a Phi-3 model and see what a model folder is."""

from __future__ import annotations

from pathlib import Path

import click

from swarm import models
from swarm.minds.runtime import CHOICES, available_providers, import_og


@click.group("model")
def model() -> None:
    """Download and inspect the ONNX models workers think with."""


@model.command("pull")
@click.argument("name", required=False, type=click.Choice(sorted(models.VARIANTS)))
@click.option(
    "--provider",
    type=click.Choice(CHOICES),
    default="auto",
    show_default=True,
    help="Without NAME, pull the build for this provider (auto: the best the installed "
    "onnxruntime-genai has).",
)
@click.option(
    "--home", type=click.Path(path_type=Path), help="Models folder (default $SWARM_HOME/models)."
)
def pull(name: str | None, provider: str, home: Path | None) -> None:
    """Download a published Phi-3 ONNX build (resumes an interrupted download).

    Without NAME: the DirectML, CUDA or CPU build, whichever --provider names or the
    installed runtime runs best.
    """
    name = name or models.FOR_PROVIDER[pull_provider(provider)]
    variant = models.VARIANTS[name]
    click.echo(f"pulling {name}: {variant.about}, from {variant.repo}/{variant.folder}")
    try:
        path = models.pull(name, home or models.models_home())
    except models.ModelError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"ready: {path}")


@model.command("list")
@click.option(
    "--home", type=click.Path(path_type=Path), help="Models folder (default $SWARM_HOME/models)."
)
def list_models(home: Path | None) -> None:
    """Show pulled models and the variants that can be pulled."""
    home = home or models.models_home()
    pulled = models.installed(home)
    click.echo(f"pulled, in {home}:" if pulled else f"nothing pulled yet in {home}")
    for name, path in pulled.items():
        click.echo(f"  {name:24} {path}")
    click.echo("available to pull:")
    for name, variant in models.VARIANTS.items():
        mark = "*" if name == models.DEFAULT_MODEL else " "
        click.echo(f" {mark}{name:24} {variant.about}")


@model.command("info")
@click.argument("target", required=False)
def info(target: str | None) -> None:
    """Describe a model folder or pulled model (default: the model a worker would use)."""
    try:
        path = models.find_model(target)
        click.echo("\n".join(models.model_info(path).lines()))
    except models.ModelError as exc:
        raise click.ClickException(str(exc)) from None


def pull_provider(provider: str) -> str:
    """`auto`: the best provider of the installed runtime (the CPU build when none is)."""
    if provider != "auto":
        return provider
    try:
        og = import_og()
    except models.ModelError:
        return "cpu"
    return available_providers(og)[0]
