"""LLMClient against the loopback server over real HTTP: ledger, retries, streaming, limits."""

from __future__ import annotations

import asyncio
import time

import pytest

from itcollect.config import parse_config
from itcollect.kernel.errors import ServiceError, UsageError
from itcollect.llm import (
    CallInBatch,
    ChatResult,
    EndpointDown,
    EndpointFlags,
    LLMCallError,
    LLMClient,
    resolve_endpoints,
    resolve_systems,
    system_role,
)
from itcollect.llm.endpoints import parse_system_names
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

    with pytest.raises(EndpointDown, match=f"127.0.0.1:{port}") as down:
        run(go())
    # a refused connection is named as such, not as a timeout (the aiohttp transport wraps it in one)
    assert "connection error: ConnectionRefusedError" in str(down.value) and "timeout" not in str(down.value)


def test_a_call_out_in_a_batch_is_not_sent_again(store, fake_openai):
    """A call recorded as submitted in a Batch API batch is paid for there: chat() refuses to send
    it online (it would be paid twice) and says how to collect or free it."""
    cfg = make_config()

    async def go():
        client = LLMClient(cfg, store, command="test", base_url=fake_openai.base_url, model="fake-model", env={})
        try:
            key = client.call_key("assistant", MSGS)
            store.ledger_begin(key, role="assistant", model="fake-model", base_url=fake_openai.base_url,
                               request_json="{}")
            store.ledger_mark_batched([key], "b123")
            with pytest.raises(CallInBatch, match="out in Batch API batch b123"):
                await client.chat("assistant", MSGS)
            return await client.chat("assistant", [{"role": "user", "content": "not batched"}])
        finally:
            await client.aclose()

    other = run(go())
    assert fake_openai.total_requests == 1 and not other.from_ledger  # only the other call went out


def _closed_port_url() -> str:
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now: connection refused
    return f"http://127.0.0.1:{port}/v1"


def test_an_endpoint_that_never_answered_stops_the_run_after_three_refused_attempts(store):
    url = _closed_port_url()
    cfg = make_config(max_retries=6, circuit_breaker_failures=20)  # the breaker would need 140 attempts

    async def go():
        client = LLMClient(cfg, store, command="test", base_url=url, model="fake-model", env={})
        try:
            with pytest.raises(EndpointDown) as down:
                await client.chat("assistant", MSGS)
            with pytest.raises(EndpointDown):  # and the run stays stopped
                await client.chat("assistant", [{"role": "user", "content": "another"}])
            return str(down.value), client.attempts
        finally:
            await client.aclose()

    message, attempts = run(go())
    assert attempts == 3
    assert f"cannot reach the LLM endpoint {url}" in message and "connection was refused" in message
    assert "--base-url" in message
    (row,) = store.ledger_calls()
    assert row["status"] == "failed" and "ConnectionRefusedError" in row["error"]


def test_an_endpoint_that_answered_once_goes_through_the_breaker_when_it_goes_away(store):
    """A server that dies mid-run is an outage, not a wrong URL: retries and the breaker apply."""
    from tests.fakeserver import FakeOpenAI

    server = FakeOpenAI().start()
    cfg = make_config(max_retries=3, circuit_breaker_failures=2)

    async def go():
        client = LLMClient(cfg, store, command="test", base_url=server.base_url, model="fake-model", env={})
        errors = []
        try:
            await client.chat("assistant", MSGS)
            server.stop()
            with pytest.raises(EndpointDown) as down:
                for i in range(5):
                    try:
                        await client.chat("assistant", [{"role": "user", "content": f"q{i}"}])
                    except LLMCallError as exc:
                        errors.append(exc)
            return errors, str(down.value), client.attempts
        finally:
            await client.aclose()

    errors, message, attempts = run(go())
    assert len(errors) == 1 and "after 4 attempts" in errors[0].message  # every retry was made
    assert "looks down: 2 calls in a row" in message and attempts == 1 + 2 * 4


