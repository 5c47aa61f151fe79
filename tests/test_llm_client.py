"""LLMClient against the loopback server over real HTTP: ledger, retries, streaming, limits."""

from __future__ import annotations

import asyncio

import pytest

from itcollect.config import parse_config
from itcollect.llm import ChatResult, EndpointDown, LLMCallError, LLMClient
from itcollect.store import Store

MSGS = [{"role": "system", "content": "You translate."}, {"role": "user", "content": "Translate: Hello world"}]


def make_config(**llm):
    lines = ["[llm]"]
    base = {"max_retries": 3, "backoff_base_s": 0.01, "backoff_max_s": 0.05, "timeout_s": 5.0,
            "circuit_breaker_failures": 20}
    base.update(llm)
    for k, v in base.items():
        lines.append(f"{k} = {v!r}" if not isinstance(v, str) else f'{k} = "{v}"')
    lines += ["[prices]", '"fake-model" = [1.0, 2.0, 0.5, 1.0]']
    return parse_config("\n".join(lines) + "\n")


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "itcollect.db")
    yield s
    s.close()


def run(coro):
    return asyncio.run(coro)


async def _client_call(config, store, url, n=1, **kw):
    client = LLMClient(config, store, command="test", base_url=url, model="fake-model", env={})
    try:
        return [await client.chat("assistant", MSGS, **kw) for _ in range(n)], client.stats()
    finally:
        await client.aclose()


def test_basic_call_then_ledger_answers_without_http(fake_openai, store):
    cfg = make_config()
    (first,), _ = run(_client_call(cfg, store, fake_openai.base_url))
    assert isinstance(first, ChatResult)
    assert first.text.startswith("Answer ") and first.finish_reason == "stop" and not first.from_ledger
    assert first.prompt_tokens > 0 and first.completion_tokens > 0
    assert fake_openai.total_requests == 1
    (second,), stats = run(_client_call(cfg, store, fake_openai.base_url))
    assert second.from_ledger and second.text == first.text and second.call_key == first.call_key
    assert fake_openai.total_requests == 1
    assert stats["from_ledger"] == 1 and stats["sent"] == 0
    row = store.ledger_lookup(first.call_key)
    assert row["status"] == "done" and row["response"] == first.text
    totals = store.call_totals()
    assert totals["sent"] == 1 and totals["from_ledger"] == 1 and totals["failed"] == 0


def test_sample_index_makes_a_new_call(fake_openai, store):
    cfg = make_config()
    (a,), _ = run(_client_call(cfg, store, fake_openai.base_url))
    (b,), _ = run(_client_call(cfg, store, fake_openai.base_url, sample=1))
    assert a.call_key != b.call_key and not b.from_ledger
    assert fake_openai.total_requests == 2


def test_all_attempts_fail_marks_failed(fake_openai, store):
    fake_openai.set_faults(truncated=0.5, empty=0.5)
    cfg = make_config(max_retries=2)
    with pytest.raises(LLMCallError, match="failed after 3 attempts"):
        run(_client_call(cfg, store, fake_openai.base_url))
    assert fake_openai.total_requests == 3
    (row,) = store.ledger_calls()
    assert row["status"] == "failed" and row["error"]


def test_dead_endpoint_opens_breaker(store):
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now: connection refused
    url = f"http://127.0.0.1:{port}/v1"
    cfg = make_config(max_retries=1, circuit_breaker_failures=3)

    async def go():
        client = LLMClient(cfg, store, command="test", base_url=url, model="fake-model", env={})
        errors = []
        try:
            for i in range(10):
                try:
                    await client.chat("assistant", [{"role": "user", "content": f"q{i}"}])
                except LLMCallError as exc:
                    errors.append(exc)
        finally:
            await client.aclose()
        return errors

    with pytest.raises(EndpointDown, match=f"127.0.0.1:{port}"):
        run(go())
