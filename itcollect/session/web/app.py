"""The ASGI app of ``itcollect session --web`` (Starlette): the annotation sessions in a browser.

A thin front-end over the session engine: every action is the same :class:`~..engine.Session`
call the terminal UI and the line protocol make, committed before the response leaves, and the
page is static HTML/CSS/JS (``static/``) that renders what the JSON API returns, always as text.

Accounts and security: a login link (``itcollect annotators add``) sets an HttpOnly,
SameSite=Strict session cookie; every state-changing request carries the session's CSRF token in
``X-CSRF-Token`` (403 without it); an unknown, expired or revoked session gets 401 and nothing
else; request bodies are bounded by ``[web] max_body_bytes`` (413 with a message). Annotators act
only through their own engine session, so they see and change only their own work; reviewers get
the review queue (``--review`` semantics), a lead the team's progress.

All store access runs on the event loop's thread: the store is one synchronous SQLite connection
and the engine's writes are short transactions, so a non-LLM action takes a few milliseconds and
no two writes of this process interleave. Model answers stream through server-sent events
(``GET /api/stream``) from a task per annotator (:mod:`.desk`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from itcollect.config import Config
from itcollect.kernel.errors import ItcollectError
from itcollect.llm.judgement.schema import SEVERITIES
from itcollect.session.engine import CommandError, ControlRevealed, Session
from itcollect.session.guidelines import GUIDE_LANGS, guide_sections
from itcollect.session.review import (
    MARK_CATEGORIES,
    ORDERS,
    ReviewError,
    next_review,
    record_fix,
    record_mark,
    record_pick,
    record_unmark,
    record_verdict,
)
from itcollect.session.status import status_line
from itcollect.session.web.auth import secret_hash
from itcollect.session.web.desk import TAB_TIMEOUT_S, Desk, SharedClient
from itcollect.store import SKIP_REASONS, LeaseLost, Store
from itcollect.store.interfaces import WebStore

log = logging.getLogger("itcollect.web")

COOKIE = "itcollect_session"
CSRF_HEADER = "x-csrf-token"
TAB_HEADER = "x-tab"
HOME = {"annotator": "/", "reviewer": "/review", "lead": "/lead"}
REVIEWERS = ("reviewer", "lead")
_TOUCH_EVERY_S = 60.0

_SECURITY_HEADERS = [
    (b"content-security-policy", b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                                 b"connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
                                 b"form-action 'self'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]
_PAGES = {"/": "index.html", "/review": "review.html", "/lead": "lead.html"}
_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}


class ApiError(Exception):
    """An answer other than 200: status, a message for the page, and extra JSON fields."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra


@dataclass
class Who:
    name: str
    role: str
    csrf: str
    sid_hash: str


def _static_files() -> dict[str, bytes]:
    root = resources.files("itcollect.session.web").joinpath("static")
    return {p.name: p.read_bytes() for p in root.iterdir() if p.name.rsplit(".", 1)[-1] in ("html", "js", "css", "svg")}


