"""The review desk's line protocol (``session --review`` when stdin is not a terminal), for
scripts and tests: the same :class:`~itcollect.session.protocol.LineIO` as the session's (events
``TAG JSON``, text blocks up to a ``.`` line); the commands are listed in the package's doc
(:mod:`itcollect.session.review`)."""

from __future__ import annotations

from typing import IO

from itcollect.kernel.review import VERDICTS
from itcollect.llm.judgement.schema import SEVERITIES
from itcollect.session.protocol import LineIO
from itcollect.session.review.logic import (
    MARK_CATEGORIES,
    ReviewError,
    answer_on_screen,
    dialogue_of_turn,
    next_review,
    parse_span,
    record_fix,
    record_mark,
    record_pick,
    record_suggestion,
    record_undo,
    record_unmark,
    record_verdict,
    refresh,
    reopen_item,
)
from itcollect.store.interfaces import ReviewStore

COMMANDS = {"default": ["mark", "unmark", "fix", "suggest", "accept", "reject", "undo", "next", "quit"],
            "judge": ["mark", "unmark", "fix", "suggest", "accept", "reject", "undo", "next", "quit"],
            "overlap": ["mark", "unmark", "fix", "suggest", "pick", "next", "quit"]}


class ReviewLines(LineIO):
    """One reviewer walking the queue in ``order`` over stdin/stdout."""

    def __init__(self, store: ReviewStore, reviewer: str, order: str = "default", stdin: IO[str] | None = None,
                 stdout: IO[str] | None = None) -> None:
        super().__init__(stdin, stdout)
        self.store = store
        self.reviewer = reviewer
        self.order = order
        self.skipped: set[str] = set()
        self.decided: list[str] = []   # the dialogues this session gave a verdict, in order
        self.reopen: str | None = None  # a dialogue whose verdict was taken back: shown next

    def run(self) -> int:
        self.emit("session", annotator=self.reviewer, mode="review", order=self.order,
                  commands=COMMANDS[self.order], categories=list(MARK_CATEGORIES), severities=list(SEVERITIES))
        while True:
            reopen, self.reopen = self.reopen, None
            item = (reopen_item(self.store, reopen, self.skipped, self.order) if reopen
                    else next_review(self.store, self.skipped, self.order))
            if item is None:
                self.emit("idle", message="nothing left to review")
                return 0
            self.emit("review", **item)
            if self._review(item) == "quit":
                return 0

    def _review(self, item: dict) -> str:
        """Commands on one item until it is decided or left for later (``next``), or the reviewer
        stops (``quit``; the end of the input too)."""
        while True:
            self.emit("ready", expect="pick" if self.order == "overlap" else "verdict")
            line = self.next_line()
            if line is None:
                self.emit("bye", reason="end of input")
                return "quit"
            cmd, _, rest = line.strip().partition(" ")
            cmd = cmd.lower()
            if not cmd or cmd.startswith("#"):
                continue
            try:
                outcome = self._do(item, cmd, rest)
            except ReviewError as exc:
                self.emit("error", command=cmd, message=exc.message)
                if "already" in exc.message:  # someone else decided it meanwhile
                    return "next"
                continue
            if outcome != "changed":
                return outcome
            # a mark, an unmark or a fix: the item as it now stands
            refreshed = refresh(self.store, item)
            if refreshed is None:
                return "next"
            item = refreshed
            self.emit("review", **item)

    def _do(self, item: dict, cmd: str, rest: str) -> str:
        """One command: ``next`` (decided, or left for later), ``changed`` (a mark, an unmark or a
        fix), ``quit``."""
        store, reviewer, overlap = self.store, self.reviewer, self.order == "overlap"
        if cmd in VERDICTS and not overlap:
            verdict = record_verdict(store, reviewer, item["dialogue_id"], cmd, rest)
            self.decided.append(item["dialogue_id"])
            self.emit("ok", action=cmd, dialogue_id=item["dialogue_id"], verdict=verdict)
            return "next"
        if cmd == "undo" and not overlap:
            did = rest.strip() or (self.decided[-1] if self.decided else "")
            if not did:
                raise ReviewError("undo [DIALOGUE]: no verdict of this session to take back")
            undone = record_undo(store, reviewer, did)
            if did in self.decided:
                self.decided.remove(did)
            self.reopen = did
            self.emit("ok", action="undo", dialogue_id=did, undone=undone)
            return "next"
        if cmd == "pick" and overlap:
            did, _, note = rest.strip().partition(" ")
            picked = record_pick(store, reviewer, item["spec_id"], did, note)
            self.emit("ok", action="pick", spec_id=item["spec_id"], dialogue_id=picked)
            return "next"
        if cmd == "mark":
            parts = rest.split(None, 3)
            if len(parts) < 4 or not parts[0].isdigit():
                raise ReviewError("mark TURN CATEGORY SEVERITY SPAN [-- NOTE]")
            span, _, note = parts[3].partition(" -- ")
            turn_id = int(parts[0])
            start, end = parse_span(answer_on_screen(item, turn_id)["content"], span)
            mark_id = record_mark(store, reviewer, dialogue_of_turn(item, turn_id), turn_id, parts[1], parts[2],
                                  start, end, note)
            self.emit("ok", action="mark", mark_id=mark_id, turn_id=turn_id, start=start, end=end)
            return "changed"
        if cmd == "suggest":
            parts = rest.split()
            if len(parts) < 3 or not (parts[0].isdigit() and parts[1].isdigit()):
                raise ReviewError("suggest TURN INDEX confirm | dismiss | change [CATEGORY [SEVERITY]]")
            turn_id = int(parts[0])
            decided = record_suggestion(store, reviewer, dialogue_of_turn(item, turn_id), turn_id, int(parts[1]),
                                        parts[2].lower(), *(parts[3:5]))
            self.emit("ok", action="suggest", turn_id=turn_id, index=int(parts[1]), decision=decided)
            return "changed"
        if cmd == "unmark":
            if not rest.strip().isdigit():
                raise ReviewError("unmark MARK (the mark's id)")
            record_unmark(store, reviewer, int(rest))
            self.emit("ok", action="unmark", mark_id=int(rest))
            return "changed"
        if cmd == "fix":
            head, _, text = rest.strip().partition(" ")
            if not head.isdigit():
                raise ReviewError("fix TURN TEXT")
            text = text if text.strip() else self.read_block()
            turn_id = int(head)
            new_id = record_fix(store, reviewer, dialogue_of_turn(item, turn_id), turn_id, text)
            self.emit("ok", action="fix", turn_id=turn_id, new_turn_id=new_id)
            return "changed"
        if cmd == "next":
            self.skipped.add(item["key"])
            return "next"
        if cmd == "quit":
            self.emit("bye", reason="quit")
            return "quit"
        raise ReviewError("commands: " + ", ".join(COMMANDS[self.order]))
