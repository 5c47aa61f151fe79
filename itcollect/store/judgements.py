"""LLM judgements of assistant answers (``itcollect judge``), and what filter, export, stats and the
review queue read of them.

One row per answer turn: the latest judgement (``--rejudge`` and a new judge model replace it; the
request ledger keeps every answer paid for). A judgement is *current* while its turn is active,
its dialogue is finished and ``dialogue_rev`` equals the dialogue's ``turns_rev`` (every write to
the dialogue's turns moves it: a dialogue edited or extended after judging is judged again).
Readers of the whole corpus get judgements a page of dialogues at a time (one query per page,
through the ``judgements_dialogue`` index), never one query per dialogue.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from itcollect.store.core import StoreCore, dumps, loads, utcnow

JUDGEMENT_STATUSES = ("judged", "unparsed")

#: Columns of a judgement row as :meth:`JudgementsMixin.save_judgements` takes them.
JUDGEMENT_FIELDS = ("turn_id", "dialogue_id", "dialogue_rev", "kind", "interaction_type", "judge_model",
                    "template_name", "template_hash", "call_key", "generation", "sample", "status", "score",
                    "n_critical", "errors", "compliance", "reason", "rating", "in_instruction_language", "raw",
                    "created_at")
#: NOT NULL columns with a default: a row that leaves them out gets the default (an upsert, unlike
#: the INSERT OR REPLACE it replaced, does not put the default in for a NULL)
_JUDGEMENT_DEFAULTS: dict[str, Any] = {"generation": 0, "sample": 0, "n_critical": 0, "errors": "[]"}

#: What filter, export and review read of a current judgement.
CURRENT_FIELDS = ("turn_id", "dialogue_id", "kind", "interaction_type", "judge_model", "status", "score",
                  "n_critical", "errors", "compliance", "reason", "rating", "in_instruction_language")

# an answer turn that needs a judge call: an active assistant turn of a finished dialogue with no
# current judgement for this judge (model, one of the templates, generation reached)
_NEEDS = ("t.state='active' AND t.role='assistant' AND NOT EXISTS (SELECT 1 FROM judgements j"
          " WHERE j.turn_id=t.id AND j.judge_model=? AND j.template_hash IN ({hashes}) AND j.dialogue_rev=d.turns_rev"
          " AND j.generation>=?)")


def _current_row(row: Sequence[Any], decode: bool = True) -> dict[str, Any]:
    j = dict(zip(CURRENT_FIELDS, row))
    if decode:
        j["errors"] = loads(j["errors"], [])
    if j["in_instruction_language"] is not None:
        j["in_instruction_language"] = bool(j["in_instruction_language"])
    return j


class JudgementsMixin(StoreCore):
    # -- the judge run ------------------------------------------------------------------------------
    def judge_generations(self) -> tuple[int, int]:
        """(lowest, highest) generation of the judgements of active answers of finished dialogues
        ((0, 0) when there are none). ``--rejudge`` judges every answer below lowest + 1, so a
        re-run after a killed ``--rejudge`` finishes it instead of paying for it all again."""
        lo, hi = self.query(
            "SELECT MIN(j.generation), MAX(j.generation) FROM judgements j JOIN turns t ON t.id=j.turn_id"
            " JOIN dialogues d ON d.id=j.dialogue_id WHERE t.state='active' AND d.status='done'")[0]
        return int(lo or 0), int(hi or 0)

    def _needs(self, hashes: Sequence[str]) -> str:
        return _NEEDS.format(hashes=",".join("?" * len(hashes)))

    def count_answers_to_judge(self, judge_model: str, template_hashes: Sequence[str], generation: int) -> int:
        """Active answers of finished dialogues without a current judgement by this judge."""
        return int(self.scalar(
            f"SELECT COUNT(*) FROM turns t JOIN dialogues d ON d.id=t.dialogue_id WHERE d.status='done' AND"
            f" {self._needs(template_hashes)}", (judge_model, *template_hashes, generation)) or 0)

    def dialogues_to_judge(self, judge_model: str, template_hashes: Sequence[str], generation: int, *,
                           after: int = 0, limit: int = 500) -> list[tuple[int, str]]:
        """(rowid, id) of finished dialogues, after rowid ``after``, with an answer to judge."""
        return [(int(r[0]), r[1]) for r in self.query(
            f"SELECT d.rowid, d.id FROM dialogues d WHERE d.rowid > ? AND d.status='done' AND EXISTS"
            f" (SELECT 1 FROM turns t WHERE t.dialogue_id=d.id AND {self._needs(template_hashes)})"
            f" ORDER BY d.rowid LIMIT ?", (after, judge_model, *template_hashes, generation, limit))]

    def dialogues_for_judging(self, dialogue_ids: Sequence[str]) -> list[tuple[dict[str, Any], list[dict[str, Any]],
                                                                           dict[int, dict[str, Any]]]]:
        """(dialogue, active turns, {turn id: stored judgement}) of each id, in the order given:
        what the judge needs to build its prompts and decide samples."""
        if not dialogue_ids:
            return []
        marks = ",".join("?" * len(dialogue_ids))
        ds = {r["id"]: dict(r) for r in self.query(
            f"SELECT id, origin, source_text, src_lang, tgt_lang, instruction_lang, turns_rev, status"
            f" FROM dialogues WHERE id IN ({marks})", list(dialogue_ids))}
        turns: dict[str, list[dict[str, Any]]] = {i: [] for i in dialogue_ids}
        for r in self.query(
                f"SELECT id, dialogue_id, idx, role, content, model, interaction_type, params FROM turns"
                f" WHERE dialogue_id IN ({marks}) AND state='active' ORDER BY dialogue_id, idx", list(dialogue_ids)):
            t = dict(r)
            t["params"] = loads(t["params"], {}) if t["params"] not in (None, "{}") else {}
            turns[t["dialogue_id"]].append(t)
        stored: dict[str, dict[int, dict[str, Any]]] = {i: {} for i in dialogue_ids}
        for r in self.query(f"SELECT * FROM judgements WHERE dialogue_id IN ({marks})", list(dialogue_ids)):
            stored[r["dialogue_id"]][r["turn_id"]] = dict(r)
        return [(ds[i], turns[i], stored[i]) for i in dialogue_ids if i in ds]

    def save_judgements(self, rows: Iterable[dict[str, Any]]) -> int:
        """Store judgements (one per turn; a turn's earlier judgement is replaced) in one transaction."""
        values = []
        for r in rows:
            r = dict(r)
            r.setdefault("created_at", utcnow())
            if not isinstance(r.get("errors", "[]"), str):
                r["errors"] = dumps(r["errors"])
            for f, default in _JUDGEMENT_DEFAULTS.items():  # the columns' defaults, as INSERT OR REPLACE gave
                if r.get(f) is None:
                    r[f] = default
            if r.get("in_instruction_language") is not None:
                r["in_instruction_language"] = int(bool(r["in_instruction_language"]))
            values.append(tuple(r.get(f) for f in JUDGEMENT_FIELDS))
        if not values:
            return 0
        with self.transaction() as c:
            c.executemany(f"INSERT INTO judgements({','.join(JUDGEMENT_FIELDS)})"
                          f" VALUES ({','.join('?' * len(JUDGEMENT_FIELDS))}) ON CONFLICT(turn_id) DO UPDATE SET "
                          + ", ".join(f"{f}=excluded.{f}" for f in JUDGEMENT_FIELDS if f != "turn_id"), values)
        return len(values)

    def get_judgement(self, turn_id: int) -> dict[str, Any] | None:
        """The stored judgement of a turn (current or not), errors decoded."""
        rows = self.query("SELECT * FROM judgements WHERE turn_id=?", (turn_id,))
        if not rows:
            return None
        j = dict(rows[0])
        j["errors"] = loads(j["errors"], [])
        return j

    def answer_models(self) -> set[str]:
        """Models that wrote the active answers of finished dialogues, or the candidates of the turns a
        person compared there (the judge scores both, and warns when it is one of these models)."""
        return {r[0] for r in self.query(
            "SELECT DISTINCT t.model FROM turns t JOIN dialogues d ON d.id=t.dialogue_id WHERE d.status='done'"
            " AND t.state='active' AND t.role='assistant' AND t.model IS NOT NULL"
            " UNION SELECT DISTINCT k.model FROM candidates k JOIN comparisons c ON c.id=k.comparison_id"
            " JOIN dialogues d ON d.id=c.dialogue_id WHERE d.status='done' AND c.status='decided'"
            " AND c.chooser <> 'judge' AND k.status='answered'")}

    # -- readers: filter, export, review ----------------------------------------------------------
    def current_judgements(self, *, after: int = 0, upto: int | None = None,
                           dialogue_ids: Sequence[str] | None = None,
                           decode_errors: bool = True) -> dict[int, dict[str, Any]]:
        """Current judgements by turn id: of the finished dialogues with rowid in (after, upto], or of
        ``dialogue_ids``. (Whether the turn is still active is the caller's: it looks turns up by id.)
        ``decode_errors=False`` leaves ``errors`` as its JSON text (readers of the whole corpus
        decode only the few they need: ~4 us an answer)."""
        cols = ", ".join(f"j.{c}" for c in CURRENT_FIELDS)
        if dialogue_ids is not None:
            if not dialogue_ids:
                return {}
            sql = (f"SELECT {cols} FROM judgements j JOIN dialogues d ON d.id=j.dialogue_id"
                   f" WHERE j.dialogue_id IN ({','.join('?' * len(dialogue_ids))}) AND d.status='done'"
                   f" AND j.dialogue_rev=d.turns_rev")
            params: list[Any] = list(dialogue_ids)
        else:
            sql = (f"SELECT {cols} FROM dialogues d JOIN judgements j ON j.dialogue_id=d.id WHERE d.rowid > ?"
                   f" AND d.status='done' AND j.dialogue_rev=d.turns_rev")
            params = [after]
            if upto is not None:
                sql += " AND d.rowid <= ?"
                params.append(upto)
        return {r[0]: _current_row(r, decode_errors) for r in self.stream(sql, params)}

    def has_judgements(self) -> bool:
        return self.scalar("SELECT 1 FROM judgements LIMIT 1") is not None

    def answer_count(self) -> int:
        """Active answers of finished dialogues (what the judge judges)."""
        return int(self.scalar("SELECT COUNT(*) FROM turns t JOIN dialogues d ON d.id=t.dialogue_id"
                               " WHERE d.status='done' AND t.state='active' AND t.role='assistant'") or 0)

    # -- stats ----------------------------------------------------------------------------------------
    def judge_rows(self) -> list[tuple]:
        """Every active answer of every finished dialogue with its current judgement (or NULLs):
        (dialogue id, turn id, src_lang, tgt_lang, origin, review_status, status, kind, type, score,
        n_critical, compliance, rating, judge model). Plain tuples, streamed from one query."""
        return list(self.stream(
            "SELECT d.id, t.id, d.src_lang, d.tgt_lang, d.origin, d.review_status, j.status, j.kind,"
            " j.interaction_type, j.score, j.n_critical, j.compliance, j.rating, j.judge_model"
            " FROM turns t JOIN dialogues d ON d.id=t.dialogue_id"
            " LEFT JOIN judgements j ON j.turn_id=t.id AND j.dialogue_rev=d.turns_rev"
            " WHERE d.status='done' AND t.state='active' AND t.role='assistant' ORDER BY d.rowid, t.idx"))

    def judge_error_counts(self) -> dict[str, dict[str, int]]:
        """{category: {severity: n}} over the error spans of current judgements (JSON1 in SQLite)."""
        out: dict[str, dict[str, int]] = {}
        for cat, sev, n in self.query(
                "SELECT json_extract(e.value, '$.category'), json_extract(e.value, '$.severity'), COUNT(*)"
                " FROM dialogues d JOIN judgements j ON j.dialogue_id=d.id AND j.dialogue_rev=d.turns_rev"
                " JOIN turns t ON t.id=j.turn_id AND t.state='active', json_each(j.errors) e"
                " WHERE d.status='done' AND j.status='judged' GROUP BY 1, 2"):
            out.setdefault(str(cat), {})[str(sev)] = int(n)
        return out

    # -- review ---------------------------------------------------------------------------------------
    def lowest_scores(self) -> dict[str, float]:
        """The lowest current judge score of each finished dialogue that has one."""
        return {r[0]: float(r[1]) for r in self.stream(
            "SELECT j.dialogue_id, MIN(j.score) FROM judgements j JOIN dialogues d ON d.id=j.dialogue_id"
            " AND j.dialogue_rev=d.turns_rev JOIN turns t ON t.id=j.turn_id AND t.state='active'"
            " WHERE d.status='done' AND j.status='judged' AND j.score IS NOT NULL GROUP BY j.dialogue_id")}


__all__ = ["JudgementsMixin", "JUDGEMENT_STATUSES", "JUDGEMENT_FIELDS", "CURRENT_FIELDS"]
