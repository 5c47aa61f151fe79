"""``simulate``: an LLM plays the annotator, another (or the same) answers as the assistant.

* :mod:`.driver`: the dialogue of one spec as a resumable state machine (:class:`DialogueDriver`),
  shared by both modes;
* :mod:`.machine`: that dialogue as the machine the shared runners of :mod:`itcollect.llm.runners` drive;
* :mod:`.online`: the online run (:func:`run_simulation`), many dialogues at once over the LLM client;
* :mod:`.batch_rounds`: the Batch API mode (:func:`run_batch_simulation`), dialogues advanced in
  rounds over the batch transport of :mod:`itcollect.llm.batch`;
* :mod:`.estimate`: ``--dry-run``, the whole remaining run estimated the same way in both modes;
* :mod:`.summary`: the options and the one summary shape both modes report (``--json``).
"""

from __future__ import annotations

from itcollect.llm.runners.online import CALL_FAILED, PARKED, TAKEN_OVER
from itcollect.simulate.batch_rounds import run_batch_simulation, simulate_batch_status
from itcollect.simulate.driver import VALIDATION, DialogueDriver, DialogueState, Outcome, Step, clean_request
from itcollect.simulate.machine import DialogueMachine
from itcollect.simulate.online import OnlineRun, run_simulation
from itcollect.simulate.summary import BatchSummary, SimulateOptions, SimulateSummary

__all__ = ["DialogueDriver", "DialogueMachine", "DialogueState", "Step", "Outcome", "SimulateOptions", "SimulateSummary", "BatchSummary",
           "OnlineRun", "run_simulation", "run_batch_simulation", "simulate_batch_status", "clean_request",
           "CALL_FAILED", "TAKEN_OVER", "PARKED", "VALIDATION"]
