"""Prices per model (config ``[prices]``: USD per 1M tokens) and the cost of a call."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

Prices = tuple[float, float, float, float]


def price_for(prices: Mapping[str, Sequence[float]], model: str) -> Prices:
    """``(input, output, batch_input, batch_output)`` USD per 1M tokens for ``model``.

    Exact name first, then the longest configured name the model starts with followed by ``-``
    (``gpt-4o-mini-2024-07-18`` is priced as ``gpt-4o-mini``), also after a ``provider/`` prefix.
    Two-element entries get batch prices of half the normal ones (the OpenAI Batch discount).
    A model not listed costs 0 (local servers).
    """
    names = [model]
    if "/" in model:
        names.append(model.rsplit("/", 1)[1])
    entry: Sequence[float] | None = None
    for name in names:
        if name in prices:
            entry = prices[name]
            break
    if entry is None:
        best = ""
        for name in names:
            for cand in prices:
                if name.startswith(cand + "-") and len(cand) > len(best):
                    best = cand
        if best:
            entry = prices[best]
    if entry is None:
        return (0.0, 0.0, 0.0, 0.0)
    inp, out = float(entry[0]), float(entry[1])
    if len(entry) >= 4:
        return (inp, out, float(entry[2]), float(entry[3]))
    return (inp, out, inp / 2, out / 2)


def call_cost(price: Prices, prompt_tokens: int, completion_tokens: int, *, batch: bool = False) -> float:
    """USD for one call's usage."""
    if batch:
        return (prompt_tokens * price[2] + completion_tokens * price[3]) / 1e6
    return (prompt_tokens * price[0] + completion_tokens * price[1]) / 1e6
