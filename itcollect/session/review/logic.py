"""The review desk's logic, shared by the terminal (:mod:`.terminal`), the line protocol
(:mod:`.lines`) and the web review page: the queue's next item as a reviewer sees it, and the
recording of verdicts, error marks, fixes and overlap picks (checked and written through
:class:`~itcollect.store.interfaces.ReviewStore`). No I/O of its own."""

from __future__ import annotations

import re
from typing import Any

from itcollect.kernel.review import VERDICTS
from itcollect.llm.judgement.schema import CATEGORIES, OTHER, SEVERITIES
from itcollect.store import ReviewError
from itcollect.store.interfaces import ReviewStore

#: ``session --review --order`` (``default`` and ``judge`` are orders of the store's review queue)
ORDERS = ("default", "judge", "overlap")
#: what a reviewer may mark an error as (the judge's categories, and ``other``)
MARK_CATEGORIES = (*CATEGORIES, OTHER)

__all__ = ["ReviewError", "VERDICTS", "ORDERS", "MARK_CATEGORIES", "review_item", "next_review", "record_verdict",
           "record_undo", "reopen_item", "recent_verdicts",
           "record_suggestion", "SUGGESTION_DECISIONS", "record_mark", "record_unmark", "record_fix", "record_pick", "dialogue_of_turn", "parse_span",
           "answer_on_screen", "item_dialogues", "refresh"]


def _judgement(j: dict[str, Any]) -> dict[str, Any]:
    return {k: j[k] for k in ("status", "score", "errors", "compliance", "reason", "rating", "in_instruction_language",
                              "judge_model")}


SUGGESTION_DECISIONS = {"confirm": "confirmed", "change": "changed", "dismiss": "dismissed"}


def _suggestions(t: dict[str, Any], judge: dict[str, Any], decided: dict[tuple, dict[str, Any]]
                 ) -> list[dict[str, Any]]:
    """The judge's error spans of an answer as suggested marks: where each is in the answer
    (``start``/``end``, None when the judge's span is not in it) and what a reviewer did with it
    (``decision`` None while open)."""
    out = []
    for k, e in enumerate(judge.get("errors") or []):
        span = str(e.get("span") or "")
        at = t["content"].find(span) if span else -1
        row = decided.get((t["id"], e.get("category"), span))
        out.append({"index": k, "category": e.get("category"), "severity": e.get("severity"), "span": span,
                    "start": at if at >= 0 else None, "end": at + len(span) if at >= 0 else None,
                    "decision": row["decision"] if row else None, "by": row["reviewer"] if row else None})
    return out


def record_suggestion(store: ReviewStore, reviewer: str, dialogue_id: str, turn_id: int, index: int,
                      decision: str, category: str | None = None, severity: str | None = None) -> str:
    """Decide the judge's suggestion ``index`` on an answer: ``confirm`` (a mark with the judge's
    category and severity), ``change`` (a mark with ``category``/``severity``, the judge's where
    not given) or ``dismiss``; stored, so stats can put the judge against reviewers. Returns the
    stored decision."""
    stored = SUGGESTION_DECISIONS.get(decision)
    if stored is None:
        raise ReviewError(f"suggestion decision {decision!r}: confirm, change or dismiss")
    d = store.get_dialogue(dialogue_id)
    if d is None:
        raise ReviewError(f"no dialogue {dialogue_id!r}")
    item = review_item(store, d)
    turn = next((t for t in item["turns"] if t["turn_id"] == int(turn_id) and t.get("suggestions")), None)
    if turn is None or not 0 <= int(index) < len(turn["suggestions"]):
        raise ReviewError(f"no suggestion {index} on answer {turn_id}")
    sug = turn["suggestions"][int(index)]
    if sug["decision"] is not None:
        raise ReviewError(f"the suggestion {sug['category']} «{sug['span']}» was already {sug['decision']}"
                          f" (by {sug['by']})")
    with store.transaction():
        mark_id = None
        if stored != "dismissed":
            if sug["start"] is None:
                raise ReviewError(f"the judge's span «{sug['span']}» is not in the answer: dismiss it, or mark"
                                  " the right words yourself")
            cat = sug["category"] if stored == "confirmed" else (category or sug["category"])
            sev = sug["severity"] if stored == "confirmed" else (severity or sug["severity"])
            if stored == "changed" and (cat, sev) == (sug["category"], sug["severity"]):
                raise ReviewError("a change needs another category or severity than the judge's (else confirm)")
            mark_id = record_mark(store, reviewer, dialogue_id, int(turn_id), str(cat), str(sev), sug["start"],
                                  sug["end"], "suggested by the judge")
        store.decide_suggestion(dialogue_id, int(turn_id), reviewer, str(sug["category"]), str(sug["severity"]),
                                sug["span"], stored, mark_id)
    return stored


