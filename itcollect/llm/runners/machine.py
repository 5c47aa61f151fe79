"""What an LLM stage tells the shared runners: one item's calls as a small resumable state machine.

A stage (simulate, judge, a comparison) has *items* (a dialogue to play, an answer to judge, a turn
to compare) and, per item, a :class:`Machine` that says which calls the item needs now and how
their answers advance it. The machine keeps no I/O of its own beyond what it records, and its state
is rebuilt from what is committed (turns, judgements) and the request ledger, so the same machine
runs online (:mod:`.online`) and in Batch API rounds (:mod:`.batch_rounds`), and a run killed at
any point continues where it stopped: every answered call is in the ledger and is answered from it
again, for free.

The protocol::

    calls = machine.calls(state)          # what the item needs now; [] = the item is finished
    answers = <each call answered>        # online: LLMClient.chat; batch: the ledger after a round
    machine.apply(state, calls, answers)  # validate, record, advance; then calls() again

``calls`` may return several calls at once (a comparison's N candidate answers, then N judgements):
they are independent of each other and are answered together, online concurrently and in the same
batch round. Steps that need no call (a template's first request) happen inside ``calls``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from itcollect.llm.answers import ChatResult

S = TypeVar("S")
S_contra = TypeVar("S_contra", contravariant=True)


@dataclass(frozen=True)
class Call:
    """One LLM call an item needs: what :meth:`LLMClient.chat` and :meth:`LLMClient.batch_call` take.

    ``params``: request parameters beyond the role's (e.g. ``response_format``); they are part of
    the call's ledger key. ``priority``: online, when every call slot is taken the waiting call with
    the lowest value goes next. ``label``: how a failure of this call is named ("assistant call for
    turn 3"). ``optional``: a call whose failure the item survives (one of several systems down): its
    answer is then a :class:`Failed` instead of a ChatResult. A required call that fails leaves the
    whole item for the next run.
    """

    role: str
    messages: list[dict[str, str]]
    sample: int = 0
    params: Mapping[str, Any] = field(default_factory=dict)
    priority: float = 0.0
    label: str = ""
    optional: bool = False

    def describe(self, message: str) -> str:
        """A failure of this call, named: ``"<label>: <message>"`` (the message alone without a label)."""
        return f"{self.label}: {message}" if self.label else message


@dataclass(frozen=True)
class Failed:
    """The answer of an optional :class:`Call` that failed (after all retries, or its endpoint down)."""

    reason: str


#: What :meth:`Machine.apply` receives for each call, in the order of the calls.
Answer = ChatResult | Failed


class Machine(Protocol[S_contra]):
    """One item's calls. ``S`` is the item's state (the stage's own class)."""

    def calls(self, state: S_contra) -> Sequence[Call]:
        """The calls the item needs now (independent of each other, answered together); an empty
        sequence when the item is finished. Steps without a call are taken here."""
        ...

    def apply(self, state: S_contra, calls: Sequence[Call], answers: Sequence[Answer]) -> None:
        """Advance the item with the ``answers`` to ``calls`` (same order): validate, record, step on."""
        ...


__all__ = ["Call", "Failed", "Answer", "Machine", "S"]
