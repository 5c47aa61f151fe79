"""Dialogues returned to their annotator (issue 24 item 10): what a reviewer rejected or marked,
with the marks (span, category, severity) and the note, as the annotator's "returned to me" list;
the annotator's revision of an answer (a new version of the turn, the old one kept) and sending the
dialogue back to review. The logic once; the web page (``session/web/returned.py``) is thin."""

from __future__ import annotations

from typing import Any

from itcollect.session.review.logic import review_item
from itcollect.store.interfaces import ReviewStore

__all__ = ["returned_to", "record_revision", "record_send_back"]


def returned_to(store: ReviewStore, annotator: str) -> list[dict[str, Any]]:
    """The annotator's returned dialogues, each as a reviewer sees it (every turn, the marks on
    each answer) with the verdict that returned it: ``returned`` = {verdict, reviewer, note, at}."""
    out = []
    for d in store.returned_dialogues(annotator):
        reviews = [r for r in d["meta"].get("reviews") or [] if isinstance(r, dict) and r.get("verdict")]
        last = reviews[-1] if reviews else {}
        item = review_item(store, d)
        item["returned"] = {"verdict": d["review_status"], "reviewer": last.get("reviewer"),
                            "note": last.get("note"), "at": last.get("at")}
        out.append(item)
    return out


def record_revision(store: ReviewStore, annotator: str, dialogue_id: str, turn_id: int, text: str) -> int:
    """A new version of an answer of a dialogue returned to the annotator; returns the new turn's id."""
    return store.revise_turn(dialogue_id, int(turn_id), annotator, text)


def record_send_back(store: ReviewStore, annotator: str, dialogue_id: str, note: str | None = None) -> str:
    """Send the revised dialogue back to review (the reviewer's queue has it again)."""
    return store.send_back(dialogue_id, annotator, (note or "").strip() or None)
