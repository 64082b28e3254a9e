"""Token-bucket rate limits: per terminal on identify and redeem, per member on code issuing.

Buckets live in the process: with ``--workers N`` (or N machines) a client can reach at most
N times the configured rate, which still keeps a 63-bit code out of reach of guessing. Memory
is bounded: idle buckets (full again) are dropped when the table grows.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from .errors import RateLimited

MAX_BUCKETS = 50_000


class TokenBucketLimiter:
    """``rate`` tokens per second, at most ``burst`` saved up, one bucket per key."""

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        what: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.rate = rate
        self.burst = float(burst)
        self.what = what
        self._clock = clock
        # key → [tokens, last refill time]: updated in place, one dict look-up per hit.
        self._buckets: dict[str, list[float]] = {}

    def hit(self, key: str) -> None:
        """Take one token for ``key``, or raise ``RateLimited`` with the wait in seconds."""
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= MAX_BUCKETS:
                self._prune(now)
            bucket = self._buckets[key] = [self.burst, now]
        tokens = bucket[0] + (now - bucket[1]) * self.rate
        if tokens > self.burst:
            tokens = self.burst
        bucket[1] = now
        if tokens < 1.0:
            bucket[0] = tokens
            retry_after = (1.0 - tokens) / self.rate
            raise RateLimited(
                f"too many {self.what}; retry in {retry_after:.1f} s", retry_after=retry_after
            )
        bucket[0] = tokens - 1.0

    def _prune(self, now: float) -> None:
        full_after = self.burst / self.rate
        self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < full_after}
        if len(self._buckets) >= MAX_BUCKETS:  # all busy: forget the oldest half
            ordered = sorted(self._buckets.items(), key=lambda kv: kv[1][1])
            self._buckets = dict(ordered[len(ordered) // 2 :])
