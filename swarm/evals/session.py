"""Running `swarm eval`: its Redis (given, or an embedded Valkey), the sandbox executor when
checks or minds may run code, the minds, and the report files."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from swarm import system
from swarm.config import RedisSettings, connect, data_dir, redis_settings, start_embedded
from swarm.evals.arms import Arm
from swarm.evals.report import ChartUnavailable, Report, summarise, write_json, write_png
from swarm.evals.results import ResultsFile, RunResult
from swarm.evals.runner import EvalPlan, Evaluation, results_path
from swarm.minds.base import Mind


class EvalError(RuntimeError):
    """The evaluation cannot run here; one line."""


@contextmanager
def _redis(redis_url: str | None, say: Callable[[str], None]) -> Iterator[RedisSettings]:
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
            say(f"embedded Valkey at {found.url}")
            try:
                yield found
            finally:
                server.stop()
    except system.Locked:
        raise EvalError(f"another `swarm eval` uses {home}; pass --redis URL") from None


def _executor(
    settings: RedisSettings, log: Path, say: Callable[[str], None]
) -> subprocess.Popen[bytes] | None:
    """A sandbox executor for python checks and model code, as `swarm up` starts one; None
    (and a warning) where none can run: such checks then end as errors."""
    from swarm.up import await_executor, executor_available

    if not executor_available():
        say("no sandbox executor here: python checks will end as errors")
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
    await_executor(settings, proc)
    return proc


def _stop(proc: subprocess.Popen[bytes]) -> None:
    from swarm.up import stop_all

    stop_all([proc])


def _mind_maker(arm: Arm) -> Mind:
    from swarm.minds import make_mind

    return make_mind(arm.mind, slots=arm.workers)


def check_minds(plan: EvalPlan) -> None:
    """A bad mind spec fails before anything starts (the mind itself loads on first use)."""
    from swarm.up import UpOptions, check_mind

    for arm in plan.arms:
        kind = arm.mind.partition(":")[0]
        if kind not in ("onnx", "sim", "openai", "scripted"):
            known = "onnx, openai, sim or scripted"
            raise EvalError(f"arm {arm.label!r}: unknown mind {kind!r} ({known})")
        check_mind(UpOptions(purpose="", mind=arm.mind))


def run_eval(
    plan: EvalPlan, folder: Path, redis_url: str | None, say: Callable[[str], None]
) -> list[RunResult]:
    """Every run of the plan not yet in `folder`'s results, on --redis or an embedded Valkey,
    with an executor when python checks or model code may run; all finished runs."""
    folder.mkdir(parents=True, exist_ok=True)
    with _folder_lock(folder), _redis(redis_url, say) as settings, ExitStack() as stack:
        client = connect(settings)
        proc = _executor(settings, folder / "executor.log", say) if _needs_sandbox(plan) else None
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
            say=say,
        )
        return evaluation.run(plan)


@contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    """One eval per results folder: two appending to one runs.jsonl would run runs twice."""
    try:
        with system.exclusive_lock(folder / "eval.lock"):
            yield
    except system.Locked:
        raise EvalError(f"another `swarm eval` is writing to {folder}; wait for it") from None


def _needs_sandbox(plan: EvalPlan) -> bool:
    """An executor is started only when something may run code: python checks, or minds
    offered code."""
    from swarm.check import CheckKind

    checks = (i.purpose.check for i in plan.items)
    return plan.code or any(c is not None and c.kind is CheckKind.PYTHON for c in checks)


def write_report(runs: list[RunResult], folder: Path) -> tuple[Report, list[Path], str]:
    """The report of the runs, written beside them: (report, files written, a warning)."""
    report = summarise(runs)
    write_json(report, folder / "report.json")
    written = [results_path(folder), folder / "report.json"]
    try:
        write_png(report, folder / "report.png")
        written.append(folder / "report.png")
    except ChartUnavailable as exc:
        return report, written, str(exc)
    return report, written, ""
