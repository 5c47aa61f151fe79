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
``overlap_not_picked``     a copy of an overlap spec (``[session] overlap_share``) that is not the
                           one kept: a reviewer picked another (``session --review --order
                           overlap``); before that, among the copies that pass every other rule,
                           the one the dedup keep rule prefers is kept (:mod:`.run`)
``review_rejected``        a dialogue a reviewer rejected (``session --review``;
                           ``drop_review_rejected``)
``low_judge_score``        an answer the LLM judge scored below ``min_judge_score`` (or an
                           explanation / follow-up rated below ``min_judge_rating``)
``critical_error``         more critical errors than ``max_critical_errors`` over all answers
``not_compliant``          a revision the judge found not compliant (``require_compliance``)
``not_judged``             an answer without a usable judgement (``require_judge``)
=========================  ==================================================================

The four judge rules read the judgements ``itcollect judge`` stored (current ones: of the dialogue
as it is now); they are off in the default config, and a rule that is off is not run at all, so the
verdicts are then exactly what they are without judging.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from itcollect.kernel.checks import copies_source
from itcollect.kernel.dialogue import Expectation, answered_request, expectations
from itcollect.kernel.taxonomy import INTERACTION_TYPES
from itcollect.kernel.text import tokenize, tokens_of
from itcollect.llm.judgement import verdict as judge_verdict
from itcollect.settings import FilterSection, settings

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


#: The ``[filter]`` settings a run uses (stored with every run): the config's typed section, so no
#: threshold has a default of its own here.
Thresholds = FilterSection


def thresholds(config: Mapping[str, Any] | None = None, **overrides: Any) -> FilterSection:
    """The ``[filter]`` section of ``config`` (the defaults without one), with ``overrides``."""
    th = settings(config or {}).filter
    return th.model_copy(update=overrides) if overrides else th


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


def _length(text: str, cjk: bool, zh_weight: float) -> float:
    if not cjk:
        return float(len(tokenize(text)))
    han = len(_HAN.findall(text))
    other = len("".join(text.split())) - han  # split() drops what \s matches (str.isspace), 3x faster than a sub
    return other + han * zh_weight


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


#: a user turn and its answer as :func:`itcollect.kernel.dialogue.expectations` reads them
_request_info = answered_request


# -- the rules: small named units -----------------------------------------------------------------
# Each rule is a callable with a reason ``code`` that returns ``(keep, code, details)``; a dialogue is
# kept when every rule keeps it. Structure rules look at the raw turns; when one of them finds the
# dialogue malformed the others are not run. Turn rules and dialogue rules get a :class:`Prepared`
# dialogue (lower-cased turns, tokens and the expectation of every answer, computed once). A new rule
# is one unit (and its threshold in ``[filter]`` / :class:`Thresholds`) added to RULES.

Result = tuple[bool, str, dict[str, Any]]


@dataclass
class Prepared:
    """What the turn and dialogue rules share, computed once per dialogue."""

    view: DialogueView
    body_start: int
    lows: list[str]
    tokens: list[list[str]]
    answers: list[int]  # indices of the assistant turns
    expected: list[Expectation]  # one per answer
    maybe_refusal: bool
    maybe_identity: bool

    @property
    def first_answer(self) -> int | None:
        return self.answers[0] if self.answers else None


class Rule:
    """A filter rule (see above). ``stage``: "structure", "turns" or "dialogue"."""

    code: str = ""
    stage: str = "turns"

    def __init__(self) -> None:
        self._keep: Result = (True, self.code, {})  # one tuple for every dialogue kept (never mutated)

    def __call__(self, p: Any, th: Thresholds) -> Result:
        raise NotImplementedError

    def active(self, th: Thresholds) -> bool:
        """Whether the rule runs with these thresholds (a rule that is off is left out of the run)."""
        return True

    #: the rule reads the turns' judgements (the filter then loads them with each page)
    needs_judgements = False

    def keep(self) -> Result:
        return self._keep

    def drop(self, **details: Any) -> Result:
        return False, self.code, details


def _body(turns: list[dict[str, Any]]) -> tuple[int, list[dict[str, Any]]]:
    start = 1 if turns and turns[0]["role"] == "system" else 0
    return start, turns[start:]


class RolesNotAlternating(Rule):
    """not system?, user, assistant, user, ... ending with an answer"""

    code, stage = "roles_not_alternating", "structure"

    def __call__(self, view: DialogueView, th: Thresholds) -> Result:
        _, body = _body(view.turns)
        if not body or any(t["role"] != ("user" if k % 2 == 0 else "assistant") for k, t in enumerate(body)) \
                or body[-1]["role"] != "assistant":
            return self.drop()
        return self.keep()


