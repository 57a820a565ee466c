"""Which RQ jobs the executor admits: `execute` with its JSON arguments, and nothing RQ acts on.

Anyone who can write to the exec Redis can write a job hash. RQ reads far more from that hash
than a function name: webhooks (HTTP requests from the executor host, to any address, with a
traceback in the body), success/failure/stopped callbacks, dependencies, retries, repeats,
rate limits, groups, and TTLs (a result kept forever). `refusal` checks the raw hash before RQ
parses any of it, so a job carrying anything beyond what `swarm.sandbox.client` writes is
dropped unrun and unanswered, and nothing in it is ever acted on.
"""

from __future__ import annotations

import json
import math
import re
import zlib
from collections.abc import Mapping
from typing import Any

from swarm.sandbox.client import EXECUTE

MAX_DATA_BYTES = 1 << 20  # the decompressed call; a zlib bomb stops here, not in RAM
_MAX_FIELD_BYTES = 256  # every field but data, exc_info and result is a short word or number
_CONTROL = re.compile(rb"[\x00-\x1f\x7f]")

# What RQ writes on its own while a job runs (status, timestamps, the worker, the error);
# inert: nothing in RQ acts on their values beyond storing and showing them.
_LIFECYCLE = frozenset(
    {
        "status", "created_at", "enqueued_at", "started_at", "ended_at", "last_heartbeat",
        "worker_name", "origin", "description", "exc_info", "result",
    }
)  # fmt: skip
# What RQ acts on when present and non-empty; the client writes some of them empty.
_MUST_BE_EMPTY = frozenset(
    {
        "success_callback_name", "failure_callback_name", "stopped_callback_name",
        "success_callback_timeout", "failure_callback_timeout", "stopped_callback_timeout",
        "webhooks", "dependency_id", "dependency_ids", "allow_dependency_failures",
        "retries_left", "retry_intervals", "number_of_retries", "enqueue_at_front_on_retry",
        "repeats_left", "repeat_intervals", "rate_limit_key", "rate_limit_concurrency",
        "group_id", "enqueue_at_front",
    }
)  # fmt: skip
# Numbers RQ acts on, and the range the client stays in (a TTL of -1 would keep a record forever).
_BOUNDED = {"timeout": (1, 86_400), "result_ttl": (0, 86_400), "failure_ttl": (0, 86_400),
            "ttl": (1, 86_400)}  # fmt: skip
_KNOWN = _LIFECYCLE | _MUST_BE_EMPTY | set(_BOUNDED) | {"data", "meta"}


def fields_of(raw: Mapping[Any, Any]) -> dict[str, bytes]:
    """A raw job hash with str names and bytes values, whichever way the client decodes."""
    fields: dict[str, bytes] = {}
    for key, value in raw.items():
        name = key.decode("utf-8", "replace") if isinstance(key, bytes) else str(key)
        fields[name] = value if isinstance(value, bytes) else str(value).encode()
    return fields


def _call_refusal(data: bytes) -> str:
    """The job's call must be exactly [EXECUTE, None, [code, timeout_s], {}], JSON, as the
    client writes it; `execute` itself answers a malformed code or timeout with an error."""
    inflate = zlib.decompressobj()
    try:
        call = inflate.decompress(data, MAX_DATA_BYTES + 1)
    except zlib.error:
        return "its data is not zlib-compressed JSON"
    if len(call) > MAX_DATA_BYTES or inflate.unconsumed_tail:
        return f"its call is over {MAX_DATA_BYTES} bytes"
    try:
        decoded = json.loads(call)
    except (ValueError, RecursionError):
        return "its data is not JSON"
    if not (isinstance(decoded, list) and len(decoded) == 4):
        return "its data is not a (function, instance, args, kwargs) call"
    func, instance, args, kwargs = decoded
    if func != EXECUTE or instance is not None:
        return f"it calls {str(func)[:80]!r}, not {EXECUTE}"
    if kwargs != {} or not isinstance(args, list) or len(args) != 2:
        return "its arguments are not (code, timeout_s)"
    return ""


def _number_refusal(name: str, value: bytes) -> str:
    low, high = _BOUNDED[name]
    try:
        number = float(value)
    except ValueError:
        return f"its {name} is not a number"
    if not math.isfinite(number) or number != int(number) or not low <= number <= high:
        return f"its {name} is outside {low}..{high}"
    return ""


def refusal(raw: Mapping[Any, Any]) -> str:
    """Why this raw job hash (HGETALL) must not run; empty when it is a plain exec job."""
    fields = fields_of(raw)
    if "data" not in fields:
        return "it has no call"
    for name, value in sorted(fields.items()):
        if name not in _KNOWN:
            return f"it carries an unknown field {name[:40]!r}"
        if name in _MUST_BE_EMPTY and value:
            return f"it carries {name}"
        if name == "meta" and value not in (b"", b"{}"):
            return "it carries meta"
        if name in _BOUNDED and value and (reason := _number_refusal(name, value)):
            return reason
        if name in ("data", "exc_info", "result"):
            if len(value) > MAX_DATA_BYTES:
                return f"its {name} is over {MAX_DATA_BYTES} bytes"
        elif len(value) > _MAX_FIELD_BYTES:
            return f"its {name} is over {_MAX_FIELD_BYTES} bytes"
        elif _CONTROL.search(value):  # RQ logs the description; a terminal must not obey it
            return f"its {name} holds control characters"
    return _call_refusal(fields["data"])
