"""How a `Snapshot` is drawn: `render` is a pure function of the snapshot and the screen's size
(rich renderables), so frames are tested from hand-made snapshots with no Redis.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from swarm.display import safe_line
from swarm.watch.snapshot import BUCKET_S, STATES, Snapshot, TaskRow, WorkerRow, plan

# -- drawing ----------------------------------------------------------------------------------

GLYPHS = {
    "open": ("○", "cyan"),
    "claimed": ("▶", "yellow"),
    "waiting": ("◎", "blue"),
    "done": ("✓", "green"),
    "dead": ("✗", "red"),
    "cancelled": ("⊘", "bright_black"),
}
SWARM_STYLES = {
    "running": "bold green",
    "paused": "bold yellow",
    "wrapping": "bold magenta",
    "done": "bold cyan",
    "cancelled": "bold red",
}
EIGHTHS = " ▏▎▍▌▋▊▉█"
SPARKS = "▁▂▃▄▅▆▇█"


def bar(fraction: float, width: int, style: str) -> Text:
    """A left-to-right bar in eighths of a cell, `width` cells wide, the rest shaded
    (shading rather than colour alone, so it reads in a plain capture or a 16-colour SSH)."""
    fraction = min(max(fraction, 0.0), 1.0) if math.isfinite(fraction) else float(fraction > 0)
    full, part = divmod(round(fraction * width * 8), 8)
    filled = "█" * full + (EIGHTHS[part] if part else "")
    return Text.assemble((filled, style), ("░" * (width - len(filled)), "bright_black"))


def heat_fraction(heat: float, initial: float) -> float:
    """Pheromone on a log scale: a fresh task fills a third, eight times that fills the bar,
    so both decay (halving per half-life) and a boost are visible."""
    return min(max(0.0, math.log2(1 + max(heat, 0.0) / initial) / math.log2(9)), 1.0)


def sparkline(values: Sequence[int]) -> str:
    top = max(values, default=0)
    if top <= 0:
        return SPARKS[0] * len(values)
    return "".join(SPARKS[min(round(v / top * (len(SPARKS) - 1)), len(SPARKS) - 1)] for v in values)


def _num(x: float) -> str:
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= div:
            return f"{x / div:.3g}{suffix}"
    return f"{x:.0f}"


def _duration(seconds: float) -> str:
    s = int(seconds)
    h, rest = divmod(s, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


def _short(worker: str) -> str:
    """Worker ids end in pid and a random suffix; those tell workers apart on one screen."""
    parts = worker.rsplit("-", 2)
    return "-".join(parts[-2:]) if len(parts) == 3 else worker


def _titled_rule(title: Text, width: int) -> Text:
    line = Text("─ ", style="bright_black") + title
    line.truncate(width - 2, overflow="ellipsis")
    line.append(" " + "─" * max(width - line.cell_len - 1, 0), style="bright_black")
    return line


CHECK_STYLES = {"pass": "green", "fail": "red"}


def _header(snap: Snapshot, width: int) -> list[RenderableType]:
    top = Table.grid(expand=True, padding=(0, 1))
    top.add_column(ratio=1, no_wrap=True, overflow="ellipsis")
    top.add_column(no_wrap=True, justify="right")
    state = Text(snap.state.upper(), style=SWARM_STYLES.get(snap.state, "bold"))
    if snap.outcome and snap.state == "done":
        state.append(f" ({snap.outcome})", style="cyan")
    elif snap.reason and snap.state == "wrapping":
        state.append(f" ({snap.reason})", style="magenta")
    if snap.check:  # the purpose has a check and an answer was checked
        style = CHECK_STYLES.get(snap.check, "yellow")
        state.append(f"  check {safe_line(snap.check)[:12]} ({snap.checks})", style=style)
    top.add_row(
        Text.assemble((snap.swarm, "bold"), " · ", snap.title),
        Text.assemble(state, "  ", _duration(snap.elapsed_s)),
    )
    return [top, _budgets(snap, width)]


def _budgets(snap: Snapshot, width: int) -> Text:
    """One line of budget bars; the bars get what the labels leave of the width."""
    labels = [
        (f"{b.name} ", f" {_duration(b.spent)}/{_duration(b.limit)}  ")
        if b.name == "time"
        else (f"{b.name} ", f" {_num(b.spent)}/{_num(b.limit)}  ")
        for b in snap.budgets
    ]
    text_len = sum(len(a) + len(z) for a, z in labels)
    cell = min(max((width - text_len) // max(len(labels), 1), 2), 12)
    line = Text()
    for b, (name, amount) in zip(snap.budgets, labels, strict=True):
        frac = b.spent / b.limit if b.limit else 0.0
        style = "green" if frac < 0.7 else "yellow" if frac < 0.9 else "red"
        line.append(name, style="bold")
        line.append_text(bar(frac, cell, style))
        line.append(amount)
    line.rstrip()
    line.truncate(width, overflow="ellipsis")
    return line


def _tree_title(snap: Snapshot, width: int) -> Text:
    title = Text("tasks ", style="bold")
    for s in STATES:
        glyph, style = GLYPHS[s]
        title.append(glyph, style=style)
        title.append(f"{snap.counts.get(s, 0)} ")
    if snap.hot:
        title.append(" next ", style="bold")
        for t in snap.hot:
            if title.cell_len + len(t.id) + 8 > width:
                break  # the top of the open set, as much of it as fits
            title.append(f"#{t.id}", style="cyan")
            title.append_text(bar(heat_fraction(t.heat or 0, snap.initial), 2, "red"))
            title.append(" ")
    return _titled_rule(title, width)


def _who(row: TaskRow) -> Text:
    if row.state == "waiting" and row.children:
        done = row.children - row.pending
        return Text(f"{done}/{row.children} done", style="blue")
    if row.state == "claimed":
        return Text(_short(row.owner), style="yellow")
    if row.owner:
        return Text(_short(row.owner), style="bright_black")
    if row.injected_by:
        return Text(row.injected_by, style="magenta")
    return Text("")


def _title(row: TaskRow) -> Text:
    text = Text("  " * row.level)
    if row.kind == "synthesize":
        text.append("Σ ", style="magenta")
    text.append(row.title)
    if row.hidden:
        text.append(f" +{row.hidden}", style="bright_black")
    return text


def _tree(snap: Snapshot, width: int, rows: int) -> Table:
    wide = width >= 70
    table = Table.grid(padding=(0, 1), expand=True)
    table.add_column(width=1, no_wrap=True)  # state glyph
    table.add_column(no_wrap=True, justify="right", max_width=6)  # id
    table.add_column(ratio=3, no_wrap=True, overflow="ellipsis")  # title
    table.add_column(width=5, no_wrap=True)  # pheromone
    if wide:
        table.add_column(width=12, no_wrap=True, overflow="ellipsis")  # owner / progress
        table.add_column(width=2, no_wrap=True)  # attempts
        table.add_column(ratio=2, no_wrap=True, overflow="ellipsis")  # result
    for row in snap.tree[:rows]:
        glyph, style = GLYPHS.get(row.state, ("?", "white"))
        heat = (
            bar(heat_fraction(row.heat, snap.initial), 5, "red")
            if row.heat is not None
            else Text("")
        )
        cells: list[RenderableType] = [
            Text(glyph, style=style),
            Text(row.id, style="dim"),
            _title(row),
            heat,
        ]
        if wide:
            attempts = Text(f"↻{row.attempts}", style="red") if row.attempts else Text("")
            result = Text(row.result.splitlines()[0] if row.result else "", style="bright_black")
            cells += [_who(row), attempts, result]
        table.add_row(*cells)
    return table


def _workers_title(snap: Snapshot, width: int) -> Text:
    stale = snap.workers_total - snap.workers_alive
    title = Text("workers ", style="bold")
    title.append(f"{snap.workers_alive} alive", style="green")
    if stale > 0:
        title.append(f" {stale} stale", style="red")
    per_min = sum(snap.throughput[-(60 // BUCKET_S) :])
    spark_w = max(min(width - title.cell_len - 24, len(snap.throughput)), 0)
    if spark_w:
        title.append("  done/min ", style="bold")
        title.append(sparkline(snap.throughput[-spark_w:]), style="green")
        title.append(f" {per_min}")
    return _titled_rule(title, width)


def _profile(w: WorkerRow) -> str:
    """A worker's class and what it offers: 'onnx:phi3 s2 code'."""
    return f"{w.worker_class} s{w.strength}" + (" code" if w.code else "")


