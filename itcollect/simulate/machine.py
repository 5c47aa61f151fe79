"""simulate's machine for the shared runners (:mod:`itcollect.llm.runners`): one dialogue of a spec.

:class:`DialogueMachine` puts :class:`~itcollect.simulate.driver.DialogueDriver` behind the
:class:`~itcollect.llm.runners.machine.Machine` protocol: its state is the dialogue's
:class:`~itcollect.simulate.driver.DialogueState`; ``calls`` takes the steps that need no call (a
template's first request) and returns the one call of the next step (the simulated annotator's
request or the assistant's answer, with its sample number); ``apply`` validates the answer and
commits the turn (or the rejected sample) in one transaction — with the dialogue's end, when it
ends, so the stage can release its claim in the same transaction (``on_end``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from itcollect.llm.answers import ChatResult
from itcollect.llm.runners.machine import Answer, Call
from itcollect.simulate.driver import DialogueDriver, DialogueState, Outcome, Step
from itcollect.store.interfaces import SimulateStore


class DialogueMachine:
    """One dialogue's calls, one at a time (see the module docstring).

    ``write`` false (a dry run): template steps are added to the state but nothing is recorded,
    and :meth:`apply` must not be called. ``on_end(state)``: called inside the transaction that
    records the dialogue's end (done, or failed when a turn's retries ran out)."""

    def __init__(self, store: SimulateStore, driver: DialogueDriver, *, write: bool = True,
                 on_end: Callable[[DialogueState], None] | None = None) -> None:
        self.store = store
        self.driver = driver
        self.write = write
        self.on_end = on_end

    def calls(self, state: DialogueState) -> Sequence[Call]:
        if state.pending is None:
            state.pending = self._next_call_step(state)
        step = state.pending
        if step is None:
            return []
        # who gets a free call slot first: the dialogue with the fewest calls left (the online run
        # reverses the rule once every dialogue has started, see OnlineRun.next_spec)
        return [Call(step.role, step.messages or [], step.sample, priority=2 * state.spec["n_turns"] - step.idx,
                     label=f"{step.role} call for turn {step.turn_no + 1}")]

    def _next_call_step(self, state: DialogueState) -> Step | None:
        """The next step that needs a call; the template steps before it are taken (recorded)."""
        driver = self.driver
        step = driver.next_step(state)
        while step is not None and step.kind == "template":
            outcome = driver.apply(state, step)
            if self.write:
                self._record(state, step, outcome)
            else:
                state.turns.append({"role": "user", "content": outcome.content,
                                    "interaction_type": step.interaction_type, "idx": step.idx})
            step = driver.next_step(state)
        return step

    def apply(self, state: DialogueState, calls: Sequence[Call], answers: Sequence[Answer]) -> None:
        step, state.pending = state.pending, None
        (result,) = answers
        assert step is not None and isinstance(result, ChatResult), "a dialogue's calls are required"
        self._record(state, step, self.driver.apply(state, step, result))

    def _record(self, state: DialogueState, step: Step, outcome: Outcome) -> None:
        with self.store.transaction():
            self.driver.record(self.store, state, step, outcome)
            if state.done and self.on_end is not None:
                self.on_end(state)


__all__ = ["DialogueMachine"]