async def _one(cfg, store, url, messages=MSGS, role="assistant", env=None, client_kw=None, **kw):
    client = LLMClient(cfg, store, command="test", base_url=url, model="fake-model", env=env or {},
                       **(client_kw or {}))
    try:
        return await client.chat(role, messages, **kw), client.stats()
    finally:
        await client.aclose()


@pytest.mark.parametrize("fault", ["429", "500", "truncated", "disconnect", "empty", "no_choices"])
def test_one_failed_attempt_then_success(fake_openai, store, fault):
    fake_openai.queue_faults(fault)
    res, stats = run(_one(make_config(), store, fake_openai.base_url))
    assert res.text.startswith("Answer ") and res.attempts == 2
    assert fake_openai.total_requests == 2 and stats["retries"] == 1
    assert [r["fault"] for r in fake_openai.requests] == [fault, None]
    row = store.ledger_lookup(res.call_key)
    assert row["status"] == "done" and row["attempts"] == 2


def test_429_retry_after_header_is_used(fake_openai, store):
    # Retry-After says 0.2 s while the configured backoff is at most 0.05 s: the wait must come from the header.
    fake_openai.retry_after = 0.2
    fake_openai.queue_faults("429", "429")
    res, stats = run(_one(make_config(), store, fake_openai.base_url))
    assert res.attempts == 3 and stats["retries"] == 2
    assert fake_openai.total_requests == 3


def test_retry_after_parsing():
    from email.utils import formatdate

    from itcollect.llm import parse_retry_after

    assert parse_retry_after({"retry-after": "2"}) == 2.0
    assert parse_retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    future = parse_retry_after({"retry-after": formatdate(__import__("time").time() + 30, usegmt=True)})
    assert 25 <= future <= 31
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None


def test_hang_times_out_then_retries(fake_openai, store):
    fake_openai.hang_s = 20
    fake_openai.queue_faults("hang")
    res, stats = run(_one(make_config(timeout_s=0.5), store, fake_openai.base_url))
    assert res.text and res.attempts == 2 and fake_openai.total_requests == 2


def test_bad_request_is_not_retried(fake_openai, store):
    fake_openai.queue_faults("400")
    with pytest.raises(LLMCallError, match="HTTP 400"):
        run(_one(make_config(), store, fake_openai.base_url))
    assert fake_openai.total_requests == 1
    (row,) = store.ledger_calls()
    assert row["status"] == "failed" and "400" in row["error"]
    assert store.call_totals()["failed"] == 1


def test_bad_key_stops_the_run(fake_openai, store):
    fake_openai.queue_faults("401")
    with pytest.raises(EndpointDown, match="OPENAI_API_KEY"):
        run(_one(make_config(), store, fake_openai.base_url))


def test_failed_call_is_retried_by_a_later_run(fake_openai, store):
    fake_openai.set_faults({"500": 1.0})
    cfg = make_config(max_retries=1)
    with pytest.raises(LLMCallError):
        run(_one(cfg, store, fake_openai.base_url))
    fake_openai.set_faults()
    res, _ = run(_one(cfg, store, fake_openai.base_url))
    assert not res.from_ledger and store.ledger_lookup(res.call_key)["status"] == "done"
    assert fake_openai.total_requests == 3


def test_length_finish_reason_is_returned(fake_openai, store):
    fake_openai.queue_faults("length")
    res, _ = run(_one(make_config(), store, fake_openai.base_url))
    assert res.finish_reason == "length" and res.attempts == 1
    assert store.ledger_lookup(res.call_key)["finish_reason"] == "length"


def test_streaming_delivers_deltas_and_matches_ledger(fake_openai, store):
    pieces = []
    res, _ = run(_one(make_config(), store, fake_openai.base_url, on_delta=pieces.append))
    assert len(pieces) > 1 and "".join(pieces) == res.text
    assert fake_openai.requests[0]["body"]["stream"] is True
    row = store.ledger_lookup(res.call_key)
    assert row["response"] == res.text and row["prompt_tokens"] == res.prompt_tokens > 0
    # the same call streamed again comes from the ledger, delivered as one piece
    again = []
    res2, _ = run(_one(make_config(), store, fake_openai.base_url, on_delta=again.append))
    assert res2.from_ledger and again == [res.text] and fake_openai.total_requests == 1


