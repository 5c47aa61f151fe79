"""The reviewer's routes of the web app (roles reviewer and lead): the ``session --review`` queue
(:mod:`itcollect.session.review`) in a browser, each decision answered with the next item."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from itcollect.llm.judgement.schema import SEVERITIES
from itcollect.session.review import (
    MARK_CATEGORIES,
    ORDERS,
    next_review,
    recent_verdicts,
    record_fix,
    record_mark,
    record_pick,
    record_suggestion,
    record_undo,
    record_unmark,
    record_verdict,
    reopen_item,
)
from itcollect.session.web.api import ApiError, Body, RouteTable, Who

if TYPE_CHECKING:
    from itcollect.session.web.app import WebApp

REVIEWERS = ("reviewer", "lead")

routes = RouteTable()


def review_json(app: WebApp, who: Who, order: str = "default", reopen: str | None = None,
                **extra: Any) -> dict[str, Any]:
    """The reviewer's next item in ``order`` (their items left for later skipped; ``reopen``: the
    dialogue whose verdict was just taken back), with the lists the page's mark form offers and
    the reviewer's latest verdicts still standing (``recent``: each can be taken back)."""
    if order not in ORDERS:
        raise ApiError(400, f"review order {order!r}: one of {', '.join(ORDERS)}")
    later = app.review_later.setdefault(who.name, set())
    item = reopen_item(app.store, reopen, later, order) if reopen else next_review(app.store, later, order)
    return {"reviewer": who.name, "role": who.role, "csrf": who.csrf, "order": order,
            "categories": list(MARK_CATEGORIES), "severities": list(SEVERITIES),
            "item": item, "recent": recent_verdicts(app.store, who.name), **extra}


@routes.get("/api/review")
async def review(app: WebApp, request: Request) -> Response:
    who = app.auth(request, roles=REVIEWERS)
    return JSONResponse(review_json(app, who, request.query_params.get("order", "default")))


Decision = Callable[["WebApp", Who, Body], "str | dict[str, Any]"]


def decision(path: str) -> Callable[[Decision], Decision]:
    """Declare a reviewer's decision at ``POST path``: ``fn(app, who, body)`` records it and returns
    the message to show (or the answer's extra fields, ``message`` among them); the answer is the
    queue's next item in the body's ``order``."""
    def declare(fn: Decision) -> Decision:
        async def handler(app: WebApp, request: Request) -> Response:
            who = app.auth(request, roles=REVIEWERS, csrf=True)
            body = await app.body(request)
            said = fn(app, who, body)
            extra = said if isinstance(said, dict) else {"message": said}
            return JSONResponse(review_json(app, who, body.word("order") or "default", **extra))

        handler.__doc__ = fn.__doc__
        routes.post(path)(handler)
        return fn

    return declare


@decision("/api/review/verdict")
def verdict(app: WebApp, who: Who, body: Body) -> dict[str, Any]:
    did = body.text("dialogue_id")
    stored = record_verdict(app.store, who.name, did, body.text("verdict"), body.optional("note"))
    return {"message": f"Recorded: {stored}. Press u (or \"undo\") to take it back.",
            "last_verdict": {"dialogue_id": did, "verdict": stored}}


@decision("/api/review/undo")
def undo(app: WebApp, who: Who, body: Body) -> dict[str, Any]:
    did = body.text("dialogue_id")
    undone = record_undo(app.store, who.name, did)
    return {"message": f"Verdict {undone} taken back (it stays in the history): decide again.", "reopen": did}


@decision("/api/review/later")
def later(app: WebApp, who: Who, body: Body) -> str:
    app.review_later.setdefault(who.name, set()).add(body.word("key") or body.text("dialogue_id"))
    return "Left for later."


@decision("/api/review/mark")
def mark(app: WebApp, who: Who, body: Body) -> str:
    record_mark(app.store, who.name, body.text("dialogue_id"), body.number("turn_id"), body.text("category"),
                body.text("severity"), body.number("start"), body.number("end"), body.optional("note"))
    return "Marked."


@decision("/api/review/suggestion")
def suggestion(app: WebApp, who: Who, body: Body) -> str:
    decided = record_suggestion(app.store, who.name, body.text("dialogue_id"), body.number("turn_id"),
                                body.number("index"), body.text("decision"), body.optional("category"),
                                body.optional("severity"))
    return f"Suggestion {decided}."


@decision("/api/review/unmark")
def unmark(app: WebApp, who: Who, body: Body) -> str:
    record_unmark(app.store, who.name, body.number("mark_id"))
    return "Mark taken back."


@decision("/api/review/fix")
def fix(app: WebApp, who: Who, body: Body) -> str:
    record_fix(app.store, who.name, body.text("dialogue_id"), body.number("turn_id"), body.text("text"))
    return "Your fix is now the answer (the old one is kept). Accept the dialogue to record it as fixed."


@decision("/api/review/pick")
def pick(app: WebApp, who: Who, body: Body) -> str:
    picked = record_pick(app.store, who.name, body.number("spec_id"), body.text("dialogue_id"),
                         body.optional("note"))
    return f"Kept dialogue {picked[:8]}; the other copies are left out of the corpus."
