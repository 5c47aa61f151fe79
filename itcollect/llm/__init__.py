"""The LLM layer: one async client over the official ``openai`` SDK, with the request ledger,
and beside it the Batch API transport (:mod:`.batch`) for the same calls at batch prices; both
judge answers and estimate calls with :mod:`.answers`.

Importing this package is cheap: ``openai`` is imported when the first ``LLMClient`` is built,
so CLI help and modules that only catch the errors stay fast.
"""

from __future__ import annotations

from itcollect.llm.answers import ChatResult, estimate_tokens
from itcollect.llm.client import CALL_KEY_HEADER, DEFAULT_ROLES, ROLES, LLMClient, parse_retry_after
from itcollect.llm.endpoints import Endpoint, EndpointFlags, resolve_endpoints, resolve_systems, system_role
from itcollect.llm.errors import CallInBatch, CostLimitReached, EndpointDown, LLMCallError
from itcollect.llm.pricing import call_cost, price_for

__all__ = ["LLMClient", "ChatResult", "LLMCallError", "CallInBatch", "EndpointDown", "CostLimitReached", "ROLES",
           "DEFAULT_ROLES", "CALL_KEY_HEADER", "price_for", "call_cost", "estimate_tokens", "parse_retry_after",
           "Endpoint", "EndpointFlags", "resolve_endpoints", "resolve_systems", "system_role"]