def test_streaming_cut_off_resets_and_retries(fake_openai, store):
    fake_openai.set_latency(0)
    fake_openai.queue_faults("truncated")
    pieces, resets = [], []

    def on_reset():
        resets.append(len(pieces))
        pieces.clear()

    res, _ = run(_one(make_config(), store, fake_openai.base_url, on_delta=pieces.append, on_reset=on_reset))
    assert resets and resets[0] > 0
    assert "".join(pieces) == res.text and res.attempts == 2


def test_concurrency_bound_respected(fake_openai, store):
    fake_openai.set_latency(0.05)
    cfg = make_config()

    async def go():
        client = LLMClient(cfg, store, command="test", base_url=fake_openai.base_url, model="fake-model",
                           concurrency=3, env={})
        try:
            return await asyncio.gather(*(client.chat("assistant", [{"role": "user", "content": f"s{i}"}])
                                          for i in range(15)))
        finally:
            await client.aclose()

    results = run(go())
    assert len({r.call_key for r in results}) == 15
    assert 1 < fake_openai.max_in_flight <= 3


def test_identical_calls_in_flight_are_sent_once(fake_openai, store):
    fake_openai.set_latency(0.05)

    async def go():
        client = LLMClient(make_config(), store, command="test", base_url=fake_openai.base_url,
                           model="fake-model", env={})
        try:
            return await asyncio.gather(*(client.chat("assistant", MSGS) for _ in range(4))), client.stats()
        finally:
            await client.aclose()

    results, stats = run(go())
    assert fake_openai.total_requests == 1
    assert len({r.text for r in results}) == 1 and sum(r.from_ledger for r in results) == 3
    assert stats["sent"] == 1 and stats["from_ledger"] == 3


def test_cost_from_prices_and_run_counters(fake_openai, store):
    res, stats = run(_one(make_config(), store, fake_openai.base_url))
    expected = res.prompt_tokens * 1.0 / 1e6 + res.completion_tokens * 2.0 / 1e6
    assert res.cost_usd == pytest.approx(expected) and expected > 0
    assert stats["cost_usd"] == pytest.approx(expected, abs=1e-6)
    totals = store.call_totals()
    assert totals["cost_usd"] == pytest.approx(expected, abs=1e-6)
    assert totals["prompt_tokens"] == res.prompt_tokens and totals["completion_tokens"] == res.completion_tokens
    (run_row,) = store.query("SELECT * FROM llm_runs")
    assert run_row["sent"] == 1 and run_row["cost_usd"] == pytest.approx(expected) and run_row["finished_at"]


def test_price_lookup():
    from itcollect.llm import call_cost, price_for

    prices = {"gpt-4o-mini": [0.15, 0.60, 0.075, 0.30], "gpt-4o": [2.5, 10.0], "local": [0, 0]}
    assert price_for(prices, "gpt-4o-mini-2024-07-18") == (0.15, 0.60, 0.075, 0.30)
    assert price_for(prices, "openai/gpt-4o") == (2.5, 10.0, 1.25, 5.0)
    assert price_for(prices, "qwen2.5-72b") == (0.0, 0.0, 0.0, 0.0)
    assert call_cost((1.0, 2.0, 0.5, 1.0), 1_000_000, 500_000) == pytest.approx(2.0)
    assert call_cost((1.0, 2.0, 0.5, 1.0), 1_000_000, 500_000, batch=True) == pytest.approx(1.0)


def test_max_cost_stops_before_sending(fake_openai, store):
    from itcollect.llm import CostLimitReached

    async def go():
        client = LLMClient(make_config(), store, command="test", base_url=fake_openai.base_url,
                           model="fake-model", max_cost_usd=1e-9, env={})
        try:
            await client.chat("assistant", MSGS)
            assert client.cost_limit_reached
            with pytest.raises(CostLimitReached, match="limit"):
                await client.chat("assistant", [{"role": "user", "content": "another"}])
        finally:
            await client.aclose()

    run(go())
    assert fake_openai.total_requests == 1
    assert store.ledger_counts()["pending"] == 0


