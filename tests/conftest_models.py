"""The random-weight Phi-3s that model tests run on, built once and cached in .models/.

`tiny` is what every model test uses; `small` (768 wide, 12 layers, Phi-3's vocabulary)
is for the one test that needs a prefill slow enough to outlast a lease.

Import the `tiny_model` fixture into a test module (`from conftest_models import tiny_model`)
or register this module as a plugin. The first session builds it (seconds; needs the
`tiny-model` extra); later sessions reuse it while the build recipe is unchanged.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "make_tiny_phi3.py"


def make_tiny_phi3() -> ModuleType:
    """scripts/make_tiny_phi3.py as a module (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location("make_tiny_phi3", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def model_dir(size: str, env: str) -> Path:
    """Build (or reuse) a model, in $env if set; skip when the builder's packages are missing."""
    pytest.importorskip("onnxruntime_genai")
    out = Path(os.environ.get(env, ROOT / ".models" / size))
    script = make_tiny_phi3()
    if not script.is_built(out, size):
        for package in ("torch", "transformers", "tokenizers", "onnx"):
            pytest.importorskip(
                package, reason="building the model needs swarm-blackboard[tiny-model]"
            )
    return Path(script.build(size, out))


def tiny_model_dir() -> Path:
    return model_dir("tiny", "SWARM_TEST_MODEL_DIR")


@pytest.fixture(scope="session")
def tiny_model() -> Path:
    return tiny_model_dir()


@pytest.fixture(scope="session")
def small_model() -> Path:
    return model_dir("small", "SWARM_TEST_SMALL_MODEL_DIR")
