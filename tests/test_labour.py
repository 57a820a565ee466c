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
from swarm.protocol import ActionKind, Answer, Limits, Subtask, ThinkRequest
from swarm.purpose import Budgets, Purpose, RootTask, Tuning
from swarm.requirements import InvalidStrength, Requirements, check_strength, default_strength
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


# -- requirements: strength and code ---------------------------------------------------------------


def needing(
    *tasks: tuple[str, tuple[str, ...]],
    requires: Requirements | None = None,
    learning: float = 1.0,
    epsilon: float = 0.0,
    **budgets: Any,
) -> Purpose:
    return Purpose(
        title="Needs",
        text="Needs\n\nDo the work.",
        name="needs",
        budgets=Budgets(**budgets),
        tuning=Tuning(epsilon=epsilon, learning=learning),
        tasks=tuple(RootTask(title, tags=tags) for title, tags in tasks),
        requires=requires or Requirements(),
    )


def live_as(board: Board, worker_class: str, strength: int, code: bool = False) -> None:
    """A worker of this class and profile beats now (what a Worker's heartbeat publishes)."""
    record = {"mind": "sim", "class": worker_class, "strength": strength, "code": int(code)}
    board.heartbeat(f"{worker_class}-w", record, ttl_s=30)


def claim_with(board: Board, worker_class: str, strength: int, code: bool = False) -> Any:
    from swarm.board import ClaimStatus

    outcome = board.claim(
        f"{worker_class}-w", worker_class=worker_class, strength=strength, code=code
    )
    return outcome.claim if outcome.status is ClaimStatus.OK else outcome.status


def test_strengths_are_checked_and_default_by_mind() -> None:
    assert check_strength("3") == 3 and check_strength(0) == 0 and check_strength(9) == 9
    for bad in ("10", "-1", "1.5", "", "two", True, "\x1b[31m"):
        with pytest.raises(InvalidStrength, match="a whole number from 0 to 9"):
            check_strength(bad)
    assert [default_strength(m) for m in ("sim", "onnx", "openai", "other")] == [1, 2, 3, 1]
    need = Requirements(min_strength=2, needs_code=True)
    assert need.met_by(2, True) and not need.met_by(1, True) and not need.met_by(3, False)
    assert need.describe() == "strength >= 2, code" and Requirements().describe() == "nothing"


def test_the_purpose_states_requirements() -> None:
    from swarm.purpose import PurposeError, parse_purpose

    text = "---\nrequires:\n  min_strength: 2\n  needs_code: true\n---\n# Goal\n\nDo it.\n"
    assert parse_purpose(text).requires == Requirements(2, True)
    assert parse_purpose("# Goal\n\nDo it.\n").requires == Requirements()
    for front, message in [
        ("requires: 3", "'requires' must be a mapping"),
        ("requires:\n  min_strength: 12", "requires.min_strength"),
        ("requires:\n  min_strength: '2'", "requires.min_strength must be a whole number"),
        ("requires:\n  min_strength: true", "requires.min_strength must be a whole number"),
        ("requires:\n  needs_code: 'yes'", "requires.needs_code must be true or false"),
        ("requires:\n  strength: 2", "did you mean 'min_strength'"),
    ]:
        with pytest.raises(PurposeError, match=message):
            parse_purpose(f"---\n{front}\n---\n# Goal\n\nDo it.\n")


def test_tasks_inherit_requirements_as_a_floor(swarms: Any) -> None:
    board = swarms(needing(("a", ()), requires=Requirements(1, False)))
    root, listed = board.task("0"), board.task("1")
    assert root is not None and (root.min_strength, root.needs_code) == (1, 0)
    assert listed is not None and (listed.min_strength, listed.needs_code) == (1, 0)
    hard = board.inject("hard", "ann", tags=["hard"], requires=Requirements(3, True))
    board.boost(hard, 1e6, "ann")  # so that the claim draws it
    claim = claim_with(board, "strong", 3, code=True)
    assert claim.task.id == hard
    kids = board.split(claim, "strong-w", [Subtask("part", "", ("x",))])
    child = board.task(kids[0])
    assert child is not None and (child.min_strength, child.needs_code) == (3, 1)
    assert child.tags == ("x",)  # tags name the kind of work: not inherited
    easier = board.inject("any", "ann", requires=Requirements(0, False))
    injected = board.task(easier)
    assert injected is not None and injected.min_strength == 1  # the root's floor holds
    with pytest.raises(ValueError, match="invalid minimum strength"):
        board.inject("x", "ann", requires=Requirements(10, False))


