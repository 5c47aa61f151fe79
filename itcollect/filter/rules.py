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
from typing import Any, ClassVar

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
# A rule owns its parameters (built from the ``[filter]`` settings by ``from_settings``, which returns
# None when the settings turn the rule off: it is then left out of the run) and returns
# ``(keep, code, details)``; a dialogue is kept when every rule keeps it. Three kinds, by what a rule
# reads and where its reason is listed:
#   StructureRule  the raw turns (a DialogueView), before anything is computed from them; when one
#                  finds the dialogue malformed the other rules are not run. Listed first.
#   TurnRule       one turn at a time of the Prepared dialogue (lower-cased turns, tokens and the
#                  expectation of every answer, computed once); fires at the first turn that fails,
#                  and its reason is listed by that turn.
#   DialogueRule   the Prepared dialogue as a whole; listed after the turn rules.
# A new rule is one class added to RULES (and its parameter in ``[filter]``).

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
    """A filter rule (see above): a reason ``code`` and the rule's own parameters (a rule with
    parameters is a frozen dataclass of them)."""

    code: ClassVar[str] = ""
    #: the rule reads the turns' judgements (the filter then loads them with each page)
    needs_judgements: ClassVar[bool] = False
    #: one result for every dialogue the rule keeps (never mutated)
    _keep: ClassVar[Result] = (True, "", {})

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._keep = (True, cls.code, {})

    @classmethod
    def from_settings(cls, th: FilterSection) -> Rule | None:
        """The rule with its parameters from the ``[filter]`` settings, or None when they turn it off.
        A rule without parameters is always on."""
        return cls()

    def keep(self) -> Result:
        return self._keep

    def drop(self, **details: Any) -> Result:
        return False, self.code, details


class StructureRule(Rule):
    """A rule over the raw turns of a dialogue (run first; see above)."""

    def check(self, view: DialogueView) -> Result:
        raise NotImplementedError


class TurnRule(Rule):
    """A rule that checks one turn at a time: ``turns`` says which (the answers, unless a rule
    says otherwise; none when the rule has nothing to look for in this dialogue), ``check_turn``
    returns the details of a failure or None. The first turn that fails drops the dialogue, with
    the turn index in the details."""

    def turns(self, p: Prepared) -> Sequence[int]:
        return p.answers

    def check_turn(self, p: Prepared, i: int) -> dict[str, Any] | None:
        raise NotImplementedError

    def check(self, p: Prepared) -> Result:
        for i in self.turns(p):
            found = self.check_turn(p, i)
            if found is not None:
                return self.drop(turn=i, **found)
        return self._keep


class DialogueRule(Rule):
    """A rule over the whole prepared dialogue (its reason is listed after the turn rules')."""

    def check(self, p: Prepared) -> Result:
        raise NotImplementedError


def _body(turns: list[dict[str, Any]]) -> tuple[int, list[dict[str, Any]]]:
    start = 1 if turns and turns[0]["role"] == "system" else 0
    return start, turns[start:]


_NOTHING: dict[str, Any] = {}  # a turn's failure with no details beyond the turn (never mutated)


class RolesNotAlternating(StructureRule):
    """not system?, user, assistant, user, ... ending with an answer"""

    code = "roles_not_alternating"

    def check(self, view: DialogueView) -> Result:
        _, body = _body(view.turns)
        if not body or any(t["role"] != ("user" if k % 2 == 0 else "assistant") for k, t in enumerate(body)) \
                or body[-1]["role"] != "assistant":
            return self.drop()
        return self.keep()


class EmptyTurn(StructureRule):
    """a turn with no text"""

    code = "empty_turn"

    def check(self, view: DialogueView) -> Result:
        for k, t in enumerate(view.turns):
            if not (t["content"] or "").strip():
                return self.drop(turn=k)
        return self.keep()


@dataclass(frozen=True)
class TooFewTurns(StructureRule):
    """fewer user turns than ``min_user_turns``"""

    code = "too_few_turns"
    min_user_turns: int

    @classmethod
    def from_settings(cls, th: FilterSection) -> TooFewTurns:
        return cls(th.min_user_turns)

    def check(self, view: DialogueView) -> Result:
        n_user = sum(1 for t in _body(view.turns)[1] if t["role"] == "user")
        return self.drop(user_turns=n_user) if n_user < self.min_user_turns else self.keep()


