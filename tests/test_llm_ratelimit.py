"""Token buckets: the accounting, without timing asserts."""

from __future__ import annotations

import asyncio

import pytest

from itcollect.llm.ratelimit import TokenBucket


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