def review_item(store: ReviewStore, d: dict[str, Any]) -> dict[str, Any]:
    """One dialogue as a reviewer sees it: every turn (rejected and undone ones too), each answer
    with its marks and its current judgement, a fix with who made it, a control item with what was
    planted and the outcome; ``judge_score`` (the lowest) when the judge scored it."""
    turns = store.get_turns(d["id"], include_inactive=True)
    judged = store.current_judgements(dialogue_ids=[d["id"]])
    marks: dict[int, list[dict[str, Any]]] = {}
    decided = {(x["turn_id"], x["category"], x["span"]): x for x in store.review_suggestions(d["id"])}
    for m in store.review_marks(d["id"]):
        marks.setdefault(m["turn_id"], []).append(
            {k: m[k] for k in ("id", "reviewer", "category", "severity", "start", "end", "span", "note")})

    def turn(t: dict[str, Any]) -> dict[str, Any]:
        out = {"turn_id": t["id"], "idx": t["idx"], "role": t["role"], "state": t["state"], "author": t["author"],
               "annotator": t["annotator"], "content": t["content"], "original_content": t["original_content"],
               "type": t["interaction_type"], "warnings": t["warnings"]}
        if t["id"] in judged and t["state"] == "active":
            out["judge"] = _judgement(judged[t["id"]])
            if t["role"] == "assistant":
                out["suggestions"] = _suggestions(t, out["judge"], decided)
        if t["role"] == "assistant":
            out["marks"] = marks.get(t["id"], [])
            params = t["params"] or {}
            if params.get("review_fix"):
                out["review_fix"] = params["review_fix"]
            if params.get("revision"):
                out["revision"] = params["revision"]
            ctl = params.get("control")
            if ctl:
                out["control"] = {k: ctl.get(k) for k in ("kind", "description", "outcome", "via", "planted")}
        return out

    item = {"dialogue_id": d["id"], "spec_id": d["spec_id"], "copy": d.get("copy", 0), "annotator": d["annotator"],
            "status": d["status"], "status_reason": d["status_reason"], "flagged": bool(d["flagged"]),
            "flags": d["meta"].get("flags", []), "review_status": d["review_status"],
            "source": d["source_text"], "src_lang": d["src_lang"], "tgt_lang": d["tgt_lang"],
            "instruction_lang": d["instruction_lang"],
            "turns": [turn(t) for t in turns if t["role"] != "system"]}
    scores = [j["score"] for j in judged.values() if j["status"] == "judged" and j["score"] is not None]
    if judged:
        item["judge_score"] = min(scores) if scores else None
    return item


def next_review(store: ReviewStore, skipped: set[str] | frozenset[str] = frozenset(), order: str = "default"
                ) -> dict[str, Any] | None:
    """The next item to review, or None when nothing is left. ``mode`` ``dialogue`` (order default:
    :func:`review_item` fields) or ``overlap`` (the spec, its source and ``dialogues``: the copies);
    ``key`` (what ``skipped`` holds for items left for later: the dialogue id, or ``spec:ID``) and
    ``remaining`` (the queue's length without the skipped). The terminal, the line protocol and
    the web page all walk the queue through this; the queue is read again each time (other
    reviewers' verdicts and new judgements count at once), one row and a count (``order="judge"``
    may queue every judged dialogue of the corpus)."""
    if order == "overlap":
        left = [s for s in store.overlap_review_queue() if f"spec:{s}" not in skipped]
        if not left:
            return None
        copies = [review_item(store, d) for d in store.overlap_copies_done(left[0])]
        first = copies[0]
        return {"mode": "overlap", "key": f"spec:{left[0]}", "remaining": len(left), "spec_id": left[0],
                **{k: first[k] for k in ("source", "src_lang", "tgt_lang", "instruction_lang")}, "dialogues": copies}
    if order not in ORDERS:
        raise ReviewError(f"review order {order!r}: one of {', '.join(ORDERS)}")
    exclude = sorted(skipped)
    queue = store.review_queue(order=order, limit=1, exclude=exclude)
    if not queue:
        return None
    return {"mode": "dialogue", "key": queue[0]["id"], "remaining": store.review_queue_size(order=order, exclude=exclude),
            **review_item(store, queue[0])}


def record_verdict(store: ReviewStore, reviewer: str, dialogue_id: str, command: str, note: str | None = None) -> str:
    """Record ``accept`` or ``reject`` (with a note) on a dialogue of the queue; returns the stored
    verdict (``fixed`` for an accept of a dialogue with the reviewer's fixes). Checked and written
    in one transaction, so two reviewers deciding the same dialogue at once cannot both succeed:
    the second gets a :class:`ReviewError` naming the first."""
    verdict = VERDICTS.get(command)
    if verdict is None:
        raise ReviewError(f"verdict {command!r}: accept or reject")
    with store.transaction():
        d = _unreviewed(store, dialogue_id)
        if verdict == "accepted" and store.review_fixed_turns(d["id"]):
            verdict = "fixed"
        store.set_review(d["id"], reviewer, verdict, (note or "").strip() or None)
    return verdict


def record_undo(store: ReviewStore, reviewer: str, dialogue_id: str) -> str:
    """Take back a dialogue's verdict (a mistaken key, or to change it): the dialogue can be
    decided again, the verdict stays in its history; refused once the dialogue was exported with
    it. Returns the verdict taken back."""
    return store.undo_review(dialogue_id, reviewer)


