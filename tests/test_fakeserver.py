"""The loopback OpenAI server itself: the wire format the SDK expects, faults, counters, routes."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import openai
import pytest
from aiohttp import web

from tests.fakeserver import FakeOpenAI

REPO = Path(__file__).resolve().parent.parent
MSGS = [{"role": "user", "content": "Translate: good morning"}]


def sdk(server: FakeOpenAI) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0, timeout=5)


def test_plain_and_models(fake_openai):
    client = sdk(fake_openai)
    r = client.chat.completions.create(model="fake-model", messages=MSGS)
    assert r.choices[0].message.content.startswith("Answer ") and r.choices[0].finish_reason == "stop"
    assert r.usage.prompt_tokens > 0 and r.usage.completion_tokens > 0
    assert [m.id for m in client.models.list()] == ["fake-model"]
    assert fake_openai.total_requests == 1 and sum(fake_openai.answered.values()) == 1


def test_stream_with_usage_and_done(fake_openai):
    body = json.dumps({"model": "m", "messages": MSGS, "stream": True,
                       "stream_options": {"include_usage": True}}).encode()
    req = urllib.request.Request(fake_openai.base_url + "/chat/completions", data=body,
                                 headers={"Content-Type": "application/json"})
    raw = urllib.request.urlopen(req, timeout=10).read().decode()
    events = [line[6:] for line in raw.split("\n\n") if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == fake_openai.responder({"messages": MSGS})
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] > 0


def test_faults_are_deterministic_per_seed(fake_openai):
    def draws(seed):
        s = FakeOpenAI(seed=seed, faults={"500": 0.3, "429": 0.2})
        return [s._draw_fault(f"k{i}", 0) for i in range(200)]

    a, b = draws(1), draws(1)
    assert a == b and a != draws(2)
    share = sum(x is not None for x in a) / len(a)
    assert 0.35 < share < 0.65
    with pytest.raises(ValueError):
        fake_openai.set_faults(bogus=0.1)
    with pytest.raises(ValueError):
        fake_openai.set_faults({"500": 0.8, "429": 0.5})


@pytest.mark.parametrize("fault,exc", [("429", openai.RateLimitError), ("500", openai.InternalServerError),
                                       ("401", openai.AuthenticationError), ("400", openai.BadRequestError)])
def test_status_faults(fake_openai, fault, exc):
    fake_openai.queue_faults(fault)
    with pytest.raises(exc) as info:
        sdk(fake_openai).chat.completions.create(model="m", messages=MSGS)
    if fault == "429":
        assert info.value.response.headers["retry-after"] == str(fake_openai.retry_after)
    assert not fake_openai.answered


def test_answer_faults(fake_openai):
    client = sdk(fake_openai)
    fake_openai.queue_faults("empty", "no_choices", "wrong_lang", "length")
    assert client.chat.completions.create(model="m", messages=MSGS).choices[0].message.content == ""
    assert client.chat.completions.create(model="m", messages=MSGS).choices == []
    wrong = client.chat.completions.create(model="m", messages=MSGS).choices[0].message.content
    assert any("\u4e00" <= ch <= "\u9fff" for ch in wrong)
    cut = client.chat.completions.create(model="m", messages=MSGS).choices[0]
    assert cut.finish_reason == "length"
    fake_openai.queue_faults("truncated")
    with pytest.raises(ValueError):
        client.chat.completions.create(model="m", messages=MSGS)
    fake_openai.queue_faults("disconnect")
    with pytest.raises(openai.APIConnectionError):
        client.chat.completions.create(model="m", messages=MSGS)


def test_hang_passes_the_client_timeout(fake_openai):
    fake_openai.hang_s = 10
    fake_openai.queue_faults("hang")
    client = openai.OpenAI(base_url=fake_openai.base_url, api_key="k", max_retries=0, timeout=0.3)
    with pytest.raises(openai.APITimeoutError):
        client.chat.completions.create(model="m", messages=MSGS)


def test_counters_by_call_key_and_responder(fake_openai):
    fake_openai.responder = lambda body: "fixed answer"
    client = sdk(fake_openai)
    for _ in range(2):
        r = client.chat.completions.create(model="m", messages=MSGS, extra_headers={"X-Itcollect-Call-Key": "abc"})
        assert r.choices[0].message.content == "fixed answer"
    assert fake_openai.counts["abc"] == 2 and fake_openai.paid_twice() == {"abc": 2}
    fake_openai.responder = None
    assert client.chat.completions.create(model="m", messages=MSGS).choices[0].message.content != "fixed answer"


def test_extra_routes():
    async def hello(request):
        return web.json_response({"hello": request.path})

    def install(app, server):
        assert isinstance(server, FakeOpenAI)
        app.router.add_get("/v1/hello", hello)

    for routes, path in (([("GET", "/v1/hello", hello)], "/hello"), (install, "/hello")):
        with FakeOpenAI(extra_routes=routes) as server:
            body = json.loads(urllib.request.urlopen(server.base_url + path, timeout=5).read())
            assert body == {"hello": "/v1/hello"}


def test_standalone_process_prints_url_and_can_be_configured():
    proc = subprocess.Popen([sys.executable, "-m", "tests.fakeserver", "--port", "0", "--latency-ms", "1"],
                            cwd=REPO, stdout=subprocess.PIPE, stdin=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1")
        root = url[: -len("/v1")]
        req = urllib.request.Request(root + "/_fake/config", data=json.dumps({"faults": {"500": 1.0}}).encode(),
                                     headers={"Content-Type": "application/json"})
        urllib.request.urlopen(req, timeout=5).read()
        client = openai.OpenAI(base_url=url, api_key="k", max_retries=0, timeout=5)
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(model="m", messages=MSGS)
        stats = json.loads(urllib.request.urlopen(root + "/_fake/stats", timeout=5).read())
        assert stats["requests"] == 1 and stats["faults"] == {"500": 1}
    finally:
        proc.stdin.close()
        proc.wait(15)
    assert proc.returncode == 0
