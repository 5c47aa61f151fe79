"""itcollect: build interactive-translation instruction-tuning dialogues (BayLing-style)."""

__version__ = "0.1.0"

#: The languages a workspace translates among and writes instructions in.
LANGUAGES = ("en", "zh", "de", "fr")
INSTRUCTION_LANGUAGES = ("en", "zh")
