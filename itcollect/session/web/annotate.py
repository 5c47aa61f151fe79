"""The annotator's routes of the web app: the state of their open dialogue, the answer stream, and
every action, each the same :class:`~itcollect.session.engine.Session` call the terminal and the
line protocol make, committed before the response leaves.

The state JSON carries ``actions``: what :meth:`Session.allowed_actions` allows now (while the
answer streams: what may be done meanwhile), in the page's words (the engine's ``quit`` is the
page's ``pause``); the page enables its buttons and keys from it and keeps no rules of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from itcollect.kernel.checks import LANG_NAMES, lang_label
from itcollect.kernel.taxonomy import INTERACTION_TYPES
from itcollect.session.catalog import t, warning_sentences
from itcollect.session.engine import CommandError, ControlRevealed, EarlyFinish
from itcollect.session.guidelines import GUIDE_LANGS
from itcollect.session.status import status_line
from itcollect.session.web.api import HOME, ApiError, Body, RouteTable, Who
from itcollect.session.web.desk import Desk
from itcollect.session.web.guide import sections_html
from itcollect.session.wording import taken_back_request
from itcollect.store import SKIP_REASONS, LeaseLost

if TYPE_CHECKING:
    from itcollect.session.web.app import WebApp

TAB_HEADER = "x-tab"
#: The page's key of one action (it sends the action again with the same key until the server
#: answers): an action whose key this account already used is not applied twice.
ACTION_KEY_HEADER = "x-action-key"
MAX_KEY = 100
#: The engine's action names the page calls otherwise.
_PAGE_NAMES = {"quit": "pause"}

routes = RouteTable()


@lru_cache(maxsize=1)
def _types() -> list[dict[str, str]]:
    return [{"id": t.id, "description": t.description} for t in INTERACTION_TYPES.values()]


def state_json(who: Who, desk: Desk, *, message: str | None = None, claim: bool = False, load: bool = False,
               progress: bool = False, **extra: Any) -> dict[str, Any]:
    """What the page renders: the engine's view of the open dialogue (claiming the next spec first
    with ``claim``), the actions it allows, whether an answer streams, the message to show; with
    ``progress`` also the status line and the lists the page's forms offer."""
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
    if view is not None:  # each warning's code (the contract) and beside it a sentence in the page's language
        for turn in view["turns"]:
            turn["warning_text"] = warning_sentences(turn["warnings"], who.lang, request=turn["role"] == "user")
        for cand in view.get("candidates") or []:  # a compare session's answers waiting for a pick
            cand["warning_text"] = warning_sentences(cand["warnings"], who.lang)
    if extra.get("request_warnings"):
        extra["request_warning_text"] = warning_sentences(extra["request_warnings"], who.lang, request=True)
    out: dict[str, Any] = {
        "annotator": who.name, "role": who.role, "csrf": who.csrf, "dialogue": view,
        "streaming": desk.streaming,
        "actions": [_PAGE_NAMES.get(a, a) for a in s.allowed_actions(answering=desk.streaming)],
        "answer_error": desk.error if view is not None and view["state"] == "answer" else None,
        "message": message, **extra}
    if view is None and claim:
        # nothing opened: idle only when nothing is left; while others hold leases the page waits
        wait = s.waiting()
        if wait is not None:
            out["waiting"] = wait
            out["idle"] = t("waiting", who.lang, n=wait["leased_by_others"], s=wait["retry_s"])
        else:
            out["idle"] = t("idle", who.lang)
    if progress:
        p = s.progress()
        out["progress"] = {**p, "line": status_line(p)}
        out["skip_reasons"] = list(SKIP_REASONS)
        out["types"] = _types()
        out["languages"] = {code: lang_label(code) for code in LANG_NAMES}
        out["guide_langs"] = list(GUIDE_LANGS)
        out["lease_s"] = s.lease_s
    return out


def annotator(app: WebApp, request: Request, **kw: Any) -> Who:
    """The signed-in annotator. The annotate page is for annotators: a reviewer or a lead who opens
    it takes no lease; they get 403 with ``home``, their own page, where the page sends them."""
    who = app.auth(request, **kw)
    if who.role != "annotator":
        raise ApiError(403, t("role.not_annotator", who.lang, role=who.role, home=HOME[who.role]),
                       code="role", home=HOME[who.role])
    return who


