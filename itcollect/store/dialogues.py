"""Specs, dialogues and turns: the records that simulate, session and import all produce.

Human and simulated dialogues are the same records; only the provenance columns differ.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from typing import Any

from itcollect.store.core import StoreCore, dumps, inserted_id, loads, utcnow

SPEC_STATUSES = ("pending", "in_progress", "done", "failed", "skipped")
DIALOGUE_ORIGINS = ("simulated", "human", "imported")

_TURN_COLUMNS = ("role", "content", "author", "annotator", "model", "interaction_type", "template_name",
                 "template_hash", "params", "call_key", "original_content", "lang", "prompt_tokens",
                 "completion_tokens", "latency_ms", "finish_reason", "warnings", "state")


def _spec_row(row: Any) -> dict[str, Any]:
    spec = dict(row)
    spec["interaction_types"] = loads(spec["interaction_types"], [])
    spec["params"] = loads(spec["params"], {})
    return spec


def _dialogue_row(row: Any) -> dict[str, Any]:
    d = dict(row)
    d["meta"] = loads(d.get("meta"), {})
    return d


def _turn_row(row: Any) -> dict[str, Any]:
    t = dict(row)
    t["params"] = loads(t.get("params"), {})
    t["warnings"] = loads(t.get("warnings"), [])
    return t


class DialoguesMixin(StoreCore):
    # -- specs ---------------------------------------------------------------------------------
    def add_specs(self, specs: Iterable[dict[str, Any]]) -> int:
        """Insert planned specs; an existing (seed, seq) is left untouched (plan tops up)."""
        now = utcnow()
        cur = self.conn.executemany(
            "INSERT OR IGNORE INTO specs(seed, seq, source_id, src_lang, tgt_lang, instruction_lang, n_turns,"
            " interaction_types, params, status, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,'pending',?,?)",
            [(s["seed"], s["seq"], s["source_id"], s["src_lang"], s["tgt_lang"], s["instruction_lang"],
              s["n_turns"], dumps(s["interaction_types"]), dumps(s.get("params", {})), now, now) for s in specs])
        return cur.rowcount

    def get_spec(self, spec_id: int) -> dict[str, Any] | None:
        row = self.conn.execute("SELECT * FROM specs WHERE id=?", (spec_id,)).fetchone()
        return None if row is None else _spec_row(row)

    def iter_specs(self, statuses: Iterable[str] | None = None, limit: int | None = None) -> Iterator[dict[str, Any]]:
        for row in self.rows_by_status("specs", statuses, order_by="id", limit=limit):
            yield _spec_row(row)

    def set_spec_status(self, spec_id: int, status: str, reason: str | None = None) -> None:
        if status not in SPEC_STATUSES:
            raise ValueError(f"unknown spec status {status!r}")
        with self.transaction() as c:
            c.execute("UPDATE specs SET status=?, status_reason=?, updated_at=? WHERE id=?",
                      (status, reason, utcnow(), spec_id))

    def spec_counts(self) -> dict[str, int]:
        counts = dict.fromkeys(SPEC_STATUSES, 0)
        for status, n in self.query("SELECT status, COUNT(*) FROM specs GROUP BY status"):
            counts[status] = n
        counts["total"] = sum(counts[s] for s in SPEC_STATUSES)
        return {"total": counts["total"], **{s: counts[s] for s in SPEC_STATUSES}}

    def pending_spec_count(self) -> int:
        """Specs waiting for someone (a session's status line asks on every screen: ~2 ms at 160K
        specs, where all of :meth:`spec_counts` takes ~8 ms)."""
        return int(self.scalar("SELECT COUNT(*) FROM specs WHERE status = 'pending'") or 0)

    def source_use_counts(self) -> dict[str, int]:
        """Specs per source, replays (``plan --from-split``) left out: they never count as uses."""
        return {r[0]: r[1] for r in self.query("SELECT source_id, COUNT(*) FROM specs WHERE replay_of IS NULL"
                                               " GROUP BY source_id")}

    def max_spec_seq(self, seed: int) -> int:
        """-1 when the seed has no planned specs yet (replays are no position of a plan)."""
        v = self.scalar("SELECT MAX(seq) FROM specs WHERE seed=? AND replay_of IS NULL", (seed,))
        return -1 if v is None else int(v)

    # -- dialogues -----------------------------------------------------------------------------
    def create_dialogue(self, *, origin: str, spec_id: int | None = None, annotator: str | None = None,
                        source_id: str | None = None, source_text: str | None = None,
                        src_lang: str | None = None, tgt_lang: str | None = None,
                        instruction_lang: str | None = None, origin_file: str | None = None,
                        origin_line: int | None = None, meta: dict[str, Any] | None = None,
                        dialogue_id: str | None = None, status: str = "in_progress", copy: int = 0) -> str:
        """A new dialogue; ``copy``: which copy of an overlap spec it is (0 for every other)."""
        if origin not in DIALOGUE_ORIGINS:
            raise ValueError(f"unknown origin {origin!r}")
        did = dialogue_id or uuid.uuid4().hex
        now = utcnow()
        with self.transaction() as c:
            c.execute(
                "INSERT INTO dialogues(id, spec_id, origin, annotator, source_id, source_text, src_lang, tgt_lang,"
                " instruction_lang, status, origin_file, origin_line, meta, created_at, updated_at, copy)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (did, spec_id, origin, annotator, source_id, source_text, src_lang, tgt_lang, instruction_lang,
                 status, origin_file, origin_line, dumps(meta or {}), now, now, copy))
        return did

    def get_dialogue(self, dialogue_id: str) -> dict[str, Any] | None:
        row = self.conn.execute("SELECT * FROM dialogues WHERE id=?", (dialogue_id,)).fetchone()
        return None if row is None else _dialogue_row(row)

    def dialogue_for_spec(self, spec_id: int, copy: int = 0) -> dict[str, Any] | None:
        """The dialogue of one copy of a spec (every spec but an overlap one has only copy 0)."""
        row = self.conn.execute("SELECT * FROM dialogues WHERE spec_id=? AND copy=?", (spec_id, copy)).fetchone()
        return None if row is None else _dialogue_row(row)

    def dialogues_for_spec(self, spec_id: int) -> list[dict[str, Any]]:
        """Every dialogue of a spec (an overlap spec has one per copy), by copy."""
        return [_dialogue_row(r) for r in self.query("SELECT * FROM dialogues WHERE spec_id=? ORDER BY copy",
                                                     (spec_id,))]

    def set_dialogue_status(self, dialogue_id: str, status: str, reason: str | None = None) -> None:
        with self.transaction() as c:
            c.execute("UPDATE dialogues SET status=?, status_reason=?, updated_at=? WHERE id=?",
                      (status, reason, utcnow(), dialogue_id))

    def update_dialogue(self, dialogue_id: str, **fields: Any) -> None:
        allowed = {"annotator", "status", "status_reason", "flagged", "review_status", "meta", "early_finish",
                   "src_lang", "tgt_lang", "instruction_lang", "source_text"}
        bad = set(fields) - allowed
        if bad:
            raise ValueError(f"cannot update dialogue fields {sorted(bad)}")
        if "meta" in fields:
            fields["meta"] = dumps(fields["meta"])
        sets = ", ".join(f"{k}=?" for k in fields)
        with self.transaction() as c:
            c.execute(f"UPDATE dialogues SET {sets}, updated_at=? WHERE id=?",
                      (*fields.values(), utcnow(), dialogue_id))

    def iter_dialogues(self, statuses: Iterable[str] | None = None, origin: str | None = None,
                       batch_size: int = 2000) -> Iterator[dict[str, Any]]:
        """Streams dialogues in rowid order without holding them all in memory."""
        where, params = [], []
        if statuses is not None:
            statuses = list(statuses)
            where.append(f"status IN ({','.join('?' * len(statuses))})")
            params += statuses
        if origin is not None:
            where.append("origin=?")
            params.append(origin)
        clause = (" AND " + " AND ".join(where)) if where else ""
        last = 0
        while True:
            rows = self.query(f"SELECT rowid AS _rowid, * FROM dialogues WHERE rowid > ?{clause}"
                              f" ORDER BY rowid LIMIT ?", [last, *params, batch_size])
            if not rows:
                return
            for row in rows:
                d = _dialogue_row(row)
                last = d.pop("_rowid")
                yield d

    def dialogue_counts(self) -> dict[str, Any]:
        by_origin = dict.fromkeys(DIALOGUE_ORIGINS, 0)
        for origin, n in self.query("SELECT origin, COUNT(*) FROM dialogues GROUP BY origin"):
            by_origin[origin] = n
        by_status = {r[0]: r[1] for r in self.query("SELECT status, COUNT(*) FROM dialogues GROUP BY status")}
        return {"total": sum(by_origin.values()), "by_origin": by_origin, "by_status": by_status}

    # -- turns ---------------------------------------------------------------------------------
    def add_turn(self, dialogue_id: str, *, role: str, content: str, author: str, idx: int | None = None,
                 **provenance: Any) -> int:
        """Append (or place at ``idx``) one active turn; committed before this returns."""
        unknown = set(provenance) - set(_TURN_COLUMNS)
        if unknown:
            raise ValueError(f"unknown turn fields {sorted(unknown)}")
        for key in ("params", "warnings"):
            if key in provenance and not isinstance(provenance[key], str):
                provenance[key] = dumps(provenance[key])
        with self.transaction() as c:
            if idx is None:
                idx = c.execute("SELECT COALESCE(MAX(idx)+1, 0) FROM turns WHERE dialogue_id=? AND state='active'",
                                (dialogue_id,)).fetchone()[0]
            cols = ["dialogue_id", "idx", "role", "content", "author", "created_at", *provenance]
            vals = [dialogue_id, idx, role, content, author, utcnow(), *provenance.values()]
            cur = c.execute(f"INSERT INTO turns({','.join(cols)}) VALUES ({','.join('?' * len(cols))})", vals)
            c.execute("UPDATE dialogues SET updated_at=?, turns_rev=turns_rev+1 WHERE id=?", (utcnow(), dialogue_id))
            return inserted_id(cur)

    def add_turns(self, dialogue_id: str, turns: list[dict[str, Any]]) -> None:
        """Several turns in one transaction (imports: all or nothing)."""
        with self.transaction():
            for t in turns:
                t = dict(t)
                self.add_turn(dialogue_id, role=t.pop("role"), content=t.pop("content"), author=t.pop("author"),
                              **t)

    def get_turns(self, dialogue_id: str, include_inactive: bool = False) -> list[dict[str, Any]]:
        # active turns have one position each: in position order, as turns_position holds them
        sql = "SELECT * FROM turns WHERE dialogue_id=?"
        sql += " ORDER BY idx, id" if include_inactive else " AND state='active' ORDER BY idx"
        return [_turn_row(r) for r in self.query(sql, (dialogue_id,))]

    def _turns_changed(self, c: Any, turn_id: int) -> None:
        """A write to a turn changes its dialogue (``updated_at``) and its turns (``turns_rev``: a
        judgement of the old turns is no longer current), in the caller's transaction."""
        c.execute("UPDATE dialogues SET updated_at=?, turns_rev=turns_rev+1"
                  " WHERE id=(SELECT dialogue_id FROM turns WHERE id=?)", (utcnow(), turn_id))

    def set_turn_state(self, turn_id: int, state: str) -> None:
        with self.transaction() as c:
            c.execute("UPDATE turns SET state=? WHERE id=?", (state, turn_id))
            self._turns_changed(c, turn_id)

    def update_turn(self, turn_id: int, **fields: Any) -> None:
        bad = set(fields) - set(_TURN_COLUMNS)
        if bad:
            raise ValueError(f"unknown turn fields {sorted(bad)}")
        for key in ("params", "warnings"):
            if key in fields and not isinstance(fields[key], str):
                fields[key] = dumps(fields[key])
        sets = ", ".join(f"{k}=?" for k in fields)
        with self.transaction() as c:
            c.execute(f"UPDATE turns SET {sets} WHERE id=?", (*fields.values(), turn_id))
            self._turns_changed(c, turn_id)

    def discard_empty_dialogue(self, dialogue_id: str) -> bool:
        """Delete a dialogue that has no turn at all (in any state); False when it has one.

        An opened-but-untouched dialogue holds nothing worth keeping, and while it exists its
        spec counts as a human's (simulate never claims it): dropping it gives the spec back whole."""
        with self.transaction() as c:
            cur = c.execute("DELETE FROM dialogues WHERE id=? AND NOT EXISTS"
                            " (SELECT 1 FROM turns WHERE dialogue_id=?)", (dialogue_id, dialogue_id))
            return cur.rowcount == 1

    def turn_count(self) -> int:
        return int(self.scalar("SELECT COUNT(*) FROM turns WHERE state='active'") or 0)
