"""Pheromone math, forward-decayed in log space (DESIGN section 5).

The Lua scripts do the same arithmetic on the server; this mirror lets tests check them
and lets `swarm watch` turn a stored score into a current level without writing anything.
A stored score never needs rewriting as time passes, so nothing is ever swept.
"""

from __future__ import annotations

import math


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


def score_of(amount: float, t_s: float, lam: float) -> float:
    """The stored score of a fresh deposit of `amount` made `t_s` seconds after the epoch."""
    return math.log(amount) + lam * t_s


def level(score: float, t_s: float, lam: float) -> float:
    """The pheromone a stored score stands for at `t_s` seconds after the epoch."""
    return math.exp(score - lam * t_s)


def deposit(score: float, amount: float, t_s: float, lam: float) -> float:
    """The stored score after depositing `amount` at `t_s`."""
    return logaddexp(score, score_of(amount, t_s, lam))


def lowered(score: float, rho_fail: float) -> float:
    """The stored score of a failed or reaped task put back in the open set."""
    return score + math.log(rho_fail)
