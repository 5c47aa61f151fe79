"""What ``plan`` reads (sources, references) and what ``simulate`` needs beyond the claims of
:mod:`.claims`: re-opening failed specs and counting rejected samples per turn position."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from itcollect.store.core import StoreCore, utcnow

# One shared encoder: json.dumps(..., sort_keys=True) builds a new encoder per call, which was the
# largest single cost of planning 160K specs. Same output as core.dumps.
_ENCODER = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":"))


class SpecsMixin(StoreCore):
    # -- planning ----------------------------------------------------------------------------------
    def planning_sources(self, lang: str) -> list[tuple[str, str]]:
        """(id, text) of every source in ``lang``, in insertion order."""
        return [(r[0], r[1]) for r in self.query("SELECT id, text FROM sources WHERE lang=? ORDER BY rowid", (lang,))]

    def reference_texts(self, lang: str) -> dict[str, str]:
        """One reference translation in ``lang`` per source that has one (the first translator's)."""
        out: dict[str, str] = {}
        for sid, text in self.query("SELECT source_id, text FROM source_refs WHERE lang=? ORDER BY source_id, translator",
                                    (lang,)):
            out.setdefault(sid, text)
        return out

    def insert_specs(self, specs: Sequence[dict[str, Any]]) -> int:
        """Bulk form of ``add_specs`` for plan (same rows, same INSERT OR IGNORE), in one transaction."""
        now = utcnow()
        enc = _ENCODER.encode
        with self.transaction() as c:
            cur = c.executemany(
                "INSERT OR IGNORE INTO specs(seed, seq, source_id, src_lang, tgt_lang, instruction_lang, n_turns,"
                " interaction_types, params, status, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,'pending',?,?)",
                [(s["seed"], s["seq"], s["source_id"], s["src_lang"], s["tgt_lang"], s["instruction_lang"],
                  s["n_turns"], enc(s["interaction_types"]), enc(s.get("params", {})), now, now) for s in specs])
            added = cur.rowcount
        self.refresh_statistics("specs")  # claims plan on them at once (benchmarks/RESULTS.md, claims)
        return added

    def spec_count_for_seed(self, seed: int) -> int:
        """The seed's planned specs (replays left out)."""
        return int(self.scalar("SELECT COUNT(*) FROM specs WHERE seed=? AND replay_of IS NULL", (seed,)) or 0)

    # -- replays (plan --from-split) ----------------------------------------------------------------
    def specs_of_dialogues(self, dialogue_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """``{dialogue id: its spec}`` for those of ``dialogue_ids`` that have a spec."""
        out: dict[str, dict[str, Any]] = {}
        ids = list(dialogue_ids)
        for start in range(0, len(ids), 500):
            part = ids[start:start + 500]
            for row in self.query(f"SELECT d.id AS dialogue_id, s.* FROM dialogues d JOIN specs s ON s.id=d.spec_id"
                                  f" WHERE d.id IN ({','.join('?' * len(part))})", part):
                spec = dict(row)
                did = spec.pop("dialogue_id")
                spec["interaction_types"] = json.loads(spec["interaction_types"])
                spec["params"] = json.loads(spec["params"])
                out[did] = spec
        return out

    def add_replay_specs(self, specs: Sequence[dict[str, Any]]) -> int:
        """Pending specs that replay the dialogue ``replay_of`` names, one per (dialogue, seed): a
        replay already there is left as it is. They take negative positions of their seed (no
        position of its plan); returns how many were added."""
        now = utcnow()
        enc = _ENCODER.encode
        added = 0
        with self.transaction() as c:
            for s in specs:
                if c.execute("SELECT 1 FROM specs WHERE replay_of=? AND seed=?", (s["replay_of"], s["seed"])).fetchone():
                    continue
                low = c.execute("SELECT MIN(seq) FROM specs WHERE seed=? AND seq < 0", (s["seed"],)).fetchone()[0]
                c.execute(
                    "INSERT INTO specs(seed, seq, source_id, src_lang, tgt_lang, instruction_lang, n_turns,"
                    " interaction_types, params, status, created_at, updated_at, replay_of)"
                    " VALUES (?,?,?,?,?,?,?,?,?,'pending',?,?,?)",
                    (s["seed"], (low or 0) - 1, s["source_id"], s["src_lang"], s["tgt_lang"], s["instruction_lang"],
                     s["n_turns"], enc(s["interaction_types"]), enc(s.get("params", {})), now, now, s["replay_of"]))
                added += 1
        return added

    def reopen_failed_specs(self, reason_prefix: str | None = None) -> int:
        """Failed specs (optionally only those whose reason starts with ``reason_prefix``) back to
        pending, their dialogues back to in progress: a re-run continues from the committed turns."""
        where = "status='failed'"
        params: list[Any] = []
        if reason_prefix:
            where += " AND status_reason LIKE ?"
            params.append(reason_prefix + "%")
        with self.transaction() as c:
            ids = [r[0] for r in c.execute(f"SELECT id FROM specs WHERE {where}", params)]
            stamp = utcnow()
            c.executemany("UPDATE specs SET status='pending', status_reason=NULL, updated_at=? WHERE id=?",
                          [(stamp, i) for i in ids])
            c.executemany("UPDATE dialogues SET status='in_progress', status_reason=NULL, updated_at=?"
                          " WHERE spec_id=? AND origin='simulated'", [(stamp, i) for i in ids])
        return len(ids)

