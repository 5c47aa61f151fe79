"""Reading a judge's answer, tolerantly, and the MQM arithmetic.

An answer is JSON (structured output), or JSON somewhere in prose, or in a ```json fence. Within it,
key names and values are read leniently (``type`` for ``category``, ``"Major"`` for ``major``,
``"partially"`` for ``partly``, ``"4/5"`` for 4); a category outside :data:`~.schema.CATEGORIES` is
recorded as ``other`` (and scored by its severity), a severity outside
:data:`~.schema.SEVERITIES` is recorded as given and not scored. What cannot be read — no JSON
object, a truncated one, a required part missing (the errors list, the rating, the compliance of
a revision) — raises :class:`Unparsable` with the reason: the run asks once more, then stores the
turn as ``unparsed`` with the raw text. Never a silent empty score.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from itcollect.llm.judgement.schema import CATEGORIES, OTHER, SEVERITIES, Weights


class Unparsable(ValueError):
    """The answer holds no usable judgement (the message says why)."""


@dataclass
class Judgement:
    """A parsed judgement: ``score`` (translation kind), error spans, compliance, rating."""

    kind: str
    errors: list[dict[str, Any]] = field(default_factory=list)
    score: float | None = None
    n_critical: int = 0
    compliance: str | None = None
    reason: str | None = None
    rating: int | None = None
    in_instruction_language: bool | None = None


_FENCE = re.compile(r"```[ \t]*(?:json|JSON|javascript)?[ \t]*\n?(.*?)```", re.S)
_SQUASH = re.compile(r"[^a-z]+")
_NO_ERROR = {"", "noerror", "none", "noerrors", "ok", "correct"}

# squashed spellings -> category; a category is also recognised by its sub-category alone
# ("Mistranslation", "omission") and by a known prefix ("terminology - inappropriate for context")
_CATEGORY_KEYS: dict[str, str] = {}
for _c in CATEGORIES:
    _CATEGORY_KEYS[_SQUASH.sub("", _c)] = _c
    if "/" in _c:
        _CATEGORY_KEYS[_SQUASH.sub("", _c.split("/", 1)[1])] = _c
_CATEGORY_KEYS.update({"untranslatedtext": "accuracy/untranslated", "sourcelanguagefragment": "accuracy/untranslated",
                       "locale": "locale_convention", "nottranslated": "non_translation",
                       "notranslation": "non_translation"})
_CATEGORY_PREFIXES = ("accuracymistranslation", "accuracyomission", "accuracyaddition", "accuracyuntranslated",
                      "fluencygrammar", "fluencyspelling", "fluencypunctuation", "fluencyregister",
                      "terminology", "style", "localeconvention", "locale", "nontranslation")


def normalize_category(value: Any) -> str:
    """One of :data:`CATEGORIES`, or ``other``."""
    key = _SQUASH.sub("", str(value or "").lower())
    if key in _CATEGORY_KEYS:
        return _CATEGORY_KEYS[key]
    for prefix in _CATEGORY_PREFIXES:
        if key.startswith(prefix):
            return _CATEGORY_KEYS[prefix]
    return OTHER


def normalize_severity(value: Any) -> str:
    """``critical`` / ``major`` / ``minor``, or the value as given (lower-cased) when unknown."""
    text = str(value if value is not None else "").strip().lower()
    return text if text in SEVERITIES else text or "unknown"


def mqm_score(errors: list[dict[str, Any]], weights: Weights) -> tuple[float, int]:
    """(score, critical errors): minus the weighted sum, floored at ``weights.floor``; an error of
    category non_translation counts as critical."""
    total = sum(weights.weight(e["category"], e["severity"]) for e in errors)
    n_critical = sum(1 for e in errors if e["severity"] == "critical" or e["category"] == "non_translation")
    return (max(weights.floor, -total) if total else 0.0), n_critical


def extract_json(text: str) -> Any:
    """The JSON value an answer holds: the whole text, a fenced block, or the first object in
    prose (a list is returned only when it is the whole text or a fenced block). None if none."""
    s = text.strip()
    candidates = [s] + [m.group(1).strip() for m in _FENCE.finditer(s)]
    for c in candidates:
        if c[:1] in ("{", "["):
            try:
                return json.loads(c)
            except ValueError:
                pass
    decoder = json.JSONDecoder()
    for tries, m in enumerate(re.finditer(r"\{", s)):
        if tries >= 50:
            break
        try:
            value, _ = decoder.raw_decode(s, m.start())
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None


def _get(obj: dict[str, Any], *names: str) -> Any:
    for n in names:
        if n in obj:
            return obj[n]
    lowered = {str(k).lower(): v for k, v in obj.items()}
    for n in names:
        if n in lowered:
            return lowered[n]
    return None


def _compliance(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    key = _SQUASH.sub("", str(value or "").lower())
    if key in ("yes", "true", "compliant", "full", "fully", "complied", "y"):
        return "yes"
    if key in ("partly", "partial", "partially", "somewhat", "partlycompliant", "partiallycompliant"):
        return "partly"
    if key in ("no", "false", "notcompliant", "noncompliant", "n", "none"):
        return "no"
    raise Unparsable(f"compliance {value!r} is not yes, partly or no")


def _rating(value: Any) -> int:
    if isinstance(value, bool):
        raise Unparsable(f"rating {value!r} is not 1..5")
    if isinstance(value, (int, float)) and float(value).is_integer():
        r = int(value)
    else:
        m = re.fullmatch(r"\s*([1-5])(?:\.0+)?\s*(?:/\s*5)?\s*", str(value))
        if not m:
            raise Unparsable(f"rating {value!r} is not 1..5")
        r = int(m.group(1))
    if not 1 <= r <= 5:
        raise Unparsable(f"rating {value!r} is not 1..5")
    return r


def _boolean(value: Any, what: str) -> bool:
    if isinstance(value, bool):
        return value
    key = _SQUASH.sub("", str(value or "").lower())
    if key in ("yes", "true", "y"):
        return True
    if key in ("no", "false", "n"):
        return False
    raise Unparsable(f"{what} {value!r} is not true or false")


def _errors(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise Unparsable("'errors' is not a list")
    out = []
    for item in value:
        if not isinstance(item, dict):
            raise Unparsable(f"an error span is not an object: {str(item)[:80]!r}")
        cat = _get(item, "category", "type", "error_type", "error_category")
        sev = _get(item, "severity", "level", "error_severity")
        span = _get(item, "span", "text", "quote", "error_span", "error", "target")
        if _SQUASH.sub("", str(cat or "").lower()) in _NO_ERROR and \
                _SQUASH.sub("", str(sev or "").lower()) in _NO_ERROR | {"neutral"}:
            continue  # an explicit "no-error" entry
        if cat is None and sev is None:
            raise Unparsable(f"an error span has neither category nor severity: {str(item)[:80]!r}")
        out.append({"category": normalize_category(cat), "severity": normalize_severity(sev),
                    "span": "" if span is None else str(span)})
    return out


def parse_judgement(text: str, kind: str, revision: bool, weights: Weights) -> Judgement:
    """The judgement in ``text`` for a turn of ``kind``; raises :class:`Unparsable`."""
    value = extract_json(text)
    if value is None:
        raise Unparsable("no JSON object in the answer" + (" (cut off?)" if "{" in text else ""))
    if isinstance(value, list) and kind == "translation" and not revision:
        value = {"errors": value}
    if not isinstance(value, dict):
        raise Unparsable(f"the JSON is a {type(value).__name__}, not an object")
    j = Judgement(kind)
    if kind == "translation":
        errors = _get(value, "errors", "error_spans", "mqm_errors", "annotations", "error")
        if errors is None:
            raise Unparsable("no 'errors' in the JSON")
        j.errors = _errors(errors)
        j.score, j.n_critical = mqm_score(j.errors, weights)
    else:
        rating = _get(value, "rating", "score")
        if rating is None:
            raise Unparsable("no 'rating' in the JSON")
        j.rating = _rating(rating)
        lang = _get(value, "in_instruction_language", "instruction_language", "in_user_language")
        if lang is None:
            raise Unparsable("no 'in_instruction_language' in the JSON")
        j.in_instruction_language = _boolean(lang, "in_instruction_language")
    if revision:
        comp = _get(value, "compliance", "compliant", "complies")
        if comp is None:
            raise Unparsable("no 'compliance' in the JSON of a revision")
        j.compliance = _compliance(comp)
        reason = _get(value, "reason", "explanation", "rationale")
        j.reason = None if reason is None else " ".join(str(reason).split())[:500]
    return j


__all__ = ["Judgement", "Unparsable", "parse_judgement", "extract_json", "mqm_score", "normalize_category",
           "normalize_severity"]
