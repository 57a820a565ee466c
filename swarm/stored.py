"""Numbers read back from Redis. Anything stored there may have been written by anyone, so a
value that is not a finite number (absent, text, 'inf', 'nan', '1e999') reads as the
caller's default instead of failing a frame, an export or a scrape."""

from __future__ import annotations

import math
from typing import Any


def number(value: Any, default: float = 0.0) -> float:
    """`value` as a finite float, else `default`."""
    try:
        found = float(value)
    except (TypeError, ValueError):
        return default
    return found if math.isfinite(found) else default


def integer(value: Any, default: int = 0) -> int:
    """`value` as an int (a float's whole part), else `default`."""
    found = number(value, math.nan)
    return default if math.isnan(found) else int(found)
