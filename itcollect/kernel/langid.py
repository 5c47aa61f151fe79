"""Language identification: the one function every stage uses.

The default backend is lingua restricted to the workspace's languages (measured: 48/48 on short
en/zh/de/fr news sentences at ~0.05 ms each, against langdetect's 39/48 at ~2 ms: langdetect calls
short Chinese ``ko`` and "Il a dit non." ``it``). Cheap checks run before any model is asked:

* a script check: text with Han characters and no kana/hangul is Chinese, text without any
  cannot be; this settles the hardest short cases;
* a word check (``fast=True``, the default), in two steps:

  - function words: a line with at least two hits in the unambiguous function words of one
    candidate language and none of the others (or four hits and three times as many as any
    other) is that language;
  - content words, for a line the function words leave open: when every hit among the function
    words and the content words of ``langid_lexicon.tsv.gz`` (words at least 20 times as frequent
    in one of en/de/fr as in the other two, from wordfreq: "students", "Gewerkschaft", "grève")
    is of one candidate language, with at least three hits making up half the line's words or
    more, the line is that language. Headlines, lists and titles have few function words.

  lingua's high-accuracy mode costs ~0.15 ms on a 20-word sentence, ~2.5 CPU-minutes for the
  texts of a 1M-turn import; the word check decides most real lines in a few microseconds
  and hands everything it is unsure about to lingua. Where it decides, it agrees with lingua on
  every sample sentence (tests/test_langid.py) and, on ~230,000 lines of real en/de/fr text (man
  pages, fortune cookies, a manual), on 98.7-99.9% of the lines each step decides; most of the
  rest are lingua's mistakes ("Sauron is alive in Argentina!" is not French, "Demander les
  adresses linklocal IPv6." not English). benchmarks/bench_langid.py measures it.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import regex

DEFAULT_LANGUAGES = ("en", "zh", "de", "fr")

_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_HAN_RUN = re.compile(_HAN.pattern + "+")  # counting runs: far fewer matches than characters
_KANA_HANGUL = re.compile(r"[\u3040-\u30ff\uac00-\ud7af]")
_MN = regex.compile(r"\p{Mn}")
_WORD = re.compile(r"[^\W\d_]+")

# Frequent function words that are (practically) never words of the other candidate languages.
# Deliberately left out: words shared by two of them (in, an, des, a, so, war, man, also, am, on,
# son, du, plus). German "die" is kept: as an English verb it is rare, and one hit never decides.
_FUNCTION_WORDS: dict[str, str] = {}
for _lang, _words in {
    "en": "the of and to is that for it was with as by at from his her they this have has be are were "
          "will would said which their been its not but who after more than had into over about "
          "could should there when what or while these those we our she he them new first last year "
          "years two three million people since against between during under through up out because "
          "may did does being just most other some such only",
    "de": "der die das und den von zu mit sich auf für ist im dem nicht ein eine als auch es werden aus "
          "er hat dass sie nach wird bei einer um sind noch wie einem über einen zum haben nur oder "
          "aber vor zur bis mehr durch sei wurde sagte wir ihre seine können soll diese dieser gegen "
          "vom beim seit neue neuen jahr jahren prozent millionen sollen wollen ihren seinen unter "
          "keine kein wieder sowie zwischen bereits damit",
    "fr": "le la les et un une est que qui dans pour pas au aux sur par ne se ce il elle ont été avec "
          "sa ses leur mais ou sont cette selon après lors nous vous ils elles était "
          "aussi entre sans sous depuis comme fait être avait dont de à en d n qu l également "
          "leurs ces lui très peut deux trois ans millions nouvelle nouveau année",
}.items():
    for _w in _words.split():
        _FUNCTION_WORDS[_w] = _lang


def han_ratio(text: str) -> float:
    """Share of letters that are Han characters (0.0 for text without letters)."""
    letters = sum(map(str.isalpha, text))
    if not letters:
        return 0.0
    return sum(map(len, _HAN_RUN.findall(text))) / letters


def is_chinese_script(text: str) -> bool:
    """The script rule: Han makes up over 30% of the letters and there is no kana or hangul.

    :func:`detect_languages` answers "zh" for exactly these texts (when zh is a candidate) without
    asking any model; ingest uses it to measure such lines in characters instead of words."""
    return _HAN.search(text) is not None and han_ratio(text) > 0.3 and _KANA_HANGUL.search(text) is None


def letter_ratio(text: str) -> float:
    """Share of non-space characters that are letters in any script (combining marks count)."""
    chars = len(text) - sum(map(str.isspace, text))
    if not chars:
        return 0.0
    letters = sum(map(str.isalpha, text))
    if not text.isascii():
        letters += len(_MN.findall(text))  # category Mn is never isalpha()
    return letters / chars


#: The languages of the content-word lexicon, and the file (built by tools/build_langid_lexicon.py).
LEXICON_LANGUAGES = ("en", "de", "fr")
LEXICON_PATH = Path(__file__).with_name("langid_lexicon.tsv.gz")
#: A content-word decision needs this many hits, making up at least half of the line's words.
_LEXICON_MIN_HITS = 3


@lru_cache(maxsize=1)
def _lexicon() -> dict[str, str]:
    """word (case-folded as wordfreq folds it) -> language; read once per process (~60,000 words)."""
    try:
        with gzip.open(LEXICON_PATH, "rt", encoding="utf-8") as f:
            return dict(line.rstrip("\n").split("\t") for line in f if not line.startswith("#"))
    except (OSError, ValueError) as exc:  # a broken install: say so in one line, not a traceback
        from itcollect.kernel.errors import ItcollectError

        raise ItcollectError(f"langid's word list is missing or damaged ({exc}); reinstall itcollect",
                             path=str(LEXICON_PATH)) from exc


def _lexicon_for(non_zh: tuple[str, ...]) -> dict[str, str] | None:
    """The word list when it covers every candidate a model would decide among, else None."""
    return _lexicon() if len(non_zh) > 1 and set(non_zh) <= set(LEXICON_LANGUAGES) else None


def _word_guess(text: str, candidates: tuple[str, ...], lexicon: dict[str, str] | None) -> str | None:
    """The language the words of ``text`` clearly show (function words first, then the content
    words of ``lexicon`` when one is given), or None when unsure."""
    low = text.lower()
    words = _WORD.findall(low)
    counts: dict[str, int] = {}
    get = _FUNCTION_WORDS.get
    for word in words:
        lang = get(word)
        if lang is not None:
            counts[lang] = counts.get(lang, 0) + 1
    if counts:
        best = max(counts, key=counts.__getitem__)
        best_n = counts[best]
        second = max((n for lang, n in counts.items() if lang != best), default=0)
        if best in candidates and ((best_n >= 2 and second == 0) or (best_n >= 4 and best_n >= 3 * second)):
            return best
    if lexicon is None or len(counts) > 1:
        return None
    if "ß" in low:  # wordfreq folds ß to ss
        words = _WORD.findall(low.replace("ß", "ss"))
    lget = lexicon.get
    for word in words:
        lang = lget(word)
        if lang is not None:
            counts[lang] = counts.get(lang, 0) + 1
            if len(counts) > 1:
                return None
    if len(counts) != 1:
        return None
    ((lang, hits),) = counts.items()
    if lang in candidates and hits >= _LEXICON_MIN_HITS and 2 * hits >= len(words):
        return lang
    return None


@lru_cache(maxsize=8)
def _lingua_detector(languages: tuple[str, ...]):
    from lingua import IsoCode639_1, LanguageDetectorBuilder

    langs = [IsoCode639_1.from_str(code) for code in languages]
    # Models loaded up front (~0.2 s for en/zh/de/fr) instead of on the first detection (~0.7 s,
    # lazily): a long-running simulate must not stall its event loop mid-run, and everything that
    # builds a detector goes on to detect anyway.
    builder = LanguageDetectorBuilder.from_iso_codes_639_1(*langs).with_preloaded_language_models()
    return builder.build()


def _non_zh(languages: Sequence[str]) -> tuple[str, ...]:
    """The candidates a model decides among (Chinese is told by its script), in the given order:
    also the detector cache's key, so warm_up builds the detector detect_languages will use."""
    return tuple(lang for lang in languages if lang != "zh")