#: Structure findings after which the other rules do not run (they need alternating, non-empty turns).
_MALFORMED = ("roles_not_alternating", "empty_turn")


class _ReviewerVerdict(StructureRule):
    """A structure rule that carries out what a reviewer decided: the filter run reads the verdicts
    from the store and puts the details of each dialogue to drop under ``view.extra[extra_key]``."""

    extra_key: ClassVar[str] = ""

    def check(self, view: DialogueView) -> Result:
        details = view.extra.get(self.extra_key)
        return self.keep() if details is None else self.drop(**details)


class OverlapNotPicked(_ReviewerVerdict):
    """a copy of an overlap spec that a reviewer did not pick (details: the pick, set for the other
    copies of an adjudicated spec)"""

    code, extra_key = "overlap_not_picked", "overlap_pick"


class ReviewRejected(_ReviewerVerdict):
    """a dialogue a reviewer rejected (details: who and why, from the store's review verdicts)"""

    code, extra_key = "review_rejected", "review_rejected"

    @classmethod
    def from_settings(cls, th: FilterSection) -> ReviewRejected | None:
        return cls() if th.drop_review_rejected else None


class WrongLanguageRequest(TurnRule):
    """a request not in the dialogue's instruction language"""

    code = "wrong_language_request"

    def turns(self, p: Prepared) -> Sequence[int]:
        return range(p.body_start, len(p.view.turns), 2) if p.view.dialogue.get("instruction_lang") else ()

    def check_turn(self, p: Prepared, i: int) -> dict[str, Any] | None:
        lang, instr = p.view.langs[i], p.view.dialogue["instruction_lang"]
        return {"found": lang, "expected": instr} if lang and lang != instr else None


class WrongLanguageAnswer(TurnRule):
    """an answer not in the language its request calls for (:func:`itcollect.kernel.dialogue.expectations`)"""

    code = "wrong_language_answer"

    def check_turn(self, p: Prepared, i: int) -> dict[str, Any] | None:
        lang, exp = p.view.langs[i], p.expected[(i - p.body_start) >> 1]
        if lang and exp.strict and exp.answer_lang and lang != exp.answer_lang:
            return {"found": lang, "expected": exp.answer_lang}
        return None


class CopiesSource(TurnRule):
    """a translation that is the source sentence again"""

    code = "copies_source"

    def turns(self, p: Prepared) -> Sequence[int]:
        return p.answers if p.view.source else ()

    def check_turn(self, p: Prepared, i: int) -> dict[str, Any] | None:
        # the first translation must not be the source, whatever the languages (an imported
        # "translate this" answered with the source has the source's language as its inferred
        # target); a later answer may give the source back when asked for in the source language
        exp = p.expected[(i - p.body_start) >> 1]
        if exp.type is not None and INTERACTION_TYPES[exp.type].answer_lang == "target" \
                and (exp.target != p.view.dialogue.get("src_lang") or exp.k == 0) \
                and copies_source(p.view.turns[i]["content"], p.view.source):
            return _NOTHING
        return None


class CopiesPrevious(TurnRule):
    """a revision identical to the previous answer"""

    code = "copies_previous"

    def turns(self, p: Prepared) -> Sequence[int]:
        return p.answers[1:]

    def check_turn(self, p: Prepared, i: int) -> dict[str, Any] | None:
        exp = p.expected[(i - p.body_start) >> 1]
        if (exp.type in _REVISION_TYPES or exp.type is None) and p.tokens[i] == p.tokens[i - 2]:
            return _NOTHING
        return None


class Truncated(TurnRule):
    """an answer cut by the token limit (finish_reason = length)"""

    code = "truncated"

    def check_turn(self, p: Prepared, i: int) -> dict[str, Any] | None:
        return _NOTHING if (p.view.turns[i].get("finish_reason") or "") == "length" else None


class Refusal(TurnRule):
    """"I'm sorry, but I can't…", "抱歉，我无法…" """

    code = "refusal"

    def turns(self, p: Prepared) -> Sequence[int]:
        return p.answers if p.maybe_refusal else ()

    def check_turn(self, p: Prepared, i: int) -> dict[str, Any] | None:
        match = find_refusal(p.view.turns[i]["content"], p.lows[i])
        return None if match is None else {"match": match}


