"""``itcollect judge``: an LLM judge scores every answer (MQM error spans, compliance, ratings).

:mod:`.schema` (categories, severities, weights, JSON schemas), :mod:`.parse` (tolerant parsing and
the MQM arithmetic), :mod:`.run` (the run), :mod:`.verdict` (what the judgements say about a
dialogue: shared by the filter's judge rules, ``stats`` and the review order). Importing the
package is cheap (filter workers read :mod:`.verdict`); the run is imported when first used.
"""

from __future__ import annotations

from typing import Any

from itcollect.llm.judgement.parse import Judgement, Unparsable, parse_judgement
from itcollect.llm.judgement.schema import CATEGORIES, SEVERITIES, TRANSLATION_TYPES, Weights

_RUN = ("run_judge", "JudgeOptions", "JudgeSummary")


def __getattr__(name: str) -> Any:
    if name in _RUN:
        from itcollect.judge import run

        return getattr(run, name)
    raise AttributeError(name)


__all__ = ["run_judge", "JudgeOptions", "JudgeSummary", "parse_judgement", "Judgement", "Unparsable",
           "CATEGORIES", "SEVERITIES", "TRANSLATION_TYPES", "Weights"]
