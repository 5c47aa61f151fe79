"""A compare session (``session --compare A,B[,..]``): after each request every system answers, and
the annotator picks the best, blind, or ranks them, or says all are bad.

The engine (:mod:`.engine`) calls :class:`CompareTurns` at the points where a compared turn differs
from a plain one; the front-ends only ask. Everything is derived from the store, as in the engine
(resume after ``kill -9`` is exact, and every answer paid once goes through the ledger):

* state ``pick``   the last request has an open comparison: its candidates wait for a decision
                   (``pick LABEL``, ``rank A>B=C``, ``pick none REASON``; ``regenerate``, ``undo``);
* state ``allbad`` the comparison was decided ``none`` (all bad): the person writes the answer
                   (``edit TEXT``) or asks every system again (``regenerate``);
* after a pick or a rank the chosen candidate is the dialogue's (accepted) answer, an ordinary
  active turn; editing it afterwards, or writing the answer after ``none``, makes the comparison's
  chooser ``human_edit`` (the person's text is chosen against every candidate it replaced).

Labels A, B, C... are given in a fresh order each turn, drawn from the spec's seed, the dialogue,
the position and the try (reproducible); the store keeps the order shown (``labels``). The system
names stay hidden until the dialogue is finished (:meth:`CompareTurns.reveal`).

A system whose call fails gives a failed candidate with its reason; the turn goes on with the
others. With fewer than two answers the turn is not a comparison (void, with the reason): one answer
is then an ordinary answer waiting for accept / edit / regenerate; none is an endpoint failure
(``retry``).
"""

from __future__ import annotations

import asyncio
import random
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from itcollect.compare.record import finish_run, start_run, systems_of
from itcollect.kernel.outcomes import break_tie
from itcollect.llm import CostLimitReached, EndpointDown, LLMCallError
from itcollect.llm.endpoints import Endpoint, system_role

if TYPE_CHECKING:
    from itcollect.session.engine import Session

LABELS = string.ascii_uppercase
#: the states a compare dialogue adds to the engine's (:data:`itcollect.session.engine.STATES`)
STATES = ("pick", "allbad")

__all__ = ["LABELS", "STATES", "Asked", "CompareTurns", "label_order", "parse_rank"]


@dataclass(frozen=True)
class Asked:
    """What one round of asking every system gave: the candidates as shown (label order), and
    when the turn is not a comparison, why (``void``) and the one answer that continues, if any."""

    comparison_id: int
    answers: list[dict[str, Any]]
    void: str | None = None
    turn_id: int | None = None


def label_order(systems: Sequence[str], seed: object, dialogue_id: str, idx: int, attempt: int) -> list[str]:
    """The systems in the order shown (label A first): a fresh order per turn and try, the same on
    every run."""
    order = list(systems)
    random.Random(f"{seed}|{dialogue_id}|{idx}|{attempt}").shuffle(order)
    return order


def parse_rank(text: str) -> list[list[str]]:
    """``A>B=C`` -> ``[["A"], ["B", "C"]]`` (labels upper-cased; ``=`` ties, ``>`` orders)."""
    tiers = [[label.strip().upper() for label in tier.split("=")] for tier in text.replace(" ", "").split(">")]
    if not text.strip() or any(not label for tier in tiers for label in tier):
        raise ValueError(f"rank {text!r}: write labels best first, '>' between places, '=' for ties (A>B=C)")
    return tiers


def _command_error(message: str) -> Exception:
    from itcollect.session.engine import CommandError

    return CommandError(message)


