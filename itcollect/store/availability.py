"""Who may take which spec: the one set of availability rules behind simulate's claims
(:mod:`.claims`) and the human leases (:mod:`.leases`), overlap included.

A spec has ``copies`` slots (``specs.copies``; NULL or 1 for all but overlap specs), each with at
most one lease and one dialogue (``leases`` and ``dialogues`` are keyed by spec and ``copy``). The
rules, for every holder alike:

* a spec whose dialogue someone of the other kind started (a person's for simulate, simulate's or
  an import's for a person) is never taken: a machine must not append turns to an annotator's
  dialogue, nor a person to a simulated one;
* simulate takes only specs of one copy: an overlap spec (``copies`` > 1, decided when a person
  first took it) is meant for people, every copy of it;
* a person takes a copy that is not finished (its dialogue done, skipped or failed) and not
  leased, and never a second copy of a spec they hold, or wrote in, under another copy: every copy
  of an overlap spec goes to a different annotator.

Which specs overlap is decided per spec from a hash of its plan position (seed, seq): the same
specs whatever the order in which people claim them (:func:`overlap_copies`).

A spec's status sums up its copies (:func:`settle_spec_status`): ``done`` once every copy is
finished (``done`` if one of them is; else the last one's status), ``in_progress`` while a copy is
leased, ``pending`` otherwise (a copy waits for someone).
"""

from __future__ import annotations

import hashlib
import sqlite3
from dataclasses import dataclass
from typing import Any

from itcollect.settings import settings
from itcollect.store.core import utcnow
from itcollect.store.dialogues import SPEC_STATUSES

#: Most copies of one spec (``[session] overlap_annotators`` is checked against it).
MAX_COPIES = 16

#: The copy numbers 0..MAX_COPIES-1 as a table ``n(c)`` (a recursive CTE), to join with a spec's slots.
COPY_NUMBERS = f"WITH RECURSIVE n(c) AS (SELECT 0 UNION ALL SELECT c + 1 FROM n WHERE c < {MAX_COPIES - 1}) "


@dataclass(frozen=True)
class Overlap:
    """``[session] overlap_share`` and ``overlap_annotators``: that share of the specs people take
    is done by that many different annotators."""

    share: float
    annotators: int

    @classmethod
    def from_config(cls, config: Any) -> Overlap:
        s = settings(config).session
        return cls(s.overlap_share, s.overlap_annotators)

    @property
    def on(self) -> bool:
        return self.share > 0 and self.annotators > 1


