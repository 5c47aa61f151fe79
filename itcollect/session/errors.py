"""The session engine's errors, and the rule of finishing a dialogue before its planned turns
(issue 24 item 3: the engine decides, a front-end only asks): each front-end catches
:class:`CommandError` (nothing changed) and, for :class:`EarlyFinish`, asks the annotator to
confirm with the count and a reason, then finishes again with that reason."""

from __future__ import annotations

from typing import Any

from itcollect.kernel.errors import ItcollectError


class CommandError(ItcollectError):
    """An action that does not fit the dialogue's state (the UI shows it; nothing changed)."""


class AnswerFailed(ItcollectError):
    """The model could not answer (endpoint down, call failed): the request is kept, retry later."""


class ControlRevealed(CommandError):
    """``finish`` met an undecided control item: accepting it was a miss (recorded); the model's
    real answer now waits for a decision, so the dialogue is not finished yet."""


class EarlyFinish(CommandError):
    """``finish`` without a reason before the planned turns: ``done`` of ``planned`` turns."""

    def __init__(self, done: int, planned: int) -> None:
        self.done, self.planned = done, planned
        super().__init__(f"{done} of {planned} planned turns: to finish early, finish with a reason "
                         f"(it is recorded), or write the next request")


def early_finish(done: int, planned: int, reason: str | None) -> dict[str, Any]:
    """What a finish after ``done`` of ``planned`` turns records: ``{}`` when the plan is met, else
    ``{"early": REASON, "done": .., "planned": ..}``; :class:`EarlyFinish` when early without a reason."""
    if done >= planned:
        return {}
    if not (reason or "").strip():
        raise EarlyFinish(done, planned)
    return {"early": (reason or "").strip(), "done": done, "planned": planned}


__all__ = ["AnswerFailed", "CommandError", "ControlRevealed", "EarlyFinish", "early_finish"]
