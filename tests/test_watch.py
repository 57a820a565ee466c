"""`swarm watch`: snapshots read from a real board, frames drawn from snapshots, bounded reads,
and the live view driven in tmux."""

from __future__ import annotations

import io
import json
import random
import shutil
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from click.testing import CliRunner
from rich.cells import cell_len
from rich.console import Console

from swarm import scripts
from swarm.board import Board
from swarm.cli import cli
from swarm.protocol import Confidence, Subtask
from swarm.purpose import Budgets
from swarm.trace import delete_swarm
from swarm.watch import (
    BUCKET_S,
    Budget,
    EventRow,
    Snapshot,
    TaskRow,
    WatchState,
    WorkerRow,
    render,
    snapshot,
    to_json,
)
from tests.conftest import FakeClock, claim, make_purpose

# -- frames drawn from hand-made snapshots ---------------------------------------------------


def sample(**changes: Any) -> Snapshot:
    tree = (
        TaskRow(
            "0", 0, "work", "waiting", "Write a field guide to garden birds", children=4, pending=3
        ),
        TaskRow(
            "1",
            1,
            "synthesize",
            "done",
            "Identification",
            depth=1,
            owner="vm-101-aaaa",
            result="robin: red breast\nmore",
            children=2,
        ),
        TaskRow("2", 1, "work", "claimed", "Food and nesting", depth=1, owner="vm-202-bbbb"),
        TaskRow("3", 1, "work", "open", "Attracting and feeding", depth=1, heat=2.5, attempts=1),
        TaskRow("4", 1, "work", "dead", "A task that kept failing", depth=1, result="mind crashed"),
        TaskRow("5", 1, "work", "cancelled", "Nesting boxes", depth=1, injected_by="person:ann"),
    )
    base = Snapshot(
        swarm="birds-abc123",
        title="A field guide to five common garden birds",
        state="running",
        outcome="",
        reason="",
        now=1_000_000_000,
        elapsed_s=83.0,
        budgets=(
            Budget("tasks", 6, 40),
            Budget("tokens", 1200, 200_000),
            Budget("depth", 1, 2),
            Budget("time", 83.0, 1800.0),
        ),
        counts={"open": 1, "claimed": 1, "waiting": 1, "done": 1, "dead": 1, "cancelled": 1},
        tree=tree,
        hot=(TaskRow("3", 0, "work", "open", "Attracting and feeding", heat=2.5),),
        workers=(
            WorkerRow("vm-101-aaaa", True, 1.0, host="vm", current="2", tokens_per_s=4.4),
            WorkerRow("vm-303-cccc", False, 95.0, host="old", current="9"),
        ),
        workers_alive=1,
        workers_total=2,
        throughput=(0,) * 50 + (1, 3, 5, 2, 0, 4, 6, 8, 3, 1),
        events=tuple(
            EventRow(f"{i}-0", 1_000_000_000 - 1000 * (8 - i), t, str(i), w, d)
            for i, (t, w, d) in enumerate(
                [
                    ("claimed", "vm-101-aaaa", "fence=3"),
                    ("completed", "vm-101-aaaa", "confidence=high tokens=40"),
                    ("boosted", "person:ann", "amount=100"),
                    ("injected", "person:ann", "parent=0 title=Nesting boxes"),
                    ("paused", "person:ann", ""),
                    ("resumed", "person:ann", ""),
                    ("reaped", "vm-101-aaaa", "owner=vm-303-cccc outcome=open"),
                    ("failed", "vm-202-bbbb", "reason=mind crashed " + "x" * 200),
                ]
            )
        ),
        height=24,
    )
    return Snapshot(**{**base.__dict__, **changes})


def draw(snap: Snapshot, width: int = 80, height: int = 24) -> list[str]:
    console = Console(record=True, width=width, height=height, file=io.StringIO())
    console.print(render(snap, width, height))
    return console.export_text().rstrip("\n").split("\n")


