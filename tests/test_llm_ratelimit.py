"""Token buckets and call slots: the accounting and the order, without timing asserts."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from itcollect.llm.ratelimit import PrioritySlots, TokenBucket


def test_bucket_spends_and_refunds():
    async def go():
        b = TokenBucket(600, burst_s=1.0)  # 10 a second, holds 10
        assert b.capacity == 10
        for _ in range(10):
            await b.acquire(1)  # a full bucket: no waiting needed
        assert b.level < 1
        b.adjust(+5)  # an estimate that was too high gives tokens back
        assert 5 <= b.level <= 6
        await b.acquire(30)  # more than it can hold: waits for a full bucket, then goes negative
        assert b.level < -15

    asyncio.run(asyncio.wait_for(go(), 10))


def test_slots_serve_lowest_priority_first_then_first_come():
    async def go():
        slots = PrioritySlots(2)
        order: list[str] = []
        gate = asyncio.Event()

        async def call(name: str, priority: float) -> None:
            async with slots.slot(priority):
                order.append(name)
                await gate.wait()

        holders = [asyncio.create_task(call(f"h{i}", 0)) for i in range(2)]
        await asyncio.sleep(0)
        assert order == ["h0", "h1"]  # both slots taken
        waiting = [asyncio.create_task(call(n, p)) for n, p in
                   (("late-few-left", -1), ("many-left-a", -5), ("mid", -3), ("many-left-b", -5))]
        for _ in range(3):
            await asyncio.sleep(0)
        assert slots.waiting == 4 and len(order) == 2
        gate.set()
        await asyncio.gather(*holders, *waiting)
        assert order[2:] == ["many-left-a", "many-left-b", "mid", "late-few-left"]
        assert slots._free == 2  # every slot came back

    asyncio.run(asyncio.wait_for(go(), 10))


def test_slots_rank_rule_applies_to_queued_and_new_waiters():
    async def go():
        slots = PrioritySlots(1)
        await slots.acquire()
        order: list[str] = []

        async def call(name: str, calls_left: int) -> None:
            await slots.acquire(calls_left)
            order.append(name)
            slots.release()

        early = [asyncio.create_task(call(f"early-{n}", n)) for n in (1, 3, 2)]
        await asyncio.sleep(0)
        slots.rank_by(lambda left: -left)  # from now on: most calls left first, queued ones too
        late = asyncio.create_task(call("late-2", 2))
        await asyncio.sleep(0)
        slots.release()
        await asyncio.gather(*early, late)
        # under the first rule early-1 would have gone first; a rule applied to new arrivals only
        # would have put late-2 before all of the early ones
        assert order == ["early-3", "early-2", "late-2", "early-1"]

    asyncio.run(asyncio.wait_for(go(), 10))


def test_slots_survive_cancelled_waiters():
    async def go():
        slots = PrioritySlots(1)
        await slots.acquire()
        cancelled = asyncio.create_task(slots.acquire(-10))
        served = asyncio.create_task(slots.acquire(0))
        await asyncio.sleep(0)
        cancelled.cancel()  # gives up while queued: must not swallow the slot
        await asyncio.sleep(0)
        slots.release()
        await asyncio.wait_for(served, 5)
        slots.release()
        # a waiter cancelled right after the slot was handed to it passes the slot on
        await slots.acquire()
        handed = asyncio.create_task(slots.acquire(0))
        nxt = asyncio.create_task(slots.acquire(1))
        await asyncio.sleep(0)
        slots.release()  # hands the slot to `handed`...
        handed.cancel()  # ...which is cancelled before it runs
        await asyncio.wait_for(nxt, 5)
        slots.release()
        assert slots._free == 1 and slots.waiting == 0
        with pytest.raises(ValueError):
            PrioritySlots(0)

    asyncio.run(asyncio.wait_for(go(), 10))


def test_bucket_rejects_nonsense():
    with pytest.raises(ValueError):
        TokenBucket(0)


def _arrivals(fake_openai, tmp_path, name: str, llm: str, messages: list[list[dict]], **params) -> list[float]:
    """Send every call at once through a fresh client (no start-up pacing, slots for all) and
    return the server's arrival times of the requests, in order, in seconds after the calls
    were made (before any could take a token from a bucket)."""
    from itcollect.config import parse_config
    from itcollect.llm import LLMClient
    from itcollect.store import Store

    fake_openai.reset()
    cfg = parse_config(f"[llm]\nstart_pace_per_s = 0\n{llm}\n")

    async def go():
        with Store(tmp_path / f"{name}.db") as store:
            client = LLMClient(cfg, store, command="t", base_url=fake_openai.base_url, model="m",
                               concurrency=len(messages) + 10, env={})
            try:
                start.append(time.time())
                await asyncio.gather(*(client.chat("assistant", m, **params) for m in messages))
            finally:
                await client.aclose()

    start: list[float] = []
    asyncio.run(asyncio.wait_for(go(), 60))
    assert fake_openai.total_requests == len(messages)
    return sorted(r["at"] - start[0] for r in fake_openai.requests)


def test_requests_per_minute_bucket_spreads_the_calls(fake_openai, tmp_path):
    """120 requests a minute: a bucket of 12 (6 s worth) refilled at 2 a second. 16 calls made at
    once: the first 12 may leave together, the k-th after that no sooner than k/2 s after the
    calls were made (the bucket can have paid out at most 12 + 2 t requests in t seconds). The
    last one waits 2 s, so the control run without the limit (16 calls at once) stays well under
    that bound even on a loaded machine."""
    rate, capacity, n = 2.0, 12, 16
    messages = [[{"role": "user", "content": f"rpm question {i}"}] for i in range(n)]
    limited = _arrivals(fake_openai, tmp_path, "rpm", "requests_per_minute = 120", messages)
    for k in range(capacity, n):  # the (k+1)-th request waited for its token
        assert limited[k] >= (k + 1 - capacity) / rate - 0.005, (k, limited[k])
    assert limited[-1] >= (n - capacity) / rate - 0.005
    # the same calls without the limit are not spread like that: the wait was the bucket's
    free = _arrivals(fake_openai, tmp_path, "rpm-free", "requests_per_minute = 0", messages)
    assert free[-1] < (n - capacity) / rate - 0.005


def test_tokens_per_minute_bucket_spreads_the_calls(fake_openai, tmp_path):
    """12,000 tokens a minute: a bucket of 1,200 tokens refilled at 200 a second. A call is charged
    its estimate (prompt estimate + max_tokens) before it is sent and the difference to its real
    usage when its answer arrives, so it costs the bucket at least min(estimate, usage); by the
    last request's departure the bucket paid out at most 1,200 + 200 t, hence the lower bound."""
    from itcollect.llm.answers import rate_limit_tokens
    from itcollect.store import Store

    rate, capacity, max_tokens = 200.0, 1200.0, 40
    messages = [[{"role": "user", "content": f"Translate sentence number {i} of the tokens test into German."}]
                for i in range(36)]
    limited = _arrivals(fake_openai, tmp_path, "tpm", "tokens_per_minute = 12000", messages, max_tokens=max_tokens)
    with Store(tmp_path / "tpm.db") as store:  # each call's real usage, by its message
        used = {json.loads(r["request"])["messages"][0]["content"]: r["prompt_tokens"] + r["completion_tokens"]
                for r in store.ledger_calls(["done"])}
    charged = {m[0]["content"]: rate_limit_tokens({"messages": m, "max_tokens": max_tokens}) for m in messages}
    assert used.keys() == charged.keys() and len(used) == 36 and max(charged.values()) < capacity
    bound = (sum(min(charged[c], used[c]) for c in used) - capacity) / rate
    assert bound > 0.5  # the test asks for a real wait, not a rounding error
    assert limited[-1] >= bound - 0.005, (limited[-1], bound)
    free = _arrivals(fake_openai, tmp_path, "tpm-free", "tokens_per_minute = 0", messages, max_tokens=max_tokens)
    assert free[-1] < bound - 0.005