class EmptyTurn(Rule):
    """a turn with no text"""

    code, stage = "empty_turn", "structure"

    def __call__(self, view: DialogueView, th: Thresholds) -> Result:
        for k, t in enumerate(view.turns):
            if not (t["content"] or "").strip():
                return self.drop(turn=k)
        return self.keep()


class TooFewTurns(Rule):
    """fewer user turns than ``min_user_turns``"""

    code, stage = "too_few_turns", "structure"

    def __call__(self, view: DialogueView, th: Thresholds) -> Result:
        n_user = sum(1 for t in _body(view.turns)[1] if t["role"] == "user")
        return self.drop(user_turns=n_user) if n_user < th.min_user_turns else self.keep()


#: Structure findings after which the other rules do not run (they need alternating, non-empty turns).
_MALFORMED = ("roles_not_alternating", "empty_turn")


class WrongLanguageRequest(Rule):
    """a request not in the dialogue's instruction language"""

    code = "wrong_language_request"

    def __call__(self, p: Prepared, th: Thresholds) -> Result:
        instr = p.view.dialogue.get("instruction_lang")
        if instr:
            for i in range(p.body_start, len(p.view.turns), 2):
                lang = p.view.langs[i]
                if lang and lang != instr:
                    return self.drop(turn=i, found=lang, expected=instr)
        return self.keep()


class WrongLanguageAnswer(Rule):
    """an answer not in the language its request calls for (:func:`itcollect.kernel.dialogue.expectations`)"""

    code = "wrong_language_answer"

    def __call__(self, p: Prepared, th: Thresholds) -> Result:
        for i, exp in zip(p.answers, p.expected):
            lang = p.view.langs[i]
            if lang and exp.strict and exp.answer_lang and lang != exp.answer_lang:
                return self.drop(turn=i, found=lang, expected=exp.answer_lang)
        return self.keep()


class CopiesSource(Rule):
    """a translation that is the source sentence again"""

    code = "copies_source"

    def __call__(self, p: Prepared, th: Thresholds) -> Result:
        source = p.view.source
        if source:
            src_lang = p.view.dialogue.get("src_lang")
            # the first translation must not be the source, whatever the languages (an imported
            # "translate this" answered with the source has the source's language as its inferred
            # target); a later answer may give the source back when asked for in the source language
            for i, exp in zip(p.answers, p.expected):
                if exp.type is not None and INTERACTION_TYPES[exp.type].answer_lang == "target" \
                        and (exp.target != src_lang or exp.k == 0) \
                        and copies_source(p.view.turns[i]["content"], source):
                    return self.drop(turn=i)
        return self.keep()


class CopiesPrevious(Rule):
    """a revision identical to the previous answer"""

    code = "copies_previous"

    def __call__(self, p: Prepared, th: Thresholds) -> Result:
        for prev, i, exp in zip(p.answers, p.answers[1:], p.expected[1:]):
            if (exp.type in _REVISION_TYPES or exp.type is None) and p.tokens[i] == p.tokens[prev]:
                return self.drop(turn=i)
        return self.keep()


class Truncated(Rule):
    """an answer cut by the token limit (finish_reason = length)"""

    code = "truncated"

    def __call__(self, p: Prepared, th: Thresholds) -> Result:
        for i in p.answers:
            if (p.view.turns[i].get("finish_reason") or "") == "length":
                return self.drop(turn=i)
        return self.keep()


class Refusal(Rule):
    """"I'm sorry, but I can't…", "抱歉，我无法…" """

    code = "refusal"

    def __call__(self, p: Prepared, th: Thresholds) -> Result:
        if p.maybe_refusal:
            for i in p.answers:
                match = find_refusal(p.view.turns[i]["content"], p.lows[i])
                if match is not None:
                    return self.drop(turn=i, match=match)
        return self.keep()


class IdentityLeak(Rule):
    """"As an AI language model", "我是ChatGPT", OpenAI when the user did not bring it up"""

    code = "identity_leak"

    def __call__(self, p: Prepared, th: Thresholds) -> Result:
        if not p.maybe_identity:
            return self.keep()
        turns, source = p.view.turns, p.view.source
        for i in p.answers:
            content, low = turns[i]["content"], p.lows[i]
            ident = find_identity(content, low)
            if ident is None and ("openai" in low or "chatgpt" in low):
                m2 = _OPENAI.search(content)
                # naming OpenAI is a leak only when the user (or the news) did not bring it up
                if m2 is not None and not _OPENAI.search(source) and not any(
                        _OPENAI.search(u["content"]) for u in turns[:i] if u["role"] == "user"):
                    ident = m2.group(0)
            if ident is not None:
                return self.drop(turn=i, match=ident)
        return self.keep()


