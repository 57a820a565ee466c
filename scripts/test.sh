#!/usr/bin/env bash
# Set up everything the tests need on a fresh Debian machine, then run them.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# System parts: bubblewrap for the local sandbox, tmux for the live-view test, setpriv for the
# jail's unprivileged mode, chromium and its driver for the dashboard's browser test (Debian's:
# no browser download at test time).
missing=()
command -v bwrap >/dev/null || missing+=(bubblewrap)
command -v tmux >/dev/null || missing+=(tmux)
command -v ps >/dev/null || missing+=(procps)
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
command -v setpriv >/dev/null || missing+=(util-linux)  # runs the jail as an unprivileged uid
if [ ${#missing[@]} -gt 0 ]; then
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi

make -s dev

# The tests talk to a real Redis on 6379; start one that keeps nothing on disk if none answers.
if ! .venv/bin/python -c "import redis; redis.Redis(socket_connect_timeout=1).ping()" 2>/dev/null; then
  if command -v redis-server >/dev/null; then
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
  fi  # else tests/conftest.py falls back to an embedded Valkey
fi

.venv/bin/ruff check swarm tests scripts
.venv/bin/mypy swarm
# Workers run on Windows too: everything but the Linux-only jail type-checks for win32.
portable=$(find swarm -name '*.py' ! -name local.py ! -name _launcher.py)
# shellcheck disable=SC2086
.venv/bin/mypy --platform win32 --follow-imports=silent --cache-dir .mypy_cache/win32 $portable
.venv/bin/python -m pytest -q "$@"
[ $# -eq 0 ] || exit 0  # a chosen subset: the main runtime only

# DirectML ships onnxruntime-genai 0.13/0.14, everything else 0.18: the onnx mind and the
# tiny-model swarm also run under 0.14.1, in a venv of their own (the tiny model is built
# by the main venv, which has torch).
OLD_ORT=0.14.1
OLD_VENV=.venv-ort014
if [ ! -f "$OLD_VENV/.ready-$OLD_ORT" ]; then
  rm -rf "$OLD_VENV"
  "${PY:-python3}" -m venv "$OLD_VENV"
  "$OLD_VENV/bin/pip" install -q --upgrade pip
  "$OLD_VENV/bin/pip" install -q -e . "onnxruntime-genai==$OLD_ORT" "huggingface_hub>=0.24" \
    pytest pytest-timeout hypothesis "fakeredis[lua]"
  touch "$OLD_VENV/.ready-$OLD_ORT"
fi
model=${SWARM_TEST_MODEL_DIR:-.models/tiny}
.venv/bin/python scripts/make_tiny_phi3.py --size tiny --out "$model"
SWARM_TEST_MODEL_DIR=$model exec "$OLD_VENV/bin/python" -m pytest -q -p no:cacheprovider \
  tests/test_onnx_mind.py tests/test_onnx_runtime.py tests/test_onnx_swarm.py
