"""Pheromone math, forward-decayed in log space (docs/architecture.md section 5).

The Lua scripts do the same arithmetic on the server; this mirror lets tests check them
and lets `swarm watch` turn a stored score into a current level without writing anything.
A stored score never needs rewriting as time passes, so nothing is ever swept.
"""

from __future__ import annotations

import math

# The most pheromone a task may hold. Deposits are capped here (on the server too, in
# swarm/lua/_lib.lua), so no number of boosts makes a level, a claim weight or a sum of
# levels overflow a double; it is also the largest single boost.
MAX_LEVEL = 1e12
LOG_MAX_LEVEL = math.log(MAX_LEVEL)


def decay_rate(half_life_s: float) -> float:
    """lambda = ln 2 / H, per second."""
    if half_life_s <= 0:
        raise ValueError("half-life must be positive")
    return math.log(2) / half_life_s


def logaddexp(a: float, b: float) -> float:
    """ln(e^a + e^b) without overflow."""
    m = max(a, b)
    if m == -math.inf:
        return m
    return m + math.log(math.exp(a - m) + math.exp(b - m))


def level(score: float, t_s: float, lam: float) -> float:
    """The pheromone a stored score stands for at `t_s` seconds after the epoch.

    A score read back from Redis is untrusted: one written past the cap (or +inf) reads as
    MAX_LEVEL, and anything that is not a number (NaN from a bad decay rate) as none.
    """
    exponent = score - lam * t_s
    if math.isnan(exponent):
        return 0.0
    return math.exp(min(exponent, LOG_MAX_LEVEL))


def lowered(score: float, rho_fail: float) -> float:
    """The stored score of a failed or reaped task put back in the open set."""
    return score + math.log(rho_fail)
