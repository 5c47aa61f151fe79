"""An OpenAI-compatible loopback server for the test suite and the benchmarks.

It speaks real HTTP on 127.0.0.1 (port 0: a free port) so the official ``openai`` SDK, our retry
code and our streaming code run exactly as against vLLM or api.openai.com. It serves
``/v1/chat/completions`` (JSON, and SSE when ``stream: true``) and ``/v1/models``, with:

* latency: fixed seconds or a ``(low, high)`` range;
* deterministic fault injection: each request draws its fault from
  ``hash(seed, call identity, n-th time this call was seen)``, so a run's faults do not depend on
  arrival order, and a retry of a call draws again. Kinds (rates per kind, 0..1, summing <= 1):
  ``429`` (with Retry-After), ``500``, ``hang`` (answers after ``hang_s``, i.e. past the client
  timeout), ``truncated`` (a 200 whose JSON body is cut in half), ``disconnect`` (connection
  dropped mid-body), ``empty`` (empty content), ``no_choices``, ``wrong_lang`` (an answer in
  another language), ``length`` (half the answer with ``finish_reason: length``), ``400`` and
  ``401``. ``queue_faults(kind, ...)`` forces the next requests' faults in order (``None``: a
  clean answer), for tests that need "429, then success";
* ``responder(request_json) -> str`` makes the answer text (settable at run time); it sees the
  request's ``model``, so one server can play several systems;
* ``strict_models``: a chat for a model not in ``models`` is answered 404 ("The model `x` does not
  exist.", as vLLM answers), else every model name is served;
* ``stream_chunk_delay``: seconds between the pieces of a streamed answer (a slow model, so a
  test can watch an answer arrive piece by piece);
* counters: every request (``requests``), per call identity (``counts``: the
  ``X-Itcollect-Call-Key`` header itcollect sends, else a hash of the body) and completed 200
  answers per identity (``answered``, what a real endpoint bills), plus ``max_in_flight``.

Extra routes (helper code for ``/v1/files``, ``/v1/batches``...): pass
``FakeOpenAI(extra_routes=[("POST", "/v1/files", handler), ...])`` or a callable
``extra_routes(app, server)`` that adds them to ``app.router``; both are applied before start.
Handlers run on the server's own event loop thread.

Standalone (for benchmarks): ``python -m tests.fakeserver --port 0 --latency-ms 1000`` prints
``http://127.0.0.1:PORT/v1`` on its first stdout line and serves until stdin closes or SIGTERM.
``GET /_fake/stats`` returns its counters (and its process CPU seconds); ``POST /_fake/config`` (JSON: latency, faults, seed,
retry_after, hang_s, reset) changes it at run time.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from aiohttp import web

FAULT_KINDS = ("429", "500", "hang", "truncated", "disconnect", "empty", "no_choices", "wrong_lang", "length",
               "400", "401")

Responder = Callable[[dict], str]

_WRONG_LANG = {"zh": "这是一个完全不同语言的回答，用来测试语言检查。",
               "en": "This answer is written in a completely different language on purpose."}


def _has_cjk(text: str) -> bool:
    return any("\u4e00" <= ch <= "\u9fff" for ch in text)


def default_responder(body: dict) -> str:
    """A deterministic answer derived from the last user message (tests that need realistic
    answers supply their own responder)."""
    messages = body.get("messages") or []
    last = ""
    for m in reversed(messages):
        if m.get("role") == "user":
            content = m.get("content")
            last = content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)
            break
    digest = hashlib.sha256(last.encode("utf-8")).hexdigest()[:8]
    return f"Answer {digest}: {last[:60]}"


def count_tokens(text: str) -> int:
    """The fake's token count: about 4 characters a token (deterministic)."""
    return max(1, (len(text) + 3) // 4) if text else 0


class FakeOpenAI:
    """The loopback server; ``start()`` runs it in a daemon thread, ``stop()`` ends it."""

    def __init__(self, *, latency: float | tuple[float, float] = 0.0, faults: dict[str, float] | None = None,
                 seed: int = 0, retry_after: float | str = 0.05, retry_after_ms: float | None = None,
                 hang_s: float = 30.0, responder: Responder | None = None, host: str = "127.0.0.1",
                 port: int = 0, models: tuple[str, ...] = ("fake-model",),
                 extra_routes: Any = None, stream_chunk_chars: int = 8, stream_chunk_delay: float = 0.0,
                 strict_models: bool = False) -> None:
        self.host = host
        self.port = port
        self.models = models
        self.strict_models = strict_models
        self.seed = seed
        self.retry_after = retry_after
        self.retry_after_ms = retry_after_ms
        self.hang_s = hang_s
        self.stream_chunk_chars = stream_chunk_chars
        self.stream_chunk_delay = stream_chunk_delay
        self._responder: Responder = responder or default_responder
        self._latency: float | tuple[float, float] = latency
        self._faults: dict[str, float] = {}
        self.set_faults(**(faults or {}))
        self._lock = threading.Lock()
        self.reset()
        self.app = web.Application(client_max_size=64 * 1024 * 1024)
        self.app.router.add_post("/v1/chat/completions", self._chat)
        self.app.router.add_get("/v1/models", self._models)
        self.app.router.add_get("/_fake/stats", self._stats)
        self.app.router.add_get("/_fake/timeline", self._timeline)
        self.app.router.add_post("/_fake/config", self._config)
        if callable(extra_routes):
            extra_routes(self.app, self)
        else:
            for method, path, handler in extra_routes or ():
                self.app.router.add_route(method, path, handler)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._stopped: asyncio.Event | None = None
        self.base_url = ""

    # -- configuration (thread-safe enough: plain attribute swaps) --------------------------------
    @property
    def responder(self) -> Responder:
        return self._responder

    @responder.setter
    def responder(self, fn: Responder | None) -> None:
        self._responder = fn or default_responder

    def set_latency(self, latency: float | tuple[float, float]) -> None:
        """Seconds before each answer: a number, or a (low, high) range drawn per request."""
        self._latency = latency

    def set_faults(self, rates: dict[str, float] | None = None, **kw: float) -> None:
        """Per-kind fault rates, e.g. ``set_faults({"429": 0.1, "hang": 0.05})`` or ``set_faults(hang=1)``;
        ``rate_limit`` / ``server_error`` name 429 / 500. Replaces the previous rates (none: no faults)."""
        aliases = {"rate_limit": "429", "server_error": "500"}
        merged = {aliases.get(k, k): v for k, v in {**(rates or {}), **kw}.items()}
        unknown = set(merged) - set(FAULT_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}; known: {FAULT_KINDS}")
        if sum(merged.values()) > 1.0 + 1e-9:
            raise ValueError("fault rates sum to more than 1")
        self._faults = {k: float(v) for k, v in merged.items() if v > 0}

    def queue_faults(self, *kinds: str | None) -> None:
        """The next requests get these faults, in arrival order (None: answered normally)."""
        for kind in kinds:
            if kind is not None and kind not in FAULT_KINDS:
                raise ValueError(f"unknown fault kind {kind!r}")
        with self._lock:
            self._queued.extend(kinds)

    def reset(self) -> None:
        """Forget every counter (not the configuration)."""
        self.requests: list[dict[str, Any]] = []
        self.counts: Counter[str] = Counter()
        self.answered: Counter[str] = Counter()
        self.faults_served: Counter[str] = Counter()
        self._queued: list[str | None] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.first_request_at: float | None = None
        self.last_answer_at: float | None = None
        self.answer_times: list[float] = []

    @property
    def total_requests(self) -> int:
        return len(self.requests)

    def paid_twice(self) -> dict[str, int]:
        """Call identities answered (200, complete) more than once."""
        return {k: n for k, n in self.answered.items() if n > 1}

    def stats(self) -> dict[str, Any]:
        return {"requests": len(self.requests), "answered": sum(self.answered.values()),
                "distinct_calls": len(self.counts), "paid_twice": len(self.paid_twice()),
                "faults": dict(self.faults_served), "max_in_flight": self.max_in_flight,
                "first_request_at": self.first_request_at, "last_answer_at": self.last_answer_at,
                "cpu_s": time.process_time()}

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> FakeOpenAI:
        ready = threading.Event()
        error: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._serve(ready))
            except BaseException as exc:  # pragma: no cover - reported to start()
                error.append(exc)
                ready.set()
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name="fake-openai", daemon=True)
        self._thread.start()
        ready.wait(30)
        if error:
            raise error[0]
        return self

    async def _serve(self, ready: threading.Event) -> None:
        self._stopped = asyncio.Event()
        self._runner = web.AppRunner(self.app, handler_cancellation=True, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, backlog=4096)
        await site.start()
        sock = site._server.sockets[0]  # the real port when port=0
        self.port = sock.getsockname()[1]
        self.base_url = f"http://{self.host}:{self.port}/v1"
        ready.set()
        await self._stopped.wait()
        await self._runner.cleanup()

    def stop(self) -> None:
        if self._loop is not None and self._stopped is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._stopped.set)
            self._thread.join(30)
        self._thread = None

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- request handling -----------------------------------------------------------------------
    def _identity(self, request: web.Request, raw: bytes) -> str:
        key = request.headers.get("X-Itcollect-Call-Key")
        return key or "body:" + hashlib.sha256(raw).hexdigest()[:32]

    def _draw_fault(self, ident: str, nth: int) -> str | None:
        if not self._faults:
            return None
        h = hashlib.sha256(f"{self.seed}|{ident}|{nth}".encode()).digest()
        x = int.from_bytes(h[:8], "big") / 2**64
        acc = 0.0
        for kind in FAULT_KINDS:
            acc += self._faults.get(kind, 0.0)
            if x < acc:
                return kind
        return None

    def _latency_s(self, ident: str, nth: int) -> float:
        lat = self._latency
        if isinstance(lat, (tuple, list)):
            rnd = random.Random(f"{self.seed}|lat|{ident}|{nth}")
            return rnd.uniform(float(lat[0]), float(lat[1]))
        return float(lat)

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [
            {"id": m, "object": "model", "created": 0, "owned_by": "itcollect-tests"} for m in self.models]})

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats())

    async def _timeline(self, request: web.Request) -> web.Response:
        """When each request arrived and each complete answer left (epoch seconds): lets a
        benchmark see ramp-up, steady state and tail instead of one average."""
        return web.json_response({"request_times": [r["at"] for r in self.requests],
                                  "answer_times": list(self.answer_times)})

    async def _config(self, request: web.Request) -> web.Response:
        cfg = await request.json()
        if cfg.get("reset"):
            self.reset()
        if "latency" in cfg:
            self.set_latency(tuple(cfg["latency"]) if isinstance(cfg["latency"], list) else cfg["latency"])
        if "faults" in cfg:
            self.set_faults(cfg["faults"])
        for key in ("seed", "retry_after", "retry_after_ms", "hang_s", "stream_chunk_delay"):
            if key in cfg:
                setattr(self, key, cfg[key])
        return web.json_response({"ok": True, **self.stats()})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        ident = self._identity(request, raw)
        with self._lock:
            nth = self.counts[ident]
            self.counts[ident] += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            if self.first_request_at is None:
                self.first_request_at = time.time()
        record: dict[str, Any] = {"ident": ident, "nth": nth, "at": time.time(), "fault": None,
                                  "auth": request.headers.get("Authorization", "")}
        self.requests.append(record)
        try:
            try:
                body = json.loads(raw)
            except ValueError:
                return web.json_response({"error": {"message": "invalid JSON body", "type": "invalid_request_error"}},
                                         status=400)
            record["body"] = body
            if not isinstance(body, dict) or "messages" not in body or "model" not in body:
                return web.json_response({"error": {"message": "model and messages are required",
                                                    "type": "invalid_request_error"}}, status=400)
            if self.strict_models and body["model"] not in self.models:  # as vLLM answers an unknown model
                return web.json_response({"error": {"message": f"The model `{body['model']}` does not exist.",
                                                    "type": "NotFoundError", "code": 404}}, status=404)
            with self._lock:
                queued = bool(self._queued)
                fault = self._queued.pop(0) if queued else None
            if not queued:
                fault = self._draw_fault(ident, nth)
            record["fault"] = fault
            if fault:
                with self._lock:
                    self.faults_served[fault] += 1
            delay = self._latency_s(ident, nth)
            if fault == "hang":
                delay = max(delay, self.hang_s)
            if delay > 0:
                await asyncio.sleep(delay)
            if fault == "429":
                headers = {"Retry-After": str(self.retry_after)}
                if self.retry_after_ms is not None:
                    headers["retry-after-ms"] = str(self.retry_after_ms)
                return web.json_response({"error": {"message": "Rate limit reached (injected)", "type": "requests",
                                                    "code": "rate_limit_exceeded"}}, status=429, headers=headers)
            if fault == "400":
                return web.json_response({"error": {"message": "Bad request (injected)",
                                                    "type": "invalid_request_error"}}, status=400)
            if fault == "401":
                return web.json_response({"error": {"message": "Incorrect API key provided (injected)",
                                                    "type": "invalid_request_error", "code": "invalid_api_key"}},
                                         status=401)
            if fault == "500":
                return web.json_response({"error": {"message": "Internal server error (injected)",
                                                    "type": "server_error"}}, status=500)
            text = self._responder(body)
            finish = "stop"
            if fault == "empty":
                text = ""
            elif fault == "wrong_lang":
                text = _WRONG_LANG["en"] if _has_cjk(text) else _WRONG_LANG["zh"]
            elif fault == "length":
                text = text[: max(1, len(text) // 2)]
                finish = "length"
            if body.get("stream"):
                return await self._stream(request, body, text, finish, fault, ident)
            return await self._plain(request, body, text, finish, fault, ident)
        finally:
            with self._lock:
                self.in_flight -= 1

    def _usage(self, body: dict, text: str) -> dict[str, int]:
        prompt = sum(count_tokens(m.get("content") if isinstance(m.get("content"), str) else json.dumps(m))
                     + 4 for m in body.get("messages") or [])
        completion = count_tokens(text)
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    def _answered(self, ident: str) -> None:
        with self._lock:
            self.answered[ident] += 1
            self.last_answer_at = time.time()
            self.answer_times.append(self.last_answer_at)

    async def _plain(self, request: web.Request, body: dict, text: str, finish: str, fault: str | None,
                     ident: str) -> web.StreamResponse:
        payload = {"id": "chatcmpl-" + hashlib.sha256(f"{ident}|{time.time()}".encode()).hexdigest()[:24],
                   "object": "chat.completion", "created": int(time.time()), "model": body["model"],
                   "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                "finish_reason": finish, "logprobs": None}],
                   "usage": self._usage(body, text)}
        if fault == "no_choices":
            payload["choices"] = []
        data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        if fault == "truncated":
            return web.Response(body=data[: len(data) // 2], content_type="application/json")
        if fault == "disconnect":
            resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json",
                                                           "Content-Length": str(len(data))})
            await resp.prepare(request)
            await resp.write(data[: len(data) // 2])
            if request.transport is not None:
                request.transport.close()
            return resp
        if fault not in ("empty", "no_choices"):
            self._answered(ident)
        return web.Response(body=data, content_type="application/json")

    async def _stream(self, request: web.Request, body: dict, text: str, finish: str, fault: str | None,
                      ident: str) -> web.StreamResponse:
        resp = web.StreamResponse(status=200, headers={"Content-Type": "text/event-stream",
                                                       "Cache-Control": "no-cache"})
        await resp.prepare(request)
        cid = "chatcmpl-" + hashlib.sha256(f"{ident}|{time.time()}".encode()).hexdigest()[:24]
        base = {"id": cid, "object": "chat.completion.chunk", "created": int(time.time()), "model": body["model"]}

        def event(choices: list, usage: dict | None = None) -> bytes:
            chunk = dict(base, choices=choices)
            if usage is not None:
                chunk["usage"] = usage
            return b"data: " + json.dumps(chunk, ensure_ascii=False).encode("utf-8") + b"\n\n"

        await resp.write(event([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]))
        step = max(1, self.stream_chunk_chars)
        pieces = [text[i:i + step] for i in range(0, len(text), step)]
        cut = len(pieces) // 2 if fault in ("truncated", "disconnect") else None
        for i, piece in enumerate(pieces):
            if cut is not None and i == cut:
                if request.transport is not None:
                    request.transport.close()
                return resp
            if i and self.stream_chunk_delay > 0:  # a slow model: each piece on the wire a moment apart
                await asyncio.sleep(self.stream_chunk_delay)
            await resp.write(event([{"index": 0, "delta": {"content": piece}, "finish_reason": None}]))
        if cut is not None:  # nothing to cut in the middle of: drop before the end
            if request.transport is not None:
                request.transport.close()
            return resp
        if fault != "no_choices":
            await resp.write(event([{"index": 0, "delta": {}, "finish_reason": finish}]))
        if (body.get("stream_options") or {}).get("include_usage"):
            await resp.write(event([], self._usage(body, text)))
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        if fault not in ("empty", "no_choices"):
            self._answered(ident)
        return resp


def _load_responder(spec: str) -> Responder:
    import importlib

    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name or "responder")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.fakeserver", description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--latency-ms", type=float, default=0.0)
    ap.add_argument("--latency-max-ms", type=float, default=None, help="draw latency in [latency-ms, this]")
    ap.add_argument("--faults", default="", help='JSON of per-kind rates, e.g. {"429": 0.1}')
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--responder", default="", help="module:function producing answer text")
    args = ap.parse_args(argv)
    latency: float | tuple[float, float] = args.latency_ms / 1000
    if args.latency_max_ms is not None:
        latency = (args.latency_ms / 1000, args.latency_max_ms / 1000)
    server = FakeOpenAI(host=args.host, port=args.port, latency=latency, seed=args.seed,
                        faults=json.loads(args.faults) if args.faults else None,
                        responder=_load_responder(args.responder) if args.responder else None)
    server.start()
    print(server.base_url, flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())

    def watch_stdin() -> None:
        try:
            sys.stdin.read()
        except Exception:  # pragma: no cover
            pass
        done.set()

    if not sys.stdin.isatty():
        threading.Thread(target=watch_stdin, daemon=True).start()
    try:
        done.wait()
    except KeyboardInterrupt:
        pass
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
