"""The async LLM client every stage uses: one per command run.

It talks to any OpenAI-compatible endpoint through the official ``openai`` SDK (``AsyncOpenAI``)
with the SDK's own retries switched off, because retrying belongs here, next to the ledger:

* every call gets a key (sha256 of its exact request body and its sample index) and is written to
  the store's ledger as ``pending`` *before* it is sent; a call already ``done`` is answered from
  the ledger without HTTP. The answer, usage, latency and cost are written when it returns, in
  the same transaction as the run's counters. After ``kill -9`` a pending call is simply sent again
  next run; a done call is never paid twice.
* retries with exponential backoff and jitter on 429 / 408 / 409 / 5xx / timeouts / connection
  errors, honouring ``Retry-After`` and ``retry-after-ms``; an empty, truncated or malformed
  answer (or one without choices) is a failed attempt, never a silent ``None``.
* roles as data: the client serves the roles it is given as :class:`~itcollect.llm.endpoints.Endpoint`
  entries (``endpoints=resolve_endpoints(...)``, or ``roles=`` with the command's ``base_url`` /
  ``model``), one ``AsyncOpenAI`` per endpoint and key.
* a circuit breaker per endpoint: ``[llm].circuit_breaker_failures`` consecutive calls to one
  endpoint failing after all their retries (or a 401/403/404: bad key or unknown model) raise
  :class:`EndpointDown` naming the URL, and :attr:`LLMClient.endpoint_down` tells the run to stop.
* bounded concurrency (call slots held only while a request is in flight, handed out by
  priority), requests- and tokens-per-minute token buckets and the pause a 429 asks for (per
  endpoint: a provider counts its own), ``max_cost_usd`` and ``dry_run``.
* start-up pacing: the first ``concurrency`` requests of a run go out at most
  ``[llm].start_pace_per_s`` a second rather than all at once. A burst of hundreds of simultaneous
  first requests is what providers answer with 429s, and its answers come back as a burst too:
  each needs a few ms of our CPU before the dialogue's next call goes out, so a burst of 256 keeps
  slots idle for most of a second, and with steady latencies that wave pattern repeats for the
  whole run. Paced, the answers arrive spread out and every slot is re-used as soon as it frees.

The SQLite writes run on the event loop (no thread hand-off), grouped by :class:`LedgerWriter`: the
writes asked for during one loop turn share one short WAL transaction, and each caller waits for it.
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import json
import os
import random
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from itcollect.config import Config
from itcollect.kernel.errors import ServiceError
from itcollect.llm.answers import (
    BadAnswer,
    ChatResult,
    Completion,
    estimate_call,
    ledger_result,
    parse_completion,
    rate_limit_tokens,
    token_count,
    usage_tokens,
)
from itcollect.llm.batch import BatchCall
from itcollect.llm.endpoints import DEFAULT_ROLES, ROLES, Endpoint, resolve_endpoints
from itcollect.llm.errors import CallInBatch, CostLimitReached, EndpointDown, LLMCallError
from itcollect.llm.ledger import LedgerWriter
from itcollect.llm.pricing import Prices, call_cost, price_for
from itcollect.llm.ratelimit import PrioritySlots, TokenBucket
from itcollect.llm.watch import owned_endpoint_failure
from itcollect.settings import settings as typed_settings
from itcollect.store import dumps
from itcollect.store.interfaces import LLMStore

#: Header carrying the call key, so a server (and our test double) can count calls exactly.
CALL_KEY_HEADER = "X-Itcollect-Call-Key"


def _root_cause(exc: BaseException) -> BaseException:
    """The innermost exception of the ``__cause__`` / ``__context__`` chain (``exc`` if none)."""
    seen = {id(exc)}
    while (nxt := exc.__cause__ or exc.__context__) is not None and id(nxt) not in seen:
        seen.add(id(nxt))
        exc = nxt
    return exc


#: Connection attempts refused (or unresolvable) before any answer that stop a run at once.
UNREACHABLE_ATTEMPTS = 3


@dataclass(slots=True)
class _EndpointState:
    """The circuit breaker and the rate state of one endpoint (its URL), shared by its roles."""

    url: str
    rpm_limit: float
    tpm_limit: float
    rpm: TokenBucket | None = None
    tpm: TokenBucket | None = None
    pause_until: float = 0.0  # a 429's Retry-After: nothing goes out before
    consecutive_failures: int = 0
    down: str | None = None  # the breaker is open: why
    reached: bool = False  # something answered there (even an error status) in this run
    unreachable: int = 0  # attempts that found nobody listening, while it never answered

    def new_loop(self) -> None:
        """Fresh token buckets (they hold locks of one event loop)."""
        self.rpm = TokenBucket(self.rpm_limit) if self.rpm_limit > 0 else None
        self.tpm = TokenBucket(self.tpm_limit) if self.tpm_limit > 0 else None


@dataclass(slots=True)
class _Role:
    endpoint: Endpoint
    client_key: tuple[str | None, str]  # (base URL, API key) of its AsyncOpenAI
    client: Any  # AsyncOpenAI
    price: Prices
    display_url: str
    state: _EndpointState
    defaults: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.endpoint.role

    @property
    def model(self) -> str:
        return self.endpoint.model


def _sdk_types() -> Any:
    """The SDK classes a chat call is parsed into (imported with the SDK, not at module import)."""
    # deferred heavy import: the SDK takes ~0.6 s to import; see the package docstring
    from openai import AsyncStream
    from openai.types.chat import ChatCompletion, ChatCompletionChunk

    return SimpleNamespace(ChatCompletion=ChatCompletion, ChatCompletionChunk=ChatCompletionChunk,
                           AsyncStream=AsyncStream)


def _http_client(openai: Any, limits: Any, timeout_s: float) -> Any:
    """The SDK's aiohttp transport (``openai[aiohttp]``) when aiohttp is installed, else its httpx one.

    Both are the SDK's own; at hundreds of concurrent calls the aiohttp transport spends about a
    third less CPU per call (httpcore scans its whole pool on every request), see
    benchmarks/RESULTS.md. ``ITCOLLECT_HTTP_TRANSPORT=httpx`` forces the default transport.
    """
    if os.environ.get("ITCOLLECT_HTTP_TRANSPORT", "").lower() != "httpx":
        try:
            return openai.DefaultAioHttpClient(limits=limits, timeout=timeout_s)
        except RuntimeError:  # the SDK's placeholder when aiohttp is missing
            pass
    return openai.DefaultAsyncHttpxClient(limits=limits, timeout=timeout_s)


def _redact_url(url: str) -> str:
    """The URL without user:password, so no credential is ever stored or printed."""
    parts = urlsplit(url)
    if parts.username or parts.password:
        host = parts.hostname or ""
        if parts.port:
            host += f":{parts.port}"
        return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    return url


def parse_retry_after(headers: Any) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date)."""
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())


