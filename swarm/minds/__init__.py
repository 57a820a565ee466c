"""Minds: what a worker thinks with. `make_mind` turns a `--mind` spec into one."""

from __future__ import annotations

from swarm.minds.base import Mind, MindError, ScriptedMind

__all__ = ["Mind", "MindError", "MindSpecError", "ScriptedMind", "make_mind"]


class MindSpecError(ValueError):
    """A `--mind` spec that names no known mind or has bad options."""


def make_mind(spec: str | None, *, model: str | None = None, slots: int = 1) -> Mind:
    """Build a mind from its spec.

    - `sim:branch=3,depth=2,think=0.05,fail=0.1,seed=1,code=1` (tests and benchmarks)
    - `onnx` or `onnx:/path/to/model` (Phi-3 through ONNX Runtime GenAI; also chosen when
      only `--model` is given, and the default)
    - `openai:http://host:port/v1#model-name` (an OpenAI-compatible server)
    """
    kind, _, rest = (spec or "onnx").partition(":")
    if kind == "sim":
        from swarm.minds.sim import SimMind, parse_sim_spec

        try:
            return SimMind(parse_sim_spec(rest))
        except ValueError as exc:
            raise MindSpecError(str(exc)) from None
    if kind == "onnx":
        from swarm.minds.onnx import make_onnx_mind
        from swarm.models import find_model

        return make_onnx_mind(str(find_model(rest or model)), slots=slots)
    if kind == "openai":
        from swarm.minds.openai import make_openai_mind

        url, _, name = rest.partition("#")
        if not url:
            raise MindSpecError("openai mind: give the server, e.g. openai:http://127.0.0.1:8080/v1#phi3")
        return make_openai_mind(url, name or "default")
    raise MindSpecError(f"unknown mind {kind!r}: use sim:..., onnx[:MODEL_DIR] or openai:URL#MODEL")