def recent_verdicts(store: ReviewStore, reviewer: str, limit: int = 10) -> list[dict[str, Any]]:
    """The reviewer's latest verdicts still standing, newest first (each may be taken back)."""
    return store.recent_verdicts(reviewer, limit)


def reopen_item(store: ReviewStore, dialogue_id: str, skipped: set[str] | frozenset[str] = frozenset(),
                order: str = "default") -> dict[str, Any] | None:
    """A dialogue whose verdict was just taken back, as the queue's next item (to decide again)."""
    d = store.get_dialogue(dialogue_id)
    if d is None:
        return None
    rest = store.review_queue_size(order="judge" if order == "judge" else "default",
                                   exclude=sorted(skipped | {dialogue_id}))
    return {"mode": "dialogue", "key": d["id"], "remaining": rest + 1, **review_item(store, d)}


def _unreviewed(store: ReviewStore, dialogue_id: str) -> dict[str, Any]:
    d = store.get_dialogue(dialogue_id)
    if d is None or d["status"] not in ("done", "skipped"):
        raise ReviewError(f"no finished dialogue {dialogue_id!r} to review")
    if d["review_status"] is not None:
        by = (d["meta"].get("reviews") or [{}])[-1].get("reviewer", "someone")
        raise ReviewError(f"dialogue {dialogue_id[:8]} was already reviewed ({d['review_status']} by {by})")
    return d


def record_mark(store: ReviewStore, reviewer: str, dialogue_id: str, turn_id: int, category: str, severity: str,
                start: int, end: int, note: str | None = None) -> int:
    """Mark an error span (category and severity from the judge's lists); returns the mark's id."""
    category, severity = category.strip().lower(), severity.strip().lower()
    if category not in MARK_CATEGORIES:
        raise ReviewError(f"category {category!r}: one of {', '.join(MARK_CATEGORIES)}")
    if severity not in SEVERITIES:
        raise ReviewError(f"severity {severity!r}: one of {', '.join(SEVERITIES)}")
    return store.add_review_mark(dialogue_id, int(turn_id), reviewer, category, severity, int(start), int(end),
                                 (note or "").strip() or None)


def record_unmark(store: ReviewStore, reviewer: str, mark_id: int) -> None:
    store.remove_review_mark(int(mark_id), reviewer)


def record_fix(store: ReviewStore, reviewer: str, dialogue_id: str, turn_id: int, text: str) -> int:
    """The reviewer's version of an answer of a dialogue not reviewed yet; returns the new turn's id."""
    with store.transaction():
        _unreviewed(store, dialogue_id)
        return store.review_fix(dialogue_id, int(turn_id), reviewer, text)


def record_pick(store: ReviewStore, reviewer: str, spec_id: int, dialogue_id: str, note: str | None = None) -> str:
    """Keep one copy of an overlap spec (an id prefix of at least 8 characters will do); returns
    the picked dialogue's id."""
    copies = [d["id"] for d in store.overlap_copies_done(int(spec_id))]
    match = [c for c in copies if c == dialogue_id or (len(dialogue_id) >= 8 and c.startswith(dialogue_id))]
    if len(match) != 1:
        raise ReviewError(f"{dialogue_id!r} is not one of the copies of spec {spec_id}: "
                          f"{', '.join(c[:8] for c in copies)}")
    store.set_overlap_pick(int(spec_id), match[0], reviewer, (note or "").strip() or None)
    return match[0]


def item_dialogues(item: dict[str, Any]) -> list[dict[str, Any]]:
    return item["dialogues"] if item["mode"] == "overlap" else [item]


def dialogue_of_turn(item: dict[str, Any], turn_id: int) -> str:
    """The dialogue (of those on screen) an answer belongs to."""
    for d in item_dialogues(item):
        if any(t["turn_id"] == turn_id and t["role"] == "assistant" for t in d["turns"]):
            return d["dialogue_id"]
    raise ReviewError(f"turn {turn_id} is not an answer on screen")


def parse_span(content: str, spec: str) -> tuple[int, int]:
    """``@START:END`` or a piece of text (its first occurrence) -> character offsets."""
    m = re.fullmatch(r"@(\d+):(\d+)", spec.strip())
    if m:
        return int(m.group(1)), int(m.group(2))
    text = spec.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'«":
        text = text[1:-1]
    at = content.find(text) if text else -1
    if at < 0:
        raise ReviewError(f"{text!r} is not in the answer")
    return at, at + len(text)


def answer_on_screen(item: dict[str, Any], turn_id: int) -> dict[str, Any]:
    for d in item_dialogues(item):
        for t in d["turns"]:
            if t["turn_id"] == turn_id:
                return t
    raise ReviewError(f"turn {turn_id} is not an answer on screen")


def refresh(store: ReviewStore, item: dict[str, Any]) -> dict[str, Any] | None:
    """The same item, read again (after a mark or a fix)."""
    if item["mode"] == "overlap":
        copies = [review_item(store, d) for d in store.overlap_copies_done(item["spec_id"])]
        return {**item, "dialogues": copies} if copies else None
    d = store.get_dialogue(item["dialogue_id"])
    return None if d is None else {**item, **review_item(store, d)}
