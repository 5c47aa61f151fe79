"""The dialogue of a simulated spec as a resumable state machine, shared by both simulate modes.

:class:`DialogueDriver` has no I/O of its own beyond the store reads of :meth:`~DialogueDriver.load`
and the store writes of :meth:`~DialogueDriver.load_or_create` and :meth:`~DialogueDriver.record`:

* :meth:`~DialogueDriver.load` rebuilds a dialogue's state from its committed turns, so a resume
  continues from the last committed turn (:meth:`~DialogueDriver.load_or_create` also creates the
  dialogue record the first time; ``load`` never writes, for dry runs);
* :meth:`~DialogueDriver.next_step` says what happens next: the first request from a template (or
  from the simulated annotator, ``[simulate] first_turn``), the simulated annotator's next request,
  or the assistant's next answer — with the exact messages,
  the template name and hash, and the *sample number* (the count of rejected samples already
  stored at that position, so a re-run after a crash asks for the same sample and gets the
  ledger's answer, while a re-sample after a failed validation gets a new call);
* :meth:`~DialogueDriver.apply` validates an answer (taxonomy checks) into an :class:`Outcome`;
* :meth:`~DialogueDriver.record` commits it: an accepted turn, or a rejected sample (kept with
  ``state='rejected'`` and its reasons) — and fails the dialogue once the retries are used up.

The online run (:mod:`.online`) drives many dialogues with asyncio tasks over
:class:`itcollect.llm.LLMClient`; the Batch API mode (:mod:`.batch_rounds`) drives the same driver
round by round over :mod:`itcollect.llm.batch`. Neither knows what a turn expects: that is here
(and in :mod:`itcollect.kernel.dialogue`).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

from itcollect.kernel.dialogue import Expectation, RequestInfo, expectations, planned_params
from itcollect.kernel.prompting import Prompts, load_prompts, quote_source
from itcollect.kernel.taxonomy import INTERACTION_TYPES, CheckContext, check_opening_request
from itcollect.settings import settings
from itcollect.store.interfaces import SimulateStore

#: The reason prefix of a dialogue failed because a turn's samples all failed validation.
VALIDATION = "validation"
#: The annotator prompt of a first request written by the LLM (``[simulate] first_turn``).
OPENING_TEMPLATE = "annotator/translate.j2"

_LABEL = re.compile(r"^\s*(?:\[?(?:user|human|annotator|request|用户|请求)\]?\s*[:：]\s*|\[(?:user|用户)\]\s*)",
                    re.IGNORECASE)
_WRAP = (('"', '"'), ("“", "”"), ("'", "'"), ("「", "」"))


@dataclass
class Step:
    """One thing a dialogue needs next.

    ``kind``: ``"template"`` (first request, no LLM call: ``text`` is the request), ``"annotator"``
    or ``"assistant"`` (an LLM call with ``messages`` and ``sample``).
    """

    kind: str
    idx: int
    turn_no: int
    interaction_type: str
    template_name: str
    template_hash: str
    expected_lang: str
    params: dict[str, Any]
    messages: list[dict[str, str]] | None = None
    text: str | None = None
    sample: int = 0
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def role(self) -> str:
        return "assistant" if self.kind == "assistant" else "annotator"

    @property
    def opening(self) -> bool:
        """A first request written by the annotator LLM (``[simulate] first_turn``)."""
        return self.kind == "annotator" and self.idx == 0


@dataclass
class Outcome:
    """The verdict on one answer: ``reasons`` empty = accepted (``content`` is what is stored)."""

    content: str
    reasons: list[str]
    result: Any = None

    @property
    def accepted(self) -> bool:
        return not self.reasons


@dataclass
class DialogueState:
    spec: dict[str, Any]
    source_text: str
    dialogue_id: str | None
    turns: list[dict[str, Any]]
    rejected: dict[int, int]
    status: str = "in_progress"
    status_reason: str | None = None
    #: the step :class:`itcollect.simulate.machine.DialogueMachine` asked the calls of, until applied
    pending: Step | None = field(default=None, repr=False)
    #: ``simulate --compare``: the dialogue's systems and its compared turn in play
    #: (:class:`itcollect.simulate.compare.Compared`)
    compare: Any = field(default=None, repr=False)

    @property
    def done(self) -> bool:
        return self.status in ("done", "failed", "skipped")


def clean_request(text: str) -> str:
    """An annotator's output as a user would have typed it: no "User:" label, no wrapping quotes."""
    t = _LABEL.sub("", text.strip()).strip()
    for a, b in _WRAP:
        if len(t) > 2 and t.startswith(a) and t.endswith(b) and t.count(a) + (t.count(b) if a != b else 0) == 2:
            t = t[1:-1].strip()
    return t


