"""Error-typed review (``session --review``): error spans a reviewer marks on answers, a reviewer's
fix of an answer, and the pick among the copies of an overlap spec (``--order overlap``).

Everything is stored with the reviewer as its author and logged in the action log in the same
transaction. A fix never overwrites: the answer fixed stays as it was (state ``rejected``, with
``params["fixed_by_review"]`` naming the new turn), and the reviewer's version becomes the active
turn at the same position (author ``human``, ``annotator`` the reviewer, ``original_content`` the
text it replaced, ``params["review_fix"]`` the reviewer and the turn it replaced).
"""

from __future__ import annotations

from typing import Any

from itcollect.kernel.errors import ItcollectError
from itcollect.store.core import inserted_id, loads, utcnow
from itcollect.store.dialogues import _dialogue_row
from itcollect.store.sessions import SessionsMixin


class ReviewError(ItcollectError):
    """A review action that cannot be recorded (unknown dialogue or turn, bad span, already decided)."""


class ReviewMixin(SessionsMixin):  # logs events, sets verdicts, adds and updates turns
    # -- error spans ---------------------------------------------------------------------------------
    def add_review_mark(self, dialogue_id: str, turn_id: int, reviewer: str, category: str, severity: str,
                        start: int, end: int, note: str | None = None) -> int:
        """Mark ``content[start:end]`` of an active answer of the dialogue with an error category
        and severity (checked by the caller against the judge's lists); returns the mark's id."""
        with self.transaction() as c:
            turn = self._answer_of(c, dialogue_id, turn_id)
            content = turn[1]
            if not 0 <= start < end <= len(content):
                raise ReviewError(f"span {start}:{end} is not inside turn {turn_id} ({len(content)} characters)")
            cur = c.execute(
                "INSERT INTO review_marks(dialogue_id, turn_id, reviewer, category, severity, start, \"end\", span, note,"
                " created_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (dialogue_id, turn_id, reviewer, category, severity, start, end, content[start:end], note, utcnow()))
            mark_id = inserted_id(cur)
            self.log_event(reviewer, "review_mark", dialogue_id=dialogue_id, spec_id=turn[2], turn_id=turn_id,
                           detail={"mark": mark_id, "category": category, "severity": severity,
                                   "span": content[start:end]})
            return mark_id

    def remove_review_mark(self, mark_id: int, reviewer: str) -> None:
        """Take back one of one's own marks (logged)."""
        with self.transaction() as c:
            row = c.execute("SELECT dialogue_id, turn_id, reviewer FROM review_marks WHERE id = ?", (mark_id,)).fetchone()
            if row is None or row[2] != reviewer:
                raise ReviewError(f"no mark {mark_id} of yours")
            c.execute("DELETE FROM review_marks WHERE id = ?", (mark_id,))
            # a suggestion confirmed or changed by this mark is open again
            c.execute("DELETE FROM review_suggestions WHERE mark_id = ?", (mark_id,))
            self.log_event(reviewer, "review_unmark", dialogue_id=row[0], turn_id=row[1], detail={"mark": mark_id})

    def review_marks(self, dialogue_id: str | None = None) -> list[dict[str, Any]]:
        """Marks of one dialogue (or all), in the order they were made."""
        sql = "SELECT * FROM review_marks"
        params: tuple = ()
        if dialogue_id is not None:
            sql += " WHERE dialogue_id = ?"
            params = (dialogue_id,)
        return [dict(r) for r in self.query(sql + " ORDER BY id", params)]

    def review_error_counts(self) -> dict[str, dict[str, dict[str, int]]]:
        """Per annotator of the dialogues marked: {category: {severity: n}} of the reviewers' marks
        on answers that are still active."""
        out: dict[str, dict[str, dict[str, int]]] = {}
        for name, cat, sev, n in self.query(
                "SELECT d.annotator, m.category, m.severity, COUNT(*) FROM review_marks m"
                " JOIN dialogues d ON d.id = m.dialogue_id JOIN turns t ON t.id = m.turn_id AND t.state = 'active'"
                " GROUP BY 1, 2, 3"):
            out.setdefault(name or "", {}).setdefault(cat, {})[sev] = int(n)
        return out

    # -- the judge's error spans as suggested marks -------------------------------------------------
    def decide_suggestion(self, dialogue_id: str, turn_id: int, reviewer: str, category: str, severity: str,
                          span: str, decision: str, mark_id: int | None = None) -> None:
        """Store what the reviewer did with the judge's suggestion (category, span) on an answer:
        ``confirmed`` or ``changed`` (with the mark made) or ``dismissed``; once per suggestion."""
        with self.transaction() as c:
            spec_id = self._answer_of(c, dialogue_id, turn_id)[2]
            row = c.execute("SELECT decision, reviewer FROM review_suggestions WHERE turn_id = ? AND category = ?"
                            " AND span = ?", (turn_id, category, span)).fetchone()
            if row is not None:
                raise ReviewError(f"the suggestion {category} «{span}» was already {row[0]} (by {row[1]})")
            c.execute("INSERT INTO review_suggestions(dialogue_id, turn_id, category, severity, span, decision,"
                      " mark_id, reviewer, created_at) VALUES (?,?,?,?,?,?,?,?,?)",
                      (dialogue_id, turn_id, category, severity, span, decision, mark_id, reviewer, utcnow()))
            self.log_event(reviewer, "review_suggestion", dialogue_id=dialogue_id, spec_id=spec_id, turn_id=turn_id,
                           detail={"decision": decision, "category": category, "span": span, "mark": mark_id})

    def review_suggestions(self, dialogue_id: str) -> list[dict[str, Any]]:
        """The decided suggestions of a dialogue, in the order they were decided."""
        return [dict(r) for r in self.query("SELECT * FROM review_suggestions WHERE dialogue_id = ? ORDER BY id",
                                            (dialogue_id,))]

    def suggestion_figures(self) -> dict[str, dict[str, int]]:
        """Per error category, on answers that are still active: the judge's suggestions decided by
        reviewers (``confirmed``, ``changed``, ``dismissed``) and ``missed``, the reviewers' marks
        on judged answers that are no confirmed suggestion (a changed one counts under the
        reviewer's category)."""
        out: dict[str, dict[str, int]] = {}

        def row(cat: str) -> dict[str, int]:
            return out.setdefault(cat, {"confirmed": 0, "changed": 0, "dismissed": 0, "missed": 0})

        for cat, decision, n in self.query(
                "SELECT s.category, s.decision, COUNT(*) FROM review_suggestions s JOIN turns t ON t.id = s.turn_id"
                " AND t.state = 'active' GROUP BY s.category, s.decision"):
            row(cat)[decision] += int(n)
        for cat, n in self.query(
                "SELECT m.category, COUNT(*) FROM review_marks m JOIN turns t ON t.id = m.turn_id AND t.state = 'active'"
                " JOIN judgements j ON j.turn_id = m.turn_id AND j.status = 'judged'"
                " WHERE NOT EXISTS (SELECT 1 FROM review_suggestions s WHERE s.mark_id = m.id"
                " AND s.decision = 'confirmed') GROUP BY m.category"):
            row(cat)["missed"] += int(n)
        return dict(sorted(out.items()))

    # -- returned to the annotator: revisions and sending back -------------------------------------
    def returned_dialogues(self, annotator: str) -> list[dict[str, Any]]:
        """The annotator's finished dialogues a reviewer rejected, or decided with error marks on
        answers still active, not sent back since: the dialogue rows, oldest verdict first."""
        rows = self.query(
            "SELECT d.* FROM dialogues d WHERE d.annotator = ? AND d.origin = 'human' AND d.review_status IS NOT NULL"
            " AND (d.review_status = 'rejected' OR EXISTS (SELECT 1 FROM review_marks m JOIN turns t ON t.id = m.turn_id"
            " AND t.state = 'active' WHERE m.dialogue_id = d.id)) ORDER BY d.updated_at, d.id", (annotator,))
        return [_dialogue_row(r) for r in rows]

    def revise_turn(self, dialogue_id: str, turn_id: int, annotator: str, text: str) -> int:
        """The annotator's new version of an answer of a dialogue returned to them: the old one is
        kept (state ``rejected``, ``params["revised_by"]`` naming the new turn), the new one is the
        active turn at its place (``params["revision"]``: who, the turn it replaces, the verdict it
        answers). Returns the new turn's id."""
        with self.transaction():
            d = self.get_dialogue(dialogue_id)
            if d is None or d["annotator"] != annotator or d["review_status"] is None:
                raise ReviewError(f"dialogue {dialogue_id[:8]} was not returned to you")
            return self._replace_answer(
                dialogue_id, turn_id, annotator, text, "revised", "revised_by",
                {"revision": {"annotator": annotator, "replaces": turn_id, "answers": d["review_status"]}},
                "review_revise")

    def send_back(self, dialogue_id: str, annotator: str, note: str | None = None) -> str:
        """Send a returned dialogue back to review after revising it: the verdict is cleared (kept in
        ``meta.reviews`` with ``{"sent_back_by", "undoes", "note", "at"}``), so the dialogue is in the
        review queue again (its revised answers are human answers). Returns the verdict answered."""
        with self.transaction():
            d = self.get_dialogue(dialogue_id)
            if d is None or d["annotator"] != annotator or d["review_status"] is None:
                raise ReviewError(f"dialogue {dialogue_id[:8]} was not returned to you")
            reviews = d["meta"].setdefault("reviews", [])
            last = reviews[-1] if reviews and isinstance(reviews[-1], dict) else {}
            revised = [t for t in self.get_turns(dialogue_id) if (t["params"] or {}).get("revision")
                       and (t["created_at"] or "") >= (last.get("at") or "")]
            if not revised:
                raise ReviewError("revise at least one answer before sending the dialogue back")
            reviews.append({"sent_back_by": annotator, "undoes": d["review_status"], "note": note, "at": utcnow()})
            self.update_dialogue(dialogue_id, review_status=None, meta=d["meta"])
            self.log_event(annotator, "review_send_back", dialogue_id=dialogue_id, spec_id=d["spec_id"],
                           detail={"answers": d["review_status"], "note": note, "revised": len(revised)})
            return str(d["review_status"])

    def return_counts(self) -> dict[str, dict[str, int]]:
        """Per annotator: ``returns`` (verdicts that returned a dialogue: rejected, or with marks)
        and ``fixes`` (dialogues sent back revised), from the action log."""
        out: dict[str, dict[str, int]] = {}
        for name, n in self.query("SELECT annotator, COUNT(*) FROM session_events WHERE action = 'review_send_back'"
                                  " GROUP BY annotator"):
            out.setdefault(name, {"returns": 0, "fixes": 0})["fixes"] = int(n)
        for name, n in self.query(
                "SELECT d.annotator, COUNT(*) FROM session_events e JOIN dialogues d ON d.id = e.dialogue_id"
                " WHERE e.action IN ('review_reject', 'review_accept', 'review_fixed') AND (e.action = 'review_reject'"
                " OR EXISTS (SELECT 1 FROM review_marks m JOIN turns t ON t.id = m.turn_id AND t.state = 'active'"
                " WHERE m.dialogue_id = d.id AND m.created_at <= e.created_at))"
                " GROUP BY d.annotator"):
            out.setdefault(name or "", {"returns": 0, "fixes": 0})["returns"] = int(n)
        return out

    # -- verdicts: taken back while not exported ---------------------------------------------------------
    def undo_review(self, dialogue_id: str, reviewer: str) -> str:
        """Take back a dialogue's verdict (any reviewer's), so it can be decided again; the history
        in ``meta["reviews"]`` keeps the verdict and gains ``{"reviewer", "undoes", "at"}``. Refused
        once an export was written after the verdict (the verdict went out with it). Returns the
        verdict taken back."""
        with self.transaction():
            d = self.get_dialogue(dialogue_id)
            if d is None or d["review_status"] is None:
                raise ReviewError(f"dialogue {dialogue_id[:8]} has no verdict to take back")
            meta = d["meta"]
            reviews = meta.setdefault("reviews", [])
            last = reviews[-1] if reviews and isinstance(reviews[-1], dict) else {}
            exported = self.scalar("SELECT MAX(created_at) FROM exports")
            if exported and (not last.get("at") or exported >= last["at"]):
                raise ReviewError(f"dialogue {dialogue_id[:8]} was exported ({exported}) with its verdict"
                                  f" {d['review_status']}: it can no longer be changed")
            reviews.append({"reviewer": reviewer, "undoes": d["review_status"], "at": utcnow()})
            self.update_dialogue(dialogue_id, review_status=None, meta=meta)
            self.log_event(reviewer, "review_undo", dialogue_id=dialogue_id, spec_id=d["spec_id"],
                           detail={"undoes": d["review_status"], "by": last.get("reviewer")})
            return str(d["review_status"])

    def recent_verdicts(self, reviewer: str, limit: int = 10) -> list[dict[str, Any]]:
        """The reviewer's latest verdicts still standing, newest first: {dialogue_id, verdict, at}."""
        out: list[dict[str, Any]] = []
        seen: set[str] = set()
        for did, action, at in self.query(
                "SELECT dialogue_id, action, created_at FROM session_events WHERE annotator = ? AND action IN"
                " ('review_accept', 'review_reject', 'review_fixed', 'review_undo') ORDER BY id DESC LIMIT ?",
                (reviewer, limit * 4)):
            if did in seen:
                continue
            seen.add(did)
            if action == "review_undo":
                continue
            d = self.get_dialogue(did)
            if d is not None and d["review_status"] is not None:
                out.append({"dialogue_id": did, "verdict": d["review_status"], "at": at, "spec_id": d["spec_id"],
                            "annotator": d["annotator"]})
            if len(out) >= limit:
                break
        return out

    # -- fixes -----------------------------------------------------------------------------------------
    def review_fix(self, dialogue_id: str, turn_id: int, reviewer: str, text: str) -> int:
        """Replace an active answer by the reviewer's version (module doc); returns the new turn's id."""
        with self.transaction():
            return self._replace_answer(dialogue_id, turn_id, reviewer, text, "fixed", "fixed_by_review",
                                        {"review_fix": {"reviewer": reviewer, "replaces": turn_id}}, "review_fix")

    def _replace_answer(self, dialogue_id: str, turn_id: int, who: str, text: str, word: str, back_key: str,
                        marker: dict[str, Any], action: str) -> int:
        """A new version of an active answer by ``who`` (a reviewer's fix, an annotator's revision):
        the old turn is kept as ``rejected`` with ``params[back_key]`` naming the new one, which
        carries ``marker`` in its params; logged as ``action``. Inside the caller's transaction."""
        text = text.strip()
        if not text:
            raise ReviewError(f"the {word} answer is empty")
        with self.transaction() as c:
            spec_id = self._answer_of(c, dialogue_id, turn_id)[2]
            old = c.execute("SELECT * FROM turns WHERE id = ?", (turn_id,)).fetchone()
            if text == old["content"]:
                raise ReviewError(f"the {word} answer is the same as the answer")
            params = loads(old["params"], {})
            self.set_turn_state(turn_id, "rejected")
            new_id = self.add_turn(
                dialogue_id, role="assistant", content=text, author="human", idx=old["idx"], annotator=who,
                model=old["model"], interaction_type=old["interaction_type"], template_name=old["template_name"],
                template_hash=old["template_hash"], lang=old["lang"], original_content=old["content"],
                params={k: v for k, v in params.items() if k not in ("control", "fixed_by_review", "revised_by")}
                | marker)
            self.update_turn(turn_id, params={**params, back_key: new_id})
            self.log_event(who, action, dialogue_id=dialogue_id, spec_id=spec_id, turn_id=turn_id,
                           detail={"new_turn": new_id})
            return new_id

    def review_fixed_turns(self, dialogue_id: str) -> list[int]:
        """Active turns of the dialogue that are a reviewer's fix."""
        return [r[0] for r in self.query(
            "SELECT id FROM turns WHERE dialogue_id = ? AND state = 'active' AND json_extract(params, '$.review_fix')"
            " IS NOT NULL", (dialogue_id,))]

    def _answer_of(self, c: Any, dialogue_id: str, turn_id: int) -> tuple[int, str, int | None]:
        row = c.execute("SELECT t.id, t.content, d.spec_id FROM turns t JOIN dialogues d ON d.id = t.dialogue_id"
                        " WHERE t.id = ? AND t.dialogue_id = ? AND t.role = 'assistant' AND t.state = 'active'"
                        " AND d.status IN ('done', 'skipped')", (turn_id, dialogue_id)).fetchone()
        if row is None:
            raise ReviewError(f"turn {turn_id} is not an active answer of finished dialogue {dialogue_id[:8]}")
        return int(row[0]), row[1], row[2]

    # -- overlap: which copy to keep ------------------------------------------------------------------
    def overlap_review_queue(self, *, include_picked: bool = False, limit: int | None = None,
                             exclude: tuple[int, ...] | list[int] = ()) -> list[int]:
        """Specs whose copies are all finished and of which two or more are done human dialogues,
        not adjudicated yet, oldest finished first: their ids."""
        sql = ("SELECT d.spec_id FROM dialogues d JOIN specs s ON s.id = d.spec_id WHERE d.origin = 'human'"
               " AND d.status = 'done' AND s.status = 'done' AND s.copies > 1")
        params: list[Any] = []
        if not include_picked:
            sql += " AND NOT EXISTS (SELECT 1 FROM overlap_picks p WHERE p.spec_id = d.spec_id)"
        if exclude:
            sql += f" AND d.spec_id NOT IN ({','.join('?' * len(exclude))})"
            params += list(exclude)
        sql += " GROUP BY d.spec_id HAVING COUNT(*) >= 2 ORDER BY MAX(d.updated_at), d.spec_id"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return [r[0] for r in self.query(sql, params)]

    def overlap_copies_done(self, spec_id: int) -> list[dict[str, Any]]:
        """The finished (done) human dialogues of a spec, by copy."""
        return [_dialogue_row(r) for r in self.query(
            "SELECT * FROM dialogues WHERE spec_id = ? AND origin = 'human' AND status = 'done' ORDER BY copy",
            (spec_id,))]

    def set_overlap_pick(self, spec_id: int, dialogue_id: str, reviewer: str, note: str | None = None) -> None:
        """Keep ``dialogue_id`` of the copies of ``spec_id`` (filter drops the others as
        ``overlap_not_picked``). The picked dialogue counts as reviewed: ``fixed`` when the
        reviewer fixed one of its answers, else ``accepted`` (unless it was reviewed before)."""
        with self.transaction() as c:
            done = {d["id"]: d for d in self.overlap_copies_done(spec_id)}
            if dialogue_id not in done:
                raise ReviewError(f"dialogue {dialogue_id[:8]} is not a finished copy of spec {spec_id}")
            row = c.execute("SELECT reviewer FROM overlap_picks WHERE spec_id = ?", (spec_id,)).fetchone()
            if row is not None:
                raise ReviewError(f"spec {spec_id} was already adjudicated (by {row[0]})")
            c.execute("INSERT INTO overlap_picks(spec_id, dialogue_id, reviewer, note, created_at) VALUES (?,?,?,?,?)",
                      (spec_id, dialogue_id, reviewer, note, utcnow()))
            self.log_event(reviewer, "review_pick", dialogue_id=dialogue_id, spec_id=spec_id,
                           detail={"note": note, "copies": sorted(done)})
            if done[dialogue_id]["review_status"] is None:
                verdict = "fixed" if self.review_fixed_turns(dialogue_id) else "accepted"
                self.set_review(dialogue_id, reviewer, verdict, note)

    def overlap_not_picked(self) -> dict[str, dict[str, Any]]:
        """The copies of adjudicated overlap specs that were not picked -> {picked, by} (filter)."""
        return {r[0]: {"picked": r[1], "by": r[2]} for r in self.query(
            "SELECT d.id, p.dialogue_id, p.reviewer FROM overlap_picks p JOIN dialogues d ON d.spec_id = p.spec_id"
            " WHERE d.id <> p.dialogue_id")}

    def review_rejections(self) -> dict[str, dict[str, Any]]:
        """Dialogues a reviewer rejected (``session --review``) -> {by, note} (filter)."""
        out: dict[str, dict[str, Any]] = {}
        for did, meta in self.query("SELECT id, meta FROM dialogues WHERE review_status = 'rejected'"):
            reviews = (loads(meta, {}) or {}).get("reviews") or []
            last = reviews[-1] if reviews and isinstance(reviews[-1], dict) else {}
            out[did] = {"by": last.get("reviewer"), "note": last.get("note")}
        return out

    def overlap_picks(self) -> dict[int, dict[str, Any]]:
        """Every pick, by spec id."""
        return {r["spec_id"]: dict(r) for r in self.query("SELECT * FROM overlap_picks")}


__all__ = ["ReviewMixin", "ReviewError"]