def _check(desk: Desk, body: Body, *, version: bool, streaming_ok: bool) -> None:
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


Action = Callable[[Desk, Body], "dict[str, Any] | None"]


def action(path: str, *, version: bool = True, streaming_ok: bool = False,
           need_open: bool = True) -> Callable[[Action], Action]:
    """Declare an annotator's action at ``POST path``: ``fn(desk, body)`` runs under the desk's lock
    after the checks (a dialogue is open unless not ``need_open``; no answer streams unless
    ``streaming_ok``; the page's ``version`` is the dialogue's, with ``version``) and returns
    extra fields of the state JSON it answers with (or None)."""
    def declare(fn: Action) -> Action:
        async def handler(app: WebApp, request: Request) -> Response:
            who = annotator(app, request, csrf=True)
            body = await app.body(request)
            key = request.headers.get(ACTION_KEY_HEADER, "")[:MAX_KEY]
            desk = app.desk(who.name)
            desk.heard(request.headers.get(TAB_HEADER))
            async with desk.lock:
                try:
                    # the key and the action's writes commit together (or neither): applied once
                    with app.store.transaction() if key else contextlib.nullcontext():
                        if key and not app.store.claim_action_key(who.name, key, path):
                            return JSONResponse(state_json(who, desk, replayed=True, message=t("action.replayed",
                                                                                               who.lang)))
                        if need_open:
                            _check(desk, body, version=version, streaming_ok=streaming_ok)
                        extra = fn(desk, body) or {}
                except LeaseLost as exc:
                    desk.s.lease_lost()
                    raise ApiError(409, f"{exc.message}; moving on to the next dialogue (nothing of yours was "
                                        "lost)", code="lease_lost") from None
                return JSONResponse(state_json(who, desk, **extra))

        handler.__doc__ = fn.__doc__
        routes.post(path)(handler)
        return fn

    return declare


# -- reading ------------------------------------------------------------------------------------------
@routes.get("/api/state")
async def state(app: WebApp, request: Request) -> Response:
    who = annotator(app, request)
    desk = app.desk(who.name)
    desk.heard(request.headers.get(TAB_HEADER))
    load = request.query_params.get("load") == "1"
    async with desk.lock:
        try:
            out = state_json(who, desk, claim=True, load=load, progress=True)
        except LeaseLost as exc:  # pragma: no cover - a lease taken between claim and open
            desk.s.lease_lost()
            out = state_json(who, desk, claim=True, progress=True, message=exc.message)
    return JSONResponse(out)


@routes.get("/api/stream")
async def stream(app: WebApp, request: Request) -> Response:
    """The answer being streamed, as server-sent events: ``snapshot`` (what was said before this
    tab connected), ``delta``, ``reset`` (the endpoint failed mid-answer: it starts again), then
    ``end`` (committed: ``ok``; or the error)."""
    who = annotator(app, request)
    desk = app.desk(who.name)
    desk.heard(request.headers.get(TAB_HEADER) or request.query_params.get("tab"))
    queue = desk.subscribe()

    async def events():
        try:
            idle = 0.0
            while True:
                try:
                    event, data = await asyncio.wait_for(queue.get(), 1.0)
                except asyncio.TimeoutError:
                    if app.stopping:
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


@routes.get("/api/guidelines")
async def guidelines(app: WebApp, request: Request) -> Response:
    """The guide in ``lang``, section by section: the Markdown ``text`` and its ``html``
    (rendered on the server, safe as it is: :mod:`.guide`)."""
    app.auth(request)
    lang = request.query_params.get("lang", "en")
    if lang not in GUIDE_LANGS:
        raise ApiError(400, f"guide language {lang!r}: one of {', '.join(GUIDE_LANGS)}")
    return JSONResponse({"lang": lang, "sections": list(sections_html(lang))})


# -- the dialogue ---------------------------------------------------------------------------------------
@action("/api/request")
def add_request(desk: Desk, body: Body) -> dict[str, Any]:
    text = body.text("text")
    r = desk.s.add_request(text, body.optional("type"))
    desk.start_answer()
    msg = "The source sentence is attached to your first request." if r["content"] != text.strip() else None
    return {"message": msg, "request_warnings": r["warnings"]}