def _flow_line(snap: Snapshot) -> Text:
    """Where work flows: per worker class, answered / failed, and tasks escalated to it."""
    line = Text("by class ", style="bold", no_wrap=True, overflow="ellipsis")
    for n, f in enumerate(snap.flow):
        if n:
            line.append(" · ", style="bright_black")
        line.append(f.worker_class, style="cyan")
        line.append(f" {f.done} done", style="green")
        if f.failed:
            line.append(f" {f.failed} failed", style="red")
        if f.escalated:
            line.append(f" {f.escalated} escalated to it", style="yellow")
    if snap.unmet:
        line.append(" · " if snap.flow else "", style="bright_black")
        line.append(f"{snap.unmet} open task(s) no live worker meets", style="red")
    return line


def _workers_table(snap: Snapshot, width: int, rows: int) -> RenderableType:
    if not snap.workers:
        return Text("no workers yet: start one with `swarm worker`", style="bright_black")
    table = Table.grid(padding=(0, 1), expand=True)
    table.add_column(width=1)
    table.add_column(ratio=2, no_wrap=True, overflow="ellipsis")  # id
    table.add_column(ratio=1, no_wrap=True, overflow="ellipsis")  # class
    table.add_column(ratio=1, no_wrap=True, overflow="ellipsis")  # host
    table.add_column(ratio=1, no_wrap=True, overflow="ellipsis")  # current task
    table.add_column(no_wrap=True, justify="right")  # tokens/s
    for w in snap.workers[:rows]:
        mark = Text("●", style="green") if w.alive else Text("●", style="red")
        seen = "" if w.alive else f" stale {_duration(w.seen_s)}"
        table.add_row(
            mark,
            Text(w.id + seen, style="" if w.alive else "red"),
            Text(_profile(w), style="cyan"),
            Text(w.host, style="bright_black"),
            Text(
                f"on #{w.current}" if w.current else "idle", style="yellow" if w.current else "dim"
            ),
            Text(f"{w.tokens_per_s:.1f} tok/s"),
        )
    return table


