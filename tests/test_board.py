"""The board suite: every script on a real Redis and on fakeredis with Lua."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest

from swarm import pheromone
from swarm.board import Board, ClaimStatus, LeaseLost, SplitRefused
from swarm.protocol import Confidence, Subtask
from swarm.purpose import Budgets, Tuning
from swarm.task import FIELDS, Kind, State, SwarmState, Task
from tests.conftest import FakeClock


def claim_ok(board: Board, worker: str = "w1", **kwargs: Any) -> Any:
    outcome = board.claim(worker, **kwargs)
    assert outcome.status is ClaimStatus.OK, outcome
    assert outcome.claim is not None
    return outcome.claim


def event_types(board: Board) -> list[str]:
    return [f["type"] for _, f in board.events(count=10_000)]


def test_seed_without_tasks_opens_the_root(seed: Any) -> None:
    board = seed()
    st = board.status()
    assert st["state"] == "running"
    assert st["tasks"] == 1
    assert st["by_state"]["open"] == 1
    root = board.task("0")
    assert root is not None and root.state is State.OPEN and root.depth == 0
    assert event_types(board) == ["seeded"]


def test_seed_with_tasks_makes_them_the_roots_children(seed: Any) -> None:
    board = seed(tasks=("a", "b", "c"))
    assert [t.title for t in board.children("0")] == ["a", "b", "c"]
    assert board.task("0").state is State.WAITING  # type: ignore[union-attr]
    assert board.status()["by_state"] == {
        "open": 3,
        "claimed": 0,
        "waiting": 1,
        "done": 0,
        "dead": 0,
        "cancelled": 0,
    }


def test_seed_twice_with_one_id_is_refused(client: Any, clock: FakeClock) -> None:
    from swarm.board import BoardError
    from tests.conftest import make_purpose

    Board.seed(client, make_purpose(), swarm_id="dup-test-" + str(random.random()), clock=clock)
    sid = client.zrevrange("swarm:index", 0, 0)[0]
    with pytest.raises(BoardError, match="already exists"):
        Board.seed(client, make_purpose(), swarm_id=sid, clock=clock)


def test_claim_leases_the_task_with_a_fence(seed: Any, clock: FakeClock) -> None:
    board = seed()
    claim = claim_ok(board, lease_s=30)
    assert claim.task.id == "0" and claim.task.state is State.CLAIMED and claim.fence >= 1
    assert claim.task.owner == "w1"
    deadline = board.client.zscore(board.keys.leases, "0")
    assert deadline == pytest.approx(clock.now * 1000 + 30_000)
    assert board.claim("w2").status is ClaimStatus.EMPTY


def test_full_tree_runs_to_a_root_answer(seed: Any) -> None:
    board = seed(tasks=("a", "b"))
    first = claim_ok(board)
    x = first.task.title
    board.split(first, "w1", [Subtask(f"{x}.1"), Subtask(f"{x}.2")], tokens=3)
    answers = {}
    while True:
        outcome = board.claim("w1")
        if outcome.status is not ClaimStatus.OK:
            break
        c = outcome.claim
        assert c is not None
        if c.task.kind is Kind.SYNTHESIZE:
            kids = board.children(c.task.id)
            assert all(k.state.terminal for k in kids)
            text = "+".join(k.result for k in kids)
        else:
            text = c.task.title
        answers[c.task.id] = text
        board.complete(c, "w1", text, Confidence.HIGH, tokens=2)
    assert outcome.status is ClaimStatus.CLOSED
    assert board.state() is SwarmState.DONE
    expected = {"a": "a.1+a.2+b", "b": "a+b.1+b.2"}[x]
    assert board.answer() == expected
    st = board.status()
    assert st["by_state"]["done"] == 5 and st["outcome"] == "answered"
    assert st["tokens"] == 3 + 2 * 5
    assert event_types(board).count("completed") == 5
    assert event_types(board)[-1] == "done"


def test_stale_fence_is_refused_everywhere(seed: Any, clock: FakeClock) -> None:
    board = seed()
    old = claim_ok(board, "w1", lease_s=10)
    clock.advance(11)
    new = claim_ok(board, "w2", lease_s=10)  # reaps the expired lease and takes it over
    assert new.task.id == old.task.id and new.fence > old.fence
    with pytest.raises(LeaseLost):
        board.complete(old, "w1", "stale answer")
    with pytest.raises(LeaseLost):
        board.split(old, "w1", [Subtask("x")])
    with pytest.raises(LeaseLost):
        board.fail(old, "w1", "nope")
    assert not board.renew(old, "w1", lease_s=10)
    assert not board.release(old, "w1")
    board.complete(new, "w2", "fresh answer")
    assert board.answer() == "fresh answer"
    assert event_types(board).count("completed") == 1


def test_renew_keeps_the_lease_alive(seed: Any, clock: FakeClock) -> None:
    board = seed()
    claim = claim_ok(board, lease_s=10)
    for _ in range(5):
        clock.advance(8)
        assert board.renew(claim, "w1", lease_s=10)
        assert board.claim("w2").status is ClaimStatus.EMPTY
    board.complete(claim, "w1", "kept")
    assert board.answer() == "kept"


def test_reaping_counts_attempts_then_kills(seed: Any, clock: FakeClock) -> None:
    board = seed(budgets=Budgets(max_attempts=2))
    first = claim_ok(board, "w1", lease_s=5)
    clock.advance(4)
    assert board.claim("w2").status is ClaimStatus.EMPTY  # not expired yet
    clock.advance(2)
    second = claim_ok(board, "w2", lease_s=5)  # reaps w1's lease, then takes the task
    assert second.task.id == first.task.id and second.task.attempts == 1
    reaped = [f for _, f in board.events() if f["type"] == "reaped"]
    assert reaped[0]["owner"] == "w1" and reaped[0]["outcome"] == "open"
    clock.advance(6)
    assert board.claim("w3").status is ClaimStatus.CLOSED  # second expiry: dead root, swarm over
    root = board.task("0")
    assert root is not None and root.state is State.DEAD and root.attempts == 2
    assert "lease expired" in root.reason
    assert board.status()["outcome"] == "failed"


def test_dead_child_does_not_block_its_parent(seed: Any) -> None:
    board = seed(tasks=("a", "b"), budgets=Budgets(max_attempts=1))
    c1 = claim_ok(board)
    assert board.fail(c1, "w1", "cannot") is State.DEAD
    c2 = claim_ok(board)
    board.complete(c2, "w1", "b done")
    root = claim_ok(board)
    assert root.task.kind is Kind.SYNTHESIZE and root.task.id == "0"
    states = {t.title: t.state for t in board.children("0")}
    assert State.DEAD in states.values() and State.DONE in states.values()


def test_fail_requeues_with_lowered_pheromone(seed: Any, clock: FakeClock) -> None:
    board = seed(tasks=("a",), tuning=Tuning(epsilon=0.0, rho_fail=0.25))
    claim = claim_ok(board)
    before = float(board.client.hget(board.keys.task(claim.task.id), "score"))
    assert board.fail(claim, "w1", "flaky") is State.OPEN
    after = board.client.zscore(board.keys.open, claim.task.id)
    assert after == pytest.approx(pheromone.lowered(before, 0.25))
    t = board.task(claim.task.id)
    assert t is not None and t.attempts == 1 and t.reason == "flaky"


def test_release_returns_the_task_without_spending_an_attempt(seed: Any) -> None:
    board = seed(tasks=("a",))
    claim = claim_ok(board)
    assert board.release(claim, "w1")
    t = board.task(claim.task.id)
    assert t is not None and t.state is State.OPEN and t.attempts == 0 and t.owner == ""
    assert claim_ok(board, "w2").task.id == claim.task.id


def test_split_refused_past_max_depth(seed: Any) -> None:
    board = seed(tasks=("a",), budgets=Budgets(max_depth=1))
    claim = claim_ok(board)
    assert not claim.can_split
    with pytest.raises(SplitRefused, match="max depth"):
        board.split(claim, "w1", [Subtask("a.1")])
    board.complete(claim, "w1", "answered instead")  # still held after a refusal


def test_split_refused_past_task_budget(seed: Any) -> None:
    board = seed(tasks=("a",), budgets=Budgets(max_tasks=3))
    claim = claim_ok(board)
    with pytest.raises(SplitRefused, match="task budget"):
        board.split(claim, "w1", [Subtask("x"), Subtask("y")])
    assert board.split(claim, "w1", [Subtask("x")]) == ["2"]
    assert board.status()["tasks"] == 3
    assert board.meta()["depth_reached"] == "2"


def test_split_refused_past_max_children(seed: Any) -> None:
    board = seed(budgets=Budgets(max_children=2))
    claim = claim_ok(board)
    with pytest.raises(SplitRefused, match="subtasks allowed"):
        board.split(claim, "w1", [Subtask("x"), Subtask("y"), Subtask("z")])


def test_synthesize_step_cannot_split(seed: Any) -> None:
    board = seed(tasks=("a",))
    board.complete(claim_ok(board), "w1", "a")
    root = claim_ok(board)
    assert root.task.kind is Kind.SYNTHESIZE and not root.can_split
    with pytest.raises(SplitRefused, match="synthesize"):
        board.split(root, "w1", [Subtask("x")])


def test_token_budget_wraps_up_and_still_answers(seed: Any) -> None:
    board = seed(budgets=Budgets(max_tokens=100))
    root = claim_ok(board)
    board.split(root, "w1", [Subtask(f"t{i}") for i in range(4)], tokens=10)
    first = claim_ok(board)
    board.complete(first, "w1", "only one", tokens=200)  # spends the budget
    assert board.state() is SwarmState.WRAPPING
    synth = claim_ok(board)  # open work is cancelled; the root synthesises what exists
    assert synth.task.id == "0" and synth.task.kind is Kind.SYNTHESIZE
    kids = board.children("0")
    assert sorted(k.state.value for k in kids) == ["cancelled"] * 3 + ["done"]
    board.complete(synth, "w1", "partial: only one")
    assert board.state() is SwarmState.DONE and board.answer() == "partial: only one"
    assert "wrapping" in event_types(board)


def test_deadline_wraps_up(seed: Any, clock: FakeClock) -> None:
    board = seed(tasks=("a", "b"), budgets=Budgets(deadline_s=60))
    done = claim_ok(board)
    board.complete(done, "w1", "a")
    clock.advance(61)
    synth = claim_ok(board)
    assert synth.task.id == "0" and synth.swarm_state is SwarmState.WRAPPING
    assert not synth.can_split


def test_wrapping_root_without_children_is_answered(seed: Any, clock: FakeClock) -> None:
    board = seed(budgets=Budgets(deadline_s=10))
    clock.advance(11)
    root = claim_ok(board)
    assert root.task.id == "0" and not root.can_split
    board.complete(root, "w1", "direct")
    assert board.answer() == "direct"


def test_root_dying_finishes_the_swarm_as_failed(seed: Any) -> None:
    board = seed(budgets=Budgets(max_attempts=1))
    board.fail(claim_ok(board), "w1", "hopeless")
    st = board.status()
    assert st["state"] == "done" and st["outcome"] == "failed"
    assert board.claim("w1").status is ClaimStatus.CLOSED


def test_pheromone_steers_the_claim(seed: Any) -> None:
    board = seed(tasks=("a", "b", "c"), tuning=Tuning(epsilon=0.0, alpha=4.0))
    assert board.boost("3", 1000.0, "person")
    picks = [claim_ok(board).task.id]
    assert picks == ["3"]


def test_boost_only_open_tasks(seed: Any) -> None:
    board = seed(tasks=("a",))
    claim = claim_ok(board)
    assert not board.boost(claim.task.id, 1.0, "person")
    with pytest.raises(ValueError):
        board.boost("1", 0, "person")


def test_success_deposits_on_open_siblings(seed: Any) -> None:
    board = seed(tasks=("a", "b", "c"), tuning=Tuning(epsilon=0.0, q=2.0))
    before = {t: board.client.zscore(board.keys.open, t) for t in ("1", "2", "3")}
    claim = claim_ok(board)
    board.complete(claim, "w1", "good", Confidence.HIGH)
    for sib in {"1", "2", "3"} - {claim.task.id}:
        after = board.client.zscore(board.keys.open, sib)
        assert after > before[sib]


def test_decay_is_forward_so_scores_never_change_with_time(seed: Any, clock: FakeClock) -> None:
    board = seed(tasks=("a",), tuning=Tuning(epsilon=0.0, half_life_s=10.0, initial=2.0))
    clock.advance(30)
    board.boost("1", 1.0, "person")  # a deposit 3 half-lives after the initial one
    score = board.client.zscore(board.keys.open, "1")
    lam = pheromone.decay_rate(10.0)
    # initial 2 decayed to 0.25, plus 1: 1.25 now (the epoch is the seed time)
    assert pheromone.level(score, 30, lam) == pytest.approx(1.25)
    assert pheromone.level(score, 40, lam) == pytest.approx(0.625)


def test_pause_stops_claims_and_resume_restores(seed: Any) -> None:
    board = seed(tasks=("a",))
    assert board.pause("person")
    assert board.claim("w1").status is ClaimStatus.PAUSED
    assert not board.pause("person")
    assert board.resume("person")
    assert claim_ok(board).task.id == "1"
    types = event_types(board)
    assert "paused" in types and "resumed" in types


def test_cancel_subtree_settles_the_parent(seed: Any) -> None:
    board = seed(tasks=("a", "b"))
    a = claim_ok(board)
    board.split(a, "w1", [Subtask("x"), Subtask("y")])
    n = board.cancel(a.task.id, "person")
    assert n == 3
    assert board.task(a.task.id).state is State.CANCELLED  # type: ignore[union-attr]
    b = claim_ok(board)
    assert b.task.kind is Kind.WORK
    board.complete(b, "w1", "b")
    root = claim_ok(board)
    assert root.task.kind is Kind.SYNTHESIZE


def test_cancel_swarm(seed: Any) -> None:
    board = seed(tasks=("a",))
    assert board.cancel(None, "person") == 1
    assert board.state() is SwarmState.CANCELLED
    assert board.claim("w1").status is ClaimStatus.CLOSED


def test_claim_explores_uniformly_with_epsilon(client: Any, clock: FakeClock) -> None:
    from tests.conftest import make_purpose

    purpose = make_purpose(tasks=("a", "b", "c", "d"), tuning=Tuning(epsilon=1.0))
    seen = set()
    for seed_ in range(12):
        board = Board.seed(client, purpose, clock=clock, rng=random.Random(seed_))
        seen.add(claim_ok(board).task.title)
    assert len(seen) >= 3


def test_claim_is_bounded_by_candidates_not_open_size(seed: Any) -> None:
    # epsilon 0: an exploring draw may pick any open task
    board = seed(
        budgets=Budgets(max_children=32, max_tasks=1000), tuning=Tuning(candidates=4, epsilon=0.0)
    )
    root = claim_ok(board)
    board.split(root, "w1", [Subtask(f"t{i}") for i in range(30)])
    # Newest-equal scores: the top 4 by (score, member) are the only candidates.
    top4 = set(board.client.zrevrange(board.keys.open, 0, 3))
    for _ in range(5):
        c = claim_ok(board)
        assert c.task.id in top4
        board.release(c, "w1")


def test_events_carry_type_task_worker_at(seed: Any) -> None:
    board = seed(tasks=("a",))
    board.complete(claim_ok(board, "w9"), "w9", "x")
    for _, fields in board.events():
        assert {"type", "task", "worker", "at"} <= set(fields)
    claimed = [f for _, f in board.events() if f["type"] == "claimed"]
    assert claimed[0]["worker"] == "w9" and claimed[0]["task"] == "1"


def test_context_reads_ancestry_siblings_children(seed: Any) -> None:
    board = seed(tasks=("a", "b"))
    a = claim_ok(board)
    kids = board.split(a, "w1", [Subtask("a.1"), Subtask("a.2")])
    done = claim_ok(board)
    board.complete(done, "w1", "first")
    other = claim_ok(board)
    ctx = board.context(other.task)
    assert ctx.ancestry[0].id == "0"
    if other.task.id in kids:
        assert [t.id for t in ctx.ancestry] == ["0", a.task.id]
    assert all(s.state is State.DONE for s in ctx.siblings)


def test_lua_logaddexp_matches_python(seed: Any) -> None:
    board = seed(tasks=("a",), tuning=Tuning(epsilon=0.0, initial=0.5))
    for amount in (0.001, 3.0, 1e6):
        before = board.client.zscore(board.keys.open, "1")
        board.boost("1", amount, "p")
        after = board.client.zscore(board.keys.open, "1")
        # No time has passed since the epoch, so the decay offset is zero.
        assert after == pytest.approx(pheromone.logaddexp(before, math.log(amount)), rel=1e-9)


def test_a_fence_is_only_good_for_the_worker_it_was_given_to(seed: Any) -> None:
    # A crash that loses the last AOF writes can hand a fence number out twice; the owner
    # check keeps an old holder with the same number from posting over the new owner.
    board = seed()
    claim = claim_ok(board, "w1")
    with pytest.raises(LeaseLost):
        board.complete(claim, "impostor", "not mine")
    assert not board.renew(claim, "impostor", lease_s=10)
    board.complete(claim, "w1", "mine")
    assert board.answer() == "mine"


def test_claim_carries_the_context_a_mind_needs(seed: Any) -> None:
    board = seed(tasks=("a", "b"))
    first = claim_ok(board)
    board.complete(first, "w1", "first result", Confidence.LOW)
    second = claim_ok(board)
    ctx = second.context
    assert [t.id for t in ctx.ancestry] == ["0"] and ctx.ancestry[0].title == "Test purpose"
    assert [(t.title, t.result, t.confidence) for t in ctx.siblings] == [
        (first.task.title, "first result", "low")
    ]
    board.complete(second, "w1", "second result")
    root = claim_ok(board)
    assert [(c.title, c.state, c.result) for c in root.context.children] == [
        ("a", State.DONE, "first result" if first.task.title == "a" else "second result"),
        ("b", State.DONE, "second result" if first.task.title == "a" else "first result"),
    ]
    assert board.context(root.task) == root.context


def test_every_field_a_script_writes_is_a_task_field(seed: Any, clock: FakeClock) -> None:
    """swarm/task.py `Task` is the one list of a task hash's fields: whatever seed, split,
    inject, claim, fail, complete and the reaper write, it names (and decodes)."""
    board = seed(tasks=("a", "b"))
    first = claim_ok(board)
    board.split(first, "w1", [Subtask("x", "detail", ("t",)), Subtask("y")], reason="parts")
    board.inject("by hand", "person:ann", parent=first.task.id)
    board.fail(claim_ok(board), "w1", "no luck", tokens=1)
    board.claim("w2", lease_s=1)
    clock.advance(5)
    while (outcome := board.claim("w1")).claim is not None:
        board.complete(outcome.claim, "w1", "done", Confidence.HIGH, tokens=1)
    assert board.state() is SwarmState.DONE
    written: set[str] = set()
    for tid in ("0", *(str(i) for i in range(1, 6))):
        h = board.client.hgetall(board.keys.task(tid))
        written |= set(h)
        assert Task.from_hash(tid, h).state.terminal
    assert written <= set(FIELDS), written - set(FIELDS)
    assert {"pending", "injected_by", "score", "path", "fence", "reason"} <= written


def test_claim_reply_and_context_are_decoded_by_name(seed: Any) -> None:
    """Task fields come back whole by name: a claimed task decodes to what `board.task` reads
    from its hash; context entries carry the fields a prompt uses, and where they sit."""
    board = seed(tasks=("a", "b"))
    first = claim_ok(board)
    board.split(first, "w1", [Subtask("x", tags=("t1", "t2"))])
    board.complete(claim_ok(board), "w1", "sibling result", Confidence.LOW)
    child = claim_ok(board)
    assert child.task == board.task(child.task.id)
    assert child.task.path == ("0", first.task.id) and child.task.tags == ("t1", "t2")
    ancestry = child.context.ancestry
    assert [(t.id, t.depth, t.title) for t in ancestry] == [
        ("0", 0, "Test purpose"),
        (first.task.id, 1, first.task.title),
    ]
    siblings = child.context.siblings
    assert all(s.parent == child.task.parent and s.depth == child.task.depth for s in siblings)


def test_a_missing_meta_field_reads_as_the_purpose_default(seed: Any) -> None:
    """The scripts' fallbacks are the purpose defaults (swarm/purpose.py `settings`)."""
    board = seed(budgets=Budgets(max_children=2))
    board.client.hdel(board.keys.meta, "max_children")
    root = claim_ok(board)
    with pytest.raises(SplitRefused, match="between 1 and 5 subtasks"):
        board.split(root, "w1", [Subtask(f"t{i}") for i in range(Budgets().max_children + 1)])
    assert board.split(root, "w1", [Subtask("a"), Subtask("b"), Subtask("c")])


def test_reads_answer_by_name_in_one_round_trip(seed: Any) -> None:
    board = seed(tasks=("a", "b", "c"))
    reads = board.reads()
    reads.meta("meta", ("state", "tasks", "nothing"))
    reads.task(("0", "fields"), "0", ("title", "state", "absent"))
    reads.child_ids(("0", "some"), "0", 2)
    reads.child_ids(("0", "none"), "0", 0)  # not LRANGE 0 -1, which is the whole list
    reads.child_count(("0", "n"), "0")
    reads.open_score(("1", "score"), "1")
    reads.open_score(("0", "score"), "0")
    reads.hottest("hot", 2)
    r = reads.run()
    assert r["meta"] == {"state": "running", "tasks": "4", "nothing": None}
    assert r["0", "fields"] == {"title": "Test purpose", "state": "waiting"}
    assert (r["0", "some"], r["0", "none"], r["0", "n"]) == (["1", "2"], [], 3)
    assert isinstance(r["1", "score"], float) and r["0", "score"] is None
    assert len(r["hot"]) == 2 and all(isinstance(s, float) for _, s in r["hot"])
    assert board.reads().run() == {}
