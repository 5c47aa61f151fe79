"""Client-side admission: token buckets for requests and tokens per minute, and the call slots.

A bucket refills continuously at ``per_minute / 60`` a second and holds at most ``burst_s``
seconds' worth, so a fresh run does not fire a whole minute's budget in its first second (which
providers punish with 429s). A request larger than the bucket waits for a full bucket and then
drives it negative, so it is delayed rather than refused. Token estimates made before sending are
corrected with the real usage afterwards (``adjust``).
"""

from __future__ import annotations

import asyncio
import heapq
import time
from collections.abc import Callable


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


class PrioritySlots:
    """A semaphore whose waiters are served lowest rank first (ties: first come). A waiter's rank
    is its ``priority``, or ``rule(priority)`` once :meth:`rank_by` set a rule.

    simulate passes the number of calls a dialogue still needs. While dialogues remain to be
    started, the one closest to its end goes first (it frees its worker for the next dialogue
    soonest); once all have started it switches the rule to "most calls left first", so the
    dialogues end together instead of a late one finishing alone on an idle endpoint
    (critical-path scheduling). With one priority it is a plain FIFO semaphore.
    """

    def __init__(self, slots: int) -> None:
        if slots < 1:
            raise ValueError("slots must be at least 1")
        self._free = slots
        self._waiters: list[tuple[float, int, asyncio.Future, float]] = []  # rank, seq, future, priority
        self._seq = 0
        self._rule: Callable[[float], float] | None = None

    @property
    def waiting(self) -> int:
        return sum(1 for w in self._waiters if not w[2].done())

    def rank_by(self, rule: Callable[[float], float]) -> None:
        """From now on rank waiters by ``rule(priority)``, those already queued included (a rule
        applied only to new arrivals would leave the queued ones behind all of them)."""
        self._rule = rule
        self._waiters = [(rule(prio), seq, fut, prio) for _, seq, fut, prio in self._waiters if not fut.done()]
        heapq.heapify(self._waiters)

    async def acquire(self, priority: float = 0.0) -> None:
        if self._free > 0:  # free slots only exist while nobody live is queued (release hands over)
            self._free -= 1
            return
        fut = asyncio.get_running_loop().create_future()
        self._seq += 1
        rank = self._rule(priority) if self._rule is not None else priority
        heapq.heappush(self._waiters, (rank, self._seq, fut, priority))
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():  # the slot was handed over as we were cancelled
                self.release()
            raise

    def release(self) -> None:
        while self._waiters:
            fut = heapq.heappop(self._waiters)[2]
            if not fut.done():  # skip waiters cancelled while queued
                fut.set_result(None)
                return
        self._free += 1

    def slot(self, priority: float = 0.0) -> _Slot:
        """``async with slots.slot(priority):`` holds one slot for the block."""
        return _Slot(self, priority)


class _Slot:
    __slots__ = ("_slots", "_priority")

    def __init__(self, slots: PrioritySlots, priority: float) -> None:
        self._slots = slots
        self._priority = priority

    async def __aenter__(self) -> None:
        await self._slots.acquire(self._priority)

    async def __aexit__(self, *exc: object) -> None:
        self._slots.release()
