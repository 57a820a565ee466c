"""The onnx mind on the tiny random-weight Phi-3: the real ORT GenAI path, guidance included.

The model writes gibberish; what must hold is that every answer parses as an allowed
action, the token limit never crashes a step, and the purpose stays in the KV cache.
"""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import pytest
from conftest_models import tiny_model  # noqa: F401  (a fixture)

from swarm.minds import onnx, prompts
from swarm.minds.base import Mind, MindError
from swarm.minds.onnx import OnnxMind, guided_schema, make_onnx_mind, tight_limits
from swarm.models import ModelError, ModelNotFound
from swarm.protocol import (
    ActionKind,
    Answer,
    Code,
    ExecOutput,
    Execution,
    Limits,
    Split,
    ThinkRequest,
    parse_action,
)
from swarm.task import Kind, State, Task

A, S, C = ActionKind.ANSWER, ActionKind.SPLIT, ActionKind.CODE
# Small bounds keep a random model's strings short, so steps finish on the first attempt.
SHORT = Limits(max_title=20, max_detail=20, max_answer=40, max_reason=20, max_code=40, max_tags=1)
ROOT = Task(
    id="0", parent="", depth=0, kind=Kind.WORK, title="Estimate the apples", detail="All of them."
)
PURPOSE = "Find out how many apples grow in the orchard each year."


def request(allowed: set[ActionKind], limits: Limits = SHORT, **kw: object) -> ThinkRequest:
    return ThinkRequest(
        purpose=str(kw.pop("purpose", PURPOSE)),
        task=kw.pop("task", ROOT),  # type: ignore[arg-type]
        allowed=frozenset(allowed),
        limits=limits,
        **kw,  # type: ignore[arg-type]
    )


@pytest.fixture(scope="module")
def mind(tiny_model: Path) -> OnnxMind:  # noqa: F811
    return make_onnx_mind(tiny_model, max_new_tokens=256)


def test_it_is_a_mind(mind: OnnxMind) -> None:
    assert isinstance(mind, Mind)
    assert mind.name == "onnx"


@pytest.mark.parametrize(
    ("allowed", "kinds"),
    [
        ({A}, {Answer}),
        ({S}, {Split}),
        ({C}, {Code}),
        ({A, S}, {Answer, Split}),
        ({A, C}, {Answer, Code}),
        ({A, S, C}, {Answer, Split, Code}),
    ],
)
def test_every_step_yields_an_allowed_action(
    mind: OnnxMind, allowed: set[ActionKind], kinds: set[type]
) -> None:
    thought = mind.think(request(allowed))
    assert type(thought.action) in kinds
    assert parse_action(thought.raw, frozenset(allowed), SHORT) == thought.action
    assert thought.tokens > 0


def test_a_synthesis_step_with_children_siblings_and_code_runs(mind: OnnxMind) -> None:
    child = Task(id="0.1", parent="0", depth=1, kind=Kind.WORK, title="North field")
    done = [
        Task(id="0.1.1", parent="0.1", depth=2, kind=Kind.WORK, title="Row A", state=State.DONE,
             result="About 400.", confidence="medium"),
        Task(id="0.1.2", parent="0.1", depth=2, kind=Kind.WORK, title="Row B", state=State.DEAD,
             reason="lease lost"),
    ]  # fmt: skip
    synth = Task(id="0.1", parent="0", depth=1, kind=Kind.SYNTHESIZE, title="North field")
    run = Execution("print(400 + 350)", ExecOutput(stdout="750\n"))
    thought = mind.think(
        request({A}, task=synth, ancestry=(ROOT,), siblings=(child,), children=tuple(done),
                executions=(run,))
    )  # fmt: skip
    assert isinstance(thought.action, Answer)


def test_the_purpose_stays_in_the_kv_cache(tiny_model: Path) -> None:  # noqa: F811
    mind = make_onnx_mind(tiny_model, max_new_tokens=256)
    mind.think(request({A}))
    runtime = mind._runtime
    purpose = len(runtime.encode(runtime.chat(prompts.system_prompt(PURPOSE, ""))[0]))
    assert mind.last.prefilled_tokens == mind.last.prompt_tokens > purpose
    pears = Task(id="1", parent="", depth=0, kind=Kind.WORK, title="Count the pears", detail="")
    mind.think(request({A}, task=pears))
    # The second step computed only its own task's tokens; the purpose came from the cache.
    assert mind.last.prompt_tokens - mind.last.prefilled_tokens == purpose
    assert mind.last.retries == 0
    # Another purpose is prefilled once, then cached in turn.
    mind.think(request({A}, purpose="Count the pears instead."))
    assert mind.last.prefilled_tokens == mind.last.prompt_tokens
    mind.think(request({A}, purpose="Count the pears instead.", task=pears))
    assert mind.last.prefilled_tokens < mind.last.prompt_tokens


def copy_with_template(tiny: Path, into: Path, template: str | None) -> Path:
    shutil.copytree(tiny, into)
    if template is None:
        (into / "chat_template.jinja").unlink()
    else:
        (into / "chat_template.jinja").write_text(template)
    return into


def test_a_folder_without_a_chat_template_gets_phi3s(tiny_model: Path, tmp_path: Path) -> None:  # noqa: F811
    mind = make_onnx_mind(copy_with_template(tiny_model, tmp_path / "m", None))
    assert mind._runtime.chat("SYS") == (
        "<|system|>\nSYS<|end|>\n<|user|>\n",
        "<|end|>\n<|assistant|>\n",
    )
    assert isinstance(mind.think(request({A})).action, Answer)


