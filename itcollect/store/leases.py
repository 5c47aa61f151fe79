"""Leases of specs to human annotators, on the same ``leases`` table as simulate's claims.

:mod:`.claims` (simulate) and this module follow the same rules over one table, so a spec leased
by a human is never taken by ``simulate`` and vice versa; this module adds what a person needs:
their own dialogue offered back first, a named spec, and a check-and-renew inside every write.
Claims run in one ``BEGIN IMMEDIATE`` transaction: SQLite lets one writer in at a
time, so two processes started at the same instant can never read the same free spec and both
take it. A lease carries an expiry (unix time) that its holder renews while it works; a lease that
ran out stays with its holder until someone else claims the spec, so an annotator who comes back
late still finds their own dialogue, unless it has moved on.

Rules of availability (the same for every holder; overlap and who-may-take-what in
:mod:`.availability`, shared with :mod:`.claims`):
  * ``pending`` spec without a live lease: free;
  * ``in_progress`` spec whose lease has expired: free again (the work started is continued);
  * ``in_progress`` spec with a live lease, or with no lease row at all: taken;
  * an overlap spec: each of its copies is leased on its own, to a different annotator.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable
from typing import Any

from itcollect.kernel.errors import ItcollectError
from itcollect.store.availability import (
    COPY_NUMBERS,
    PENDING_FREE,
    SLOT_FREE,
    Overlap,
    may_take,
    not_mine_elsewhere,
    overlap_copies,
    settle_spec_status,
)
from itcollect.store.core import StoreCore, utcnow
from itcollect.store.dialogues import _spec_row

HUMAN_HOLDER_PREFIX = "human:"


def human_holder(annotator: str) -> str:
    """Lease holder name of a human annotator (kept apart from simulate's holder names)."""
    return f"{HUMAN_HOLDER_PREFIX}{annotator}"


def give_back(c: sqlite3.Connection, where: str, params: tuple) -> list[tuple[int, int]]:
    """End the leases that ``where`` selects, in the caller's transaction, as their expiry does: the
    spec goes back to the pool (``pending``, or what an overlap spec's other copies make it) and a
    dialogue already started for it, with its committed turns, is continued by whoever takes it next.
    Returns the ``(spec_id, copy)`` given back."""
    rows = [(r[0], r[1]) for r in c.execute(f"SELECT spec_id, copy FROM leases WHERE {where}", params).fetchall()]
    for spec_id, copy in rows:
        c.execute("DELETE FROM leases WHERE spec_id = ? AND copy = ?", (spec_id, copy))
    for spec_id in sorted({r[0] for r in rows}):
        if c.execute("SELECT status FROM specs WHERE id = ?", (spec_id,)).fetchone()[0] == "in_progress":
            settle_spec_status(c, spec_id, "pending")
    return rows


class LeaseLost(ItcollectError):
    """The holder's lease expired and another worker took the spec: its work must stop."""


class LeasesMixin(StoreCore):
    # -- claiming ----------------------------------------------------------------------------
    def lease_next_spec(self, holder: str, lease_s: float, *, now: float | None = None,
                        own_first: bool = True, overlap: Overlap | None = None) -> dict[str, Any] | None:
        """Lease one spec (one copy of it) to ``holder``, or return None when nothing is free.

        The holder's own lease comes back first (live or expired but not taken), then a copy whose
        lease expired (work in progress, continued), then a free copy of an overlap spec (so the
        copies of a spec are done side by side, not left for the end of the pool), then the lowest
        pending spec; never a spec for which a simulate run has started a dialogue (simulate
        finishes those itself), never a second copy of a spec to the same annotator (the rules of
        :mod:`.availability`). When a person takes a spec for the first time, ``overlap`` decides
        how many copies it has. The returned spec dict carries ``copy``, ``lease_expires_at``,
        ``previous_holder`` (None, or the holder whose expired lease was taken over) and ``own``
        (True when it was already this holder's).
        """
        now = time.time() if now is None else now
        expires = now + lease_s
        name = holder.removeprefix(HUMAN_HOLDER_PREFIX)
        human = may_take("human")
        with self.transaction() as c:
            picked: tuple[int, int, str | None, bool] | None = None
            if own_first:
                row = c.execute(
                    "SELECT l.spec_id, l.copy FROM leases l JOIN specs s ON s.id = l.spec_id"
                    " WHERE l.holder = ? AND s.status = 'in_progress' ORDER BY l.acquired_at, l.spec_id LIMIT 1",
                    (holder,)).fetchone()
                if row is not None:
                    picked = (row[0], row[1], holder, True)
            if picked is None:
                mine, params = not_mine_elsewhere("l.copy", holder, name)
                row = c.execute(
                    "SELECT l.spec_id, l.copy, l.holder FROM leases l JOIN specs s ON s.id = l.spec_id"
                    f" WHERE l.expires_at < ? AND l.holder != ? AND s.status = 'in_progress' AND {human}"
                    f" AND {mine} ORDER BY l.spec_id, l.copy LIMIT 1", (now, holder, *params)).fetchone()
                if row is not None:
                    picked = (row[0], row[1], row[2], False)
            if picked is None:
                mine, params = not_mine_elsewhere("n.c", holder, name)
                row = c.execute(
                    f"{COPY_NUMBERS}SELECT s.id, n.c FROM specs s JOIN n ON n.c < s.copies"
                    f" WHERE s.copies > 1 AND s.status IN ('pending', 'in_progress') AND {human}"
                    f" AND {SLOT_FREE.format(slot='n.c')} AND {mine} ORDER BY s.id, n.c LIMIT 1", params).fetchone()
                if row is not None:
                    picked = (row[0], row[1], None, False)
            if picked is None:
                row = c.execute(
                    f"SELECT s.id FROM specs s WHERE {PENDING_FREE} AND COALESCE(s.copies, 1) <= 1 AND {human}"
                    " ORDER BY s.id LIMIT 1", (now,)).fetchone()
                if row is not None:
                    picked = (row[0], 0, None, False)
            if picked is None:
                return None
            spec_id, copy, previous, own = picked
            stamp = utcnow()
            if own:
                c.execute("UPDATE leases SET expires_at = ? WHERE spec_id = ? AND copy = ?", (expires, spec_id, copy))
            else:
                c.execute("INSERT INTO leases(spec_id, copy, holder, acquired_at, expires_at) VALUES (?,?,?,?,?)"
                          " ON CONFLICT(spec_id, copy) DO UPDATE SET holder = excluded.holder,"
                          " acquired_at = excluded.acquired_at, expires_at = excluded.expires_at",
                          (spec_id, copy, holder, stamp, expires))
                c.execute("UPDATE specs SET status = 'in_progress', status_reason = NULL, updated_at = ?"
                          " WHERE id = ?", (stamp, spec_id))
            spec = _spec_row(c.execute("SELECT * FROM specs WHERE id = ?", (spec_id,)).fetchone())
            if spec["copies"] is None and overlap is not None and overlap.on:
                # the first person to take it: how many annotators this spec gets, decided once
                spec["copies"] = overlap_copies(spec["seed"], spec["seq"], overlap)
                c.execute("UPDATE specs SET copies = ? WHERE id = ?", (spec["copies"], spec_id))
            spec["copy"] = copy
            spec["lease_expires_at"] = expires
            spec["previous_holder"] = None if own else previous
            spec["own"] = own
            return spec

    def leased_by_others(self, holder: str, *, now: float | None = None) -> tuple[int, float | None]:
        """What ``holder`` could take but others lease right now: the number of live leases of
        in-progress specs (copies) held by someone else that this holder may take once they are
        released or expire, and the earliest of their expiries (None when there is none). While
        the number is not 0 a session with nothing to open waits instead of ending (issue 24 item 8)."""
        now = time.time() if now is None else now
        mine, params = not_mine_elsewhere("l.copy", holder, holder.removeprefix(HUMAN_HOLDER_PREFIX))
        row = self.conn.execute(
            "SELECT COUNT(*), MIN(l.expires_at) FROM leases l JOIN specs s ON s.id = l.spec_id"
            f" WHERE l.expires_at >= ? AND l.holder != ? AND s.status = 'in_progress' AND {may_take('human')}"
            f" AND {mine}", (now, holder, *params)).fetchone()
        return int(row[0] or 0), (float(row[1]) if row[1] is not None else None)

    def lease_spec(self, spec_id: int, holder: str, lease_s: float, *, now: float | None = None,
                   copy: int = 0) -> bool:
        """Lease one named copy of a spec if it is free (or already ours); False when someone else
        holds it, it is finished, or (an overlap spec) the holder has another copy of it."""
        now = time.time() if now is None else now
        name = holder.removeprefix(HUMAN_HOLDER_PREFIX)
        with self.transaction() as c:
            spec = c.execute("SELECT status, COALESCE(copies, 1) FROM specs WHERE id = ?", (spec_id,)).fetchone()
            if spec is None or spec[0] in ("done", "failed", "skipped"):
                return False
            lease = c.execute("SELECT holder, expires_at FROM leases WHERE spec_id = ? AND copy = ?",
                              (spec_id, copy)).fetchone()
            if spec[1] <= 1:
                if lease is None and spec[0] == "in_progress":
                    return False
            else:
                slot = str(int(copy))
                mine, params = not_mine_elsewhere(slot, holder, name)
                if c.execute("SELECT 1 FROM dialogues WHERE spec_id = ? AND copy = ? AND status <> 'in_progress'",
                             (spec_id, copy)).fetchone() or copy >= spec[1] or \
                        not c.execute(f"SELECT 1 FROM specs s WHERE s.id = ? AND {mine}", (spec_id, *params)).fetchone():
                    return False
            if lease is not None and lease[0] != holder and lease[1] >= now:
                return False
            stamp = utcnow()
            c.execute("INSERT INTO leases(spec_id, copy, holder, acquired_at, expires_at) VALUES (?,?,?,?,?)"
                      " ON CONFLICT(spec_id, copy) DO UPDATE SET holder = excluded.holder,"
                      " acquired_at = excluded.acquired_at, expires_at = excluded.expires_at",
                      (spec_id, copy, holder, stamp, now + lease_s))
            c.execute("UPDATE specs SET status = 'in_progress', updated_at = ? WHERE id = ?", (stamp, spec_id))
            return True

    # -- holding -----------------------------------------------------------------------------
    def renew_lease(self, spec_id: int, holder: str, lease_s: float, *, now: float | None = None) -> bool:
        """Push the expiry forward; False when the lease is no longer this holder's."""
        now = time.time() if now is None else now
        with self.transaction() as c:
            cur = c.execute("UPDATE leases SET expires_at = ? WHERE spec_id = ? AND holder = ?",
                            (now + lease_s, spec_id, holder))
            return cur.rowcount == 1

    def ensure_lease(self, spec_id: int, holder: str, lease_s: float, *, now: float | None = None) -> None:
        """Renew, or raise :class:`LeaseLost`. Call inside the transaction that writes the work,
        so a worker whose spec was taken over can never write into it."""
        if not self.renew_lease(spec_id, holder, lease_s, now=now):
            raise LeaseLost(f"the lease on spec {spec_id} has expired and another worker took it over")

    def release_lease(self, spec_id: int, holder: str, status: str, reason: str | None = None) -> bool:
        """End the holder's lease on the spec and give the spec its final (or pending) status (an
        overlap spec: the sum of its copies, :func:`.availability.settle_spec_status`); False if
        not ours."""
        with self.transaction() as c:
            cur = c.execute("DELETE FROM leases WHERE spec_id = ? AND holder = ?", (spec_id, holder))
            if cur.rowcount != 1:
                return False
            settle_spec_status(c, spec_id, status, reason)
            return True

    def lease_of(self, spec_id: int, copy: int = 0) -> dict[str, Any] | None:
        row = self.conn.execute("SELECT * FROM leases WHERE spec_id = ? AND copy = ?", (spec_id, copy)).fetchone()
        return None if row is None else dict(row)

    def leases_held(self, holder: str) -> list[dict[str, Any]]:
        return [dict(r) for r in self.query("SELECT * FROM leases WHERE holder = ? ORDER BY spec_id, copy", (holder,))]

    def lease_holders(self, spec_ids: Iterable[int]) -> dict[int, str]:
        """Holder of each spec's first leased copy."""
        ids = list(spec_ids)
        if not ids:
            return {}
        return {r[0]: r[1] for r in self.query(
            f"SELECT spec_id, holder FROM leases WHERE spec_id IN ({','.join('?' * len(ids))})"
            " ORDER BY spec_id, copy DESC", ids)}

    def expire_leases(self, *, now: float | None = None) -> int:
        """Return every copy whose lease ran out to the pool (its spec ``pending``, or an overlap
        spec whatever its other copies make it); a dialogue already started for it is continued
        by whoever claims it next. Returns how many leases ended."""
        now = time.time() if now is None else now
        with self.transaction() as c:
            return len(give_back(c, "expires_at < ?", (now,)))

    def give_back_lease(self, spec_id: int, copy: int = 0) -> str | None:
        """A lead's release of one lease, whoever holds it (:func:`give_back`); the holder it had,
        or None when there was no such lease."""
        with self.transaction() as c:
            row = c.execute("SELECT holder FROM leases WHERE spec_id = ? AND copy = ?", (spec_id, copy)).fetchone()
            if row is None:
                return None
            give_back(c, "spec_id = ? AND copy = ?", (spec_id, copy))
            return str(row[0])

    def lease_list(self, *, now: float | None = None) -> list[dict[str, Any]]:
        """Every lease held now (live or run out but not yet taken over), for the lead: spec, copy,
        holder, when taken, when it runs out, ``live``, and the committed turns of its dialogue."""
        now = time.time() if now is None else now
        rows = self.query(
            "SELECT l.spec_id, l.copy, l.holder, l.acquired_at, l.expires_at, s.src_lang, s.tgt_lang,"
            " (SELECT COUNT(*) FROM turns t JOIN dialogues d ON d.id = t.dialogue_id"
            "  WHERE d.spec_id = l.spec_id AND d.copy = l.copy AND d.status = 'in_progress' AND t.state = 'active')"
            " AS turns FROM leases l JOIN specs s ON s.id = l.spec_id ORDER BY l.spec_id, l.copy")
        return [{"spec_id": r[0], "copy": r[1], "holder": r[2].removeprefix(HUMAN_HOLDER_PREFIX),
                 "human": r[2].startswith(HUMAN_HOLDER_PREFIX), "acquired_at": r[3], "expires_at": r[4],
                 "live": r[4] >= now, "pair": f"{r[5]}-{r[6]}", "turns": r[7]} for r in rows]
