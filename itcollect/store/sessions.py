"""Human annotation sessions: the action log, per-annotator figures and the review queue.

Every annotator action is a ``session_events`` row written in the same transaction as the turn it
changes, so the log and the dialogue can never disagree, and time per dialogue is measured from
the log (active time: a gap that ends in a resume, or starts at a quit, is not work).
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from itcollect.kernel.review import REVIEW_VERDICTS
from itcollect.store.core import dumps, inserted_id, loads, utcnow
from itcollect.store.dialogues import DialoguesMixin, _dialogue_row

#: Actions after which the clock stops until the annotator comes back.
_PAUSE_ACTIONS = frozenset({"quit", "lease_lost"})
#: Actions that start the clock again after a pause (or a crash, which logs nothing).
_RESUME_ACTIONS = frozenset({"resume"})
SKIP_REASONS = ("bad_source", "offensive", "not_news", "other")
#: ``session --review --order``: default (flagged and edited, oldest change first) or judge (also
#: every judged dialogue, the lowest judge score first)
REVIEW_ORDERS = ("default", "judge")


def _ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class SessionsMixin(DialoguesMixin):  # reads and updates dialogues
    # -- the action log --------------------------------------------------------------------------
    def log_event(self, annotator: str, action: str, *, dialogue_id: str | None = None,
                  spec_id: int | None = None, turn_id: int | None = None,
                  detail: dict[str, Any] | None = None) -> int:
        """Append one action; joins the caller's transaction when there is one."""
        with self.transaction() as c:
            cur = c.execute(
                "INSERT INTO session_events(annotator, dialogue_id, spec_id, action, turn_id, detail, created_at)"
                " VALUES (?,?,?,?,?,?,?)",
                (annotator, dialogue_id, spec_id, action, turn_id, dumps(detail or {}), utcnow()))
            return inserted_id(cur)

    def session_events(self, *, annotator: str | None = None, dialogue_id: str | None = None) -> list[dict[str, Any]]:
        where, params = [], []
        if annotator is not None:
            where.append("annotator = ?")
            params.append(annotator)
        if dialogue_id is not None:
            where.append("dialogue_id = ?")
            params.append(dialogue_id)
        sql = "SELECT * FROM session_events" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY id"
        out = []
        for row in self.query(sql, params):
            ev = dict(row)
            ev["detail"] = loads(ev["detail"], {})
            out.append(ev)
        return out

    def last_turn_action(self, turn_id: int) -> str | None:
        """The latest decision logged on a turn (accept, edit, ...), None when undecided."""
        row = self.conn.execute(
            "SELECT action FROM session_events WHERE turn_id = ? AND action IN ('accept','edit','override')"
            " ORDER BY id DESC LIMIT 1", (turn_id,)).fetchone()
        return None if row is None else row[0]

    # -- finding work ----------------------------------------------------------------------------
    def unfinished_dialogues(self, annotator: str) -> list[dict[str, Any]]:
        """Human dialogues this annotator left in progress, oldest first."""
        return [_dialogue_row(r) for r in self.query(
            "SELECT * FROM dialogues WHERE origin = 'human' AND annotator = ? AND status = 'in_progress'"
            " ORDER BY created_at, id", (annotator,))]

    def count_answers_at(self, dialogue_id: str, idx: int) -> int:
        """Assistant answers ever given at position ``idx`` (any state): the next sample number."""
        return int(self.scalar("SELECT COUNT(*) FROM turns WHERE dialogue_id = ? AND idx = ? AND role = 'assistant'",
                               (dialogue_id, idx)) or 0)

    # -- review ------------------------------------------------------------------------------------
    def _review_sql(self, order: str, include_reviewed: bool, exclude: Sequence[str]) -> tuple[str, list[Any]]:
        if order not in REVIEW_ORDERS:
            raise ValueError(f"unknown review order {order!r} (expected one of {REVIEW_ORDERS})")
        needs = ("d.flagged = 1 OR EXISTS (SELECT 1 FROM turns t WHERE t.dialogue_id = d.id AND t.role = 'assistant'"
                 " AND t.author = 'human' AND t.state = 'active')")
        params: list[Any] = []
        if order == "judge":
            # the lowest current score of each judged dialogue (judgements of its turns as they are now)
            sql = ("SELECT d.*, s.score AS judge_score FROM dialogues d LEFT JOIN (SELECT j.dialogue_id, MIN(j.score)"
                   " AS score FROM judgements j JOIN dialogues d2 ON d2.id = j.dialogue_id AND j.dialogue_rev ="
                   " d2.turns_rev JOIN turns t ON t.id = j.turn_id AND t.state = 'active' WHERE j.status = 'judged'"
                   " AND j.score IS NOT NULL GROUP BY j.dialogue_id) s ON s.dialogue_id = d.id"
                   f" WHERE d.status IN ('done','skipped') AND (s.score IS NOT NULL OR {needs})")
        else:
            sql = f"SELECT d.* FROM dialogues d WHERE d.status IN ('done','skipped') AND ({needs})"
        if not include_reviewed:
            sql += " AND d.review_status IS NULL"
        if exclude:
            sql += f" AND d.id NOT IN ({','.join('?' * len(exclude))})"
            params += list(exclude)
        return sql, params

    def review_queue(self, *, include_reviewed: bool = False, order: str = "default", limit: int | None = None,
                     exclude: Sequence[str] = ()) -> list[dict[str, Any]]:
        """Finished dialogues that a reviewer should see: flagged ones and ones with edited answers.

        ``order="judge"``: also every finished dialogue the LLM judge scored, the lowest turn score
        first (``judge_score`` on each), then the rest in the default order (oldest change first).
        ``exclude``: ids left out (skipped for now); ``limit``: at most that many."""
        sql, params = self._review_sql(order, include_reviewed, exclude)
        sql += (" ORDER BY s.score IS NULL, s.score, d.updated_at, d.id" if order == "judge"
                else " ORDER BY d.updated_at, d.id")
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return [_dialogue_row(r) for r in self.query(sql, params)]

    def review_queue_size(self, *, order: str = "default", exclude: Sequence[str] = ()) -> int:
        """How many dialogues :meth:`review_queue` holds (not reviewed yet)."""
        sql, params = self._review_sql(order, False, exclude)
        return int(self.scalar(f"SELECT COUNT(*) FROM ({sql})", params) or 0)

    def set_review(self, dialogue_id: str, reviewer: str, verdict: str, note: str | None = None) -> None:
        """Record a reviewer's verdict (accepted | rejected | fixed: accepted with the reviewer's
        fixes of answers) with the action log entry."""
        if verdict not in REVIEW_VERDICTS:
            raise ValueError(f"unknown review verdict {verdict!r}")
        with self.transaction():
            d = self.get_dialogue(dialogue_id)
            if d is None:
                raise ValueError(f"no dialogue {dialogue_id}")
            meta = d["meta"]
            meta.setdefault("reviews", []).append({"reviewer": reviewer, "verdict": verdict, "note": note,
                                                   "at": utcnow()})
            self.update_dialogue(dialogue_id, review_status=verdict, meta=meta)
            self.log_event(reviewer, REVIEW_VERDICTS[verdict],
                           dialogue_id=dialogue_id, spec_id=d["spec_id"], detail={"note": note})

    # -- figures -----------------------------------------------------------------------------------
    def active_seconds(self, events: list[dict[str, Any]]) -> float:
        """Seconds of work in a dialogue's actions (``action``, ``created_at``, in order): the gaps
        between them, except a gap that starts at a pause (quit, lease lost) or ends in a resume."""
        return self._active_seconds(events)

    def _active_seconds(self, events: list[dict[str, Any]]) -> float:
        total = 0.0
        for prev, cur in zip(events, events[1:]):
            if prev["action"] in _PAUSE_ACTIONS or cur["action"] in _RESUME_ACTIONS:
                continue
            total += max(0.0, _ts(cur["created_at"]) - _ts(prev["created_at"]))
        return total

    def annotator_stats(self) -> dict[str, dict[str, Any]]:
        """Per annotator: dialogues finished, skipped (with reasons), user turns written, answers
        edited, regenerations, undos, flags, and the median active seconds per finished dialogue."""
        by_dialogue: dict[str, list[dict[str, Any]]] = defaultdict(list)
        out: dict[str, dict[str, Any]] = {}
        counters: dict[str, Counter] = defaultdict(Counter)
        skip_reasons: dict[str, Counter] = defaultdict(Counter)
        finished: dict[str, set[str]] = defaultdict(set)
        for row in self.query("SELECT annotator, dialogue_id, action, detail, created_at FROM session_events"
                              " WHERE action NOT LIKE 'review_%' ORDER BY id"):
            name, did, action = row[0], row[1], row[2]
            counters[name][action] += 1
            if did is not None:
                by_dialogue[did].append({"action": action, "created_at": row[4]})
            if action == "skip":
                skip_reasons[name][loads(row[3], {}).get("reason", "other")] += 1
            if action == "finish" and did is not None:
                finished[name].add(did)
        user_turns = {r[0]: r[1] for r in self.query(
            "SELECT annotator, COUNT(*) FROM turns WHERE role = 'user' AND author = 'human' AND state = 'active'"
            " GROUP BY annotator")}
        # a reviewer's fix is not an annotator's edit; an edit a reviewer fixed later still is one
        edits = {r[0]: r[1] for r in self.query(
            "SELECT annotator, COUNT(*) FROM turns WHERE role = 'assistant' AND author = 'human'"
            " AND (state = 'active' OR json_extract(params, '$.fixed_by_review') IS NOT NULL)"
            " AND json_extract(params, '$.review_fix') IS NULL GROUP BY annotator")}
        names = sorted(set(counters) | {n for n in user_turns if n} | {n for n in edits if n})
        for name in names:
            c = counters[name]
            times = [self._active_seconds(by_dialogue[d]) for d in sorted(finished[name])]
            out[name] = {
                "dialogues": len(finished[name]),
                "skipped": int(c["skip"]),
                "turns": int(user_turns.get(name, 0)),
                "edits": int(edits.get(name, 0)),
                "regenerations": int(c["regenerate"]),
                "undos": int(c["undo"]),
                "flags": int(c["flag"]),
                "skip_reasons": dict(sorted(skip_reasons[name].items())),
                "median_seconds_per_dialogue": round(statistics.median(times), 1) if times else None,
            }
        return out

    def annotator_progress(self, annotator: str, since: str) -> dict[str, Any]:
        """What an annotator did since an ISO timestamp (the status line's 'today')."""
        counts = Counter({r[0]: r[1] for r in self.query(
            "SELECT action, COUNT(*) FROM session_events WHERE annotator = ? AND created_at >= ? GROUP BY action",
            (annotator, since))})
        finished_ids = [r[0] for r in self.query(
            "SELECT DISTINCT dialogue_id FROM session_events WHERE annotator = ? AND action = 'finish'"
            " AND created_at >= ?", (annotator, since))]
        times = [self._active_seconds(self.session_events(dialogue_id=d)) for d in finished_ids if d]
        total_done = int(self.scalar(
            "SELECT COUNT(DISTINCT dialogue_id) FROM session_events WHERE annotator = ? AND action = 'finish'",
            (annotator,)) or 0)
        return {"dialogues": int(counts["finish"]), "skipped": int(counts["skip"]),
                "turns": int(counts["request"]), "total_dialogues": total_done,
                "median_seconds_per_dialogue": statistics.median(times) if times else None}
