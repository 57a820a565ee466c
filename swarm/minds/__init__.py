"""Minds: what a worker thinks with. `make_mind` turns a `--mind` spec into one."""

from __future__ import annotations

import time
from collections.abc import Callable

from swarm.minds.base import Interrupted, Mind, MindError, ScriptedMind

__all__ = [
    "Interrupted",
    "Mind",
    "MindError",
    "MindSpecError",
    "ScriptedMind",
    "make_mind",
    "make_mind_waiting",
]

MODEL_POLL_S = 5.0


class MindSpecError(ValueError):
    """A `--mind` spec that names no known mind or has bad options."""


def make_mind(spec: str | None, *, model: str | None = None, slots: int = 1) -> Mind:
    """Build a mind from its spec.

    - `sim:branch=3,depth=2,think=0.05,fail=0.1,seed=1,code=1` (tests and benchmarks)
    - `onnx` or `onnx:/path/to/model?engine=auto&provider=auto&threads=4&max_new_tokens=512`
      (Phi-3 through ONNX Runtime; the default; `engine`: see `_batched`; provider is dml,
      cuda, cpu or auto, the best the installed runtime has; `context=N`: the KV cache per
      slot; `chunk_s=1.0` (genai engine): about how long one call into the model may take,
      which a renewal or a stop may have to wait out)
    - `openai:http://host:port/v1#model-name` (an OpenAI-compatible server)
    - `scripted:answers=PATH,accuracy=0.7,fix=1,split=3,tokens=10,seed=N` (evaluations:
      known right and wrong answers at a known accuracy; swarm/minds/scripted.py)
    """
    kind, _, rest = (spec or "onnx").partition(":")
    if kind == "scripted":
        from swarm.minds.scripted import ScriptedMind as KnownAnswers
        from swarm.minds.scripted import parse_scripted_spec

        try:
            return KnownAnswers(parse_scripted_spec(rest))
        except ValueError as exc:
            raise MindSpecError(str(exc)) from None
    if kind == "sim":
        from swarm.minds.sim import SimMind, parse_sim_spec

        try:
            return SimMind(parse_sim_spec(rest))
        except ValueError as exc:
            raise MindSpecError(str(exc)) from None
    if kind == "onnx":
        from swarm.models import find_model

        path, _, query = rest.partition("?")
        opts = _onnx_options(query)
        folder = str(find_model(path or model))
        provider = str(opts.get("provider", "auto"))
        threads = _int_or_none(opts.get("threads"))
        context = _int_or_none(opts.get("context"))
        engine = str(opts.get("engine", "auto"))
        if _batched(engine, provider, folder):
            from swarm.minds.batched import make_batched_mind
            from swarm.minds.onnx import DEFAULT_MAX_NEW_TOKENS

            return make_batched_mind(
                folder,
                slots=slots,
                threads=threads,
                max_new_tokens=int(opts.get("max_new_tokens", DEFAULT_MAX_NEW_TOKENS)),
                context=context,
            )
        from swarm.minds.onnx import CHUNK_S, DEFAULT_MAX_NEW_TOKENS, make_onnx_mind

        return make_onnx_mind(
            folder,
            slots=slots,
            provider=provider,
            threads=threads,
            max_new_tokens=int(opts.get("max_new_tokens", DEFAULT_MAX_NEW_TOKENS)),
            context=context,
            chunk_s=float(opts.get("chunk_s", CHUNK_S)),
        )
    if kind == "openai":
        from swarm.minds.openai import make_openai_mind

        url, _, name = rest.partition("#")
        if not url:
            raise MindSpecError(
                "openai mind: give the server, e.g. openai:http://127.0.0.1:8080/v1#phi3"
            )
        return make_openai_mind(url, name or "default")
    raise MindSpecError(
        f"unknown mind {kind!r}: use sim:..., onnx[:MODEL_DIR], openai:URL#MODEL or scripted:..."
    )


def make_mind_waiting(
    spec: str | None,
    *,
    model: str | None = None,
    slots: int = 1,
    say: Callable[[str], None],
    sleep: Callable[[float], None] = time.sleep,
    poll_s: float = MODEL_POLL_S,
) -> Mind:
    """`make_mind`, but a model that is not there yet is waited for instead of an error: a
    worker container started before its model was pulled starts by itself once it is, rather
    than exiting into a restart loop. `say` gets one message when the wait begins."""
    from swarm.models import ModelNotFound

    waited = False
    while True:
        try:
            mind = make_mind(spec, model=model, slots=slots)
        except ModelNotFound as exc:
            if not waited:
                say(f"{exc}; waiting for it (looking again every {poll_s:g} s)")
                waited = True
            sleep(poll_s)
            continue
        if waited:
            say("the model is there now; starting")
        return mind


ENGINES = ("auto", "batch", "genai")

_ONNX_OPTIONS: dict[str, type] = {
    "engine": str,
    "provider": str,
    "threads": int,
    "max_new_tokens": int,
    "context": int,
    "chunk_s": float,
}


def _batched(engine: str, provider: str, folder: str) -> bool:
    """Which engine runs an onnx mind. `batch` (swarm.minds.batched): slots decoded together
    through ONNX Runtime, on the CPU. `genai` (swarm.minds.onnx): ORT GenAI's own generator,
    slots taking turns; what GPUs (CUDA, DirectML, WinML) and the 0.13/0.14 runtimes run on.
    `auto`: batch where the CPU is the provider and its packages are installed, else genai."""
    if engine not in ENGINES:
        known = ", ".join(ENGINES)
        raise MindSpecError(f"onnx mind: engine must be one of {known}, not {engine!r}")
    if engine != "auto":
        return engine == "batch"
    if provider not in ("auto", "cpu"):
        return False
    import importlib.util

    if not all(importlib.util.find_spec(m) for m in ("onnxruntime", "llguidance")):
        return False
    if provider == "cpu":
        return True
    from pathlib import Path

    from swarm.minds import runtime

    try:
        og = runtime.import_og()
    except Exception:  # the genai engine then says what is missing, in one line
        return False
    available = runtime.available_providers(og)
    built_for = runtime.model_providers(Path(folder))
    return runtime.choose_provider("auto", available, built_for) == "cpu"


def _onnx_options(query: str) -> dict[str, str | int | float]:
    """`provider=cuda&threads=4` -> keyword arguments of make_onnx_mind, checked."""
    options: dict[str, str | int | float] = {}
    for part in filter(None, query.split("&")):
        name, _, raw = part.partition("=")
        kind = _ONNX_OPTIONS.get(name)
        if kind is None:
            known = ", ".join(_ONNX_OPTIONS)
            raise MindSpecError(f"onnx mind: unknown option {name!r} (known: {known})")
        try:
            options[name] = kind(raw)
        except ValueError:
            raise MindSpecError(f"onnx mind: {name} must be a number, got {raw!r}") from None
    return options


def _int_or_none(value: str | int | float | None) -> int | None:
    return None if value is None else int(value)