class RepeatedNgrams(Rule):
    """an answer in which one n-gram occurs ``repeat_ngram_max`` times or more"""

    code = "repeated_ngrams"

    def __call__(self, p: Prepared, th: Thresholds) -> Result:
        for i in p.answers:
            rep = repeated_ngram(p.view.turns[i]["content"], th.repeat_ngram_n, th.repeat_ngram_max, p.tokens[i],
                                 p.view.langs[i])
            if rep is not None:
                return self.drop(turn=i, ngram=rep[0], count=rep[1])
        return self.keep()


class LengthRatio(Rule):
    """first translation too short/long for its source"""

    code, stage = "length_ratio", "dialogue"

    def __call__(self, p: Prepared, th: Thresholds) -> Result:
        d, source = p.view.dialogue, p.view.source
        if p.first_answer is None or not source:
            return self.keep()
        answer = p.view.turns[p.first_answer]["content"]
        cjk = "zh" in (d.get("src_lang"), d.get("tgt_lang")) or bool(_HAN.search(source + answer))
        ls, la = _length(source, cjk, th.zh_char_weight), _length(answer, cjk, th.zh_char_weight)
        if ls > 0:
            ratio = la / ls
            if not th.min_length_ratio <= ratio <= th.max_length_ratio:
                return self.drop(ratio=round(ratio, 3), unit="weighted_chars" if cjk else "words")
        return self.keep()


class LowChrf(Rule):
    """chrF of the first translation against a reference below ``min_chrf``"""

    code, stage = "low_chrf", "dialogue"

    def __call__(self, p: Prepared, th: Thresholds) -> Result:
        if p.first_answer is None or not p.view.source or th.min_chrf <= 0 or not p.view.reference:
            return self.keep()
        from sacrebleu.metrics import (
            CHRF,  # deferred: only runs with min_chrf set (sacrebleu is slow to import)
        )

        score = CHRF().sentence_score(p.view.turns[p.first_answer]["content"], [p.view.reference]).score
        return self.drop(chrf=round(score, 2)) if score < th.min_chrf else self.keep()


class _ReviewerVerdict(Rule):
    """A structure rule that carries out what a reviewer decided: the filter run reads the verdicts
    from the store and puts the details of each dialogue to drop under ``view.extra[extra_key]``."""

    stage = "structure"
    extra_key = ""

    def __call__(self, view: DialogueView, th: Thresholds) -> Result:
        details = view.extra.get(self.extra_key)
        return self.keep() if details is None else self.drop(**details)


class OverlapNotPicked(_ReviewerVerdict):
    """a copy of an overlap spec that a reviewer did not pick (details: the pick, set for the other
    copies of an adjudicated spec)"""

    code, extra_key = "overlap_not_picked", "overlap_pick"


class ReviewRejected(_ReviewerVerdict):
    """a dialogue a reviewer rejected (details: who and why, from the store's review verdicts)"""

    code, extra_key = "review_rejected", "review_rejected"

    def active(self, th: Thresholds) -> bool:
        return th.drop_review_rejected


class _JudgeRule(Rule):
    """A rule over the LLM judge's judgements of the answers (``turn["judgement"]``, None when the
    answer has no current judgement); the checks themselves are :mod:`itcollect.llm.judgement.verdict`'s."""

    needs_judgements = True

    @staticmethod
    def answers(p: Prepared) -> list[tuple[int, Any]]:
        """(turn index, judgement) of every answer, built once per dialogue for the judge rules."""
        judged = p.__dict__.get("_judged")
        if judged is None:
            turns = p.view.turns
            judged = p.__dict__["_judged"] = [(i, turns[i].get("judgement")) for i in p.answers]
        return judged

    def result(self, finding: tuple[int, dict[str, Any]] | None) -> Result:
        return self.keep() if finding is None else self.drop(**finding[1])


class LowJudgeScore(_JudgeRule):
    """an answer scored below ``min_judge_score`` (or rated below ``min_judge_rating``)"""

    code = "low_judge_score"

    def active(self, th: Thresholds) -> bool:
        return th.min_judge_score < 0 or th.min_judge_rating > 0

    def __call__(self, p: Prepared, th: Thresholds) -> Result:
        return self.result(judge_verdict.low_score(self.answers(p), th.min_judge_score, th.min_judge_rating))