def test_a_template_without_system_turns_puts_the_purpose_first_in_the_user_turn(
    tiny_model: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    user_only = (
        "{% for m in messages %}{% if m['role'] == 'user' %}"
        "{{ '<|user|>\n' + m['content'] + '<|end|>\n' }}{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
    )
    mind = make_onnx_mind(copy_with_template(tiny_model, tmp_path / "m", user_only))
    assert mind._runtime.chat("SYS") == ("<|user|>\nSYS\n\n", "<|end|>\n<|assistant|>\n")
    mind.think(request({A}))
    mind.think(request({A}, task=Task(id="1", parent="", depth=0, kind=Kind.WORK, title="Pears")))
    assert mind.last.prefilled_tokens < mind.last.prompt_tokens  # the purpose is still cached


def test_a_step_over_the_token_limit_is_retried_within_tight_bounds(tiny_model: Path) -> None:  # noqa: F811
    mind = make_onnx_mind(tiny_model, max_new_tokens=128)
    wide = Limits()  # 2000-character answers cannot fit in 128 tokens
    thought = mind.think(request({A, S, C}, limits=wide))
    assert mind.last.retries == 1
    assert parse_action(thought.raw, frozenset({A, S, C}), wide) == thought.action
    # Both attempts are charged: two prompts and two generations.
    assert thought.tokens == mind.last.prompt_tokens + mind.last.generated_tokens


def test_a_retry_that_still_runs_over_fails_the_step_with_a_reason(
    tiny_model: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    mind = make_onnx_mind(tiny_model, max_new_tokens=128)
    monkeypatch.setattr(onnx, "tight_limits", lambda limits, budget: limits)
    with pytest.raises(MindError, match="did not fit in 128 tokens"):
        mind.think(request({A}, limits=Limits()))
    assert mind.usage.retries == 1


def test_tight_bounds_hold_any_ascii_answer_in_the_budget() -> None:
    for budget in (128, 256, 512, 2048):
        tight = tight_limits(Limits(), budget)
        kids = tight.max_children
        # Bytes of the longest JSON each action can take; a token is at least one byte.
        worst = max(
            len('{"action":"answer","answer":"","confidence":"medium"}') + 2 * tight.max_answer,
            len('{"action":"code","code":"","why":""}') + 2 * (tight.max_code + tight.max_reason),
            len('{"action":"split","subtasks":[],"reason":""}')
            + kids * len('{"title":"","detail":"","tags":[]},')
            + 2 * (kids * (tight.max_title + tight.max_detail) + tight.max_reason),
        )
        assert worst + 1 <= budget, (budget, tight)
    with pytest.raises(ValueError, match="cannot hold"):
        tight_limits(Limits(), 60)


def test_guidance_schema_is_compact_and_tight_strings_are_ascii() -> None:
    assert json.loads(guided_schema(SHORT))["x-guidance"] == {"whitespace_flexible": False}
    strings: list[dict[str, object]] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if node.get("type") == "string":
                strings.append(node)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(json.loads(guided_schema(SHORT, tight=True)))
    assert len(strings) == 7  # answer; title, detail, tag, reason; code, why
    assert {s["pattern"] for s in strings} == {"^[\\t\\n -~]*$"}


def test_slots_share_the_mind_safely(mind: OnnxMind) -> None:
    results: list[object] = []

    def work(allowed: set[ActionKind]) -> None:
        results.append(mind.think(request(allowed)).action)

    threads = [threading.Thread(target=work, args=(k,)) for k in ({A}, {S}, {C}, {A, S, C})]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4
    assert mind.tokens_per_s > 0


def test_a_closed_mind_refuses_to_think(tiny_model: Path) -> None:  # noqa: F811
    mind = make_onnx_mind(tiny_model)
    mind.close()
    with pytest.raises(MindError, match="closed"):
        mind.think(request({A}))


def test_a_missing_folder_is_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFound, match=r"model folder .*nope does not exist"):
        make_onnx_mind(tmp_path / "nope")


def test_a_folder_that_is_not_a_model_is_one_clear_line(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("hi")
    with pytest.raises(
        ModelError, match=r"is not an ORT GenAI model folder: it has no genai_config\.json"
    ):
        make_onnx_mind(tmp_path)


def test_a_broken_config_is_one_clear_line(tmp_path: Path) -> None:
    (tmp_path / "genai_config.json").write_text("{}")
    with pytest.raises(ModelError, match="cannot read the model config"):
        make_onnx_mind(tmp_path)


def test_an_unknown_provider_is_one_clear_line(tiny_model: Path) -> None:  # noqa: F811
    with pytest.raises(ModelError, match="unknown provider 'tpu'; choose one of: cpu, cuda, dml"):
        make_onnx_mind(tiny_model, provider="tpu")


def test_a_provider_this_install_lacks_is_one_clear_line(tiny_model: Path) -> None:  # noqa: F811
    ort = pytest.importorskip("onnxruntime")
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this install has CUDA")
    with pytest.raises(ModelError, match=r"'cuda' is not available .* install onnxruntime-gpu"):
        make_onnx_mind(tiny_model, provider="cuda")


def test_threads_and_context_are_checked(tiny_model: Path) -> None:  # noqa: F811
    assert make_onnx_mind(tiny_model, threads=1, context=1024).context == 1024
    with pytest.raises(ModelError, match="threads must be at least 1"):
        make_onnx_mind(tiny_model, threads=0)
    with pytest.raises(ModelError, match="too small"):
        make_onnx_mind(tiny_model, context=300, max_new_tokens=256)
    with pytest.raises(ModelError, match="max_new_tokens must be at least 128"):
        make_onnx_mind(tiny_model, max_new_tokens=100)
