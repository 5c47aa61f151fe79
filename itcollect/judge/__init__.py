"""``itcollect judge``: an LLM judge scores every answer (MQM error spans, compliance, ratings).

:mod:`.schema` (categories, severities, weights, JSON schemas), :mod:`.parse` (tolerant parsing and
the MQM arithmetic), :mod:`.run` (the run), :mod:`.verdict` (what passing the judge means, shared by
filter, stats and review).
"""

from .parse import Judgement, Unparsable, parse_judgement
from .run import JudgeOptions, JudgeSummary, run_judge
from .schema import CATEGORIES, SEVERITIES, TRANSLATION_TYPES, Weights

__all__ = ["run_judge", "JudgeOptions", "JudgeSummary", "parse_judgement", "Judgement", "Unparsable",
           "CATEGORIES", "SEVERITIES", "TRANSLATION_TYPES", "Weights"]
