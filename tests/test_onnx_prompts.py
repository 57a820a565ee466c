"""The prompts model-backed minds read: what they carry, and how they are fitted to a window."""

from __future__ import annotations

import re

from swarm.minds import prompts
from swarm.protocol import ActionKind, ExecOutput, Execution, Limits, ThinkRequest
from swarm.task import Kind, State, Task

A, S, C = ActionKind.ANSWER, ActionKind.SPLIT, ActionKind.CODE
ROOT = Task(
    id="0", parent="", depth=0, kind=Kind.WORK, title="Plan a garden", detail="Half an acre."
)
TASK = Task(
    id="0.2", parent="0", depth=1, kind=Kind.WORK, title="Choose the trees", detail="Fruit."
)
SIBLING = Task(
    id="0.1", parent="0", depth=1, kind=Kind.WORK, title="Soil", state=State.DONE,
    result="Clay, pH 6.5.", confidence="high",
)  # fmt: skip


def words(text: str) -> int:
    """A stand-in token counter: one token per word or punctuation mark."""
    return len(re.findall(r"\w+|[^\w\s]", text))


def step(**kw: object) -> ThinkRequest:
    base: dict[str, object] = {
        "purpose": "Design a small orchard.",
        "task": TASK,
        "allowed": frozenset({A, S, C}),
        "ancestry": (ROOT,),
        "siblings": (SIBLING,),
    }
    return ThinkRequest(**{**base, **kw})  # type: ignore[arg-type]


def test_the_system_prompt_is_the_purpose_and_the_protocol() -> None:
    text = prompts.system_prompt("Design a small orchard.", "Orchard")
    assert "# Purpose: Orchard\nDesign a small orchard." in text
    for action in ('{"action":"answer"', '{"action":"split"', '{"action":"code"'):
        assert action in text
    # Nothing step-specific: the same for every task, so its KV cache can be reused.
    assert text == prompts.messages(step(purpose_title="Orchard"))[0]["content"]


def test_the_task_prompt_carries_task_ancestry_siblings_and_the_allowed_actions() -> None:
    text = prompts.task_prompt(step(limits=Limits(max_children=4)))
    assert "# Your task\nChoose the trees\n\nFruit." in text
    assert "1. Plan a garden: Half an acre." in text
    assert "- Soil [done, confidence high]: Clay, pH 6.5." in text
    assert text.endswith(
        "Allowed at this step: answer, split (at most 4 subtasks), code. "
        "Reply with one JSON object."
    )


def test_a_synthesis_prompt_lists_the_children_and_what_failed() -> None:
    kids = (
        Task(id="0.2.1", parent="0.2", depth=2, kind=Kind.WORK, title="Apples", state=State.DONE,
             result="Two trees.", confidence="medium"),
        Task(id="0.2.2", parent="0.2", depth=2, kind=Kind.WORK, title="Pears", state=State.DEAD,
             reason="three attempts failed"),
    )  # fmt: skip
    text = prompts.task_prompt(step(allowed=frozenset({A}), children=kids))
    assert "Combine them into one answer" in text
    assert "1. Apples [done, confidence medium]: Two trees." in text
    assert "2. Pears [dead, no result: three attempts failed]" in text
    assert "Allowed at this step: answer." in text


def test_earlier_code_runs_are_shown_with_their_output() -> None:
    runs = (
        Execution("print(1/0)", ExecOutput(stderr="ZeroDivisionError", error="exit status 1")),
        Execution("print(6*7)", ExecOutput(stdout="42\n")),
    )
    text = prompts.task_prompt(step(executions=runs))
    assert (
        "## Run 1\n```python\nprint(1/0)\n```\nstderr:\nZeroDivisionError\nerror: exit status 1"
        in text
    )
    assert "## Run 2\n```python\nprint(6*7)\n```\nstdout:\n42\n" in text


def test_a_prompt_over_budget_is_trimmed_least_important_first_with_a_marker() -> None:
    siblings = tuple(
        Task(id=f"0.{i}", parent="0", depth=1, kind=Kind.WORK, title=f"Sibling {i}",
             state=State.DONE, result="finding " * 200)
        for i in range(3, 8)
    )  # fmt: skip
    full = prompts.task_prompt(step(siblings=siblings))
    budget = words(full) // 3
    text = prompts.task_prompt(step(siblings=siblings), budget, words)
    assert words(text) <= budget
    assert "characters trimmed]" in text  # never silently
    # The task and the rules survive; the siblings' findings were cut first.
    assert "# Your task\nChoose the trees\n\nFruit." in text
    assert "1. Plan a garden: Half an acre." in text
    assert text.endswith("Reply with one JSON object.")


def test_a_prompt_that_cannot_fit_is_still_cut_visibly() -> None:
    huge = Task(id="0.2", parent="0", depth=1, kind=Kind.WORK, title="word " * 500)
    text = prompts.task_prompt(step(task=huge), 100, words)
    assert words(text) <= 100
    assert "characters trimmed]" in text


def test_a_prompt_within_budget_is_unchanged() -> None:
    full = prompts.task_prompt(step())
    assert prompts.task_prompt(step(), words(full), words) == full


def test_trim_middle_keeps_both_ends() -> None:
    text = "A" * 100 + "B" * 100
    cut = prompts.trim_middle(text, 80)
    assert cut.startswith("AAAA") and cut.endswith("BBBB")
    assert "…[" in cut and len(cut) <= 80
    assert prompts.trim_middle("short", 80) == "short"


def test_fit_text_meets_the_budget() -> None:
    text = " ".join(f"w{i}" for i in range(1000))
    fitted = prompts.fit_text(text, 50, words)
    assert words(fitted) <= 50
    assert fitted.startswith("w0 w1")


def test_fit_text_ends_when_the_budget_is_below_the_cut_markers_size() -> None:
    # Counting characters, a budget of 3 is smaller than the marker itself: the old loop cut
    # the text to the marker alone and went round forever.
    assert prompts.fit_text("water " * 400, 3, len) == ""
    assert prompts.fit_text("water " * 400, 0, len) == ""
