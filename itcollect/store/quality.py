"""What the annotator figures (:mod:`itcollect.stats.quality`) read: human dialogues, their turns and the
action log, each in one streamed query (plain tuples; the figures are computed in Python)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from itcollect.store.core import StoreCore, loads

HUMAN_DIALOGUE_FIELDS = ("id", "spec_id", "copy", "annotator", "status", "review_status", "flagged", "source_text",
                         "src_lang", "tgt_lang", "meta", "early_finish")
HUMAN_TURN_FIELDS = ("id", "dialogue_id", "idx", "role", "state", "author", "annotator", "content",
                     "original_content", "interaction_type", "lang", "params", "created_at")
EVENT_FIELDS = ("annotator", "dialogue_id", "action", "turn_id", "detail", "created_at")


class QualityMixin(StoreCore):
    def human_dialogue_rows(self) -> list[dict[str, Any]]:
        """Every human dialogue (any status), with its spec's number of copies (``copies``)."""
        cols = ", ".join(f"d.{c}" for c in HUMAN_DIALOGUE_FIELDS)
        out = []
        for r in self.stream(f"SELECT {cols}, COALESCE(s.copies, 1) FROM dialogues d LEFT JOIN specs s"
                             " ON s.id = d.spec_id WHERE d.origin = 'human' ORDER BY d.rowid"):
            d = dict(zip(HUMAN_DIALOGUE_FIELDS, r))
            d["meta"] = loads(d["meta"], {})
            d["copies"] = int(r[-1])
            out.append(d)
        return out

    def human_turn_rows(self) -> Iterator[dict[str, Any]]:
        """Every turn (any state) of every human dialogue, by dialogue and position."""
        cols = ", ".join(f"t.{c}" for c in HUMAN_TURN_FIELDS)
        for r in self.stream(f"SELECT {cols} FROM turns t JOIN dialogues d ON d.id = t.dialogue_id"
                             " WHERE d.origin = 'human' ORDER BY t.dialogue_id, t.idx, t.id"):
            t = dict(zip(HUMAN_TURN_FIELDS, r))
            t["params"] = loads(t["params"], {})
            yield t

    def action_log(self) -> Iterator[dict[str, Any]]:
        """The whole action log, in order (``detail`` decoded)."""
        for r in self.stream(f"SELECT {', '.join(EVENT_FIELDS)} FROM session_events ORDER BY id"):
            e = dict(zip(EVENT_FIELDS, r))
            e["detail"] = loads(e["detail"], {})
            yield e

    def dialogue_judge_scores(self, dialogue_ids: list[str]) -> dict[str, float]:
        """The mean current judge score (MQM, of its judged translation answers that are active) of
        each finished dialogue that has one."""
        if not dialogue_ids:
            return {}
        judged = self.current_judgements(dialogue_ids=dialogue_ids)  # type: ignore[attr-defined]
        active = {r[0] for r in self.query(
            f"SELECT id FROM turns WHERE dialogue_id IN ({','.join('?' * len(dialogue_ids))}) AND state = 'active'",
            dialogue_ids)}
        values: dict[str, list[float]] = {}
        for tid, j in judged.items():
            if tid in active and j["status"] == "judged" and j["score"] is not None:
                values.setdefault(j["dialogue_id"], []).append(float(j["score"]))
        return {did: sum(v) / len(v) for did, v in values.items()}


__all__ = ["QualityMixin"]
