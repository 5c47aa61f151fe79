"""Leases of specs to human annotators, on the same ``leases`` table as simulate's claims.

:mod:`.claims` (simulate) and this module follow the same rules over one table, so a spec leased
by a human is never taken by ``simulate`` and vice versa; this module adds what a person needs:
their own dialogue offered back first, a named spec, and a check-and-renew inside every write.
Claims run in one ``BEGIN IMMEDIATE`` transaction: SQLite lets one writer in at a
time, so two processes started at the same instant can never read the same free spec and both
take it. A lease carries an expiry (unix time) that its holder renews while it works; a lease that
ran out stays with its holder until someone else claims the spec, so an annotator who comes back
late still finds their own dialogue, unless it has moved on.

Rules of availability (the same for every holder):
  * ``pending`` spec without a live lease: free;
  * ``in_progress`` spec whose lease has expired: free again (the work started is continued);
  * ``in_progress`` spec with a live lease, or with no lease row at all: taken.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from ..errors import ItcollectError
from .core import StoreCore, utcnow
from .dialogues import _spec_row

HUMAN_HOLDER_PREFIX = "human:"


def human_holder(annotator: str) -> str:
    """Lease holder name of a human annotator (kept apart from simulate's holder names)."""
    return f"{HUMAN_HOLDER_PREFIX}{annotator}"


class LeaseLost(ItcollectError):
    """The holder's lease expired and another worker took the spec: its work must stop."""


class LeasesMixin(StoreCore):
    # -- claiming ----------------------------------------------------------------------------
    def lease_next_spec(self, holder: str, lease_s: float, *, now: float | None = None,
                        own_first: bool = True) -> dict[str, Any] | None:
        """Lease one spec to ``holder``, or return None when nothing is free.

        The holder's own lease comes back first (live or expired but not taken), then a spec whose
        lease expired (work in progress, continued), then the lowest pending spec; never a spec
        for which a simulate run has started a dialogue (simulate finishes those itself). The returned spec
        dict carries ``lease_expires_at``, ``previous_holder`` (None, or the holder whose expired
        lease was taken over) and ``own`` (True when it was already this holder's).
        """
        now = time.time() if now is None else now
        expires = now + lease_s
        with self.transaction() as c:
            picked: tuple[int, str | None, bool] | None = None
            if own_first:
                row = c.execute(
                    "SELECT l.spec_id FROM leases l JOIN specs s ON s.id = l.spec_id"
                    " WHERE l.holder = ? AND s.status = 'in_progress' ORDER BY l.acquired_at, l.spec_id LIMIT 1",
                    (holder,)).fetchone()
                if row is not None:
                    picked = (row[0], holder, True)
            if picked is None:
                row = c.execute(
                    "SELECT l.spec_id, l.holder FROM leases l JOIN specs s ON s.id = l.spec_id"
                    " WHERE l.expires_at < ? AND l.holder != ? AND s.status = 'in_progress'"
                    " AND NOT EXISTS (SELECT 1 FROM dialogues d WHERE d.spec_id = s.id AND d.origin != 'human')"
                    " ORDER BY l.spec_id LIMIT 1", (now, holder)).fetchone()
                if row is not None:
                    picked = (row[0], row[1], False)
            if picked is None:
                row = c.execute(
                    "SELECT id FROM specs WHERE status = 'pending' AND id NOT IN"
                    " (SELECT spec_id FROM leases WHERE expires_at >= ?) AND NOT EXISTS"
                    " (SELECT 1 FROM dialogues d WHERE d.spec_id = specs.id AND d.origin != 'human')"
                    " ORDER BY id LIMIT 1", (now,)).fetchone()
                if row is not None:
                    picked = (row[0], None, False)
            if picked is None:
                return None
            spec_id, previous, own = picked
            stamp = utcnow()
            if own:
                c.execute("UPDATE leases SET expires_at = ? WHERE spec_id = ?", (expires, spec_id))
            else:
                c.execute("INSERT INTO leases(spec_id, holder, acquired_at, expires_at) VALUES (?,?,?,?)"
                          " ON CONFLICT(spec_id) DO UPDATE SET holder = excluded.holder,"
                          " acquired_at = excluded.acquired_at, expires_at = excluded.expires_at",
                          (spec_id, holder, stamp, expires))
                c.execute("UPDATE specs SET status = 'in_progress', status_reason = NULL, updated_at = ?"
                          " WHERE id = ?", (stamp, spec_id))
            spec = _spec_row(c.execute("SELECT * FROM specs WHERE id = ?", (spec_id,)).fetchone())
            spec["lease_expires_at"] = expires
            spec["previous_holder"] = None if own else previous
            spec["own"] = own
            return spec

    def lease_spec(self, spec_id: int, holder: str, lease_s: float, *, now: float | None = None) -> bool:
        """Lease one named spec if it is free (or already ours); False when someone else holds it."""
        now = time.time() if now is None else now
        with self.transaction() as c:
            spec = c.execute("SELECT status FROM specs WHERE id = ?", (spec_id,)).fetchone()
            if spec is None or spec[0] in ("done", "failed", "skipped"):
                return False
            lease = c.execute("SELECT holder, expires_at FROM leases WHERE spec_id = ?", (spec_id,)).fetchone()
            if lease is None and spec[0] == "in_progress":
                return False
            if lease is not None and lease[0] != holder and lease[1] >= now:
                return False
            stamp = utcnow()
            c.execute("INSERT INTO leases(spec_id, holder, acquired_at, expires_at) VALUES (?,?,?,?)"
                      " ON CONFLICT(spec_id) DO UPDATE SET holder = excluded.holder,"
                      " acquired_at = excluded.acquired_at, expires_at = excluded.expires_at",
                      (spec_id, holder, stamp, now + lease_s))
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
        """End a lease and give the spec its final (or pending) status; False if not ours."""
        with self.transaction() as c:
            cur = c.execute("DELETE FROM leases WHERE spec_id = ? AND holder = ?", (spec_id, holder))
            if cur.rowcount != 1:
                return False
            self.set_spec_status(spec_id, status, reason)
            return True

    def lease_of(self, spec_id: int) -> dict[str, Any] | None:
        row = self.conn.execute("SELECT * FROM leases WHERE spec_id = ?", (spec_id,)).fetchone()
        return None if row is None else dict(row)

    def leases_held(self, holder: str) -> list[dict[str, Any]]:
        return [dict(r) for r in self.query("SELECT * FROM leases WHERE holder = ? ORDER BY spec_id", (holder,))]

    def lease_holders(self, spec_ids: Iterable[int]) -> dict[int, str]:
        ids = list(spec_ids)
        if not ids:
            return {}
        return {r[0]: r[1] for r in self.query(
            f"SELECT spec_id, holder FROM leases WHERE spec_id IN ({','.join('?' * len(ids))})", ids)}

    def expire_leases(self, *, now: float | None = None) -> int:
        """Return every spec whose lease ran out to the pool as ``pending`` (a dialogue already
        started for it is continued by whoever claims it next); returns how many."""
        now = time.time() if now is None else now
        with self.transaction() as c:
            rows = c.execute("SELECT spec_id FROM leases WHERE expires_at < ?", (now,)).fetchall()
            for (spec_id,) in rows:
                c.execute("DELETE FROM leases WHERE spec_id = ?", (spec_id,))
                c.execute("UPDATE specs SET status = 'pending', updated_at = ? WHERE id = ?"
                          " AND status = 'in_progress'", (utcnow(), spec_id))
            return len(rows)