def test_frame_fits_80x24_and_shows_every_part() -> None:
    lines = draw(sample())
    assert len(lines) <= 24
    assert all(cell_len(line) <= 80 for line in lines)
    text = "\n".join(lines)
    assert "birds-abc123" in lines[0] and "RUNNING" in lines[0] and "1:23" in lines[0]
    for budget in ("tasks", "tokens", "depth", "time"):
        assert budget in lines[1]
    assert "6/40" in lines[1] and "1.2k/200k" in lines[1] and "1:23/30:00" in lines[1]
    glyph_of = {
        "waiting": "◎",
        "done": "✓",
        "claimed": "▶",
        "open": "○",
        "dead": "✗",
        "cancelled": "⊘",
    }
    for row in sample().tree:
        line = next(ln for ln in lines if row.title[:20] in ln)
        assert line.lstrip().startswith(glyph_of[row.state]), line
    assert "1/4 done" in text  # the waiting root's progress
    assert "101-aaaa" in text and "robin: red breast" in text and "more" not in text
    assert "↻1" in text  # attempts
    assert "Σ Identification" in text
    assert "next #3" in text
    assert "1 alive" in text and "1 stale" in text and "stale 1:35" in text
    assert "4.4 tok/s" in text and "on #2" in text
    assert "▁▂" in text or "█" in text  # the sparkline
    assert "injected" in text and "person:ann" in text and "…" in lines[-1]


def test_pheromone_heat_bar_grows_with_the_level() -> None:
    def heat_cells(heat: float) -> str:
        snap = sample(tree=(TaskRow("0", 0, "work", "open", "root", heat=heat),))
        row = next(ln for ln in draw(snap) if "root" in ln)
        return row.split("root", 1)[1].strip()[:5]

    cold, fresh, hot = heat_cells(0.05), heat_cells(1.0), heat_cells(50.0)
    assert cold.count("░") > fresh.count("░") > hot.count("░") == 0


def test_done_and_wrapping_states_show_in_the_header() -> None:
    assert "DONE (answered)" in draw(sample(state="done", outcome="answered"))[0]
    assert "WRAPPING" in draw(sample(state="wrapping", reason="deadline passed"))[0]
    assert "PAUSED" in draw(sample(state="paused"))[0]


def test_narrow_terminal_drops_columns_but_not_lines() -> None:
    lines = draw(sample(), width=40, height=24)
    assert all(cell_len(line) <= 40 for line in lines)
    assert len(lines) <= 24
    text = "\n".join(lines)
    assert "robin" not in text  # the result column goes first
    assert "▶" in text and "✗" in text and "birds-abc123" in text


def test_tall_terminal_shows_more_rows() -> None:
    many = tuple(TaskRow(str(i), 1, "work", "done", f"task {i}") for i in range(1, 60))
    snap = sample(tree=(sample().tree[0], *many), height=60)
    short, tall = draw(snap, 80, 24), draw(snap, 120, 60)
    assert len(short) <= 24 < len(tall) <= 60
    assert sum("task " in ln for ln in tall) > sum("task " in ln for ln in short)


def test_no_workers_yet_says_how_to_start_one() -> None:
    text = "\n".join(draw(sample(workers=(), workers_alive=0, workers_total=0)))
    assert "swarm worker" in text


# -- snapshots read from a board ----------------------------------------------------------


def test_snapshot_reads_tree_heat_workers_and_events(seeded: Any, clock: FakeClock) -> None:
    board = seeded(tasks=("a", "b"), budgets=Budgets(lease_s=8))
    a = claim(board)
    board.split(a, "w1", [Subtask("a.1"), Subtask("a.2")], tokens=10)
    leaf = claim(board)
    board.complete(leaf, "w1", "leaf answer", Confidence.HIGH, tokens=5)
    board.heartbeat("w1", {"host": "h1", "current": "", "slots": 1, "tokens_per_s": 3.5}, ttl_s=60)
    board.heartbeat(
        "gone", {"host": "h2", "current": "7", "slots": 1}, ttl_s=60, now=clock.now - 30
    )
    state = WatchState()
    snap = snapshot(board.client, board.id, state, height=24, now=clock.now)

    assert snap.state == "running" and snap.title == "Test purpose"
    by_id = {r.id: r for r in snap.tree}
    in_order = ["0"]
    for child in board.child_ids("0"):
        in_order += [child, *board.child_ids(child)]
    assert [r.id for r in snap.tree] == in_order  # depth first, children in order
    assert by_id[a.task.id].state == "waiting" and by_id[a.task.id].level == 1
    assert by_id[leaf.task.id].state == "done" and by_id[leaf.task.id].result == "leaf answer"
    opened = [r for r in snap.tree if r.state == "open"]
    assert opened and all(r.heat is not None and r.heat > 0 for r in opened)
    assert all(r.heat is None for r in snap.tree if r.state != "open")
    assert {t.id for t in snap.hot} == {r.id for r in opened}
    assert snap.counts["done"] == 1 and snap.counts["waiting"] == 2
    assert dict((b.name, b.spent) for b in snap.budgets)["tokens"] == 15
    assert snap.workers_total == 2 and snap.workers_alive == 1
    w1 = next(w for w in snap.workers if w.id == "w1")
    assert w1.alive and w1.host == "h1" and w1.tokens_per_s == 3.5
    assert not next(w for w in snap.workers if w.id == "gone").alive
    assert [e.type for e in snap.events][-2:] == ["claimed", "completed"]
    assert sum(snap.throughput) == 1
    json.loads(to_json(snap))