class IdentityLeak(TurnRule):
    """"As an AI language model", "我是ChatGPT", OpenAI when the user did not bring it up"""

    code = "identity_leak"

    def turns(self, p: Prepared) -> Sequence[int]:
        return p.answers if p.maybe_identity else ()

    def check_turn(self, p: Prepared, i: int) -> dict[str, Any] | None:
        turns = p.view.turns
        content, low = turns[i]["content"], p.lows[i]
        ident = find_identity(content, low)
        if ident is None and ("openai" in low or "chatgpt" in low):
            m2 = _OPENAI.search(content)
            # naming OpenAI is a leak only when the user (or the news) did not bring it up
            if m2 is not None and not _OPENAI.search(p.view.source) and not any(
                    _OPENAI.search(u["content"]) for u in turns[:i] if u["role"] == "user"):
                ident = m2.group(0)
        return None if ident is None else {"match": ident}


@dataclass(frozen=True)
class RepeatedNgrams(TurnRule):
    """an answer in which one n-gram occurs ``repeat_ngram_max`` times or more"""

    code = "repeated_ngrams"
    n: int
    max_count: int

    @classmethod
    def from_settings(cls, th: FilterSection) -> RepeatedNgrams:
        return cls(th.repeat_ngram_n, th.repeat_ngram_max)

    def check_turn(self, p: Prepared, i: int) -> dict[str, Any] | None:
        rep = repeated_ngram(p.view.turns[i]["content"], self.n, self.max_count, p.tokens[i], p.view.langs[i])
        return None if rep is None else {"ngram": rep[0], "count": rep[1]}


@dataclass(frozen=True)
class LengthRatio(DialogueRule):
    """first translation too short/long for its source"""

    code = "length_ratio"
    min_ratio: float
    max_ratio: float
    zh_char_weight: float

    @classmethod
    def from_settings(cls, th: FilterSection) -> LengthRatio:
        return cls(th.min_length_ratio, th.max_length_ratio, th.zh_char_weight)

    def check(self, p: Prepared) -> Result:
        d, source = p.view.dialogue, p.view.source
        if p.first_answer is None or not source:
            return self.keep()
        answer = p.view.turns[p.first_answer]["content"]
        cjk = "zh" in (d.get("src_lang"), d.get("tgt_lang")) or bool(_HAN.search(source + answer))
        ls, la = _length(source, cjk, self.zh_char_weight), _length(answer, cjk, self.zh_char_weight)
        if ls > 0:
            ratio = la / ls
            if not self.min_ratio <= ratio <= self.max_ratio:
                return self.drop(ratio=round(ratio, 3), unit="weighted_chars" if cjk else "words")
        return self.keep()


@dataclass(frozen=True)
class LowChrf(DialogueRule):
    """chrF of the first translation against a reference below ``min_chrf`` (off at 0)"""

    code = "low_chrf"
    min_chrf: float

    @classmethod
    def from_settings(cls, th: FilterSection) -> LowChrf | None:
        return cls(th.min_chrf) if th.min_chrf > 0 else None

    def check(self, p: Prepared) -> Result:
        if p.first_answer is None or not p.view.source or not p.view.reference:
            return self.keep()
        from sacrebleu.metrics import (
            CHRF,  # deferred: only runs with min_chrf set (sacrebleu is slow to import)
        )

        score = CHRF().sentence_score(p.view.turns[p.first_answer]["content"], [p.view.reference]).score
        return self.drop(chrf=round(score, 2)) if score < self.min_chrf else self.keep()


class _JudgeRule(TurnRule):
    """A rule over the LLM judge's judgements of the answers (``turn["judgement"]``, None when the
    answer has no current judgement); the checks themselves are :mod:`itcollect.llm.judgement.verdict`'s,
    which look at every answer at once and name the turn they fire at."""

    needs_judgements = True

    @staticmethod
    def answers(p: Prepared) -> list[tuple[int, Any]]:
        """(turn index, judgement) of every answer, built once per dialogue for the judge rules."""
        judged = p.__dict__.get("_judged")
        if judged is None:
            turns = p.view.turns
            judged = p.__dict__["_judged"] = [(i, turns[i].get("judgement")) for i in p.answers]
        return judged

    def finding(self, p: Prepared) -> tuple[int, dict[str, Any]] | None:
        raise NotImplementedError

    def check(self, p: Prepared) -> Result:
        found = self.finding(p)
        return self.keep() if found is None else self.drop(**found[1])


