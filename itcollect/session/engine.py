"""The session engine: one annotator working through leased specs, shared by the terminal UI and
the line protocol, so both behave identically and the protocol tests cover the TUI's logic.

Durability rule: every method that changes something writes it (turn + ``session_events`` row, plus
a lease check-and-renew) in ONE transaction before it returns, so whatever the UI shows next is
already on disk. The state of a dialogue is never kept in memory only; it is derived from the
store each time (:meth:`Session.state`), which is what makes resume after ``kill -9`` exact:

* ``ask``      the annotator writes the next request (no turns yet, or the last answer is decided);
* ``answer``   the last turn is a request without an answer (interrupted, or the endpoint failed):
               the model is asked again — same sample number, so a paid answer comes from the ledger;
* ``decide``   the last turn is a model answer not yet accepted: accept / edit / regenerate / undo.

Records are the ones ``simulate`` writes (same roles, same system prompt template, same checks);
only the provenance differs: user turns and edited answers are ``author='human'`` with the
annotator's name, an edited answer keeps the model's text in ``original_content``, a regenerated
answer stays as ``state='rejected'`` and an undone pair as ``state='undone'``.

Quality control (``[session]``): an overlap spec is leased one copy at a time, each copy its own
dialogue (``Current.copy``); in a control dialogue the first answer is committed with a planted
error (:mod:`.controls`, the record in the turn's ``params["control"]``), and the decision on it
is a miss (the planted turn is rejected and the model's real answer takes its place, undecided) or
a catch (edited or regenerated). Both are derived from the store like everything else, so they
survive ``kill -9``.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from itcollect.config import Config, settings
from itcollect.kernel.dialogue import planned_turns
from itcollect.kernel.errors import ItcollectError
from itcollect.kernel.names import check_annotator_name
from itcollect.kernel.prompting import load_prompts
from itcollect.kernel.taxonomy import INTERACTION_TYPES
from itcollect.llm import CostLimitReached, EndpointDown, LLMCallError
from itcollect.session.actions import _WHILE_ANSWERING, ACTIONS, _refusal
from itcollect.session.checking import DEFAULT_FOLLOW_TYPE, TurnChecks
from itcollect.session.controls import control_note, control_of, control_record, decided, plant_error
from itcollect.session.errors import AnswerFailed, CommandError, ControlRevealed, EarlyFinish, early_finish
from itcollect.session.guidelines import example_requests
from itcollect.session.status import local_midnight_utc
from itcollect.session.wording import attach_source, first_request_hint, human_request_params
from itcollect.store import SKIP_REASONS, LeaseLost, Overlap, human_holder
from itcollect.store.availability import unit_hash
from itcollect.store.interfaces import SessionStore

if TYPE_CHECKING:
    from itcollect.session.compare import CompareTurns

STATES = ("ask", "answer", "decide", "pick", "allbad")  # the last two: compare dialogues (:mod:`.compare`)

__all__ = ["ACTIONS", "STATES", "Answer", "AnswerFailed", "CommandError", "ControlRevealed", "Current", "EarlyFinish", "Session",
           "DEFAULT_FOLLOW_TYPE", "check_annotator_name", "human_request_params"]


@dataclass
class Answer:
    """A model answer, committed as an active assistant turn (undecided until accepted)."""

    turn_id: int
    idx: int
    text: str
    model: str | None
    finish_reason: str | None
    warnings: list[str]
    from_ledger: bool = False


@dataclass
class Current:
    """The dialogue being worked on, with what the screen shows about it."""

    spec: dict[str, Any]
    dialogue_id: str
    source: dict[str, Any]
    reference: str | None
    resumed: bool
    resume_note: str
    previous_holder: str | None = None
    started: float = field(default_factory=time.time)
    copy: int = 0  # which copy of an overlap spec (0 for every other spec)


class Session:
    """One annotator's session over a workspace.

    ``client_factory()`` builds an :class:`itcollect.llm.LLMClient`; the session builds it lazily
    and again after the endpoint failed, so "retry" really tries again.
    """

    def __init__(self, config: Config, store: SessionStore, annotator: str, client_factory: Callable[[], Any], *,
                 prompts: Any = None) -> None:
        annotator = check_annotator_name(annotator)
        self.config = config
        self.store = store
        self.annotator = annotator
        self.holder = human_holder(annotator)
        typed = settings(config)
        self.lease_s = typed.session.lease_minutes * 60.0
        self.wait_s = typed.session.wait_seconds
        self.show_reference = typed.session.show_reference
        self.languages = typed.workspace.languages
        self.backend = typed.ingest.langid_backend
        self.overlap = Overlap.from_config(config)
        self._client_factory = client_factory
        self._client: Any = None
        self._prompts = prompts
        self.current: Current | None = None
        self.next_type_override: str | None = None
        self.control_share = typed.session.control_share
        #: what the last decision on a control item revealed (:meth:`take_control_note`)
        self.control_note: dict[str, Any] | None = None
        #: a compare session (``--compare``): every system answers, the person picks (:mod:`.compare`)
        self.compare: CompareTurns | None = None

    # -- LLM plumbing ----------------------------------------------------------------------------
    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = self._client_factory()
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _system_prompt(self) -> tuple[str, str, str]:
        """(text, template name, template hash) of the assistant's system prompt for this dialogue."""
        if self._prompts is None:
            path = getattr(self.config, "path", None)
            self._prompts = load_prompts(self.config, path.parent if path else None)
        assert self.current is not None
        d = self.current
        r = self._prompts.render("assistant_system.j2", instruction_lang=d.spec["instruction_lang"],
                                 src_lang=d.spec["src_lang"], tgt_lang=d.spec["tgt_lang"])
        return r.text, r.name, r.hash

    # -- claiming and resuming -------------------------------------------------------------------
    def open_next(self) -> Current | None:
        """Lease the next spec (own unfinished work first) and open its dialogue; None when the pool is empty."""
        self.current = self.control_note = self.next_type_override = None
        spec = None
        # An own dialogue whose lease row is gone (expired and released) is still offered back first.
        for d in self.store.unfinished_dialogues(self.annotator):
            if d["spec_id"] is not None and self.store.lease_spec(d["spec_id"], self.holder, self.lease_s,
                                                                  copy=d["copy"]):
                spec = self.store.get_spec(d["spec_id"])
                assert spec is not None  # just leased: it exists
                spec["own"], spec["previous_holder"], spec["copy"] = True, None, d["copy"]
                break
        if spec is None:
            spec = self.store.lease_next_spec(self.holder, self.lease_s, overlap=self.overlap)
        if spec is None:
            return None
        return self._open(spec)

    def waiting(self) -> dict[str, Any] | None:
        """After :meth:`open_next` found nothing: None when nothing is left (idle), else
        ``{"leased_by_others": N, "retry_s": X}``, specs only leased by others for now; look again
        in X seconds (``[session] wait_seconds``, sooner when a lease runs out before)."""
        n, first_expiry = self.store.leased_by_others(self.holder)
        if n == 0:
            return None
        retry = self.wait_s if first_expiry is None else min(self.wait_s, max(first_expiry - time.time(), 0.1))
        return {"leased_by_others": n, "retry_s": round(retry, 1)}

    def _open(self, spec: dict[str, Any]) -> Current:
        source = self.store.get_source(spec["source_id"]) or {"text": "", "references": []}
        reference = None
        if self.show_reference:
            reference = next((r["text"] for r in source.get("references", []) if r["lang"] == spec["tgt_lang"]), None)
        copy = int(spec.get("copy") or 0)
        existing = self.store.dialogue_for_spec(spec["id"], copy)
        previous = spec.get("previous_holder")
        with self.store.transaction():
            self.store.ensure_lease(spec["id"], self.holder, self.lease_s)
            if existing is None:
                did = self.store.create_dialogue(
                    origin="human", spec_id=spec["id"], annotator=self.annotator, source_id=spec["source_id"],
                    source_text=source["text"], src_lang=spec["src_lang"], tgt_lang=spec["tgt_lang"],
                    instruction_lang=spec["instruction_lang"],
                    meta={"planned_types": spec["interaction_types"], "planned_turns": spec["n_turns"],
                          "seed": spec["seed"], "seq": spec["seq"]}, copy=copy)
                self.store.log_event(self.annotator, "open", dialogue_id=did, spec_id=spec["id"])
                resumed, note = False, ""
            else:
                did = existing["id"]
                if existing["annotator"] != self.annotator:
                    meta = existing["meta"]
                    meta.setdefault("previous_annotators", []).append(existing["annotator"])
                    self.store.update_dialogue(did, annotator=self.annotator, meta=meta)
                self.store.log_event(self.annotator, "resume", dialogue_id=did, spec_id=spec["id"],
                                     detail={"previous_holder": previous})
                resumed, note = True, ""
        self.current = Current(spec=spec, dialogue_id=did, source=source, reference=reference, resumed=resumed,
                               resume_note=note, previous_holder=previous, copy=copy)
        if resumed and existing is not None:
            self.current.resume_note = self._resume_note(existing, previous)
        if self.compare is not None:
            self.current.resume_note = " ".join(x for x in (self.current.resume_note, self.compare.open(did)) if x)
        return self.current

    def resume_message(self) -> str:
        """The resume note for the open dialogue as it stands now (empty when nothing is committed
        yet): what a front-end shows when it (re)loads a dialogue, e.g. a browser tab reloaded
        mid-answer, in the same words the terminal uses after a restart."""
        d = self._need()
        existing = self.store.get_dialogue(d.dialogue_id)
        if existing is None or not self.conversation():
            return ""
        return self._resume_note(existing, d.previous_holder)

    def _resume_note(self, existing: dict[str, Any], previous: str | None) -> str:
        turns = self.conversation()
        n_user = sum(1 for t in turns if t["role"] == "user")
        who = ""
        if previous and previous != self.holder:
            who = f" (taken over from {previous.removeprefix('human:')}, whose lease expired)"
        state = self.state()
        what = {"ask": "continue with your next request",
                "answer": "your last request had no answer yet (the session was interrupted or the endpoint "
                          "failed): the model is asked again",
                "decide": "the last answer is waiting for your decision",
                "pick": "the answers to your last request are waiting for your pick",
                "allbad": "you found every answer bad: write the answer, or ask every system again"}[state]
        return (f"Resuming dialogue {existing['id'][:8]} (spec {existing['spec_id']}){who}: "
                f"{n_user} request(s) and {len(turns) - n_user} answer(s) kept; {what}.")

    # -- reading the state -----------------------------------------------------------------------
    def view(self) -> dict[str, Any] | None:
        """The open dialogue as plain JSON-able data, everything a front-end shows: the source, pair,
        instruction language, plan, the conversation, the state and what is expected next. None
        when no dialogue is open. ``version`` changes with every committed change of the
        conversation, so a front-end can refuse an action decided on an outdated screen (a second
        browser tab under the same name)."""
        if self.current is None:
            return None
        d = self.current
        spec = d.spec
        turns = self.conversation()
        state = self.state()
        last = turns[-1] if turns else None
        version = hashlib.sha256(
            f"{d.dialogue_id}|{last['id'] if last else ''}|{state}|{last['content'] if last else ''}".encode()
        ).hexdigest()[:16]
        return {
            "id": d.dialogue_id, "spec_id": spec["id"], "source": d.source["text"], "reference": d.reference,
            "src_lang": spec["src_lang"], "tgt_lang": spec["tgt_lang"], "target_lang": self.target_lang(),
            "instruction_lang": spec["instruction_lang"], "planned_types": spec["interaction_types"],
            "planned_turns": spec["n_turns"], "plan": planned_turns(spec),
            "turns": [{"turn_id": t["id"], "idx": t["idx"], "role": t["role"], "content": t["content"],
                       "author": t["author"], "type": t.get("interaction_type"), "warnings": t["warnings"],
                       "original_content": t["original_content"]} for t in turns],
            "state": state, "type": self.current_type(), "turn": self.user_turns(),
            "suggestion": self.suggestion() if state == "ask" else None,
            # accepting the undecided answer takes a reason (its warnings): a front-end asks for one first
            "accept_needs_reason": state == "decide" and bool(last and last["warnings"]),
            "candidates": self.compare.shown() if self.compare is not None and state == "pick" else None,
            "resumed": d.resumed, "message": d.resume_note, "previous_holder": d.previous_holder,
            "version": version,
        }

    def _need(self) -> Current:
        if self.current is None:
            raise CommandError("no dialogue is open")
        return self.current

    def conversation(self) -> list[dict[str, Any]]:
        """Active user/assistant turns of the current dialogue, in order."""
        d = self._need()
        return [t for t in self.store.get_turns(d.dialogue_id) if t["role"] in ("user", "assistant")]

    def state(self) -> str:
        return self._state_of(self.conversation())

    def _state_of(self, turns: list[dict[str, Any]]) -> str:
        if not turns:
            return "ask"
        last = turns[-1]
        if last["role"] == "user":
            return (self.compare.state_after(last) if self.compare is not None else None) or "answer"
        return "ask" if self._decided(last["id"]) else "decide"

    # -- what may be done ----------------------------------------------------------------------------
    def allowed_actions(self, *, answering: bool = False) -> list[str]:
        """The actions (:data:`ACTIONS`) the open dialogue allows now, in that order: the keys the
        terminal offers, the buttons the web page enables (``answering``: an answer is being
        fetched meanwhile), what every engine method checks before it writes (:meth:`require`).
        Empty when no dialogue is open."""
        if self.current is None:
            return []
        if answering:
            return list(_WHILE_ANSWERING)
        turns = self.conversation()
        state = self._state_of(turns)
        return [a for a in ACTIONS if _refusal(a, state, turns) is None]

    def require(self, action: str) -> list[dict[str, Any]]:
        """Raise :class:`CommandError`, saying why in the words front-ends show, unless the open
        dialogue allows ``action`` now (:meth:`allowed_actions`); returns the conversation read."""
        turns = self.conversation()
        refusal = _refusal(action, self._state_of(turns), turns)
        if refusal is not None:
            raise CommandError(refusal)
        return turns

    def _decided(self, turn_id: int) -> bool:
        return self.store.last_turn_action(turn_id) == "accept"

    def user_turns(self) -> int:
        return sum(1 for t in self.conversation() if t["role"] == "user")

    def next_type(self) -> str:
        """Interaction type of the next request: the annotator's choice, else the plan's, else follow_up."""
        if self.next_type_override:
            return self.next_type_override
        d = self._need()
        k = self.user_turns()
        planned = d.spec["interaction_types"]
        return planned[k] if k < len(planned) else DEFAULT_FOLLOW_TYPE

    def current_type(self) -> str:
        """Type of the turn being worked on (the pending request's when there is one)."""
        turns = self.conversation()
        if self.state() != "ask":
            req = next(t for t in reversed(turns) if t["role"] == "user")
            return req.get("interaction_type") or DEFAULT_FOLLOW_TYPE
        return self.next_type()

    def set_next_type(self, type_id: str) -> None:
        if type_id not in INTERACTION_TYPES:
            raise CommandError(f"unknown interaction type {type_id!r} (known: {', '.join(INTERACTION_TYPES)})")
        self.require("type")
        self.next_type_override = type_id

    def target_lang(self) -> str:
        """The target in force for the next request: the spec's, or the latest retarget's."""
        return self._checks().expectation(self.conversation(), self.next_type()).target_before or self._need().spec["tgt_lang"]

    def _checks(self) -> TurnChecks:
        d = self._need()
        return TurnChecks(d.spec, d.source["text"], self.languages, self.backend)

    # -- writing -----------------------------------------------------------------------------------
    _ANY = object()

    def _guard(self, last_id: Any = _ANY) -> Current:
        """Check-and-renew the lease; call inside the write's transaction. With ``last_id``, also
        check that the dialogue's last turn is still the one the action was decided on (a second
        session under the same name cannot interleave its writes with this one's)."""
        d = self._need()
        self.store.ensure_lease(d.spec["id"], self.holder, self.lease_s)
        if last_id is not Session._ANY:
            turns = self.conversation()
            if (turns[-1]["id"] if turns else None) != last_id:
                raise CommandError("the dialogue changed meanwhile (another session under your name?): "
                                   "nothing was written; look again and repeat the action")
        return d

    def _last_id(self) -> int | None:
        turns = self.conversation()
        return turns[-1]["id"] if turns else None

    def renew(self) -> bool:
        """Extend the current lease (the UI calls it while the annotator is typing); False if lost."""
        if self.current is None:
            return True
        return self.store.renew_lease(self.current.spec["id"], self.holder, self.lease_s)

    def _event(self, action: str, *, turn_id: int | None = None, **detail: Any) -> None:
        d = self._need()
        self.store.log_event(self.annotator, action, dialogue_id=d.dialogue_id, spec_id=d.spec["id"],
                             turn_id=turn_id, detail=detail or None)

    def add_request(self, text: str, type_id: str | None = None) -> dict[str, Any]:
        """Commit the annotator's request (before the model is asked). Returns its warnings too."""
        text = text.strip()
        if not text:
            raise CommandError("the request is empty")
        self.require("request")
        type_id = type_id or self.next_type()
        params = self._checks().request_params(self.conversation(), type_id, text, self.target_lang())
        # checks and language judge the annotator's own words, not the source attached to them
        own = text
        if not any(t["role"] == "user" for t in self.conversation()):
            own = text.replace(self._need().source["text"], " ").strip() or text
        warnings = self._checks().request_warnings(self.conversation(), type_id, own, params)
        last = self._last_id()
        text = self._with_source(text)
        with self.store.transaction():
            d = self._guard(last)
            turn_id = self.store.add_turn(d.dialogue_id, role="user", content=text, author="human",
                                          annotator=self.annotator, interaction_type=type_id, params=params,
                                          warnings=warnings, lang=d.spec["instruction_lang"])
            self._event("request", turn_id=turn_id, type=type_id, warnings=warnings)
        self.next_type_override = None
        return {"turn_id": turn_id, "type": type_id, "warnings": warnings, "content": text}

    def suggestion(self) -> str | None:
        """A grey hint for the next request, which the annotator may ignore. For the first request:
        the wording simulate's first-turn template would use (without the sentence, which is
        attached anyway); for a later one: the guide's first example request for the type, in the
        instruction language."""
        d = self._need()
        if self.user_turns() or self.next_type() != "translate":
            examples = example_requests(self.next_type(), d.spec["instruction_lang"])
            return examples[0] if examples else None
        try:
            self._system_prompt()  # loads the prompts
        except ItcollectError:
            return None
        return first_request_hint(self._prompts, d.spec, d.source["text"])

    def _with_source(self, text: str) -> str:
        """The first request carries the source sentence, as simulate's first-turn template does
        (the request, a blank line, the sentence quoted), unless the annotator pasted it already:
        the dialogue must be complete without the screen that showed the source."""
        if any(t["role"] == "user" for t in self.conversation()):
            return text
        return attach_source(text, self._need().source["text"])

    def _messages(self, system: str) -> list[dict[str, str]]:
        """What the assistant sees: the system prompt (rendered per call, not stored, as in simulate)
        and the active turns."""
        return [{"role": "system", "content": system}] + [
            {"role": t["role"], "content": t["content"]} for t in self.conversation()]

    async def get_answer(self, on_delta: Callable[[str], None] | None = None,
                         on_reset: Callable[[], None] | None = None) -> Answer:
        """Ask the model to answer the pending request and commit the answer (undecided).

        In a control dialogue (:meth:`_wants_control`) the first answer is committed with one
        planted error (:func:`.controls.plant_error`), the model's real text kept in the turn's
        ``params["control"]`` (and the ledger); its warnings are those of the real answer, and it
        is not streamed piece by piece but given to ``on_delta`` whole, so it looks like any answer."""
        if self.state() != "answer":
            raise CommandError("there is no request waiting for an answer")
        if self.compare is not None:
            raise CommandError("a compare session asks every system: CompareTurns.ask")
        d = self._need()
        if self.store.dialogue_systems(d.dialogue_id):  # never one answer mixed into a comparison
            raise AnswerFailed("this dialogue compares systems: continue it with session --compare and its systems")
        with self.store.transaction():
            self._guard()  # renew before a possibly long call
        turns = self.conversation()
        idx = turns[-1]["idx"] + 1
        sample = self.store.count_answers_at(d.dialogue_id, idx)
        system, template_name, template_hash = self._system_prompt()
        control = self._wants_control()
        try:
            result = await self.client.chat("assistant", self._messages(system), sample=sample,
                                            on_delta=None if control else on_delta,
                                            on_reset=None if control else on_reset)
        except (LLMCallError, EndpointDown, CostLimitReached) as exc:
            self._event("endpoint_error", error=str(exc)[:500])
            if self._client is not None:  # a fresh client next time: "retry" must really retry
                await self.close()
            raise AnswerFailed(str(exc)) from None
        text = result.text.strip()
        warnings = []
        if result.finish_reason == "length":
            warnings.append("truncated: finish_reason length")
        warnings += self._checks().answer_warnings(turns, text)
        request = turns[-1]
        answer_lang = self._checks().answer_lang(turns)
        type_id = request.get("interaction_type") or DEFAULT_FOLLOW_TYPE
        params = {**(request.get("params") or {}), "sample": sample}
        shown = text
        if control:
            planted = plant_error(text, answer_lang, d.dialogue_id)
            if planted is not None:
                shown = planted.text
                params["control"] = control_record(planted, text)
            if on_delta is not None:
                on_delta(shown)
        with self.store.transaction():
            self._guard(request["id"])
            turn_id = self.store.add_turn(
                d.dialogue_id, role="assistant", content=shown, author="model", model=result.model,
                call_key=result.call_key, prompt_tokens=result.prompt_tokens,
                completion_tokens=result.completion_tokens, latency_ms=result.latency_ms,
                finish_reason=result.finish_reason, warnings=warnings, idx=idx,
                lang=answer_lang, interaction_type=type_id, template_name=template_name,
                template_hash=template_hash, params=params)
            dia = self.store.get_dialogue(d.dialogue_id)
            if dia is not None and "assistant_model" not in dia["meta"]:
                self.store.update_dialogue(d.dialogue_id, meta={**dia["meta"], "assistant_model": result.model})
            extra = {"control": True} if "control" in params else {}
            self._event("answer", turn_id=turn_id, sample=sample, from_ledger=result.from_ledger,
                        warnings=warnings, **extra)
        return Answer(turn_id, idx, shown, result.model, result.finish_reason, warnings, result.from_ledger)

    # -- control items (:mod:`.controls`) ------------------------------------------------------------
    def _wants_control(self) -> bool:
        """Plant an error in the answer now asked for? Only the first answer of a dialogue that
        the hash of its id puts in ``[session] control_share``, never in a copy of an overlap
        spec (its annotators' decisions are compared), and once per dialogue: not after a control
        was decided (an undone one may be planted again)."""
        if self.control_share <= 0 or self.compare is not None:
            return False
        d = self._need()
        if (d.spec.get("copies") or 1) > 1 or self.user_turns() != 1:
            return False
        if unit_hash("control", d.dialogue_id) >= self.control_share:
            return False
        return not any(control_of(t) for t in self.store.get_turns(d.dialogue_id, include_inactive=True)
                       if t["state"] != "undone")

    def _decide_control(self, turn: dict[str, Any], outcome: str, via: str) -> dict[str, Any]:
        """Record the decision on a planted turn (in the caller's transaction): ``miss`` (accepted
        unchanged) or ``catch`` (edited, regenerated). Returns the new control record."""
        ctl = decided(turn, outcome, via, self.annotator)
        self.store.update_turn(turn["id"], params={**(turn["params"] or {}), "control": ctl})
        return ctl

    def take_control_note(self) -> dict[str, Any] | None:
        """What the last action revealed about a control item, once (front-ends show it): its
        ``outcome``, ``kind``, ``description``, and after a miss the model's real answer
        (``answer``: turn id and text), which now waits for a decision."""
        note, self.control_note = self.control_note, None
        return note

    def pending_answer(self) -> dict[str, Any] | None:
        """The undecided answer (state ``decide``), as a turn dict."""
        if self.state() != "decide":
            return None
        return self.conversation()[-1]

    def accept(self, reason: str | None = None) -> dict[str, Any]:
        """Accept the answer; an answer with warnings needs the annotator's reason (stored)."""
        turn = self.require("accept")[-1]
        reason = (reason or "").strip() or None
        if turn["warnings"] and not reason:
            raise CommandError("the answer has warnings (" + "; ".join(turn["warnings"]) +
                               "): accept with a reason to override them")
        ctl = control_of(turn)
        with self.store.transaction():
            self._guard(turn["id"])
            if turn["warnings"]:
                # the reason travels with the turn (export provenance) and in the action log
                turn["params"] = {**(turn["params"] or {}), "override": reason}
                self.store.update_turn(turn["id"], params=turn["params"])
                self._event("override", turn_id=turn["id"], reason=reason, warnings=turn["warnings"])
            self._event("accept", turn_id=turn["id"], reason=reason)
            if ctl is not None:
                # a miss: the planted turn is kept (rejected, marked) for the figures; the model's
                # real answer takes its place and waits for a decision of its own
                ctl = self._decide_control(turn, "miss", "accept")
                self.store.set_turn_state(turn["id"], "rejected")
                params = {k: v for k, v in (turn["params"] or {}).items() if k not in ("control", "override")}
                real_id = self.store.add_turn(
                    self._need().dialogue_id, role="assistant", content=ctl["real"], author="model",
                    model=turn["model"], call_key=turn["call_key"], prompt_tokens=turn["prompt_tokens"],
                    completion_tokens=turn["completion_tokens"], latency_ms=turn["latency_ms"],
                    finish_reason=turn["finish_reason"], warnings=turn["warnings"], idx=turn["idx"],
                    lang=turn["lang"], interaction_type=turn["interaction_type"],
                    template_name=turn["template_name"], template_hash=turn["template_hash"],
                    params={**params, "after_control": turn["id"]})
                self._event("control", turn_id=turn["id"], outcome="miss", kind=ctl["kind"], real_turn=real_id)
                self.control_note = control_note(turn, ctl, {"turn_id": real_id, "text": ctl["real"]})
        return turn

    def edit(self, text: str) -> dict[str, Any]:
        """Replace the answer with the annotator's version (the gold answer); the model's is kept.

        The edit is committed at once. If the edited text still fails a check, it is committed
        but stays undecided until accepted with a reason.
        """
        if self.compare is not None and self.state() == "allbad":
            return self.compare.write(text)
        turn = self.require("edit")[-1]
        text = text.strip()
        if not text:
            raise CommandError("the edited answer is empty")
        warnings = self._checks().answer_warnings(self.conversation(), text)
        original = turn["original_content"] if turn["original_content"] is not None else turn["content"]
        ctl = control_of(turn)
        if ctl is not None and ctl.get("outcome") is None:
            original = ctl["real"]  # what the model said; the planted text stays in the control record
        with self.store.transaction():
            self._guard(turn["id"])
            self.store.update_turn(turn["id"], content=text, original_content=original, author="human",
                                   annotator=self.annotator, warnings=warnings)
            self._event("edit", turn_id=turn["id"], warnings=warnings)
            if self.compare is not None:
                self.compare.edited(turn)
            if ctl is not None and ctl.get("outcome") is None:
                ctl = self._decide_control(turn, "catch", "edit")
                self._event("control", turn_id=turn["id"], outcome="catch", kind=ctl["kind"])
                self.control_note = control_note(turn, ctl)
            if not warnings:
                self._event("accept", turn_id=turn["id"], via="edit")
        return {"turn_id": turn["id"], "warnings": warnings, "decided": not warnings}

    def reject_answer(self) -> dict[str, Any]:
        """The first half of :meth:`regenerate`: the answer is rejected (kept, state 'rejected') and
        the request waits for a new one (state ``answer``). A front-end that streams the new answer
        apart from the action (the web page) commits this first, then calls :meth:`get_answer`."""
        if self.compare is not None and self.state() in ("pick", "allbad"):
            return self.compare.reject_all()
        turn = self.require("regenerate")[-1]
        ctl = control_of(turn)
        with self.store.transaction():
            self._guard(turn["id"])
            self.store.set_turn_state(turn["id"], "rejected")
            self._event("regenerate", turn_id=turn["id"])
            if ctl is not None:
                ctl = self._decide_control(turn, "catch", "regenerate")
                self._event("control", turn_id=turn["id"], outcome="catch", kind=ctl["kind"])
                self.control_note = control_note(turn, ctl)
        return turn

    async def regenerate(self, on_delta: Callable[[str], None] | None = None,
                         on_reset: Callable[[], None] | None = None) -> Answer:
        """Reject the answer (kept, state 'rejected') and ask again with a new sample number."""
        self.reject_answer()
        return await self.get_answer(on_delta, on_reset)

    def undo(self) -> dict[str, Any]:
        """Take back the last request and its answer (both kept, state 'undone')."""
        turns = self.require("undo")
        last = turns[-1]
        undone = [last] if last["role"] == "user" else [t for t in turns[-2:]]
        with self.store.transaction():
            self._guard(last["id"])
            for t in undone:
                self.store.set_turn_state(t["id"], "undone")
            if self.compare is not None:
                self.compare.undone(undone[0]["idx"])
            self._event("undo", turn_id=undone[0]["id"], turns=[t["id"] for t in undone])
        self.next_type_override = None
        return {"undone": [t["id"] for t in undone]}

    def finish(self, reason: str | None = None) -> str:
        """Close the dialogue as done (an undecided last answer is accepted first). Before the
        planned turns it takes a reason (:class:`EarlyFinish` without one), stored on the dialogue."""
        d = self._need()
        state = self._state_of(self.require("finish"))
        early = early_finish(self.user_turns(), int(d.spec["n_turns"]), reason)
        if state == "decide":
            self.accept(reason)
            if self.control_note is not None and self.control_note["outcome"] == "miss":
                raise ControlRevealed(self.control_note["message"])
        with self.store.transaction():
            self._guard()
            self._event("finish", turns=len(self.conversation()), **early)
            self.store.set_dialogue_status(d.dialogue_id, "done")
            self.store.update_dialogue(d.dialogue_id, early_finish=early["early"] if early else None)
            if not self.store.release_lease(d.spec["id"], self.holder, "done"):
                raise LeaseLost("lease lost while finishing")
        self.current = None
        return d.dialogue_id

    def skip(self, reason: str, note: str | None = None) -> str:
        """Close the dialogue and its spec as skipped, with one of SKIP_REASONS (and a note)."""
        d = self._need()
        reason = reason.strip().lower().replace("-", "_").replace(" ", "_")
        if reason not in SKIP_REASONS:
            raise CommandError(f"skip reason {reason!r}: one of {', '.join(SKIP_REASONS)}")
        text = reason if not note else f"{reason}: {note.strip()}"
        with self.store.transaction():
            self._guard()
            self._event("skip", reason=reason, note=note)
            self.store.set_dialogue_status(d.dialogue_id, "skipped", text)
            if not self.store.release_lease(d.spec["id"], self.holder, "skipped", text):
                raise LeaseLost("lease lost while skipping")
        self.current = None
        return d.dialogue_id

    def flag(self, note: str | None = None) -> None:
        """Mark the dialogue for a reviewer (the note is kept in the dialogue's meta)."""
        d = self._need()
        with self.store.transaction():
            self._guard()
            dia = self.store.get_dialogue(d.dialogue_id)
            assert dia is not None  # the dialogue being worked on
            meta = dia["meta"]
            meta.setdefault("flags", []).append({"annotator": self.annotator, "note": note or ""})
            self.store.update_dialogue(d.dialogue_id, flagged=1, meta=meta)
            self._event("flag", note=note)

    def log_guidelines(self, type_id: str) -> None:
        if self.current is not None:
            self._event("guidelines", type=type_id)

    def quit(self) -> None:
        """Stop for now. A dialogue with turns keeps its lease (it expires on its own) and resumes
        next time; one with nothing written (just opened: a script that quits after ``finish``
        opened the next spec, a person who quits on a fresh sentence) goes back to the pool at
        once, dialogue record and lease both, instead of staying leased for ``lease_minutes``."""
        d = self.current
        if d is not None:
            try:
                state = self.state()
                with self.store.transaction():
                    lease = self.store.lease_of(d.spec["id"], d.copy)
                    # only while the lease is ours: after a takeover the dialogue is someone else's
                    released = bool(lease and lease["holder"] == self.holder
                                    and self.store.discard_empty_dialogue(d.dialogue_id))
                    if released:
                        self.store.release_lease(d.spec["id"], self.holder, "pending")
                    self._event("quit", state=state, released=released)
            except ItcollectError:  # pragma: no cover - quitting must never fail loudly
                pass
        self.current = None

    def interrupted(self) -> None:
        """Record that the annotator stopped an answer while it streamed (the request stays and is
        answered again; the streamed text is discarded, as nothing of it was committed)."""
        if self.current is not None:
            self._event("interrupted")

    def lease_lost(self) -> None:
        """Record that the current dialogue was taken over (its work stays; this session moves on)."""
        if self.current is not None:
            self._event("lease_lost")
        self.current = None

    # -- status line -------------------------------------------------------------------------------
    def progress(self) -> dict[str, Any]:
        p = self.store.annotator_progress(self.annotator, local_midnight_utc())
        p["pool"] = self.store.pending_spec_count()
        return p