def test_dry_run_records_and_sends_nothing(fake_openai, store):
    async def go():
        client = LLMClient(make_config(), store, command="test", base_url=fake_openai.base_url,
                           model="fake-model", dry_run=True, env={})
        try:
            res = [await client.chat("assistant", [{"role": "user", "content": f"s{i} " * 20}]) for i in range(5)]
            return res, client.stats()
        finally:
            await client.aclose()

    res, stats = run(go())
    assert fake_openai.total_requests == 0
    assert store.ledger_calls() == [] and store.query("SELECT COUNT(*) FROM llm_runs")[0][0] == 0
    assert stats["estimated_calls"] == 5 and stats["prompt_tokens"] > 0 and stats["cost_usd"] > 0
    assert all(r.finish_reason == "dry_run" for r in res)


def test_api_key_never_stored(fake_openai, store, tmp_path):
    secret = "sk-test-SECRET-0123456789abcdef"
    run(_one(make_config(), store, fake_openai.base_url, env={"OPENAI_API_KEY": secret}))
    fake_openai.queue_faults("500", "400")
    with pytest.raises(LLMCallError):
        run(_one(make_config(), store, fake_openai.base_url, env={"OPENAI_API_KEY": secret},
                 messages=[{"role": "user", "content": "other"}]))
    assert fake_openai.requests[0]["auth"] == f"Bearer {secret}"  # it was really used
    store.close()
    blob = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("itcollect.db"))
    assert b"SECRET" not in blob and secret.encode() not in blob


def test_custom_key_env_and_local_placeholder(fake_openai, store):
    cfg = make_config(api_key_env="MY_KEY")
    run(_one(cfg, store, fake_openai.base_url, env={"MY_KEY": "sk-mine"}))
    assert fake_openai.requests[-1]["auth"] == "Bearer sk-mine"
    run(_one(cfg, store, fake_openai.base_url, env={}, messages=[{"role": "user", "content": "x"}]))
    assert fake_openai.requests[-1]["auth"] == "Bearer sk-no-key"


def test_no_endpoint_no_key_is_a_clear_error(store):
    from itcollect.kernel.errors import ServiceError

    with pytest.raises(ServiceError, match="--base-url") as info:
        LLMClient(make_config(), store, command="test", env={})
    assert "OPENAI_API_KEY" in str(info.value) and "--local" in str(info.value)


def test_roles_and_overrides(fake_openai, store):
    cfg = parse_config('[llm.assistant]\nmodel = "a-model"\nbase_url = "http://127.0.0.1:9/v1"\n'
                       '[llm.annotator]\nmodel = "b-model"\ntemperature = 1.0\n')
    c = LLMClient(cfg, store, command="t", env={})
    assert c.model_for("assistant") == "a-model" and c.model_for("annotator") == "b-model"
    assert c.base_url_for("annotator") == "http://127.0.0.1:9/v1"
    assert c.request_body("annotator", MSGS)["temperature"] == 1.0
    assert c.request_body("assistant", MSGS, temperature=0.1, max_tokens=None) == {
        "model": "a-model", "messages": MSGS, "temperature": 0.1, "top_p": 1.0}
    run(c.aclose())
    c = LLMClient(cfg, store, command="t", env={}, endpoints=resolve_endpoints(
        cfg.settings, base_url=fake_openai.base_url, model="m1", flags={"annotator": EndpointFlags(model="m2")}))
    assert c.model_for("assistant") == "m1" and c.model_for("annotator") == "m2"
    assert c.base_url_for("annotator") == fake_openai.base_url
    assert c.call_key("assistant", MSGS) != c.call_key("assistant", MSGS, sample=1)
    assert c.call_key("assistant", MSGS) != c.call_key("assistant", MSGS, temperature=0.2)
    run(c.aclose())
    c = LLMClient(cfg, store, command="t", base_url="http://user:pw@127.0.0.1:9/v1", model="m", env={})
    assert "pw" not in c.base_url_for("assistant")
    run(c.aclose())


