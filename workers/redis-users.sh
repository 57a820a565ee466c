#!/bin/sh
# One Redis ACL user per role, written from the passwords in the environment (`.env`) into an
# ACL file, then (given a command) Redis started on that file:
#
#   redis-users.sh /data/users.acl [redis-server --aclfile /data/users.acl ...]
#
# Roles (see docs/compose.md, "Redis users"):
#   swarm-admin     REDIS_ADMIN_PASSWORD     everything: seeding, steering, ACL, `redis-cli`
#   swarm-worker    REDIS_WORKER_PASSWORD    the blackboard (swarm:*) and the exec queue (rq:*),
#                                            no dangerous commands (FLUSHALL, CONFIG, KEYS...)
#   swarm-executor  REDIS_EXECUTOR_PASSWORD  the exec queue (rq:*) only: code from the model
#                                            runs beside it, so it must not reach the blackboard
#   swarm-reader    REDIS_READER_PASSWORD    reads only: `swarm watch`, status, result
#   default         REDIS_ADMIN_PASSWORD     the admin again, and nobody else: a client that does
#                                            not log in can do nothing. Not `off`: Redis replays
#                                            its AOF as this user, and Redis 7.0 drops the writes
#                                            of every Lua script on replay when it may not run
#                                            them (the blackboard would come back empty).
#
# The file lives beside the data, so it survives restarts; it is rewritten at every start
# from `.env` (change a password there and restart Redis), and users that someone added with
# ACL SETUSER and saved with ACL SAVE are kept. Passwords are stored as SHA-256 hashes only.
set -eu

acl=${1:?usage: redis-users.sh ACLFILE [COMMAND...]}
shift

hash() {
    printf '%s' "$1" | sha256sum | cut -d' ' -f1
}

password() {  # the value of the variable named $1; an empty one stops Redis from starting
    eval "value=\${$1:-}"
    if [ -z "$value" ]; then
        echo "redis-users.sh: $1 is empty: set it in .env (see .env.example)" >&2
        exit 1
    fi
    hash "$value"
}

admin=$(password REDIS_ADMIN_PASSWORD)
worker=$(password REDIS_WORKER_PASSWORD)
executor=$(password REDIS_EXECUTOR_PASSWORD)
reader=$(password REDIS_READER_PASSWORD)

mkdir -p "$(dirname "$acl")"
tmp="$acl.new"
{
    if [ -f "$acl" ]; then
        grep -Ev '^user (default|swarm-admin|swarm-worker|swarm-executor|swarm-reader) ' "$acl" \
            || true
    fi
    echo "user default on #$admin ~* &* +@all"
    echo "user swarm-admin on #$admin ~* &* +@all"
    echo "user swarm-worker on #$worker resetkeys ~swarm:* ~rq:* resetchannels &rq:* +@all -@dangerous"
    echo "user swarm-executor on #$executor resetkeys ~rq:* resetchannels &rq:* +@all -@dangerous"
    echo "user swarm-reader on #$reader resetkeys %R~swarm:* %R~rq:* resetchannels -@all +@read +@connection -@dangerous"
} >"$tmp"
chmod 600 "$tmp"
mv "$tmp" "$acl"

[ "$#" -gt 0 ] || exit 0
# The official image's entrypoint drops root and hands /data to the redis user.
if command -v docker-entrypoint.sh >/dev/null 2>&1; then
    exec docker-entrypoint.sh "$@"
fi
exec "$@"