def unit_hash(*parts: Any) -> float:
    """A number in [0, 1) from the parts (sha256): a stable, seedable coin per item."""
    digest = hashlib.sha256("|".join(str(p) for p in parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0 ** 64


def overlap_copies(seed: int, seq: int, overlap: Overlap | None) -> int:
    """How many annotators do the spec at plan position (seed, seq): ``overlap.annotators`` for a
    share ``overlap.share`` of the specs, else 1."""
    if overlap is None or not overlap.on:
        return 1
    return overlap.annotators if unit_hash("overlap", seed, seq) < overlap.share else 1


def may_take(kind: str) -> str:
    """WHERE fragment over a spec ``s``: a worker of ``kind`` (``simulated`` or ``human``) may take
    it at all (see the module doc). Holds no parameters."""
    if kind == "simulated":
        return ("COALESCE(s.copies, 1) <= 1 AND NOT EXISTS (SELECT 1 FROM dialogues d WHERE d.spec_id = s.id"
                " AND d.origin <> 'simulated')")
    if kind == "human":
        return "NOT EXISTS (SELECT 1 FROM dialogues d WHERE d.spec_id = s.id AND d.origin <> 'human')"
    raise ValueError(f"unknown worker kind {kind!r}")


def simulate_claims(compare: bool) -> str:
    """WHERE fragment over a spec ``s``: what a ``simulate`` run claims beside :func:`may_take`.
    A compare run (``simulate --compare``) takes any spec; a plain run leaves the replays of
    ``plan --from-split`` (they exist to compare systems) and the dialogues a comparison started
    (a dialogue keeps its systems: one assistant's answer is never mixed into them)."""
    if compare:
        return "1 = 1"
    return ("s.replay_of IS NULL AND NOT EXISTS (SELECT 1 FROM dialogues dc JOIN dialogue_systems ds"
            " ON ds.dialogue_id = dc.id WHERE dc.spec_id = s.id)")


#: Expression with one parameter (now, unix time): spec ``s`` has a live lease (one that has not
#: run out), on any copy.
LIVE_LEASE = "EXISTS (SELECT 1 FROM leases l WHERE l.spec_id = s.id AND l.expires_at >= ?)"

#: WHERE fragment with one parameter (now): spec ``s`` is pending and nobody holds a live lease on
#: it: free for simulate's claims and a person's lease alike (each adds :func:`may_take`).
PENDING_FREE = f"s.status = 'pending' AND NOT {LIVE_LEASE}"

#: WHERE fragment: copy ``{slot}`` of spec ``s`` is neither leased nor finished.
SLOT_FREE = ("NOT EXISTS (SELECT 1 FROM leases l2 WHERE l2.spec_id = s.id AND l2.copy = {slot})"
             " AND NOT EXISTS (SELECT 1 FROM dialogues d2 WHERE d2.spec_id = s.id AND d2.copy = {slot}"
             " AND d2.status <> 'in_progress')")

#: WHERE fragment with three parameters (holder, annotator name, annotator name): the holder has
#: no other copy of spec ``s`` than ``{slot}``, leased or written in (also as a previous annotator
#: whose lease ran out and was taken over).
NOT_MINE_ELSEWHERE = ("NOT EXISTS (SELECT 1 FROM leases l3 WHERE l3.spec_id = s.id AND l3.copy <> {slot}"
                      " AND l3.holder = ?)"
                      " AND NOT EXISTS (SELECT 1 FROM dialogues d3 WHERE d3.spec_id = s.id AND d3.copy <> {slot}"
                      " AND (d3.annotator = ? OR EXISTS (SELECT 1 FROM json_each(d3.meta, '$.previous_annotators')"
                      " p WHERE p.value = ?)))")


def not_mine_elsewhere(slot: str, holder: str, annotator: str) -> tuple[str, tuple[str, str, str]]:
    """:data:`NOT_MINE_ELSEWHERE` for a slot expression, and its parameters."""
    return NOT_MINE_ELSEWHERE.format(slot=slot), (holder, annotator, annotator)


def settle_spec_status(c: sqlite3.Connection, spec_id: int, status: str, reason: str | None = None) -> None:
    """Give a spec its status after a copy ended (``status``: that copy's outcome, or ``pending``
    when it was given back), in the caller's transaction. A spec of one copy takes ``status`` as
    it is; an overlap spec sums up its copies (module doc)."""
    if status not in SPEC_STATUSES:
        raise ValueError(f"unknown spec status {status!r}")
    row = c.execute("SELECT COALESCE(copies, 1) FROM specs WHERE id = ?", (spec_id,)).fetchone()
    if row is not None and row[0] > 1:
        finished = c.execute("SELECT status, status_reason FROM dialogues WHERE spec_id = ? AND status <> 'in_progress'"
                             " ORDER BY updated_at, id", (spec_id,)).fetchall()
        if len(finished) >= row[0]:
            done = any(f[0] == "done" for f in finished)
            status, reason = ("done", None) if done else (finished[-1][0], finished[-1][1])
        elif c.execute("SELECT 1 FROM leases WHERE spec_id = ? LIMIT 1", (spec_id,)).fetchone():
            status, reason = "in_progress", None
        else:
            status, reason = "pending", None
    c.execute("UPDATE specs SET status=?, status_reason=?, updated_at=? WHERE id=?", (status, reason, utcnow(), spec_id))


__all__ = ["Overlap", "MAX_COPIES", "COPY_NUMBERS", "unit_hash", "overlap_copies", "may_take", "simulate_claims",
           "LIVE_LEASE",
           "PENDING_FREE", "SLOT_FREE",
           "NOT_MINE_ELSEWHERE", "not_mine_elsewhere", "settle_spec_status"]
