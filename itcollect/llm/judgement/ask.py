"""Asking an LLM judge about one answer: its prompt, the one re-ask of an unreadable reply, the
judgement row — as a :class:`~itcollect.llm.runners.machine.Machine` the shared runners drive.

* :class:`Judge` builds the judge's prompt for each answer of a dialogue (what each answer is comes
  from :func:`itcollect.kernel.dialogue.expectations`: its type, the target language in force, the
  translation it revises, the request it answers), so the judge stage, a comparison of several
  systems, simulate, the session and the filter agree about it; and it turns a reply into a
  judgements row.
* :class:`JudgementMachine` is the judgement of one answer: ask (sample ``2 x generation``); when
  the reply cannot be parsed, ask once more with the reply and the reason (sample ``+1``); then the
  row: judged, or ``unparsed`` with the raw text and both reasons. The same calls, keys and parsing
  online and in Batch API rounds, so a re-run after ``kill -9`` gets every answered call from the
  ledger and turns it into the same judgement.

Nothing here knows about the judge stage's selection of answers (generations, ``--rejudge``):
a stage that judges (``itcollect judge``, a comparison's candidates) imports this module, not
another stage.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from itcollect.kernel.dialogue import Expectation, answered_request, expectations
from itcollect.kernel.prompting import Prompts, load_prompts
from itcollect.llm.answers import ChatResult
from itcollect.llm.judgement.parse import Judgement, Unparsable, parse_judgement
from itcollect.llm.judgement.schema import (
    KINDS,
    SYSTEM_TEMPLATE,
    TEMPLATES,
    Weights,
    kind_of,
    response_format,
)
from itcollect.llm.runners.machine import Answer, Call
from itcollect.settings import settings

#: What a judge is told when its answer could not be read (the one re-ask).
REASK = ("Your reply could not be read as the JSON object asked for ({why}). Reply again with only that JSON "
         "object, complete, and nothing else.")
#: The LLM role judgement calls go out as.
ROLE = "judge"


@dataclass
class Task:
    """One answer to judge: the call to make and what its judgement row records."""

    dialogue_id: str
    turn_id: int
    dialogue_rev: int
    kind: str
    type_id: str | None
    revision: bool
    messages: list[dict[str, str]]
    template_name: str
    template_hash: str
    generation: int
    response_format: dict[str, Any] | None

    @property
    def sample(self) -> int:
        return 2 * self.generation

    @property
    def params(self) -> dict[str, Any]:
        """The request parameters beyond the role's (part of the call's ledger key)."""
        return {"response_format": self.response_format} if self.response_format is not None else {}


def _combined_hash(*hashes: str) -> str:
    return hashlib.sha256("\0".join(hashes).encode()).hexdigest()


def reask_messages(task: Task, first_reply: str, why: str) -> list[dict[str, str]]:
    """The re-ask of ``task``: its prompt, the unreadable reply, and what was wrong with it."""
    return [*task.messages, {"role": "assistant", "content": first_reply[:4000]},
            {"role": "user", "content": REASK.format(why=why)}]


class Judge:
    """Builds the judge's prompt for each answer of a dialogue and turns its reply into a row."""

    def __init__(self, config: dict[str, Any], model: str, *, prompts: Prompts | None = None,
                 base: Any = None) -> None:
        self.prompts = prompts or load_prompts(config, base)
        self.weights = Weights.from_config(config)
        self.mode = settings(config).llm.judge.response_format
        self.model = model
        system = self.prompts.render(SYSTEM_TEMPLATE)
        self.system = system.text
        #: the template hash a judgement records: the system template's and its kind template's
        self.hashes = {k: _combined_hash(system.hash, self.prompts.template_hash(TEMPLATES[k])) for k in KINDS}

    def is_current(self, stored: dict[str, Any] | None, dialogue_rev: int, min_generation: int) -> bool:
        return (stored is not None and stored["judge_model"] == self.model
                and stored["template_hash"] in self.hashes.values() and stored["dialogue_rev"] == dialogue_rev
                and stored["generation"] >= min_generation)

    def answers(self, d: dict[str, Any], turns: list[dict[str, Any]]) -> list[tuple[int, dict[str, Any], Expectation]]:
        """Each answer of dialogue ``d`` (its active ``turns``): its index, the user turn it answers,
        and what it is expected to be."""
        answers = [i for i, t in enumerate(turns) if t["role"] == "assistant"]
        if not answers:
            return []
        users: list[dict[str, Any]] = []
        for i in answers:
            j = i - 1
            while j >= 0 and turns[j]["role"] != "user":
                j -= 1
            users.append(turns[j] if j >= 0 else {"content": "", "params": {}})
        exps = expectations(src_lang=d.get("src_lang"), tgt_lang=d.get("tgt_lang"),
                            instruction_lang=d.get("instruction_lang"),
                            requests=[answered_request(u, turns[i]) for u, i in zip(users, answers)])
        return list(zip(answers, users, exps))

    def task(self, d: dict[str, Any], answer: dict[str, Any], user: dict[str, Any], exp: Expectation, *,
             generation: int = 0) -> Task:
        """The judge call for ``answer`` (a turn of dialogue ``d``) to ``user``'s request."""
        kind = kind_of(exp.type)
        revision = exp.k > 0 or kind == "rating"
        src, instr = d.get("src_lang") or "unknown", d.get("instruction_lang") or "unknown"
        source = d.get("source_text") or ""
        common = {"type_id": exp.type, "k": exp.k, "revision": revision, "source": source, "src_lang": src,
                  "instruction_lang": instr, "request": user.get("content") or "", "answer": answer["content"],
                  "params": dict(exp.params), "previous_translation": exp.previous_translation or ""}
        if kind == "translation":
            if exp.type == "back_translate":
                from_text = exp.previous_translation or exp.previous_answer or source
                from_lang, to_lang = exp.target_before or "unknown", src
            else:
                from_text, from_lang, to_lang = source, src, exp.target or "unknown"
            rendered = self.prompts.render(TEMPLATES[kind], **common, from_text=from_text, from_lang=from_lang,
                                           to_lang=to_lang, terms=list(exp.must_include),
                                           source_in_request=not from_text)
        else:
            rendered = self.prompts.render(TEMPLATES[kind], **common, to_lang=exp.target_before or "unknown")
        messages = [{"role": "system", "content": self.system}, {"role": "user", "content": rendered.text}]
        return Task(d["id"], answer["id"], d["turns_rev"], kind, exp.type, revision, messages, rendered.name,
                    self.hashes[kind], generation, response_format(self.mode, kind, revision))

    def tasks(self, d: dict[str, Any], turns: list[dict[str, Any]], stored: dict[int, dict[str, Any]], *,
              min_generation: int = 0, generation: int = 0, rejudge: bool = False) -> list[Task]:
        """The answers of dialogue ``d`` (its active ``turns``) that need a judge call: those
        without a current judgement in ``stored`` (turn id -> this judge's latest row).

        ``generation``: of a new judgement (``rejudge``: of every one); a stale judgement is
        redone at its own generation otherwise."""
        out = []
        for i, user, exp in self.answers(d, turns):
            prev = stored.get(turns[i]["id"])
            if self.is_current(prev, d["turns_rev"], min_generation):
                continue
            gen = generation if rejudge or prev is None else int(prev["generation"])
            out.append(self.task(d, turns[i], user, exp, generation=gen))
        return out

    def row(self, task: Task, *, call_key: str, sample: int, judgement: Judgement | None = None,
            raw: str | None = None, why: str | None = None) -> dict[str, Any]:
        """The judgements row of ``task``: parsed, or ``unparsed`` with the raw text and the reason."""
        row: dict[str, Any] = {
            "turn_id": task.turn_id, "dialogue_id": task.dialogue_id, "dialogue_rev": task.dialogue_rev,
            "kind": task.kind, "interaction_type": task.type_id, "judge_model": self.model,
            "template_name": task.template_name, "template_hash": task.template_hash, "call_key": call_key,
            "generation": task.generation, "sample": sample}
        if judgement is None:
            row.update(status="unparsed", errors=[], n_critical=0, raw=raw, reason=why)
        else:
            row.update(status="judged", score=judgement.score, errors=judgement.errors, n_critical=judgement.n_critical,
                       compliance=judgement.compliance, reason=judgement.reason, rating=judgement.rating,
                       in_instruction_language=judgement.in_instruction_language)
        return row

    def parse(self, task: Task, text: str) -> Judgement:
        return parse_judgement(text, task.kind, task.revision, self.weights)


