#!/usr/bin/env bash
# Set up everything the tests need on a fresh Debian machine, then run them.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# System parts: bubblewrap for the local sandbox, tmux for the live-view test, setpriv for the
# jail's unprivileged mode.
missing=()
command -v bwrap >/dev/null || missing+=(bubblewrap)
command -v tmux >/dev/null || missing+=(tmux)
command -v ps >/dev/null || missing+=(procps)
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
exec .venv/bin/python -m pytest -q "$@"
