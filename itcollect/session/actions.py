"""What may be done on an open dialogue, and why not: the rules behind
:meth:`itcollect.session.engine.Session.allowed_actions` and ``require`` (the terminal's keys, the
web page's buttons and every engine method that writes ask them)."""

from __future__ import annotations

from typing import Any

#: Every action on an open dialogue, in the order front-ends list them. Which of them the dialogue
#: allows now is :meth:`Session.allowed_actions`, the one place that says so; ``stop`` (abandon the
#: answer being fetched) exists only while one is (``answering``).
ACTIONS = ("request", "type", "pick", "rank", "accept", "edit", "regenerate", "retry", "stop", "undo", "finish", "skip",
           "flag", "guidelines", "quit")
#: What may be done while an answer is being fetched (a web page's stream; the terminal's Ctrl-C).
_WHILE_ANSWERING = ("stop", "flag", "guidelines", "quit")


def _refusal(action: str, state: str, turns: list[dict[str, Any]]) -> str | None:
    """Why ``action`` does not fit a dialogue in ``state`` with these active turns (None: it does):
    the rules behind :meth:`Session.allowed_actions` and :meth:`Session.require`."""
    if action == "request":
        return {"decide": "decide on the last answer first (accept, edit, regenerate or undo)",
                "answer": "the last request has no answer yet: retry, or undo it",
                "pick": "pick the best answer first (or rank them, or pick none)",
                "allbad": "write the answer first (edit), or regenerate"}.get(state)
    if action == "type":
        return None if state == "ask" else "the type applies to the next request; finish deciding on this answer first"
    if action in ("pick", "rank"):  # a compare dialogue's candidates (session/compare.py)
        return None if state == "pick" else "there are no answers to pick from"
    if action == "accept":
        return None if state == "decide" else "there is no answer to accept"
    if action == "regenerate":
        return None if state in ("decide", "pick", "allbad") else "there is no answer to regenerate"
    if action == "edit":  # an accepted last answer too: second thoughts before the next request
        last_is_answer = bool(turns) and turns[-1]["role"] == "assistant"
        ok = state in ("decide", "allbad") or (state == "ask" and last_is_answer)
        return None if ok else "there is no answer to edit"
    if action == "retry":
        return None if state == "answer" else "nothing to retry"
    if action == "stop":
        return "no answer is streaming"
    if action == "undo":
        return None if turns else "nothing to undo"
    if action == "finish":
        if state == "answer":
            return "the last request has no answer: retry or undo it first"
        if state in ("pick", "allbad"):
            return "the last request has no chosen answer yet: pick one (or write it), or undo the request"
        if not any(t["role"] == "assistant" for t in turns):
            return "nothing to finish: write a request first, or skip this sentence"
        return None
    if action in ACTIONS:  # skip, flag, guidelines, quit: whenever a dialogue is open
        return None
    raise ValueError(f"unknown action {action!r}")


__all__ = ["ACTIONS"]
