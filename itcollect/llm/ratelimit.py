"""Client-side rate limits: token buckets for requests and tokens per minute.

A bucket refills continuously at ``per_minute / 60`` a second and holds at most ``burst_s``
seconds' worth, so a fresh run does not fire a whole minute's budget in its first second (which
providers punish with 429s). A request larger than the bucket waits for a full bucket and then
drives it negative, so it is delayed rather than refused. Token estimates made before sending are
corrected with the real usage afterwards (``adjust``).
"""

from __future__ import annotations

import asyncio
import time


class TokenBucket:
    def __init__(self, per_minute: float, *, burst_s: float = 6.0) -> None:
        if per_minute <= 0:
            raise ValueError("per_minute must be positive")
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, per_minute * burst_s / 60.0)
        self.level = self.capacity
        self._stamp = time.monotonic()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = time.monotonic()
        self.level = min(self.capacity, self.level + (now - self._stamp) * self.rate)
        self._stamp = now

    async def acquire(self, amount: float = 1.0) -> None:
        """Wait until ``amount`` may be spent, then spend it (waiters are served in order)."""
        async with self._lock:
            while True:
                self._refill()
                need = min(amount, self.capacity)
                if self.level >= need:
                    self.level -= amount
                    return
                await asyncio.sleep((need - self.level) / self.rate)

    def adjust(self, delta: float) -> None:
        """Give back (positive) or charge (negative) the difference between estimate and usage."""
        self._refill()
        self.level = min(self.capacity, self.level + delta)