@dataclass
class Asking:
    """Where the judgement of one answer stands: asked (``first`` None), re-asked (``first`` is the
    unreadable reply, ``why`` what was wrong with it), or done (``row`` set; ``judgement`` when parsed)."""

    task: Task
    first: str | None = None
    why: str | None = None
    row: dict[str, Any] | None = None
    judgement: Judgement | None = None

    @property
    def reasked(self) -> bool:
        return self.first is not None


class JudgementMachine:
    """The judgement of one answer as a machine (:class:`Asking` is its state): ask, re-ask once, row.

    Its calls are required (a judge call that fails leaves the answer for the next run); a stage
    that judges several answers at once (a comparison) composes several of these states."""

    def __init__(self, judge: Judge) -> None:
        self.judge = judge

    def call(self, st: Asking) -> Call | None:
        """The call ``st`` needs now, or None when its row is written."""
        if st.row is not None:
            return None
        task = st.task
        if st.first is None:
            return Call(ROLE, task.messages, task.sample, task.params)
        return Call(ROLE, reask_messages(task, st.first, st.why or ""), task.sample + 1, task.params)

    def calls(self, st: Asking) -> Sequence[Call]:
        call = self.call(st)
        return [] if call is None else [call]

    def answer(self, st: Asking, call: Call, result: ChatResult) -> None:
        """Parse ``result`` (the answer to ``call``, which :meth:`call` gave for ``st``)."""
        judge, task = self.judge, st.task
        try:
            st.judgement = judge.parse(task, result.text)
        except Unparsable as exc:
            if st.first is None:
                st.first, st.why = result.text, str(exc)
                return
            st.row = judge.row(task, call_key=result.call_key, sample=call.sample, raw=result.text,
                               why=f"{st.why}; asked again: {exc}")
            return
        st.row = judge.row(task, call_key=result.call_key, sample=call.sample, judgement=st.judgement)

    def apply(self, st: Asking, calls: Sequence[Call], answers: Sequence[Answer]) -> None:
        (call,), (result,) = calls, answers
        assert isinstance(result, ChatResult), "a judgement's calls are required"
        self.answer(st, call, result)


__all__ = ["REASK", "ROLE", "Task", "Judge", "Asking", "JudgementMachine", "reask_messages"]
