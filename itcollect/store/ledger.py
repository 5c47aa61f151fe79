"""The LLM request ledger: every call recorded before it is sent, answered when it returns."""

from __future__ import annotations

from typing import Any

from .core import StoreCore


class LedgerMixin(StoreCore):
    def call_totals(self) -> dict[str, Any]:
        """Counts over all runs, and tokens/cost of the answers paid for (each call once)."""
        sent, from_ledger, failed = self.query(
            "SELECT COALESCE(SUM(sent),0), COALESCE(SUM(from_ledger),0), COALESCE(SUM(failed),0) FROM llm_runs")[0]
        pt, ct, cost = self.query(
            "SELECT COALESCE(SUM(prompt_tokens),0), COALESCE(SUM(completion_tokens),0), COALESCE(SUM(cost_usd),0)"
            " FROM llm_calls WHERE status='done'")[0]
        return {"sent": int(sent), "from_ledger": int(from_ledger), "failed": int(failed),
                "prompt_tokens": int(pt), "completion_tokens": int(ct), "cost_usd": round(float(cost), 6)}
