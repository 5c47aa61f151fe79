"""Shared checks on requests and answers: simulate validates with them, filter scores with them,
and the human session warns with them, so the three stages can never disagree about what
"wrong language" or "copies the source" means.

Every ``check_*`` function returns a list of failure reasons (empty = passed). A reason is
``"code"`` or ``"code: detail"``; :func:`reason_code` gives the stable code that statistics count.
The helpers without the ``check_`` prefix return plain numbers or booleans for callers that want
their own thresholds.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence

from itcollect.kernel.langid import DEFAULT_LANGUAGES, detect_language, han_ratio

LANG_NAMES = {"en": "English", "zh": "Chinese", "de": "German", "fr": "French"}
LANG_NAMES_ZH = {"en": "英文", "zh": "中文", "de": "德文", "fr": "法文"}

_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_WORD = re.compile(r"[^\W_]+(?:['’\-][^\W_]+)*")
_LATIN_WORD = re.compile(r"[A-Za-z0-9\u00c0-\u024f]+(?:['’\-][A-Za-z0-9\u00c0-\u024f]+)*")
# Quoted spans: a request in Chinese quoting an English phrase (or the other way round) is judged
# by the language it is written in, not by what it quotes.
_QUOTED = re.compile(r"“[^”]*”|\"[^\"]*\"|「[^」]*」|『[^』]*』|‘[^’]*’|«[^»]*»|„[^“”]*[“”]|(?<!\w)'[^']+'(?!\w)")
_NON_ALNUM = re.compile(r"[\W_]+")
# the ASCII characters ``_NON_ALNUM`` removes (all but letters and digits), for the ASCII fast path
_ASCII_NON_ALNUM = bytes(i for i in range(128) if not chr(i).isalnum())
_FINAL_STOP = ("。", ".", "！", "!", "；", ";")

_STOPWORDS = {
    "en": set("""a an the and or but if of to in on at by for with from as is are was were be been being
        it its this that these those he she they we you i his her their our your them him us me not no
        so than then there here which who whom what when where why how all any some more most very can
        could would should will shall may might must do does did has have had into over under about
        after before also just only said says say""".split()),
    "de": set("""der die das den dem des ein eine einen einem einer eines und oder aber wenn von zu im in
        am an auf mit für aus als ist sind war waren sein wird werden wurde wurden es sie er wir ihr ich
        du nicht kein keine so dass daß auch nur noch bei nach vor über unter um wie was wer hat haben
        hatte sich dieser diese dieses sagte""".split()),
    "fr": set("""le la les l un une des du de d et ou mais si à au aux en dans par pour sur sous avec
        sans est sont était étaient être a ont avait il elle ils elles nous vous je tu on ne pas plus que
        qui quoi ce cet cette ces son sa ses leur leurs se s qu aussi comme été dit""".split()),
}

# Phrases an answer opens with, and markers that make a text a request (per instruction language).
_ANSWER_OPENERS = {
    "en": ("sure", "certainly", "of course", "here is", "here's", "here are", "absolutely", "i chose",
           "the translation", "translation:", "as an ai"),
    "zh": ("好的", "当然", "以下是", "这是", "译文：", "译文:", "翻译：", "翻译:", "没问题", "我选择"),
}
_REQUEST_MARKERS = {
    "en": ("?", "please", "could you", "can you", "would you", "translate", "make", "rewrite", "use ",
           "give", "explain", "why", "what", "how", "now", "shorten", "expand", "change", "replace",
           "try", "let's", "polish", "fix", "correct", "keep", "say it", "put it", "render", "turn",
           "summar", "tell me", "i'd like", "i would like", "i want", "instead", "don't", "do not",
           "should", "back into", "compare", "write", "avoid", "simplify", "add", "remove", "comment",
           "rephrase", "adjust", "limit", "reduce", "cut", "think", "need"),
    "zh": ("？", "?", "请", "吗", "能不能", "能否", "可以", "帮我", "把", "改", "换", "用", "译", "为什么", "怎么",
           "如何", "什么", "再", "一下", "缩", "扩", "润色", "解释", "说明", "总结", "评价", "谈谈", "说说", "修正",
           "纠正", "不要", "别", "应该", "希望", "写", "控制", "保留", "比较", "看法", "呢", "吧"),
}


def reason_code(reason: str) -> str:
    """The stable code of a reason (``"wrong_language: de != en"`` -> ``"wrong_language"``)."""
    return reason.split(":", 1)[0].strip()


def lang_name(lang: str) -> str:
    return LANG_NAMES.get(lang, lang)


def lang_label(lang: str) -> str:
    """A language as a screen names it: its English name, and for Chinese its own name beside it
    ("Chinese (中文)"), so readers of either instruction language know it at once."""
    name = lang_name(lang)
    return f"{name} ({LANG_NAMES_ZH[lang]})" if lang == "zh" else name


# -- text measures -------------------------------------------------------------------------------
def normalize_for_compare(text: str) -> str:
    """Case-, width- and punctuation-insensitive form used to decide whether two texts are "the same".

    Letters and digits only, NFKC, casefolded. ASCII text takes a fast path with the same result
    (NFKC and casefold are the identity and ``lower()`` there; ``bytes.translate`` drops the rest
    at a third of the regex's cost): the filter runs this on every answer of the corpus."""
    if text.isascii():
        return text.encode("ascii").translate(None, _ASCII_NON_ALNUM).decode("ascii").lower()
    return _NON_ALNUM.sub("", unicodedata.normalize("NFKC", text).casefold())


def words(text: str) -> list[str]:
    """Word tokens (Unicode letters/digits, keeping inner apostrophes and hyphens)."""
    return _WORD.findall(text)


def text_length(text: str, lang: str) -> int:
    """Length in the unit a length request uses: characters for Chinese, words otherwise.

    A Chinese count is the Han characters plus one per embedded Latin word or number, which is how
    a reader counts "二十个字".
    """
    if lang == "zh":
        return len(_HAN.findall(text)) + len(_LATIN_WORD.findall(text))
    return len(words(text))


def length_unit(lang: str) -> str:
    return "characters" if lang == "zh" else "words"


def _ngrams(s: str, n: int) -> set[str]:
    if len(s) < n:
        return {s} if s else set()
    return {s[i:i + n] for i in range(len(s) - n + 1)}


def char_ngrams(text: str, n: int = 3) -> set[str]:
    """Character n-grams of the compare form (a text shorter than ``n`` is its own single gram)."""
    return _ngrams(normalize_for_compare(text), n)


def char_overlap(a: str, b: str, n: int = 3) -> float:
    """Jaccard similarity of character n-grams (script-agnostic: works for Chinese too)."""
    ga, gb = char_ngrams(a, n), char_ngrams(b, n)
    if not ga and not gb:
        return 1.0
    if not ga or not gb:
        return 0.0
    return len(ga & gb) / len(ga | gb)


def content_words(text: str, lang: str | None = None) -> set[str]:
    """Content-bearing units: lower-cased non-stopwords of 3+ letters, and Han bigrams for Chinese."""
    out: set[str] = set()
    han = "".join(_HAN.findall(text))
    if han:
        out |= {han[i:i + 2] for i in range(len(han) - 1)} if len(han) > 1 else {han}
    stop: set[str] = set()
    for s in _STOPWORDS.values():
        stop |= s
    for w in _LATIN_WORD.findall(text):
        lw = w.casefold()
        if (len(lw) >= 3 or lw.isdigit()) and lw not in stop:
            out.add(lw)
    return out


def strip_quoted(text: str) -> str:
    """The text with quoted spans removed (what it is written in, not what it quotes)."""
    return _QUOTED.sub(" ", text)


def contains_term(text: str, term: str) -> bool:
    """Verbatim (case-insensitive, whitespace-tolerant) occurrence of ``term`` in ``text``."""
    t = re.sub(r"\s+", " ", term.strip()).casefold()
    if not t:
        return True
    return t in re.sub(r"\s+", " ", text).casefold()


# -- checks returning reasons ---------------------------------------------------------------------
def check_empty(text: str | None) -> list[str]:
    if text is None or not text.strip():
        return ["empty"]
    if not any(ch.isalnum() for ch in text):
        return ["empty: no letters or digits"]
    return []


def detect(text: str, languages: Sequence[str] = DEFAULT_LANGUAGES, backend: str = "lingua") -> str | None:
    """Language of ``text`` among ``languages`` (None when there is nothing to judge)."""
    return detect_language(text, languages, backend)


def check_language(text: str, expected: str, *, languages: Sequence[str] = DEFAULT_LANGUAGES,
                   backend: str = "lingua", ignore_quoted: bool = False) -> list[str]:
    """The text is written in ``expected``.

    ``ignore_quoted`` judges the text without its quoted spans (requests and explanations quote the
    other language). Chinese counts when a fair share of the letters are Han characters even if
    Latin-script names and terms are mixed in.
    """
    probe = strip_quoted(text) if ignore_quoted else text
    if ignore_quoted and not any(ch.isalpha() for ch in probe):
        probe = text
    langs = tuple(languages) if expected in languages else (*languages, expected)
    if expected == "zh":
        return [] if han_ratio(probe) >= 0.2 or (_HAN.search(probe) and len(_LATIN_WORD.findall(probe)) <= 3) \
            else [f"wrong_language: {detect(probe, langs, backend) or 'unknown'} != zh"]
    if _HAN.search(probe) and han_ratio(probe) > 0.3:
        return [f"wrong_language: zh != {expected}"]
    got = detect(probe, langs, backend)
    if got is None or got == expected:
        return []
    return [f"wrong_language: {got} != {expected}"]


def contains_language(text: str, lang: str, *, languages: Sequence[str] = DEFAULT_LANGUAGES,
                      backend: str = "lingua") -> bool:
    """Some line or sentence of ``text`` is in ``lang`` (mixed answers such as back-translations)."""
    if lang == "zh":
        return bool(_HAN.search(text))
    for seg in re.split(r"[\n。！？!?；：，]|(?<=[.;:])\s+|[“”\"«»「」]", text):
        # Chinese remarks around a Latin-script back-translation ("回译：The council ...") are cut
        # away, so the Latin part is judged on its own.
        latin = _HAN.sub(" ", seg)
        for probe in (latin, strip_quoted(latin)):
            if len(words(probe)) >= 3 and detect(probe, languages, backend) == lang:
                return True
    return False


def copies_source(answer: str, source: str, threshold: float = 0.9) -> bool:
    """The answer is the source again: equal after normalisation, or a Jaccard similarity of
    their character trigrams (:func:`char_overlap`) of at least ``threshold``.

    The filter runs this on every translation of the corpus, so it is exact but lazy: an upper
    bound of the similarity, from character sets alone (C speed), rules most answers out before
    any trigram is built. A shared trigram starts at a position of the source whose character the
    answer has too, so there are at most as many as such positions; and a text has at least as many
    distinct trigrams as distinct characters less 2 (each character but the last two starts one),
    which bounds the union from below. An answer in another script shares next to no characters
    and is done. The bound is compared with the same float division as the definition, so the
    verdict never differs (``tests/test_checks.py`` drives both over generated texts and
    thresholds); it is a bound on distinct trigrams, not on length, so a repeated "ha ha ... ha" is
    still judged right. Past it, the sizes of the two trigram sets rule the rest out when they can.
    Trigrams are tuples of characters, built in C: the same sets as the substrings."""
    a, s = normalize_for_compare(answer), normalize_for_compare(source)
    if not a or not s:
        return False
    if a == s:
        return True
    chars_a, chars_s = set(a), set(s)
    union_at_least = max(len(chars_a), len(chars_s)) - 2
    if union_at_least > 0 and len(s) >= 3:
        shared_at_most = min(len(s) - 2, sum(map(s.count, chars_a & chars_s)))
        if shared_at_most / union_at_least < threshold:
            return False
    ga, gs = _trigrams(a), _trigrams(s)
    small, large = (len(ga), len(gs)) if len(ga) <= len(gs) else (len(gs), len(ga))
    if small / large < threshold:
        return False
    return len(ga & gs) / len(ga | gs) >= threshold


def _trigrams(s: str) -> set[tuple[str, ...]]:
    """The character trigrams of a compare form as tuples (a text shorter than 3 is its own gram)."""
    return set(zip(s, s[1:], s[2:])) if len(s) >= 3 else {(s,)}


def check_not_copy(answer: str, source: str, threshold: float = 0.9) -> list[str]:
    return ["copies_source"] if copies_source(answer, source, threshold) else []


def looks_like_answer(text: str, lang: str) -> bool:
    """Opens the way an assistant's answer does ("Sure, here is…", "好的，以下是…")."""
    head = text.strip().casefold()[:40]
    openers = _ANSWER_OPENERS.get(lang, ()) + _ANSWER_OPENERS["en"]
    return any(head.startswith(o) for o in openers)


def looks_like_request(text: str, lang: str) -> bool:
    """Reads as something a user asks (a question, an imperative, a wish), not as an answer."""
    if looks_like_answer(text, lang):
        return False
    low = text.casefold()
    # A request written in another language than planned is still a request ("Now translate it into
    # German please." on a spec planned in Chinese): wrong_language says the rest, as answer openers
    # are looked for in English too.
    markers = _REQUEST_MARKERS.get(lang, ()) + _REQUEST_MARKERS["en"]
    return any(m in low for m in markers)


def check_request_form(text: str, lang: str, *, max_length: int = 120) -> list[str]:
    """A request: not an answer, has a request marker, and not a whole essay."""
    reasons = []
    if looks_like_answer(text, lang):
        reasons.append("not_a_request: reads like an answer")
    elif not looks_like_request(text, lang):
        reasons.append("not_a_request: no question or instruction")
    n = text_length(strip_quoted(text), lang)
    if n > max_length:
        reasons.append(f"request_too_long: {n} {length_unit(lang)}")
    return reasons


def check_must_include(answer: str, terms: Iterable[str]) -> list[str]:
    missing = [t for t in terms if not contains_term(answer, t)]
    return [f"missing_terms: {', '.join(missing)}"] if missing else []


def check_headline(text: str, lang: str, *, max_length: int | None = None) -> list[str]:
    """Headline form: one line, short, no final full stop."""
    reasons = []
    t = text.strip()
    limit = max_length or (30 if lang == "zh" else 16)
    if "\n" in t:
        reasons.append("not_headline: more than one line")
    if t.endswith(_FINAL_STOP) and not t.endswith("..."):
        reasons.append("not_headline: ends with a full stop")
    n = text_length(t, lang)
    if n > limit:
        reasons.append(f"not_headline: {n} {length_unit(lang)} > {limit}")
    return reasons


def check_length_bounds(text: str, lang: str, *, max_n: int | None = None, min_n: int | None = None) -> list[str]:
    """Length in words (en/de/fr) or characters (zh) within the bounds."""
    n = text_length(text, lang)
    unit = length_unit(lang)
    if max_n is not None and n > max_n:
        return [f"too_long: {n} {unit} > {max_n}"]
    if min_n is not None and n < min_n:
        return [f"too_short: {n} {unit} < {min_n}"]
    return []


def check_shorter(text: str, previous: str, lang: str, ratio: float = 0.95) -> list[str]:
    a, b = text_length(text, lang), text_length(previous, lang)
    return [] if b == 0 or a <= b * ratio else [f"not_shorter: {a} vs {b} {length_unit(lang)}"]


def check_longer(text: str, previous: str, lang: str, ratio: float = 1.05) -> list[str]:
    a, b = text_length(text, lang), text_length(previous, lang)
    return [] if a >= b * ratio else [f"not_longer: {a} vs {b} {length_unit(lang)}"]


def check_changed(text: str, previous: str | None) -> list[str]:
    """A revision must differ from what it revises."""
    if previous and normalize_for_compare(text) == normalize_for_compare(previous):
        return ["unchanged: same as the previous answer"]
    return []


def check_overlap_kept(text: str, previous: str | None, min_overlap: float = 0.25) -> list[str]:
    """A local edit (one term changed) keeps most of the previous answer."""
    if not previous:
        return []
    ov = char_overlap(text, previous)
    return [] if ov >= min_overlap else [f"rewritten: overlap with the previous answer {ov:.2f} < {min_overlap}"]


def check_names_word(text: str, word: str | None) -> list[str]:
    """An explanation names the word it explains."""
    if not word:
        return []
    return [] if contains_term(text, word) else [f"missing_word: {word}"]


def check_on_topic(text: str, *refs: str | None, min_shared: int = 1) -> list[str]:
    """Shares content words with the source or a translation of it (a follow-up stays on the news)."""
    mine = content_words(text)
    theirs: set[str] = set()
    for r in refs:
        if r:
            theirs |= content_words(r)
    if not theirs:
        return []
    shared = len(mine & theirs)
    return [] if shared >= min_shared else ["off_topic: no content words shared with the source or translation"]


__all__ = [
    "LANG_NAMES", "LANG_NAMES_ZH", "reason_code", "lang_name", "lang_label", "normalize_for_compare", "words", "text_length",
    "length_unit", "char_ngrams", "char_overlap", "content_words", "strip_quoted", "contains_term", "detect",
    "contains_language", "copies_source", "looks_like_answer", "looks_like_request", "check_empty",
    "check_language", "check_not_copy", "check_request_form", "check_must_include", "check_headline",
    "check_length_bounds", "check_shorter", "check_longer", "check_changed", "check_overlap_kept",
    "check_names_word", "check_on_topic",
]
