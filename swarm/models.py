"""Model folders: pull Microsoft's Phi-3 ONNX builds, list and describe them, find the one to use.

An ORT GenAI model folder is a directory with a `genai_config.json` beside its ONNX files
and tokenizer. Pulled models live under `$SWARM_HOME/models/<name>/` (default
`~/.swarm/models`); a worker finds its model from `--model`, then `SWARM_MODEL`, then
that cache.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from swarm.config import USER_HOME, swarm_home

CONFIG_FILE = "genai_config.json"


class ModelError(RuntimeError):
    """A model folder cannot be used; the message says why in one line."""


class ModelNotFound(ModelError):
    """No model was given or found; the message says how to get one."""


@dataclass(frozen=True)
class Variant:
    """One published ORT GenAI build: a folder inside a Hugging Face repository."""

    repo: str
    folder: str
    about: str


PHI3_MINI_4K = "microsoft/Phi-3-mini-4k-instruct-onnx"
PHI3_MINI_128K = "microsoft/Phi-3-mini-128k-instruct-onnx"

VARIANTS: dict[str, Variant] = {
    "phi3-mini-4k-cpu": Variant(
        PHI3_MINI_4K,
        "cpu_and_mobile/cpu-int4-rtn-block-32-acc-level-4",
        "CPU int4, tuned for speed (about 2.7 GB)",
    ),
    "phi3-mini-4k-cpu-acc1": Variant(
        PHI3_MINI_4K,
        "cpu_and_mobile/cpu-int4-rtn-block-32",
        "CPU int4, tuned for accuracy (about 2.7 GB)",
    ),
    "phi3-mini-4k-cuda-int4": Variant(
        PHI3_MINI_4K, "cuda/cuda-int4-rtn-block-32", "NVIDIA GPU int4 (about 2.3 GB)"
    ),
    "phi3-mini-4k-cuda-fp16": Variant(
        PHI3_MINI_4K, "cuda/cuda-fp16", "NVIDIA GPU fp16 (about 7.6 GB)"
    ),
    "phi3-mini-4k-dml": Variant(
        PHI3_MINI_4K,
        "directml/directml-int4-awq-block-128",
        "DirectML int4, Windows GPUs (about 2.2 GB)",
    ),
    "phi3-mini-128k-cpu": Variant(
        PHI3_MINI_128K,
        "cpu_and_mobile/cpu-int4-rtn-block-32-acc-level-4",
        "CPU int4, 128k context (about 2.7 GB)",
    ),
}

DEFAULT_MODEL = "phi3-mini-4k-cpu"
# The build of Phi-3-mini each provider runs best (`swarm model pull --provider`).
FOR_PROVIDER = {
    "cpu": DEFAULT_MODEL,
    "cuda": "phi3-mini-4k-cuda-int4",
    "dml": "phi3-mini-4k-dml",
}


def models_home(env: Mapping[str, str] | None = None) -> Path:
    """Where pulled models live: `$SWARM_HOME/models`, by default `~/.swarm/models`."""
    return swarm_home(os.environ if env is None else env, USER_HOME) / "models"


# Where `swarm model pull` cannot run (a container whose models mount is read-only), the
# environment names the command that fills the mount instead, e.g. `docker compose run --rm
# model pull`.
PULL_COMMAND_ENV = "SWARM_PULL_COMMAND"


def _pull_command(env: Mapping[str, str]) -> str:
    return env.get(PULL_COMMAND_ENV) or "swarm model pull"


def _how_to_get_one(home: Path, env: Mapping[str, str]) -> str:
    return (
        f"run `{_pull_command(env)}` (downloads {DEFAULT_MODEL}, about 2.7 GB, into {home}), "
        "or pass --model DIR / set SWARM_MODEL=DIR to an ORT GenAI model folder "
        "(a tiny test model: python scripts/make_tiny_phi3.py --size tiny --out DIR)"
    )


def _nested_model(path: Path) -> Path | None:
    """The one model folder somewhere below `path` (a pull's download root), if exactly one."""
    # Two levels cover a pull's layout (<name>/<family>/<variant>) without walking a big tree.
    found = sorted(p.parent for pattern in ("*/", "*/*/") for p in path.glob(pattern + CONFIG_FILE))
    return found[0] if len(found) == 1 else None


def check_model_dir(path: str | Path) -> Path:
    """`path` as a usable model folder, or a ModelError saying what is wrong with it."""
    path = Path(path).expanduser()
    if not path.exists():
        raise ModelNotFound(f"model folder {path} does not exist")
    if not path.is_dir():
        raise ModelError(
            f"{path} is a file, not a model folder (expected a folder with {CONFIG_FILE})"
        )
    if (path / CONFIG_FILE).is_file():
        return path
    nested = _nested_model(path)
    if nested is not None:
        return nested
    raise ModelError(f"{path} is not an ORT GenAI model folder: it has no {CONFIG_FILE}")


def installed(home: Path) -> dict[str, Path]:
    """Pulled (or copied-in) models under `home`, by name."""
    if not home.is_dir():
        return {}
    models = {}
    for entry in sorted(home.iterdir()):
        # A dot folder is a pull still under way (see `pull`), not yet a model.
        if entry.is_dir() and not entry.name.startswith("."):
            folder = entry if (entry / CONFIG_FILE).is_file() else _nested_model(entry)
            if folder is not None:
                models[entry.name] = folder
    return models


def _resolve(value: str, home: Path) -> Path:
    """A folder path, or the name of a pulled model."""
    path = Path(value).expanduser()
    if not path.exists():
        pulled = installed(home).get(value)
        if pulled is not None:
            return pulled
    return check_model_dir(path)


def find_model(explicit: str | None = None, env: Mapping[str, str] | None = None) -> Path:
    """The model to use: `explicit` (--model), then SWARM_MODEL, then the cache."""
    env = os.environ if env is None else env
    home = models_home(env)
    for value, source in ((explicit, "--model"), (env.get("SWARM_MODEL"), "SWARM_MODEL")):
        if value:
            try:
                return _resolve(value, home)
            except ModelNotFound:
                if value in VARIANTS:
                    raise ModelNotFound(
                        f"{source}={value}: not pulled yet; run `{_pull_command(env)} {value}`"
                    ) from None
                raise ModelNotFound(
                    f"{source}={value}: no such model folder or pulled model; "
                    + _how_to_get_one(home, env)
                ) from None
    pulled = installed(home)
    if DEFAULT_MODEL in pulled:
        return pulled[DEFAULT_MODEL]
    if pulled:
        return next(iter(pulled.values()))
    raise ModelNotFound(f"no model found; {_how_to_get_one(home, env)}")


def pull(name: str = DEFAULT_MODEL, home: Path | None = None, *, progress: bool = True) -> Path:
    """Download a published variant into `home/<name>`; resumes a partial download."""
    variant = VARIANTS.get(name)
    if variant is None:
        raise ModelError(f"unknown model {name!r}; choose one of: {', '.join(VARIANTS)}")
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise ModelError(
            "downloading models needs huggingface_hub: pip install 'swarm-blackboard[onnx]'"
        ) from None
    home = home or models_home()
    target = home / name
    # A fresh pull downloads into a dot folder and renames it when complete, so a worker that
    # waits for a model never loads one half downloaded (the config arrives before the
    # weights). A target already there (an older pull) is completed in place.
    into = target if target.exists() else home / f".{name}.partial"
    # Without tqdm_class huggingface_hub draws its own progress bars; a silent pull passes
    # a bar class that draws nothing.
    extra: dict[str, Any] = {} if progress else {"tqdm_class": _silent_tqdm()}
    # snapshot_download skips files already complete in local_dir and resumes partial
    # ones, so re-running an interrupted pull continues it.
    try:
        snapshot_download(
            repo_id=variant.repo,
            allow_patterns=[f"{variant.folder}/*"],
            local_dir=into,
            **extra,
        )
    except Exception as exc:  # network, disk, hub errors: all end the pull the same way
        raise ModelError(
            f"downloading {name} failed ({type(exc).__name__}: {exc}); "
            "run the same command again to resume"
        ) from None
    if into != target:
        into.rename(target)
    return check_model_dir(target / variant.folder)


def _silent_tqdm() -> Any:
    from tqdm.auto import tqdm

    class Silent(tqdm):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)

    return Silent