class DialogueDriver:
    """The per-dialogue state machine shared by online simulate and the Batch API mode."""

    def __init__(self, config: dict[str, Any], *, prompts: Prompts | None = None, assistant_model: str = "",
                 annotator_model: str = "", base: Any = None) -> None:
        self.config = config
        self.prompts = prompts or load_prompts(config, base)
        typed = settings(config)
        self.languages = typed.workspace.languages
        self.backend = typed.ingest.langid_backend
        sim = typed.simulate
        self.max_turn_retries = sim.max_turn_retries
        self.first_turn, self.first_turn_llm_share = sim.first_turn, sim.first_turn_llm_share
        self.assistant_model = assistant_model
        self.annotator_model = annotator_model
        self._assistant_system: dict[str, Any] = {}

    # -- state -------------------------------------------------------------------------------------
    def load(self, store: SimulateStore, spec: dict[str, Any]) -> DialogueState:
        """The dialogue of ``spec`` as committed; writes nothing (a spec with no dialogue yet gets
        an empty state with ``dialogue_id`` None: what a dry run walks)."""
        d = store.dialogue_for_spec(spec["id"])
        if d is None:
            src = store.get_source(spec["source_id"])
            return DialogueState(spec, src["text"] if src else "", None, [], {})
        return self._state(store, spec, d)

    def load_or_create(self, store: SimulateStore, spec: dict[str, Any]) -> DialogueState:
        """The dialogue of ``spec`` as committed, creating its record (status in_progress) the
        first time: what a run that will write turns starts from."""
        d = store.dialogue_for_spec(spec["id"])
        if d is not None:
            return self._state(store, spec, d)
        src = store.get_source(spec["source_id"])
        text = src["text"] if src else ""
        did = store.create_dialogue(origin="simulated", spec_id=spec["id"], annotator=self.annotator_model or None,
                                    source_id=spec["source_id"], source_text=text, src_lang=spec["src_lang"],
                                    tgt_lang=spec["tgt_lang"], instruction_lang=spec["instruction_lang"],
                                    meta={"seed": spec["seed"], "seq": spec["seq"],
                                          "assistant_model": self.assistant_model})
        return DialogueState(spec, text, did, [], {})

    def _state(self, store: SimulateStore, spec: dict[str, Any], d: dict[str, Any]) -> DialogueState:
        all_turns = store.get_turns(d["id"], include_inactive=True)
        active = [t for t in all_turns if t["state"] == "active"]
        rejected: dict[int, int] = {}
        for t in all_turns:
            if t["state"] == "rejected":
                rejected[t["idx"]] = rejected.get(t["idx"], 0) + 1
        return DialogueState(spec, d["source_text"] or "", d["id"], active, rejected, d["status"], d["status_reason"])

    def _recorded_params(self, spec: dict[str, Any], k: int) -> dict[str, Any]:
        """The per-turn parameters a turn's record carries (the first turn's template step records
        its phrasing variant and terms itself)."""
        turns = spec["params"].get("turns") or []
        return dict(turns[k]) if k < len(turns) else {}

    def expectation(self, state: DialogueState, k: int) -> Expectation:
        """What user turn ``k`` expects, from the plan and the answers committed so far."""
        spec = state.spec
        answers = [x["content"] for x in state.turns if x["role"] == "assistant"]
        requests = [RequestInfo(spec["interaction_types"][j], planned_params(spec, j),
                                answers[j] if j < len(answers) else None) for j in range(k + 1)]
        return expectations(src_lang=spec["src_lang"], tgt_lang=spec["tgt_lang"],
                            instruction_lang=spec["instruction_lang"], requests=requests)[k]

    def context(self, state: DialogueState, k: int, request: str = "") -> CheckContext:
        """What the checks of user turn ``k`` (its request, and its answer to ``request``) need."""
        spec = state.spec
        return self.expectation(state, k).check_context(
            source=state.source_text, src_lang=spec["src_lang"], instruction_lang=spec["instruction_lang"],
            request=request, languages=self.languages, backend=self.backend)

    # -- what next ---------------------------------------------------------------------------------
    def opening_by_llm(self, spec: dict[str, Any]) -> bool:
        """Whether the annotator LLM writes this spec's first request (``[simulate] first_turn``).
        "mixed" picks by a hash of the spec's id and seed: the same spec always gets the same
        answer, so a resumed or re-run simulation asks for the same calls."""
        if self.first_turn == "template":
            return False
        if self.first_turn == "llm":
            return True
        key = f"{spec['id']}:{spec.get('seed')}".encode()
        draw = int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big") / 2.0 ** 64
        return draw < self.first_turn_llm_share

    def opening_llm_samples(self) -> int:
        """How many LLM samples a first request gets before the template stands in."""
        return max(1, self.max_turn_retries)

    def next_step(self, state: DialogueState) -> Step | None:
        """The next step of the dialogue, or None when it is complete (or finished otherwise)."""
        if state.done:
            return None
        spec = state.spec
        idx = len(state.turns)
        if idx >= 2 * spec["n_turns"]:
            return None
        k = idx // 2
        t = spec["interaction_types"][k]
        instr = spec["instruction_lang"]
        sample = state.rejected.get(idx, 0)
        params = self._recorded_params(spec, k)
        exp = self.expectation(state, k)
        if idx % 2 == 0 and k == 0:
            terms = list(spec["params"].get("must_include") or [])
            variant = int(spec["params"].get("variant", 0))
            by_llm = self.opening_by_llm(spec)
            if by_llm and sample < self.opening_llm_samples():
                return self._opening_step(state, t, variant, terms, sample)
            name = f"first_turn_{instr}.j2"
            r = self.prompts.render(name, source=state.source_text, src_lang=spec["src_lang"],
                                    tgt_lang=spec["tgt_lang"], variant=variant, terms=terms)
            p: dict[str, Any] = {"variant": variant}
            if terms:
                p["must_include"] = terms
            if by_llm:  # the LLM's samples all failed their checks: the template stands in
                p["first_turn"] = "template_fallback"
            return Step("template", idx, k, t, r.name, r.hash, instr, p, text=r.text)
        if idx % 2 == 0:
            sys_r = self.prompts.render("annotator_system.j2", instruction_lang=instr, type_id=t,
                                        src_lang=spec["src_lang"], tgt_lang=exp.target_before, params=params,
                                        turn_no=k, n_turns=spec["n_turns"])
            name = f"annotator/{t}.j2"
            user_r = self.prompts.render(name, source=state.source_text, src_lang=spec["src_lang"],
                                         tgt_lang=exp.target_before, instruction_lang=instr,
                                         dialogue=[{"role": x["role"], "content": x["content"]} for x in state.turns],
                                         params=params)
            messages = [{"role": "system", "content": sys_r.text}, {"role": "user", "content": user_r.text}]
            return Step("annotator", idx, k, t, user_r.name, user_r.hash, instr, params, messages=messages,
                        sample=sample, provenance={"system_template": sys_r.name,
                                                   "system_template_hash": sys_r.hash})
        system = self._assistant_system.get(instr)
        if system is None:  # the same for every dialogue of an instruction language: render once
            system = self._assistant_system[instr] = self.prompts.render("assistant_system.j2", instruction_lang=instr)
        messages = [{"role": "system", "content": system.text}]
        messages += [{"role": x["role"], "content": x["content"]} for x in state.turns]
        return Step("assistant", idx, k, t, system.name, system.hash, exp.answer_lang or instr, params,
                    messages=messages, sample=sample)

    def _opening_step(self, state: DialogueState, type_id: str, variant: int, terms: list[str],
                      sample: int) -> Step:
        """The annotator LLM's call for a first request. It writes the request's own words; the
        quoted source is attached after them as the templates do (see :meth:`apply`), so the
        source reaches the assistant unaltered however the model words its request."""
        spec = state.spec
        instr = spec["instruction_lang"]
        params: dict[str, Any] = {"must_include": terms} if terms else {}
        sys_r = self.prompts.render("annotator_system.j2", instruction_lang=instr, type_id=type_id,
                                    src_lang=spec["src_lang"], tgt_lang=spec["tgt_lang"], params=params,
                                    turn_no=0, n_turns=spec["n_turns"])
        user_r = self.prompts.render(OPENING_TEMPLATE, source=state.source_text, src_lang=spec["src_lang"],
                                     tgt_lang=spec["tgt_lang"], instruction_lang=instr, terms=terms,
                                     variant=variant)
        messages = [{"role": "system", "content": sys_r.text}, {"role": "user", "content": user_r.text}]
        return Step("annotator", 0, 0, type_id, user_r.name, user_r.hash, instr,
                    {"first_turn": "llm", "variant": variant, **params}, messages=messages, sample=sample,
                    provenance={"system_template": sys_r.name, "system_template_hash": sys_r.hash})

    # -- judging -----------------------------------------------------------------------------------
    def apply(self, state: DialogueState, step: Step, result: Any = None) -> Outcome:
        """Validate ``result`` (a ChatResult; None for a template step) for ``step``."""
        if step.kind == "template":
            return Outcome(step.text or "", [])
        text = result.text if result is not None else ""
        if step.kind == "annotator":
            text = clean_request(text)
        else:
            text = text.strip()
        reasons: list[str] = []
        if result is not None and result.finish_reason == "length":
            reasons.append("truncated: finish_reason length")
        k = step.turn_no
        if step.opening:
            reasons += check_opening_request(text, self.context(state, 0))
            if not reasons:  # the request's own words, then the source as a template quotes it
                text = f"{text}\n\n{quote_source(state.source_text)}"
        elif step.kind == "annotator":
            ctx = self.context(state, k)
            reasons += INTERACTION_TYPES[step.interaction_type].check_request(text, ctx)
        else:
            request = state.turns[step.idx - 1]["content"] if step.idx >= 1 else ""
            ctx = self.context(state, k, request)
            reasons += INTERACTION_TYPES[step.interaction_type].check(text, ctx)
        return Outcome(text, reasons, result)

    # -- committing --------------------------------------------------------------------------------
    def record(self, store: SimulateStore, state: DialogueState, step: Step, outcome: Outcome) -> None:
        """Commit an accepted turn or a rejected sample; fail the dialogue when retries ran out."""
        did = state.dialogue_id
        assert did is not None  # a step is recorded in the dialogue load_or_create made
        r = outcome.result
        fields: dict[str, Any] = {
            "interaction_type": step.interaction_type, "template_name": step.template_name,
            "template_hash": step.template_hash, "lang": step.expected_lang,
            "params": {**step.params, "sample": step.sample, **step.provenance},
        }
        if step.kind == "template":
            role, fields["annotator"], fields["model"] = "user", "template", None
        elif step.kind == "annotator":
            role = "user"
            fields["annotator"] = r.model if r is not None else self.annotator_model
            fields["model"] = fields["annotator"]
        else:
            role = "assistant"
            fields["model"] = r.model if r is not None else self.assistant_model
        if r is not None:
            fields.update(call_key=r.call_key, prompt_tokens=r.prompt_tokens, completion_tokens=r.completion_tokens,
                          latency_ms=r.latency_ms, finish_reason=r.finish_reason)
        if outcome.accepted:
            store.add_turn(did, role=role, content=outcome.content, author="model", idx=step.idx, **fields)
            state.turns.append({"role": role, "content": outcome.content, "interaction_type": step.interaction_type,
                                "idx": step.idx})
            if len(state.turns) >= 2 * state.spec["n_turns"]:
                self.finish(store, state, "done")
            return
        store.add_turn(did, role=role, content=outcome.content, author="model", idx=step.idx,
                       state="rejected", warnings=outcome.reasons, **fields)
        state.rejected[step.idx] = state.rejected.get(step.idx, 0) + 1
        if step.opening:
            return  # a first request the LLM failed to write: the template stands in (next_step)
        if state.rejected[step.idx] > self.max_turn_retries:
            who = "request" if role == "user" else "answer"
            self.finish(store, state, "failed",
                        f"{VALIDATION}: {who} of turn {step.turn_no + 1} ({step.interaction_type}) failed "
                        f"{state.rejected[step.idx]} samples: {'; '.join(outcome.reasons)}")

    def finish(self, store: SimulateStore, state: DialogueState, status: str, reason: str | None = None) -> None:
        state.status, state.status_reason = status, reason
        if state.dialogue_id is not None:
            store.set_dialogue_status(state.dialogue_id, status, reason)
