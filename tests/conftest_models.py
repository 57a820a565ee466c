"""The tiny random-weight Phi-3 that model tests run on, built once and cached in .models/tiny.

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


def tiny_model_dir() -> Path:
    """Build (or reuse) the tiny model; skip the test when the builder's packages are missing."""
    pytest.importorskip("onnxruntime_genai")
    out = Path(os.environ.get("SWARM_TEST_MODEL_DIR", ROOT / ".models" / "tiny"))
    script = make_tiny_phi3()
    if not script.is_built(out, "tiny"):
        for package in ("torch", "transformers", "tokenizers", "onnx"):
            pytest.importorskip(
                package, reason="building the tiny model needs swarm-blackboard[tiny-model]"
            )
    return Path(script.build("tiny", out))


@pytest.fixture(scope="session")
def tiny_model() -> Path:
    return tiny_model_dir()
