"""Errors of the LLM layer; all are ServiceErrors, so the CLI prints one line and exits 1."""

from __future__ import annotations

from itcollect.kernel.errors import ServiceError


class LLMCallError(ServiceError):
    """One call failed after all its retries (or with an error no retry can fix); the reason is in
    the message. The run may go on: the ledger row is 'failed' and a later run tries again."""


class CallInBatch(LLMCallError):
    """The call is out in a Batch API batch (ledger status ``batched``): it is paid for there and
    must not be sent again; ``simulate --batch-api`` collects it, ``--cancel`` frees it."""


class EndpointDown(ServiceError):
    """The endpoint is unusable (circuit breaker open, bad key, unknown model): the run must stop."""


class CostLimitReached(ServiceError):
    """The run's spending reached ``--max-cost``; nothing more is sent. Callers stop gracefully."""
