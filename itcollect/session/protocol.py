"""The non-interactive session: a line protocol on stdin/stdout, for scripts and tests.

``itcollect session --annotator NAME`` uses it whenever stdin is not a terminal (or with
``--protocol``). Every step is the same engine call the terminal UI makes.

Input: one command a line; blank lines and lines starting with ``#`` are ignored. A command that
takes text accepts it on the same line, or, written alone, on the following lines up to a line
holding a single ``.`` (a text line that is exactly ``.`` is written ``..``).

=====================  ======================================================================
``request TEXT``       write the next request; the model's answer follows
``type ID``            the interaction type of the next request (default: the plan's)
``accept [REASON]``    accept the answer; an answer with warnings needs a reason (stored)
``edit TEXT``          replace the answer with your version (gold); the model's is kept
``regenerate``         reject the answer (kept, labelled) and ask again
``undo``               take back the last request and its answer
``retry``              ask again after the endpoint failed (the request is kept)
``finish [REASON]``    close the dialogue as done (an undecided answer is accepted first); before
                       the planned turns only with a REASON (stored: an early finish); a bare
                       ``finish`` then is an ``error`` (``code`` early_finish, ``done``, ``planned``)
``skip REASON [NOTE]`` close as skipped: bad_source | offensive | not_news | other
``flag [NOTE]``        mark for review; the dialogue goes on
``guidelines [TYPE] [LANG]``  the guide's section for the current (or named) type
``status``             today's progress
``quit``               stop; the dialogue resumes exactly here next time (end of input = quit)
``pick LABEL [REASON]``  (``--compare``) the answer LABEL is the best; it continues the dialogue
``rank A>B=C [REASON]``  (``--compare``) rank the answers, best first, ``=`` for ties
``pick none REASON``   (``--compare``) every answer is bad; then ``edit TEXT`` or ``regenerate``
=====================  ======================================================================

With ``--compare A,B[,..]`` every system answers each request: a ``candidates`` event
(``answers``: ``[{"label", "content", "warnings"}, ...]``, a failed system's with ``failed``: the
reason; ``void`` when fewer than two answered: not a comparison), with ``delta`` events carrying
the ``label`` while they stream; then ``ready`` expects ``pick``. After ``pick``/``rank`` the turn is
decided (``ready`` expects ``request``; ``edit`` replaces the pick); after ``pick none`` ``ready``
expects ``decision`` (``edit TEXT`` writes the answer, ``regenerate`` asks every system again).
``done`` then carries ``compared``: which system answered under which label, turn by turn.

Output: one event a line, ``TAG JSON`` (tag, one space, a JSON object), flushed at once:
``session``, ``dialogue`` (what the screen shows: source, pair, instruction language, planned
types and turns, ``resumed`` and a ``message``), ``turn`` (the conversation so far, on open),
``request`` (committed: its ``content`` — the first one with the source sentence attached, as
in simulate, unless you pasted it — and its ``warnings``; every event with ``warnings`` (codes,
the contract) has ``warning_text`` beside them: the same warnings as sentences that say what to do), ``delta`` (a piece of the streaming answer),
``answer`` (committed; ``warnings`` from the same checks as simulate), ``ok`` (an action done),
``control`` (the answer just decided was a control item with a planted error: ``outcome`` miss or
catch, ``kind``, ``description``, ``message``; after a miss ``answer`` holds the model's real answer,
which now waits for a decision),
``guidelines``, ``status``, ``error`` (a command that did not fit: nothing changed),
``endpoint_error`` (the request is kept; ``retry``, ``undo`` or ``quit``), ``ready`` (waiting for a
command; ``expect`` is ``request``, ``decision``, ``retry`` or ``pick``), ``done`` / ``skipped`` (a dialogue
closed), ``waiting`` (nothing to open, but ``leased_by_others`` specs are leased by others right
now: the session looks again every ``retry_s`` seconds and sends ``waiting`` again, until a lease
is released or expires; ``quit`` and ``status`` are taken meanwhile, and a script's next command
is kept for the dialogue that opens), ``idle`` (nothing is
left to do: no spec pending or leased; the session ends), ``bye`` (quit).
"""

