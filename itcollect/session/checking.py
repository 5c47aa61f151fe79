"""The checks on one open dialogue's turns, as simulate runs them: what a request and an answer
are expected to be (:func:`itcollect.kernel.dialogue.expectations` over the recorded requests),
the parameters a human request carries, and the warnings of a request or an answer. Pure: the
session engine passes the active turns it read from the store."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from itcollect.kernel.dialogue import Expectation, RequestInfo, expectations, planned_params
from itcollect.kernel.errors import ItcollectError
from itcollect.kernel.taxonomy import INTERACTION_TYPES, check_answer, check_request
from itcollect.session.wording import human_request_params

DEFAULT_FOLLOW_TYPE = "follow_up"


class NoRequest(ItcollectError):
    """An answer was checked in a dialogue without a request."""


@dataclass(frozen=True)
class TurnChecks:
    """The checks of one dialogue: its spec, its source text, the workspace's languages and
    language-identification backend."""

    spec: dict[str, Any]
    source: str
    languages: tuple[str, ...]
    backend: str

    def expectation(self, turns: list[dict[str, Any]], next_type: str | None = None,
                    pending: dict[str, Any] | None = None, *, last_request: bool = False) -> Expectation:
        """What a turn expects. ``last_request``: the last recorded request, whose answer is being
        checked (the answer itself is not part of its context); else the next request: ``pending``
        (its ``type`` and ``params``, not committed yet) or, without it, the next one as planned
        (of type ``next_type``)."""
        requests: list[RequestInfo] = []
        for t in turns:
            if t["role"] == "user":
                requests.append(RequestInfo(t.get("interaction_type"), t["params"] or {}))
            elif requests:
                r = requests[-1]
                requests[-1] = RequestInfo(r.type, r.params, t["content"])
        if last_request:
            if not requests:
                raise NoRequest("there is no request yet")
            requests[-1] = RequestInfo(requests[-1].type, requests[-1].params)
        elif pending is not None:
            requests.append(RequestInfo(pending["type"], pending["params"]))
        else:
            requests.append(RequestInfo(next_type, planned_params(self.spec, len(requests))))
        spec = self.spec
        return expectations(src_lang=spec["src_lang"], tgt_lang=spec["tgt_lang"],
                            instruction_lang=spec["instruction_lang"], requests=requests)[-1]

    def _context(self, exp: Expectation, request: str) -> Any:
        return exp.check_context(source=self.source, src_lang=self.spec["src_lang"],
                                 instruction_lang=self.spec["instruction_lang"], request=request,
                                 languages=self.languages, backend=self.backend)

    def answer_warnings(self, turns: list[dict[str, Any]], text: str) -> list[str]:
        """Failure reasons of an answer to the last request (the type's checks, as in simulate)."""
        request = turns[max(j for j, t in enumerate(turns) if t["role"] == "user")]
        exp = self.expectation(turns, last_request=True)
        type_id = exp.type if exp.type is not None else DEFAULT_FOLLOW_TYPE
        return check_answer(type_id, text, self._context(exp, request["content"]))

    def answer_lang(self, turns: list[dict[str, Any]]) -> str:
        """The language an answer to the last request must be in (what simulate records as the turn's lang)."""
        return self.expectation(turns, last_request=True).answer_lang or self.spec["instruction_lang"]

    def request_params(self, turns: list[dict[str, Any]], type_id: str, text: str, target: str) -> dict[str, Any]:
        """The planned parameters of the next turn, corrected by what the annotator actually asked,
        so the answer is checked against the request on record (a human may ask for 15 words, not
        the plan's 12)."""
        params = planned_params(self.spec, sum(1 for t in turns if t["role"] == "user"))
        params.update(human_request_params(type_id, text, target, self.languages))
        if type_id == "style" and "register" not in human_request_params(type_id, text, "", ()):
            params.pop("register", None)
        return params

    def request_warnings(self, turns: list[dict[str, Any]], type_id: str, text: str,
                         params: dict[str, Any]) -> list[str]:
        """Failure reasons of a request about to be committed (its type's request checks)."""
        if type_id not in INTERACTION_TYPES:
            return []
        exp = self.expectation(turns, pending={"type": type_id, "params": params})
        return check_request(type_id, text, self._context(exp, text))