class CompareTurns:
    """The compare part of one annotator's session: the systems it compares (``endpoints``: one
    ``system:NAME`` role each, served by the session's client) and its compare run."""

    def __init__(self, session: Session, endpoints: Sequence[Endpoint]) -> None:
        self.s = session
        self.systems = [{"name": ep.role.removeprefix("system:"), "model": ep.model, "base_url": ep.base_url}
                        for ep in endpoints]
        self.store = session.store
        self.run_id = start_run(self.store, "session", "human", self.systems)

    def close(self) -> None:
        finish_run(self.store, self.run_id)

    # -- opening a dialogue ------------------------------------------------------------------------
    def open(self, dialogue_id: str) -> str:
        """Record the systems of a new dialogue; a message when the dialogue keeps other systems
        (it started with them: those are asked, the names stay hidden)."""
        _kept, differs = systems_of(self.store, dialogue_id, self.systems, self.run_id)
        if not differs:
            return ""
        return ("This dialogue started with other systems than this session's --compare list: it continues "
                "with its own (a system this session does not serve fails).")

    def _kept(self) -> list[dict[str, Any]]:
        return self.store.dialogue_systems(self.s._need().dialogue_id) or self.systems

    # -- the state -----------------------------------------------------------------------------------
    def state_after(self, request: dict[str, Any]) -> str | None:
        """``pick`` / ``allbad`` when the last request's comparison waits for the person (None:
        the request waits for answers)."""
        c = self.store.comparison_at(self.s._need().dialogue_id, request["idx"] + 1)
        if c is None:
            return None
        if c["status"] == "open":
            return "pick"
        if c["status"] == "decided" and c["decision"] == "none":
            return "allbad"
        return None

    def _open_comparison(self, status: str = "open") -> dict[str, Any]:
        turns = self.s.conversation()
        if not turns or turns[-1]["role"] != "user":
            raise _command_error("there are no answers to pick from")
        c = self.store.comparison_at(self.s._need().dialogue_id, turns[-1]["idx"] + 1)
        if c is None or c["status"] != status or (status == "decided" and c["decision"] != "none"):
            raise _command_error("there are no answers to pick from" if status == "open"
                                 else "there is no answer to edit")
        return c

    def shown(self) -> list[dict[str, Any]] | None:
        """The open comparison's candidates as the person sees them (label order), None when none."""
        turns = self.s.conversation()
        if not turns or turns[-1]["role"] != "user":
            return None
        c = self.store.comparison_at(self.s._need().dialogue_id, turns[-1]["idx"] + 1)
        if c is None or c["status"] not in ("open", "decided"):
            return None
        return _answers(c)

    # -- asking every system ------------------------------------------------------------------------
    async def ask(self, on_delta: Callable[[str, str], None] | None = None) -> Asked:
        """Ask every system of the dialogue to answer the pending request (at once) and commit the
        comparison with its candidates; ``on_delta(label, piece)`` streams each answer."""
        s = self.s
        if s.state() != "answer":
            raise _command_error("there is no request waiting for answers")
        d = s._need()
        with s.store.transaction():
            s._guard()
        turns = s.conversation()
        request = turns[-1]
        idx = request["idx"] + 1
        attempt = sum(1 for c in self.store.comparisons_of(d.dialogue_id, include_undone=True) if c["idx"] == idx)
        systems = self._kept()
        order = label_order([x["name"] for x in systems], d.spec.get("seed"), d.dialogue_id, idx, attempt)
        label_of = {name: LABELS[k] for k, name in enumerate(order)}
        system, template_name, template_hash = s._system_prompt()
        messages = s._messages(system)
        served = set(s.client.roles)

        async def one(x: dict[str, Any]) -> dict[str, Any]:
            role = system_role(x["name"])
            cand: dict[str, Any] = {"system": x["name"], "model": x["model"], "base_url": x.get("base_url")}
            if role not in served:
                return {**cand, "status": "failed", "failure": "this session does not serve the system "
                        "(start it with the dialogue's systems in --compare)"}
            label = label_of[x["name"]]
            delta = None if on_delta is None else (lambda piece: on_delta(label, piece))
            try:
                r = await s.client.chat(role, messages, sample=attempt, on_delta=delta)
            except (LLMCallError, EndpointDown, CostLimitReached) as exc:
                return {**cand, "status": "failed", "failure": str(exc)[:500]}
            text = r.text.strip()
            warnings = ["truncated: finish_reason length"] if r.finish_reason == "length" else []
            warnings += s._checks().answer_warnings(turns, text)
            return {**cand, "model": r.model or x["model"], "status": "answered", "content": text,
                    "call_key": r.call_key, "prompt_tokens": r.prompt_tokens, "completion_tokens": r.completion_tokens,
                    "latency_ms": r.latency_ms, "finish_reason": r.finish_reason, "warnings": warnings}

        candidates = list(await asyncio.gather(*(one(x) for x in systems)))
        if any(c["status"] == "failed" for c in candidates) and s._client is not None:
            await s.close()  # a fresh client next time: a retry must really retry
        answered = [c for c in candidates if c["status"] == "answered"]
        provenance = {"lang": s._checks().answer_lang(turns), "template_name": template_name,
                      "template_hash": template_hash,
                      "interaction_type": request.get("interaction_type") or "follow_up",
                      "params": {**(request.get("params") or {}), "sample": attempt}}
        with self.store.transaction():
            s._guard(request["id"])
            cid = self.store.add_comparison(d.dialogue_id, idx, candidates, labels=order, run_id=self.run_id)
            void = turn_id = None
            if len(answered) < 2:
                void = f"fewer than two answers ({len(answered)} of {len(candidates)}): not a comparison"
                if answered:
                    turn_id = self._answer_turn(answered[0], idx, provenance)
                self.store.void_comparison(cid, void, turn_id)
            s._event("candidates", comparison_id=cid, labels=order, void=void,
                     failed=[c["system"] for c in candidates if c["status"] == "failed"])
        c = self.store.comparison_at(d.dialogue_id, idx)
        assert c is not None  # just written
        asked = Asked(cid, _answers(c), void, turn_id)
        if not answered:
            from itcollect.session.engine import AnswerFailed

            reasons = "; ".join(f"{a['label']}: {a['failed']}" for a in asked.answers)
            raise AnswerFailed(f"no system answered ({reasons}); your request is kept")
        return asked

    def _answer_turn(self, cand: dict[str, Any], idx: int, provenance: dict[str, Any]) -> int:
        return self.store.add_turn(
            self.s._need().dialogue_id, role="assistant", content=cand["content"], author="model", idx=idx,
            model=cand["model"], call_key=cand.get("call_key"), prompt_tokens=cand.get("prompt_tokens"),
            completion_tokens=cand.get("completion_tokens"), latency_ms=cand.get("latency_ms"),
            finish_reason=cand.get("finish_reason"), warnings=cand.get("warnings") or [], **provenance)

    # -- deciding -----------------------------------------------------------------------------------
    def _system_of(self, c: dict[str, Any], label: str) -> dict[str, Any]:
        labels = [LABELS[k] for k in range(len(c["labels"]))]
        label = label.strip().upper()
        if label not in labels:
            raise _command_error(f"no answer {label!r}: the answers are {', '.join(labels)}")
        system = c["labels"][labels.index(label)]
        cand = next(k for k in c["candidates"] if k["system"] == system)
        if cand["status"] == "failed":
            raise _command_error(f"answer {label} failed ({cand['failure']}): there is nothing to pick")
        return cand

    def pick(self, label: str, reason: str | None = None) -> dict[str, Any]:
        """The candidate labelled ``label`` is the best: it continues the dialogue (accepted)."""
        c = self._open_comparison()
        cand = self._system_of(c, label)
        return self._decide(c, cand, "pick", None, False, reason)

    def rank(self, text: str, reason: str | None = None) -> dict[str, Any]:
        """Rank the candidates (``A>B=C``, best first, ties allowed; labels left out share the last
        place); the best continues (a tie at the top: chosen by the seed)."""
        c = self._open_comparison()
        try:
            tiers = parse_rank(text)
        except ValueError as exc:
            raise _command_error(str(exc)) from None
        ranking = [[self._system_of(c, label)["system"] for label in tier] for tier in tiers]
        flat = [x for tier in ranking for x in tier]
        if len(flat) != len(set(flat)):
            raise _command_error(f"rank {text!r} names an answer twice")
        best = ranking[0]
        d = self.s._need()
        winner = best[0] if len(best) == 1 else break_tie(best, d.spec.get("seed") or 0, d.dialogue_id, c["idx"])
        cand = next(k for k in c["candidates"] if k["system"] == winner)
        return self._decide(c, cand, "rank", ranking, len(best) > 1, reason)

    def _decide(self, c: dict[str, Any], cand: dict[str, Any], decision: str, ranking: list[list[str]] | None,
                tie: bool, reason: str | None) -> dict[str, Any]:
        reason = (reason or "").strip() or None
        if cand["warnings"] and not reason:
            raise _command_error("the chosen answer has warnings (" + "; ".join(cand["warnings"]) +
                                 "): pick it with a reason to override them")
        s = self.s
        request = s.conversation()[-1]
        _system, template_name, template_hash = s._system_prompt()
        provenance = {"lang": s._checks().answer_lang(s.conversation()), "template_name": template_name,
                      "template_hash": template_hash, "interaction_type": request.get("interaction_type") or "follow_up",
                      "params": {**(request.get("params") or {}), "compared": c["id"],
                                 **({"override": reason} if cand["warnings"] else {})}}
        with self.store.transaction():
            s._guard(request["id"])
            turn_id = self._answer_turn(cand, c["idx"], provenance)
            self.store.decide_comparison(c["id"], chooser="human", decision=decision, winner=cand["system"],
                                         ranking=ranking, tie=tie, reason=reason, annotator=s.annotator,
                                         turn_id=turn_id)
            s._event(decision, turn_id=turn_id, comparison_id=c["id"], reason=reason, tie=tie)
            s._event("accept", turn_id=turn_id, via=decision, reason=reason)
        return {"turn_id": turn_id, "label": LABELS[c["labels"].index(cand["system"])], "tie": tie}

    def pick_none(self, reason: str) -> dict[str, Any]:
        """Every answer is bad (a reason is required): the person then writes the answer or asks again."""
        c = self._open_comparison()
        reason = (reason or "").strip()
        if not reason:
            raise _command_error("pick none needs a reason (what is wrong with every answer)")
        s = self.s
        with self.store.transaction():
            s._guard(s.conversation()[-1]["id"])
            self.store.decide_comparison(c["id"], chooser="human", decision="none", reason=reason,
                                         annotator=s.annotator)
            s._event("pick_none", comparison_id=c["id"], reason=reason)
        return {"comparison_id": c["id"]}

    def write(self, text: str) -> dict[str, Any]:
        """After ``pick none``: the person's own answer continues (``human_edit``, chosen against
        every candidate); with warnings it waits for an accept with a reason, as an edit does."""
        c = self._open_comparison("decided")
        text = text.strip()
        if not text:
            raise _command_error("the answer is empty")
        s = self.s
        turns = s.conversation()
        warnings = s._checks().answer_warnings(turns, text)
        request = turns[-1]
        with self.store.transaction():
            s._guard(request["id"])
            turn_id = self.store.add_turn(
                s._need().dialogue_id, role="assistant", content=text, author="human", annotator=s.annotator,
                idx=c["idx"], warnings=warnings, lang=s._checks().answer_lang(turns),
                interaction_type=request.get("interaction_type") or "follow_up",
                params={**(request.get("params") or {}), "compared": c["id"]})
            self.store.decide_comparison(c["id"], chooser="human_edit", decision="none", reason=c["reason"],
                                         annotator=s.annotator, turn_id=turn_id)
            s._event("edit", turn_id=turn_id, warnings=warnings, comparison_id=c["id"])
            if not warnings:
                s._event("accept", turn_id=turn_id, via="edit")
        return {"turn_id": turn_id, "warnings": warnings, "decided": not warnings}

    def edited(self, turn: dict[str, Any]) -> None:
        """The picked answer ``turn`` was edited (in the caller's transaction): the person's text is
        now the chosen answer (``human_edit``)."""
        c = self.store.comparison_at(self.s._need().dialogue_id, turn["idx"])
        if c is None or c["status"] != "decided" or c["turn_id"] != turn["id"] or c["chooser"] == "human_edit":
            return
        self.store.decide_comparison(c["id"], chooser="human_edit", decision=c["decision"], winner=c["winner"],
                                     ranking=c["ranking"], tie=c["tie"], reason=c["reason"],
                                     annotator=self.s.annotator, turn_id=turn["id"])

    def reject_all(self) -> dict[str, Any]:
        """``regenerate`` on an open or all-bad comparison: it is taken back (kept, ``undone``) and
        the request waits for every system again (a new try: new calls)."""
        s = self.s
        request = s.conversation()[-1]
        with self.store.transaction():
            s._guard(request["id"])
            n = self.store.undo_comparisons(s._need().dialogue_id, request["idx"] + 1)
            s._event("regenerate", turn_id=request["id"], comparisons=n)
        return request

    def undone(self, from_idx: int) -> None:
        """Turns from ``from_idx`` were undone (in the caller's transaction): so are their comparisons."""
        self.store.undo_comparisons(self.s._need().dialogue_id, from_idx)

    # -- after the dialogue ---------------------------------------------------------------------------
    def reveal(self, dialogue_id: str) -> list[dict[str, Any]]:
        """Which system answered under which label, turn by turn (shown once the dialogue is done)."""
        out = []
        for c in self.store.comparisons_of(dialogue_id):
            out.append({"idx": c["idx"], "status": c["status"], "chooser": c["chooser"], "decision": c["decision"],
                        "systems": {LABELS[k]: name for k, name in enumerate(c["labels"])},
                        "winner": None if c["winner"] is None else LABELS[c["labels"].index(c["winner"])]})
        return out


def _answers(c: dict[str, Any]) -> list[dict[str, Any]]:
    by_system = {k["system"]: k for k in c["candidates"]}
    out = []
    for k, name in enumerate(c["labels"]):
        cand = by_system[name]
        a: dict[str, Any] = {"label": LABELS[k], "content": cand["content"] or "", "warnings": cand["warnings"]}
        if cand["status"] == "failed":
            a["failed"] = cand["failure"] or "the call failed"
        out.append(a)
    return out

