"""What a model-backed mind reads: the system prompt (purpose and protocol) and the task prompt.

The system prompt depends only on the purpose, so a mind can keep its tokens in the KV
cache across every task of a swarm; everything that changes per step (the task, its
context, the actions allowed now) is in the task prompt. Both are fitted to the model's
context window by cutting the least important text first, always with a visible marker.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from swarm.protocol import ActionKind, Execution, Limits, ThinkRequest
from swarm.task import Task

Counter = Callable[[str], int]

SYSTEM = """\
You are one worker in a swarm of identical workers that together serve the purpose below. \
Nobody coordinates the swarm: you are given one task at a time from a shared board, and what \
you post is what the other workers build on.

# Purpose{title}
{purpose}

# How to reply
Reply with exactly one JSON object and nothing else. It is one of these actions; each step \
says which of them are allowed:
- answer: {{"action":"answer","answer":"...","confidence":"low|medium|high"}}
  Solve the task yourself. Be complete but brief, say what you are unsure of, and choose the \
confidence honestly: it decides how much the swarm trusts your answer.
- split: {{"action":"split","subtasks":[{{"title":"...","detail":"...","tags":["..."]}}],\
"reason":"..."}}
  Break a task that is too big for one answer into smaller, independent subtasks. Another \
worker sees only a subtask's title, detail and where it comes from, so make each one \
self-contained. When they are all finished, one worker combines their results.
- code: {{"action":"code","code":"...","why":"..."}}
  Run a short Python program in a sandbox when computing or checking beats guessing. You \
will see what it printed, then answer or run code again.
Prefer answering; split only when the task clearly has separate parts."""

_MARKER = "…[{n} characters trimmed]…"


def system_prompt(purpose: str, title: str = "") -> str:
    """The purpose and the protocol in plain words; the same for every task of a swarm."""
    return SYSTEM.format(purpose=purpose.strip(), title=f": {title}" if title else "")


def _step_rules(allowed: frozenset[ActionKind], limits: Limits) -> str:
    rules = []
    if ActionKind.ANSWER in allowed:
        rules.append("answer")
    if ActionKind.SPLIT in allowed:
        rules.append(f"split (at most {limits.max_children} subtasks)")
    if ActionKind.CODE in allowed:
        rules.append("code")
    return f"Allowed at this step: {', '.join(rules)}. Reply with one JSON object."


def _result_line(task: Task) -> str:
    if task.result:
        confidence = f", confidence {task.confidence}" if task.confidence else ""
        return f"{task.title} [{task.state.value}{confidence}]: {task.result}"
    reason = f": {task.reason}" if task.reason else ""
    return f"{task.title} [{task.state.value}, no result{reason}]"


def _execution_block(number: int, run: Execution) -> str:
    out = run.output
    parts = [f"## Run {number}", "```python", run.code, "```"]
    if out.stdout:
        parts += ["stdout:", out.stdout]
    if out.stderr:
        parts += ["stderr:", out.stderr]
    parts.append(f"error: {out.error}" if out.error else "It finished without error.")
    return "\n".join(parts)


@dataclass
class _Block:
    """One piece of the task prompt; lower `keep` is trimmed first, down to `floor` characters."""

    text: str
    keep: int
    floor: int = 0


def _blocks(request: ThinkRequest) -> list[_Block]:
    task = request.task
    blocks = [_Block(f"# Your task\n{task.title}", keep=9, floor=10**9)]
    if task.detail:
        blocks.append(_Block(task.detail, keep=8, floor=200))
    if request.ancestry:
        lines = ["# Where it comes from (outermost first)"]
        lines += [
            f"{i}. {t.title}" + (f": {t.detail}" if t.detail else "")
            for i, t in enumerate(request.ancestry, 1)
        ]
        blocks.append(_Block("\n".join(lines), keep=5, floor=100))
    if request.siblings:
        lines = ["# What sibling tasks already found"]
        lines += [f"- {_result_line(t)}" for t in request.siblings]
        blocks.append(_Block("\n".join(lines), keep=3))
    if request.children:
        lines = [
            "# Results of its subtasks",
            "Combine them into one answer to your task; say what is missing where one failed.",
        ]
        lines += [f"{i}. {_result_line(t)}" for i, t in enumerate(request.children, 1)]
        blocks.append(_Block("\n".join(lines), keep=7, floor=200))
    if task.feedback:
        # The root's answer failed the purpose's check and came back: the mind must see why.
        lines = [
            "# Your previous answer failed its check",
            f"The answer was: {task.result}" if task.result else "",
            f"The checker said: {task.feedback}",
            "Give a corrected answer to the whole task.",
        ]
        blocks.append(_Block("\n".join(line for line in lines if line), keep=8, floor=300))
    for i, run in enumerate(request.executions, 1):
        # Older runs matter less than the latest one, which the next step reacts to.
        blocks.append(_Block(_execution_block(i, run), keep=4 + (i == len(request.executions))))
    blocks.append(
        _Block("# Now\n" + _step_rules(request.allowed, request.limits), keep=10, floor=10**9)
    )
    return blocks


def trim_middle(text: str, keep: int) -> str:
    """`text` cut to about `keep` characters by removing its middle, with a visible marker."""
    if len(text) <= keep:
        return text
    marker_len = len(_MARKER.format(n=len(text)))
    body = max(keep - marker_len, 0)
    head, tail = body - body // 3, body // 3
    removed = len(text) - head - tail
    return text[:head] + _MARKER.format(n=removed) + (text[len(text) - tail :] if tail else "")


def fit_text(text: str, budget: int, count: Counter) -> str:
    """`text` trimmed in the middle until `count` says it fits in `budget` tokens."""
    tokens = count(text)
    while tokens > budget and text:
        # Cut in proportion to the overflow, a little more so the loop ends in a few rounds.
        keep = int(len(text) * budget / tokens * 0.95)
        cut = trim_middle(text, keep) if keep > 0 else ""
        # A budget below the cut marker's own size leaves only the marker, every round.
        text = cut if len(cut) < len(text) else ""
        tokens = count(text)
    return text


def task_prompt(
    request: ThinkRequest, budget: int | None = None, count: Counter | None = None
) -> str:
    """The step's prompt; with a budget and a counter, trimmed to fit, least important first."""
    blocks = _blocks(request)

    def render() -> str:
        return "\n\n".join(b.text for b in blocks if b.text)

    if budget is None or count is None:
        return render()
    text = render()
    overflow = count(text) - budget
    for block in sorted((b for b in blocks if b.floor < 10**9), key=lambda b: b.keep):
        if overflow <= 0:
            break
        original = block.text
        block.text = fit_text(original, max(count(original) - overflow, 0), count)
        if len(block.text) < block.floor < len(original):
            block.text = trim_middle(original, block.floor)
        text = render()
        overflow = count(text) - budget
    # Still over (huge title or a tiny window): the whole prompt is cut, visibly.
    return fit_text(text, budget, count) if overflow > 0 else text


def messages(
    request: ThinkRequest, budget: int | None = None, count: Counter | None = None
) -> list[dict[str, str]]:
    """The chat messages of one step: the system prompt, then the task prompt."""
    return [
        {"role": "system", "content": system_prompt(request.purpose, request.purpose_title)},
        {"role": "user", "content": task_prompt(request, budget, count)},
    ]