class LLMClient:
    """One per command run. Async. Owns an AsyncOpenAI per endpoint, the semaphore, the rate
    limiters, the run's counters (its ``llm_runs`` row), and uses ``store`` for the ledger."""

    def __init__(self, config: Config, store: LLMStore, *, command: str,
                 endpoints: Mapping[str, Endpoint] | None = None, roles: Sequence[str] = DEFAULT_ROLES,
                 base_url: str | None = None, model: str | None = None, concurrency: int | None = None,
                 max_cost_usd: float | None = None, dry_run: bool = False, env: Mapping[str, str] | None = None) -> None:
        """``endpoints``: the roles to serve (:func:`~itcollect.llm.endpoints.resolve_endpoints`);
        without them, ``roles`` resolved from the config and the command's ``base_url`` / ``model``."""
        # deferred heavy imports (the SDK ~0.6 s, its HTTP stack ~0.1 s): importing itcollect.llm
        # stays cheap for the commands and modules that only catch its errors
        import httpx2
        import openai

        self._openai = openai
        self._types = _sdk_types()
        self.config = config
        self.store = store
        self.command = command
        self.dry_run = dry_run
        typed = typed_settings(config)
        llm = typed.llm
        self.timeout_s = llm.timeout_s
        self.max_retries = llm.max_retries
        self.backoff_base_s = llm.backoff_base_s
        self.backoff_max_s = llm.backoff_max_s
        self.breaker_limit = llm.circuit_breaker_failures
        self.concurrency = int(concurrency or llm.concurrency)
        if self.concurrency < 1:
            raise ServiceError("concurrency must be at least 1")
        self.max_cost_usd = max_cost_usd if max_cost_usd and max_cost_usd > 0 else None
        if endpoints is None:
            endpoints = resolve_endpoints(typed, roles, base_url=base_url, model=model)
        elif base_url is not None or model is not None or tuple(roles) != DEFAULT_ROLES:
            raise ValueError("pass endpoints, or roles / base_url / model to resolve them, not both")
        if not endpoints:
            raise ValueError("an LLM client needs at least one role")
        self.endpoints: dict[str, Endpoint] = dict(endpoints)
        limits = httpx2.Limits(max_connections=max(100, self.concurrency * 2),
                               max_keepalive_connections=max(20, self.concurrency + 16))

        def make_client(url: str | None, api_key: str) -> Any:
            return openai.AsyncOpenAI(api_key=api_key, base_url=url, max_retries=0, timeout=self.timeout_s,
                                      http_client=_http_client(openai, limits, self.timeout_s))

        self._make_client = make_client
        self._clients: dict[tuple[str | None, str], Any] = {}
        self._states: dict[str, _EndpointState] = {}
        self._roles: dict[str, _Role] = {}
        self._set_up_roles(typed, os.environ if env is None else env)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._new_loop_state()
        self._rng = random.Random()
        pace = llm.start_pace_per_s
        self._pace_gap = 1.0 / pace if pace > 0 else 0.0
        self._paced = 0 if self._pace_gap else self.concurrency  # first requests paced so far
        self._pace_next = 0.0
        self._down: str | None = None  # the first breaker that opened: the run stops
        self._closed = False
        # live counters of this run (the llm_runs row mirrors the persistent ones)
        self.sent = 0
        self.from_ledger = 0
        self.failed = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.cost_usd = 0.0
        self.attempts = 0
        self.retries = 0
        self.in_flight = 0
        self.estimated_calls = 0
        self._started = time.monotonic()
        self._first_send: float | None = None
        self.run_id: int | None = None if dry_run else store.start_llm_run(command)
        self._ledger = LedgerWriter(store, self.run_id)

    def _set_up_roles(self, typed: Any, env: Mapping[str, str]) -> None:
        """An ``AsyncOpenAI`` per endpoint and key, the breaker and rate state per endpoint URL,
        and each role's price and sampling defaults."""
        sdk_base = env.get("OPENAI_BASE_URL") or None
        any_url = any(ep.base_url for ep in self.endpoints.values()) or bool(sdk_base)
        llm = typed.llm
        for role, ep in self.endpoints.items():
            key = (ep.base_url, self._api_key(ep, env, any_url))
            if key not in self._clients:
                self._clients[key] = self._make_client(*key)
            client = self._clients[key]
            url = _redact_url(str(client.base_url)).rstrip("/")
            state = self._states.get(url)
            if state is None:
                state = self._states[url] = _EndpointState(url, float(llm.requests_per_minute),
                                                           float(llm.tokens_per_minute))
                state.new_loop()
            self._roles[role] = _Role(ep, key, client, price_for(typed.prices, ep.model), url, state, ep.sampling)

    def _api_key(self, ep: Endpoint, env: Mapping[str, str], any_url: bool) -> str:
        """The key of an endpoint, read from its environment variable at run time (never stored)."""
        key_env = ep.api_key_env or "OPENAI_API_KEY"  # an empty name: the SDK's own variable
        api_key = env.get(key_env) or env.get("OPENAI_API_KEY") or ""
        if api_key:
            return api_key
        if any_url:
            return "sk-no-key"  # local servers (vLLM, Ollama, llama.cpp) accept any key
        if self.dry_run:
            return "sk-dry-run"
        raise ServiceError(
            f"no LLM endpoint configured: pass --base-url URL --model NAME for any OpenAI-compatible "
            f"server, set ${key_env} (the variable [llm].api_key_env names) for api.openai.com, "
            f"or use --local for the bundled local model")

    # -- public helpers ------------------------------------------------------------------------
    @property
    def roles(self) -> tuple[str, ...]:
        """The LLM roles this client serves (those it was set up with)."""
        return tuple(self._roles)

    def model_for(self, role: str) -> str:
        return self._role(role).model

    def endpoint_for(self, role: str) -> Endpoint:
        """The resolved settings of a role (endpoint, model, key variable, sampling)."""
        return self._role(role).endpoint

    def base_url_for(self, role: str) -> str:
        """The endpoint of a role, without credentials (for messages and provenance)."""
        return self._role(role).display_url

    def sdk_client(self, role: str) -> Any:
        """The role's ``openai.AsyncOpenAI`` (endpoint, key, HTTP transport), for the API calls this
        client does not make itself: the Batch API's files and batches."""
        return self._role(role).client

    def request_body(self, role: str, messages: list[dict], *, sample: int = 0, **params: Any) -> dict:
        """The exact ``/v1/chat/completions`` body of a call (also the Batch API line's body).

        ``sample`` is not sent: it only makes a re-sample a different call in the ledger.
        """
        r = self._role(role)
        body: dict[str, Any] = {"model": r.model, "messages": messages}
        body.update(r.defaults)
        for k, v in params.items():
            if k in ("stream", "stream_options", "model", "messages"):
                raise ValueError(f"{k!r} is set by the client, not a call parameter")
            if v is None:
                body.pop(k, None)
            else:
                body[k] = v
        return body

    def call_key(self, role: str, messages: list[dict], *, sample: int = 0, **params: Any) -> str:
        """sha256 of the call's model, messages and parameters (its body) and sample index."""
        return self._key(self._canonical(self.request_body(role, messages, **params)), sample)

    def batch_call(self, role: str, messages: list[dict], *, sample: int = 0, **params: Any) -> BatchCall:
        """The call :meth:`chat` would make (same key, same body), for the Batch API transport."""
        r = self._role(role)
        body = self.request_body(role, messages, **params)
        request_json = self._canonical(body)
        return BatchCall(self._key(request_json, sample), role, r.model, r.display_url, body, request_json)

    def price_for(self, role: str) -> Prices:
        return self._role(role).price

    def stats(self) -> dict[str, Any]:
        """Live numbers of this run (for the progress bar and the end-of-run summary)."""
        elapsed = time.monotonic() - (self._first_send or self._started)
        return {"sent": self.sent, "from_ledger": self.from_ledger, "failed": self.failed,
                "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "tokens": self.prompt_tokens + self.completion_tokens, "cost_usd": round(self.cost_usd, 6),
                "calls_per_s": round(self.sent / elapsed, 2) if elapsed > 0 and self.sent else 0.0,
                "in_flight": self.in_flight, "attempts": self.attempts, "retries": self.retries,
                "estimated_calls": self.estimated_calls, "dry_run": self.dry_run}

    @property
    def cost_limit_reached(self) -> bool:
        """The run spent ``max_cost_usd``: no new call is sent (calls already in flight finish, so
        the total may pass the cap by what they cost)."""
        return self.max_cost_usd is not None and self.cost_usd >= self.max_cost_usd

    @property
    def endpoint_down(self) -> str | None:
        """The reason the run must stop, once the circuit breaker of one of its endpoints opened."""
        return self._down

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._ledger.flush()
        if self.run_id is not None:
            self.store.finish_llm_run(self.run_id)
        for client in self._clients.values():
            await client.close()

    async def __aenter__(self) -> LLMClient:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    # -- the call --------------------------------------------------------------------------------
    async def chat(self, role: str, messages: list[dict], *, sample: int = 0, priority: float = 0.0,
                   on_delta: Callable[[str], None] | None = None,
                   on_reset: Callable[[], None] | None = None, **params: Any) -> ChatResult:
        """Answer ``messages`` as ``role`` ("assistant" | "annotator" | "judge").

        ``params`` override the role's temperature / max_tokens / top_p (and may add others).
        ``sample`` distinguishes re-samples of the same prompt (a validation retry must get a new
        call, not the ledger's answer). ``on_delta`` streams: it gets each text piece as it
        arrives; ``on_reset`` is called when a streamed attempt failed after pieces were shown
        and the answer starts again. ``priority``: when all call slots are taken, the waiting call
        with the lowest value goes next (ties: first come). Raises LLMCallError (CallInBatch for a
        call out in a Batch API batch), EndpointDown or CostLimitReached.
        """
        r = self._role(role)
        if r.state.down:
            raise EndpointDown(r.state.down)
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._bind_loop(loop)
        body = self.request_body(role, messages, **params)
        request_json = self._canonical(body)
        key = self._key(request_json, sample)

        stored = self.store.ledger_answer(key)
        if stored is not None:
            if stored["status"] == "batched":  # paid for in a batch: sending it again pays twice
                raise CallInBatch(f"this {role} call is out in Batch API batch {stored['batch_id']}; "
                                   f"`itcollect simulate --batch-api` collects it (or --cancel frees it)")
            self._count_from_ledger()
            result = ledger_result(key, stored)
            if on_delta is not None:
                on_delta(result.text)
            return result
        shared = self._inflight.get(key)
        if shared is not None:  # the same call is in flight in this run: wait for it, pay once
            first: ChatResult = await asyncio.shield(shared)
            self._count_from_ledger()
            if on_delta is not None:
                on_delta(first.text)
            return ChatResult(first.text, first.finish_reason, first.model, key, first.prompt_tokens,
                              first.completion_tokens, 0.0, 0.0, True, 0)
        if self.dry_run:
            return self._estimate(r, key, body)
        if self.cost_limit_reached:
            raise CostLimitReached(f"the run's cost reached the limit of ${self.max_cost_usd:.2f} "
                                   f"(spent ${self.cost_usd:.4f}); nothing more is sent")

        fut: asyncio.Future = loop.create_future()
        self._inflight[key] = fut
        try:
            await self._ledger.begin(key, role, r.model, r.display_url, request_json)
            result = await self._send(r, key, body, request_json.encode(), priority, on_delta, on_reset)
        except BaseException as exc:
            if not fut.done():
                if isinstance(exc, Exception):
                    fut.set_exception(exc)
                    fut.exception()  # mark retrieved: waiters re-raise it, nobody else must
                else:
                    fut.cancel()
            raise
        else:
            fut.set_result(result)
        finally:
            del self._inflight[key]
        return result

    def rank_calls_by(self, rule: Callable[[float], float]) -> None:
        """From now on calls wait for a slot in the order of ``rule(priority)``, those already
        waiting included (see :class:`PrioritySlots`)."""
        self._sem.rank_by(rule)

    # -- internals -------------------------------------------------------------------------------
    def _new_loop_state(self) -> None:
        """The pieces bound to an event loop: semaphore, rate buckets, calls in flight."""
        self._sem = PrioritySlots(self.concurrency)
        for state in self._states.values():
            state.new_loop()
        self._inflight: dict[str, asyncio.Future] = {}

    def _bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """A client used from a second event loop (one ``asyncio.run`` per step) gets fresh HTTP
        clients and loop state: connections and futures of the first loop cannot be reused."""
        if self._loop is not None:
            self._ledger.flush()
            self._clients = {key: self._make_client(*key) for key in self._clients}
            for r in self._roles.values():
                r.client = self._clients[r.client_key]
            self._new_loop_state()
        self._loop = loop

    def _role(self, role: str) -> _Role:
        try:
            return self._roles[role]
        except KeyError:
            raise ValueError(f"LLM role {role!r} is not set up in this client (it has "
                             f"{', '.join(self._roles)}; roles are {ROLES})") from None

    @staticmethod
    def _canonical(body: dict) -> str:
        return dumps(body)  # the store's canonical JSON: sorted keys, compact, UTF-8 as is

    @staticmethod
    def _key(request_json: str, sample: int) -> str:
        h = hashlib.sha256(request_json.encode("utf-8"))
        if sample:
            h.update(f"\x00sample={int(sample)}".encode())
        return h.hexdigest()

    def _count_from_ledger(self) -> None:
        self.from_ledger += 1
        if self.run_id is not None:
            self._ledger.count(from_ledger=1)

    def _estimate(self, r: _Role, key: str, body: dict) -> ChatResult:
        """dry_run: nothing recorded or sent; count what the call would probably cost."""
        est = estimate_call(body)
        pt, ct = est.prompt_tokens, est.completion_tokens
        cost = est.cost(r.price)
        self.estimated_calls += 1
        self.prompt_tokens += pt
        self.completion_tokens += ct
        self.cost_usd += cost
        return ChatResult("", "dry_run", r.model, key, pt, ct, 0.0, cost, False, 0)

    async def _wait_turn(self, state: _EndpointState, est_tokens: int) -> None:
        """The endpoint's rate limits and a 429's pause, before each attempt."""
        delay = state.pause_until - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        if state.rpm is not None:
            await state.rpm.acquire(1)
        if state.tpm is not None:
            await state.tpm.acquire(est_tokens)

    def _backoff(self, attempt: int) -> float:
        cap = min(self.backoff_max_s, self.backoff_base_s * (2 ** (attempt - 1)))
        return cap * (0.5 + 0.5 * self._rng.random())

    def _never_reached(self, state: _EndpointState, error: BaseException, reason: str) -> str | None:
        """A run whose endpoint has refused every connection (or whose host name does not resolve)
        since it started is pointed at the wrong place, not at an outage: stop after a few
        attempts with a message saying so, instead of after the circuit breaker's minute of
        retries. Once the endpoint has answered anything, outages go through the breaker."""
        if state.reached or not isinstance(error, self._openai.APIConnectionError) or \
                not isinstance(_root_cause(error), (ConnectionRefusedError, socket.gaierror)):
            return None
        state.unreachable += 1
        n, url = state.unreachable, state.url
        if n < UNREACHABLE_ATTEMPTS:
            return None
        what = "the connection was refused" if "Refused" in reason else "its host name does not resolve"
        return (f"cannot reach the LLM endpoint {url}: {what} on all {n} attempts since the run started "
                f"({reason}); is the server running, and are --base-url and the port right?")

    def _classify(self, exc: BaseException, r: _Role) -> tuple[str, bool, float | None, str | None]:
        """(reason, retryable, server-requested delay, fatal-endpoint message)."""
        oa = self._openai
        url = r.display_url
        if isinstance(exc, BadAnswer):
            return str(exc), True, None, None
        if isinstance(exc, oa.APIConnectionError):  # APITimeoutError included
            root = _root_cause(exc)
            # the SDK's aiohttp transport reports a refused or failed connect as a connect
            # *timeout*: the innermost cause tells which it was
            if isinstance(exc, oa.APITimeoutError) and (root is exc or isinstance(root, TimeoutError)
                                                        or not isinstance(root, OSError)):
                return f"timeout after {self.timeout_s:g}s", True, None, None
            detail = f": {type(root).__name__}" if root is not exc else ""
            return f"connection error{detail}", True, None, None
        if isinstance(exc, oa.APIStatusError):
            status = exc.status_code
            msg = f"HTTP {status}: {str(getattr(exc, 'message', exc))[:300]}"
            retry_after = parse_retry_after(exc.response.headers if exc.response is not None else None)
            if status in (408, 409, 429) or status >= 500:
                return msg, True, retry_after, None
            if status in (401, 403):
                env = r.endpoint.api_key_env or "OPENAI_API_KEY"
                return msg, False, None, (f"the endpoint {url} refused the API key ({msg}); set ${env} "
                                          f"to a valid key")
            if status == 404:
                return msg, False, None, (f"the endpoint {url} answered 404 ({msg}): check --base-url "
                                          f"(usually ends in /v1) and the model name")
            return msg, False, None, None
        if isinstance(exc, (ValueError, oa.APIResponseValidationError)):
            return f"malformed response: {type(exc).__name__}: {str(exc)[:200]}", True, None, None
        raise exc

    async def _send(self, r: _Role, key: str, body: dict, wire: bytes, priority: float,
                    on_delta: Callable[[str], None] | None, on_reset: Callable[[], None] | None) -> ChatResult:
        est = rate_limit_tokens(body)
        options = {"headers": {CALL_KEY_HEADER: key}, "security": {"bearer_auth": True}}
        attempts = 0
        shown = [False]
        while True:
            attempts += 1
            if r.state.down:
                raise EndpointDown(r.state.down)
            await self._wait_turn(r.state, est)
            if shown[0] and on_reset is not None:
                on_reset()
                shown[0] = False
            async with self._sem.slot(priority):
                if attempts == 1 and self.cost_limit_reached:
                    # checked again once a slot is ours: calls queued behind the semaphore when the
                    # budget ran out must not all go out (the overshoot stays bounded by concurrency)
                    raise CostLimitReached(f"the run's cost reached the limit of ${self.max_cost_usd:.2f} "
                                           f"(spent ${self.cost_usd:.4f}); nothing more is sent")
                if self._paced < self.concurrency:  # start-up pacing, with the slot held: the
                    self._paced += 1                    # first wave of slots fills gradually
                    now = time.monotonic()
                    at = max(now, self._pace_next)
                    self._pace_next = at + self._pace_gap
                    if at > now:
                        await asyncio.sleep(at - now)
                if self._first_send is None:
                    self._first_send = time.monotonic()
                self.attempts += 1
                self.in_flight += 1
                t0 = time.perf_counter()
                try:
                    if on_delta is None:
                        answer = await self._attempt_plain(r, wire, options)
                    else:
                        answer = await self._attempt_stream(r, body, options, on_delta, shown)
                    error = None
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # classified below; unknown ones re-raised there
                    error = exc
                finally:
                    self.in_flight -= 1
                latency_ms = (time.perf_counter() - t0) * 1000.0
            if error is None or isinstance(error, self._openai.APIStatusError):
                r.state.reached = True  # something answered there
            if error is None:
                return await self._record_answer(r, key, answer, latency_ms, attempts, est, body)
            reason, retryable, retry_after, fatal = self._classify(error, r)
            if not fatal and isinstance(error, self._openai.APIConnectionError):
                # a local server this process started and that died: say so, not "is it running?"
                fatal = owned_endpoint_failure(r.display_url)
            fatal = fatal or self._never_reached(r.state, error, reason)
            if fatal:
                self._open_breaker(r.state, fatal)
                await self._record_failure(key, reason, attempts, r.state, count_for_breaker=False)
                raise EndpointDown(fatal) from None
            if not retryable or attempts > self.max_retries:
                await self._record_failure(key, reason, attempts, r.state)
                tries = f" after {attempts} attempts" if attempts > 1 else ""
                raise LLMCallError(f"LLM call to {r.display_url} ({r.model}) failed{tries}: {reason}") from None
            self.retries += 1
            if retry_after is not None:
                delay = min(retry_after, max(self.backoff_max_s, 60.0)) * (1.0 + 0.1 * self._rng.random())
                if isinstance(error, self._openai.APIStatusError) and error.status_code == 429:
                    r.state.pause_until = max(r.state.pause_until, time.monotonic() + delay)
            else:
                delay = self._backoff(attempts)
            await asyncio.sleep(delay)

    async def _attempt_plain(self, r: _Role, body: bytes, options: dict) -> Completion:
        # The SDK's own POST (what chat.completions.create() does after re-walking every message
        # against its TypedDicts) with the body as the ledger's canonical JSON bytes, which the SDK
        # sends as they are, and the answer read as text: building the SDK's pydantic response
        # model cost more CPU than the rest of our per-call work, and we read four fields of it.
        raw = await r.client.post("/chat/completions", cast_to=str, content=body, options=options)
        return parse_completion(json.loads(raw))  # a ValueError here is a malformed answer (retried)

    async def _attempt_stream(self, r: _Role, body: dict, options: dict, on_delta: Callable[[str], None],
                              shown: list[bool]) -> Completion:
        t = self._types
        stream = await r.client.post("/chat/completions", cast_to=t.ChatCompletion,
                                     body={**body, "stream": True, "stream_options": {"include_usage": True}},
                                     options=options, stream=True, stream_cls=t.AsyncStream[t.ChatCompletionChunk])
        parts: list[str] = []
        finish: str | None = None
        usage = None
        model = r.model
        try:
            async for chunk in stream:
                if chunk.usage is not None:
                    usage = chunk.usage
                if chunk.model:
                    model = chunk.model
                for choice in chunk.choices or ():
                    if choice.index not in (0, None):
                        continue
                    delta = choice.delta
                    piece = getattr(delta, "content", None) if delta is not None else None
                    if piece:
                        parts.append(piece)
                        shown[0] = True
                        on_delta(piece)
                    if choice.finish_reason:
                        finish = choice.finish_reason
        finally:
            await stream.close()
        text = "".join(parts)
        if finish is None:
            raise BadAnswer("stream ended without a finish_reason (cut off)")
        if not text.strip():
            raise BadAnswer("empty answer")
        return Completion(text, finish, model, token_count(getattr(usage, "prompt_tokens", None)),
                          token_count(getattr(usage, "completion_tokens", None)))

    async def _record_answer(self, r: _Role, key: str, answer: Completion, latency_ms: float, attempts: int,
                             est: int, body: dict) -> ChatResult:
        pt, ct = usage_tokens(answer, body["messages"])
        cost = call_cost(r.price, pt, ct)
        await self._ledger.done(key, response=answer.text, finish_reason=answer.finish_reason, prompt_tokens=pt,
                                completion_tokens=ct, cost_usd=cost, latency_ms=latency_ms, attempts=attempts)
        if r.state.tpm is not None:
            r.state.tpm.adjust(est - (pt + ct))
        r.state.consecutive_failures = 0
        self.sent += 1
        self.prompt_tokens += pt
        self.completion_tokens += ct
        self.cost_usd += cost
        return ChatResult(answer.text, answer.finish_reason, answer.model or r.model, key, pt, ct, latency_ms, cost,
                          False, attempts)

    async def _record_failure(self, key: str, reason: str, attempts: int, state: _EndpointState, *,
                              count_for_breaker: bool = True) -> None:
        self.failed += 1
        await self._ledger.failed(key, error=reason, attempts=attempts)
        if not count_for_breaker:
            return
        state.consecutive_failures += 1
        n = state.consecutive_failures
        if self.breaker_limit > 0 and n >= self.breaker_limit and not state.down:
            self._open_breaker(state, f"the LLM endpoint {state.url} looks down: {n} calls in a row failed after "
                                      f"all retries (last: {reason}); the run stopped, re-run the same command "
                                      f"when it is back (answered calls are kept)")
            raise EndpointDown(state.down or "")

    def _open_breaker(self, state: _EndpointState, message: str) -> None:
        if not state.down:
            state.down = message
        if not self._down:
            self._down = message