@pytest.mark.parametrize("learning", [1.0, 0.0])
@pytest.mark.parametrize("epsilon", [0.0, 1.0])
def test_a_worker_never_takes_a_task_it_cannot_meet(
    swarms: Any, learning: float, epsilon: float
) -> None:
    from swarm.board import ClaimStatus

    board = swarms(needing(("plain", ()), learning=learning, epsilon=epsilon))
    code = board.inject("code", "ann", requires=Requirements(0, True))
    strong = board.inject("strong", "ann", requires=Requirements(3, False))
    for tid in (code, strong):  # at the top of open: the claim must skip them, not take them
        board.boost(tid, 1e6, "ann")
    live_as(board, "weak", 1)
    live_as(board, "big", 3, code=True)  # someone meets them: they are not unmet
    got = claim_with(board, "weak", 1)
    assert got.task.title == "plain"
    assert claim_with(board, "weak", 1) is ClaimStatus.DECLINED  # nothing left it meets
    assert claim_with(board, "coder", 1, code=True).task.id == code
    assert claim_with(board, "big", 3).task.id == strong
    assert board.status()["unmet"] == 0 and events(board, "unmet") == []


def _rendered(board: Board, clock: FakeClock) -> str:
    """`swarm watch`'s frame as text, and the dashboard's payload agreeing on unmet tasks."""
    import io

    from rich.console import Console

    from swarm.dashboard.view import payload
    from swarm.watch import WatchState, render, snapshot

    snap = snapshot(board.client, board.id, WatchState(), height=30, now=clock.now)
    assert payload(snap)["unmet"] == snap.unmet
    console = Console(record=True, width=120, height=30, file=io.StringIO())
    console.print(render(snap, 120, 30))
    return console.export_text()


def test_a_task_no_live_worker_meets_waits_then_dies_with_the_reason(
    swarms: Any, clock: FakeClock
) -> None:
    from swarm.board import ClaimStatus

    board = swarms(needing(("plain", ()), unmet_s=60))
    tid = board.inject("needs code", "ann", requires=Requirements(2, True))
    board.boost(tid, 1e6, "ann")
    live_as(board, "weak", 1)
    plain = claim_with(board, "weak", 1)
    assert plain.task.title == "plain"
    board.complete(plain, "weak-w", "done")
    assert claim_with(board, "weak", 1) is ClaimStatus.DECLINED
    first = events(board, "unmet")
    assert [(e["task"], e["needs"], e["outcome"]) for e in first] == [
        (tid, "strength >= 2, code", "waiting")
    ]
    assert board.status()["unmet"] == 1
    shown = _rendered(board, clock)
    assert "1 open task(s) no live worker meets" in shown and "weak s1" in shown
    # a worker that meets it comes and goes: the mark is cleared, the wait starts again
    clock.advance(50)
    live_as(board, "weak", 1)
    live_as(board, "coder", 2, code=True)
    assert claim_with(board, "weak", 1) is ClaimStatus.DECLINED
    assert board.status()["unmet"] == 0
    clock.advance(50)  # the coder's beat is stale now
    live_as(board, "weak", 1)
    assert claim_with(board, "weak", 1) is ClaimStatus.DECLINED
    clock.advance(59)
    live_as(board, "weak", 1)
    claim_with(board, "weak", 1)
    assert board.task(tid).state.value == "open"  # 59 s unmet: still waiting
    clock.advance(1)
    live_as(board, "weak", 1)
    claim_with(board, "weak", 1)
    task = board.task(tid)
    assert task is not None and task.state.value == "dead"
    assert task.reason == "no live worker meets its requirements (strength >= 2, code) for 60 s"
    assert events(board, "unmet")[-1]["outcome"] == "dead"
    assert board.status()["unmet"] == 0
    assert board.task("0").kind is Kind.SYNTHESIZE  # the root goes on without it


def test_a_root_no_live_worker_meets_ends_the_swarm(swarms: Any, clock: FakeClock) -> None:
    from swarm.board import ClaimStatus

    board = swarms(needing(requires=Requirements(5, False), unmet_s=10))
    live_as(board, "weak", 1)
    assert claim_with(board, "weak", 1) is ClaimStatus.DECLINED
    clock.advance(10)
    live_as(board, "weak", 1)
    assert claim_with(board, "weak", 1) is ClaimStatus.CLOSED
    meta = board.meta()
    assert meta["outcome"] == "failed" and "strength >= 5" in meta["answer"]


def test_escalation_goes_to_a_stronger_class_first(swarms: Any) -> None:
    from swarm.board import ClaimStatus

    board = swarms(needing(("h", ("hard",)), max_attempts=1))
    live_as(board, "weak", 1)
    live_as(board, "peer", 1)
    live_as(board, "strong", 3)
    claim = claim_with(board, "weak", 1)
    assert board.fail(claim, "weak-w", "too hard").value == "open"
    assert events(board, "escalated")[0]["to"] in ("peer,strong", "strong,peer")
    # as weak as the class that failed it: the peer leaves it to the stronger class
    assert claim_with(board, "peer", 1) is ClaimStatus.DECLINED
    retry = claim_with(board, "strong", 3)
    assert retry.task.id == claim.task.id and events(board, "claimed")[-1]["rule"] == "escalated"
    assert board.fail(retry, "strong-w", "too hard too").value == "open"  # peer has not tried
    # the stronger failed too: the peer may try it now (sideways, the last untried class)
    last = claim_with(board, "peer", 1)
    assert last.task.id == claim.task.id
    assert board.fail(last, "peer-w", "no").value == "dead"