def test_watcher_follows_events_incrementally(seeded: Any, clock: FakeClock) -> None:
    board = seeded(tasks=("a", "b", "c"))
    state = WatchState()
    snapshot(board.client, board.id, state, now=clock.now)
    first_cursor = state.cursor
    c = claim(board, "w9")
    # what the worker holds comes from the events, ahead of its next heartbeat
    board.heartbeat("w9", {"host": "h", "current": "", "slots": 1}, ttl_s=60)
    snap = snapshot(board.client, board.id, state, now=clock.now)
    assert state.cursor != first_cursor
    assert snap.workers[0].current == c.task.id
    clock.advance(BUCKET_S)
    board.complete(c, "w9", "x")
    snap = snapshot(board.client, board.id, state, now=clock.now)
    assert snap.workers[0].current == ""
    assert snap.throughput[-1] == 1 and sum(snap.throughput) == 1  # counted once, in its bucket
    snap = snapshot(board.client, board.id, state, now=clock.now)
    assert sum(snap.throughput) == 1
    other = seeded(tasks=("x",))  # a watcher following the newest swarm switches to it
    snap = snapshot(board.client, other.id, state, now=clock.now)
    assert state.swarm == other.id and sum(snap.throughput) == 0 and snap.swarm == other.id


def test_the_root_alone_and_a_missing_swarm(seeded: Any, clock: FakeClock) -> None:
    board = seeded()
    snap = snapshot(board.client, board.id, now=clock.now)
    assert [r.id for r in snap.tree] == ["0"] and snap.tree[0].heat is not None
    from swarm.board import NoSuchSwarm

    with pytest.raises(NoSuchSwarm):
        snapshot(board.client, "no-such-swarm-" + uuid.uuid4().hex, now=clock.now)


# -- bounded reads ----------------------------------------------------------------------------


class Tally:
    def __init__(self) -> None:
        self.trips = 0
        self.commands: Counter[str] = Counter()

    def reset(self) -> None:
        self.trips = 0
        self.commands.clear()


def counting_client(url: str) -> tuple[redis.Redis, Tally]:
    """A client whose every round trip (one send of one command or one pipeline) is counted."""
    tally = Tally()

    class Counting(redis.Connection):
        def pack_command(self, *args: Any) -> Any:
            tally.commands[str(args[0]).upper()] += 1
            return super().pack_command(*args)

        def pack_commands(self, commands: Any) -> Any:
            commands = list(commands)
            for cmd in commands:
                tally.commands[str(cmd[0]).upper()] += 1
            return super().pack_commands(commands)

        def send_packed_command(self, command: Any, check_health: bool = True) -> None:
            tally.trips += 1
            super().send_packed_command(command, check_health)

    pool = redis.ConnectionPool.from_url(url, connection_class=Counting, decode_responses=True)
    client = redis.Redis(connection_pool=pool)
    client.ping()
    tally.reset()
    return client, tally


# Builds a heap-shaped tree below the root, tasks first..last of n: children of task p are
# p*b+1 .. p*b+b; inner tasks wait, leaves are open. Made by `new_task`, as the scripts make
# every task, but far faster than n claims and splits.
BULK = """
local first, last, n, b, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]),
  tonumber(ARGV[4]), tonumber(ARGV[5])
local score = deposit_score(meta_num('initial'), now)
if first == 1 then  -- the seeded root is open: it becomes the waiting parent of the tree
  take_open('0')
  move('0', 'open', 'waiting', now)
  redis.call('HSET', META, 'max_tasks', n + 1, 'next_id', n)
end
for i = first, last do
  local state = i * b + 1 <= n and 'waiting' or 'open'
  new_task({id = tostring(i), parent = tostring(math.floor((i - 1) / b)),
    title = 'task ' .. i, state = state}, now, score)
end
"""


BULK_CHUNK = 20_000