class SecurityHeaders:
    """Pure ASGI middleware (no buffering, so streamed answers pass through at once): a strict
    Content-Security-Policy (scripts from this server only: even a rendering bug could not run an
    injected script), no sniffing, no framing, no referrer, and no caching of the API. It also
    says how long the app took before the response started (``Server-Timing: app;dur=MS``), the
    server's own latency, which a benchmark or a browser's dev tools can read apart from the network."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        no_store = scope["path"].startswith(("/api/", "/login"))
        started = time.perf_counter()

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", [])) + _SECURITY_HEADERS
                took = (time.perf_counter() - started) * 1000
                headers.append((b"server-timing", f"app;dur={took:.2f}".encode()))
                if no_store:
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class WebApp:
    """The server's state: the store, one :class:`Desk` (engine session) per annotator, and the
    routes. ``client_factory()`` builds an LLM client; the server shares one among all sessions
    (:class:`SharedClient`), ``first_client`` if given (built before serving, to fail early)."""

    def __init__(self, config: Config, store: WebStore, client_factory: Callable[[], Any], *,
                 first_client: Any = None, on_shutdown: Callable[[], None] | None = None) -> None:
        self.config = config
        self.store = store
        self.llm = SharedClient(client_factory, first_client)
        web = config["web"]
        self.max_body = int(web["max_body_bytes"])
        self.session_s = float(web["session_hours"]) * 3600.0
        self.secure_cookie = web["secure_cookie"]
        self.desks: dict[str, Desk] = {}
        self.review_later: dict[str, set[str]] = {}
        self._touched: dict[str, float] = {}
        self._static = _static_files()
        self._on_shutdown = on_shutdown
        self._lead_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="itcollect-lead")
        self._reader: Store | None = None
        self.stopping = False
        from itcollect.kernel.prompting import load_prompts
        from itcollect.kernel.taxonomy import INTERACTION_TYPES

        # one set of compiled templates for every annotator's session (compiling per session would
        # stall the event loop ~50 ms each time someone new logs in)
        self.prompts = load_prompts(config, config.path.parent if getattr(config, "path", None) else None)

        self.types = [{"id": t.id, "description": t.description} for t in INTERACTION_TYPES.values()]

    # -- plumbing --------------------------------------------------------------------------------
    def desk(self, name: str) -> Desk:
        desk = self.desks.get(name)
        if desk is None:
            desk = self.desks[name] = Desk(Session(self.config, self.store, name, self.llm.handle,
                                                   prompts=self.prompts))
        return desk

    def auth(self, request: Request, *, roles: tuple[str, ...] | None = None, csrf: bool = False,
             csrf_value: str | None = None) -> Who:
        sid = request.cookies.get(COOKIE)
        row = self.store.web_session(secret_hash(sid)) if sid else None
        if row is None:
            raise ApiError(401, "not logged in: open your login link again (ask your coordinator for a new one)")
        who = Who(row["name"], row["role"], row["csrf"], secret_hash(sid))
        if csrf:
            sent = csrf_value if csrf_value is not None else request.headers.get(CSRF_HEADER, "")
            if not sent or not hmac.compare_digest(sent.encode(), who.csrf.encode()):
                raise ApiError(403, "missing or wrong CSRF token: reload the page")
        if roles is not None and who.role not in roles:
            raise ApiError(403, f"this needs the role {' or '.join(roles)}; you are {who.role}")
        now = time.monotonic()
        if now - self._touched.get(who.name, -_TOUCH_EVERY_S) >= _TOUCH_EVERY_S:
            self._touched[who.name] = now
            self.store.touch_account(who.name)
        return who

    async def read_json(self, request: Request) -> dict[str, Any]:
        """The JSON object of a request body, at most ``[web] max_body_bytes`` (else 413)."""
        limit = self.max_body
        declared = request.headers.get("content-length")
        too_big = (f"the request is too large: more than {limit} bytes (the server's [web] max_body_bytes); "
                   f"shorten the text and send it again")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise ApiError(413, too_big)
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise ApiError(413, too_big)
        if not body.strip():
            return {}
        try:
            data = json.loads(body)
        except ValueError:
            raise ApiError(400, "the request body is not JSON") from None
        if not isinstance(data, dict):
            raise ApiError(400, "the request body must be a JSON object")
        return data

    def _secure(self, request: Request) -> bool:
        if self.secure_cookie == "always":
            return True
        if self.secure_cookie == "never":
            return False
        return request.url.scheme == "https"

    # -- the annotator's state -----------------------------------------------------------------
    def state_json(self, who: Who, desk: Desk, *, message: str | None = None, claim: bool = False,
                   load: bool = False, progress: bool = False, **extra: Any) -> dict[str, Any]:
        s = desk.s
        if desk.notice:
            message = desk.notice if not message else f"{desk.notice}\n{message}"
            desk.notice = None
        if claim and s.current is None:
            cur = s.open_next()
            if cur is not None:
                desk.error = None
                message = "\n".join(m for m in (message, cur.resume_note) if m) or None
                if s.state() == "answer":  # as the terminal does: the model is asked again at once
                    desk.start_answer()
        elif load and s.current is not None:
            message = "\n".join(m for m in (message, s.resume_message()) if m) or None
        note = s.take_control_note()
        if note is not None:  # the answer just decided was a control item: say so
            message = f"{message}\n{note['message']}" if message else note["message"]
            extra["control"] = note
        view = s.view()
        out: dict[str, Any] = {
            "annotator": who.name, "role": who.role, "csrf": who.csrf, "dialogue": view,
            "streaming": desk.streaming,
            "answer_error": desk.error if view is not None and view["state"] == "answer" else None,
            "message": message, **extra}
        if view is None and claim:
            out["idle"] = "No spec is waiting: every spec is done or leased by someone else. Thank you!"
        if progress:
            p = s.progress()
            out["progress"] = {**p, "line": status_line(p)}
            out["skip_reasons"] = list(SKIP_REASONS)
            out["types"] = self.types
            out["lease_s"] = s.lease_s
        return out

    def _check(self, desk: Desk, body: dict[str, Any], *, version: bool, streaming_ok: bool = False) -> None:
        s = desk.s
        if s.current is None:
            raise ApiError(409, "no dialogue is open here any more (it was finished, skipped or paused in another "
                                "tab or window): the page now shows where things stand", code="stale")
        if desk.streaming and not streaming_ok:
            raise ApiError(409, "the answer is still streaming: wait for it, or stop it", code="streaming")
        if version:
            view = s.view()
            if body.get("version") != (view or {}).get("version"):
                raise ApiError(409, "this dialogue changed in another tab or window; the page now shows where it "
                                    "stands: look again, then repeat the action", code="stale")

    async def _act(self, request: Request, fn: Callable[[Desk, dict[str, Any]], dict[str, Any] | None], *,
                   version: bool = True, streaming_ok: bool = False, need_open: bool = True) -> Response:
        who = self.auth(request, csrf=True)
        body = await self.read_json(request)
        desk = self.desk(who.name)
        desk.heard(request.headers.get(TAB_HEADER))
        async with desk.lock:
            if need_open:
                self._check(desk, body, version=version, streaming_ok=streaming_ok)
            try:
                extra = fn(desk, body) or {}
            except LeaseLost as exc:
                desk.s.lease_lost()
                raise ApiError(409, f"{exc.message}; moving on to the next dialogue (nothing of yours was lost)",
                               code="lease_lost") from None
            return JSONResponse(self.state_json(who, desk, **extra))

    # -- routes: pages -------------------------------------------------------------------------
    async def page(self, request: Request) -> Response:
        name = _PAGES.get(request.url.path)
        if name is None or name not in self._static:
            return PlainTextResponse("not found", status_code=404)
        return Response(self._static[name], media_type=_TYPES[".html"])

    async def static(self, request: Request) -> Response:
        name = request.path_params["name"]
        data = self._static.get(name)
        if data is None:
            return PlainTextResponse("not found", status_code=404)
        return Response(data, media_type=_TYPES["." + name.rsplit(".", 1)[-1]],
                        headers={"cache-control": "no-cache"})

    async def login(self, request: Request) -> Response:
        token = request.query_params.get("token", "")
        account = self.store.account_for_token(secret_hash(token)) if token else None
        if account is None:
            return PlainTextResponse("401 Unauthorized\n", status_code=401)
        from itcollect.session.web.auth import new_secret

        sid = new_secret()
        self.store.open_web_session(account["name"], secret_hash(sid), new_secret(), self.session_s)
        response = RedirectResponse(HOME.get(account["role"], "/"), status_code=303)
        response.set_cookie(COOKIE, sid, max_age=int(self.session_s), path="/", httponly=True, samesite="strict",
                            secure=self._secure(request))
        return response

    # -- routes: the annotator's API --------------------------------------------------------------
    async def api_state(self, request: Request) -> Response:
        who = self.auth(request)
        desk = self.desk(who.name)
        desk.heard(request.headers.get(TAB_HEADER))
        load = request.query_params.get("load") == "1"
        async with desk.lock:
            try:
                out = self.state_json(who, desk, claim=True, load=load, progress=True)
            except LeaseLost as exc:  # pragma: no cover - a lease taken between claim and open
                desk.s.lease_lost()
                out = self.state_json(who, desk, claim=True, progress=True, message=exc.message)
        return JSONResponse(out)

    async def api_stream(self, request: Request) -> Response:
        """The answer being streamed, as server-sent events: ``snapshot`` (what was said before
        this tab connected), ``delta``, ``reset`` (the endpoint failed mid-answer: it starts
        again), then ``end`` (committed: ``ok``; or the error)."""
        who = self.auth(request)
        desk = self.desk(who.name)
        desk.heard(request.headers.get(TAB_HEADER) or request.query_params.get("tab"))
        queue = desk.subscribe()

        async def events():
            try:
                idle = 0.0
                while True:
                    try:
                        event, data = await asyncio.wait_for(queue.get(), 1.0)
                    except asyncio.TimeoutError:
                        if self.stopping:
                            return
                        idle += 1.0
                        if idle >= 15.0:  # a comment now and then keeps proxies from closing the stream
                            idle = 0.0
                            yield ": keep-alive\n\n"
                        continue
                    idle = 0.0
                    yield f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"
                    if event == "end":
                        return
            finally:
                desk.unsubscribe(queue)

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"cache-control": "no-store", "x-accel-buffering": "no"})

    async def api_request(self, request: Request) -> Response:
        def do(desk: Desk, body: dict[str, Any]) -> dict[str, Any]:
            text = _text(body, "text")
            r = desk.s.add_request(text, _opt(body, "type"))
            desk.start_answer()
            msg = "The source sentence is attached to your first request." if r["content"] != text.strip() else None
            return {"message": msg, "request_warnings": r["warnings"]}

        return await self._act(request, do)

    async def api_accept(self, request: Request) -> Response:
        return await self._act(request, lambda d, b: (d.s.accept(_opt(b, "reason")), None)[1])

    async def api_edit(self, request: Request) -> Response:
        def do(desk: Desk, body: dict[str, Any]) -> dict[str, Any]:
            r = desk.s.edit(_text(body, "text"))
            if r["warnings"]:
                return {"message": "Your edit is saved; it still has warnings: accept it with a reason, or edit again."}
            return {"message": "Your edit is saved and accepted."}

        return await self._act(request, do)

    async def api_regenerate(self, request: Request) -> Response:
        def do(desk: Desk, body: dict[str, Any]) -> None:
            desk.s.reject_answer()
            desk.start_answer()

        return await self._act(request, do)

    async def api_retry(self, request: Request) -> Response:
        def do(desk: Desk, body: dict[str, Any]) -> None:
            desk.s.require("retry")
            desk.start_answer()

        return await self._act(request, do)

    async def api_undo(self, request: Request) -> Response:
        def do(desk: Desk, body: dict[str, Any]) -> dict[str, Any]:
            desk.s.undo()
            desk.error = None
            return {"message": "The last request was taken back (it is kept, marked undone)."}

        return await self._act(request, do)

    async def api_finish(self, request: Request) -> Response:
        def do(desk: Desk, body: dict[str, Any]) -> dict[str, Any]:
            try:
                did = desk.s.finish(_opt(body, "reason"))
            except ControlRevealed:
                return {}  # not finished: the control note (in the state) says why
            return {"finished": did, "message": "Dialogue finished."}

        return await self._act(request, do)

    async def api_skip(self, request: Request) -> Response:
        def do(desk: Desk, body: dict[str, Any]) -> dict[str, Any]:
            did = desk.s.skip(_text(body, "reason"), _opt(body, "note"))
            desk.error = None
            return {"skipped": did, "message": "Skipped."}

        return await self._act(request, do)

    async def api_flag(self, request: Request) -> Response:
        def do(desk: Desk, body: dict[str, Any]) -> dict[str, Any]:
            desk.s.flag(_opt(body, "note"))
            return {"message": "Flagged for review; the dialogue goes on."}

        return await self._act(request, do, streaming_ok=True)

    async def api_type(self, request: Request) -> Response:
        return await self._act(request, lambda d, b: (d.s.set_next_type(_text(b, "type")), None)[1])

    async def api_stop(self, request: Request) -> Response:
        def do(desk: Desk, body: dict[str, Any]) -> dict[str, Any]:
            if not desk.stop_answer():
                raise CommandError("no answer is streaming")
            return {"message": "Stopped: the answer was discarded; your request is kept."}

        return await self._act(request, do, version=False, streaming_ok=True)

    async def api_guidelines_seen(self, request: Request) -> Response:
        def do(desk: Desk, body: dict[str, Any]) -> None:
            desk.s.log_guidelines(_text(body, "type"))

        return await self._act(request, do, version=False, streaming_ok=True)

    async def api_pause(self, request: Request) -> Response:
        """The terminal's quit: the lease stays, the clock stops; the next load resumes here."""
        def do(desk: Desk, body: dict[str, Any]) -> dict[str, Any]:
            if desk.streaming:
                desk.stop_answer()
            desk.s.quit()
            return {"paused": True, "message": "Saved. Continue whenever you like: you resume exactly here."}

        return await self._act(request, do, version=False, streaming_ok=True, need_open=False)

    async def api_renew(self, request: Request) -> Response:
        """The page's ping (about once a minute): the tab is open; while the annotator is typing
        (``active``), the lease is renewed as the terminal does."""
        who = self.auth(request, csrf=True)
        body = await self.read_json(request)
        desk = self.desk(who.name)
        desk.heard(request.headers.get(TAB_HEADER))
        lease = True
        if body.get("active") and desk.s.current is not None:
            lease = desk.s.renew()
        return JSONResponse({"ok": True, "lease": lease})

    async def api_away(self, request: Request) -> Response:
        """A page's last words (``navigator.sendBeacon`` on close; it cannot set headers, so the
        CSRF token and tab id come in the body)."""
        body = await self.read_json(request)
        who = self.auth(request, csrf=True, csrf_value=str(body.get("csrf") or ""))
        desk = self.desk(who.name)
        async with desk.lock:
            desk.tab_closed(str(body.get("tab") or "") or None)
        return JSONResponse({"ok": True})

    async def api_logout(self, request: Request) -> Response:
        who = self.auth(request, csrf=True)
        self.store.close_web_session(who.sid_hash)
        response = JSONResponse({"ok": True})
        response.delete_cookie(COOKIE, path="/")
        return response

    async def api_guidelines(self, request: Request) -> Response:
        self.auth(request)
        lang = request.query_params.get("lang", "en")
        if lang not in GUIDE_LANGS:
            raise ApiError(400, f"guide language {lang!r}: one of {', '.join(GUIDE_LANGS)}")
        sections = [{"key": k, "text": v} for k, v in guide_sections(lang).items()]
        return JSONResponse({"lang": lang, "sections": sections})

    # -- routes: review --------------------------------------------------------------------------
    def _review_json(self, who: Who, order: str = "default", **extra: Any) -> dict[str, Any]:
        if order not in ORDERS:
            raise ApiError(400, f"review order {order!r}: one of {', '.join(ORDERS)}")
        later = self.review_later.setdefault(who.name, set())
        return {"reviewer": who.name, "role": who.role, "csrf": who.csrf, "order": order,
                "categories": list(MARK_CATEGORIES), "severities": list(SEVERITIES),
                "item": next_review(self.store, later, order), **extra}

    async def api_review(self, request: Request) -> Response:
        who = self.auth(request, roles=REVIEWERS)
        return JSONResponse(self._review_json(who, request.query_params.get("order", "default")))

    async def _review_act(self, request: Request, fn: Callable[[Who, dict[str, Any]], str | None]) -> Response:
        who = self.auth(request, roles=REVIEWERS, csrf=True)
        body = await self.read_json(request)
        message = fn(who, body)
        return JSONResponse(self._review_json(who, str(body.get("order") or "default"), message=message))

    async def api_review_verdict(self, request: Request) -> Response:
        def do(who: Who, body: dict[str, Any]) -> str:
            verdict = record_verdict(self.store, who.name, _text(body, "dialogue_id"), _text(body, "verdict"),
                                     _opt(body, "note"))
            return f"Recorded: {verdict}."

        return await self._review_act(request, do)

    async def api_review_later(self, request: Request) -> Response:
        def do(who: Who, body: dict[str, Any]) -> str:
            self.review_later.setdefault(who.name, set()).add(
                str(body.get("key") or "") or _text(body, "dialogue_id"))
            return "Left for later."

        return await self._review_act(request, do)

    async def api_review_mark(self, request: Request) -> Response:
        def do(who: Who, body: dict[str, Any]) -> str:
            record_mark(self.store, who.name, _text(body, "dialogue_id"), _int(body, "turn_id"),
                        _text(body, "category"), _text(body, "severity"), _int(body, "start"), _int(body, "end"),
                        _opt(body, "note"))
            return "Marked."

        return await self._review_act(request, do)

    async def api_review_unmark(self, request: Request) -> Response:
        def do(who: Who, body: dict[str, Any]) -> str:
            record_unmark(self.store, who.name, _int(body, "mark_id"))
            return "Mark taken back."

        return await self._review_act(request, do)

    async def api_review_fix(self, request: Request) -> Response:
        def do(who: Who, body: dict[str, Any]) -> str:
            record_fix(self.store, who.name, _text(body, "dialogue_id"), _int(body, "turn_id"), _text(body, "text"))
            return "Your fix is now the answer (the old one is kept). Accept the dialogue to record it as fixed."

        return await self._review_act(request, do)

    async def api_review_pick(self, request: Request) -> Response:
        def do(who: Who, body: dict[str, Any]) -> str:
            picked = record_pick(self.store, who.name, _int(body, "spec_id"), _text(body, "dialogue_id"),
                                 _opt(body, "note"))
            return f"Kept dialogue {picked[:8]}; the other copies are left out of the corpus."

        return await self._review_act(request, do)

    # -- routes: the lead --------------------------------------------------------------------------
    def _lead_figures(self) -> dict[str, Any]:
        """The team's figures, read in the lead's worker thread on a connection of its own: they
        read the whole action log and every spec (a second or more at the scale of a full plan),
        which must not hold up the annotators' requests on the event loop. WAL lets it read while
        the server writes."""
        if self._reader is None:
            self._reader = Store(self.store.path, migrate=False)
        store = self._reader
        from itcollect.stats.quality import quality_figures

        return {"stats": store.annotator_stats(), "flagged": store.flagged_dialogue_counts(),
                "last_action": store.last_actions(), "accounts": store.accounts(), "pool": store.spec_pool(),
                "specs": store.spec_counts(), "quality": quality_figures(store, self.config)}

    async def api_lead(self, request: Request) -> Response:
        who = self.auth(request, roles=("lead",))
        figures = await asyncio.get_running_loop().run_in_executor(self._lead_pool, self._lead_figures)
        stats, flagged, last_action = figures["stats"], figures["flagged"], figures["last_action"]
        accounts = {a["name"]: a for a in figures["accounts"]}
        now = time.monotonic()
        rows = []
        for name in sorted(set(accounts) | set(stats)):
            a = accounts.get(name)
            st = stats.get(name, {})
            desk = self.desks.get(name)
            seen = max([t for t in ((a or {}).get("last_seen_at"), last_action.get(name)) if t], default=None)
            rows.append({
                "name": name, "role": a["role"] if a else None,
                "account": ("revoked" if a["revoked_at"] else "active") if a else "terminal only",
                "dialogues": st.get("dialogues", 0), "skipped": st.get("skipped", 0),
                "flagged": flagged.get(name, 0), "turns": st.get("turns", 0), "edits": st.get("edits", 0),
                "regenerations": st.get("regenerations", 0), "skip_reasons": st.get("skip_reasons", {}),
                "median_seconds_per_dialogue": st.get("median_seconds_per_dialogue"), "last_seen": seen,
                "online": bool(desk and (desk.open_tabs(now) or now - desk.last_heard < TAB_TIMEOUT_S)),
                "working_on": desk.s.current.spec["id"] if desk and desk.s.current else None})
        quality = figures["quality"]  # the same figures as `stats --annotators`
        return JSONResponse({"lead": who.name, "csrf": who.csrf, "annotators": rows, "pool": figures["pool"],
                             "specs": figures["specs"], "quality": quality["annotators"],
                             "agreement": quality["agreement"]})

    # -- the app -----------------------------------------------------------------------------------
    async def sweep(self) -> None:
        """Now and then: an annotator whose every tab went silent (closed without last words,
        browser killed, network gone) has quit, as far as the clock of active time goes."""
        while True:
            await asyncio.sleep(min(30.0, TAB_TIMEOUT_S / 3))
            now = time.monotonic()
            for desk in list(self.desks.values()):
                if (desk.tabs or desk.quit_after_answer) and desk.s.current is not None and not desk.streaming \
                        and not desk.open_tabs(now) and now - desk.last_heard > TAB_TIMEOUT_S:
                    async with desk.lock:
                        with contextlib.suppress(Exception):
                            desk.s.quit()

    def warm_up(self) -> None:
        """Load the language detector and compile the templates (about a second) in a thread at
        start, as simulate does before its first call, so the first answer's checks do not stall
        everybody's requests while they load."""
        from itcollect.kernel.langid import warm_up

        try:
            warm_up(tuple(self.config["workspace"]["languages"]), self.config["ingest"]["langid_backend"])
            self.prompts.warm_up()
        except Exception:  # noqa: BLE001 - the first check loads whatever is missing, and says what failed
            log.exception("warming up")

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette):
        loop = asyncio.get_running_loop()
        loop.run_in_executor(None, self.warm_up)
        sweeper = loop.create_task(self.sweep())
        try:
            yield
        finally:
            self.stopping = True
            sweeper.cancel()
            for desk in list(self.desks.values()):
                try:
                    await desk.close()
                except Exception:  # noqa: BLE001 - shutting down: close the others all the same
                    log.exception("closing a session")
            await self.llm.aclose()
            self._lead_pool.shutdown(wait=True)
            if self._reader is not None:
                self._reader.close()
            if self._on_shutdown is not None:
                self._on_shutdown()

    def routes(self) -> list[Route]:
        wrap = self._wrap
        get, post = ["GET"], ["POST"]
        return [
            Route("/", self.page, methods=get), Route("/review", self.page, methods=get),
            Route("/lead", self.page, methods=get), Route("/static/{name}", self.static, methods=get),
            Route("/login", self.login, methods=get),
            Route("/api/state", wrap(self.api_state), methods=get),
            Route("/api/stream", wrap(self.api_stream), methods=get),
            Route("/api/guidelines", wrap(self.api_guidelines), methods=get),
            Route("/api/request", wrap(self.api_request), methods=post),
            Route("/api/accept", wrap(self.api_accept), methods=post),
            Route("/api/edit", wrap(self.api_edit), methods=post),
            Route("/api/regenerate", wrap(self.api_regenerate), methods=post),
            Route("/api/retry", wrap(self.api_retry), methods=post),
            Route("/api/undo", wrap(self.api_undo), methods=post),
            Route("/api/finish", wrap(self.api_finish), methods=post),
            Route("/api/skip", wrap(self.api_skip), methods=post),
            Route("/api/flag", wrap(self.api_flag), methods=post),
            Route("/api/type", wrap(self.api_type), methods=post),
            Route("/api/stop", wrap(self.api_stop), methods=post),
            Route("/api/guidelines/seen", wrap(self.api_guidelines_seen), methods=post),
            Route("/api/pause", wrap(self.api_pause), methods=post),
            Route("/api/renew", wrap(self.api_renew), methods=post),
            Route("/api/away", wrap(self.api_away), methods=post),
            Route("/api/logout", wrap(self.api_logout), methods=post),
            Route("/api/review", wrap(self.api_review), methods=get),
            Route("/api/review/verdict", wrap(self.api_review_verdict), methods=post),
            Route("/api/review/later", wrap(self.api_review_later), methods=post),
            Route("/api/review/mark", wrap(self.api_review_mark), methods=post),
            Route("/api/review/unmark", wrap(self.api_review_unmark), methods=post),
            Route("/api/review/fix", wrap(self.api_review_fix), methods=post),
            Route("/api/review/pick", wrap(self.api_review_pick), methods=post),
            Route("/api/lead", wrap(self.api_lead), methods=get),
        ]

    @staticmethod
    def _wrap(handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        """Errors as JSON the page shows: ``{"error": message, ...}`` with the right status."""
        async def run(request: Request) -> Response:
            try:
                return await handler(request)
            except ApiError as exc:
                return JSONResponse({"error": exc.message, **exc.extra}, status_code=exc.status)
            except (CommandError, ReviewError) as exc:
                return JSONResponse({"error": exc.message, "code": "refused"}, status_code=409)
            except ItcollectError as exc:  # the store failed (disk full, locked...): say so, keep serving
                log.error("%s %s: %s", request.method, request.url.path, exc.format())
                return JSONResponse({"error": exc.format(), "code": "server"}, status_code=500)

        return run

    def build(self) -> Any:
        app = Starlette(routes=self.routes(), lifespan=self.lifespan)
        return SecurityHeaders(app)


def _text(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ApiError(400, f"{key!r} is missing (a non-empty string)")
    return value


def _int(body: dict[str, Any], key: str) -> int:
    value = body.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ApiError(400, f"{key!r} is missing (a whole number)")
    return value


def _opt(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ApiError(400, f"{key!r} must be a string")
    return value.strip() or None


def create_app(config: Config, store: WebStore, client_factory: Callable[[], Any], *,
               on_shutdown: Callable[[], None] | None = None) -> Any:
    """The ASGI app (Starlette behind the security-headers middleware)."""
    return WebApp(config, store, client_factory, on_shutdown=on_shutdown).build()
