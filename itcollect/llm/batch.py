"""The Batch API transport: ledger-keyed calls answered at batch prices (about half), resumably.

Every stage's calls go through it the same way (the shared batch-rounds runner,
:class:`itcollect.llm.runners.batch_rounds.BatchRounds`, does it for any stage's machine): build
each call with :meth:`LLMClient.batch_call` (the same key and body the online client would send),
ask :meth:`BatchRunner.lookup` what the ledger already knows about it, and
:meth:`BatchRunner.submit` the rest; the answers land in the request ledger, where the stage reads
them (``lookup`` again) exactly as it would read an online answer. Nothing here knows about
dialogues::

    runner = BatchRunner(store, config, llm, echo=echo, sleep=renew_leases_then_sleep)
    if (await runner.resume(wait=wait)).still_out:    # batches an earlier run left out
        return
    while True:
        calls = []
        for item in work:                             # the stage's own units of work
            call = llm.batch_call("judge", messages_for(item))
            known = runner.lookup(call.key)           # answered | in_flight | straggler | to_send
            if known.kind == "answered":
                use(item, known.result)               # a ChatResult, as chat() returns
            elif known.kind == "to_send":
                calls.append(call)
        if not calls:
            break
        calls, _ = runner.within_budget(calls, budget)  # --max-cost, worst case at batch prices
        if (await runner.submit(calls, wait=wait)).still_out:
            break                                       # [batch] wait = false: re-run to collect

Crash safety is the point of the design. A batch, its items and the ledger rows of its calls
(status ``batched``) are recorded in one transaction *before* anything is uploaded. Then:

* ``recorded`` → upload the input file (named ``itcollect-<local id>.jsonl``). The status goes
  ``uploading`` first; a resume that finds ``uploading`` looks the file up by that name before
  uploading again, so an upload that reached the server but whose id was lost is reused.
* ``uploaded`` → create the remote batch with ``metadata = {itcollect_batch: <local id>}``; a
  resume that finds ``creating`` lists the remote batches for that metadata before creating one.
* ``submitted`` → poll with backoff; a terminal batch (completed, expired, cancelled, failed) is
  downloaded and collected in ONE store transaction (answers into the ledger at batch prices,
  item statuses, batch ``collected``): a crash during collection leaves nothing half-written and
  the next run simply collects again. A call whose answer is already in the ledger is never
  overwritten, so collecting twice cannot count twice.

A call that comes back without an answer (error line, HTTP error inside the batch, expiry,
cancellation, no line at all) goes back to ``failed``: the caller submits it again, alone, in its
next round; once it failed in ``[batch] max_attempts`` batches :meth:`BatchRunner.lookup` calls it
a straggler, to be left to an online run.

A call that is ``batched`` is in flight at the provider: the online client refuses to send it
(:class:`CallInBatch`) until a batch run collects it, and batch runs never submit it again.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from itcollect.config import Config
from itcollect.kernel.errors import ServiceError
from itcollect.llm.answers import (
    BadAnswer,
    CallEstimate,
    ChatResult,
    Completion,
    estimate_call,
    ledger_result,
    parse_completion,
    usage_tokens,
)
from itcollect.llm.pricing import call_cost, price_for
from itcollect.settings import settings
from itcollect.store import dumps
from itcollect.store.interfaces import BatchStore

#: The only endpoint itcollect batches.
BATCH_ENDPOINT = "/v1/chat/completions"
#: Remote statuses after which nothing more will change.
REMOTE_TERMINAL = ("completed", "expired", "cancelled", "failed")
#: One Batch API run per workspace at a time (two would race on the same calls' next rounds):
#: the lock file, in the workspace folder (see :class:`itcollect.workspace.WorkspaceLock`).
LOCK_FILE = ".itcollect-batch.lock"

#: Test hook: comma-separated phase names at which the process writes the phase to
#: $ITCOLLECT_BATCH_PAUSE_FILE and sleeps (so a test can kill -9 it at an exact point).
PAUSE_ENV = "ITCOLLECT_BATCH_PAUSE_AT"
PAUSE_FILE_ENV = "ITCOLLECT_BATCH_PAUSE_FILE"
PHASES = ("recorded", "uploaded", "created", "polling", "downloaded", "collected")

_WAITING_FOR = {
    "recorded": "upload of its input file",
    "uploading": "upload (interrupted: the file will be looked up by name before uploading again)",
    "uploaded": "creation of the remote batch",
    "creating": "creation (interrupted: the remote batch will be looked up by its metadata first)",
}
_REMOTE_WAITING = {
    "validating": "the provider to validate the input file",
    "in_progress": "the provider to answer its requests",
    "finalizing": "the provider to write the output file",
    "cancelling": "the provider to finish cancelling",
    "completed": "collection (run `{command}`)",
    "expired": "collection of its partial output (run `{command}`)",
    "cancelled": "collection of its partial output (run `{command}`)",
    "failed": "collection of its errors (run `{command}`)",
}


def pause_if_asked(phase: str) -> None:
    """The default phase hook (see PAUSE_ENV): a no-op unless the environment asks for ``phase``."""
    wanted = os.environ.get(PAUSE_ENV)
    if not wanted or phase not in wanted.split(","):
        return
    path = os.environ.get(PAUSE_FILE_ENV)
    if path:
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(phase)
    time.sleep(3600)


def request_line(key: str, request_json: str) -> bytes:
    """One line of a Batch API input file: ``custom_id`` is the ledger key, ``body`` the call's
    canonical JSON (as stored in the ledger), so the line is built the same way for sizing a
    file and for uploading it."""
    return ('{"custom_id":' + json.dumps(key, ensure_ascii=False) + ',"method":"POST","url":"' + BATCH_ENDPOINT
            + '","body":' + request_json + "}\n").encode("utf-8")


@dataclass(slots=True)
class BatchCall:
    """One ledger-keyed call: ``key`` as the online client computes it, ``body`` the exact chat
    body. Build it with :meth:`itcollect.llm.LLMClient.batch_call`."""

    key: str
    role: str
    model: str
    base_url: str | None
    body: dict[str, Any]
    request_json: str = ""  # the body as the ledger's canonical JSON (computed when not given)

    def __post_init__(self) -> None:
        if not self.request_json:
            self.request_json = dumps(self.body)

    def line(self) -> bytes:
        return request_line(self.key, self.request_json)

    def ledger_row(self) -> dict[str, Any]:
        return {"key": self.key, "role": self.role, "model": self.model, "base_url": self.base_url,
                "request": self.request_json}

    def estimate(self) -> CallEstimate:
        return estimate_call(self.body)


def split_calls(calls: Iterable[BatchCall], *, max_requests: int, max_bytes: int) -> list[list[BatchCall]]:
    """Group calls into input files: one endpoint and model per file (the API requires a single
    model per batch), at most ``max_requests`` lines and ``max_bytes`` bytes each, order kept."""
    groups: dict[tuple[str | None, str], list[BatchCall]] = {}
    for call in calls:
        groups.setdefault((call.base_url, call.model), []).append(call)
    files: list[list[BatchCall]] = []
    for group in groups.values():
        current: list[BatchCall] = []
        size = 0
        for call in group:
            n = len(call.line())
            if n > max_bytes:
                raise ServiceError(f"one batch request is {n:,} bytes, over [batch] max_bytes_per_file "
                                   f"({max_bytes:,}); raise the limit or shorten the prompts")
            if current and (len(current) >= max_requests or size + n > max_bytes):
                files.append(current)
                current, size = [], 0
            current.append(call)
            size += n
        if current:
            files.append(current)
    return files


@dataclass(slots=True)
class LineResult:
    """What a batch output/error line said about one call: its answer, or why there is none."""

    answer: Completion | None = None
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.answer is not None


def parse_result_line(line: dict[str, Any]) -> LineResult:
    """A line of an output or error file → an answer or the reason there is none. The answer is
    judged by :func:`itcollect.llm.answers.parse_completion`, as an online answer is."""
    error = line.get("error")
    response = line.get("response")
    if error:
        if isinstance(error, dict):
            return LineResult(error=f"{error.get('code') or 'error'}: {error.get('message') or ''}".strip())
        return LineResult(error=str(error))
    if not isinstance(response, dict):
        return LineResult(error="result line without a response")
    status = response.get("status_code")
    body = response.get("body")
    if status != 200:
        message = ""
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            message = str(body["error"].get("message") or "")
        return LineResult(error=f"HTTP {status}: {message}"[:500])
    try:
        return LineResult(parse_completion(body))
    except BadAnswer as exc:
        return LineResult(error=str(exc))


def _parse_jsonl(text: str) -> list[dict[str, Any]]:
    out = []
    for raw in text.splitlines():
        raw = raw.strip()
        if not raw:
            continue
        try:
            line = json.loads(raw)
        except ValueError:
            continue  # its call gets no result and is resubmitted: nothing is lost
        if isinstance(line, dict) and isinstance(line.get("custom_id"), str):
            out.append(line)
    return out


@dataclass
class CollectReport:
    """What collecting one finished batch wrote into the ledger."""

    batch_id: str
    remote_status: str
    answered: int = 0
    failed: int = 0
    already: int = 0
    cost_usd: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass
class CallState:
    """What the ledger says about one call (see :meth:`BatchRunner.lookup`).

    ``kind``: ``"answered"`` (``result`` is its answer), ``"in_flight"`` (out in a batch not yet
    collected), ``"straggler"`` (failed in ``[batch] max_attempts`` batches: leave it to an online
    run) or ``"to_send"`` (never sent, or failed and worth another batch)."""

    kind: str
    result: ChatResult | None = None


@dataclass
class BatchEstimate:
    """Calls, tokens and cost of a set of calls at batch prices (and online, for comparison)."""

    calls: int = 0
    by_role: dict[str, int] = field(default_factory=dict)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    max_completion_tokens: int = 0
    cost_usd: float = 0.0
    cost_usd_online: float = 0.0
    cost_usd_max: float = 0.0

    def count(self, role: str) -> None:
        """One more call of ``role`` that costs nothing more (its answer is in the ledger)."""
        self.calls += 1
        self.by_role[role] = self.by_role.get(role, 0) + 1

    def add(self, role: str, est: CallEstimate, price: Any) -> None:
        """One more call of ``role``, with its estimated tokens and cost."""
        self.count(role)
        self.prompt_tokens += est.prompt_tokens
        self.completion_tokens += est.completion_tokens
        self.max_completion_tokens += est.max_completion_tokens
        self.cost_usd += est.cost(price, batch=True)
        self.cost_usd_online += est.cost(price)
        self.cost_usd_max += est.max_cost(price, batch=True)


@dataclass
class SubmitResult:
    """What :meth:`BatchRunner.submit` (or :meth:`~BatchRunner.resume`) did: the round it
    recorded (0 when it only collected), the calls it submitted, the batches it collected and
    the batches still out (``wait = false``, or a provider still working)."""

    round_no: int = 0
    submitted: int = 0
    collected: list[CollectReport] = field(default_factory=list)
    still_out: list[dict[str, Any]] = field(default_factory=list)

    @property
    def waiting(self) -> int:
        """Calls in the batches still out."""
        return sum(int(b["n_requests"]) for b in self.still_out)


class BatchRunner:
    """Moves recorded batches through upload → create → poll → collect, resumably.

    ``llm`` is the run's :class:`itcollect.llm.LLMClient`: its endpoints (and key) are the ones
    batches go to, its run row counts the answers. ``echo`` receives one-line progress messages;
    ``sleep`` waits between polls (a caller that holds leases renews them there); ``on_phase`` is
    called at each point of :data:`PHASES` (the default is the kill-at-phase test hook). ``stage``
    names the stage whose calls these batches carry ("simulate", "judge"): a runner records it
    with every batch and only ever resumes, polls, collects or cancels its own stage's batches, so
    a judge run on another endpoint leaves simulate's batches alone.
    """

    def __init__(self, store: BatchStore, config: Config, llm: Any, *, echo: Callable[[str], None] | None = None,
                 sleep: Callable[[float], Any] = asyncio.sleep,
                 on_phase: Callable[[str], None] = pause_if_asked, stage: str = "simulate") -> None:
        self.stage = stage
        self.store = store
        self.config = config
        self.llm = llm
        typed = settings(config)
        self.settings = typed.batch
        self.prices = typed.prices
        self.max_attempts = self.settings.max_attempts
        self.echo = echo or (lambda _msg: None)
        self.sleep = sleep
        self.on_phase = on_phase
        self._remotes: dict[str | None, Any] = {}
        self.collected: list[CollectReport] = []

    # -- what a stage asks -------------------------------------------------------------------------
    def lookup(self, key: str) -> CallState:
        """What the ledger knows about call ``key`` (see :class:`CallState`)."""
        row = self.store.ledger_lookup(key)
        status = row["status"] if row is not None else None
        if status == "done":
            return CallState("answered", ledger_result(key, row))  # type: ignore[arg-type]
        if status == "batched":
            return CallState("in_flight")
        if status == "failed" and self.store.batch_failure_counts([key])[key] >= self.max_attempts:
            return CallState("straggler")
        return CallState("to_send")

    def next_round(self) -> int:
        """The number the next round submitted will get (for a stage's progress line): a stage
        asks the transport, never the batch tables."""
        return self.store.next_batch_round()

    def split(self, calls: Sequence[BatchCall]) -> list[list[BatchCall]]:
        """The input files these calls would be submitted in (``[batch]`` per-file limits)."""
        return split_calls(calls, max_requests=self.settings.max_requests_per_file,
                           max_bytes=self.settings.max_bytes_per_file) if calls else []

    def estimate(self, calls: Iterable[BatchCall]) -> BatchEstimate:
        """Tokens and cost of ``calls`` at batch prices (estimated: nothing is sent)."""
        out = BatchEstimate()
        for c in calls:
            out.add(c.role, c.estimate(), self.llm.price_for(c.role))
        return out

    def within_budget(self, calls: Sequence[BatchCall], budget: float) -> tuple[list[BatchCall], float]:
        """The longest prefix of ``calls`` whose worst case (every answer at ``max_tokens``, batch
        prices) stays within ``budget``, and that worst case."""
        kept: list[BatchCall] = []
        total = 0.0
        for c in calls:
            upper = c.estimate().max_cost(self.llm.price_for(c.role), batch=True)
            if total + upper > budget:
                break
            kept.append(c)
            total += upper
        return kept, total

    def open_batches(self) -> list[dict[str, Any]]:
        """This stage's batches not collected yet (batches recorded before stages were: simulate's)."""
        return [b for b in self.store.open_batches() if batch_stage(b) == self.stage]

    async def resume(self, *, wait: bool) -> SubmitResult:
        """Take whatever an earlier run left out (recorded, submitted, finished) as far as it goes:
        submit, poll, collect. Raises when a batch failed as a whole."""
        result = SubmitResult()
        if self.open_batches():
            self.echo(f"resuming {len(self.open_batches())} batch(es) from an earlier run")
            result.still_out = await self.drain(wait=wait)
            result.collected = self._take_collected()
        return result

    async def submit(self, calls: Sequence[BatchCall], *, wait: bool) -> SubmitResult:
        """Record ``calls`` as the next round, submit them and (with ``wait``) poll until every
        batch is collected; without ``wait``, poll once. Their answers are then in the ledger.
        Raises when a batch failed as a whole (its calls are free again for a re-run)."""
        calls = list({c.key: c for c in calls}.values())
        round_no = self.store.next_batch_round()
        self.record_round(calls, round_no)
        self.echo(f"round {round_no}: {len(calls):,} calls recorded, submitting")
        still = await self.drain(wait=wait)
        return SubmitResult(round_no, len(calls), self._take_collected(), still)

    def _take_collected(self) -> list[CollectReport]:
        reports, self.collected = self.collected, []
        for rep in reports:
            if rep.remote_status == "failed":
                raise ServiceError(f"batch {rep.batch_id} failed as a whole at the provider "
                                   f"({rep.errors[0] if rep.errors else 'no reason given'}); its calls are "
                                   f"free again and a re-run submits them")
        return reports

    # -- endpoints ---------------------------------------------------------------------------------
    def _role_for_url(self, base_url: str | None) -> str:
        for role in self.llm.roles:
            if self.llm.base_url_for(role) == base_url:
                return role
        raise ServiceError(f"a batch in flight was submitted to {base_url}, which this run does not use; "
                           f"pass --base-url {base_url} (and the same model) to resume it")

    def _remote(self, base_url: str | None) -> Any:
        """An ``AsyncOpenAI`` for that endpoint (the LLM client's, with the SDK's retries on:
        files and batches calls are idempotent reads or guarded by our lookups)."""
        if base_url not in self._remotes:
            role = self._role_for_url(base_url)
            client = self.llm.sdk_client(role)
            self._remotes[base_url] = client.with_options(max_retries=max(2, int(self.llm.max_retries)),
                                                          timeout=max(60.0, float(self.llm.timeout_s)))
        return self._remotes[base_url]

    @staticmethod
    def filename(batch_id: str) -> str:
        return f"itcollect-{batch_id}.jsonl"

    # -- recording ---------------------------------------------------------------------------------
    def record_round(self, calls: Sequence[BatchCall], round_no: int) -> list[str]:
        """Record a round's batches (split by the per-file limits) before anything is sent.

        Identical calls (the same prompt from two places) are submitted once; both get the one
        answer, as the online client shares an identical call in flight."""
        calls = list({c.key: c for c in calls}.values())
        ids = []
        with self.store.transaction():
            for part in self.split(calls):
                batch_id = uuid.uuid4().hex[:16]
                self.store.record_batch(batch_id, round_no, [c.ledger_row() for c in part],
                                        detail={"base_url": part[0].base_url, "model": part[0].model,
                                                "bytes": sum(len(c.line()) for c in part), "stage": self.stage})
                ids.append(batch_id)
        self.on_phase("recorded")
        return ids

    # -- upload and create -------------------------------------------------------------------------
    async def _find_file(self, remote: Any, name: str, size: int) -> str | None:
        async for f in remote.files.list(purpose="batch"):
            if f.filename == name and (not f.bytes or f.bytes == size) and f.status != "error":
                return f.id
        return None

    async def _find_batch(self, remote: Any, batch_id: str, since: float) -> Any | None:
        async for b in remote.batches.list(limit=100):
            if (b.metadata or {}).get("itcollect_batch") == batch_id:
                return b
            if b.created_at and b.created_at < since - 3600:
                break  # newest first: older than our record, it cannot be ours
        return None

    def content(self, batch_id: str) -> bytes:
        """The input file of a recorded batch, from the ledger (its lines, in a stable order)."""
        return b"".join(request_line(key, request) for key, request in self.store.batch_requests(batch_id))

    async def push(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Take a recorded (or interrupted) batch to ``submitted``; never creates a second copy."""
        bid = batch["id"]
        remote = self._remote(batch["detail"].get("base_url"))
        status = batch["status"]
        if status in ("recorded", "uploading"):
            content = self.content(bid)
            file_id = None
            if status == "uploading":
                file_id = await self._find_file(remote, self.filename(bid), len(content))
                if file_id:
                    self.echo(f"batch {bid}: reusing uploaded file {file_id}")
            if file_id is None:
                self.store.update_batch(bid, status="uploading")
                f = await remote.files.create(file=(self.filename(bid), content, "application/jsonl"),
                                              purpose="batch")
                self.on_phase("uploaded")
                file_id = f.id
            self.store.update_batch(bid, status="uploaded", input_file_id=file_id)
            status = "uploaded"
        if status in ("uploaded", "creating"):
            batch = self.store.get_batch(bid) or batch
            found = None
            if status == "creating":
                since = _epoch(batch["created_at"])
                found = await self._find_batch(remote, bid, since)
                if found is not None:
                    self.echo(f"batch {bid}: found remote batch {found.id} created before the interruption")
            if found is None:
                self.store.update_batch(bid, status="creating")
                found = await remote.batches.create(
                    input_file_id=batch["input_file_id"], endpoint=BATCH_ENDPOINT,
                    completion_window=self.settings.completion_window,
                    metadata={"itcollect_batch": bid, "round": str(batch["round"])})
                self.on_phase("created")
            self.store.update_batch(bid, status="submitted", remote_id=found.id,
                                    detail=_remote_detail(found))
            self.echo(f"batch {bid}: submitted as {found.id} ({batch['n_requests']:,} requests, round "
                      f"{batch['round']})")
        return self.store.get_batch(bid) or batch

    # -- cancelling ---------------------------------------------------------------------------------
    async def cancel_all(self) -> int:
        """Ask the provider to cancel every batch still out (their partial output is collected by
        :meth:`drain` once they are ``cancelled``); close here the ones that never reached it. Their
        calls without an answer become free again. Returns how many batches were stopped."""
        stopped = 0
        for batch in self.open_batches():
            bid, status = batch["id"], batch["status"]
            remote = self._remote(batch["detail"].get("base_url"))
            rb = None
            if status == "submitted":
                rb = await remote.batches.retrieve(batch["remote_id"])
            elif status == "creating":  # interrupted while creating: it may exist at the provider
                rb = await self._find_batch(remote, bid, _epoch(batch["created_at"]))
                if rb is not None:
                    self.store.update_batch(bid, status="submitted", remote_id=rb.id, detail=_remote_detail(rb))
            if rb is None:  # recorded, uploading, uploaded: no batch at the provider to cancel
                await self.collect(batch, _NeverSubmitted())
            elif rb.status not in REMOTE_TERMINAL:
                rb = await remote.batches.cancel(rb.id)
                self.store.update_batch(bid, detail=_remote_detail(rb))
                self.echo(f"batch {bid}: cancel requested ({rb.id}, {rb.status})")
            stopped += 1
        return stopped

    # -- polling and collection --------------------------------------------------------------------
    async def poll_once(self) -> list[dict[str, Any]]:
        """Push what is not submitted yet, retrieve every submitted batch once, collect the
        finished ones. Returns the batches still out."""
        for batch in self.open_batches():
            if batch["status"] != "submitted":
                await self.push(batch)
        for batch in self.store.list_batches(["submitted"]):
            if batch_stage(batch) != self.stage:
                continue
            remote = self._remote(batch["detail"].get("base_url"))
            rb = await remote.batches.retrieve(batch["remote_id"])
            if rb.status in REMOTE_TERMINAL:
                await self.collect(batch, rb)
            else:
                self.store.update_batch(batch["id"], detail=_remote_detail(rb))
        return self.open_batches()

    async def drain(self, *, wait: bool = True) -> list[dict[str, Any]]:
        """Poll (with backoff) until no batch is out, or once when ``wait`` is false."""
        interval = self.settings.poll_interval_s
        while True:
            still = await self.poll_once()
            if not still or not wait:
                return still
            counts = [b["detail"].get("request_counts") or {} for b in still]
            done = sum(int(c.get("completed", 0)) + int(c.get("failed", 0)) for c in counts)
            total = sum(int(b["n_requests"]) for b in still)
            self.echo(f"waiting for {len(still)} batch(es): {done:,}/{total:,} requests processed; next poll in "
                      f"{interval:.0f}s")
            self.on_phase("polling")
            await self.sleep(interval)
            interval = min(interval * self.settings.poll_backoff, self.settings.poll_max_s)

    async def _download(self, remote: Any, file_id: str | None) -> list[dict[str, Any]]:
        if not file_id:
            return []
        resp = await remote.files.content(file_id)
        return _parse_jsonl(resp.text)

    async def collect(self, batch: dict[str, Any], rb: Any) -> CollectReport:
        """Download a finished batch and write every result into the ledger, atomically."""
        bid = batch["id"]
        remote = self._remote(batch["detail"].get("base_url"))
        lines = await self._download(remote, rb.output_file_id) + await self._download(remote, rb.error_file_id)
        self.on_phase("downloaded")
        results: dict[str, LineResult] = {}
        for line in lines:
            parsed = parse_result_line(line)
            prev = results.get(line["custom_id"])
            if prev is None or (parsed.ok and not prev.ok):
                results[line["custom_id"]] = parsed
        batch_error = ""
        if rb.status == "failed":
            errs = getattr(getattr(rb, "errors", None), "data", None) or []
            batch_error = "; ".join(f"{e.code}: {e.message}" + (f" (line {e.line})" if e.line else "")
                                    for e in errs[:3]) or "the batch failed"
        missing = {"expired": "batch expired before this request was answered",
                   "cancelled": "batch cancelled before this request was answered",
                   "failed": f"batch failed: {batch_error}"}.get(rb.status, "no result line for this request")
        report = CollectReport(bid, rb.status)
        prices = self.prices
        run_id = getattr(self.llm, "run_id", None)
        items: dict[str, str] = {}
        with self.store.transaction():
            for key, request in self.store.batch_requests(bid):
                row = self.store.ledger_lookup(key)
                if row is not None and row["status"] == "done":
                    items[key] = "done"
                    report.already += 1
                    continue
                res = results.get(key)
                if res is not None and res.answer is not None:
                    body = json.loads(request)
                    pt, ct = usage_tokens(res.answer, body.get("messages") or [])
                    cost = call_cost(price_for(prices, body.get("model") or ""), pt, ct, batch=True)
                    self.store.ledger_batch_answer(key, response=res.answer.text,
                                                   finish_reason=res.answer.finish_reason,
                                                   prompt_tokens=pt, completion_tokens=ct, cost_usd=cost,
                                                   run_id=run_id)
                    items[key] = "done"
                    report.answered += 1
                    report.cost_usd += cost
                    report.prompt_tokens += pt
                    report.completion_tokens += ct
                    continue
                error = res.error if res is not None else missing
                if row is not None and row["status"] == "batched" and row["batch_id"] == bid:
                    self.store.ledger_batch_failed(key, error=error, run_id=run_id)
                items[key] = "failed"
                report.failed += 1
                if len(report.errors) < 3:
                    report.errors.append(error)
            self.store.set_batch_items(bid, items)
            self.store.update_batch(bid, status="collected", output_file_id=rb.output_file_id,
                                    error_file_id=rb.error_file_id,
                                    detail={**_remote_detail(rb), "answered": report.answered,
                                            "failed": report.failed, "cost_usd": round(report.cost_usd, 6),
                                            **({"batch_error": batch_error} if batch_error else {})})
        self.on_phase("collected")
        self.collected.append(report)
        self.echo(f"batch {bid}: {rb.status}; {report.answered:,} answered, {report.failed:,} without answer"
                  + (f" ({report.errors[0]})" if report.errors else ""))
        return report


