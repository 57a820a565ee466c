"""`swarm eval SUITE`: parse, run (swarm/evals/session.py does it), print the tables."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.text import Text

from swarm.cli.helpers import user_errors
from swarm.display import json_safe, safe_line
from swarm.evals.arms import ArmError, parse_arms, with_suite_answers
from swarm.evals.report import arms_table, purposes_table, to_json
from swarm.evals.results import ResultsError
from swarm.evals.runner import EvalPlan, results_path
from swarm.evals.session import EvalError, check_minds, run_eval, write_report
from swarm.evals.suite import SuiteError, load_suite

console = Console(stderr=True, highlight=False)
stdout = Console(highlight=False)


@click.command("eval")
@click.argument("suite", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--arm",
    "arms",
    multiple=True,
    required=True,
    metavar="ARM",
    help="single:MIND (one call) or workers=N:MIND, optionally NAME@...; repeat for each arm.",
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
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON, not tables.")
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
    as_json: bool,
) -> None:
    """Run every purpose of SUITE (a folder of purpose files with checks) under each ARM,
    SEEDS times, at equal token budgets; print a table and write runs.jsonl, report.json and
    report.png to --out. Stopped (Ctrl+C or killed), it resumes where it was when run again."""
    try:
        plan = EvalPlan(
            items=load_suite(suite),
            arms=with_suite_answers(parse_arms(arms), str(suite)),
            seeds=seeds,
            budget=tokens,
            run_timeout_s=run_timeout,
            code=not no_code,
            keep=keep,
        )
    except (SuiteError, ArmError) as exc:
        raise click.ClickException(str(exc)) from None
    folder = out or Path("eval-results") / suite.resolve().name

    def say(line: str) -> None:
        if not quiet:
            console.print(Text(safe_line(line)))

    try:
        check_minds(plan)
        runs = run_eval(plan, folder, redis_url, say)
    except (EvalError, ResultsError) as exc:
        raise click.ClickException(str(exc)) from None
    except KeyboardInterrupt:
        raise click.ClickException(
            f"stopped; finished runs are in {results_path(folder)}: run the same command to resume"
        ) from None
    if not runs:
        raise click.ClickException("no finished runs to report")
    report, written, warning = write_report(runs, folder)
    if as_json:
        click.echo(json_safe(to_json(report)))
    else:
        stdout.print(purposes_table(report))
        stdout.print(arms_table(report))
    if warning:
        console.print(Text(warning), style="yellow")
    console.print(Text("wrote " + ", ".join(safe_line(str(p)) for p in written)))
