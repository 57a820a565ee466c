"""Untrusted text is shown as text: Rich markup and terminal escapes in titles, details,
answers, worker records, events and ids reach no terminal through any command.

Every check runs the real CLI in a subprocess against a real Redis and looks at the bytes it
wrote: no escape, control, C1 or bidi character may pass, `[/x]` must print literally, and
JSON must still decode to exactly what is stored.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from click.testing import CliRunner

from swarm.board import Board
from swarm.cli import cli
from swarm.protocol import Confidence
from swarm.trace import delete_swarm
from tests.conftest import claim

# An OSC 52 clipboard write, a screen clear, a colour, C1 CSI, a bidi override, NEL, a BEL,
# and Rich markup that does not close; HOSTILE adds a lone CR that would overwrite the line
# (not in purpose files, where a CR ends a line as markdown says).
OSC52 = "\x1b]52;c;cHduZWQ=\x07"
IN_FILE = f"[/x][bold]B {OSC52}\x1b[2J\x1b[31mred\x9b2J\u202eevil\x85\x07 [/]"
HOSTILE = IN_FILE + "\rCR"
# What must never reach a terminal (tab and newline are fine).
UNSAFE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200b\u200e\u200f\u2028-\u202e\u2066-\u2069]"
)

PURPOSE = f"""---
name: hostile
sandbox: none
---
# Title {IN_FILE}

Purpose {IN_FILE}

## Tasks

