"""OpenAI Batch API mode for ``simulate``: the same dialogues at batch prices (about half).

A *round* takes the next call of every pending dialogue (its first translation, the simulated
annotator's next request, or the assistant's next answer), writes them as Batch JSONL lines whose
``custom_id`` is the ledger key, and submits them; when the batches are done their answers go
into the ledger and the dialogues advance exactly as online (the same driver validates each turn
and re-samples a failed one in the next round). Rounds repeat until every dialogue is done.

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
* Dialogues advance from the ledger (``done`` rows), which is idempotent: a dialogue's state is
  its committed turns, so a crash between collection and advancing just advances next run.

A call that comes back without an answer (error line, HTTP error inside the batch, expiry,
cancellation, no line at all) goes back to ``failed`` and is submitted again, alone, next round;
after ``[batch] max_attempts`` failed batches it is left to online ``simulate`` (the stragglers).

Mixing modes: a call that is ``batched`` is in flight at the provider; batch rounds never submit
it again, and online ``simulate`` must treat it as not yet answered (it skips such dialogues) until
a ``simulate --batch-api`` run collects the batch.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .config import Config
from .errors import ServiceError
from .store import Store

#: The only endpoint itcollect batches.
BATCH_ENDPOINT = "/v1/chat/completions"
#: Remote statuses after which nothing more will change.
REMOTE_TERMINAL = ("completed", "expired", "cancelled", "failed")

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
    "completed": "collection (run `itcollect simulate --batch-api`)",
    "expired": "collection of its partial output (run `itcollect simulate --batch-api`)",
    "cancelled": "collection of its partial output (run `itcollect simulate --batch-api`)",
    "failed": "collection of its errors (run `itcollect simulate --batch-api`)",
}


def _checkpoint(phase: str) -> None:
    """The test hook (see PAUSE_ENV); a no-op unless the environment asks for this phase."""
    wanted = os.environ.get(PAUSE_ENV)
    if not wanted or phase not in wanted.split(","):
        return
    path = os.environ.get(PAUSE_FILE_ENV)
    if path:
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(phase)
    time.sleep(3600)


@dataclass(slots=True)
class BatchCall:
    """One request line: ``custom_id`` is the ledger key, ``body`` the exact chat body."""

    key: str
    role: str
    model: str
    base_url: str | None
    body: dict[str, Any]

    def line(self) -> bytes:
        return (json.dumps({"custom_id": self.key, "method": "POST", "url": BATCH_ENDPOINT, "body": self.body},
                           ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")

    def ledger_row(self) -> dict[str, Any]:
        return {"key": self.key, "role": self.role, "model": self.model, "base_url": self.base_url,
                "request": json.dumps(self.body, ensure_ascii=False, sort_keys=True, separators=(",", ":"))}


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
    """What a batch output/error line said about one call."""

    ok: bool
    text: str = ""
    finish_reason: str = "stop"
    model: str = ""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    error: str = ""


def parse_result_line(line: dict[str, Any]) -> LineResult:
    """A line of an output or error file → an answer or the reason there is none. The same
    rules as online: no choices or empty content is a failed call, never a silent None."""
    error = line.get("error")
    response = line.get("response")
    if error:
        if isinstance(error, dict):
            return LineResult(False, error=f"{error.get('code') or 'error'}: {error.get('message') or ''}".strip())
        return LineResult(False, error=str(error))
    if not isinstance(response, dict):
        return LineResult(False, error="result line without a response")
    status = response.get("status_code")
    body = response.get("body")
    if status != 200:
        message = ""
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            message = str(body["error"].get("message") or "")
        return LineResult(False, error=f"HTTP {status}: {message}"[:500])
    if not isinstance(body, dict):
        return LineResult(False, error="malformed response body")
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return LineResult(False, error="response without choices")
    message = choices[0].get("message") or {}
    text = message.get("content") if isinstance(message, dict) else None
    if not isinstance(text, str) or not text.strip():
        return LineResult(False, error="empty answer")
    usage = body.get("usage") if isinstance(body.get("usage"), dict) else {}
    return LineResult(True, text=text, finish_reason=choices[0].get("finish_reason") or "stop",
                      model=str(body.get("model") or ""), prompt_tokens=usage.get("prompt_tokens"),
                      completion_tokens=usage.get("completion_tokens"))


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
    batch_id: str
    remote_status: str
    answered: int = 0
    failed: int = 0
    already: int = 0
    cost_usd: float = 0.0
    errors: list[str] = field(default_factory=list)


class BatchRunner:
    """Moves recorded batches through upload → create → poll → collect, resumably.

    ``llm`` is the run's :class:`itcollect.llm.LLMClient`: its endpoints (and key) are the ones
    batches go to, its run row counts the answers. ``echo`` receives one-line progress messages.
    """

    def __init__(self, store: Store, config: Config, llm: Any, *, echo: Callable[[str], None] | None = None,
                 sleep: Callable[[float], Any] = asyncio.sleep) -> None:
        self.store = store
        self.config = config
        self.llm = llm
        self.settings = config["batch"]
        self.echo = echo or (lambda _msg: None)
        self._sleep = sleep
        self._remotes: dict[str | None, Any] = {}
        self.collected: list[CollectReport] = []

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

        Identical calls (two dialogues at the same point with the same prompt) are submitted once;
        both advance from the one answer, as online mode shares an identical call in flight."""
        calls = list({c.key: c for c in calls}.values())
        files = split_calls(calls, max_requests=int(self.settings["max_requests_per_file"]),
                            max_bytes=int(self.settings["max_bytes_per_file"]))
        ids = []
        with self.store.transaction():
            for part in files:
                batch_id = uuid.uuid4().hex[:16]
                self.store.record_batch(batch_id, round_no, [c.ledger_row() for c in part],
                                        detail={"base_url": part[0].base_url, "model": part[0].model,
                                                "bytes": sum(len(c.line()) for c in part)})
                ids.append(batch_id)
        _checkpoint("recorded")
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

    def _content(self, batch_id: str) -> bytes:
        lines = []
        for key, request in self.store.batch_requests(batch_id):
            lines.append((json.dumps({"custom_id": key, "method": "POST", "url": BATCH_ENDPOINT,
                                      "body": json.loads(request)}, ensure_ascii=False,
                                     separators=(",", ":")) + "\n").encode("utf-8"))
        return b"".join(lines)

    async def push(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Take a recorded (or interrupted) batch to ``submitted``; never creates a second copy."""
        bid = batch["id"]
        remote = self._remote(batch["detail"].get("base_url"))
        status = batch["status"]
        if status in ("recorded", "uploading"):
            content = self._content(bid)
            file_id = None
            if status == "uploading":
                file_id = await self._find_file(remote, self.filename(bid), len(content))
                if file_id:
                    self.echo(f"batch {bid}: reusing uploaded file {file_id}")
            if file_id is None:
                self.store.update_batch(bid, status="uploading")
                f = await remote.files.create(file=(self.filename(bid), content, "application/jsonl"),
                                              purpose="batch")
                _checkpoint("uploaded")
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
                    completion_window=str(self.settings["completion_window"]),
                    metadata={"itcollect_batch": bid, "round": str(batch["round"])})
                _checkpoint("created")
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
        for batch in self.store.open_batches():
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
        for batch in self.store.open_batches():
            if batch["status"] != "submitted":
                await self.push(batch)
        for batch in self.store.list_batches(["submitted"]):
            remote = self._remote(batch["detail"].get("base_url"))
            rb = await remote.batches.retrieve(batch["remote_id"])
            if rb.status in REMOTE_TERMINAL:
                await self.collect(batch, rb)
            else:
                self.store.update_batch(batch["id"], detail=_remote_detail(rb))
        return self.store.open_batches()

    async def drain(self, *, wait: bool = True) -> list[dict[str, Any]]:
        """Poll (with backoff) until no batch is out, or once when ``wait`` is false."""
        interval = float(self.settings["poll_interval_s"])
        while True:
            still = await self.poll_once()
            if not still or not wait:
                return still
            counts = [b["detail"].get("request_counts") or {} for b in still]
            done = sum(int(c.get("completed", 0)) + int(c.get("failed", 0)) for c in counts)
            total = sum(int(b["n_requests"]) for b in still)
            self.echo(f"waiting for {len(still)} batch(es): {done:,}/{total:,} requests processed; next poll in "
                      f"{interval:.0f}s")
            _checkpoint("polling")
            await self._sleep(interval)
            interval = min(interval * float(self.settings["poll_backoff"]), float(self.settings["poll_max_s"]))

    async def _download(self, remote: Any, file_id: str | None) -> list[dict[str, Any]]:
        if not file_id:
            return []
        resp = await remote.files.content(file_id)
        return _parse_jsonl(resp.text)

    async def collect(self, batch: dict[str, Any], rb: Any) -> CollectReport:
        """Download a finished batch and write every result into the ledger, atomically."""
        from .llm import call_cost, price_for

        bid = batch["id"]
        remote = self._remote(batch["detail"].get("base_url"))
        lines = await self._download(remote, rb.output_file_id) + await self._download(remote, rb.error_file_id)
        _checkpoint("downloaded")
        results: dict[str, LineResult] = {}
        for line in lines:
            res = parse_result_line(line)
            prev = results.get(line["custom_id"])
            if prev is None or (res.ok and not prev.ok):
                results[line["custom_id"]] = res
        batch_error = ""
        if rb.status == "failed":
            errs = getattr(getattr(rb, "errors", None), "data", None) or []
            batch_error = "; ".join(f"{e.code}: {e.message}" + (f" (line {e.line})" if e.line else "")
                                    for e in errs[:3]) or "the batch failed"
        missing = {"expired": "batch expired before this request was answered",
                   "cancelled": "batch cancelled before this request was answered",
                   "failed": f"batch failed: {batch_error}"}.get(rb.status, "no result line for this request")
        report = CollectReport(bid, rb.status)
        prices = self.config.get("prices", {})
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
                if res is not None and res.ok:
                    body = json.loads(request)
                    pt = res.prompt_tokens if res.prompt_tokens is not None else _prompt_estimate(body)
                    ct = res.completion_tokens if res.completion_tokens is not None else _estimate(res.text)
                    cost = call_cost(price_for(prices, body.get("model") or ""), int(pt), int(ct), batch=True)
                    self.store.ledger_batch_answer(key, response=res.text, finish_reason=res.finish_reason,
                                                   prompt_tokens=int(pt), completion_tokens=int(ct),
                                                   cost_usd=cost, run_id=run_id)
                    items[key] = "done"
                    report.answered += 1
                    report.cost_usd += cost
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
        _checkpoint("collected")
        self.collected.append(report)
        self.echo(f"batch {bid}: {rb.status}; {report.answered:,} answered, {report.failed:,} without answer"
                  + (f" ({report.errors[0]})" if report.errors else ""))
        return report


def _estimate(text: str) -> int:
    from .llm import estimate_tokens

    return estimate_tokens(text)


def _prompt_estimate(body: dict[str, Any]) -> int:
    total = 0
    for m in body.get("messages") or []:
        content = m.get("content")
        total += 4 + _estimate(content if isinstance(content, str) else json.dumps(content))
    return total


def _epoch(iso: str) -> float:
    from datetime import datetime

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


# -- status ----------------------------------------------------------------------------------------
def batch_status(store: Store) -> dict[str, Any]:
    """What ``simulate --batch-api --status`` shows, from the store alone (no network): batches
    still out with their counts and what each waits for, the last collected round, totals."""
    out: list[dict[str, Any]] = []
    for b in store.open_batches():
        d = b["detail"]
        remote = d.get("remote_status")
        waiting = _WAITING_FOR.get(b["status"]) or _REMOTE_WAITING.get(remote or "", "the next poll")
        counts = d.get("request_counts") or {}
        out.append({"id": b["id"], "remote_id": b["remote_id"], "round": b["round"], "status": b["status"],
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
            "ledger": store.ledger_counts(), "specs": store.spec_counts()}


def render_batch_status(status: dict[str, Any]) -> str:
    lines = []
    flight = status["in_flight"]
    if not flight:
        lines.append("No batch in flight.")
    else:
        lines.append(f"{len(flight)} batch(es) in flight, {status['calls_batched']:,} calls waiting:")
        for b in flight:
            remote = f" {b['remote_id']} [{b['remote_status']}]" if b["remote_id"] else ""
            lines.append(f"  round {b['round']}  batch {b['id']}{remote}  {b['model'] or ''}  "
                         f"{b['completed']:,}/{b['requests']:,} done, {b['failed']:,} failed  "
                         f"(last update {b['updated_at']})")
            lines.append(f"      waiting for {b['waiting_for']}")
    last = status["last_round"]
    if last:
        lines.append(f"Last collected round {last['round']}: {last['batches']} batch(es), {last['answered']:,} "
                     f"answered, {last['failed']:,} without answer, ${last['cost_usd']:.4f}")
    specs = status["specs"]
    lines.append(f"Specs: {specs['pending']:,} pending, {specs['in_progress']:,} in progress, {specs['done']:,} "
                 f"done, {specs['failed']:,} failed.")
    return "\n".join(lines)


# -- the simulate --batch-api run -----------------------------------------------------------------
LOCK_FILE = ".itcollect-batch.lock"
#: Lease of the specs a batch run holds; renewed at every poll (polls are at most poll_max_s apart).
LEASE_S = 3600.0


@dataclass
class BatchSummary:
    """What one ``simulate --batch-api`` invocation did (or, for --dry-run / --status, would do)."""

    rounds: int = 0
    submitted: int = 0
    answered: int = 0
    failed_calls: int = 0
    done: int = 0
    failed: int = 0
    stragglers: int = 0
    waiting: int = 0
    cost_usd: float = 0.0
    stopped: str | None = None
    estimate: dict[str, Any] | None = None
    status: dict[str, Any] | None = None
    cancelled: int | None = None  # --cancel: batches stopped

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("rounds", "submitted", "answered", "failed_calls", "done", "failed",
                                              "stragglers", "waiting", "cost_usd", "stopped", "estimate",
                                              "status", "cancelled")}

    def render(self) -> str:
        if self.status is not None:
            return render_batch_status(self.status)
        if self.estimate is not None:
            e = self.estimate
            head = (f"dry run (batch): next round {e['calls']:,} calls from {e['dialogues']:,} dialogues "
                    f"(assistant {e['by_role'].get('assistant', 0):,}, annotator {e['by_role'].get('annotator', 0):,}), "
                    f"about {e['prompt_tokens']:,} prompt + {e['completion_tokens']:,} completion tokens, "
                    f"${e['cost_usd']:.4f} at batch prices (${e['cost_usd_online']:.4f} online; at most "
                    f"${e['cost_usd_max']:.4f}); {e['batches']} batch file(s)")
            tail = []
            if e["ready"]:
                tail.append(f"{e['ready']:,} dialogues have answers in the ledger to apply first")
            if e["in_flight"]:
                tail.append(f"{e['in_flight']:,} calls are in batches still out (collected before the next round)")
            if e["stragglers"]:
                tail.append(f"{e['stragglers']:,} calls failed in {e['max_attempts']} batches and are left to "
                            f"online simulate")
            tail.append(f"{e['remaining_calls']:,} calls remain over all rounds (without re-samples)")
            return head + "\n" + "; ".join(tail)
        if self.cancelled is not None:
            return (f"simulate --batch-api --cancel: {self.cancelled} batch(es) stopped; {self.answered:,} answers "
                    f"they had collected (${self.cost_usd:.4f}), {self.failed_calls:,} calls without an answer "
                    f"are free again (re-run simulate, with or without --batch-api, to continue)")
        line = (f"simulate --batch-api: {self.rounds} round(s), {self.submitted:,} calls submitted, "
                f"{self.answered:,} answered, {self.failed_calls:,} came back without an answer; dialogues "
                f"{self.done:,} done, {self.failed:,} failed; ${self.cost_usd:.4f} at batch prices")
        if self.waiting:
            line += f"; {self.waiting:,} calls still out (re-run to collect)"
        if self.stragglers:
            line += (f"; {self.stragglers:,} dialogues left to online `itcollect simulate` (their call failed in "
                     f"every batch)")
        return line


class _WorkspaceLock:
    """One batch run per workspace at a time (two would race on the same dialogues' next calls)."""

    def __init__(self, root: Any) -> None:
        self.path = os.path.join(str(root), LOCK_FILE)
        self.fh: Any = None

    def __enter__(self) -> _WorkspaceLock:
        import fcntl

        self.fh = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - held for the run
        try:
            fcntl.flock(self.fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.fh.seek(0)
            other = self.fh.read().strip()
            self.fh.close()
            raise ServiceError(f"another `simulate --batch-api` is running on this workspace"
                               f"{f' (pid {other})' if other else ''}; wait for it or stop it first",
                               path=self.path) from None
        self.fh.seek(0)
        self.fh.truncate()
        self.fh.write(str(os.getpid()))
        self.fh.flush()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.fh is not None:
            self.fh.close()


def _result_from_row(key: str, row: dict[str, Any]) -> Any:
    from .llm import ChatResult

    return ChatResult(row["response"] or "", row["finish_reason"] or "stop", row["model"], key,
                      int(row["prompt_tokens"] or 0), int(row["completion_tokens"] or 0),
                      float(row["latency_ms"] or 0.0), float(row["cost_usd"] or 0.0), True, int(row["attempts"] or 0))


def _call_estimate(body: dict[str, Any], price: Any) -> tuple[int, int, int, float, float, float]:
    """(prompt, expected completion, max completion tokens, batch cost, online cost, max batch cost)."""
    from .llm import call_cost

    pt = _prompt_estimate(body)
    last = body["messages"][-1].get("content") if body.get("messages") else ""
    guess = int(_estimate(last if isinstance(last, str) else "") * 1.2) + 16
    ct_max = int(body.get("max_tokens") or guess)
    ct = min(ct_max, guess)
    return (pt, ct, ct_max, call_cost(price, pt, ct, batch=True), call_cost(price, pt, ct),
            call_cost(price, pt, ct_max, batch=True))


class _Round:
    """Advances dialogues from the ledger and collects the next call of each (one round)."""

    def __init__(self, store: Store, driver: Any, llm: Any, max_attempts: int) -> None:
        self.store = store
        self.driver = driver
        self.llm = llm
        self.max_attempts = max_attempts

    def next_call(self, state: Any, *, write: bool) -> tuple[str, Any]:
        """Walk a dialogue forward over everything the ledger can answer.

        Returns ("finished", None) | ("call", BatchCall) | ("in_flight", key) | ("straggler", key)
        | ("ready", None) (dry run: an answer is in the ledger, nothing applied).
        """
        driver = self.driver
        while True:
            step = driver.next_step(state)
            if step is None:
                return "finished", None
            if step.kind == "template":
                outcome = driver.apply(state, step)
                if write:
                    driver.record(self.store, state, step, outcome)
                else:
                    state.turns.append({"role": "user", "content": outcome.content,
                                        "interaction_type": step.interaction_type, "idx": step.idx})
                continue
            messages = step.messages or []
            key = self.llm.call_key(step.role, messages, sample=step.sample)
            row = self.store.ledger_lookup(key)
            status = row["status"] if row is not None else None
            if status == "done":
                if not write:
                    return "ready", None
                driver.record(self.store, state, step, driver.apply(state, step, _result_from_row(key, row)))
                continue
            if status == "batched":
                return "in_flight", key
            if status == "failed" and self.store.batch_failure_counts([key])[key] >= self.max_attempts:
                return "straggler", key
            role = step.role
            return "call", BatchCall(key, role, self.llm.model_for(role), self.llm.base_url_for(role),
                                     self.llm.request_body(role, messages))


def _specs_to_plan(store: Store, limit: int | None) -> list[dict[str, Any]]:
    specs = list(store.iter_specs(("pending", "in_progress")))
    return specs if limit is None else specs[:limit]


def _dry_run(ws: Any, opts: Any, llm: Any, driver: Any) -> dict[str, Any]:
    """The next round, computed without writing anything: calls, tokens, cost at batch prices."""
    store = ws.store
    planner = _Round(store, driver, llm, int(ws.config["batch"]["max_attempts"]))
    calls: list[BatchCall] = []
    seen: set[str] = set()
    counts = {"ready": 0, "in_flight": 0, "straggler": 0}
    remaining = 0
    specs = _specs_to_plan(store, opts.limit)
    for spec in specs:
        state = driver.load(store, spec, create=False)
        kind, what = planner.next_call(state, write=False)
        if kind == "call":
            if what.key not in seen:
                calls.append(what)
                seen.add(what.key)
        elif kind in counts:
            counts[kind] += 1
        if not state.done:
            left = 2 * spec["n_turns"] - len(state.turns)
            remaining += left - (1 if len(state.turns) == 0 else 0)  # the first request is a template
    pt = ct = ct_max = 0
    cost = cost_online = cost_max = 0.0
    by_role: dict[str, int] = {}
    for c in calls:
        a, b, m, x, y, z = _call_estimate(c.body, llm.price_for(c.role))
        pt, ct, ct_max = pt + a, ct + b, ct_max + m
        cost, cost_online, cost_max = cost + x, cost_online + y, cost_max + z
        by_role[c.role] = by_role.get(c.role, 0) + 1
    settings = ws.config["batch"]
    files = split_calls(calls, max_requests=int(settings["max_requests_per_file"]),
                        max_bytes=int(settings["max_bytes_per_file"])) if calls else []
    return {"dialogues": len(specs), "calls": len(calls), "by_role": by_role, "prompt_tokens": pt,
            "completion_tokens": ct, "max_completion_tokens": ct_max, "cost_usd": round(cost, 6),
            "cost_usd_online": round(cost_online, 6), "cost_usd_max": round(cost_max, 6), "batches": len(files),
            "ready": counts["ready"], "in_flight": counts["in_flight"],
            "stragglers": counts["straggler"], "max_attempts": int(settings["max_attempts"]),
            "batches_out": len(store.open_batches()), "remaining_calls": remaining,
            "assistant_model": llm.model_for("assistant"), "annotator_model": llm.model_for("annotator")}


async def _cancel(ws: Any, opts: Any, echo: Callable[[str], None]) -> BatchSummary:
    """``simulate --batch-api --cancel``: stop every batch still out and collect what they answered."""
    from .llm import LLMClient

    llm = LLMClient(ws.config, ws.store, command="simulate --batch-api --cancel", base_url=opts.base_url,
                    model=opts.model, annotator_base_url=opts.annotator_base_url,
                    annotator_model=opts.annotator_model, concurrency=opts.concurrency)
    try:
        runner = BatchRunner(ws.store, ws.config, llm, echo=echo)
        summary = BatchSummary(cancelled=await runner.cancel_all())
        if summary.cancelled:
            await runner.drain(wait=True)  # until the provider reports each one cancelled (or finished)
        for rep in runner.collected:
            summary.answered += rep.answered
            summary.failed_calls += rep.failed
            summary.cost_usd += rep.cost_usd
        return summary
    finally:
        await llm.aclose()


async def _run(ws: Any, opts: Any, echo: Callable[[str], None]) -> BatchSummary:
    from .llm import LLMClient
    from .progress import progress
    from .simulate import DialogueDriver
    from .store.claims import process_holder

    store, config = ws.store, ws.config
    settings = config["batch"]
    dry_run = bool(getattr(opts, "dry_run", False))
    llm = LLMClient(config, store, command="simulate --batch-api", base_url=opts.base_url, model=opts.model,
                    annotator_base_url=opts.annotator_base_url, annotator_model=opts.annotator_model,
                    concurrency=opts.concurrency, dry_run=dry_run)
    summary = BatchSummary()
    try:
        driver = DialogueDriver(config, assistant_model=llm.model_for("assistant"),
                                annotator_model=llm.model_for("annotator"), base=ws.root)
        if dry_run:
            summary.estimate = _dry_run(ws, opts, llm, driver)
            return summary
        holder = process_holder("simulate-batch")
        wait = bool(settings["wait"])
        max_cost = opts.max_cost if opts.max_cost is not None else (config["simulate"]["max_cost_usd"] or None)
        runner = BatchRunner(store, config, llm, echo=echo)

        async def renewing_sleep(seconds: float) -> None:
            store.renew_claims(holder, lease_s=LEASE_S)
            await asyncio.sleep(seconds)

        runner._sleep = renewing_sleep
        planner = _Round(store, driver, llm, int(settings["max_attempts"]))

        def account() -> None:
            for rep in runner.collected:
                summary.answered += rep.answered
                summary.failed_calls += rep.failed
                summary.cost_usd += rep.cost_usd
                if rep.remote_status == "failed":
                    raise ServiceError(f"batch {rep.batch_id} failed as a whole at the provider "
                                       f"({rep.errors[0] if rep.errors else 'no reason given'}); its calls are "
                                       f"free again and a re-run submits them")
            runner.collected.clear()

        try:
            # 1. whatever an earlier run left out there: finish submitting, poll, collect
            if store.open_batches():
                echo(f"resuming {len(store.open_batches())} batch(es) from an earlier run")
                still = await runner.drain(wait=wait)
                account()
                if still:
                    summary.waiting = sum(b["n_requests"] for b in still)
                    return summary
            ids = store.claim_specs(holder, opts.limit if opts.limit is not None else 1 << 40, lease_s=LEASE_S)
            states = {i: driver.load(store, spec) for i in ids if (spec := store.get_spec(i)) is not None}
            while states:
                calls: list[BatchCall] = []
                bar = progress(total=len(states), desc=f"round {store.next_batch_round()}: advance dialogues",
                               unit="dlg", leave=False)
                for spec_id, state in list(states.items()):
                    bar.update(1)
                    kind, what = planner.next_call(state, write=True)
                    if kind == "finished":
                        if state.status == "in_progress":
                            driver.finish(store, state, "done")
                        store.finish_claim(spec_id, holder, state.status, state.status_reason)
                        summary.done += state.status == "done"
                        summary.failed += state.status == "failed"
                        del states[spec_id]
                    elif kind == "straggler":
                        store.finish_claim(spec_id, holder, "pending",
                                           f"left to online simulate: its call failed in {settings['max_attempts']} "
                                           f"batches")
                        summary.stragglers += 1
                        del states[spec_id]
                    elif kind == "in_flight":  # submitted by another path; collected by a later run
                        del states[spec_id]
                    else:
                        calls.append(what)
                bar.close()
                calls = list({c.key: c for c in calls}.values())  # identical calls: submitted once
                if not calls:
                    break
                if max_cost:
                    budget = max_cost - summary.cost_usd
                    kept, total = [], 0.0
                    for c in calls:
                        upper = _call_estimate(c.body, llm.price_for(c.role))[5]
                        if total + upper > budget:
                            break
                        kept.append(c)
                        total += upper
                    if len(kept) < len(calls):
                        summary.stopped = (f"--max-cost ${max_cost:.2f}: submitting {len(kept):,} of {len(calls):,} "
                                           f"calls this round would stay within the budget (spent "
                                           f"${summary.cost_usd:.4f}, at most ${total:.4f} more)")
                    calls = kept
                    if not calls:
                        break
                round_no = store.next_batch_round()
                runner.record_round(calls, round_no)
                summary.rounds += 1
                summary.submitted += len(calls)
                echo(f"round {round_no}: {len(calls):,} calls recorded, submitting")
                still = await runner.drain(wait=wait)
                account()
                if still:
                    summary.waiting = sum(b["n_requests"] for b in still)
                    break
                if summary.stopped:
                    break
        finally:
            store.release_claims(holder)
        return summary
    finally:
        await llm.aclose()


def run_batch_simulation(ws: Any, opts: Any, *, echo: Callable[[str], None] | None = None,
                         status: bool | None = None, cancel: bool = False) -> BatchSummary:
    """``itcollect simulate --batch-api`` (with ``opts`` the online run's SimulateOptions).

    ``status`` (or ``opts.status``): report batches in flight from the store and return.
    ``cancel``: cancel every batch still out at the provider, collect what they had answered, free
    the other calls; submit nothing.
    ``opts.dry_run``: estimate the next round at batch prices, write nothing.
    Otherwise: collect what is out, then submit rounds until every dialogue is done (or, with
    ``[batch] wait = false``, submit or collect one round and return).
    """
    import sys

    if echo is None:
        def echo(msg: str) -> None:
            print(f"itcollect: {msg}", file=sys.stderr, flush=True)

    if status if status is not None else getattr(opts, "status", False):
        return BatchSummary(status=batch_status(ws.store))
    if getattr(opts, "limit", None) is not None and opts.limit < 0:
        from .errors import UsageError

        raise UsageError("--limit must be zero or more")
    from contextlib import nullcontext

    import openai

    # a dry run writes nothing, so it may run while a batch run polls
    lock = nullcontext() if getattr(opts, "dry_run", False) else _WorkspaceLock(ws.root)
    with lock:
        try:
            summary = asyncio.run(_cancel(ws, opts, echo) if cancel else _run(ws, opts, echo))
        except openai.APIError as exc:
            raise ServiceError(f"the Batch API failed: {type(exc).__name__}: {exc}; nothing is lost, re-run "
                               f"`itcollect simulate --batch-api` to continue") from None
    return summary
