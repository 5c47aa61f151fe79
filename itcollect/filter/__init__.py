"""Filter and deduplicate finished dialogues (``itcollect filter``); verdicts go to the store."""

from itcollect.filter.rules import DialogueView, Thresholds, build_rules, check_dialogue, thresholds
from itcollect.filter.run import FilterResult, run_filter

__all__ = ["run_filter", "FilterResult", "Thresholds", "thresholds", "DialogueView", "build_rules", "check_dialogue"]