@dataclass(frozen=True)
class LowJudgeScore(_JudgeRule):
    """an answer scored below ``min_judge_score`` (or rated below ``min_judge_rating``)"""

    code = "low_judge_score"
    min_score: float
    min_rating: int

    @classmethod
    def from_settings(cls, th: FilterSection) -> LowJudgeScore | None:
        on = th.min_judge_score < 0 or th.min_judge_rating > 0
        return cls(th.min_judge_score, th.min_judge_rating) if on else None

    def finding(self, p: Prepared) -> tuple[int, dict[str, Any]] | None:
        return judge_verdict.low_score(self.answers(p), self.min_score, self.min_rating)


@dataclass(frozen=True)
class CriticalError(_JudgeRule):
    """more critical errors than ``max_critical_errors`` over all answers (listed at the first)"""

    code = "critical_error"
    max_critical: int

    @classmethod
    def from_settings(cls, th: FilterSection) -> CriticalError | None:
        return cls(th.max_critical_errors) if th.max_critical_errors >= 0 else None

    def finding(self, p: Prepared) -> tuple[int, dict[str, Any]] | None:
        return judge_verdict.too_many_critical(self.answers(p), self.max_critical)


class NotCompliant(_JudgeRule):
    """a revision the judge found not compliant (``require_compliance``)"""

    code = "not_compliant"

    @classmethod
    def from_settings(cls, th: FilterSection) -> NotCompliant | None:
        return cls() if th.require_compliance else None

    def finding(self, p: Prepared) -> tuple[int, dict[str, Any]] | None:
        return judge_verdict.not_compliant(self.answers(p))


class NotJudged(_JudgeRule):
    """an answer without a usable judgement (``require_judge``)"""

    code = "not_judged"

    @classmethod
    def from_settings(cls, th: FilterSection) -> NotJudged | None:
        return cls() if th.require_judge else None

    def finding(self, p: Prepared) -> tuple[int, dict[str, Any]] | None:
        return judge_verdict.not_judged(self.answers(p))


#: Every rule, in the order their reasons are listed (turn rules: ordered by the turn they fire at).
RULES: list[type[Rule]] = [RolesNotAlternating, EmptyTurn, TooFewTurns, OverlapNotPicked, ReviewRejected,
                           WrongLanguageRequest, WrongLanguageAnswer, CopiesSource, CopiesPrevious, Truncated,
                           Refusal, IdentityLeak, RepeatedNgrams, LengthRatio, LowChrf, LowJudgeScore,
                           CriticalError, NotCompliant, NotJudged]


def build_rules(th: FilterSection, rules: Sequence[type[Rule]] | None = None) -> list[Rule]:
    """The rules that run with the settings ``th``, each with its parameters, in RULES order (a rule
    the settings turn off is left out)."""
    built = (cls.from_settings(th) for cls in (RULES if rules is None else rules))
    return [r for r in built if r is not None]


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


def check_dialogue(view: DialogueView, rules: Sequence[Rule]) -> tuple[list[str], dict[str, Any]]:
    """The reason codes of every rule that drops the dialogue, and their details (which turn,
    what was measured). Reasons are listed structure rules first, then turn rules by the turn they
    fire at, then dialogue rules (each group in RULES order)."""
    found: list[tuple[tuple[int, int, int], str, dict[str, Any]]] = []
    for pos, rule in enumerate(rules):
        if isinstance(rule, StructureRule):
            keep, code, info = rule.check(view)
            if not keep:
                found.append(((0, 0, pos), code, info))
    if not found or not any(code in _MALFORMED for _, code, _ in found):
        p = prepare(view)
        for pos, rule in enumerate(rules):
            if isinstance(rule, TurnRule):
                keep, code, info = rule.check(p)
                if not keep:
                    found.append(((1, info.get("turn", 0), pos), code, info))
            elif isinstance(rule, DialogueRule):
                keep, code, info = rule.check(p)
                if not keep:
                    found.append(((2, 0, pos), code, info))
    if not found:
        return [], {}
    found.sort(key=lambda f: f[0])
    return [code for _, code, _ in found], {code: info for _, code, info in found if info}


def first_reference(refs: Sequence[dict[str, Any]], lang: str | None) -> str | None:
    for r in refs:
        if r.get("lang") == lang and r.get("text"):
            return r["text"]
    return None