@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_client_survives_a_second_event_loop(fake_openai, store):
    client = LLMClient(make_config(), store, command="test", base_url=fake_openai.base_url, model="m", env={})
    texts = [asyncio.run(client.chat("assistant", [{"role": "user", "content": f"loop {i}"}])).text for i in range(2)]
    asyncio.run(client.aclose())
    assert all(t.startswith("Answer ") for t in texts) and fake_openai.total_requests == 2


def test_ledger_writes_are_grouped(fake_openai, store):
    async def go():
        # start-up pacing off: 30 requests leaving in the same loop turn share their commits
        client = LLMClient(make_config(start_pace_per_s=0), store, command="test", base_url=fake_openai.base_url,
                           model="m", concurrency=32, env={})
        try:
            await asyncio.gather(*(client.chat("assistant", [{"role": "user", "content": f"g{i}"}])
                                   for i in range(30)))
            return client._ledger.commits
        finally:
            await client.aclose()

    commits = run(go())
    assert commits < 30  # 60 writes (pending + answer per call) in far fewer transactions
    assert store.ledger_counts()["done"] == 30 and store.call_totals()["sent"] == 30


def test_first_requests_are_paced_then_slots_are_reused_at_once(fake_openai, store):
    fake_openai.set_latency(1.0)

    async def go(pace):
        client = LLMClient(make_config(start_pace_per_s=pace), store, command="test", base_url=fake_openai.base_url,
                           model="m", concurrency=8, env={})
        try:
            await asyncio.gather(*(client.chat("assistant", [{"role": "user", "content": f"p{pace}-{i}"}])
                                   for i in range(16)))
        finally:
            await client.aclose()
        arrivals = sorted(r["at"] for r in fake_openai.requests)
        fake_openai.reset()
        return arrivals

    # 10 a second: the 8 paced requests span 7 gaps of 100 ms (0.7 s), less than the 1 s an answer
    # takes, so the first 8 arrivals are the paced ones (the other 8 wait for a slot, that is for an
    # answer). The 8th cannot leave before 7 gaps have passed since the run began: a lower bound the
    # pacer guarantees however slow the machine (measured from before the first request, which a
    # loaded machine may send late, so not from the first arrival).
    began = time.time()
    paced = run(go(10))
    assert paced[7] - began >= 7 * 0.1 * 0.95
    # the second 8 wait for answers (1 s), not for the pace: each leaves as a slot frees
    assert paced[8] - paced[0] >= 0.95 and paced[15] - paced[8] <= (paced[7] - paced[0]) + 0.4
    burst = run(go(0))  # pacing off: the first 8 leave together, well inside what the pace would take
    assert burst[7] - burst[0] < 7 * 0.1 * 0.8 and burst[8] - burst[0] >= 0.95


def test_httpx_transport_fallback(fake_openai, store, monkeypatch):
    monkeypatch.setenv("ITCOLLECT_HTTP_TRANSPORT", "httpx")
    pieces = []
    res, _ = run(_one(make_config(), store, fake_openai.base_url, on_delta=pieces.append))
    assert res.text == "".join(pieces) and res.text.startswith("Answer ")


ROLE_TABLES = ('[llm.assistant]\nmodel = "a-model"\nbase_url = "http://127.0.0.1:9/v1"\n'
               '[llm.annotator]\ntemperature = 0.9\n'
               '[llm.judge]\nmodel = "j-model"\nresponse_format = "none"\n'
               '[llm.systems.base]\nmodel = "base-model"\n'
               '[llm.systems.tuned]\nmodel = "tuned-model"\nbase_url = "http://127.0.0.1:8/v1"\nmax_tokens = 64\n')