from __future__ import annotations

import asyncio
import json
import queue
import sys
import threading
from collections.abc import Iterator
from typing import IO, Any

from itcollect.config import settings
from itcollect.session.catalog import ui_lang, warning_sentences
from itcollect.session.engine import AnswerFailed, CommandError, ControlRevealed, EarlyFinish, Session
from itcollect.session.guidelines import guideline_section
from itcollect.session.status import status_line
from itcollect.store import LeaseLost

COMMANDS = ("request", "type", "accept", "edit", "regenerate", "undo", "retry", "finish", "skip", "flag",
            "guidelines", "status", "quit", "pick", "rank")
#: the state of the dialogue -> what ``ready`` expects
EXPECT = {"ask": "request", "decide": "decision", "answer": "retry", "pick": "pick", "allbad": "decision"}
_TEXT_COMMANDS = ("request", "edit")


class LineIO:
    """Lines in, events out: ``TAG JSON`` a line, flushed at once; a text block is the lines up to
    one holding a single ``.`` (``..`` for a text line that is exactly ``.``). The session's line
    protocol and the review desk's (:mod:`.review.lines`) both speak it."""

    def __init__(self, stdin: IO[str] | None = None, stdout: IO[str] | None = None) -> None:
        self.stdin = stdin or sys.stdin
        self.stdout = stdout or sys.stdout
        self._lines = self._read_lines()

    def emit(self, tag: str, **data: Any) -> None:
        self.stdout.write(f"{tag} {json.dumps(data, ensure_ascii=False, sort_keys=True)}\n")
        self.stdout.flush()

    def _read_lines(self) -> Iterator[str]:
        while True:
            line = self.stdin.readline()
            if not line:
                return
            yield line.rstrip("\r\n")

    def next_line(self) -> str | None:
        """The next input line (None at the end of the input)."""
        return next(self._lines, None)

    def read_block(self) -> str:
        out = []
        for line in self._lines:
            if line == ".":
                break
            out.append(line[1:] if line.startswith("..") else line)
        return "\n".join(out)


