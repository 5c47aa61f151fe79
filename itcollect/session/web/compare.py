"""The annotator's routes of a compare session (``session --web --compare A,B``): pick, rank, none.

The answers stream side by side through the page's answer stream (``delta`` events with the
``label``); the state JSON carries the candidates (``dialogue.candidates``) while they wait. Every
decision is the engine's (:mod:`itcollect.session.compare`); the routes only ask. ``edit`` after
"none good" (the person's answer) and ``regenerate`` (every system again) are the page's usual
``/api/edit`` and ``/api/regenerate``.
"""

from __future__ import annotations

from typing import Any

from itcollect.session.engine import CommandError
from itcollect.session.web.annotate import action
from itcollect.session.web.api import Body
from itcollect.session.web.desk import Desk


def _turns(desk: Desk) -> Any:
    if desk.s.compare is None:
        raise CommandError("this server does not compare systems (session --web --compare A,B)")
    return desk.s.compare


@action("/api/pick")
def pick(desk: Desk, body: Body) -> dict[str, Any]:
    desk.s.require("pick")
    r = _turns(desk).pick(body.text("label"), body.optional("reason"))
    return {"message": f"{r['label']} picked: it continues the dialogue."}


@action("/api/rank")
def rank(desk: Desk, body: Body) -> dict[str, Any]:
    desk.s.require("rank")
    r = _turns(desk).rank(body.text("order"), body.optional("reason"))
    return {"message": f"Ranked; {r['label']} continues the dialogue."}


@action("/api/none")
def none_good(desk: Desk, body: Body) -> dict[str, Any]:
    desk.s.require("pick")
    _turns(desk).pick_none(body.text("reason"))
    return {"message": "No answer is good: write the answer yourself (edit), or ask every system again "
                       "(regenerate)."}
