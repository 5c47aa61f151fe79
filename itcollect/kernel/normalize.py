"""Text normalisation applied to every source sentence before it is hashed or stored.

NFC and whitespace first (so visually identical lines hash the same), then Moses punctuation
normalisation (sacremoses) for the Latin-script languages. Chinese keeps its full-width
punctuation: Moses' rules would turn "，" into "," and damage otherwise clean Chinese text.

Speed: sacremoses runs ~45 ``re.sub`` calls (each with a pattern-cache lookup) on every line
(~130 us). We apply sacremoses' own rule list, precompiled, and skip a line entirely when it holds
none of the characters any rule needs (parentheses, quotes, dashes, NBSP, " :", " ;", " %", "''"),
which is most plain news text. The output is identical to ``MosesPunctNormalizer(lang).normalize``
on whitespace-normalised text (tests/test_langid.py fuzzes this).
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

# Only whitespace that needs changing matches (runs, or a tab/newline/NBSP-like single char), so
# clean text costs one scan instead of one substitution per space.
_SPACE = re.compile(r"\s\s+|[^\S ]")
_CONTROL = re.compile(r"[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f\u200b\ufeff]")
# Every sacremoses punctuation rule except " +" needs one of these to match (see _FastMoses).
_MOSES_TRIGGER = re.compile("[\r()`\"\u201e\u201c\u201d\u2013\u2014\u00b4\u2018\u2019\u201a\u2026\u00ab\u00bb\u00a0]"
                            "| [:;%]|''")


_NEEDS_FIX = re.compile(f"{_CONTROL.pattern}|{_SPACE.pattern}")
# The characters _NEEDS_FIX matches on their own: _CONTROL's and every whitespace character but " "
# (str.isspace). With "  " (the one run of whitespace made of them) that is every way it can match,
# and a scan for one character class runs ~5x faster than the alternation (tests/test_langid.py
# checks every code point).
_FIX_CHAR = re.compile("[\x00-\x1f\x7f\x85\xa0\u1680\u2000-\u200b\u2028\u2029\u202f\u205f\u3000\ufeff]")


def _needs_fix(text: str) -> bool:
    """``_NEEDS_FIX.search(text) is not None``, faster."""
    return _FIX_CHAR.search(text) is not None or "  " in text


def normalize_whitespace(text: str) -> str:
    """Drop control characters and zero-width spaces, collapse runs of whitespace, strip."""
    if not _needs_fix(text):  # one scan for the common, already clean line
        return text.strip()
    return _SPACE.sub(" ", _CONTROL.sub("", text)).strip()


def normalize_whitespace_all(texts: list[str]) -> list[str]:
    """:func:`normalize_whitespace` of each text, with one scan for the common case that none needs
    a change: joined by single spaces, a text that needs one shows a match, or (leading or trailing
    whitespace) two spaces in a row or whitespace at an end of the whole."""
    blob = " ".join(texts)
    if not _needs_fix(blob) and not blob[:1].isspace() and not blob[-1:].isspace():
        return texts
    return [normalize_whitespace(t) for t in texts]


class _FastMoses:
    """sacremoses' punctuation rules, precompiled, with a no-op precheck."""

    def __init__(self, lang: str) -> None:
        from sacremoses import MosesPunctNormalizer

        subs = MosesPunctNormalizer(lang=lang).substitutions
        self.rules = [(re.compile(p), r) for p, r in subs]

    def normalize(self, text: str) -> str:
        # On whitespace-normalised text " +" only replaces one space by one space, and every other
        # rule needs a trigger character: no trigger, nothing would change.
        if _MOSES_TRIGGER.search(text) is None and "  " not in text and text == text.strip():
            return text
        for pattern, repl in self.rules:
            text = pattern.sub(repl, text)
        return text.strip()


@lru_cache(maxsize=8)
def _moses(lang: str) -> _FastMoses:
    return _FastMoses(lang)


def pre_normalize(text: str) -> str:
    """The language-independent part: NFC, control characters, whitespace."""
    if not text.isascii() and not unicodedata.is_normalized("NFC", text):
        text = unicodedata.normalize("NFC", text)
    return normalize_whitespace(text)


def moses_normalize(text: str, lang: str) -> str:
    """Moses punctuation normalisation of pre-normalised text; Chinese is returned unchanged."""
    if lang == "zh" or not text:
        return text
    out = _moses(lang).normalize(text)
    return text if out is text else normalize_whitespace(out)


def normalize_text(text: str, lang: str | None = None, moses: bool = True) -> str:
    """NFC + whitespace, plus Moses punctuation normalisation for non-Chinese text."""
    text = pre_normalize(text)
    if moses and lang and lang != "zh" and text:
        text = normalize_whitespace(_moses(lang).normalize(text))
    return text
