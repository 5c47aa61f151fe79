"""Filter and deduplicate finished dialogues (``itcollect filter``); verdicts go to the store."""

from .rules import DialogueView, Thresholds, check_dialogue
from .run import FilterResult, run_filter

__all__ = ["run_filter", "FilterResult", "Thresholds", "DialogueView", "check_dialogue"]
