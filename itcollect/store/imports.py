"""Import bookkeeping and the bulk writer behind ``itcollect import``.

A batch of parsed dialogues is written in one transaction: a dialogue and all of its turns go in
together or not at all, and the dialogue id is a content hash, so re-importing a file is a no-op.
"""

from __future__ import annotations

from typing import Any

from itcollect.store.core import StoreCore, dumps, inserted_id, utcnow

#: The columns an imported dialogue / turn row fills, in :func:`import_rows` order; the rest are
#: constants of the INSERT (origin, status, author, timestamps) or their defaults.
_DIALOGUE_COLS = ("id", "annotator", "source_id", "source_text", "src_lang", "tgt_lang", "instruction_lang",
                  "origin_file", "origin_line", "meta")
_TURN_COLS = ("dialogue_id", "idx", "role", "content", "model", "lang", "detected_lang", "interaction_type",
              "finish_reason")

ImportRows = tuple[tuple[Any, ...], list[tuple[Any, ...]]]


def import_rows(d: dict[str, Any], turns: list[dict[str, Any]]) -> ImportRows:
    """(dialogue row, turn rows) of one imported dialogue for :meth:`ImportsMixin.import_dialogue_rows`.

    A plain function of its arguments, so the importer's worker processes build the rows and only
    these tuples travel back to the process that writes."""
    did = d["id"]
    return ((did, d.get("annotator"), d.get("source_id"), d.get("source_text"), d.get("src_lang"), d.get("tgt_lang"),
             d.get("instruction_lang"), d.get("origin_file"), d.get("origin_line"), dumps(d.get("meta") or {})),
            [(did, i, t["role"], t["content"], t.get("model"), t.get("lang"), t.get("lang") or "",
              t.get("interaction_type"), t.get("finish_reason")) for i, t in enumerate(turns)])


class ImportsMixin(StoreCore):
    def start_import_run(self, path: str, fmt: str) -> int:
        with self.transaction() as c:
            cur = c.execute("INSERT INTO import_runs(path, format, started_at) VALUES (?,?,?)",
                            (path, fmt, utcnow()))
            return inserted_id(cur)

    def import_dialogues(self, items: list[tuple[dict[str, Any], list[dict[str, Any]]]]) -> tuple[int, int]:
        """Insert (dialogue, turns) pairs; an id already stored (or earlier in ``items``) is skipped
        whole. Returns (imported, duplicates). Dialogues are created with status 'done'."""
        return self.import_dialogue_rows([import_rows(d, turns) for d, turns in items])

    def import_dialogue_rows(self, rows: list[ImportRows]) -> tuple[int, int]:
        """:meth:`import_dialogues` of rows made by :func:`import_rows`, in one transaction.

        The ids already stored are looked up in one query and the rest go in with two
        ``executemany`` (the transaction holds the write lock from its start, so nothing can come in
        between)."""
        now = utcnow()  # an ISO timestamp: safe as a literal, saves a tuple per row
        ids = [r[0][0] for r in rows]
        with self.transaction() as c:
            seen = {r[0] for r in c.execute(f"SELECT id FROM dialogues WHERE id IN ({','.join('?' * len(ids))})",
                                            ids)} if ids else set()
            new = []
            turn_rows: list[tuple[Any, ...]] = []
            for d, turns in rows:
                if d[0] in seen:
                    continue
                seen.add(d[0])
                new.append(d)
                turn_rows += turns
            c.executemany(f"INSERT INTO dialogues({','.join(_DIALOGUE_COLS)}, origin, status, created_at, updated_at)"
                          f" VALUES ({','.join('?' * len(_DIALOGUE_COLS))}, 'imported', 'done', '{now}', '{now}')",
                          new)
            c.executemany(f"INSERT INTO turns({','.join(_TURN_COLS)}, author, created_at)"
                          f" VALUES ({','.join('?' * len(_TURN_COLS))}, 'imported', '{now}')", turn_rows)
        return len(new), len(rows) - len(new)

    def finish_import_run(self, run_id: int, *, records: int, imported: int, duplicates: int,
                          bad: dict[str, int]) -> None:
        with self.transaction() as c:
            c.execute("UPDATE import_runs SET finished_at=?, records=?, imported=?, duplicates=? WHERE id=?",
                      (utcnow(), records, imported, duplicates, run_id))
            c.executemany("INSERT INTO import_bad(run_id, reason, count) VALUES (?,?,?)"
                          " ON CONFLICT(run_id, reason) DO UPDATE SET count=excluded.count",
                          [(run_id, r, n) for r, n in bad.items() if n])

    def import_totals(self) -> dict[str, Any]:
        """Sums over all import runs: records read, imported, duplicates, bad records by reason."""
        rec, imp, dup, runs = self.query(
            "SELECT COALESCE(SUM(records),0), COALESCE(SUM(imported),0), COALESCE(SUM(duplicates),0), COUNT(*)"
            " FROM import_runs")[0]
        bad = {r[0]: int(r[1]) for r in self.query(
            "SELECT reason, SUM(count) FROM import_bad GROUP BY reason ORDER BY reason")}
        return {"runs": int(runs), "records": int(rec), "imported": int(imp), "duplicates": int(dup), "bad": bad}
