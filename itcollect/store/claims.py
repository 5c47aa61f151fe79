"""Atomic claiming of pending specs, so several ``simulate`` processes can share one workspace.

A claim is one ``BEGIN IMMEDIATE`` transaction: it picks free specs, marks them ``in_progress``
and writes a lease naming the holder. SQLite serialises such transactions across processes, so two
processes can never claim the same spec. A spec is free when it is ``pending`` (no live lease), or ``in_progress``
with a lease that expired, or whose holder process is gone (same host, pid no longer alive: a
``kill -9``-ed run's specs are taken over at once by the next run instead of after the expiry).

Holders that want the dead-process takeover use :func:`process_holder` names
(``command@host:pid``); other holders (``human:NAME`` from :mod:`.leases`) rely on the expiry alone.
"""

from __future__ import annotations

import os
import re
import socket
import time
from typing import Any

from itcollect.store.availability import PENDING_FREE, may_take, simulate_claims
from itcollect.store.core import StoreCore, utcnow

_HOLDER_RE = re.compile(r"^[a-z][a-z0-9_-]*@([^:@]+):(\d+)$")


def process_holder(command: str = "simulate") -> str:
    """A lease holder name for this process: ``command@host:pid``."""
    return f"{command}@{socket.gethostname()}:{os.getpid()}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. PermissionError: it exists, owned by someone else
        return True
    return True


def _holder_dead(holder: str) -> bool:
    """True only when the holder is a process of this host that no longer runs."""
    m = _HOLDER_RE.search(holder)
    if not m or m.group(1) != socket.gethostname():
        return False
    pid = int(m.group(2))
    return pid != os.getpid() and not _pid_alive(pid)


class ClaimsMixin(StoreCore):
    def claim_specs(self, holder: str, limit: int, *, lease_s: float = 600.0, compare: bool = False) -> list[int]:
        """Atomically claim up to ``limit`` free specs for ``holder``; returns their ids (ascending).

        Availability follows the rules of :mod:`.leases` (one table for humans and simulate): the
        holder's own ``in_progress`` specs first, then ``in_progress`` specs whose lease expired or
        whose holder process is dead (so a run interrupted by ``kill -9`` is finished before new work
        starts, without waiting for the expiry), then ``pending`` specs without a live lease. An
        ``in_progress`` spec with a live lease, or with no lease at all, is taken.
        A spec whose dialogue a human started (or that was imported) is never claimed here: a
        machine must not append simulated turns to an annotator's dialogue, even after the
        annotator's lease expired; it stays for the annotator (see :mod:`.leases`). Nor is an
        overlap spec: its copies are meant for people (:mod:`.availability`). ``compare``: a
        ``simulate --compare`` run, which alone takes replay specs and compared dialogues
        (:func:`~itcollect.store.availability.simulate_claims`).
        """
        if limit <= 0:
            return []
        now = time.time()
        machine = f"{may_take('simulated')} AND {simulate_claims(compare)}"
        with self.transaction() as c:
            held = c.execute(
                "SELECT s.id, l.holder, l.expires_at FROM specs s JOIN leases l ON l.spec_id = s.id"
                f" WHERE s.status='in_progress' AND {machine}"
                " ORDER BY (l.holder = ?) DESC, s.id", (holder,)).fetchall()
            ids: list[int] = []
            dead: dict[str, bool] = {}
            for spec_id, lease_holder, expires in held:
                if len(ids) >= limit:
                    break
                if lease_holder == holder or expires < now:
                    ids.append(spec_id)
                    continue
                if lease_holder not in dead:
                    dead[lease_holder] = _holder_dead(lease_holder)
                if dead[lease_holder]:
                    ids.append(spec_id)
            if len(ids) < limit:
                # Correlated NOT EXISTS: index look-ups for the candidates read, in id order, until
                # the limit; a NOT IN list of every dialogue's spec was built per claim (26 ms at
                # 100K dialogues, with the writer's event loop stopped).
                ids += [r[0] for r in c.execute(
                    f"SELECT s.id FROM specs s WHERE {PENDING_FREE} AND {machine} ORDER BY s.id LIMIT ?",
                    (now, limit - len(ids)))]
            if not ids:
                return []
            stamp = utcnow()
            c.executemany("UPDATE specs SET status='in_progress', status_reason=NULL, updated_at=? WHERE id=?",
                          [(stamp, i) for i in ids])
            c.executemany("INSERT INTO leases(spec_id, copy, holder, acquired_at, expires_at) VALUES (?,0,?,?,?)"
                          " ON CONFLICT(spec_id, copy) DO UPDATE SET holder=excluded.holder,"
                          " acquired_at=excluded.acquired_at, expires_at=excluded.expires_at",
                          [(i, holder, stamp, now + lease_s) for i in ids])
        return sorted(ids)

    def renew_claims(self, holder: str, *, lease_s: float = 600.0) -> int:
        """Extend every lease of ``holder`` (call it now and then during a long run)."""
        with self.transaction() as c:
            return c.execute("UPDATE leases SET expires_at=? WHERE holder=?", (time.time() + lease_s, holder)).rowcount

    def finish_claim(self, spec_id: int, holder: str, status: str, reason: str | None = None) -> bool:
        """Set the spec's final status (done/failed/skipped/pending) and drop the lease, atomically.

        Returns False (and changes nothing) when ``holder`` no longer holds the spec: another
        process took it over, so this process's result must not overwrite that one's.
        """
        with self.transaction() as c:
            if c.execute("DELETE FROM leases WHERE spec_id=? AND holder=?", (spec_id, holder)).rowcount != 1:
                return False
            c.execute("UPDATE specs SET status=?, status_reason=?, updated_at=? WHERE id=?",
                      (status, reason, utcnow(), spec_id))
            return True

    def release_claims(self, holder: str) -> int:
        """Give back every spec ``holder`` still holds (to ``pending``): a clean stop (Ctrl-C)."""
        with self.transaction() as c:
            ids = [r[0] for r in c.execute("SELECT spec_id FROM leases WHERE holder=?", (holder,))]
            c.executemany("UPDATE specs SET status='pending', updated_at=? WHERE id=? AND status='in_progress'",
                          [(utcnow(), i) for i in ids])
            c.execute("DELETE FROM leases WHERE holder=?", (holder,))
            return len(ids)

    def claim_holders(self) -> dict[str, Any]:
        """Current holders and how many specs each holds (for stats / debugging)."""
        return {r[0]: int(r[1]) for r in self.query("SELECT holder, COUNT(*) FROM leases GROUP BY holder")}
