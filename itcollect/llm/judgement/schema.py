"""What the judge asks for: error categories and severities (MQM), weights, the JSON schemas of a
judgement, and which answers get which judgement.

Two kinds of judgement:

* ``translation`` — for an answer that carries a translation (:data:`TRANSLATION_TYPES`; an imported
  dialogue's first answer too): MQM error spans against the text it translates, each with a
  category (:data:`CATEGORIES`) and a severity (:data:`SEVERITIES`), scored with :class:`Weights`;
* ``rating`` — for an explanation or a follow-up answer (and an imported dialogue's later, untyped
  answers): a 1-5 rating of correctness and helpfulness, and whether it is written in the
  instruction language.

Every answer after the first (a revision, in the broad sense: it answers a request about the
translation) also gets *compliance* with that request — ``yes`` / ``partly`` / ``no`` and a one-line
reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from itcollect.settings import settings

#: Error categories (MQM, as the GEMBA-MQM line of work uses them). An unknown category in an
#: answer is recorded as :data:`OTHER` and still scored by its severity.
CATEGORIES = ("accuracy/mistranslation", "accuracy/omission", "accuracy/addition", "accuracy/untranslated",
              "fluency/grammar", "fluency/spelling", "fluency/punctuation", "fluency/register",
              "terminology", "style", "locale_convention", "non_translation")
OTHER = "other"
#: Severities that are scored; another severity is recorded as given and not scored.
SEVERITIES = ("critical", "major", "minor")
COMPLIANCE = ("yes", "partly", "no")
KINDS = ("translation", "rating")

#: Interaction types whose answer carries a translation (judged for MQM errors).
TRANSLATION_TYPES = frozenset({"translate", "terminology", "style", "length", "polish", "correct", "retarget",
                               "back_translate"})

#: The system prompt and the prompt of each kind (``prompts/judge/``).
SYSTEM_TEMPLATE = "judge/system.j2"
TEMPLATES = {"translation": "judge/translation.j2", "rating": "judge/rating.j2"}



def kind_of(type_id: str | None) -> str:
    """``translation`` for a translation-carrying type, else ``rating`` (explain, follow_up, untyped)."""
    return "translation" if type_id in TRANSLATION_TYPES else "rating"


@dataclass(frozen=True)
class Weights:
    """MQM weights (``[judge]``, whose defaults are in the default config): a turn's score is minus
    the weighted sum of its errors, floored."""

    minor: float
    major: float
    critical: float
    non_translation: float
    floor: float

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None = None) -> Weights:
        j = settings(config or {}).judge
        return cls(j.minor, j.major, j.critical, j.non_translation, j.floor)

    def weight(self, category: str, severity: str) -> float:
        """The weight of one error; 0 for a severity that is not scored (non_translation always counts)."""
        if category == "non_translation":
            return self.non_translation
        return {"minor": self.minor, "major": self.major, "critical": self.critical}.get(severity, 0.0)


def _error_item() -> dict[str, Any]:
    return {"type": "object", "additionalProperties": False, "required": ["span", "category", "severity"],
            "properties": {"span": {"type": "string"},
                           "category": {"type": "string", "enum": [*CATEGORIES, OTHER]},
                           "severity": {"type": "string", "enum": list(SEVERITIES)}}}


def json_schema(kind: str, revision: bool) -> dict[str, Any]:
    """The JSON schema of a judgement (OpenAI strict mode: every property required, no others)."""
    if kind == "translation":
        props: dict[str, Any] = {"errors": {"type": "array", "items": _error_item()}}
    else:
        props = {"rating": {"type": "integer", "enum": [1, 2, 3, 4, 5]},
                 "in_instruction_language": {"type": "boolean"}}
    if revision:
        props["compliance"] = {"type": "string", "enum": list(COMPLIANCE)}
        props["reason"] = {"type": "string"}
    return {"type": "object", "additionalProperties": False, "required": list(props), "properties": props}


def response_format(mode: str, kind: str, revision: bool) -> dict[str, Any] | None:
    """The ``response_format`` request parameter for ``[llm.judge] response_format``:
    ``json_schema`` (OpenAI, vLLM), ``json_object`` (llama.cpp's server: the schema becomes a
    grammar) or ``none`` (no parameter: the prompt alone asks for JSON)."""
    schema = json_schema(kind, revision)
    if mode == "json_schema":
        name = f"{kind}_judgement" + ("_revision" if revision else "")
        return {"type": "json_schema", "json_schema": {"name": name, "strict": True, "schema": schema}}
    if mode == "json_object":
        return {"type": "json_object", "schema": schema}
    return None


__all__ = ["CATEGORIES", "OTHER", "SEVERITIES", "COMPLIANCE", "KINDS", "TRANSLATION_TYPES", "SYSTEM_TEMPLATE",
           "TEMPLATES", "Weights", "kind_of", "json_schema", "response_format"]
