"""Provider choice and feature probing (swarm.minds.runtime) on the real runtime and tiny model.

The degradation tests hide one feature of the real onnxruntime_genai module behind a thin
wrapper (the way an older or differently built runtime lacks it) and run the real mind.
"""

from __future__ import annotations

import json
import logging
import sys
import types
from pathlib import Path
from typing import Any

import pytest
from conftest_models import tiny_model  # noqa: F401  (a fixture)

from swarm.minds import runtime
from swarm.minds.base import MindError
from swarm.minds.onnx import make_onnx_mind
from swarm.models import ModelError
from swarm.protocol import ActionKind, Limits, ThinkRequest, parse_action
from swarm.task import Kind, Task

SHORT = Limits(max_title=20, max_detail=20, max_answer=40, max_reason=20, max_code=40, max_tags=1)
ROOT = Task(id="0", parent="", depth=0, kind=Kind.WORK, title="Count", detail="The apples.")


def request(allowed: frozenset[ActionKind] = frozenset(ActionKind)) -> ThinkRequest:
    return ThinkRequest(purpose="Count apples.", task=ROOT, allowed=allowed, limits=SHORT)


# -- choosing a provider -----------------------------------------------------------------


def test_auto_takes_the_provider_the_model_was_built_for_when_the_runtime_has_it() -> None:
    assert runtime.choose_provider("auto", ("dml", "cpu"), ("dml",)) == "dml"
    assert runtime.choose_provider("auto", ("cuda", "dml", "cpu"), ("dml",)) == "dml"


def test_auto_takes_the_best_available_otherwise() -> None:
    assert runtime.choose_provider("auto", ("cuda", "cpu"), ()) == "cuda"
    assert runtime.choose_provider("auto", ("dml", "cpu"), ("cuda",)) == "dml"
    assert runtime.choose_provider("auto", ("cpu",), ("dml",)) == "cpu"


@pytest.mark.parametrize(
    ("asked", "hint"), [("dml", "swarm-blackboard[directml]"), ("cuda", "swarm-blackboard[cuda]")]
)
def test_a_provider_the_runtime_lacks_is_one_line_naming_what_to_install(
    asked: str, hint: str
) -> None:
    with pytest.raises(ModelError) as caught:
        runtime.choose_provider(asked, ("cpu",), ())
    message = str(caught.value)
    assert "\n" not in message
    assert f"provider {asked!r} is not available" in message and "(it has: cpu)" in message
    assert hint in message


def test_dml_on_this_machine_is_one_clear_line(tiny_model: Path) -> None:  # noqa: F811
    og = pytest.importorskip("onnxruntime_genai")
    if "dml" in runtime.available_providers(og):
        pytest.skip("this install has DirectML")
    hint = r"^provider 'dml' is not available .*swarm-blackboard\[directml\]"
    with pytest.raises(ModelError, match=hint):
        make_onnx_mind(tiny_model, provider="dml")


def test_the_installed_runtime_reports_cpu_and_auto_runs_on_it(tiny_model: Path) -> None:  # noqa: F811
    og = pytest.importorskip("onnxruntime_genai")
    available = runtime.available_providers(og)
    assert available[-1] == "cpu"
    mind = make_onnx_mind(tiny_model, provider="auto")
    assert mind._runtime.provider == available[0]


def test_a_probe_that_raises_means_not_available() -> None:
    def broken() -> bool:
        raise RuntimeError("no driver")

    fake = types.SimpleNamespace(is_cuda_available=broken, is_dml_available=lambda: True)
    assert runtime.available_providers(fake) == ("dml", "cpu")
    assert runtime.available_providers(types.SimpleNamespace()) == ("cpu",)


def test_a_models_own_providers_are_read_from_its_config(tmp_path: Path) -> None:
    options = {"provider_options": [{"dml": {}}, {"tpu": {}}]}
    config = {"model": {"decoder": {"session_options": options}}}
    (tmp_path / "genai_config.json").write_text(json.dumps(config))
    assert runtime.model_providers(tmp_path) == ("dml",)
    (tmp_path / "genai_config.json").write_text("{not json")
    assert runtime.model_providers(tmp_path) == ()


