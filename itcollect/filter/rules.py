"""Per-dialogue filter rules: each returns stable reason codes (empty = the dialogue passes).

The rules work on a :class:`DialogueView` (the dialogue record, its active turns and the detected
language of each turn, cached in the store), so re-running with other thresholds costs no language
detection. Language of a *request* is the language of its own words: the source sentence and
quoted spans are removed first ("Translate into English: 今天…" is an English request).

Reason codes (also the keys of ``stats`` → filter → reasons):

=========================  ==================================================================
``roles_not_alternating``  not system?, user, assistant, user, ... ending with an answer
``empty_turn``             a turn with no text
``too_few_turns``          fewer user turns than ``[filter].min_user_turns``
``wrong_language_answer``  an answer not in the language its request calls for (target language
                           for translations/revisions, instruction language for explain/follow_up)
``wrong_language_request`` a request not in the dialogue's instruction language
``copies_source``          a translation that is the source sentence again (the first answer
                           whatever the languages; a later one when the target is not the
                           source language)
``copies_previous``        an answer identical to the previous answer
``length_ratio``           first translation too short/long for its source (per pair; characters
                           weighted by ``zh_char_weight`` when Chinese is involved, words otherwise)
``refusal``                "I'm sorry, but I can't…", "抱歉，我无法…"
``identity_leak``          "As an AI language model", "I'm ChatGPT", "作为一个人工智能", "我是ChatGPT", OpenAI
``repeated_ngrams``        an answer in which one n-gram occurs ``repeat_ngram_max`` times or more
``truncated``              an answer cut by the token limit (finish_reason = length)
``low_chrf``               chrF of the first translation against a reference below ``min_chrf``
=========================  ==================================================================
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..checks import strip_quoted
from ..taxonomy import INTERACTION_TYPES
from .tokens import tokenize

_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_NON_WORD = re.compile(r"[\W_]+")
# the bytes ``_NON_WORD`` removes from ASCII text (everything but letters and digits)
_ASCII_NON_WORD = bytes(i for i in range(128) if not chr(i).isalnum())

REFUSAL_PATTERNS = re.compile("|".join([
    r"\bI(?:'m| am) (?:sorry|afraid),? (?:but )?I (?:can(?:not|'t)|am unable|won't)",
    r"\bI (?:cannot|can't|am unable to|'m unable to|won't be able to) (?:help|assist|comply|provide|fulfil|"
    r"translate|do that|complete)",
    r"\bI apologi[sz]e,? but I",
    r"\bI(?:'m| am) not able to (?:help|assist|provide|translate)",
    r"抱歉[，,]?\s*(?:但)?我(?:无法|不能|没法)",
    r"对不起[，,]?\s*(?:但)?我(?:无法|不能|没法)",
    r"我(?:无法|不能)(?:提供|完成|协助|帮助|满足|回答)(?:这个|此|您的|你的)?(?:请求|要求|问题)?",
    r"\bJe ne peux pas (?:vous aider|répondre|traduire)",
    r"\bIch kann (?:Ihnen )?(?:dabei )?nicht helfen",
]), re.IGNORECASE)

IDENTITY_PATTERNS = re.compile("|".join([
    r"\bas an? (?:AI|artificial intelligence)(?: language)?(?: model| assistant)?\b",
    r"\bas a (?:large )?language model\b",
    r"\bI(?:'m| am) (?:ChatGPT|GPT-?\d|an AI(?: language model| assistant)?|a large language model|"
    r"an artificial intelligence)\b",
    r"\b(?:trained|developed|created) by OpenAI\b",
    r"\bmy knowledge cutoff\b",
    r"作为一(?:个|名)?(?:人工智能|AI|ai|语言模型|大语言模型)",
    r"我是(?:一个|一名)?(?:ChatGPT|人工智能|AI助手|AI语言模型|语言模型|大语言模型)",
    r"由\s*OpenAI\s*(?:开发|训练)",
    r"\bAls (?:KI|künstliche Intelligenz)(?:-Sprachmodell| Sprachmodell)?\b",
    r"\bEn tant qu(?:e|')\s?(?:IA|intelligence artificielle|modèle de langage)\b",
]), re.IGNORECASE)
_OPENAI = re.compile(r"\b(?:OpenAI|ChatGPT)\b", re.IGNORECASE)
# Substrings (of the lower-cased text) one of which every pattern above needs: a plain ``in`` test
# per keyword costs far less than the alternation regexes, which then run on the few candidates.
REFUSAL_KEYWORDS = ("sorry", "cannot", "can't", "unable", "apologi", "not able", "won't", "抱歉", "对不起",
                    "无法", "不能", "没法", "ne peux pas", "nicht helfen")
IDENTITY_KEYWORDS = ("as an ai", "as a ai", "as an artificial", "as a language", "as a large", "chatgpt", "gpt",
                     "i'm an ai", "i am an ai", "an artificial intelligence", "language model", "openai",
                     "knowledge cutoff", "作为一", "我是", "als ki", "als künstliche", "en tant qu")


def find_refusal(text: str, low: str | None = None) -> str | None:
    low = text.lower() if low is None else low
    if not any(map(low.__contains__, REFUSAL_KEYWORDS)):
        return None
    m = REFUSAL_PATTERNS.search(text)
    return None if m is None else m.group(0)


def find_identity(text: str, low: str | None = None) -> str | None:
    low = text.lower() if low is None else low
    if not any(map(low.__contains__, IDENTITY_KEYWORDS)):
        return None
    m = IDENTITY_PATTERNS.search(text)
    return None if m is None else m.group(0)

#: Interaction types whose answer must differ from the previous answer.
_REVISION_TYPES = {tid for tid, t in INTERACTION_TYPES.items() if t.revises and tid != "translate"}


@dataclass
class Thresholds:
    """The ``[filter]`` settings a run used (stored with every run)."""

    min_length_ratio: float = 0.3
    max_length_ratio: float = 3.0
    zh_char_weight: float = 3.0
    min_user_turns: int = 1
    repeat_ngram_n: int = 4
    repeat_ngram_max: int = 3
    min_chrf: float = 0.0
    near_dup_threshold: float = 0.8
    minhash_num_perm: int = 64
    near_dup: bool = True

    @classmethod
    def from_config(cls, section: dict[str, Any]) -> Thresholds:
        known = {k: v for k, v in section.items() if k in cls.__dataclass_fields__}
        t = cls(**known)
        t.min_user_turns = int(t.min_user_turns)
        t.repeat_ngram_n = int(t.repeat_ngram_n)
        t.repeat_ngram_max = int(t.repeat_ngram_max)
        t.minhash_num_perm = int(t.minhash_num_perm)
        return t

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class DialogueView:
    """What the rules see: the dialogue, its active turns, one detected language per turn."""

    dialogue: dict[str, Any]
    turns: list[dict[str, Any]]
    langs: list[str | None]
    reference: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    #: filled by :func:`check_dialogue` and re-used by dedup: the lower-cased tokens of every turn
    #: (each turn is tokenised once per run)
    tokens: list[list[str]] = field(default_factory=list)

    @property
    def source(self) -> str:
        return self.dialogue.get("source_text") or ""


def request_text(content: str, source: str | None) -> str:
    """The words of a request that are its own: without the source sentence and quoted spans."""
    text = content
    if source and len(source) >= 4:
        text = text.replace(source, " ")
    return strip_quoted(text)


def text_to_detect(turn: dict[str, Any], source: str | None) -> str:
    """What language detection is run on for a turn (and cached as its ``detected_lang``)."""
    if turn["role"] == "user":
        return request_text(turn["content"], source)
    return turn["content"]


def norm(text: str) -> str:
    """Case-, width- and punctuation-insensitive form (as ``checks.normalize_for_compare``, but
    with one C-level regex instead of a per-character generator: it runs on every turn)."""
    if text.isascii():  # NFKC and casefold are the identity / lower() on ASCII; bytes.translate is 3x the regex
        return text.encode("ascii").translate(None, _ASCII_NON_WORD).decode("ascii").lower()
    return _NON_WORD.sub("", unicodedata.normalize("NFKC", text).casefold())


def _trigrams(s: str) -> set[str]:
    return {s[i:i + 3] for i in range(len(s) - 2)} if len(s) >= 3 else ({s} if s else set())


def copies_text(answer: str, source: str, threshold: float = 0.9) -> bool:
    """The answer is the source again: equal after :func:`norm`, or character-trigram Jaccard >=
    ``threshold`` (the rule of ``checks.copies_source``)."""
    a, s = norm(answer), norm(source)
    if not a or not s:
        return False
    if a == s:
        return True
    if min(len(a), len(s)) < 0.8 * max(len(a), len(s)):  # Jaccard cannot reach 0.9 then
        return False
    ga, gs = _trigrams(a), _trigrams(s)
    return len(ga & gs) / len(ga | gs) >= threshold


def _length(text: str, cjk: bool, zh_weight: float) -> float:
    if not cjk:
        return float(len(tokenize(text)))
    han = len(_HAN.findall(text))
    other = len("".join(text.split())) - han  # split() drops what \s matches (str.isspace), 3x faster than a sub
    return other + han * zh_weight


def tokens_of(text: str) -> list[str]:
    """Lower-cased tokens: words, and single Han characters."""
    return tokenize(text.lower())


def repeated_ngram(text: str, n: int, max_count: int, tokens: list[str] | None = None,
                   lang: str | None = None) -> tuple[str, int] | None:
    """The most repeated n-gram of tokens if it occurs ``max_count`` times or more: word n-grams, or
    for Chinese (``lang`` "zh", or Han-heavy text) 2n-grams of characters (punctuation ignored)."""
    toks = tokens if tokens is not None else tokens_of(text)
    if lang is None:
        zh = bool(_HAN.search(text)) and len(_HAN.findall(text)) > len(text) * 0.3
    else:
        zh = lang == "zh"
    k = 2 * n if zh else n
    n_grams = len(toks) - k + 1
    if n_grams < max_count:
        return None
    # cheap necessary conditions first (most answers repeat nothing): a k-gram seen max_count times
    # starts with a token, and (k >= 2) a bigram, that repeats at least max_count - 1 times
    if len(toks) - len(set(toks)) < max_count - 1:
        return None
    if k >= 2 and len(toks) - 1 - len(set(zip(toks, toks[1:]))) < max_count - 1:
        return None
    uniq = set(zip(*(toks[i:] for i in range(k))))
    # a gram seen max_count times needs at least max_count - 1 repeats among the grams
    if n_grams - len(uniq) < max_count - 1:
        return None
    gram, count = Counter(zip(*(toks[i:] for i in range(k)))).most_common(1)[0]
    if count < max_count:
        return None
    return ("".join(gram) if zh else " ".join(gram)), count


def _turn_type(turns: list[dict[str, Any]], i: int) -> str | None:
    """Interaction type of the request answered by assistant turn ``i`` (from either turn)."""
    t = turns[i].get("interaction_type")
    if not t and i > 0 and turns[i - 1]["role"] == "user":
        t = turns[i - 1].get("interaction_type")
    return t if t in INTERACTION_TYPES else None


def _turn_param(turns: list[dict[str, Any]], i: int, key: str) -> Any:
    for j in (i - 1, i):
        if 0 <= j < len(turns):
            p = turns[j].get("params") or {}
            if isinstance(p, dict) and p.get(key):
                return p[key]
    return None


def check_dialogue(view: DialogueView, th: Thresholds) -> tuple[list[str], dict[str, Any]]:
    """All rule reasons of one dialogue, and details (which turn, measured values)."""
    d, turns, langs = view.dialogue, view.turns, view.langs
    reasons: list[str] = []
    detail: dict[str, Any] = {}

    def add(code: str, **info: Any) -> None:
        if code not in reasons:
            reasons.append(code)
            if info:
                detail[code] = info

    # structure
    body_start = 1 if turns and turns[0]["role"] == "system" else 0
    body = turns[body_start:]
    if not body or any(t["role"] != ("user" if k % 2 == 0 else "assistant") for k, t in enumerate(body)) \
            or body[-1]["role"] != "assistant":
        add("roles_not_alternating")
    for k, t in enumerate(turns):
        if not (t["content"] or "").strip():
            add("empty_turn", turn=k)
            break
    n_user = sum(1 for t in body if t["role"] == "user")
    if n_user < th.min_user_turns:
        add("too_few_turns", user_turns=n_user)
    if "roles_not_alternating" in reasons or "empty_turn" in reasons:
        return reasons, detail

    lows = [t["content"].lower() for t in turns]
    answers_low = "\n".join(lows[i] for i, t in enumerate(turns) if t["role"] == "assistant")
    maybe_refusal = any(map(answers_low.__contains__, REFUSAL_KEYWORDS))
    maybe_identity = any(map(answers_low.__contains__, IDENTITY_KEYWORDS))
    view.tokens = [tokenize(x) for x in lows]
    source = view.source
    src_lang, tgt, instr = d.get("src_lang"), d.get("tgt_lang"), d.get("instruction_lang")
    first_answer: int | None = None
    prev_answer: int | None = None
    for i, t in enumerate(turns):
        if i < body_start:
            continue
        lang = langs[i]
        if t["role"] == "user":
            if instr and lang and lang != instr:
                add("wrong_language_request", turn=i, found=lang, expected=instr)
            continue
        # an assistant turn
        content = t["content"]
        itype = _turn_type(turns, i)
        if first_answer is None:
            first_answer = i
            itype = itype or "translate"
        if itype == "retarget":
            new = _turn_param(turns, i, "lang")
            if new:
                tgt = new
            elif lang and lang != instr:
                tgt = lang
        if itype is not None and lang:
            kind = INTERACTION_TYPES[itype].answer_lang
            expected = tgt if kind == "target" else (instr if kind == "instruction" else None)
            if expected and lang != expected:
                add("wrong_language_answer", turn=i, found=lang, expected=expected)
        # the first translation must not be the source, whatever the languages (an imported "translate
        # this" answered with the source has the source's language as its inferred target); a later
        # answer may give the source back when it was asked for in the source language (a retarget)
        if source and itype is not None and INTERACTION_TYPES[itype].answer_lang == "target" \
                and (tgt != src_lang or i == first_answer) and copies_text(content, source):
            add("copies_source", turn=i)
        if prev_answer is not None and (itype in _REVISION_TYPES or itype is None) \
                and view.tokens[i] == view.tokens[prev_answer]:
            add("copies_previous", turn=i)
        if (t.get("finish_reason") or "") == "length":
            add("truncated", turn=i)
        low = lows[i]
        refusal = find_refusal(content, low) if maybe_refusal else None
        if refusal is not None:
            add("refusal", turn=i, match=refusal)
        ident = find_identity(content, low) if maybe_identity else None
        if ident is None and maybe_identity and ("openai" in low or "chatgpt" in low):
            m2 = _OPENAI.search(content)
            # naming OpenAI is a leak only when the user (or the news) did not bring it up
            if m2 is not None and not _OPENAI.search(source) and not any(
                    _OPENAI.search(u["content"]) for u in turns[:i] if u["role"] == "user"):
                ident = m2.group(0)
        if ident is not None:
            add("identity_leak", turn=i, match=ident)
        rep = repeated_ngram(content, th.repeat_ngram_n, th.repeat_ngram_max, view.tokens[i], lang)
        if rep is not None:
            add("repeated_ngrams", turn=i, ngram=rep[0], count=rep[1])
        prev_answer = i

    # the first translation against its source and reference
    if first_answer is not None and source:
        answer = turns[first_answer]["content"]
        cjk = "zh" in (d.get("src_lang"), d.get("tgt_lang")) or bool(_HAN.search(source + answer))
        ls, la = _length(source, cjk, th.zh_char_weight), _length(answer, cjk, th.zh_char_weight)
        if ls > 0:
            ratio = la / ls
            if not th.min_length_ratio <= ratio <= th.max_length_ratio:
                add("length_ratio", ratio=round(ratio, 3), unit="weighted_chars" if cjk else "words")
        if th.min_chrf > 0 and view.reference:
            from sacrebleu.metrics import CHRF

            score = CHRF().sentence_score(answer, [view.reference]).score
            if score < th.min_chrf:
                add("low_chrf", chrf=round(score, 2))
    return reasons, detail


def first_reference(refs: Sequence[dict[str, Any]], lang: str | None) -> str | None:
    for r in refs:
        if r.get("lang") == lang and r.get("text"):
            return r["text"]
    return None
