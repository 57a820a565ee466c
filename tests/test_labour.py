"""Division of labour: the sim mind's per-tag options, trails, escalation, persistence.

Board-level tests run on a real Redis and on fakeredis with Lua (the `client` fixture).
"""

from __future__ import annotations

import random
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


# -- classes and trail values ---------------------------------------------------------------------


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


# -- long-lived trails ---------------------------------------------------------------------------


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


# -- swarms -------------------------------------------------------------------------------------


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