def bulk_tree(client: redis.Redis, board: Board, n: int, branch: int) -> None:
    """Grow BULK's tree of n tasks under the seeded root of `board`."""
    build = client.register_script(scripts.prelude() + BULK)
    for first in range(1, n + 1, BULK_CHUNK):  # a chunk per call: Redis is not held long
        last = min(first + BULK_CHUNK - 1, n)
        build(keys=board._script_keys, args=[first, last, n, branch, board.now_ms()])


UNBULK = """
for i = 1, tonumber(ARGV[1]) do
  redis.call('UNLINK', KEYS[7] .. i, KEYS[8] .. i)
end
redis.call('UNLINK', KEYS[8] .. '0')
"""


@pytest.fixture
def bulk(real_redis: redis.Redis) -> Iterator[Any]:
    made: list[str] = []

    def build(n: int, branch: int) -> Board:
        board = Board.seed(
            real_redis, make_purpose(budgets=Budgets(max_depth=8)), clock=FakeClock()
        )
        made.append(board.id)
        bulk_tree(real_redis, board, n, branch)
        return board

    yield build
    # the bulk tree's keys go server side (delete_swarm's walk of 100k tasks is for test_trace)
    drop = real_redis.register_script(UNBULK)
    for sid in made:
        board = Board(real_redis, sid)
        drop(keys=board._script_keys, args=[str(real_redis.hget(board.keys.meta, "next_id"))])
        delete_swarm(real_redis, sid)


def frame_cost(url: str, board: Board, height: int = 24) -> tuple[int, Counter[str], Snapshot]:
    client, tally = counting_client(url)
    state = WatchState()
    snapshot(client, board.id, state, height=height, now=board.clock())  # first frame
    tally.reset()
    snap = snapshot(client, board.id, state, height=height, now=board.clock())
    return tally.trips, Counter(tally.commands), snap


def test_frame_of_100k_tasks_costs_the_same_round_trips_as_100(bulk: Any, redis_url: str) -> None:
    small, large = bulk(100, 10), bulk(100_000, 10)
    trips_s, cmds_s, snap_s = frame_cost(redis_url, small)
    trips_l, cmds_l, snap_l = frame_cost(redis_url, large)
    print(f"round trips per frame: 100 tasks {trips_s}, 100,000 tasks {trips_l}")
    assert trips_s == trips_l <= 4
    assert sum(cmds_l.values()) == sum(cmds_s.values())  # and the same commands
    assert not {"SCAN", "KEYS", "HGETALL", "SMEMBERS"} & set(cmds_l)
    assert len(snap_l.tree) == len(snap_s.tree) and snap_l.budgets[0].spent == 100_001
    assert sum(draw_rows(snap_l)) == len(snap_l.tree)


def draw_rows(snap: Snapshot) -> list[int]:
    lines = draw(snap)
    return [1 for ln in lines if ln[:1] and ln[:1] in "○▶◎✓✗⊘"]


def test_10k_task_swarm_renders_from_bounded_reads(bulk: Any, redis_url: str) -> None:
    board = bulk(10_000, 4)
    trips, cmds, snap = frame_cost(redis_url, board, height=24)
    assert trips <= 4 and sum(cmds.values()) < 120
    lines = draw(snap)
    assert len(lines) <= 24 and all(cell_len(ln) <= 80 for ln in lines)
    assert "+" in "\n".join(lines)  # hidden children are counted, not drawn
    # a taller terminal reads more rows, still independent of the swarm's size
    _, cmds_tall, tall = frame_cost(redis_url, board, height=60)
    assert len(tall.tree) > len(snap.tree) and sum(cmds_tall.values()) < 400


# -- the live view, in tmux -------------------------------------------------------------------

PURPOSE = """---
name: watch-live
sandbox: none
budgets:
  max_tasks: 60
  max_depth: 2
  lease_s: 5
---
# Watch me

Grow a tree.

## Tasks

- alpha
- beta
- gamma
"""


def swarm_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "swarm", *args]


