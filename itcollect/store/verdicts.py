"""Filter runs and per-dialogue verdicts (nothing is deleted; a new run replaces verdicts)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from .core import StoreCore, loads


class VerdictsMixin(StoreCore):
    def filter_totals(self) -> dict[str, Any]:
        kept = dropped = 0
        reasons: Counter[str] = Counter()
        for row in self.query("SELECT kept, reasons FROM verdicts"):
            if row[0]:
                kept += 1
            else:
                dropped += 1
                reasons.update(set(loads(row[1], [])))
        return {"kept": kept, "dropped": dropped, "reasons": dict(sorted(reasons.items()))}
