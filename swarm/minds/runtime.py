"""What the installed onnxruntime-genai can do: its providers and features, probed once.

The runtime ships as several packages that all install the module `onnxruntime_genai`:
`onnxruntime-genai` (CPU, 0.18), `-cuda` (0.18), `-winml` (0.18) and `-directml` (0.13/0.14,
in sustained engineering). One code path serves them all by asking the loaded module and
model what they can do, never by reading a version number: a build may lack a feature its
version has (guidance is a compile-time option), and a later release may add one back.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from swarm.models import ModelError

log = logging.getLogger("swarm.minds.runtime")

PROVIDERS = ("cpu", "cuda", "dml")
CHOICES = (*PROVIDERS, "auto")
# `auto` takes the first of these the runtime reports available, unless the model folder
# names its own provider (a DirectML build runs best, or only, on DirectML).
AUTO_ORDER = ("cuda", "dml", "cpu")
# The runtime's probe for each provider; CPU is always there.
_PROBES = {"cuda": "is_cuda_available", "dml": "is_dml_available"}
# What to install for a provider this runtime lacks (`swarm-blackboard` is the distribution).
INSTALL = {
    "cpu": "pip install 'swarm-blackboard[onnx]'",
    "cuda": (
        "install onnxruntime-genai-cuda: pip install 'swarm-blackboard[cuda]' "
        "(Linux or Windows, NVIDIA)"
    ),
    "dml": (
        "install onnxruntime-genai-directml or -winml: pip install 'swarm-blackboard[directml]' "
        "or 'swarm-blackboard[winml]' (Windows only)"
    ),
}


@dataclass(frozen=True)
class Features:
    """What the loaded runtime offers; each flag found by trying it, not by version."""

    guidance: bool = True  # GeneratorParams.set_guidance takes a JSON schema
    rewind: bool = True  # Generator.rewind_to keeps the purpose's KV cache between steps
    logits: bool = True  # get_logits/set_logits, for steering the action's name

    def missing(self) -> list[str]:
        return [name for name, ok in vars(self).items() if not ok]


def import_og() -> Any:
    try:
        import onnxruntime_genai as og
    except ImportError:
        raise ModelError(
            "the onnx mind needs onnxruntime-genai: pip install 'swarm-blackboard[onnx]' "
            "(or swarm-blackboard[directml], swarm-blackboard[winml], swarm-blackboard[cuda])"
        ) from None
    return og


def available_providers(og: Any) -> tuple[str, ...]:
    """The providers this runtime build reports usable here, best first."""
    found = []
    for name in AUTO_ORDER:
        probe = _PROBES.get(name)
        if probe is None or _true(getattr(og, probe, None)):
            found.append(name)
    return tuple(found)


def _true(fn: Callable[[], Any] | None) -> bool:
    if fn is None:  # a build without the probe has no such provider either
        return False
    try:
        return bool(fn())
    except Exception:  # a probe that cannot load its driver means: not here
        return False


def model_providers(folder: Path) -> tuple[str, ...]:
    """The providers a model folder's genai_config.json was built for (none: any)."""
    try:
        config = json.loads((folder / "genai_config.json").read_text())
        options = config["model"]["decoder"].get("session_options", {})
        entries = options.get("provider_options", [])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return ()
    names: list[str] = []
    for entry in entries if isinstance(entries, list) else []:
        names.extend(entry if isinstance(entry, Mapping) else [str(entry)])
    return tuple(n for n in names if n in PROVIDERS)


def choose_provider(requested: str, available: tuple[str, ...], built_for: tuple[str, ...]) -> str:
    """The provider to run on; a one-line ModelError when `requested` cannot be had."""
    if requested not in CHOICES:
        raise ModelError(f"unknown provider {requested!r}; choose one of: {', '.join(CHOICES)}")
    if requested == "auto":
        chosen = next(n for n in (*built_for, *AUTO_ORDER, "cpu") if n in (*available, "cpu"))
        if built_for and chosen not in built_for:
            log.warning(
                "the model was built for %s, which this onnxruntime-genai lacks; running on %s",
                ", ".join(built_for),
                chosen,
            )
        return chosen
    if requested not in available:
        raise ModelError(
            f"provider {requested!r} is not available in the installed onnxruntime-genai "
            f"(it has: {', '.join(available)}); {INSTALL[requested]}"
        )
    return requested


def probe_features(og: Any, model: Any, token: int) -> Features:
    """Try each optional feature once on a tiny generation; warn about what is missing."""
    guidance = _works(lambda: _params(og, model).set_guidance("json_schema", '{"type":"object"}'))
    generator = og.Generator(model, _params(og, model))
    generator.append_tokens([token, token])
    logits = _works(lambda: generator.set_logits(generator.get_logits()))
    rewind = _works(lambda: _rewind(generator))
    features = Features(guidance=guidance, rewind=rewind, logits=logits)
    for name in features.missing():
        log.warning("onnxruntime-genai here lacks %s: %s", name, _DEGRADED[name])
    return features


_DEGRADED = {
    "guidance": "answers are not constrained to the action schema, so more steps fail to parse",
    "rewind": "the purpose is prefilled again for every step (slower, same answers)",
    "logits": "the action's name is not steered to the allowed ones; a disallowed one fails",
}


def _params(og: Any, model: Any, max_length: int = 4) -> Any:
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=max_length)
    return params


def _rewind(generator: Any) -> None:
    generator.rewind_to(1)
    if int(generator.token_count()) != 1:
        raise RuntimeError("rewind_to left the sequence unchanged")


def _works(fn: Callable[[], Any]) -> bool:
    try:
        fn()
    except Exception:  # AttributeError (no such call) or the build's RuntimeError
        return False
    return True