- First {IN_FILE}: detail {IN_FILE}
- Second
"""

# An answer that tries to break out of its markdown code fence and forge structure.
FENCE_BREAKER = (
    "ok\n```\n# Forged heading\n\n<script>alert(1)</script>\n[link](http://evil.example)\n"
    "````\n~~~\n## Another\n| a | b |\n" + HOSTILE
)


def swarm(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "swarm", *args],
        capture_output=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200", "LINES": "40", **(env or {})},
    )


def shown(out: bytes) -> str:
    """The output as text, which must hold nothing a terminal would act on."""
    text = out.decode("utf-8")
    bad = sorted({f"U+{ord(c):04X}" for c in UNSAFE.findall(text)})
    assert not bad, f"unsafe characters reached the output: {bad}\n{text!r}"
    return text


def ok(proc: subprocess.CompletedProcess[bytes]) -> str:
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    assert b"Traceback" not in proc.stderr
    shown(proc.stderr)
    return shown(proc.stdout)


@pytest.fixture
def hostile(tmp_path: Path, redis_url: str, real_redis: redis.Redis) -> Iterator[Board]:
    """A swarm whose purpose, task titles, answers, worker record and events are hostile."""
    path = tmp_path / "purpose.md"
    path.write_text(PURPOSE)
    proc = swarm("seed", str(path), "--redis", redis_url)
    sid = ok(proc).strip()
    board = Board(real_redis, sid)
    try:
        first = claim(board, f"w-{HOSTILE}")  # the root
        assert first.task.id in ("1", "2")  # a root task (the root waits on them)
        board.complete(first, f"w-{HOSTILE}", f"answer {HOSTILE}", Confidence.HIGH)
        board.heartbeat(
            f"worker-{HOSTILE}",
            {"host": f"host {HOSTILE}", "mind": HOSTILE, "current": HOSTILE, "slots": 1},
            ttl_s=60,
        )
        yield board
    finally:
        delete_swarm(real_redis, sid)


def test_status_ls_show_markup_and_escapes_literally(hostile: Board, redis_url: str) -> None:
    status = ok(swarm("status", "--redis", redis_url, "--swarm", hostile.id))
    assert hostile.id in status
    assert "Title [/x][bold]B \\x1b]52;c;cHduZWQ=\\x07\\x1b[2J" in status  # literal, visible
    assert "\\u202eevil" in status and "\\x9b2J" in status
    listed = ok(swarm("ls", "--redis", redis_url))
    line = next(ln for ln in listed.splitlines() if ln.startswith(hostile.id))
    assert line.count("\t") == 3 and "[/x][bold]B" in line


def test_json_outputs_stay_exact_and_inert(hostile: Board, redis_url: str) -> None:
    title = hostile.meta()["title"]
    assert OSC52 in title  # stored as it came
    status = json.loads(ok(swarm("status", "--json", "--redis", redis_url, "--swarm", hostile.id)))
    assert status["title"] == title
    watch = json.loads(ok(swarm("watch", "--json", "--redis", redis_url, "--swarm", hostile.id)))
    assert watch["title"] == title
    assert any(t["result"] == f"answer {HOSTILE}" for t in watch["tree"])
    export = json.loads(ok(swarm("export", "--redis", redis_url, "--swarm", hostile.id)))
    assert export["title"] == title and export["purpose"].endswith("Second")


def test_watch_once_draws_hostile_text_inert(hostile: Board, redis_url: str) -> None:
    frame = ok(swarm("watch", "--once", "--redis", redis_url, "--swarm", hostile.id))
    assert hostile.id in frame and "Title [/x][bold]B" in frame
    assert "First [/x][bold]B" in frame  # a task title, as typed
    assert "worker-[/x][bold]B" in frame  # a worker's own id, from its heartbeat


def test_result_and_md_export_keep_a_hostile_answer_in_its_fence(
    tmp_path: Path, redis_url: str, real_redis: redis.Redis
) -> None:
    path = tmp_path / "purpose.md"
    path.write_text(f"# Root {IN_FILE}\n\nAnswer it.\n")
    sid = ok(swarm("seed", str(path), "--redis", redis_url)).strip()
    board = Board(real_redis, sid)
    try:
        root = claim(board, "w1")
        board.complete(root, "w1", FENCE_BREAKER, Confidence.HIGH)
        result = ok(swarm("result", "--redis", redis_url, "--swarm", sid))
        assert "# Forged heading" in result and "[/x][bold]B \\x1b]52" in result
        exact = json.loads(ok(swarm("result", "--json", "--redis", redis_url, "--swarm", sid)))
        assert exact["answer"] == FENCE_BREAKER
        md = ok(swarm("export", "--format", "md", "--redis", redis_url, "--swarm", sid))
        assert_md_structure(md)
    finally:
        delete_swarm(real_redis, sid)


def test_md_export_of_hostile_tasks_and_events(hostile: Board, redis_url: str) -> None:
    hostile.inject(f"Injected {HOSTILE} **b** <i>x</i> | cell", f"person:{HOSTILE}")
    md = ok(swarm("export", "--format", "md", "--redis", redis_url, "--swarm", hostile.id))
    assert_md_structure(md)


def assert_md_structure(md: str) -> None:
    """Only the export's own headings, no HTML, no links, one table per table."""
    from markdown_it import MarkdownIt

    tokens = MarkdownIt("commonmark").enable("table").parse(md)
    headings = [tokens[i + 1].content for i, t in enumerate(tokens) if t.type == "heading_open"]
    assert [h.split(" (")[0] for h in headings[1:]] == [
        "Answer",
        "Budgets",
        "Purpose",
        "Tasks",
        "Events",
    ], headings
    inline = [c for t in tokens if t.children for c in t.children]
    kinds = {t.type for t in tokens} | {c.type for c in inline}
    assert not kinds & {"html_block", "html_inline", "link_open", "image"}, kinds
    assert not {"strong_open", "em_open"} & {c.type for c in inline if "Injected" in c.content}
    rows = [t for t in tokens if t.type == "tr_open"]
    cells = [t for t in tokens if t.type in ("td_open", "th_open")]
    # the budgets table has 3 columns, the events table 5: no cell split by a `|` in text
    assert len(cells) == 3 * 5 + 5 * (len(rows) - 5), (len(rows), len(cells))


def test_boost_error_quoting_a_hostile_task_id_is_inert(hostile: Board, redis_url: str) -> None:
    proc = swarm("boost", f"9{OSC52}\x1b[2J", "--redis", redis_url, "--swarm", hostile.id)
    assert proc.returncode == 1 and b"Traceback" not in proc.stderr
    err = shown(proc.stderr)
    assert "\\x1b]52" in err and len(err.strip().splitlines()) == 1


def test_up_with_markup_and_escapes_in_the_purpose(tmp_path: Path) -> None:
    path = tmp_path / "purpose.md"
    path.write_text(PURPOSE)
    env = {"SWARM_HOME": str(tmp_path / "home"), "SWARM_REDIS_URL": "", "REDIS_URL": ""}
    proc = swarm("up", str(path), "--workers", "2", "--mind", "sim:branch=2,depth=2", env=env)
    out = ok(proc)
    assert "leaf First [/x][bold]B" in out  # the sim mind's leaves echo the titles


