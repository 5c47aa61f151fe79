"""The LLM request ledger: every call recorded before it is sent, answered when it returns.

A call's key is the hash of what decides its answer (model, messages, parameters, sample index).
Its row goes ``pending`` before the HTTP request leaves, ``done`` with the answer when it returns,
``failed`` when every retry failed (a later run tries it again), or ``batched`` while it waits in
an OpenAI Batch. After ``kill -9`` a ``pending`` row is simply sent again; a ``done`` row is
answered from the ledger and never paid twice.

The writes are on the hot path of a simulate run (two per call): the LLM client batches the writes
of one event-loop turn into one ``ledger_apply`` transaction, and the run's counters (``llm_runs``)
are updated in the same transaction as the answers, so a crash never leaves them disagreeing with
the ledger.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from typing import Any

from itcollect.kernel.errors import StoreError
from itcollect.store.core import StoreCore, inserted_id, utcnow

LEDGER_STATUSES = ("pending", "done", "failed", "batched")

_RUN_COUNTERS = ("sent", "from_ledger", "failed", "prompt_tokens", "completion_tokens", "cost_usd")


_BEGIN_SQL = ("INSERT INTO llm_calls(key, role, model, base_url, request, status, created_at)"
              " VALUES (?,?,?,?,?,'pending',?)"
              " ON CONFLICT(key) DO UPDATE SET status='pending', base_url=excluded.base_url, error=NULL"
              " WHERE llm_calls.status != 'done'")
_DONE_SQL = ("UPDATE llm_calls SET status='done', response=?, finish_reason=?, prompt_tokens=?,"
             " completion_tokens=?, cost_usd=?, latency_ms=?, attempts=attempts+?, error=NULL, answered_at=?"
             " WHERE key=? AND status!='done'")
_FAILED_SQL = "UPDATE llm_calls SET status='failed', error=?, attempts=attempts+? WHERE key=? AND status!='done'"


class LedgerMixin(StoreCore):
    # -- the write path of one call -------------------------------------------------------------
    def _ledger_exec(self, sql: str, params: Any) -> None:
        """One statement in its own transaction (or joining the caller's)."""
        with self.transaction() as c:
            c.execute(sql, params)

    def ledger_lookup(self, key: str) -> dict[str, Any] | None:
        """The ledger row of a call (all columns), or None."""
        try:
            row = self.conn.execute("SELECT * FROM llm_calls WHERE key=?", (key,)).fetchone()
        except sqlite3.Error as exc:
            raise StoreError(f"ledger read failed: {exc}", path=str(self.path)) from None
        return None if row is None else dict(row)

    def ledger_answer(self, key: str) -> dict[str, Any] | None:
        """The stored answer of a ``done`` call (what a repeated call returns); for a call out in
        a Batch API batch, ``{"status": "batched", "batch_id": ...}`` (it must not be sent again);
        else None."""
        try:
            row = self.conn.execute(
                "SELECT status, batch_id, response, finish_reason, model, prompt_tokens, completion_tokens,"
                " latency_ms, cost_usd FROM llm_calls WHERE key=? AND status IN ('done', 'batched')",
                (key,)).fetchone()
        except sqlite3.Error as exc:
            raise StoreError(f"ledger read failed: {exc}", path=str(self.path)) from None
        if row is None:
            return None
        if row["status"] == "batched":
            return {"status": "batched", "batch_id": row["batch_id"]}
        return dict(row)

    def ledger_begin(self, key: str, *, role: str, model: str, base_url: str | None, request_json: str) -> None:
        """Record a call as ``pending`` before it is sent (a failed or pending row goes pending again).

        ``request_json`` is the body sent to the endpoint; it never contains the API key.
        A ``done`` row is left alone: the caller should have answered from it.
        """
        self._ledger_exec(_BEGIN_SQL, (key, role, model, base_url, request_json, utcnow()))

    def ledger_failed(self, key: str, *, error: str, attempts: int, run_id: int | None = None) -> None:
        """Mark a call failed after its retries (a later run sends it again) and count it."""
        self.ledger_apply(failed=[(error, attempts, key)], run_id=run_id, run_deltas={"failed": 1})

    def ledger_apply(self, *, begin: Iterable[tuple] = (), done: Iterable[tuple] = (), failed: Iterable[tuple] = (),
                     run_id: int | None = None, run_deltas: dict[str, float] | None = None) -> None:
        """Several ledger writes in one transaction (the LLM client's group commit).

        ``begin`` rows: (key, role, model, base_url, request_json, created_at) -> pending;
        ``done`` rows: (response, finish_reason, prompt_tokens, completion_tokens, cost_usd, latency_ms,
        attempts, answered_at, key); ``failed`` rows: (error, attempts, key); ``run_deltas`` are added
        to the run's counters in the same transaction.
        """
        begin, done, failed = list(begin), list(done), list(failed)
        deltas = {k: v for k, v in (run_deltas or {}).items() if v}
        bad = set(deltas) - set(_RUN_COUNTERS)
        if bad:
            raise ValueError(f"unknown run counters {sorted(bad)}")
        if not (begin or done or failed or (deltas and run_id is not None)):
            return
        with self.transaction() as c:
            if begin:
                c.executemany(_BEGIN_SQL, begin)
            if done:
                c.executemany(_DONE_SQL, done)
            if failed:
                c.executemany(_FAILED_SQL, [(e[:2000], a, k) for e, a, k in failed])
            if deltas and run_id is not None:
                sets = ", ".join(f"{k}={k}+?" for k in deltas)
                c.execute(f"UPDATE llm_runs SET {sets} WHERE id=?", (*deltas.values(), run_id))

    def ledger_counts(self) -> dict[str, int]:
        counts = dict.fromkeys(LEDGER_STATUSES, 0)
        for status, n in self.query("SELECT status, COUNT(*) FROM llm_calls GROUP BY status"):
            counts[status] = int(n)
        return counts

    def ledger_calls(self, statuses: Iterable[str] | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        """Ledger rows (oldest first), optionally only some statuses."""
        return [dict(r) for r in self.rows_by_status("llm_calls", statuses, order_by="created_at, key", limit=limit)]

    # -- Batch API support ----------------------------------------------------------------------
    def ledger_mark_batched(self, keys: Iterable[str], batch_id: str) -> int:
        """Record calls as submitted in a batch (they are answered later by ``ledger_batch_answer``)."""
        with self.transaction() as c:
            cur = c.executemany("UPDATE llm_calls SET status='batched', batch_id=? WHERE key=? AND status!='done'",
                                [(batch_id, k) for k in keys])
            return cur.rowcount

    def ledger_batch_answer(self, key: str, *, response: str, finish_reason: str | None, prompt_tokens: int,
                            completion_tokens: int, cost_usd: float, run_id: int | None = None) -> bool:
        """Store an answer that arrived in a batch output line; False when the call was already done."""
        with self.transaction() as c:
            cur = c.execute(
                "UPDATE llm_calls SET status='done', response=?, finish_reason=?, prompt_tokens=?,"
                " completion_tokens=?, cost_usd=?, attempts=attempts+1, error=NULL, answered_at=?"
                " WHERE key=? AND status!='done'",
                (response, finish_reason, prompt_tokens, completion_tokens, cost_usd, utcnow(), key))
            if cur.rowcount and run_id is not None:
                c.execute("UPDATE llm_runs SET sent=sent+1, prompt_tokens=prompt_tokens+?,"
                          " completion_tokens=completion_tokens+?, cost_usd=cost_usd+? WHERE id=?",
                          (prompt_tokens, completion_tokens, cost_usd, run_id))
            return bool(cur.rowcount)

    def ledger_batch_failed(self, key: str, *, error: str, run_id: int | None = None) -> None:
        """A batched call that errored or expired: ``failed``, so the next round resubmits it."""
        self.ledger_failed(key, error=error, attempts=1, run_id=run_id)

    def ledger_batched_keys(self, batch_id: str | None = None) -> list[str]:
        if batch_id is None:
            rows = self.query("SELECT key FROM llm_calls WHERE status='batched' ORDER BY key")
        else:
            rows = self.query("SELECT key FROM llm_calls WHERE status='batched' AND batch_id=? ORDER BY key",
                              (batch_id,))
        return [r[0] for r in rows]

    # -- runs -----------------------------------------------------------------------------------
    def start_llm_run(self, command: str) -> int:
        with self.transaction() as c:
            cur = c.execute("INSERT INTO llm_runs(command, started_at) VALUES (?,?)", (command, utcnow()))
            return inserted_id(cur)

    def finish_llm_run(self, run_id: int) -> None:
        self._ledger_exec("UPDATE llm_runs SET finished_at=? WHERE id=?", (utcnow(), run_id))

    def call_totals(self) -> dict[str, Any]:
        """Counts over all runs, and tokens/cost of the answers paid for (each call once)."""
        sent, from_ledger, failed = self.query(
            "SELECT COALESCE(SUM(sent),0), COALESCE(SUM(from_ledger),0), COALESCE(SUM(failed),0) FROM llm_runs")[0]
        pt, ct, cost = self.query(
            "SELECT COALESCE(SUM(prompt_tokens),0), COALESCE(SUM(completion_tokens),0), COALESCE(SUM(cost_usd),0)"
            " FROM llm_calls WHERE status='done'")[0]
        return {"sent": int(sent), "from_ledger": int(from_ledger), "failed": int(failed),
                "prompt_tokens": int(pt), "completion_tokens": int(ct), "cost_usd": round(float(cost), 6)}
