"""The interaction taxonomy: what a user asks for in each turn, and how to tell an answer complied.

One registry (:data:`INTERACTION_TYPES`) serves plan (which types exist), the prompts (one annotator
template per type), simulate (validation of each turn), the filter (scoring) and the human session
(warnings). Every check is built on :mod:`itcollect.kernel.checks`.

Answer language of a type: ``target`` (a translation or a revision of it), ``instruction`` (the
user's own language: explanations, opinions) or ``mixed`` (a back-translation in the source language
with remarks around it).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from itcollect.kernel import checks as C
from itcollect.kernel.langid import DEFAULT_LANGUAGES

#: Registers a ``style`` turn can ask for.
STYLE_REGISTERS = ("formal", "casual", "headline", "plain", "children")
#: ``length`` turn modes: shorter / longer than the previous answer, or at most N words/characters.
LENGTH_MODES = ("shorter", "longer", "max")
FOLLOW_UP_KINDS = ("opinion", "summary", "question", "background")
EXPLAIN_KINDS = ("choice", "meaning")

#: How requests in en/zh/de/fr name each language (lower case; the Latin names also match their
#: inflected forms: "Deutsche", "Englischen", "anglaise"). One list for every use:
#: :func:`mentions_language` and :func:`requested_language`.
_LANG_MENTIONS = {
    "en": ("english", "englisch", "anglais", "英文", "英语", "英語"),
    "zh": ("chinese", "mandarin", "chinesisch", "chinois", "中文", "汉语", "漢語", "华语"),
    "de": ("german", "deutsch", "allemand", "德文", "德语", "德語"),
    "fr": ("french", "französisch", "franzosisch", "français", "francais", "法文", "法语", "法語"),
}
_QUOTE_SPANS = re.compile(r"“([^”]{1,60})”|\"([^\"]{1,60})\"|「([^」]{1,60})」|‘([^’]{1,60})’|«\s?([^»]{1,60}?)\s?»"
                          r"|„([^“”]{1,60})[“”]|(?<!\w)'([^']{1,60})'(?!\w)")


@dataclass
class CheckContext:
    """Everything a check may need about the dialogue at the turn being checked.

    ``tgt_lang`` is the target in force for this answer (after a retarget: the new one);
    ``previous_answer`` is the last assistant answer before this turn; ``request`` the user turn
    being answered; ``params`` the turn's planned parameters (register, bound, new language...).
    """

    source: str
    src_lang: str
    tgt_lang: str
    instruction_lang: str
    request: str = ""
    previous_answer: str | None = None
    previous_translation: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    must_include: Sequence[str] = ()
    languages: Sequence[str] = DEFAULT_LANGUAGES
    backend: str = "lingua"


def quoted_terms(text: str) -> list[str]:
    """Terms the user quotes in a request ("use 'housing bill'", "把“上涨”换成…")."""
    out = []
    for m in _QUOTE_SPANS.finditer(text):
        term = next(g for g in m.groups() if g is not None).strip()
        if term and term not in out:
            out.append(term)
    return out


def mentions_language(text: str, lang: str) -> bool:
    low = text.casefold()
    return any(m in low for m in _LANG_MENTIONS.get(lang, (lang,)))


def _name_pattern() -> str:
    names = sorted((n for ns in _LANG_MENTIONS.values() for n in ns), key=len, reverse=True)
    # Latin names with their German/French endings (ins Deutsche, anglaise), but not "Germany"
    return "|".join(re.escape(n) + (r"(?:e[nrs]?)?(?!\w)" if n[0].isascii() else "") for n in names)


_NAME = _name_pattern()
_ADJ = (r"(?:(?:the|simplified|traditional|standard|plain|proper|fluent|natural|formal|informal|modern|good|"
        r"idiomatic|british|american|written|colloquial|mainland)\s+){0,2}")
# Markers that can only introduce the language a text is to be put into.
_TARGET_MARKERS = [re.compile(p, re.IGNORECASE) for p in (
    rf"\binto\s+{_ADJ}(?P<l>{_NAME})",
    rf"(?:翻译|翻譯|译|譯|翻|改写|改|换|換|变|變|写|寫|转换|转|轉)\s*(?:成|为|為|作|到)\s*[\u4e00-\u9fff]{{0,6}}?(?P<l>{_NAME})",
    r"[英中汉漢德法]译(?P<l>[英中汉漢德法])",
    rf"\bins\s+(?P<l>{_NAME})",
    rf"\bin\s+die\s+(?P<l>{_NAME})\s+sprache",
    rf"\bvers\s+(?:l['’]\s*|le\s+)(?P<l>{_NAME})",
)]
# Markers that also describe the language a text is in ("a sentence in English", "une phrase en
# anglais", "ein Satz auf Deutsch"): a target only when it is not the source's language.
_MAYBE_TARGET_MARKERS = [re.compile(p, re.IGNORECASE) for p in (
    rf"\b(?:to|in)\s+{_ADJ}(?P<l>{_NAME})",
    rf"\b(?:en|auf)\s+(?:langue\s+)?(?P<l>{_NAME})",
    rf"用\s*(?P<l>{_NAME})",
    rf"(?P<l>{_NAME})\s*(?:怎么说|怎么讲|怎麼說|译文|譯文)",
    rf"\b(?P<l>{_NAME})\s+(?:translation|version|equivalent|übersetzung|fassung)",
    rf"\btraduction\s+(?:en\s+)?(?P<l>{_NAME})",
)]
_SHORT_NAMES = {"英": "en", "中": "zh", "汉": "zh", "漢": "zh", "德": "de", "法": "fr"}


def _language_of_name(name: str) -> str | None:
    low = name.casefold()
    if low in _SHORT_NAMES:
        return _SHORT_NAMES[low]
    for lang, names in _LANG_MENTIONS.items():
        if any(low.startswith(n) for n in names):
            return lang
    return None


def requested_language(text: str, languages: Sequence[str] = DEFAULT_LANGUAGES,
                       source_lang: str | None = None) -> str | None:
    """The language a request asks its answer to be in, or None when it names none.

    ``text`` is the request's own words (without the source sentence and quoted spans: the source
    may well say "to German reporters"). The language after a marker of direction counts (into,
    翻译成/译为, 中译英, ins, vers l'...), the first one in the text; failing that, the first after a
    marker that may also describe the source (to, in, 用, en, auf, "German translation") that is not
    ``source_lang``: "translate this English sentence into German" asks for German, "voici une
    phrase en anglais, traduisez-la en allemand" for German too. Only ``languages`` count.
    """
    return _requested_language(text, tuple(languages), source_lang)


@lru_cache(maxsize=4096)  # imported chats repeat their requests ("Translate into Chinese: ...")
def _requested_language(text: str, languages: tuple[str, ...], source_lang: str | None) -> str | None:
    for markers, skip in ((_TARGET_MARKERS, None), (_MAYBE_TARGET_MARKERS, source_lang)):
        found = sorted((m.start(), lang) for rx in markers for m in rx.finditer(text)
                       if (lang := _language_of_name(m.group("l"))) in languages and lang != skip)
        if found:
            return found[0][1]
    return None


_ZH_DIGITS = "零一二三四五六七八九"


def zh_number(n: int) -> str:
    """1..99 as Chinese numerals (十二, 二十, 三十五), for checking "二十个字以内"."""
    if n < 10:
        return _ZH_DIGITS[n]
    tens, ones = divmod(n, 10)
    head = "" if tens == 1 else _ZH_DIGITS[tens]
    return f"{head}十{_ZH_DIGITS[ones] if ones else ''}" if n < 100 else str(n)


def answer_language(type_id: str, ctx: CheckContext) -> str:
    """The language this type's answer must be written in, in this context."""
    t = INTERACTION_TYPES[type_id]
    if type_id == "retarget":
        return ctx.params.get("lang") or ctx.tgt_lang
    if t.answer_lang == "instruction":
        return ctx.instruction_lang
    if t.answer_lang == "mixed":
        return ctx.instruction_lang
    return ctx.tgt_lang


# -- the answer checks of each type --------------------------------------------------------------
def _translation_basics(answer: str, ctx: CheckContext, lang: str) -> list[str]:
    r = C.check_empty(answer)
    if r:
        return r
    r += C.check_language(answer, lang, languages=ctx.languages, backend=ctx.backend)
    if lang != ctx.src_lang:
        r += C.check_not_copy(answer, ctx.source)
    return r


def _check_translate(answer: str, ctx: CheckContext) -> list[str]:
    r = _translation_basics(answer, ctx, ctx.tgt_lang)
    if not r:
        r += C.check_must_include(answer, ctx.must_include or ctx.params.get("must_include", ()))
    return r


def _check_terminology(answer: str, ctx: CheckContext) -> list[str]:
    r = _translation_basics(answer, ctx, ctx.tgt_lang)
    if r:
        return r
    terms = [t for t in quoted_terms(ctx.request) if not C.check_language(t, ctx.tgt_lang, languages=ctx.languages)
             or len(C.words(t)) <= 2]
    if terms and not any(C.contains_term(answer, t) for t in terms):
        r.append(f"missing_terms: none of {', '.join(terms)}")
    r += C.check_overlap_kept(answer, ctx.previous_answer, 0.2)
    return r


def _check_style(answer: str, ctx: CheckContext) -> list[str]:
    r = _translation_basics(answer, ctx, ctx.tgt_lang)
    if r:
        return r
    r += C.check_changed(answer, ctx.previous_answer)
    if ctx.params.get("register") == "headline":
        r += C.check_headline(answer, ctx.tgt_lang)
    return r


def _check_length(answer: str, ctx: CheckContext) -> list[str]:
    r = _translation_basics(answer, ctx, ctx.tgt_lang)
    if r:
        return r
    mode = ctx.params.get("mode", "shorter")
    if mode == "max":
        r += C.check_length_bounds(answer, ctx.tgt_lang, max_n=int(ctx.params.get("n", 0)) or None)
    elif ctx.previous_answer:
        if mode == "shorter":
            r += C.check_shorter(answer, ctx.previous_answer, ctx.tgt_lang)
        else:
            r += C.check_longer(answer, ctx.previous_answer, ctx.tgt_lang)
    return r


def _check_revision(answer: str, ctx: CheckContext) -> list[str]:
    r = _translation_basics(answer, ctx, ctx.tgt_lang)
    return r or C.check_changed(answer, ctx.previous_answer)


def _check_explain(answer: str, ctx: CheckContext) -> list[str]:
    r = C.check_empty(answer)
    if r:
        return r
    r += C.check_language(answer, ctx.instruction_lang, languages=ctx.languages, backend=ctx.backend,
                          ignore_quoted=True)
    words = quoted_terms(ctx.request)
    if words and not any(C.contains_term(answer, w) for w in words):
        r.append(f"missing_word: {words[0]}")
    return r


def _check_retarget(answer: str, ctx: CheckContext) -> list[str]:
    lang = ctx.params.get("lang") or ctx.tgt_lang
    return _translation_basics(answer, ctx, lang)


def _check_back_translate(answer: str, ctx: CheckContext) -> list[str]:
    r = C.check_empty(answer)
    if r:
        return r
    if not C.contains_language(answer, ctx.src_lang, languages=ctx.languages, backend=ctx.backend):
        r.append(f"wrong_language: no {ctx.src_lang} back-translation in the answer")
    return r


def _check_follow_up(answer: str, ctx: CheckContext) -> list[str]:
    r = C.check_empty(answer)
    if r:
        return r
    r += C.check_language(answer, ctx.instruction_lang, languages=ctx.languages, backend=ctx.backend,
                          ignore_quoted=True)
    # The question itself counts: an English opinion on a Chinese source with a German translation
    # shares the question's words ("housing bill") rather than the source's.
    r += C.check_on_topic(answer, ctx.source, ctx.previous_translation, ctx.previous_answer, ctx.request)
    return r


# -- request checks ----------------------------------------------------------------------------------
def _request_basics(request: str, ctx: CheckContext) -> list[str]:
    r = C.check_empty(request)
    if r:
        return r
    r += C.check_language(request, ctx.instruction_lang, languages=ctx.languages, backend=ctx.backend,
                          ignore_quoted=True)
    r += C.check_request_form(request, ctx.instruction_lang)
    if C.copies_source(request, ctx.source, 0.8):
        r.append("copies_source")
    if ctx.previous_answer and C.copies_source(request, ctx.previous_answer, 0.8):
        r.append("copies_answer: the request repeats the previous answer")
    return r


def _request_retarget(request: str, ctx: CheckContext) -> list[str]:
    lang = ctx.params.get("lang")
    if lang and not mentions_language(request, lang):
        return [f"request_off_plan: does not name {C.lang_name(lang)}"]
    return []


def _request_length(request: str, ctx: CheckContext) -> list[str]:
    n = ctx.params.get("n")
    if ctx.params.get("mode") == "max" and n:
        if str(n) not in request and zh_number(int(n)) not in request:
            return [f"request_off_plan: does not state the bound {n}"]
    return []


def _request_translate(request: str, ctx: CheckContext) -> list[str]:
    terms = ctx.must_include or ctx.params.get("must_include", ())
    missing = [t for t in terms if not C.contains_term(request, t)]
    return [f"request_off_plan: does not name {', '.join(missing)}"] if missing else []


def check_opening_request(request: str, ctx: CheckContext) -> list[str]:
    """Failure reasons of a first request written by the simulated annotator (``[simulate]
    first_turn``): the ``translate`` request checks, and it must ask for the target language. A
    template names it by construction; a person's opening is taken as the request it is."""
    reasons = INTERACTION_TYPES["translate"].check_request(request, ctx)
    if not reasons and ctx.tgt_lang:
        asked = requested_language(C.strip_quoted(request), ctx.languages, ctx.src_lang)
        if asked != ctx.tgt_lang:
            reasons.append(f"request_off_plan: does not ask for {C.lang_name(ctx.tgt_lang)}"
                           + (f" (asks for {C.lang_name(asked)})" if asked else ""))
    return reasons


@dataclass(frozen=True)
class InteractionType:
    """One kind of user turn: what it asks, where its answer's language comes from, its checks."""

    id: str
    description: str
    answer_lang: str  # "target" | "instruction" | "mixed"
    revises: bool  # the answer is a new version of the translation (becomes the current translation)
    answer_check: Callable[[str, CheckContext], list[str]]
    request_check: Callable[[str, CheckContext], list[str]] | None = None

    def check(self, answer: str, ctx: CheckContext) -> list[str]:
        """Failure reasons of an answer to this type of request (empty = complied)."""
        return self.answer_check(answer, ctx)

    def check_request(self, request: str, ctx: CheckContext) -> list[str]:
        """Failure reasons of a request of this type written by an annotator."""
        r = _request_basics(request, ctx)
        if not r and self.request_check is not None:
            r += self.request_check(request, ctx)
        return r


INTERACTION_TYPES: dict[str, InteractionType] = {t.id: t for t in (
    InteractionType("translate", "Translate the source sentence, optionally using 1-3 must-include terms.",
                    "target", True, _check_translate, _request_translate),
    InteractionType("terminology", "Render one term differently (a more precise, legal or usual term).",
                    "target", True, _check_terminology),
    InteractionType("style", "Rewrite in another register: formal, casual, headline, plain language, for children.",
                    "target", True, _check_style),
    InteractionType("length", "Make it shorter, longer, or at most N words (characters for Chinese).",
                    "target", True, _check_length, _request_length),
    InteractionType("polish", "Make the wording more fluent and natural.", "target", True, _check_revision),
    InteractionType("correct", "Fix a mistake the user points out.", "target", True, _check_revision),
    InteractionType("explain", "Explain a word choice or what a word means (answered in the instruction language).",
                    "instruction", False, _check_explain),
    InteractionType("retarget", "Give the same content in another of en/zh/de/fr; that becomes the target.",
                    "target", True, _check_retarget, _request_retarget),
    InteractionType("back_translate", "Translate the answer back into the source language and compare.",
                    "mixed", False, _check_back_translate),
    InteractionType("follow_up", "A question, opinion, summary or background about the news itself "
                    "(answered in the instruction language).", "instruction", False, _check_follow_up),
)}

#: Types that may follow the first turn (everything but ``translate``).
FOLLOW_TYPES = tuple(t for t in INTERACTION_TYPES if t != "translate")


def get_type(type_id: str) -> InteractionType:
    try:
        return INTERACTION_TYPES[type_id]
    except KeyError:
        raise KeyError(f"unknown interaction type {type_id!r} (known: {', '.join(INTERACTION_TYPES)})") from None


def check_answer(type_id: str, answer: str, ctx: CheckContext) -> list[str]:
    """Failure reasons of an assistant answer to a ``type_id`` request (empty = complied)."""
    return get_type(type_id).check(answer, ctx)


def check_request(type_id: str, request: str, ctx: CheckContext) -> list[str]:
    """Failure reasons of a user request of type ``type_id`` (language, form, not a copy, on plan)."""
    return get_type(type_id).check_request(request, ctx)


__all__ = ["InteractionType", "CheckContext", "check_opening_request", "INTERACTION_TYPES", "FOLLOW_TYPES", "STYLE_REGISTERS", "LENGTH_MODES",
           "FOLLOW_UP_KINDS", "EXPLAIN_KINDS", "check_answer", "check_request", "get_type", "answer_language",
           "quoted_terms", "mentions_language", "requested_language", "zh_number"]
