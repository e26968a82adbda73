"""Retry delays, shared by the sessions and the drain process (which must not import the
CometD client to get it)."""

from __future__ import annotations

import random


def backoff(attempt: int, base: float, cap: float) -> float:
    """Capped exponential backoff with full jitter."""
    return random.uniform(0, min(cap, base * 2**attempt))
