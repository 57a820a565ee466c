"""Division of labour: the sim mind's per-tag options, trails, escalation, persistence.

Board-level tests run on a real Redis and on fakeredis with Lua (the `client` fixture).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from typing import Any

import pytest

from swarm.board import Board
from swarm.minds.base import MindError
from swarm.minds.sim import SimConfig, SimMind, parse_sim_spec
from swarm.protocol import ActionKind, Answer, Limits, ThinkRequest
from swarm.purpose import Budgets, Purpose, RootTask, Tuning
from swarm.task import Kind, Task
from swarm.trails import Trail, Trails, check_class, default_class, parse
from tests.conftest import FakeClock

# -- the sim mind ------------------------------------------------------------------------------


def _request(tags: tuple[str, ...]) -> ThinkRequest:
    task = Task(id="1", parent="0", depth=1, kind=Kind.WORK, title="t", tags=tags)
    return ThinkRequest(
        purpose="p",
        purpose_title="p",
        task=task,
        allowed=frozenset({ActionKind.ANSWER}),
        limits=Limits(),
    )


def test_sim_fail_tags_and_speed_are_parsed() -> None:
    cfg = parse_sim_spec("think=0.2,fail=0.1,fail_tags=hard:0.8+big:0.3,speed=0.5")
    assert cfg.fail_tags == (("hard", 0.8), ("big", 0.3))
    assert cfg.failure_chance(("hard", "big")) == 0.8  # the worst tag counts
    assert cfg.failure_chance(("big",)) == 0.3
    assert cfg.failure_chance(("easy",)) == 0.1  # no listed tag: the base chance
    assert cfg.step_s == pytest.approx(0.4)


@pytest.mark.parametrize(
    "spec, message",
    [
        ("fail_tags=hard", "tag:probability"),
        ("fail_tags=hard:1.5", "tag:probability"),
        ("fail_tags=:0.5", "tag:probability"),
        ("fail_tags=hard:lots", "tag:probability"),
        ("speed=0", "speed must be"),
        ("speed=nan", "speed must be"),
    ],
)
def test_sim_bad_options_are_refused(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_sim_spec(spec)


def test_sim_fails_by_tag_and_thinks_by_speed() -> None:
    slept: list[float] = []
    mind = SimMind(SimConfig(think=0.1, speed=0.5, fail_tags=(("hard", 1.0),)), sleep=slept.append)
    with pytest.raises(MindError, match="simulated failure"):
        mind.think(_request(("hard",)))
    thought = mind.think(_request(("easy",)))
    assert isinstance(thought.action, Answer)
    assert slept == [pytest.approx(0.2), pytest.approx(0.2)]


def test_sim_tag_failures_follow_their_probability() -> None:
    mind = SimMind(SimConfig(fail_tags=(("hard", 0.3),), seed=3), sleep=lambda _: None)
    failures = 0
    for _ in range(2000):
        try:
            mind.think(_request(("hard",)))
        except MindError:
            failures += 1
    assert 500 < failures < 700  # 600 expected; binomial sd about 20


# -- classes and trail values ------------------------------------------------------------------


def test_worker_classes_are_checked() -> None:
    assert check_class("gpu-large") == "gpu-large"
    for bad in ("", "a|b", "a,b", "x" * 41, "-lead", "é"):
        with pytest.raises(ValueError, match="invalid worker class"):
            check_class(bad)
    assert default_class("onnx", "Phi-3 mini/v1") == "onnx:Phi-3-mini-v1"
    assert default_class("sim") == "sim"


def test_trail_values_are_parsed_defensively() -> None:
    trail = parse("weak|hard", "1|3|2.5|10|1000")
    assert trail == Trail("weak", "hard", 1.0, 3.0, 2.5, 10.0, 1000)
    assert trail.theta == pytest.approx(2.0) and trail.success_rate == pytest.approx(1 / 3)
    assert trail.mean_s == 2.5
    assert parse("weak|hard", "nan|inf|-1|x|5") == Trail("weak", "hard", 0, 0, 0, 0, 5)
    assert parse("weak", "1|1|1|1|1") is None
    assert parse("bad class|hard", "1|1|1|1|1") is None
    assert parse("weak|hard", "1|1|1") is None
    halved = trail.decayed(1000 + 3_600_000, half_life_s=3600)
    assert halved.failures == pytest.approx(1.5) and halved.successes == pytest.approx(0.5)


# -- long-lived trails -------------------------------------------------------------------------


@pytest.fixture
def store(client: Any) -> Iterator[Trails]:
    trails = Trails(client, half_life_s=3600, max_trails=10)
    client.delete(trails.key)
    yield trails
    client.delete(trails.key)


def test_fold_adds_decayed_and_stays_bounded(store: Trails) -> None:
    store.fold(["weak|hard", "0|2|0|0|0", "strong|hard", "3|0|6|30|0"], 1_000_000)
    store.fold(["weak|hard", "1|0|1|5|0"], 1_000_000 + 3_600_000)  # one half-life later
    found = {(t.worker_class, t.kind): t for t in store.read()}
    assert found["weak", "hard"].failures == pytest.approx(1.0)
    assert found["weak", "hard"].successes == pytest.approx(1.0)
    assert found["strong", "hard"].mean_s == pytest.approx(2.0)
    # past max_trails the weakest go, down to 90% of the bound
    pairs = [x for i in range(12) for x in (f"c{i}|k", f"{i + 1}|0|0|0|0")]
    kept = store.fold(pairs, 1_000_000 + 3_600_000)
    assert kept == 9 and store.client.hlen(store.key) == 9
    names = {t.worker_class for t in store.read()}
    assert "c11" in names and "c0" not in names and "weak" not in names


def test_reset_all_or_one_class(store: Trails) -> None:
    store.fold(["weak|hard", "0|2|0|0|0", "weak|easy", "2|0|0|0|0", "strong|hard", "1|0|0|0|0"], 5)
    assert store.reset(worker_class="weak", kind="hard") == 1
    assert {(t.worker_class, t.kind) for t in store.read()} == {
        ("weak", "easy"),
        ("strong", "hard"),
    }
    assert store.reset(worker_class="weak") == 1
    assert store.reset() == 1
    assert store.read() == []


# -- swarms ------------------------------------------------------------------------------------


def purpose(*tasks: tuple[str, tuple[str, ...]], learning: float = 1.0, **budgets: Any) -> Purpose:
    return Purpose(
        title="Labour",
        text="Labour\n\nDo the work.",
        name="labour",
        budgets=Budgets(**budgets),
        tuning=Tuning(epsilon=0.0, learning=learning),
        tasks=tuple(RootTask(title, tags=tags) for title, tags in tasks),
    )


@pytest.fixture
def swarms(client: Any, clock: FakeClock, store: Trails) -> Iterator[Any]:
    """make(purpose) -> Board; every swarm made is deleted afterwards."""
    from swarm.trace import delete_swarm

    made: list[Board] = []

    def make(p: Purpose) -> Board:
        made.append(Board.seed(client, p, clock=clock, rng=random.Random(11)))
        return made[-1]

    yield make
    for board in made:
        delete_swarm(client, board.id)


def test_a_new_swarm_starts_from_the_long_lived_trails(swarms: Any, store: Trails) -> None:
    store.fold(["weak|hard", "0|4|0|0|0"], 1_000_000_000)  # the fake clock's now
    board = swarms(purpose(("a", ("hard",))))
    trails = {(t.worker_class, t.kind): t for t in board.own_trails()}
    assert trails["weak", "hard"].failures == pytest.approx(4.0)
    off = swarms(purpose(("a", ("hard",)), learning=0))
    assert off.own_trails() == []


# -- outcomes, escalation, steering ------------------------------------------------------------


def live(board: Board, *classes: str) -> None:
    """Workers of these classes beat now (what a Worker's heartbeat publishes)."""
    for c in classes:
        board.heartbeat(f"{c}-w", {"mind": "sim", "class": c}, ttl_s=30)


def claim_as(board: Board, worker_class: str) -> Any:
    from swarm.board import ClaimStatus

    outcome = board.claim(f"{worker_class}-w", worker_class=worker_class)
    return outcome.claim if outcome.status is ClaimStatus.OK else outcome.status


def events(board: Board, etype: str) -> list[dict[str, str]]:
    return [f for _, f in board.events(count=10_000) if f["type"] == etype]


def test_outcomes_leave_trails_per_class_and_kind(
    swarms: Any, store: Trails, clock: FakeClock
) -> None:
    board = swarms(purpose(("h", ("hard", "big")), ("e", ())))
    live(board, "weak")
    first = claim_as(board, "weak")
    board.fail(first, "weak-w", "too hard")
    second = claim_as(board, "weak")
    clock.advance(2.0)
    board.complete(second, "weak-w", "done", tokens=7)
    got = {(t.worker_class, t.kind): t for t in board.own_trails()}
    failed_kinds = {"hard", "big"} if first.task.title == "h" else {"@work"}
    done_kinds = {"hard", "big"} if second.task.title == "h" else {"@work"}
    for kind in failed_kinds:
        assert got["weak", kind].failures == pytest.approx(1.0)
    for kind in done_kinds:
        assert got["weak", kind].successes == pytest.approx(1.0)
        assert got["weak", kind].mean_tokens == pytest.approx(7.0)
        assert got["weak", kind].mean_s == pytest.approx(2.0)
    claimed = events(board, "claimed")
    assert {e["class"] for e in claimed} == {"weak"} and claimed[0]["rule"] in ("trails", "explore")


def test_trails_persist_across_two_swarms(swarms: Any, store: Trails, clock: FakeClock) -> None:
    first = swarms(purpose(("h", ("hard",))))
    live(first, "weak")
    claim = claim_as(first, "weak")
    first.fail(claim, "weak-w", "too hard")
    assert first.fold_trails(store) == 1
    assert first.fold_trails(store) == 0  # taken once
    clock.advance(3600)
    second = swarms(purpose(("h2", ("hard",))))
    seeded = {(t.worker_class, t.kind): t for t in second.own_trails()}
    assert 0.99 < seeded["weak", "hard"].failures < 1.0  # decayed by an hour of a week's half-life
    assert [t.kind for t in store.read()] == ["hard"]


def test_a_task_failed_by_one_class_escalates_to_another(swarms: Any) -> None:
    board = swarms(purpose(("h", ("hard",)), max_attempts=1))
    live(board, "weak", "strong")
    claim = claim_as(board, "weak")
    assert board.fail(claim, "weak-w", "too hard").value == "open"  # past max_attempts: escalated
    escalated = events(board, "escalated")
    assert escalated[0]["failed_by"] == "weak" and escalated[0]["to"] == "strong"
    assert board.failed_by(claim.task.id) == ["weak"]
    task = board.task(claim.task.id)
    assert task is not None and task.failed_by == ("weak",) and task.owner_class == "weak"
    from swarm.board import ClaimStatus

    assert claim_as(board, "weak") is ClaimStatus.DECLINED  # steered away from its failure
    retry = claim_as(board, "strong")
    assert retry.task.id == claim.task.id
    assert events(board, "claimed")[-1]["rule"] == "escalated"
    assert board.fail(retry, "strong-w", "too hard for me too").value == "dead"  # all failed
    assert board.task("0").kind is Kind.SYNTHESIZE  # the parent goes on without it


def test_one_class_alone_never_declines_and_dies_at_max_attempts(swarms: Any) -> None:
    board = swarms(purpose(("h", ("hard",)), max_attempts=2))
    live(board, "weak")
    outcomes = []
    for _ in range(2):
        claim = claim_as(board, "weak")
        outcomes.append(board.fail(claim, "weak-w", "too hard").value)
    assert outcomes == ["open", "dead"]
    assert events(board, "escalated") == []


def test_a_class_leaves_the_kind_it_keeps_failing_to_a_better_one(
    swarms: Any, store: Trails
) -> None:
    store.fold(["weak|hard", "0|60|0|0|0", "strong|hard", "20|0|0|0|0"], 1_000_000_000)
    board = swarms(purpose(("h", ("hard",))))
    live(board, "weak", "strong")
    from swarm.board import ClaimStatus

    weak = [claim_as(board, "weak") for _ in range(50)]
    # s^2/(s^2+theta^2) with s = eta = 1 and theta = 61: it responds about 1 time in 3722
    assert weak == [ClaimStatus.DECLINED] * 50
    assert board.status()["by_state"]["open"] == 1  # declining changed nothing
    assert claim_as(board, "strong").task.title == "h"
    assert events(board, "claimed")[-1]["rule"] == "trails"


def test_the_repellent_turns_a_class_to_the_kind_it_does_well(swarms: Any, store: Trails) -> None:
    store.fold(["weak|hard", "0|8|0|0|0"], 1_000_000_000)
    picks: dict[str, int] = {"e": 0, "h": 0}
    for _ in range(20):
        board = swarms(purpose(("h", ("hard",)), ("e", ("easy",))))
        live(board, "weak")  # alone: it never declines, but it prefers what it succeeds at
        picks[claim_as(board, "weak").task.title] += 1
    # weights 1/2 (no trail) against 1/82: the hard task is drawn about 1 time in 42
    assert picks["e"] >= 18


def test_learning_off_reads_and_writes_no_trails(swarms: Any, store: Trails) -> None:
    board = swarms(purpose(("h", ("hard",)), learning=0, max_attempts=1))
    live(board, "weak", "strong")
    claim = claim_as(board, "weak")
    assert board.fail(claim, "weak-w", "too hard").value == "dead"
    assert board.own_trails() == [] and board.failed_by(claim.task.id) == []
    assert events(board, "escalated") == [] and board.fold_trails(store) == 0
    assert events(board, "claimed")[0]["rule"] == "pheromone"


def test_a_worker_publishes_its_profile_and_it_expires(swarms: Any, client: Any) -> None:
    from swarm.worker import Worker, WorkerConfig

    board = swarms(purpose(("e", ())))
    mind = SimMind(SimConfig())
    worker = Worker(client, mind, WorkerConfig(worker_class="gpu-large", skills=("hard",)))
    board.heartbeat(worker.id, worker.record(), ttl_s=5)
    published = client.hgetall(board.keys.worker(worker.id))
    assert published["class"] == "gpu-large" and published["skills"] == "hard"
    assert published["code"] == "0" and published["mind"] == "sim"
    assert 0 < client.pttl(board.keys.worker(worker.id)) <= 5000
    assert client.hget(board.keys.classes, "gpu-large") is not None
    assert Worker(client, mind).worker_class == "sim"  # the mind's name by default
    with pytest.raises(ValueError, match="invalid worker class"):
        Worker(client, mind, WorkerConfig(worker_class="a|b"))


# -- shown where people look -------------------------------------------------------------------


def test_watch_shows_classes_and_where_work_flows(swarms: Any, clock: FakeClock) -> None:
    import io

    from rich.console import Console

    from swarm.dashboard.view import payload
    from swarm.watch import ClassFlow, WatchState, render, snapshot

    board = swarms(purpose(("h", ("hard",)), ("e", ("easy",))))
    live(board, "weak", "strong")
    board.heartbeat("evil-w", {"class": "\x1b[31mred", "mind": "sim"}, ttl_s=30)  # from Redis
    first = claim_as(board, "weak")
    board.fail(first, "weak-w", "too hard")
    retry = claim_as(board, "strong")
    assert retry.task.id == first.task.id  # escalated: weak would decline it
    board.complete(retry, "strong-w", "done")
    snap = snapshot(board.client, board.id, WatchState(), height=30, now=clock.now)
    assert {w.worker_class for w in snap.workers} >= {"weak", "strong"}
    assert snap.flow == (
        ClassFlow("strong", claimed=1, done=1, failed=0, escalated=1),
        ClassFlow("weak", claimed=1, done=0, failed=1, escalated=0),
    )
    console = Console(record=True, width=100, height=30, file=io.StringIO())
    console.print(render(snap, 100, 30))
    text = console.export_text()
    assert "by class strong 1 done 1 escalated to it · weak 0 done 1 failed" in text
    assert "\x1b" not in text and "red" in text  # the hostile class, shown literally
    assert payload(snap)["flow"][0]["worker_class"] == "strong"


# -- the commands ----------------------------------------------------------------------------------


def test_swarm_trails_shows_filters_and_resets(redis_url: str, real_redis: Any) -> None:
    from click.testing import CliRunner

    from swarm.cli import cli

    store = Trails(real_redis)
    now = int(time.time() * 1000)
    store.fold(["weak|hard", "1|3|4|40|0", "strong|hard", "4|0|8|80|0"], now)
    real_redis.hset(store.key, "\x1b[31mevil|hard", "1|1|1|1|1")  # unreadable: not shown
    real_redis.hset(store.key, "odd|\x1b]0;title\x07", "1|0|1|1|1")  # shown, made safe
    runner = CliRunner()
    shown = runner.invoke(cli, ["trails", "--redis", redis_url])
    assert shown.exit_code == 0, shown.output
    assert "weak" in shown.output and "strong" in shown.output and "33%" in shown.output
    assert "\x1b" not in shown.output and "\x07" not in shown.output and "evil" not in shown.output
    as_json = runner.invoke(cli, ["trails", "--redis", redis_url, "--json", "--class", "weak"])
    rows = json.loads(as_json.output)
    assert [(r["class"], r["kind"], r["failures"]) for r in rows] == [("weak", "hard", 3.0)]
    assert rows[0]["mean_s"] == 4.0 and rows[0]["theta"] == 2.0
    forgot = runner.invoke(cli, ["trails", "--redis", redis_url, "--reset", "--class", "weak"])
    assert forgot.output.strip() == "forgot 1 trail"
    assert {t.worker_class for t in store.read()} == {"strong", "odd"}
    both = runner.invoke(cli, ["trails", "--redis", redis_url, "--reset", "--swarm", "x"])
    assert both.exit_code != 0 and "drop --swarm" in both.output
    runner.invoke(cli, ["trails", "--redis", redis_url, "--reset"])
    assert real_redis.exists(store.key) == 0
    empty = runner.invoke(cli, ["trails", "--redis", redis_url])
    assert "no trails yet" in empty.output


def test_seed_no_learning_and_worker_class_options(redis_url: str, real_redis: Any) -> None:
    from click.testing import CliRunner

    from swarm.cli import cli
    from swarm.keys import SwarmKeys
    from tests.test_cli import EXAMPLE, one_line_error, run

    runner = CliRunner()
    seeded = runner.invoke(cli, ["seed", str(EXAMPLE), "--redis", redis_url, "--no-learning"])
    sid = seeded.output.strip()
    assert real_redis.hget(SwarmKeys(sid).meta, "learning") == "0.0"
    bad = run("worker", "--redis", redis_url, "--mind", "sim:", "--class", "a|b", "--burst")
    assert "invalid worker class" in one_line_error(bad)
