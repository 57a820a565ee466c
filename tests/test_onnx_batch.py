"""The onnx mind's slots on the tiny random-weight Phi-3: decoded as one batch, each with its
own guidance and its own row of KV cache, interruptible.

The model writes gibberish, but deterministically (greedy), so a step's text must not
depend on which row it ran in or what ran beside it.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from conftest_models import tiny_model  # noqa: F401  (a fixture)

from swarm.minds import prompts
from swarm.minds.base import Interrupted, MindError
from swarm.minds.batched import _CHUNK_MAX, _CHUNK_MIN, BatchedMind, chunk_size, make_batched_mind
from swarm.protocol import ActionKind, Answer, Code, Limits, Split, ThinkRequest, Thought
from swarm.task import Kind, Task

A, S, C = ActionKind.ANSWER, ActionKind.SPLIT, ActionKind.CODE
SHORT = Limits(max_title=20, max_detail=20, max_answer=40, max_reason=20, max_code=40, max_tags=1)
LONG = Limits(max_title=20, max_detail=20, max_answer=300, max_reason=20, max_code=40, max_tags=1)
HUGE = Limits(max_title=20, max_detail=20, max_answer=1500, max_reason=20, max_code=40, max_tags=1)
PURPOSE = "Find out how many apples grow in the orchard each year."


def request(
    allowed: set[ActionKind], n: int = 0, limits: Limits = SHORT, purpose: str = PURPOSE
) -> ThinkRequest:
    task = Task(id=str(n), parent="", depth=0, kind=Kind.WORK, title=f"Field {n}", detail="All.")
    return ThinkRequest(purpose=purpose, task=task, allowed=frozenset(allowed), limits=limits)


def together(mind: BatchedMind, requests: list[ThinkRequest]) -> list[Thought]:
    """Think about every request at once, one thread each; the thoughts in request order."""
    out: list[Thought | BaseException | None] = [None] * len(requests)

    def run(i: int) -> None:
        try:
            out[i] = mind.think(requests[i])
        except BaseException as exc:
            out[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(requests))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for o in out:
        if isinstance(o, BaseException):
            raise o
    return [o for o in out if isinstance(o, Thought)]


def test_slots_decode_in_one_batch_and_write_what_one_slot_writes(tiny_model: Path) -> None:  # noqa: F811
    alone = make_batched_mind(tiny_model, max_new_tokens=256)
    steps = [request({A}, 1), request({S}, 2), request({C}, 3), request({A, S, C}, 4)]
    expected = [alone.think(r).raw for r in steps]
    alone.close()

    mind = make_batched_mind(tiny_model, max_new_tokens=256, slots=4)
    thoughts = together(mind, steps)
    decoder = mind._batcher.decoder
    assert decoder.rows_stepped / decoder.steps > 1.5  # rows decoded together, not in turn
    assert [t.raw for t in thoughts] == expected
    # Each slot kept its own guidance: only its allowed actions.
    assert isinstance(thoughts[0].action, Answer)
    assert isinstance(thoughts[1].action, Split)
    assert isinstance(thoughts[2].action, Code)
    mind.close()


def test_a_slot_that_finishes_starts_its_next_step_while_the_others_write(tiny_model: Path) -> None:  # noqa: F811
    mind = make_batched_mind(tiny_model, max_new_tokens=1024, slots=2)
    batcher = mind._batcher
    calls: list[frozenset[int]] = []  # the jobs each decode call wrote for
    step = batcher.decoder.step

    def spy(rows: list[int], tokens: list[int]) -> object:
        calls.append(frozenset(id(batcher._jobs[r]) for r in rows))
        return step(rows, tokens)

    batcher.decoder.step = spy  # type: ignore[method-assign]
    threads = [
        threading.Thread(target=mind.think, args=(request({A}, 0, HUGE),)),
        threading.Thread(target=lambda: [mind.think(request({A}, n)) for n in (1, 2, 3)]),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # The long step's job wrote beside several short ones in turn: each short one joined
    # the batch when the one before it ended, without waiting for the long one.
    long_job = max({j for c in calls for j in c}, key=lambda j: sum(j in c for c in calls))
    companions = {j for c in calls if long_job in c for j in c} - {long_job}
    assert len(companions) >= 2, len(companions)
    mind.close()


def test_a_row_takes_the_purpose_from_another_row_instead_of_reading_it(tiny_model: Path) -> None:  # noqa: F811
    mind = make_batched_mind(tiny_model, max_new_tokens=256, slots=2)
    runtime = mind._runtime
    purpose = len(runtime.encode(runtime.chat(prompts.system_prompt(PURPOSE, ""))[0]))
    mind.think(request({A}, 1))
    assert mind.last.prefilled_tokens == mind.last.prompt_tokens  # cold
    # Two at once: one reuses its row, the other copies the purpose from it.
    before = mind.usage.prompt_tokens - mind.usage.prefilled_tokens
    together(mind, [request({A}, 2), request({A}, 3)])
    assert mind.usage.prompt_tokens - mind.usage.prefilled_tokens - before == 2 * purpose
    # A second purpose goes to a row of its own; the first one is still cached elsewhere.
    mind.think(request({A}, 4, purpose="Count the pears instead."))
    assert mind.last.prefilled_tokens == mind.last.prompt_tokens
    mind.think(request({A}, 5))
    assert mind.last.prefilled_tokens < mind.last.prompt_tokens
    mind.close()


def test_interrupt_ends_every_step_in_progress_and_later(tiny_model: Path) -> None:  # noqa: F811
    mind = make_batched_mind(tiny_model, max_new_tokens=1024, slots=2)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            mind.think(request({A}, 0, HUGE))
        except MindError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]  # one waits for a row
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while mind._batcher.decoder.steps < 5 and time.monotonic() < deadline:
        time.sleep(0.001)  # both rows are writing
    started = time.perf_counter()
    mind.interrupt()
    for t in threads:
        t.join(timeout=10)
    assert time.perf_counter() - started < 2
    assert len(errors) == 3 and all(isinstance(e, Interrupted) for e in errors), errors
    with pytest.raises(Interrupted):
        mind.think(request({A}))
    mind.close()


def test_a_closed_mind_fails_its_waiting_steps(tiny_model: Path) -> None:  # noqa: F811
    mind = make_batched_mind(tiny_model, slots=1)
    mind.close()
    with pytest.raises(MindError, match="closed"):
        mind.think(request({A}))


def test_the_memory_plan_is_the_model_and_a_kv_row_per_slot(tiny_model: Path) -> None:  # noqa: F811
    mind = make_batched_mind(tiny_model, slots=3, context=1024)
    plan = mind.memory
    # tiny: 2 layers, 4 KV heads of 16, float32 keys and values
    assert plan.kv_bytes_per_token == 2 * 2 * 4 * 16 * 4
    assert plan.slot_bytes == plan.kv_bytes_per_token * 1024
    assert plan.total_bytes == plan.model_bytes + 3 * plan.slot_bytes
    assert plan.model_bytes > 0  # what loading added to the process, measured
    assert "3 slot(s)" in plan.describe()
    mind.close()


def test_a_purpose_that_fills_most_of_the_context_ends_the_answer_at_the_rows_end(
    tiny_model: Path,  # noqa: F811
) -> None:
    mind = make_batched_mind(tiny_model, max_new_tokens=256, context=512)
    long_purpose = " ".join(f"Apples of orchard {i} must be counted." for i in range(200))
    # The purpose takes half the context, the system prompt more: less than 256 tokens
    # are left, and the step fails with a reason instead of running off the row.
    try:
        mind.think(request({A}, purpose=long_purpose, limits=LONG))
    except MindError as exc:
        assert "did not fit" in str(exc) or "fill the whole context" in str(exc), exc
    assert mind.usage.generated_tokens <= 512
    assert max(mind._batcher.decoder.lengths) <= 512
    mind.close()


def test_a_prompt_read_alone_is_read_in_the_largest_chunks() -> None:
    # Paced chunks only while other rows write (their next token waits for the chunk);
    # reading alone, small chunks would only add calls (each reads all the weights).
    assert chunk_size(40, others_writing=True) == 40
    assert chunk_size(1, others_writing=True) == _CHUNK_MIN
    assert chunk_size(10_000, others_writing=True) == _CHUNK_MAX
    assert chunk_size(40, others_writing=False) == _CHUNK_MAX


def test_a_slot_reading_alone_reads_its_prompt_in_one_call_per_chunk_max(tiny_model: Path) -> None:  # noqa: F811
    mind = make_batched_mind(tiny_model, max_new_tokens=256, slots=2)
    batcher = mind._batcher
    batcher._chunk = 1  # as if reading were slow: paced chunks would be _CHUNK_MIN tokens
    sizes: list[int] = []
    prefill = batcher.decoder.prefill

    def spy(row: int, ids: list[int]) -> object:
        sizes.append(len(ids))
        batcher._chunk = 1
        return prefill(row, ids)

    batcher.decoder.prefill = spy  # type: ignore[method-assign]
    mind.think(request({A}, 1))
    # The purpose (a long system prompt) in full chunks and its rest, then the task.
    task = sizes[-1]
    purpose = mind.last.prompt_tokens - task
    assert purpose > _CHUNK_MAX and task > _CHUNK_MIN, sizes
    full, rest = divmod(purpose, _CHUNK_MAX)
    assert sizes == [_CHUNK_MAX] * full + [rest] * (rest > 0) + [task]
    mind.close()