@dataclass(frozen=True)
class ModelInfo:
    """What `swarm model info` prints about a model folder."""

    path: Path
    type: str
    layers: int
    hidden_size: int
    heads: int
    kv_heads: int
    context: int
    vocab: int
    providers: tuple[str, ...]
    size_bytes: int

    def lines(self) -> list[str]:
        return [
            f"path       {self.path}",
            f"type       {self.type}",
            f"layers     {self.layers} (hidden {self.hidden_size}, heads {self.heads}, "
            f"kv heads {self.kv_heads})",
            f"context    {self.context} tokens",
            f"vocab      {self.vocab}",
            f"providers  {', '.join(self.providers)}",
            f"size       {_size(self.size_bytes)}",
        ]


def _size(n: int) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB"


def _providers(session_options: dict[str, Any]) -> tuple[str, ...]:
    names: list[str] = []
    for entry in session_options.get("provider_options", []):
        if isinstance(entry, dict):
            names.extend(entry)
        else:
            names.append(str(entry))
    # An empty provider list means ONNX Runtime's default, the CPU.
    return tuple(names) or ("cpu",)


def model_info(path: str | Path) -> ModelInfo:
    """Read a model folder's genai_config.json; a ModelError if it is not a usable folder."""
    folder = check_model_dir(path)
    try:
        config = json.loads((folder / CONFIG_FILE).read_text())
        model = config["model"]
        decoder = model["decoder"]
        return ModelInfo(
            path=folder,
            type=str(model["type"]),
            layers=int(decoder["num_hidden_layers"]),
            hidden_size=int(decoder.get("hidden_size", 0)),
            heads=int(decoder.get("num_attention_heads", 0)),
            kv_heads=int(decoder.get("num_key_value_heads", 0)),
            context=int(model["context_length"]),
            vocab=int(model.get("vocab_size", 0)),
            providers=_providers(decoder.get("session_options", {})),
            size_bytes=sum(f.stat().st_size for f in folder.iterdir() if f.is_file()),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelError(
            f"{folder / CONFIG_FILE} is not a valid ORT GenAI config ({exc!r})"
        ) from None
