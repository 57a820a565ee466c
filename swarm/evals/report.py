"""Figures from finished runs: per purpose and arm, and per arm over the suite, with the
spread; as a rich table, JSON and a PNG chart (matplotlib, an optional extra).

Pass rates are passed runs over runs. An arm's spread over seeds is the spread of its
per-seed pass rates (each seed's runs over the whole suite); tokens and wall time are
spread over runs. `sd` is the sample standard deviation (0 with one value).
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rich.table import Table
from rich.text import Text

from swarm.display import safe_line
from swarm.evals.results import RunResult

FORMAT = "swarm-eval/1"


@dataclass(frozen=True)
class Spread:
    mean: float
    sd: float
    lo: float
    hi: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        if not values:
            return cls(math.nan, math.nan, math.nan, math.nan, 0)
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        return cls(statistics.fmean(values), sd, min(values), max(values), len(values))

    def show(self, digits: int = 0, scale: float = 1.0, unit: str = "") -> str:
        if not self.n:
            return "-"
        m, s = self.mean * scale, self.sd * scale
        return f"{m:.{digits}f}{unit} ± {s:.{digits}f}"


@dataclass(frozen=True)
class Cell:
    """One purpose under one arm, over its seeds."""

    purpose: str
    arm: str
    runs: int
    passed: int
    fixed: int  # passed after a re-check
    tokens: Spread
    wall_s: Spread

    @property
    def pass_rate(self) -> float:
        return self.passed / self.runs if self.runs else math.nan


@dataclass(frozen=True)
class ArmSummary:
    """One arm over the whole suite."""

    arm: str
    runs: int
    passed: int
    fixed: int
    rejected: int  # answers the check sent back, all runs together
    pass_rate_by_seed: Spread
    tokens: Spread
    wall_s: Spread

    @property
    def pass_rate(self) -> float:
        return self.passed / self.runs if self.runs else math.nan


@dataclass(frozen=True)
class Report:
    arms: list[ArmSummary]
    cells: list[Cell]
    budget: dict[str, int]  # purpose -> tokens each run had (the same for every arm)
    purposes: list[str]

    def to_dict(self) -> dict[str, Any]:
        def arm(a: ArmSummary) -> dict[str, Any]:
            return {**asdict(a), "pass_rate": a.pass_rate}

        def cell(c: Cell) -> dict[str, Any]:
            return {**asdict(c), "pass_rate": c.pass_rate}

        return {
            "format": FORMAT,
            "arms": [arm(a) for a in self.arms],
            "purposes": [
                {
                    "purpose": p,
                    "budget": self.budget[p],
                    "arms": [cell(c) for c in self.cells if c.purpose == p],
                }
                for p in self.purposes
            ],
        }


def _ordered(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))


def summarise(runs: Sequence[RunResult]) -> Report:
    """The report of these runs; arms and purposes in the order they first appear."""
    arms = _ordered(r.arm for r in runs)
    purposes = _ordered(r.purpose for r in runs)
    cells = []
    for p in purposes:
        for a in arms:
            mine = [r for r in runs if r.purpose == p and r.arm == a]
            if mine:
                cells.append(
                    Cell(
                        purpose=p,
                        arm=a,
                        runs=len(mine),
                        passed=sum(r.passed for r in mine),
                        fixed=sum(r.fixed for r in mine),
                        tokens=Spread.of([r.tokens for r in mine]),
                        wall_s=Spread.of([r.wall_s for r in mine]),
                    )
                )
    summaries = []
    for a in arms:
        mine = [r for r in runs if r.arm == a]
        seeds = sorted({r.seed for r in mine})
        by_seed = [
            sum(r.passed for r in mine if r.seed == s) / sum(1 for r in mine if r.seed == s)
            for s in seeds
        ]
        summaries.append(
            ArmSummary(
                arm=a,
                runs=len(mine),
                passed=sum(r.passed for r in mine),
                fixed=sum(r.fixed for r in mine),
                rejected=sum(max(r.checks - 1, 0) + (r.verdict == "fail") for r in mine),
                pass_rate_by_seed=Spread.of(by_seed),
                tokens=Spread.of([r.tokens for r in mine]),
                wall_s=Spread.of([r.wall_s for r in mine]),
            )
        )
    budget = {p: next(r.budget for r in runs if r.purpose == p) for p in purposes}
    return Report(summaries, cells, budget, purposes)


def _pct(x: float) -> str:
    return "-" if math.isnan(x) else f"{100 * x:.0f}%"


def arms_table(report: Report) -> Table:
    budgets = sorted(set(report.budget.values()))
    shown = f"{budgets[0]}" if len(budgets) == 1 else f"{budgets[0]} to {budgets[-1]}"
    table = Table(
        title="swarm eval: by arm (whole suite)",
        title_justify="left",
        caption=f"token budget per run, every arm alike: {shown}",
        caption_justify="left",
    )
    for name, justify in (
        ("arm", "left"), ("runs", "right"), ("passed", "right"), ("pass rate", "right"),
        ("by seed (mean ± sd)", "right"), ("fixed by re-check", "right"),
        ("tokens (mean ± sd)", "right"), ("wall s (mean ± sd)", "right"),
    ):  # fmt: skip
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for a in report.arms:
        table.add_row(
            Text(safe_line(a.arm)),
            str(a.runs),
            str(a.passed),
            _pct(a.pass_rate),
            a.pass_rate_by_seed.show(0, 100, "%"),
            str(a.fixed),
            a.tokens.show(0),
            a.wall_s.show(2),
        )
    return table


def purposes_table(report: Report) -> Table:
    table = Table(title="by purpose: passed/runs, tokens mean", title_justify="left")
    table.add_column("purpose")
    arms = [a.arm for a in report.arms]
    for a in arms:
        table.add_column(Text(safe_line(a)), justify="right")
    for p in report.purposes:
        row: list[Text | str] = [Text(safe_line(p))]
        for a in arms:
            cell = next((c for c in report.cells if c.purpose == p and c.arm == a), None)
            row.append(
                "-" if cell is None else f"{cell.passed}/{cell.runs}  {cell.tokens.mean:.0f}"
            )
        table.add_row(*row)
    return table


def to_json(report: Report) -> str:
    # NaN (an empty spread) is written as null: JSON has no NaN.
    return json.dumps(_no_nan(report.to_dict()), indent=2, ensure_ascii=False)


def write_json(report: Report, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(to_json(report) + "\n", encoding="utf-8")
    tmp.replace(path)


def _no_nan(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _no_nan(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_no_nan(v) for v in value]
    return value


class ChartUnavailable(RuntimeError):
    """matplotlib is not installed: the PNG is skipped, the rest of the report stands."""


def write_png(report: Report, path: Path) -> None:
    """Two panels: pass rate per arm (bars; whiskers: min and max over seeds) and tokens per
    run (bars: mean; whiskers: sd)."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # no display: files only
        import matplotlib.pyplot as plt
    except ImportError:
        raise ChartUnavailable(
            "no chart: matplotlib is not installed (pip install 'swarm-blackboard[eval]')"
        ) from None
    arms = report.arms
    labels = [a.arm if len(a.arm) <= 28 else a.arm[:25] + "..." for a in arms]
    x = list(range(len(arms)))
    fig, (left, right) = plt.subplots(1, 2, figsize=(max(8.0, 2.2 * len(arms) + 4), 4.5))
    rates = [100 * a.pass_rate for a in arms]
    low = [max(r - 100 * a.pass_rate_by_seed.lo, 0) for r, a in zip(rates, arms, strict=True)]
    high = [max(100 * a.pass_rate_by_seed.hi - r, 0) for r, a in zip(rates, arms, strict=True)]
    left.bar(x, rates, yerr=[low, high], capsize=4, color="#4c78a8")
    left.set_ylim(0, 105)
    left.set_ylabel("checks passed (%)")
    left.set_title("pass rate (whiskers: min-max over seeds)")
    right.bar(
        x,
        [a.tokens.mean for a in arms],
        yerr=[a.tokens.sd for a in arms],
        capsize=4,
        color="#f58518",
    )
    right.set_ylabel("tokens per run")
    right.set_title("tokens (whiskers: sd over runs)")
    for ax in (left, right):
        ax.set_xticks(x)
        ax.set_xticklabels(labels, rotation=20, ha="right", fontsize=8)
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
