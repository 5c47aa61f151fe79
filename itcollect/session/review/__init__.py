"""``itcollect session --review``: error-typed review of finished dialogues (the logic in
:mod:`.logic`, the line protocol in :mod:`.lines`, the terminal UI in :mod:`.terminal`).

Three orders (``--order``):

* ``default`` — flagged dialogues and dialogues with edited answers, one at a time. The reviewer
  marks spans of answers with an error category and severity (the lists of the LLM judge,
  :mod:`itcollect.llm.judgement.schema`), may fix an answer (the fix becomes the active turn with the
  reviewer as its author; the old answer is kept), and decides: ``accept`` (stored as ``fixed``
  when the reviewer fixed an answer of it) or ``reject``;
* ``judge`` — the same, and also every dialogue the LLM judge scored, the lowest turn score first,
  then the rest as before;
* ``overlap`` — the copies of an overlap spec (``[session] overlap_share``), side by side, once all
  of them are finished; the reviewer may mark and fix as above and picks the copy to keep (the
  filter drops the others as ``overlap_not_picked``; the picked one counts as accepted, or fixed).

The verdict goes to ``dialogues.review_status`` with the reviewer's name and note in the dialogue's
meta and the action log; marks, fixes and picks are stored with the reviewer as author
(:mod:`itcollect.store.review`). Interactive on a terminal; otherwise a line protocol like the
session's: the tool prints ``review {...}`` (``mode`` dialogue: one dialogue with all its turns,
rejected and undone ones included, each answer with its ``marks``, its current judgement under
``judge`` (score, error spans, compliance, rating; marked in the answer on a terminal), a reviewer's
fix with ``review_fix``, a control item with ``control``; ``mode`` overlap: ``dialogues``, the
copies) and
``ready {"expect": "verdict" | "pick"}``. Commands:

=================================  ==================================================================
``mark TURN CATEGORY SEVERITY SPAN``  mark an error: SPAN is text of the answer (its first occurrence)
                                   or ``@START:END`` (character offsets); a note may follow `` -- ``
``unmark MARK``                    take back one of your marks
``suggest TURN INDEX DECISION``    the judge's error span INDEX of an answer's ``suggestions``:
                                   ``confirm`` (a mark as the judge said), ``change CATEGORY
                                   [SEVERITY]`` (a mark of yours) or ``dismiss``
``fix TURN TEXT``                  your version of an answer (TEXT on the line, or the following
                                   lines up to a line holding a single ``.``)
``accept [NOTE]``, ``reject [NOTE]``  the verdict (order default)
``undo [DIALOGUE]``                take back this session's last verdict (or DIALOGUE's, any
                                   reviewer's) until the dialogue is exported; the dialogue is
                                   printed again to decide anew (the history keeps both)
``pick DIALOGUE [NOTE]``           the copy to keep (order overlap; an id prefix of 8+ will do)
``next``                           leave it for later; ``quit`` stops
=================================  ==================================================================

After a mark, an unmark or a fix the item is printed again as it now stands; ``idle`` ends the queue.
"""

from __future__ import annotations

import sys
from typing import IO

from itcollect.session.review.logic import (
    MARK_CATEGORIES,
    ORDERS,
    VERDICTS,
    ReviewError,
    dialogue_of_turn,
    next_review,
    parse_span,
    recent_verdicts,
    record_fix,
    record_mark,
    record_pick,
    record_suggestion,
    record_undo,
    record_unmark,
    record_verdict,
    reopen_item,
    review_item,
)
from itcollect.store.interfaces import ReviewStore

__all__ = ["ReviewError", "VERDICTS", "ORDERS", "MARK_CATEGORIES", "review_item", "next_review", "record_verdict",
           "record_undo", "reopen_item", "recent_verdicts", "record_suggestion", "record_mark", "record_unmark", "record_fix", "record_pick", "dialogue_of_turn", "parse_span",
           "run_review"]


def run_review(store: ReviewStore, reviewer: str, *, interactive: bool | None = None, order: str = "default",
               stdin: IO[str] | None = None, stdout: IO[str] | None = None) -> int:
    """Walk the review queue until it is empty or the reviewer quits: on a terminal one key a
    decision (:mod:`.terminal`), else the line protocol (:mod:`.lines`)."""
    if interactive is None:
        interactive = sys.stdin.isatty() and sys.stdout.isatty()
    if interactive:
        from itcollect.session.review.terminal import run_terminal

        return run_terminal(store, reviewer, order)
    from itcollect.session.review.lines import ReviewLines

    return ReviewLines(store, reviewer, order, stdin, stdout).run()