def _epoch(iso: str) -> float:
    try:
        return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


class _NeverSubmitted:
    """What :meth:`BatchRunner.collect` needs of a remote batch, for one that was never created:
    cancelled, no output, so every call of it goes back to ``failed`` (free again)."""

    status = "cancelled"
    output_file_id = None
    error_file_id = None
    request_counts = None
    errors = None


def _remote_detail(rb: Any) -> dict[str, Any]:
    counts = getattr(rb, "request_counts", None)
    return {"remote_status": rb.status, "polled_at": time.time(),
            "request_counts": ({"total": counts.total, "completed": counts.completed, "failed": counts.failed}
                               if counts is not None else {})}


def batch_stage(batch: dict[str, Any]) -> str:
    """The stage a recorded batch carries calls of (batches from before stages were recorded:
    simulate, the only stage that batched then)."""
    return str(batch["detail"].get("stage") or "simulate")


# -- status ----------------------------------------------------------------------------------------
def batch_status(store: BatchStore, *, command: str) -> dict[str, Any]:
    """The batches of the workspace from the store alone (no network): those still out with their
    counts and what each waits for, the last collected round, totals, the ledger's counts.
    ``command`` is the one that collects them (named in what a finished batch waits for)."""
    out: list[dict[str, Any]] = []
    for b in store.open_batches():
        d = b["detail"]
        remote = d.get("remote_status")
        waiting = _WAITING_FOR.get(b["status"]) or _REMOTE_WAITING.get(remote or "", "the next poll").format(
            command=command)
        counts = d.get("request_counts") or {}
        out.append({"id": b["id"], "stage": batch_stage(b), "remote_id": b["remote_id"], "round": b["round"],
                    "status": b["status"],
                    "remote_status": remote, "requests": b["n_requests"],
                    "completed": int(counts.get("completed", 0)), "failed": int(counts.get("failed", 0)),
                    "model": d.get("model"), "waiting_for": waiting, "updated_at": b["updated_at"]})
    collected = store.list_batches(["collected"])
    last_round = max((b["round"] for b in collected), default=0)
    last = [b for b in collected if b["round"] == last_round]
    totals = store.batch_totals()
    return {"in_flight": out, "calls_batched": totals["calls_batched"], "batches_total": totals["total"],
            "items": totals["items"],
            "last_round": {"round": last_round, "batches": len(last),
                           "answered": sum(int(b["detail"].get("answered", 0)) for b in last),
                           "failed": sum(int(b["detail"].get("failed", 0)) for b in last),
                           "cost_usd": round(sum(float(b["detail"].get("cost_usd", 0.0)) for b in last), 6)}
            if last else None,
            "ledger": store.ledger_counts()}


__all__ = ["BatchCall", "BatchRunner", "BatchEstimate", "CallState", "CollectReport", "SubmitResult", "LineResult",
           "split_calls", "parse_result_line", "request_line", "batch_status", "batch_stage", "pause_if_asked", "BATCH_ENDPOINT",
           "LOCK_FILE", "PAUSE_ENV", "PAUSE_FILE_ENV", "PHASES", "REMOTE_TERMINAL"]
