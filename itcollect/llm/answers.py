"""What an answer is and what a call costs, for every way a call is made.

The online client (:mod:`.client`) and the Batch API transport (:mod:`.batch`) receive the same
``chat.completion`` object (the batch inside an output line) and must judge it by the same rules,
so both use this module and nothing else for them:

* :func:`parse_completion`: no choices or empty content is a failed call (:class:`BadAnswer`),
  never a silent ``None``; usage counts that are not integers are treated as missing;
* :func:`usage_tokens`: usage the server did not report is estimated, the same way everywhere;
* :func:`estimate_call`: the prompt, expected and worst-case completion tokens of a call before it
  is made (dry runs, ``--max-cost`` checks); :func:`rate_limit_tokens`: what the tokens-per-minute
  bucket charges for it;
* :func:`ledger_result`: a ledger row as the answer a repeated call gets.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from itcollect.llm.pricing import Prices, call_cost


@dataclass(slots=True)
class ChatResult:
    """One answer. ``from_ledger``: answered from the store (or shared with an identical call in
    flight), nothing paid. ``finish_reason`` 'length' is returned as is: the caller judges it."""

    text: str
    finish_reason: str
    model: str
    call_key: str
    prompt_tokens: int
    completion_tokens: int
    latency_ms: float
    cost_usd: float
    from_ledger: bool
    attempts: int = 0


def ledger_result(key: str, row: Mapping[str, Any]) -> ChatResult:
    """The stored answer of a ``done`` ledger row: what a repeated call returns, at no cost."""
    return ChatResult(row["response"] or "", row["finish_reason"] or "stop", row["model"], key,
                      int(row["prompt_tokens"] or 0), int(row["completion_tokens"] or 0),
                      float(row["latency_ms"] or 0.0), 0.0, True, 0)


class BadAnswer(Exception):
    """A 200 response that is not a usable answer (empty, no choices, malformed)."""


@dataclass(slots=True)
class Completion:
    """The parts of a ``chat.completion`` itcollect uses. Token counts are None when the server
    did not report them as integers (see :func:`usage_tokens`)."""

    text: str
    finish_reason: str
    model: str | None
    prompt_tokens: int | None
    completion_tokens: int | None


def token_count(value: Any) -> int | None:
    """A reported token count, or None when it is missing or not an integer."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def parse_completion(data: Any) -> Completion:
    """A decoded ``chat.completion`` object -> its answer; raises :class:`BadAnswer` with the
    reason when there is no usable answer."""
    if not isinstance(data, dict):
        raise BadAnswer(f"response is a JSON {type(data).__name__}, not an object")
    choices = data.get("choices")
    if not choices or not isinstance(choices, list) or not isinstance(choices[0], dict):
        raise BadAnswer("response without choices")
    choice = choices[0]
    message = choice.get("message")
    text = message.get("content") if isinstance(message, dict) else None
    if not isinstance(text, str) or not text.strip():
        raise BadAnswer("empty answer")
    usage = data.get("usage")
    pt = ct = None
    if isinstance(usage, dict):
        pt, ct = token_count(usage.get("prompt_tokens")), token_count(usage.get("completion_tokens"))
    model = data.get("model")
    return Completion(text, choice.get("finish_reason") or "stop", model if isinstance(model, str) and model else None,
                      pt, ct)


def estimate_tokens(text: str) -> int:
    """A cheap token estimate (about 3.5 characters a token for Latin text, 1 per CJK character
    being close enough at a 3-character average) for rate limits and dry runs."""
    return len(text) // 3 + 1


def messages_tokens(messages: list[dict]) -> int:
    """The estimated prompt tokens of a call's messages."""
    total = 0
    for m in messages:
        content = m.get("content")
        total += 4 + estimate_tokens(content if isinstance(content, str) else json.dumps(content))
    return total


def usage_tokens(answer: Completion, messages: list[dict]) -> tuple[int, int]:
    """(prompt, completion) tokens of an answer: as reported, else estimated."""
    pt = answer.prompt_tokens if answer.prompt_tokens is not None else messages_tokens(messages)
    ct = answer.completion_tokens if answer.completion_tokens is not None else estimate_tokens(answer.text)
    return int(pt), int(ct)


def rate_limit_tokens(body: Mapping[str, Any]) -> int:
    """What the tokens-per-minute bucket charges for a call before it is sent: its prompt
    estimate plus the most its answer may use (``max_tokens``, else 256). The difference to the
    real usage is given back (or charged) when the answer arrives."""
    return messages_tokens(body["messages"]) + int(body.get("max_tokens") or 256)


@dataclass(frozen=True, slots=True)
class CallEstimate:
    """What a call will probably use before it is made: its prompt tokens, the completion tokens
    to expect (about the length of the last message: a translation or a request is about as long
    as what it answers) and the most it may use (the body's ``max_tokens``)."""

    prompt_tokens: int
    completion_tokens: int
    max_completion_tokens: int

    def cost(self, price: Prices, *, batch: bool = False) -> float:
        return call_cost(price, self.prompt_tokens, self.completion_tokens, batch=batch)

    def max_cost(self, price: Prices, *, batch: bool = False) -> float:
        """The worst case: every answer at ``max_tokens`` (what ``--max-cost`` checks against)."""
        return call_cost(price, self.prompt_tokens, self.max_completion_tokens, batch=batch)


def estimate_call(body: Mapping[str, Any]) -> CallEstimate:
    """The estimate of one ``/v1/chat/completions`` body (see :class:`CallEstimate`)."""
    messages = body.get("messages") or []
    pt = messages_tokens(messages)
    last = messages[-1].get("content") if messages else ""
    guess = int(estimate_tokens(last if isinstance(last, str) else "") * 1.2) + 16
    ct_max = int(body.get("max_tokens") or guess)
    return CallEstimate(pt, min(ct_max, guess), ct_max)