def test_escalation_goes_sideways_when_no_stronger_class_lives(swarms: Any) -> None:
    from swarm.board import ClaimStatus

    board = swarms(needing(("h", ("hard",)), max_attempts=1))
    live_as(board, "weak", 1)
    live_as(board, "peer", 1)
    live_as(board, "coder", 5, code=False)
    claim = claim_with(board, "weak", 1)
    board.fail(claim, "weak-w", "too hard")
    assert claim_with(board, "peer", 1) is ClaimStatus.DECLINED  # left to the stronger coder
    board.client.hset(board.keys.classes, "coder", "0|5|0")  # the strong class is gone
    assert claim_with(board, "peer", 1).task.id == claim.task.id


def test_escalation_skips_classes_that_cannot_meet_the_task(swarms: Any) -> None:
    board = swarms(needing(("h", ("hard",)), max_attempts=1, requires=Requirements(0, True)))
    live_as(board, "weak", 1, code=True)
    live_as(board, "thinker", 5, code=False)  # stronger, but it cannot run code
    claim = claim_with(board, "weak", 1, code=True)
    # no live class that could take it has not tried it: it dies at max_attempts
    assert board.fail(claim, "weak-w", "too hard").value == "dead"
    assert events(board, "escalated") == []


def test_traits_packed_before_requirements_still_read(swarms: Any) -> None:
    board = swarms(needing(("a", ("x",))))
    board.client.hset(board.keys.traits, "1", "work|0|1|0|x")  # five fields: the old packing
    claim = claim_with(board, "weak", 0)
    assert claim.task.id == "1"


def test_a_worker_publishes_strength_model_and_code(swarms: Any, client: Any) -> None:
    from swarm.worker import Worker, WorkerConfig

    board = swarms(needing(("e", ())))
    mind = SimMind(SimConfig())
    worker = Worker(client, mind, WorkerConfig(worker_class="sim", strength=4, model="tiny"))
    board.heartbeat(worker.id, worker.record(), ttl_s=5)
    published = client.hgetall(board.keys.worker(worker.id))
    assert (published["strength"], published["model"], published["code"]) == ("4", "tiny", "0")
    assert client.hget(board.keys.classes, "sim").endswith("|4|0")
    assert client.hget(board.keys.profiles, "4|0") is not None
    assert Worker(client, mind).strength == 1  # the sim mind's default
    with pytest.raises(InvalidStrength):
        Worker(client, mind, WorkerConfig(strength=12))


def test_the_dashboard_injects_with_requirements(swarms: Any) -> None:
    from swarm.dashboard.control import Refused, act

    board = swarms(needing(("a", ())))
    said = act(
        board,
        "inject",
        {"title": "t", "tags": "hard, big", "min_strength": "2", "needs_code": True},
    )
    tid = said.split()[2]
    task = board.task(tid)
    assert task is not None and task.tags == ("hard", "big")
    assert (task.min_strength, task.needs_code) == (2, 1)
    for body, message in [
        ({"title": "t", "min_strength": "12"}, "min_strength"),
        ({"title": "t", "min_strength": 2.5}, "min_strength"),
        ({"title": "t", "needs_code": "yes"}, "needs_code"),
    ]:
        with pytest.raises(Refused, match=message):
            act(board, "inject", body)


def test_inject_and_worker_strength_on_the_command_line(redis_url: str, real_redis: Any) -> None:
    from click.testing import CliRunner

    from swarm.cli import cli
    from swarm.keys import SwarmKeys
    from tests.test_cli import EXAMPLE, one_line_error, run

    runner = CliRunner()
    sid = runner.invoke(cli, ["seed", str(EXAMPLE), "--redis", redis_url]).output.strip()
    try:
        keys = SwarmKeys(sid)
        real_redis.hset(keys.task("0"), "state", "waiting")  # as if split: it takes children
        where = ["--swarm", sid, "--redis", redis_url]
        out = runner.invoke(
            cli, ["inject", "t", *where, "--min-strength", "3", "--needs-code", "--tags", "hard"]
        )
        assert out.exit_code == 0, out.output
        tid = out.output.split()[2]
        got = real_redis.hmget(keys.task(tid), "min_strength", "needs_code", "tags")
        assert got == ["3", "1", "hard"]
        bad = runner.invoke(cli, ["inject", "t", "--swarm", sid, "--min-strength", "10"])
        assert bad.exit_code != 0 and "0<=x<=9" in bad.output
    finally:
        from swarm.trace import delete_swarm

        delete_swarm(real_redis, sid)
    worse = run("worker", "--redis", redis_url, "--mind", "sim:", "--strength", "x", "--burst")
    assert "invalid strength 'x'" in one_line_error(worse)