def warm_up(languages: Sequence[str] = DEFAULT_LANGUAGES, backend: str = "lingua") -> None:
    """Build (and cache) the detector and the word list now: an async stage calls this before its
    first request, so the model loading does not happen between two LLM calls."""
    non_zh = _non_zh(languages)
    if backend == "lingua" and len(non_zh) > 1:
        _lingua_detector(non_zh)
        _lexicon_for(non_zh)  # ~45 ms; before a fork, the workers share it


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


def detect_language(text: str, languages: Sequence[str] = DEFAULT_LANGUAGES, backend: str = "lingua",
                    fast: bool = True) -> str | None:
    """Best guess among ``languages`` for ``text``, or None when it has no letters to judge."""
    return detect_languages([text], languages, backend, fast)[0]


def detect_languages(texts: Sequence[str], languages: Sequence[str] = DEFAULT_LANGUAGES,
                     backend: str = "lingua", fast: bool = True, *, cache: dict[str, str | None] | None = None,
                     parallel: bool = True) -> list[str | None]:
    """Batch form of :func:`detect_language` (lingua detects a batch in parallel in Rust).

    ``fast`` enables the word check for the lingua backend (see the module docstring);
    langdetect is always asked as is, so its results stay comparable.

    ``cache`` (text -> result, owned by the caller and only ever used with the same languages,
    backend and ``fast``): texts found there are not detected again, and new results are added.
    A text's language depends on nothing but the text, so this changes no result; it pays where
    texts repeat, as the requests of imported chats do ("Make it more formal.", "Continue").
    ``parallel=False`` keeps lingua off its thread pool (in a forked worker process).
    """
    if cache is not None:
        todo = [t for t in dict.fromkeys(texts) if t not in cache]
        if todo:
            cache.update(zip(todo, detect_languages(todo, languages, backend, fast, parallel=parallel)))
        return [cache[t] for t in texts]
    langs = tuple(languages)
    non_zh = _non_zh(langs)
    use_words = fast and backend == "lingua" and len(non_zh) > 1
    lexicon = _lexicon_for(non_zh) if use_words else None
    results: list[str | None] = [None] * len(texts)
    pending: list[int] = []
    for i, text in enumerate(texts):
        if _HAN.search(text) is not None:
            if is_chinese_script(text):
                results[i] = "zh" if "zh" in langs else None
                continue
        elif not any(map(str.isalpha, text)):
            continue
        if not non_zh:
            continue
        if use_words:
            guess = _word_guess(text, non_zh, lexicon)
            if guess is not None:
                results[i] = guess
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
    found = detector.detect_languages_in_parallel_of(batch) if parallel and len(batch) > 64 else \
        [detector.detect_language_of(t) for t in batch]
    for i, lang in zip(pending, found):
        results[i] = None if lang is None else _lingua_code(lang)
    return results