# -- features: probed, and the mind degrades without them -------------------------------


def _without(og: Any, generator: tuple[str, ...] = (), params: tuple[str, ...] = ()) -> Any:
    """The real module, but its Generator/GeneratorParams lack the named methods."""

    def wrap(real: Any, hidden: tuple[str, ...]) -> Any:
        class Wrapped:
            def __init__(self, *args: Any) -> None:
                self._real = real(*args)

            def __getattr__(self, name: str) -> Any:
                if name in hidden:
                    raise AttributeError(name)
                return getattr(self._real, name)

        return Wrapped

    names = {n: getattr(og, n) for n in dir(og) if not n.startswith("__")}
    names["Generator"] = wrap(og.Generator, generator)
    names["GeneratorParams"] = wrap(og.GeneratorParams, params)

    # Generator(model, params) must get the real params object back.
    real_generator = names["Generator"]

    class Generator(real_generator):  # type: ignore[misc,valid-type]
        def __init__(self, model: Any, params: Any) -> None:
            super().__init__(model, getattr(params, "_real", params))

    names["Generator"] = Generator
    return types.SimpleNamespace(**names)


def test_the_installed_runtime_has_every_feature(tiny_model: Path) -> None:  # noqa: F811
    mind = make_onnx_mind(tiny_model)
    assert mind._runtime.features == runtime.Features()


def test_without_rewind_the_purpose_is_prefilled_again_and_steps_still_post(
    tiny_model: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    og = pytest.importorskip("onnxruntime_genai")
    monkeypatch.setattr(runtime, "import_og", lambda: _without(og, generator=("rewind_to",)))
    with caplog.at_level(logging.WARNING, logger="swarm.minds.runtime"):
        mind = make_onnx_mind(tiny_model, max_new_tokens=256)
    assert mind._runtime.features == runtime.Features(rewind=False)
    assert "lacks rewind" in caplog.text
    for _ in range(3):
        thought = mind.think(request())
        parse_action(thought.raw, frozenset(ActionKind), SHORT)
        # Nothing came from the cache: every prompt token was computed again.
        assert mind.last.prefilled_tokens == mind.last.prompt_tokens
    mind.close()


def test_without_logit_access_the_action_is_not_steered_but_steps_post(
    tiny_model: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    og = pytest.importorskip("onnxruntime_genai")
    hidden = ("get_logits", "set_logits")
    monkeypatch.setattr(runtime, "import_og", lambda: _without(og, generator=hidden))
    mind = make_onnx_mind(tiny_model, max_new_tokens=256)
    assert mind._runtime.features == runtime.Features(logits=False)
    for _ in range(3):
        try:
            mind.think(request(frozenset({ActionKind.ANSWER})))
        except MindError as exc:  # a disallowed action is a failed step, never a crash
            assert "did not validate" in str(exc) or "did not fit" in str(exc)
    mind.close()


def test_without_guidance_a_step_ends_in_an_action_or_a_mind_error(
    tiny_model: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    og = pytest.importorskip("onnxruntime_genai")
    monkeypatch.setattr(runtime, "import_og", lambda: _without(og, params=("set_guidance",)))
    mind = make_onnx_mind(tiny_model, max_new_tokens=128)
    assert mind._runtime.features == runtime.Features(guidance=False)
    # A random model unguided writes no JSON: the step fails with a reason the worker posts.
    with pytest.raises(MindError):
        mind.think(request())
    mind.close()


def test_no_runtime_installed_is_one_line(
    tiny_model: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime_genai", None)  # import fails
    with pytest.raises(ModelError, match=r"^the onnx mind needs onnxruntime-genai: .*directml"):
        make_onnx_mind(tiny_model)
