"""`swarm eval SUITE`: the command over swarm.evals (thin: parse, run, print)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.text import Text

from swarm import system
from swarm.config import RedisSettings, connect, data_dir, redis_settings, start_embedded
from swarm.display import safe_line
from swarm.errors import user_errors
from swarm.evals.arms import Arm, ArmError, parse_arms
from swarm.evals.report import (
    ChartUnavailable,
    arms_table,
    purposes_table,
    summarise,
    write_json,
    write_png,
)
from swarm.evals.results import ResultsError, ResultsFile
from swarm.evals.runner import EvalPlan, Evaluation, results_path
from swarm.evals.suite import SuiteError, load_suite
from swarm.minds.base import Mind

console = Console(stderr=True, highlight=False)
out = Console(highlight=False)


class EvalError(RuntimeError):
    """The evaluation cannot run here; one line."""


@contextmanager
def _redis(redis_url: str | None) -> Iterator[RedisSettings]:
    """--redis (or $SWARM_REDIS_URL), else an embedded Valkey of the eval's own under the
    data dir, stopped at the end."""
    settings = redis_settings(redis_url)
    if settings is not None:
        yield settings
        return
    from swarm.config import embedded_available

    if not embedded_available():
        raise EvalError("swarm eval needs --redis URL here (no embedded Valkey for this platform)")
    home = data_dir() / "eval"
    home.mkdir(parents=True, exist_ok=True)
    try:
        with system.exclusive_lock(home / "eval.lock"):
            server, found = start_embedded(home)
            console.print(Text(safe_line(f"embedded Valkey at {found.url}"), style="dim"))
            try:
                yield found
            finally:
                server.stop()
    except system.Locked:
        raise EvalError(f"another `swarm eval` uses {home}; pass --redis URL") from None


def _executor(settings: RedisSettings, log: Path) -> subprocess.Popen[bytes] | None:
    """A sandbox executor for python checks and model code, as `swarm up` starts one; None
    (and a warning) where none can run: such checks then end as errors."""
    from swarm.up import _await_executor, _executor_available

    if not _executor_available():
        console.print("no sandbox executor here: python checks will end as errors", style="yellow")
        return None
    env = {**os.environ, "SWARM_REDIS_URL": settings.url}
    with open(log, "w") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "swarm", "executor"],
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            **system.child_options(),
        )
    _await_executor(settings, proc)
    return proc


def _stop(proc: subprocess.Popen[bytes]) -> None:
    from swarm.up import _stop_all

    _stop_all([proc])


def _mind_maker(arm: Arm) -> Mind:
    from swarm.minds import make_mind

    return make_mind(arm.mind, slots=arm.workers)


@click.command("eval")
@click.argument("suite", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--arm",
    "arms",
    multiple=True,
    required=True,
    metavar="ARM",
    help="single:MIND (one call) or workers=N:MIND; repeat for each arm.",
)
@click.option("--seeds", default=3, show_default=True, type=click.IntRange(1, 1000))
@click.option(
    "--tokens",
    type=click.IntRange(1, 10**12),
    help="Token budget of every run, every arm alike (default: each purpose's max_tokens).",
)
@click.option(
    "-o",
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Results folder (default: eval-results/SUITE); an interrupted eval resumes from it.",
)
@click.option("--redis", "redis_url", metavar="URL", help="Use this Redis (default: embedded).")
@click.option(
    "--run-timeout", default=600.0, show_default=True, type=click.FloatRange(1, None),
    help="Seconds one run may take before its swarm is cancelled.",
)  # fmt: skip
@click.option("--no-code", is_flag=True, help="Do not offer minds code (checks still run).")
@click.option("--keep", is_flag=True, help="Keep each run's swarm on Redis (swarm export).")
@click.option("--quiet", "-q", is_flag=True, help="No line per run.")
@user_errors
def eval_(
    suite: Path,
    arms: tuple[str, ...],
    seeds: int,
    tokens: int | None,
    out: Path | None,
    redis_url: str | None,
    run_timeout: float,
    no_code: bool,
    keep: bool,
    quiet: bool,
) -> None:
    """Run every purpose of SUITE (a folder of purpose files with checks) under each ARM,
    SEEDS times, at equal token budgets; print a table and write runs.jsonl, report.json and
    report.png to --out. Stopped (Ctrl+C or killed), it resumes where it was when run again."""
    try:
        plan = EvalPlan(
            items=load_suite(suite),
            arms=parse_arms(arms),
            seeds=seeds,
            budget=tokens,
            run_timeout_s=run_timeout,
            code=not no_code,
            keep=keep,
        )
    except (SuiteError, ArmError) as exc:
        raise click.ClickException(str(exc)) from None
    folder = out or Path("eval-results") / suite.resolve().name
    _check_minds(plan)
    try:
        runs = _run(plan, folder, redis_url, quiet)
    except (EvalError, ResultsError) as exc:
        raise click.ClickException(str(exc)) from None
    except KeyboardInterrupt:
        raise click.ClickException(
            f"stopped; finished runs are in {results_path(folder)}: run the same command to resume"
        ) from None
    _report(runs, folder)


def _check_minds(plan: EvalPlan) -> None:
    """A bad mind spec fails before anything starts (the mind itself loads on first use)."""
    from swarm.up import UpOptions, _check_mind

    for arm in plan.arms:
        kind = arm.mind.partition(":")[0]
        if kind == "scripted":
            from swarm.minds.scripted import load_answers, parse_scripted_spec

            load_answers(parse_scripted_spec(arm.mind.partition(":")[2]).answers)
        elif kind not in ("onnx", "sim", "openai"):
            raise click.ClickException(
                f"arm {arm.label!r}: unknown mind {kind!r} (onnx, openai, sim or scripted)"
            )
        else:
            _check_mind(UpOptions(purpose="", mind=arm.mind))


def _run(plan: EvalPlan, folder: Path, redis_url: str | None, quiet: bool) -> list[Any]:
    folder.mkdir(parents=True, exist_ok=True)
    with _redis(redis_url) as settings, ExitStack() as stack:
        client = connect(settings)
        proc = _executor(settings, folder / "executor.log") if _needs_sandbox(plan) else None
        if proc is not None:
            stack.callback(_stop, proc)
        runner = None
        if proc is not None:
            from swarm.sandbox.client import runner_factory

            runner = runner_factory(settings.for_exec())
        evaluation = Evaluation(
            client=client,
            results=ResultsFile(results_path(folder)),
            make_mind=_mind_maker,
            code_runner=runner,
            say=(lambda _line: None)
            if quiet
            else (lambda line: console.print(Text(safe_line(line)))),
        )
        return evaluation.run(plan)


def _needs_sandbox(plan: EvalPlan) -> bool:
    """An executor is started only when something may run code: python checks, or minds
    offered code."""
    from swarm.check import CheckKind

    checks = (i.purpose.check for i in plan.items)
    return plan.code or any(c is not None and c.kind is CheckKind.PYTHON for c in checks)


def _report(runs: list[Any], folder: Path) -> None:
    if not runs:
        raise click.ClickException("no finished runs to report")
    report = summarise(runs)
    out.print(purposes_table(report))
    out.print(arms_table(report))
    write_json(report, folder / "report.json")
    written = [folder / "runs.jsonl", folder / "report.json"]
    try:
        write_png(report, folder / "report.png")
        written.append(folder / "report.png")
    except ChartUnavailable as exc:
        console.print(Text(str(exc)), style="yellow")
    console.print(Text("wrote " + ", ".join(safe_line(str(p)) for p in written)))
