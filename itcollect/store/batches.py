"""OpenAI Batch API bookkeeping: batches, their items, and the ledger rows they carry.

A batch is recorded (with its items, and its calls marked ``batched`` in the ledger) in one
transaction *before* anything is uploaded, so a crash at any later point finds the record and
resumes it instead of submitting the same calls again. Local lifecycle (``batches.status``):

``recorded`` → ``uploading`` → ``uploaded`` → ``creating`` → ``submitted`` → ``collected``

``uploading`` / ``creating`` mean "the request may have reached the server": a resume looks the
file up by name, or the batch up by its metadata, before it sends anything again. The remote
status, request counts and errors live in ``detail``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from itcollect.store.core import StoreCore, dumps, loads, utcnow

BATCH_STATUSES = ("recorded", "uploading", "uploaded", "creating", "submitted", "collected")
#: Local statuses of a batch whose calls are still out (not yet collected).
BATCH_OPEN = BATCH_STATUSES[:-1]


def _batch_row(row: Any) -> dict[str, Any]:
    b = dict(row)
    b["detail"] = loads(b.get("detail"), {})
    return b


class BatchesMixin(StoreCore):
    def record_batch(self, batch_id: str, round_no: int, calls: Iterable[Mapping[str, Any]],
                     detail: Mapping[str, Any] | None = None) -> int:
        """Record a batch, its items, and mark its calls ``batched`` in the ledger, atomically.

        ``calls``: dicts with key, role, model, base_url, request (the exact JSON body). The ledger
        rows go through LedgerMixin (``ledger_begin`` + ``ledger_mark_batched``) inside this
        transaction. A call already in the ledger (pending or failed) is re-pointed at this batch;
        one answered (``done``) or in another open batch is refused, so it is never paid twice.
        """
        calls = list(calls)
        now = utcnow()
        with self.transaction() as c:
            for call in calls:
                row = c.execute("SELECT status, batch_id FROM llm_calls WHERE key=?", (call["key"],)).fetchone()
                if row is not None and row["status"] == "done":
                    raise ValueError(f"call {call['key']} is already answered")
                if row is not None and row["status"] == "batched" and row["batch_id"] != batch_id:
                    raise ValueError(f"call {call['key']} is already in batch {row['batch_id']}")
            c.execute("INSERT INTO batches(id, remote_id, round, status, n_requests, detail, created_at, updated_at)"
                      " VALUES (?,?,?,?,?,?,?,?)",
                      (batch_id, None, round_no, "recorded", len(calls), dumps(dict(detail or {})), now, now))
            c.executemany("INSERT INTO batch_items(batch_id, call_key, status) VALUES (?,?,'submitted')",
                          [(batch_id, call["key"]) for call in calls])
            for call in calls:
                request = call["request"] if isinstance(call["request"], str) else dumps(call["request"])
                self.ledger_begin(call["key"], role=call["role"], model=call["model"],  # type: ignore[attr-defined]
                                  base_url=call.get("base_url"), request_json=request)
            self.ledger_mark_batched([call["key"] for call in calls], batch_id)  # type: ignore[attr-defined]
        return len(calls)

    def get_batch(self, batch_id: str) -> dict[str, Any] | None:
        row = self.conn.execute("SELECT * FROM batches WHERE id=?", (batch_id,)).fetchone()
        return None if row is None else _batch_row(row)

    def list_batches(self, statuses: Iterable[str] | None = None) -> list[dict[str, Any]]:
        return [_batch_row(r) for r in self.rows_by_status("batches", statuses, order_by="round, created_at, id")]

    def open_batches(self) -> list[dict[str, Any]]:
        """Batches whose calls are still out: recorded, uploading, ..., submitted."""
        return self.list_batches(BATCH_OPEN)

    def update_batch(self, batch_id: str, *, detail: Mapping[str, Any] | None = None, **fields: Any) -> None:
        """Set columns (status, remote_id, *_file_id) and merge ``detail`` keys, in one write."""
        allowed = {"status", "remote_id", "input_file_id", "output_file_id", "error_file_id"}
        bad = set(fields) - allowed
        if bad:
            raise ValueError(f"cannot update batch fields {sorted(bad)}")
        if "status" in fields and fields["status"] not in BATCH_STATUSES:
            raise ValueError(f"unknown batch status {fields['status']!r}")
        with self.transaction() as c:
            if detail:
                row = c.execute("SELECT detail FROM batches WHERE id=?", (batch_id,)).fetchone()
                merged = {**loads(row["detail"] if row else None, {}), **detail}
                fields = {**fields, "detail": dumps(merged)}
            sets = "".join(f"{k}=?, " for k in fields)
            c.execute(f"UPDATE batches SET {sets}updated_at=? WHERE id=?", (*fields.values(), utcnow(), batch_id))

    def batch_requests(self, batch_id: str) -> list[tuple[str, str]]:
        """(call key, JSON request body) of every item, in a stable order: the input file's lines."""
        return [(r[0], r[1]) for r in self.query(
            "SELECT i.call_key, c.request FROM batch_items i JOIN llm_calls c ON c.key = i.call_key"
            " WHERE i.batch_id=? ORDER BY i.rowid", (batch_id,))]

    def batch_item_statuses(self, batch_id: str) -> dict[str, str]:
        return {r[0]: r[1] for r in self.query(
            "SELECT call_key, status FROM batch_items WHERE batch_id=?", (batch_id,))}

    def set_batch_items(self, batch_id: str, statuses: Mapping[str, str]) -> None:
        with self.transaction() as c:
            c.executemany("UPDATE batch_items SET status=? WHERE batch_id=? AND call_key=?",
                          [(s, batch_id, k) for k, s in statuses.items()])

    def batch_failure_counts(self, keys: Iterable[str] | None = None) -> dict[str, int]:
        """How many batches each call has failed in (for ``[batch] max_attempts``)."""
        if keys is not None:
            return {k: int(self.scalar("SELECT COUNT(*) FROM batch_items WHERE call_key=? AND status='failed'",
                                       (k,)) or 0) for k in keys}
        rows = self.query("SELECT call_key, COUNT(*) FROM batch_items WHERE status='failed' GROUP BY call_key")
        return {r[0]: int(r[1]) for r in rows}

    def next_batch_round(self) -> int:
        v = self.scalar("SELECT MAX(round) FROM batches")
        return 1 if v is None else int(v) + 1

    def batched_call_keys(self) -> set[str]:
        """Calls in a batch that is still out: neither batch mode nor online mode sends them again."""
        return {r[0] for r in self.query("SELECT key FROM llm_calls WHERE status='batched'")}

    def call_status(self, key: str) -> str | None:
        return self.scalar("SELECT status FROM llm_calls WHERE key=?", (key,))

    def batch_totals(self) -> dict[str, Any]:
        """For stats and ``--status``: batches by local status, calls still out."""
        by_status = dict.fromkeys(BATCH_STATUSES, 0)
        for status, n in self.query("SELECT status, COUNT(*) FROM batches GROUP BY status"):
            by_status[status] = int(n)
        items = {r[0]: int(r[1]) for r in self.query("SELECT status, COUNT(*) FROM batch_items GROUP BY status")}
        return {"total": sum(by_status.values()), "in_flight": sum(by_status[s] for s in BATCH_OPEN),
                "by_status": by_status, "items": items,
                "calls_batched": int(self.scalar("SELECT COUNT(*) FROM llm_calls WHERE status='batched'") or 0)}

    def batch_stats(self) -> dict[str, Any]:
        """The ``batch`` section of ``stats``: batches, those in flight, answers and their cost
        (batch-priced; already included in ``calls``)."""
        totals = self.batch_totals()
        answered = int(self.scalar("SELECT COUNT(*) FROM batch_items WHERE status='done'") or 0)
        failed = int(self.scalar("SELECT COUNT(*) FROM batch_items WHERE status='failed'") or 0)
        cost = 0.0
        for (detail,) in self.query("SELECT detail FROM batches WHERE status='collected'"):
            cost += float(loads(detail, {}).get("cost_usd", 0.0))
        return {"batches": totals["total"], "in_flight": totals["in_flight"],
                "calls_batched": totals["calls_batched"], "answered": answered, "failed": failed,
                "cost_usd": round(cost, 6)}