def test_bad_swarm_ids_are_refused_in_one_line(redis_url: str) -> None:
    bad_ids = ("[/x]", "a{b}c", "x" * 65, "-dash", "sp ace", f"id{OSC52}", "a:b", "")
    commands = (
        ("status", "--swarm"),
        ("watch", "--once", "--swarm"),
        ("export", "--swarm"),
        ("seed", "examples/purpose.md", "--id"),
        ("boost", "1", "--swarm"),
        ("rm", "--"),
    )
    runner = CliRunner()
    for i, bad in enumerate(bad_ids):
        for args in (commands[i % len(commands)], commands[(i + 3) % len(commands)]):
            res = runner.invoke(cli, [args[0], "--redis", redis_url, *args[1:], bad])
            assert res.exit_code == 1, (args, res.output)
            assert "invalid swarm id" in shown(res.output.encode()), res.output
            assert len(res.output.strip().splitlines()) == 1, res.output
    # and once for real, in a process of its own
    proc = swarm("status", "--redis", redis_url, "--swarm", f"[/x]{OSC52}")
    assert proc.returncode == 1 and b"Traceback" not in proc.stderr
    assert "invalid swarm id '[/x]\\x1b]52" in shown(proc.stderr)


# -- the live view, in tmux -----------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")
def test_live_watch_writes_no_clipboard_and_clears_no_screen(
    hostile: Board, redis_url: str
) -> None:
    socket = f"swarm-test-{uuid.uuid4().hex[:8]}"

    def tmux(*args: str, check: bool = True) -> Any:
        return subprocess.run(
            ["tmux", "-L", socket, *args], capture_output=True, text=True, check=check
        )

    tmux("new-session", "-d", "-s", "w", "-x", "120", "-y", "30", "bash --norc --noprofile")
    try:
        # tmux turns an application's OSC 52 into a paste buffer: that is the tell.
        tmux("set-option", "-g", "set-clipboard", "on")
        cmd = " ".join([sys.executable, "-m", "swarm", "watch", "--redis", redis_url])
        tmux("send-keys", "-t", "w", f"clear; {cmd} --swarm {hostile.id}", "Enter")
        deadline = time.monotonic() + 20
        screen = ""
        while time.monotonic() < deadline and "First [/x]" not in screen:
            time.sleep(0.3)
            screen = tmux("capture-pane", "-p", "-t", "w").stdout
        assert "Title [/x][bold]B \\x1b]52" in screen, screen
        assert "First [/x][bold]B" in screen, screen
        time.sleep(1.0)  # a few more frames
        buffers = tmux("list-buffers", check=False).stdout
        assert "cHduZWQ" not in buffers and "pwned" not in buffers, buffers
        tmux("send-keys", "-t", "w", "C-c")
    finally:
        tmux("kill-server", check=False)


def test_log_lines_quoting_model_text_are_inert() -> None:
    # a worker logs exceptions whose text a model or a server wrote
    code = (
        "import logging, sys\n"
        "from swarm.cli.helpers import setup_logging\n"
        "setup_logging(1)\n"
        "logging.getLogger('swarm.worker').warning('mind failed: %s', sys.argv[1])\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, HOSTILE],
        capture_output=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "300"},
    )
    assert proc.returncode == 0, proc.stderr
    assert "mind failed: [/x][bold]B \\x1b]52" in shown(proc.stderr)


def test_a_hostile_index_entry_is_skipped(redis_url: str, real_redis: redis.Redis) -> None:
    # anyone with Redis access can add to the index: such an id names no swarm keys
    bad = f"[/x]{OSC52}\x1b[2J"
    meta = f"swarm:{{{bad}}}:meta"
    real_redis.zadd("swarm:index", {bad: time.time() * 1000 + 10**9})  # the "newest"
    real_redis.hset(meta, mapping={"state": "running", "tasks": 1, "title": "t", "created": 1})
    try:
        listed = ok(swarm("ls", "--redis", redis_url))
        assert "[/x]" not in listed
        watched = swarm("watch", "--once", "--redis", redis_url)
        assert b"Traceback" not in watched.stderr
        shown(watched.stdout + watched.stderr)
    finally:
        real_redis.zrem("swarm:index", bad)
        real_redis.delete(meta)