@action("/api/accept")
def accept(desk: Desk, body: Body) -> None:
    desk.s.accept(body.optional("reason"))


@action("/api/edit")
def edit(desk: Desk, body: Body) -> dict[str, Any]:
    r = desk.s.edit(body.text("text"))
    if r["warnings"]:
        return {"message": "Your edit is saved; it still has warnings: accept it with a reason, or edit again."}
    return {"message": "Your edit is saved and accepted."}


@action("/api/regenerate")
def regenerate(desk: Desk, body: Body) -> None:
    desk.s.reject_answer()
    desk.start_answer()


@action("/api/retry")
def retry(desk: Desk, body: Body) -> None:
    desk.s.require("retry")
    desk.start_answer()


@action("/api/undo")
def undo(desk: Desk, body: Body) -> dict[str, Any]:
    assert desk.s.current is not None  # _check: a dialogue is open
    text = taken_back_request(desk.s.conversation(), desk.s.current.source["text"])
    desk.s.undo()
    desk.error = None
    # the taken-back request goes back in the box, to be corrected and sent again
    return {"message": "The last request was taken back (it is kept, marked undone).", "undone_request": text}


@action("/api/finish")
def finish(desk: Desk, body: Body) -> dict[str, Any]:
    try:
        did = desk.s.finish(body.optional("reason"))
    except ControlRevealed:
        return {}  # not finished: the control note (in the state) says why
    except EarlyFinish as exc:  # the engine decides; the page asks to confirm with the count and a reason
        raise ApiError(409, exc.message, code="early_finish", done=exc.done, planned=exc.planned) from None
    return {"finished": did, "message": "Dialogue finished."}


@action("/api/skip")
def skip(desk: Desk, body: Body) -> dict[str, Any]:
    did = desk.s.skip(body.text("reason"), body.optional("note"))
    desk.error = None
    return {"skipped": did, "message": "Skipped."}


@action("/api/flag", streaming_ok=True)
def flag(desk: Desk, body: Body) -> dict[str, Any]:
    desk.s.flag(body.optional("note"))
    return {"message": "Flagged for review; the dialogue goes on."}


@action("/api/type")
def next_type(desk: Desk, body: Body) -> None:
    desk.s.set_next_type(body.text("type"))


@action("/api/stop", version=False, streaming_ok=True)
def stop(desk: Desk, body: Body) -> dict[str, Any]:
    if not desk.stop_answer():
        raise CommandError("no answer is streaming")
    return {"message": "Stopped: the answer was discarded; your request is kept."}


@action("/api/guidelines/seen", version=False, streaming_ok=True)
def guidelines_seen(desk: Desk, body: Body) -> None:
    desk.s.log_guidelines(body.text("type"))


@action("/api/pause", version=False, streaming_ok=True, need_open=False)
def pause(desk: Desk, body: Body) -> dict[str, Any]:
    """The terminal's quit: the lease stays, the clock stops; the next load resumes here."""
    if desk.streaming:
        desk.stop_answer()
    desk.s.quit()
    return {"paused": True, "message": "Saved. Continue whenever you like: you resume exactly here."}


# -- the tab ----------------------------------------------------------------------------------------------
@routes.post("/api/renew")
async def renew(app: WebApp, request: Request) -> Response:
    """The page's ping (about once a minute): the tab is open; while the annotator is typing
    (``active``), the lease is renewed as the terminal does."""
    who = annotator(app, request, csrf=True)
    body = await app.body(request)
    desk = app.desk(who.name)
    desk.heard(request.headers.get(TAB_HEADER))
    lease = True
    if body.get("active") and desk.s.current is not None:
        lease = desk.s.renew()
    return JSONResponse({"ok": True, "lease": lease})


@routes.post("/api/away")
async def away(app: WebApp, request: Request) -> Response:
    """A page's last words (``navigator.sendBeacon`` on close; it cannot set headers, so the CSRF
    token and tab id come in the body)."""
    body = await app.body(request)
    who = annotator(app, request, csrf=True, csrf_value=body.word("csrf"))
    desk = app.desk(who.name)
    async with desk.lock:
        desk.tab_closed(body.word("tab") or None)
    return JSONResponse({"ok": True})
