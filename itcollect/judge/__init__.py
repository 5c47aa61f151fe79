"""``itcollect judge``: an LLM judge scores every answer (MQM error spans, compliance, ratings).

:mod:`.run` is the run: which answers to judge (generations, ``--rejudge``, ``--limit``), online
or in Batch API rounds on the shared runners of :mod:`itcollect.llm.runners`. The judgement itself
lives in the LLM layer, :mod:`itcollect.llm.judgement` (``schema``: categories, severities,
weights, JSON schemas; ``parse``: tolerant parsing and the MQM arithmetic; ``ask``: the prompt of
one answer, its re-ask, its row; ``verdict``: what the judgements say about a dialogue), so the
filter, stats, the review order and a comparison of systems use it without this stage. Importing
the package is cheap; the run is imported when first used.
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