def test_endpoints_are_resolved_in_one_place_with_the_flags_precedence():
    s = parse_config(ROLE_TABLES).settings
    ep = resolve_endpoints(s, ("assistant", "annotator", "judge", system_role("base"), system_role("tuned")))
    # empty base_url / model inherit the assistant's; sampling and the key variable come along
    assert (ep["annotator"].base_url, ep["annotator"].model, ep["annotator"].temperature) == (
        "http://127.0.0.1:9/v1", "a-model", 0.9)
    assert (ep["judge"].model, ep["judge"].response_format, ep["judge"].max_tokens) == ("j-model", "none", 800)
    assert ep["assistant"].api_key_env == "OPENAI_API_KEY" and ep["assistant"].response_format == ""
    assert (ep["system:base"].base_url, ep["system:base"].model) == ("http://127.0.0.1:9/v1", "base-model")
    assert (ep["system:tuned"].base_url, ep["system:tuned"].max_tokens) == ("http://127.0.0.1:8/v1", 64)
    assert ep["assistant"].sampling == {"temperature": 0.7, "top_p": 1.0, "max_tokens": 512}
    # --base-url / --model set the assistant and the annotator, not the judge nor a system ...
    ep = resolve_endpoints(s, ("assistant", "annotator", "judge", "system:base"), base_url="http://x/v1", model="m")
    assert {r: (e.base_url, e.model) for r, e in ep.items()} == {
        "assistant": ("http://x/v1", "m"), "annotator": ("http://x/v1", "m"),
        "judge": ("http://127.0.0.1:9/v1", "j-model"), "system:base": ("http://127.0.0.1:9/v1", "base-model")}
    # ... unless the role's own flags say otherwise; the judge's flags are its own
    ep = resolve_endpoints(s, ("assistant", "annotator", "judge"), base_url="http://x/v1", model="m",
                           flags={"annotator": EndpointFlags("http://y/v1", "m2"), "judge": EndpointFlags(model="j2")})
    assert (ep["annotator"].base_url, ep["annotator"].model) == ("http://y/v1", "m2")
    assert (ep["judge"].base_url, ep["judge"].model) == ("http://127.0.0.1:9/v1", "j2")
    assert resolve_endpoints(parse_config("").settings)["assistant"].base_url is None  # the SDK's default
    with pytest.raises(ServiceError, match=r"no model for the annotator role: pass --model NAME or set "
                                           r"\[llm.annotator\] model"):
        resolve_endpoints(parse_config('[llm.assistant]\nmodel = ""\n').settings, ("annotator",))
    with pytest.raises(ValueError, match="unknown LLM roles"):
        resolve_endpoints(s, ("system:missing",))


def test_compared_systems_are_tables_or_models_on_the_assistants_endpoint():
    s = parse_config(ROLE_TABLES + 'api_key_env = "TUNED_KEY"\n').settings
    eps = resolve_systems(s, ["tuned", "gpt-x", "base"])
    assert [e.role for e in eps] == ["system:tuned", "system:gpt-x", "system:base"]  # the order given
    tuned, named, base = eps
    assert (tuned.base_url, tuned.model, tuned.max_tokens, tuned.api_key_env) == (
        "http://127.0.0.1:8/v1", "tuned-model", 64, "TUNED_KEY")
    assert (base.base_url, base.model, base.api_key_env) == ("http://127.0.0.1:9/v1", "base-model", "OPENAI_API_KEY")
    # a name without a table is a model on the assistant's endpoint, used as given, with its sampling
    assert (named.base_url, named.model, named.sampling) == ("http://127.0.0.1:9/v1", "gpt-x", eps[2].sampling)
    # the command's --base-url moves the assistant's endpoint, so the named models, not the tables
    moved = resolve_systems(s, ["gpt-x", "base"], base_url="http://x/v1")
    assert [(e.base_url, e.model) for e in moved] == [("http://x/v1", "gpt-x"), ("http://127.0.0.1:9/v1", "base-model")]
    for names, said in ((["tuned"], "two or more systems, got 1"), ([], "two or more systems, got 0"),
                        (["tuned", "x", "tuned"], "names tuned more than once")):
        with pytest.raises(UsageError, match=said) as err:
            resolve_systems(s, names)
        assert "configured systems ([llm.systems.NAME]): base, tuned" in str(err.value)
        assert err.value.exit_code == 2
    with pytest.raises(UsageError, match=r"configured systems \(\[llm.systems.NAME\]\): none"):
        resolve_systems(parse_config("").settings, ["a", "a"])
    assert parse_system_names(" a, b,,c ") == ["a", "b", "c"]


