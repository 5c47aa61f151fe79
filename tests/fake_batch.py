"""The OpenAI Files and Batches endpoints, served by the loopback test server.

Routes (what the official ``openai`` SDK calls): ``POST /v1/files`` (multipart, purpose=batch),
``GET /v1/files`` (list), ``GET /v1/files/{id}``, ``GET /v1/files/{id}/content``,
``POST /v1/batches``, ``GET /v1/batches`` (list, newest first, cursor ``after``),
``GET /v1/batches/{id}``, ``POST /v1/batches/{id}/cancel``.

A batch is processed on a poll: after ``polls_before_done`` retrieves it answers every input line
with ``answer(body)`` (the same responder the chat endpoint uses) and writes output and error
files, as the real service does. Injectable: per-request failures (error-file lines), expiry with
partial output, whole-batch failure, cancellation. Everything the server did is logged for the
tests' "each custom_id answered exactly once per round" checks.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import itertools
import json
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from aiohttp import web

TERMINAL = ("completed", "expired", "cancelled", "failed")


def default_answer(body: dict[str, Any]) -> dict[str, Any]:
    """A plain chat completion echoing the last message (for tests that do not validate turns)."""
    last = body["messages"][-1]["content"]
    text = f"answer to: {last[-80:]}"
    prompt_tokens = sum(len(m["content"]) for m in body["messages"]) // 4 + 1
    return {"id": "chatcmpl-x", "object": "chat.completion", "created": int(time.time()), "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": len(text) // 4 + 1,
                      "total_tokens": prompt_tokens + len(text) // 4 + 1}}


def _share(custom_id: str) -> float:
    return int(hashlib.sha256(custom_id.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF


class FakeBatchAPI:
    """State of the fake Files/Batches service; attach to an aiohttp app with :meth:`attach`."""

    def __init__(self, answer: Callable[[dict[str, Any]], Any] | None = None) -> None:
        #: body -> chat.completion dict; None: the chat server's own responder (after ``install``).
        self.answer = answer
        self.server: Any = None
        self.files: dict[str, dict[str, Any]] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self._ids = itertools.count(1)
        # -- knobs -------------------------------------------------------------------------------
        self.polls_before_done = 0          # retrieves that see the batch unfinished
        self.fail_first_share = 0.0         # share of custom_ids whose FIRST submission errors
        self.http_error_share = 0.5         # of those, share written as a non-200 response (rest: error object)
        self.expire_next = 0                # the next N batches expire after answering half their lines
        self.expired_lines_in_error_file = True  # False: expired requests simply have no line at all
        self.fail_next = 0                  # the next N batches fail validation as a whole
        self.max_requests_per_file = 50_000
        self.max_bytes_per_file = 200_000_000
        # -- what happened ---------------------------------------------------------------------------
        self.uploads: list[dict[str, Any]] = []
        self.created: list[dict[str, Any]] = []
        self.answered: list[tuple[str, str, str]] = []   # (batch id, round metadata, custom_id)
        self.errored: list[tuple[str, str, str]] = []    # the subset whose line went to the error file
        self.requests: Counter[str] = Counter()          # "METHOD path-kind" -> count
        self._seen: Counter[str] = Counter()

    # -- wiring ------------------------------------------------------------------------------------
    def install(self, app: web.Application, server: Any = None) -> None:
        """``FakeOpenAI(extra_routes=api.install)``: add the routes, answer with the server's responder."""
        self.server = server
        self.attach(app)

    def _answer(self, body: dict[str, Any]) -> Any:
        if self.answer is not None:
            return self.answer(body)
        if self.server is None:
            return default_answer(body)
        text = self.server.responder(body)
        return {"id": "chatcmpl-" + hashlib.sha256(text.encode()).hexdigest()[:24], "object": "chat.completion",
                "created": int(time.time()), "model": body["model"],
                "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                             "message": {"role": "assistant", "content": text}}],
                "usage": self.server._usage(body, text)}

    def attach(self, app: web.Application) -> None:
        app.router.add_post("/v1/files", self.create_file)
        app.router.add_get("/v1/files", self.list_files)
        app.router.add_get("/v1/files/{id}", self.retrieve_file)
        app.router.add_get("/v1/files/{id}/content", self.file_content)
        app.router.add_post("/v1/batches", self.create_batch)
        app.router.add_get("/v1/batches", self.list_batches)
        app.router.add_get("/v1/batches/{id}", self.retrieve_batch)
        app.router.add_post("/v1/batches/{id}/cancel", self.cancel_batch)

    def _id(self, prefix: str) -> str:
        return f"{prefix}-{next(self._ids):06d}"

    @staticmethod
    def _error(status: int, message: str) -> web.Response:
        return web.json_response({"error": {"message": message, "type": "invalid_request_error", "code": None}},
                                 status=status)

    # -- files -------------------------------------------------------------------------------------
    def _store_file(self, content: bytes, filename: str, purpose: str) -> dict[str, Any]:
        fid = self._id("file")
        meta = {"id": fid, "object": "file", "bytes": len(content), "created_at": int(time.time()),
                "filename": filename, "purpose": purpose, "status": "processed"}
        self.files[fid] = {"meta": meta, "content": content}
        return meta

    async def create_file(self, request: web.Request) -> web.Response:
        self.requests["POST files"] += 1
        purpose, filename, content = None, None, None
        async for part in await request.multipart():
            data = await part.read()  # type: ignore[union-attr]
            if part.name == "purpose":
                purpose = data.decode()
            elif part.name == "file":
                filename, content = part.filename, bytes(data)  # type: ignore[union-attr]
        if purpose != "batch":
            return self._error(400, f"purpose must be 'batch' here, got {purpose!r}")
        if content is None:
            return self._error(400, "missing file")
        meta = self._store_file(content, filename or "upload.jsonl", "batch")
        self.uploads.append({"id": meta["id"], "filename": filename,
                             "lines": content.count(b"\n") + (0 if content.endswith(b"\n") else 1)})
        return web.json_response(meta)

    async def list_files(self, request: web.Request) -> web.Response:
        self.requests["GET files"] += 1
        purpose = request.query.get("purpose")
        data = [f["meta"] for f in self.files.values() if purpose is None or f["meta"]["purpose"] == purpose]
        return web.json_response({"object": "list", "data": data, "has_more": False})

    async def retrieve_file(self, request: web.Request) -> web.Response:
        f = self.files.get(request.match_info["id"])
        return web.json_response(f["meta"]) if f else self._error(404, "no such file")

    async def file_content(self, request: web.Request) -> web.Response:
        self.requests["GET content"] += 1
        f = self.files.get(request.match_info["id"])
        if f is None:
            return self._error(404, "no such file")
        return web.Response(body=f["content"], content_type="application/octet-stream")

    # -- batches -----------------------------------------------------------------------------------
    async def create_batch(self, request: web.Request) -> web.Response:
        self.requests["POST batches"] += 1
        body = await request.json()
        fid = body.get("input_file_id")
        if fid not in self.files:
            return self._error(400, f"input file {fid!r} not found")
        if body.get("endpoint") != "/v1/chat/completions" or body.get("completion_window") != "24h":
            return self._error(400, "unsupported endpoint or completion window")
        now = int(time.time())
        bid = self._id("batch")
        batch = {"id": bid, "object": "batch", "endpoint": body["endpoint"], "errors": None,
                 "input_file_id": fid, "completion_window": "24h", "status": "validating",
                 "output_file_id": None, "error_file_id": None, "created_at": now, "in_progress_at": None,
                 "expires_at": now + 86400, "finalizing_at": None, "completed_at": None, "failed_at": None,
                 "expired_at": None, "cancelling_at": None, "cancelled_at": None,
                 "request_counts": {"total": 0, "completed": 0, "failed": 0},
                 "metadata": body.get("metadata") or {}}
        self.batches[bid] = {"obj": batch, "polls": 0, "cancel": False}
        self.created.append({"id": bid, "metadata": dict(batch["metadata"]), "input_file_id": fid})
        return web.json_response(batch)

    async def list_batches(self, request: web.Request) -> web.Response:
        self.requests["GET batches"] += 1
        limit = int(request.query.get("limit", 20))
        after = request.query.get("after")
        objs = [b["obj"] for b in reversed(self.batches.values())]  # newest first
        if after:
            ids = [o["id"] for o in objs]
            objs = objs[ids.index(after) + 1:] if after in ids else []
        page = objs[:limit]
        return web.json_response({"object": "list", "data": page, "has_more": len(objs) > limit,
                                  "first_id": page[0]["id"] if page else None,
                                  "last_id": page[-1]["id"] if page else None})

    async def retrieve_batch(self, request: web.Request) -> web.Response:
        self.requests["GET batch"] += 1
        entry = self.batches.get(request.match_info["id"])
        if entry is None:
            return self._error(404, "no such batch")
        await self._advance(entry)
        return web.json_response(entry["obj"])

    async def cancel_batch(self, request: web.Request) -> web.Response:
        self.requests["POST cancel"] += 1
        entry = self.batches.get(request.match_info["id"])
        if entry is None:
            return self._error(404, "no such batch")
        if entry["obj"]["status"] not in TERMINAL:
            entry["cancel"] = True
            entry["obj"]["status"] = "cancelling"
            entry["obj"]["cancelling_at"] = int(time.time())
        return web.json_response(entry["obj"])

    # -- processing --------------------------------------------------------------------------------
    def _parse_input(self, content: bytes) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        lines, errors, seen = [], [], set()
        if len(content) > self.max_bytes_per_file:
            errors.append({"code": "file_too_large", "message": "input file exceeds the size limit", "line": None})
        for no, raw in enumerate(content.decode("utf-8").splitlines(), 1):
            if not raw.strip():
                continue
            try:
                line = json.loads(raw)
                cid = line["custom_id"]
                ok = (line["method"] == "POST" and line["url"] == "/v1/chat/completions"
                      and isinstance(line["body"]["messages"], list) and line["body"]["model"])
            except (ValueError, KeyError, TypeError):
                errors.append({"code": "invalid_json_line", "message": "malformed request line", "line": no})
                continue
            if not ok:
                errors.append({"code": "invalid_request", "message": "bad method, url or body", "line": no})
            elif cid in seen:
                errors.append({"code": "duplicate_custom_id", "message": f"duplicate custom_id {cid}", "line": no})
            seen.add(cid)
            lines.append(line)
        if len(lines) > self.max_requests_per_file:
            errors.append({"code": "too_many_requests", "message": "too many requests in one file", "line": None})
        return lines, errors

    async def _advance(self, entry: dict[str, Any]) -> None:
        obj = entry["obj"]
        if obj["status"] in TERMINAL:
            return
        entry["polls"] += 1
        now = int(time.time())
        if obj["status"] == "validating":
            lines, errors = self._parse_input(self.files[obj["input_file_id"]]["content"])
            if errors or self.fail_next > 0:
                if not errors:
                    self.fail_next -= 1
                    errors = [{"code": "injected_failure", "message": "batch failed (injected)", "line": None}]
                obj.update(status="failed", failed_at=now, errors={"object": "list", "data": errors})
                return
            entry["lines"] = lines
            obj["request_counts"]["total"] = len(lines)
            obj.update(status="in_progress", in_progress_at=now)
        if entry["cancel"]:
            await self._process(entry, upto=len(entry["lines"]) // 3, final="cancelled")
            return
        if entry["polls"] <= self.polls_before_done:
            return
        if self.expire_next > 0:
            self.expire_next -= 1
            await self._process(entry, upto=len(entry["lines"]) // 2, final="expired")
        else:
            await self._process(entry, upto=len(entry["lines"]), final="completed")

    async def _process(self, entry: dict[str, Any], *, upto: int, final: str) -> None:
        obj = entry["obj"]
        round_tag = str((obj.get("metadata") or {}).get("round", ""))
        out, err = [], []
        completed = failed = 0
        for i, line in enumerate(entry["lines"]):
            cid = line["custom_id"]
            rid = f"batch_req_{obj['id']}_{i}"
            if i >= upto:
                if final == "expired" and self.expired_lines_in_error_file or final == "cancelled":
                    code = "batch_expired" if final == "expired" else "batch_cancelled"
                    err.append({"id": rid, "custom_id": cid, "response": None,
                                "error": {"code": code, "message": f"request not processed: {code}"}})
                    failed += 1
                continue
            self.answered.append((obj["id"], round_tag, cid))
            self._seen[cid] += 1
            if self._seen[cid] == 1 and self.fail_first_share and _share(cid) < self.fail_first_share:
                failed += 1
                self.errored.append((obj["id"], round_tag, cid))
                if _share(cid + "#kind") < self.http_error_share:
                    err.append({"id": rid, "custom_id": cid, "error": None,
                                "response": {"status_code": 500, "request_id": rid,
                                             "body": {"error": {"message": "server error (injected)",
                                                                "type": "server_error"}}}})
                else:
                    err.append({"id": rid, "custom_id": cid, "response": None,
                                "error": {"code": "server_error", "message": "request failed (injected)"}})
                continue
            body = self._answer(line["body"])
            if inspect.isawaitable(body):
                body = await body
            out.append({"id": rid, "custom_id": cid, "error": None,
                        "response": {"status_code": 200, "request_id": rid, "body": body}})
            completed += 1
        now = int(time.time())
        if out:
            obj["output_file_id"] = self._store_file(
                "".join(json.dumps(x) + "\n" for x in out).encode(), f"{obj['id']}_output.jsonl", "batch_output")["id"]
        if err:
            obj["error_file_id"] = self._store_file(
                "".join(json.dumps(x) + "\n" for x in err).encode(), f"{obj['id']}_error.jsonl", "batch_output")["id"]
        obj["request_counts"] = {"total": len(entry["lines"]), "completed": completed, "failed": failed}
        obj.update(status=final, finalizing_at=now, **{f"{final}_at": now})
        await asyncio.sleep(0)

    # -- helpers for tests -------------------------------------------------------------------------
    def answered_per_round(self) -> Counter[tuple[str, str]]:
        """(round, custom_id) -> times answered; the exactly-once check wants every value == 1."""
        return Counter((r, cid) for _, r, cid in self.answered)
