"""Import bookkeeping and the bulk writer behind ``itcollect import``.

A batch of parsed dialogues is written in one transaction: a dialogue and all of its turns go in
together or not at all, and the dialogue id is a content hash, so re-importing a file is a no-op.
"""

from __future__ import annotations

from typing import Any

from .core import StoreCore, dumps, utcnow

_DIALOGUE_COLS = ("id", "origin", "annotator", "source_id", "source_text", "src_lang", "tgt_lang",
                  "instruction_lang", "status", "origin_file", "origin_line", "meta", "created_at", "updated_at")
_TURN_COLS = ("dialogue_id", "idx", "role", "content", "author", "model", "lang", "detected_lang",
              "interaction_type", "finish_reason", "created_at")


class ImportsMixin(StoreCore):
    def start_import_run(self, path: str, fmt: str) -> int:
        with self.transaction() as c:
            cur = c.execute("INSERT INTO import_runs(path, format, started_at) VALUES (?,?,?)",
                            (path, fmt, utcnow()))
            return int(cur.lastrowid)

    def import_dialogues(self, items: list[tuple[dict[str, Any], list[dict[str, Any]]]]) -> tuple[int, int]:
        """Insert (dialogue, turns) pairs; an id already stored is skipped whole.

        Returns (imported, duplicates). Dialogues are created with status 'done'.
        """
        imported = dup = 0
        now = utcnow()
        with self.transaction() as c:
            for d, turns in items:
                row = (d["id"], "imported", d.get("annotator"), d.get("source_id"), d.get("source_text"),
                       d.get("src_lang"), d.get("tgt_lang"), d.get("instruction_lang"), "done",
                       d.get("origin_file"), d.get("origin_line"), dumps(d.get("meta") or {}), now, now)
                cur = c.execute(f"INSERT OR IGNORE INTO dialogues({','.join(_DIALOGUE_COLS)})"
                                f" VALUES ({','.join('?' * len(_DIALOGUE_COLS))})", row)
                if cur.rowcount != 1:
                    dup += 1
                    continue
                imported += 1
                c.executemany(
                    f"INSERT INTO turns({','.join(_TURN_COLS)}) VALUES ({','.join('?' * len(_TURN_COLS))})",
                    [(d["id"], i, t["role"], t["content"], "imported",
                      t.get("model"), t.get("lang"), t.get("lang") or "", t.get("interaction_type"),
                      t.get("finish_reason"), now) for i, t in enumerate(turns)])
        return imported, dup

    def finish_import_run(self, run_id: int, *, records: int, imported: int, duplicates: int,
                          bad: dict[str, int]) -> None:
        with self.transaction() as c:
            c.execute("UPDATE import_runs SET finished_at=?, records=?, imported=?, duplicates=? WHERE id=?",
                      (utcnow(), records, imported, duplicates, run_id))
            c.executemany("INSERT OR REPLACE INTO import_bad(run_id, reason, count) VALUES (?,?,?)",
                          [(run_id, r, n) for r, n in bad.items() if n])

    def import_totals(self) -> dict[str, Any]:
        """Sums over all import runs: records read, imported, duplicates, bad records by reason."""
        rec, imp, dup, runs = self.query(
            "SELECT COALESCE(SUM(records),0), COALESCE(SUM(imported),0), COALESCE(SUM(duplicates),0), COUNT(*)"
            " FROM import_runs")[0]
        bad = {r[0]: int(r[1]) for r in self.query(
            "SELECT reason, SUM(count) FROM import_bad GROUP BY reason ORDER BY reason")}
        return {"runs": int(runs), "records": int(rec), "imported": int(imp), "duplicates": int(dup), "bad": bad}