class Tmux:
    """A private tmux server (its own socket), so the test never touches a user's sessions."""

    def __init__(self) -> None:
        self.socket = f"swarm-test-{uuid.uuid4().hex[:8]}"

    def __call__(self, *args: str) -> str:
        return subprocess.run(
            ["tmux", "-L", self.socket, *args], capture_output=True, text=True, check=True
        ).stdout

    def screen(self) -> str:
        return self("capture-pane", "-p", "-t", "w")

    def wait_for(self, predicate: Any, timeout: float = 15.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            text = self.screen()
            if predicate(text) or time.monotonic() > deadline:
                return text
            time.sleep(0.2)


def done_rows(screen: str) -> list[str]:
    return [ln for ln in screen.splitlines() if ln.startswith("✓")]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")
def test_live_view_in_tmux_grows_and_exits_clean_on_ctrl_c(
    tmp_path: Path, redis_url: str, real_redis: redis.Redis
) -> None:
    purpose = tmp_path / "purpose.md"
    purpose.write_text(PURPOSE)
    sid = subprocess.run(
        swarm_cmd("seed", str(purpose), "--redis", redis_url),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    tmux = Tmux()
    tmux("new-session", "-d", "-s", "w", "-x", "80", "-y", "24", "bash --norc --noprofile")
    workers: list[subprocess.Popen[bytes]] = []
    try:
        watch = " ".join(swarm_cmd("watch", "--redis", redis_url, "--swarm", sid, "--refresh", "4"))
        tmux("send-keys", "-t", "w", f"PS1='READY$ '; clear; {watch}; echo EXIT=$?", "Enter")
        first = tmux.wait_for(lambda s: sid in s and "RUNNING" in s)
        assert sid in first and "RUNNING" in first and "no workers yet" in first
        for _ in range(2):
            workers.append(
                subprocess.Popen(
                    swarm_cmd(
                        "worker",
                        "--redis",
                        redis_url,
                        "--swarm",
                        sid,
                        "--mind",
                        "sim:branch=3,depth=2,think=0.4",
                        "--burst",
                    ),
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        grown = tmux.wait_for(
            lambda s: "alpha.2" in s and "2 alive" in s and "completed" in s and done_rows(s)
        )
        assert "alpha.2" in grown and "2 alive" in grown, grown  # split, drawn, worked
        assert done_rows(grown) and "completed" in grown, grown  # rows finish, the tail moves
        done = tmux.wait_for(lambda s: "DONE" in s, timeout=20)
        assert "DONE (answered)" in done, done
        tmux("send-keys", "-t", "w", "C-c")
        after = tmux.wait_for(lambda s: "EXIT=" in s)
        assert "EXIT=0" in after, after
        assert "Traceback" not in after and "KeyboardInterrupt" not in after
        assert after.rstrip().endswith(
            "READY$"
        )  # a clean prompt, the frame gone with the alt screen
        assert "RUNNING" not in after
    finally:
        tmux("kill-server")
        for w in workers:
            w.kill()
            w.wait()
        delete_swarm(real_redis, sid)


def test_once_and_json_print_one_frame(redis_url: str, real_redis: redis.Redis) -> None:
    board = Board.seed(real_redis, make_purpose(tasks=("one", "two")), rng=random.Random(1))
    runner = CliRunner()
    try:
        args = ["watch", "--redis", redis_url, "--swarm", board.id]
        once = runner.invoke(cli, [*args, "--once"], env={"COLUMNS": "80", "LINES": "24"})
        assert once.exit_code == 0, once.output
        lines = once.stdout.rstrip("\n").split("\n")
        assert len(lines) <= 23 and all(cell_len(ln) <= 80 for ln in lines)
        assert board.id in lines[0] and "one" in once.stdout
        data = json.loads(runner.invoke(cli, [*args, "--json"]).stdout)
        assert data["swarm"] == board.id
        assert [t["title"] for t in data["tree"]] == ["Test purpose", "one", "two"]
    finally:
        delete_swarm(real_redis, board.id)


def test_watch_names_a_missing_swarm(redis_url: str) -> None:
    result = CliRunner().invoke(cli, ["watch", "--once", "--redis", redis_url, "--swarm", "nope"])
    assert result.exit_code == 1 and "no swarm 'nope'" in result.output


def test_without_a_terminal_watch_prints_a_frame_every_few_seconds(redis_url: str) -> None:
    """`docker compose run -T watch`, or a pipe: the live view would print nothing at all."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    board = Board.seed(client, make_purpose())
    proc = subprocess.Popen(
        [sys.executable, "-m", "swarm", "watch", "--redis", redis_url, "--swarm", board.id,
         "--every", "0.5"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        time.sleep(4)
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=20)
        delete_swarm(client, board.id)
        client.close()
    assert out.startswith("not a terminal: printing a frame every 0.5 s (--once for one frame)")
    assert out.count(board.id) >= 3, out[-2000:] + err