class LineProtocol(LineIO):
    """The annotator's session over :class:`LineIO`: one engine call a command."""

    def __init__(self, session: Session, stdin: IO[str] | None = None, stdout: IO[str] | None = None,
                 *, deltas: bool = True) -> None:
        super().__init__(stdin, stdout)
        self.s = session
        self.deltas = deltas
        # Lines are read by a thread into a queue, so that while the session waits for a spec it can
        # look again every few seconds and still take ``quit`` at once.
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._held: str | None = None
        source = self._lines

        def pump() -> None:
            for line in source:
                self._queue.put(line)
            self._queue.put(None)

        threading.Thread(target=pump, name="protocol-stdin", daemon=True).start()
        self._lines = self._queued()
        #: the language of the sentences beside the warnings' codes (``[web] language`` when it names one)
        self.lang = ui_lang(settings(session.config).web.language)

    def _queued(self) -> Iterator[str]:
        while True:
            if self._held is not None:
                held, self._held = self._held, None
                yield held
                continue
            line = self._queue.get()
            if line is None:
                self._queue.put(None)  # the end stays the end for every later reader
                return
            yield line

    async def _wait_for_work(self) -> bool:
        """Nothing to open: while specs are only leased by others say so (``waiting``, again at
        every look) and look again until one opens (True); ``idle`` when nothing is left, ``bye``
        on ``quit`` or the end of the input (False)."""
        while True:
            w = self.s.waiting()
            if w is None:
                self.emit("idle", message="nothing is left to do: every spec is done")
                return False
            self.emit("waiting", message=f"{w['leased_by_others']} spec(s) are leased by others: waiting until a "
                                         f"lease is released or expires (quit to stop)", **w)
            if self._held is not None:  # a command for the next dialogue is read already: keep it for it
                await asyncio.sleep(w["retry_s"])
                line: str | None = ""
            else:
                try:
                    line = await asyncio.to_thread(self._queue.get, True, w["retry_s"])
                except queue.Empty:
                    line = ""
            cmd = (line or "").strip().lower()
            if line is None or cmd == "quit":
                if line is None:
                    self._queue.put(None)
                self.emit("bye", reason="quit" if line is not None else "end of input")
                return False
            if cmd == "status":
                p = self.s.progress()
                self.emit("status", line=status_line(p), **p)
            elif cmd and not cmd.startswith("#"):
                self._held = line  # a script's next command: it is the new dialogue's first
            if self.s.open_next() is not None:
                return True

    def _next_command(self) -> tuple[str, str] | None:
        for line in self._lines:
            stripped = line.strip()
            if not stripped or stripped.startswith("#"):
                continue
            cmd, _, arg = stripped.partition(" ")
            cmd = cmd.lower()
            if cmd in _TEXT_COMMANDS and not arg.strip():
                arg = self.read_block()
            return cmd, arg.strip() if cmd not in _TEXT_COMMANDS else arg
        return None

    # -- the loop ------------------------------------------------------------------------------------
    async def run(self) -> int:
        self.emit("session", annotator=self.s.annotator, protocol=1, commands=list(COMMANDS))
        try:
            while True:
                if self.s.current is None:
                    if self.s.open_next() is None and not await self._wait_for_work():
                        return 0
                    self._show_dialogue()
                    if self.s.state() == "answer":
                        await self._answer(self.s.get_answer)
                    elif self.s.state() == "pick":
                        self._candidates(self.s.view() or {})
                        if self.s.current is None:
                            continue
                self.emit("ready", expect=EXPECT[self.s.state()],
                          type=self.s.current_type(), turn=self.s.user_turns())
                nxt = self._next_command()
                if nxt is None:
                    self.s.quit()
                    self.emit("bye", reason="end of input")
                    return 0
                cmd, arg = nxt
                try:
                    if await self._do(cmd, arg) == "quit":
                        return 0
                except ControlRevealed:
                    pass  # the control event below says what happened
                except EarlyFinish as exc:  # a bare finish before the planned turns: the count, nothing changed
                    self.emit("error", command=cmd, code="early_finish", done=exc.done, planned=exc.planned,
                              message=exc.message)
                except CommandError as exc:
                    self.emit("error", command=cmd, message=exc.message)
                except LeaseLost as exc:
                    self.emit("error", command=cmd, code="lease_lost",
                              message=f"{exc.message}; moving on to the next dialogue (nothing of yours was lost)")
                    self.s.lease_lost()
                self._control()
        finally:
            await self.s.close()

    def _control(self) -> None:
        note = self.s.take_control_note()
        if note is not None:
            self.emit("control", **note)

    def _show_dialogue(self) -> None:
        v = self.s.view()
        assert v is not None
        self.emit("dialogue", dialogue_id=v["id"], **{k: v[k] for k in (
            "spec_id", "source", "reference", "src_lang", "tgt_lang", "instruction_lang", "planned_types",
            "planned_turns", "plan", "resumed", "message")})
        for t in v["turns"]:
            self.emit("turn", **{k: t[k] for k in ("turn_id", "idx", "role", "content", "author", "type", "warnings")},
                      warning_text=warning_sentences(t["warnings"], self.lang, request=t["role"] == "user"))

    def _candidates(self, v: dict, void: str | None = None) -> None:
        answers = [{**a, "warning_text": warning_sentences(a["warnings"], self.lang)} for a in v.get("candidates") or []]
        data: dict = {"answers": answers, "turn": self.s.user_turns()}
        if void:
            data["void"] = void
        self.emit("candidates", **data)

    async def _compare_answers(self) -> None:
        """Every system answers the pending request (:mod:`.compare`)."""
        assert self.s.compare is not None

        def on_delta(label: str, piece: str) -> None:
            if self.deltas:
                self.emit("delta", label=label, text=piece)

        asked = await self.s.compare.ask(on_delta)
        self._candidates({"candidates": asked.answers}, asked.void)

    async def _answer(self, fn) -> None:
        if self.s.compare is not None and fn == self.s.get_answer:
            fn = None

        def on_delta(piece: str) -> None:
            if self.deltas:
                self.emit("delta", text=piece)

        def on_reset() -> None:
            self.emit("delta", reset=True, text="")

        try:
            if fn is None:
                return await self._compare_answers()
            ans = await fn(on_delta, on_reset)
        except AnswerFailed as exc:
            self.emit("endpoint_error", message=exc.message, choices=["retry", "undo", "quit"])
            return
        except LeaseLost as exc:
            self.emit("error", code="lease_lost", message=exc.message)
            self.s.lease_lost()
            return
        self.emit("answer", turn_id=ans.turn_id, idx=ans.idx, text=ans.text, model=ans.model,
                  finish_reason=ans.finish_reason, warnings=ans.warnings, from_ledger=ans.from_ledger,
                  warning_text=warning_sentences(ans.warnings, self.lang))

    async def _do(self, cmd: str, arg: str) -> str | None:
        s = self.s
        if cmd == "request":
            r = s.add_request(arg)
            self.emit("request", turn_id=r["turn_id"], type=r["type"], content=r["content"], warnings=r["warnings"],
                      warning_text=warning_sentences(r["warnings"], self.lang, request=True))
            await self._answer(s.get_answer)
        elif cmd == "type":
            s.set_next_type(arg)
            self.emit("ok", action="type", type=arg)
        elif cmd == "accept":
            t = s.accept(arg or None)
            self.emit("ok", action="accept", turn_id=t["id"])
        elif cmd == "edit":
            r = s.edit(arg)
            self.emit("ok", action="edit", turn_id=r["turn_id"], warnings=r["warnings"], accepted=r["decided"],
                      warning_text=warning_sentences(r["warnings"], self.lang))
        elif cmd == "regenerate":
            s.reject_answer()
            self._control()
            await self._answer(s.get_answer)
        elif cmd == "retry":
            s.require("retry")
            await self._answer(s.get_answer)
        elif cmd == "undo":
            r = s.undo()
            self.emit("ok", action="undo", turns=r["undone"])
        elif cmd == "finish":
            did = s.finish(arg or None)
            self.emit("done", dialogue_id=did, **({"compared": s.compare.reveal(did)} if s.compare else {}))
        elif cmd in ("pick", "rank"):
            if s.compare is None:
                raise CommandError(f"{cmd} goes with a compare session (session --compare A,B)")
            s.require(cmd)
            what, _, reason = arg.partition(" ")
            if cmd == "pick" and what.lower() == "none":
                r = s.compare.pick_none(reason)
                self.emit("ok", action="pick", decision="none", **r)
            else:
                if not what:
                    raise CommandError(f"{cmd} needs " + ("a label (pick A)" if cmd == "pick" else "an order (rank A>B=C)"))
                r = (s.compare.pick if cmd == "pick" else s.compare.rank)(what, reason or None)
                self.emit("ok", action=cmd, decision=cmd, **r)
        elif cmd == "skip":
            reason, _, note = arg.partition(" ")
            if not reason:
                raise CommandError("skip needs a reason: bad_source | offensive | not_news | other")
            did = s.skip(reason, note or None)
            self.emit("skipped", dialogue_id=did, reason=reason)
        elif cmd == "flag":
            s.flag(arg or None)
            self.emit("ok", action="flag")
        elif cmd == "guidelines":
            parts = arg.split()
            type_id = parts[0] if parts else s.current_type()
            assert s.current is not None  # commands are read while a dialogue is open
            lang = parts[1] if len(parts) > 1 else s.current.spec["instruction_lang"]
            text = guideline_section(type_id, lang)
            if not text:
                raise CommandError(f"no guideline section for {type_id!r}")
            s.log_guidelines(type_id)
            self.emit("guidelines", type=type_id, lang=lang, text=text)
        elif cmd == "status":
            p = s.progress()
            self.emit("status", line=status_line(p), **p)
        elif cmd == "quit":
            s.quit()
            self.emit("bye", reason="quit")
            return "quit"
        else:
            raise CommandError(f"unknown command {cmd!r} (commands: {', '.join(COMMANDS)})")
        return None
