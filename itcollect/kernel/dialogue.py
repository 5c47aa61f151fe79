"""What each user turn of a dialogue expects: one rule for simulate, the session and the filter.

A dialogue is a sequence of user turns, each a request with an interaction type and parameters,
answered by the assistant. What the answer to turn ``k`` must be — its type, its parameters, the
target language in force (an earlier ``retarget`` changes it), the language the answer must be
written in, the answer it revises — follows from the turns before it. simulate asks before it
writes a turn (from the plan), the session asks about what the annotator typed (the request's own
parameters), and the filter asks about finished dialogues (from the recorded turns); all three call
:func:`expectations`, so they cannot disagree about what a turn expects.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from itcollect.kernel.langid import DEFAULT_LANGUAGES
from itcollect.kernel.taxonomy import INTERACTION_TYPES, CheckContext

#: The type of a first turn whose type was not recorded (an imported dialogue asks for a translation).
FIRST_TURN_TYPE = "translate"


@dataclass(slots=True)  # not frozen, for the filter's sake (see Expectation)
class RequestInfo:
    """What is known of one user turn: its type (None: not recorded, as in imports), its
    parameters, and — once answered — the answer's text and its detected language."""

    type: str | None
    params: Mapping[str, Any]
    answer: str | None = None
    answer_detected: str | None = None


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ costs the filter ~1 us a field
class Expectation:
    """What the answer to user turn ``k`` must be.

    ``target_before``: the target language when the request is made; ``target``: the one its answer
    is held to (after a ``retarget``: the new one). ``answer_lang``: the language the answer is
    written in (recorded as the answer turn's ``lang``); ``strict``: the whole answer must be in it
    (False for a back-translation, which mixes languages, and for a turn of unknown type).
    ``previous_answer``: what a revision must differ from (for a revising type, the last
    translation); ``previous_translation``: the last answer that was a translation."""

    k: int
    type: str | None
    params: dict[str, Any]
    target_before: str | None
    target: str | None
    answer_lang: str | None
    strict: bool
    previous_answer: str | None
    previous_translation: str | None
    must_include: tuple[str, ...]

    @property
    def revises(self) -> bool:
        t = INTERACTION_TYPES.get(self.type or "")
        return t is not None and t.revises

    def check_context(self, *, source: str, src_lang: str, instruction_lang: str, request: str = "",
                      languages: Sequence[str] = DEFAULT_LANGUAGES, backend: str = "lingua") -> CheckContext:
        """The taxonomy's checks' view of this turn (its request, or its answer to ``request``)."""
        return CheckContext(source=source, src_lang=src_lang, tgt_lang=self.target_before or "",
                            instruction_lang=instruction_lang, request=request,
                            previous_answer=self.previous_answer, previous_translation=self.previous_translation,
                            params=dict(self.params), must_include=self.must_include, languages=tuple(languages),
                            backend=backend)


def expectations(*, src_lang: str | None, tgt_lang: str | None, instruction_lang: str | None,
                 requests: Sequence[RequestInfo]) -> list[Expectation]:
    """The expectation of every turn in ``requests`` (answered ones and, last, possibly one not
    answered yet), in one pass.

    A ``retarget`` changes the target to its ``lang`` parameter; a recorded retarget without one
    (a person who asked for "another language") takes the language its answer was detected in,
    unless that is the instruction language."""
    out: list[Expectation] = []
    tgt = tgt_lang
    previous_answer: str | None = None
    previous_translation: str | None = None
    for k, r in enumerate(requests):
        type_id = r.type if r.type in INTERACTION_TYPES else None
        if type_id is None and k == 0:
            type_id = FIRST_TURN_TYPE
        t = INTERACTION_TYPES.get(type_id) if type_id is not None else None
        params = dict(r.params)
        before = tgt
        if type_id == "retarget":
            new = params.get("lang")
            if new:
                tgt = new
            elif r.answer_detected and r.answer_detected != instruction_lang:
                tgt = r.answer_detected
        if t is None:
            answer_lang, strict = None, False
        elif t.answer_lang == "target":
            answer_lang, strict = tgt, True
        else:  # "instruction"; "mixed" (a back-translation with remarks in the user's language)
            answer_lang, strict = instruction_lang, t.answer_lang == "instruction"
        revised = previous_translation if t is not None and t.revises and previous_translation else previous_answer
        must_include = tuple(params.get("must_include") or ()) if k == 0 else ()
        out.append(Expectation(k, type_id, params, before, tgt, answer_lang, strict, revised, previous_translation,
                               must_include))
        if r.answer is not None:
            previous_answer = r.answer
            if t is not None and t.revises:
                previous_translation = r.answer
    return out


def answered_request(user: Mapping[str, Any], answer: Mapping[str, Any], detected: str | None = None) -> RequestInfo:
    """A stored user turn and its answer as :func:`expectations` reads them (filter and judge):
    the type recorded on either turn (the answer's first), the parameters of both (the
    request's win), the answer's text and its detected language."""
    t = answer.get("interaction_type")
    if t not in INTERACTION_TYPES:
        t = user.get("interaction_type")
    ap, up = answer.get("params") or {}, user.get("params") or {}
    if not isinstance(ap, dict):
        ap = {}
    params = {**ap, **{k: v for k, v in up.items() if v}} if isinstance(up, dict) and up else ap
    return RequestInfo(t, params, answer["content"], detected)


def planned_params(spec: Mapping[str, Any], k: int) -> dict[str, Any]:
    """Planned parameters of user turn ``k``: plan keeps per-turn ones in ``params.turns`` and the
    first turn's (must-include terms; not the phrasing variant) at the top level."""
    params = spec.get("params") or {}
    per_turn = params.get("turns")
    out: dict[str, Any] = {}
    if k == 0:
        out.update({key: v for key, v in params.items() if key not in ("turns", "variant")})
    if isinstance(per_turn, list) and k < len(per_turn) and isinstance(per_turn[k], dict):
        out.update(per_turn[k])
    return out


def planned_turns(spec: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The plan of a spec as a person reads it: one ``{"type": ..., **params}`` per user turn."""
    return [{"type": t, **planned_params(spec, k)} for k, t in enumerate(spec.get("interaction_types") or [])]


__all__ = ["RequestInfo", "Expectation", "expectations", "answered_request", "planned_params", "planned_turns", "FIRST_TURN_TYPE"]
