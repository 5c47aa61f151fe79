"""What a ``simulate`` run is asked to do, and what it did, in either mode.

Both modes report through one summary class, so ``simulate --json`` has one shape: the keys
:data:`SHARED_KEYS` in both modes, plus :data:`BATCH_KEYS` in Batch API mode. ``parked`` is one
concept in both: a dialogue whose next call is out in a Batch API batch, left to the batch run
that collects it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from itcollect.llm.batch import CollectReport


@dataclass
class SimulateOptions:
    limit: int | None = None
    concurrency: int | None = None
    base_url: str | None = None
    model: str | None = None
    annotator_base_url: str | None = None
    annotator_model: str | None = None
    max_cost: float | None = None
    dry_run: bool = False
    lease_s: float | None = None  # default: [simulate] lease_s
    claim_batch: int | None = None
    #: ``--compare A,B[,...]``: the systems every turn compares (empty: a plain run)
    compare: tuple[str, ...] = ()
    judge_model: str | None = None
    judge_base_url: str | None = None


#: ``--json`` keys of both modes. ``estimate`` is the ``--dry-run`` estimate of the whole remaining
#: run (None otherwise); a dry run also prints it as ``dry_run``, the key online dry runs always had.
SHARED_KEYS = ("done", "failed", "parked", "call_errors", "taken_over", "failures", "stopped", "calls", "estimate")
#: ``--json`` keys of the Batch API mode only.
BATCH_KEYS = ("rounds", "submitted", "answered", "failed_calls", "stragglers", "waiting", "cost_usd", "status",
              "cancelled")


@dataclass
class SimulateSummary:
    """What one ``simulate`` invocation did (or, for ``--dry-run``, would do).

    Dialogues: ``done`` / ``failed`` (with ``failures``: reason code -> count) in this run;
    ``parked`` (next call out in a batch); ``call_errors`` (online: a call failed after its retries,
    left pending for the next run); ``taken_over`` (online: another process took the spec over
    while this one stalled past its lease). ``calls``: the run's LLM call counters.
    ``stopped``: why the run stopped early (``stop_kind`` "endpoint": exit 1, "cost": the budget).
    ``compare`` (``--compare`` only, ``--json`` key ``compare``): the turns compared, void and tied.
    """

    done: int = 0
    failed: int = 0
    parked: int = 0
    call_errors: int = 0
    taken_over: int = 0
    stopped: str | None = None
    stop_kind: str | None = None
    calls: dict[str, Any] = field(default_factory=dict)
    estimate: dict[str, Any] | None = None
    failures: dict[str, int] = field(default_factory=dict)
    #: ``--compare``: the compared turns (:class:`itcollect.simulate.compare.CompareCounts`); None otherwise
    compare: Any = None

    def count_failure(self, code: str) -> None:
        self.failures[code] = self.failures.get(code, 0) + 1

    def json_keys(self) -> tuple[str, ...]:
        return SHARED_KEYS

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` object: the same keys for every run of a mode."""
        out = {k: getattr(self, k) for k in self.json_keys()}
        if self.estimate is not None:
            out["dry_run"] = self.estimate
        if self.compare is not None:  # --compare only: turns compared, void, ties
            out["compare"] = self.compare.to_json()
        return out


@dataclass
class BatchSummary(SimulateSummary):
    """A ``simulate --batch-api`` run: also its rounds, the calls it submitted, the answers it
    collected (``answered``) and those that came back without one (``failed_calls``), the
    dialogues left to online simulate (``stragglers``), the calls still out (``waiting``), its
    cost at batch prices; ``status`` for ``--status``, ``cancelled`` (batches) for ``--cancel``."""

    rounds: int = 0
    submitted: int = 0
    answered: int = 0
    failed_calls: int = 0
    stragglers: int = 0
    waiting: int = 0
    cost_usd: float = 0.0
    status: dict[str, Any] | None = None
    cancelled: int | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def __post_init__(self) -> None:
        self.add_collected(())

    def json_keys(self) -> tuple[str, ...]:
        return SHARED_KEYS + BATCH_KEYS

    def add_collected(self, reports: Iterable[CollectReport]) -> None:
        """Count what collecting batches wrote into the ledger; ``calls`` (the counters online
        runs report) are the answers collected (``sent``), the calls without one, tokens, cost."""
        for rep in reports:
            self.answered += rep.answered
            self.failed_calls += rep.failed
            self.cost_usd += rep.cost_usd
            self.prompt_tokens += rep.prompt_tokens
            self.completion_tokens += rep.completion_tokens
        self.calls = {"sent": self.answered, "failed": self.failed_calls, "prompt_tokens": self.prompt_tokens,
                      "completion_tokens": self.completion_tokens,
                      "tokens": self.prompt_tokens + self.completion_tokens, "cost_usd": round(self.cost_usd, 6)}
