"""Language identification: the one function every stage uses.

The default backend is lingua restricted to the workspace's languages (measured: 48/48 on short
en/zh/de/fr news sentences at ~0.05 ms each, against langdetect's 39/48 at ~2 ms: langdetect calls
short Chinese ``ko`` and "Il a dit non." ``it``). A script check runs first: text with Han
characters and no kana/hangul is Chinese, text without any cannot be, which settles the hardest
short cases before any model is asked.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from functools import lru_cache

DEFAULT_LANGUAGES = ("en", "zh", "de", "fr")

_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_KANA_HANGUL = re.compile(r"[\u3040-\u30ff\uac00-\ud7af]")


def han_ratio(text: str) -> float:
    """Share of letters that are Han characters (0.0 for text without letters)."""
    letters = sum(1 for ch in text if ch.isalpha())
    if not letters:
        return 0.0
    return len(_HAN.findall(text)) / letters


def letter_ratio(text: str) -> float:
    """Share of non-space characters that are letters in any script."""
    chars = [ch for ch in text if not ch.isspace()]
    if not chars:
        return 0.0
    return sum(1 for ch in chars if ch.isalpha() or unicodedata.category(ch) == "Mn") / len(chars)


@lru_cache(maxsize=8)
def _lingua_detector(languages: tuple[str, ...]):
    from lingua import IsoCode639_1, LanguageDetectorBuilder

    langs = [IsoCode639_1.from_str(code) for code in languages]
    builder = LanguageDetectorBuilder.from_iso_codes_639_1(*langs)
    return builder.build()


def _lingua_code(lang) -> str:
    return lang.iso_code_639_1.name.lower()


def _langdetect_best(text: str, languages: tuple[str, ...]) -> str | None:
    from langdetect import DetectorFactory, detect_langs
    from langdetect.lang_detect_exception import LangDetectException

    DetectorFactory.seed = 0  # langdetect is randomised; a fixed seed makes it deterministic
    try:
        guesses = detect_langs(text)
    except LangDetectException:
        return None
    for guess in guesses:
        code = "zh" if guess.lang.startswith("zh") else guess.lang
        if code in languages:
            return code
    return None


def detect_language(text: str, languages: Sequence[str] = DEFAULT_LANGUAGES, backend: str = "lingua") -> str | None:
    """Best guess among ``languages`` for ``text``, or None when it has no letters to judge."""
    return detect_languages([text], languages, backend)[0]


def detect_languages(texts: Sequence[str], languages: Sequence[str] = DEFAULT_LANGUAGES,
                     backend: str = "lingua") -> list[str | None]:
    """Batch form of :func:`detect_language` (lingua detects a batch in parallel in Rust)."""
    langs = tuple(languages)
    non_zh = tuple(lang for lang in langs if lang != "zh")
    results: list[str | None] = [None] * len(texts)
    pending: list[int] = []
    for i, text in enumerate(texts):
        if not any(ch.isalpha() for ch in text):
            continue
        ratio = han_ratio(text)
        if ratio > 0.3 and not _KANA_HANGUL.search(text):
            results[i] = "zh" if "zh" in langs else None
            continue
        if not non_zh:
            continue
        pending.append(i)
    if not pending:
        return results
    if len(non_zh) == 1:
        for i in pending:
            results[i] = non_zh[0]
        return results
    if backend == "langdetect":
        for i in pending:
            results[i] = _langdetect_best(texts[i], non_zh)
        return results
    detector = _lingua_detector(non_zh)
    batch = [texts[i] for i in pending]
    found = detector.detect_languages_in_parallel_of(batch) if len(batch) > 64 else \
        [detector.detect_language_of(t) for t in batch]
    for i, lang in zip(pending, found):
        results[i] = None if lang is None else _lingua_code(lang)
    return results
