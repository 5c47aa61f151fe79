"""The annotator's "returned to me" routes (issue 24 item 10): the dialogues a reviewer rejected or
marked, with the marks and the note; a revision of an answer; sending the dialogue back to review
(:mod:`itcollect.session.review.returns`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from itcollect.session.catalog import t
from itcollect.session.review.returns import record_revision, record_send_back, returned_to
from itcollect.session.web.api import RouteTable, Who

if TYPE_CHECKING:
    from itcollect.session.web.app import WebApp

routes = RouteTable()


def returned_json(app: WebApp, who: Who, **extra: Any) -> dict[str, Any]:
    return {"annotator": who.name, "role": who.role, "csrf": who.csrf,
            "dialogues": returned_to(app.store, who.name), **extra}


@routes.get("/api/returned")
async def returned(app: WebApp, request: Request) -> Response:
    who = app.auth(request)
    return JSONResponse(returned_json(app, who))


@routes.post("/api/returned/revise")
async def revise(app: WebApp, request: Request) -> Response:
    who = app.auth(request, csrf=True)
    body = await app.body(request)
    record_revision(app.store, who.name, body.text("dialogue_id"), body.number("turn_id"), body.text("text"))
    return JSONResponse(returned_json(app, who, message=t("returned.revised", who.lang)))


@routes.post("/api/returned/send")
async def send_back(app: WebApp, request: Request) -> Response:
    who = app.auth(request, csrf=True)
    body = await app.body(request)
    record_send_back(app.store, who.name, body.text("dialogue_id"), body.optional("note"))
    return JSONResponse(returned_json(app, who, message=t("returned.sent", who.lang)))