def _events_lines(snap: Snapshot, width: int, rows: int) -> Text:
    text = Text(no_wrap=True, overflow="ellipsis")
    for i, ev in enumerate(snap.events[-rows:] if rows else ()):
        if i:
            text.append("\n")
        line = Text(time.strftime("%H:%M:%S ", time.localtime(ev.at / 1000)), style="bright_black")
        line.append(f"{ev.type:<15} ", style=_event_style(ev.type))
        if ev.task:
            line.append(f"#{ev.task} ", style="cyan")
        line.append(ev.who, style="yellow" if ev.who.startswith("person:") else "")
        if ev.detail:
            line.append(" " + ev.detail, style="bright_black")
        line.truncate(width, overflow="ellipsis")
        text.append_text(line)
    return text


def _event_style(etype: str) -> str:
    if etype in ("failed", "reaped", "cancelled"):
        return "red"
    if etype in ("boosted", "injected", "paused", "resumed"):
        return "magenta"
    return "green" if etype in ("completed", "done") else ""


def shown(value: Any) -> Any:
    """`value` with every string in it made safe to show (see swarm/display.py): titles,
    results, worker names, event fields and the swarm's own state all come from Redis."""
    if isinstance(value, str):
        return safe_line(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changes = {f.name: shown(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return dataclasses.replace(value, **changes)
    if isinstance(value, tuple):
        return tuple(shown(v) for v in value)
    if isinstance(value, dict):
        return {shown(k): shown(v) for k, v in value.items()}
    return value


def render(snap: Snapshot, width: int = 80, height: int | None = None) -> RenderableType:
    """One frame of `snap`, `width` columns and at most `height` lines (default: as read).

    Only a `shown` copy is drawn, and only as rich Text: never markup, never raw controls.
    """
    snap = shown(snap)
    p = plan(height or snap.height, len(snap.workers))
    spare = max(p.tree - len(snap.tree), 0)  # a small tree leaves room for more events
    # its line comes out of the events' rows
    flow = [_flow_line(snap)] if snap.flow or snap.unmet else []
    return Group(
        *_header(snap, width),
        _tree_title(snap, width),
        _tree(snap, width, p.tree),
        _workers_title(snap, width),
        _workers_table(snap, width, p.workers),
        *flow,
        _titled_rule(Text("events", style="bold"), width),
        _events_lines(snap, width, max(p.events + spare - len(flow), 1)),
    )


def message(text: str, style: str = "yellow") -> RenderableType:
    return Text(safe_line(text), style=style)