class CriticalError(_JudgeRule):
    """more critical errors than ``max_critical_errors`` over all answers"""

    code = "critical_error"

    def active(self, th: Thresholds) -> bool:
        return th.max_critical_errors >= 0

    def __call__(self, p: Prepared, th: Thresholds) -> Result:
        return self.result(judge_verdict.too_many_critical(self.answers(p), th.max_critical_errors))


class NotCompliant(_JudgeRule):
    """a revision the judge found not compliant (``require_compliance``)"""

    code = "not_compliant"

    def active(self, th: Thresholds) -> bool:
        return th.require_compliance

    def __call__(self, p: Prepared, th: Thresholds) -> Result:
        return self.result(judge_verdict.not_compliant(self.answers(p)))


class NotJudged(_JudgeRule):
    """an answer without a usable judgement (``require_judge``)"""

    code = "not_judged"

    def active(self, th: Thresholds) -> bool:
        return th.require_judge

    def __call__(self, p: Prepared, th: Thresholds) -> Result:
        return self.result(judge_verdict.not_judged(self.answers(p)))


#: Every rule, in the order their reasons are listed (turn rules: ordered by the turn they fire at).
RULES: list[Rule] = [RolesNotAlternating(), EmptyTurn(), TooFewTurns(), OverlapNotPicked(), ReviewRejected(),
                     WrongLanguageRequest(), WrongLanguageAnswer(), CopiesSource(), CopiesPrevious(), Truncated(),
                     Refusal(), IdentityLeak(), RepeatedNgrams(), LengthRatio(), LowChrf(), LowJudgeScore(),
                     CriticalError(), NotCompliant(), NotJudged()]


def active_rules(th: Thresholds, rules: Sequence[Rule] | None = None) -> list[Rule]:
    """The rules that run with ``th`` (in RULES order): a rule that is off is left out."""
    return [r for r in (RULES if rules is None else rules) if r.active(th)]


def prepare(view: DialogueView) -> Prepared:
    """The shared per-dialogue work of the turn and dialogue rules (tokens are kept on the view
    for dedup)."""
    d, turns, langs = view.dialogue, view.turns, view.langs
    body_start = _body(turns)[0]
    lows = [t["content"].lower() for t in turns]
    answers = list(range(body_start + 1, len(turns), 2))
    answers_low = "\n".join(lows[i] for i in answers)
    view.tokens = [tokenize(x) for x in lows]
    expected = expectations(src_lang=d.get("src_lang"), tgt_lang=d.get("tgt_lang"),
                            instruction_lang=d.get("instruction_lang"),
                            requests=[_request_info(turns[i - 1], turns[i], langs[i]) for i in answers])
    return Prepared(view, body_start, lows, view.tokens, answers, expected,
                    any(map(answers_low.__contains__, REFUSAL_KEYWORDS)),
                    any(map(answers_low.__contains__, IDENTITY_KEYWORDS)))


def check_dialogue(view: DialogueView, th: Thresholds, rules: Sequence[Rule] | None = None
                   ) -> tuple[list[str], dict[str, Any]]:
    """The reason codes of every rule that drops the dialogue, and their details (which turn,
    what was measured). Reasons are listed structure first, then turn rules by the turn they
    fire at, then dialogue rules."""
    rules = active_rules(th) if rules is None else rules
    found: list[tuple[tuple[int, int, int], str, dict[str, Any]]] = []
    for pos, rule in enumerate(rules):
        if rule.stage == "structure":
            keep, code, info = rule(view, th)
            if not keep:
                found.append(((0, 0, pos), code, info))
    if not found or not any(code in _MALFORMED for _, code, _ in found):
        p = prepare(view)
        for pos, rule in enumerate(rules):
            if rule.stage != "structure":
                keep, code, info = rule(p, th)
                if not keep:
                    key = (1, info.get("turn", 0), pos) if rule.stage == "turns" else (2, 0, pos)
                    found.append((key, code, info))
    if not found:
        return [], {}
    found.sort(key=lambda f: f[0])
    return [code for _, code, _ in found], {code: info for _, code, info in found if info}


def first_reference(refs: Sequence[dict[str, Any]], lang: str | None) -> str | None:
    for r in refs:
        if r.get("lang") == lang and r.get("text"):
            return r["text"]
    return None
