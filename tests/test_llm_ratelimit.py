"""Token buckets and call slots: the accounting and the order, without timing asserts."""

from __future__ import annotations

import asyncio

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


def test_rpm_limit_delays_but_completes(fake_openai, tmp_path):
    from itcollect.config import parse_config
    from itcollect.llm import LLMClient
    from itcollect.store import Store

    cfg = parse_config("[llm]\nrequests_per_minute = 600\ntokens_per_minute = 100000\n")

    async def go():
        with Store(tmp_path / "s.db") as store:
            client = LLMClient(cfg, store, command="t", base_url=fake_openai.base_url, model="m", env={})
            try:
                return await asyncio.gather(*(client.chat("assistant", [{"role": "user", "content": f"q{i}"}])
                                              for i in range(12)))
            finally:
                await client.aclose()

    results = asyncio.run(go())
    assert len(results) == 12 and fake_openai.total_requests == 12
