#!/bin/sh
# Runs the container's command, first pulling a model when SWARM_PULL names one
# (`swarm model list` shows the names) into $SWARM_HOME/models, which must then be writable.
# Containers that start together share that folder: one downloads under a lock while the
# others wait, and a marker written after a complete download lets later starts skip it
# (an interrupted download is resumed by the next start).
set -eu

if [ -n "${SWARM_PULL:-}" ]; then
    models="${SWARM_HOME:-$HOME/.swarm}/models"
    done_marker="$models/.$SWARM_PULL.pulled"
    if [ ! -e "$done_marker" ]; then
        mkdir -p "$models"
        flock "$models/.pull.lock" sh -c \
            '[ -e "$2" ] || { swarm model pull "$1" && touch "$2"; }' pull "$SWARM_PULL" "$done_marker"
    fi
    # A worker given no --model and no SWARM_MODEL uses the pulled one.
    export SWARM_MODEL="${SWARM_MODEL:-$SWARM_PULL}"
fi

exec "$@"
