"""Text normalisation applied to every source sentence before it is hashed or stored.

NFC and whitespace first (so visually identical lines hash the same), then Moses punctuation
normalisation (sacremoses) for the Latin-script languages. Chinese keeps its full-width
punctuation: Moses' rules would turn "，" into "," and damage otherwise clean Chinese text.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

_SPACE = re.compile(r"\s+")
_CONTROL = re.compile(r"[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f\u200b\ufeff]")


def normalize_whitespace(text: str) -> str:
    return _SPACE.sub(" ", _CONTROL.sub("", text)).strip()


@lru_cache(maxsize=8)
def _moses(lang: str):
    from sacremoses import MosesPunctNormalizer

    return MosesPunctNormalizer(lang=lang)


def normalize_text(text: str, lang: str | None = None, moses: bool = True) -> str:
    """NFC + whitespace, plus Moses punctuation normalisation for non-Chinese text."""
    text = normalize_whitespace(unicodedata.normalize("NFC", text))
    if moses and lang and lang != "zh" and text:
        text = normalize_whitespace(_moses(lang).normalize(text))
    return text