def test_a_systems_own_key_variable_is_read_for_its_calls(fake_openai, store):
    """[llm.systems.NAME] api_key_env names the variable whose key that system's calls carry."""
    cfg = parse_config(f'[llm.systems.own]\nmodel = "m-own"\nbase_url = "{fake_openai.base_url}"\n'
                       'api_key_env = "OWN_KEY"\n')
    eps = {e.role: e for e in resolve_systems(cfg.settings, ["own", "m-plain"], base_url=fake_openai.base_url)}

    async def go():
        client = LLMClient(cfg, store, command="test", env={"OWN_KEY": "sk-own", "OPENAI_API_KEY": "sk-main"},
                           endpoints=eps)
        try:
            return client.sdk_client("system:own").api_key, client.sdk_client("system:m-plain").api_key
        finally:
            await client.aclose()

    assert run(go()) == ("sk-own", "sk-main")


def test_assistant_systems_are_entries_sharing_one_endpoint_state(fake_openai, store):
    """N assistant systems are N entries of one client; the calls of each are the system's own
    (model, sampling) and roles on one URL share one HTTP client and one breaker / rate state."""
    cfg = parse_config('[llm.systems.a]\nmodel = "model-a"\n[llm.systems.b]\nmodel = "model-b"\nmax_tokens = 64\n'
                       '[llm.systems.c]\nmodel = "model-c"\ntemperature = 0.0\n')
    roles = tuple(system_role(n) for n in "abc")
    flags = {r: EndpointFlags(base_url=fake_openai.base_url) for r in roles}

    async def go():
        client = LLMClient(cfg, store, command="test", env={}, endpoints=resolve_endpoints(cfg.settings, roles, flags=flags))
        try:
            assert client.roles == roles and client.endpoint_for("system:b").max_tokens == 64
            assert client.request_body("system:c", MSGS)["temperature"] == 0.0
            return [await client.chat(r, MSGS) for r in roles], client
        finally:
            await client.aclose()

    results, client = run(go())
    assert [r.model for r in results] == ["model-a", "model-b", "model-c"]
    assert len({r.call_key for r in results}) == 3 and fake_openai.total_requests == 3
    assert len(client._clients) == 1 and len(client._states) == 1
    with pytest.raises(ValueError, match="not both"):
        LLMClient(cfg, store, command="test", env={}, model="m", endpoints=resolve_endpoints(cfg.settings, roles, flags=flags))


def test_the_breaker_of_a_dead_endpoint_leaves_the_other_endpoints_alone(fake_openai, store):
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    dead = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    sock.close()
    cfg = make_config(max_retries=0, circuit_breaker_failures=2)
    endpoints = resolve_endpoints(cfg.settings, base_url=fake_openai.base_url, model="fake-model",
                                  flags={"annotator": EndpointFlags(base_url=dead)})

    async def go():
        client = LLMClient(cfg, store, command="test", env={}, endpoints=endpoints)
        try:
            with pytest.raises(EndpointDown, match=dead.split("//")[1]):
                for i in range(5):
                    with pytest.raises(LLMCallError):
                        await client.chat("annotator", [{"role": "user", "content": f"q{i}"}])
            down = client.endpoint_down
            with pytest.raises(EndpointDown):  # that endpoint's breaker stays open ...
                await client.chat("annotator", MSGS)
            answer = await client.chat("assistant", MSGS)  # ... and the assistant's endpoint still answers
            return down, answer
        finally:
            await client.aclose()

    down, answer = run(go())
    assert down and dead.split("//")[1] in down  # the run is told to stop, naming the endpoint
    assert answer.text and fake_openai.total_requests == 1
