"""People who work in the browser (``itcollect annotators``, ``session --web``): accounts with a
role, the hash of their login token, and the browser sessions a login opened.

Only hashes are stored: a login token and a session cookie are random 256-bit strings, so one
sha256 of them is enough (no salt or slow hash is needed for values nobody can guess), and a copy
of the database does not let anyone log in. Browser sessions live here rather than in the
server's memory so that a restarted server (even after ``kill -9``) keeps everybody logged in,
and a revocation by another process (``annotators revoke``) takes effect on the next request.
"""

from __future__ import annotations

import time
from typing import Any

from itcollect.kernel.errors import ItcollectError
from itcollect.store.availability import LIVE_LEASE
from itcollect.store.core import StoreCore, utcnow
from itcollect.store.leases import give_back, human_holder

ROLES = ("annotator", "reviewer", "lead")


class AccountError(ItcollectError):
    """An account that does not exist, or one that exists when it should not."""


class AccountsMixin(StoreCore):
    # -- accounts ----------------------------------------------------------------------------
    def add_account(self, name: str, role: str, token_hash: str) -> None:
        """Create an account; an existing one (revoked or not) is an :class:`AccountError`."""
        if role not in ROLES:
            raise AccountError(f"role {role!r}: one of {', '.join(ROLES)}")
        with self.transaction() as c:
            if c.execute("SELECT 1 FROM accounts WHERE name = ?", (name,)).fetchone():
                raise AccountError(f"{name} already has an account; `itcollect annotators add {name} --new-token`"
                                   f" issues a new login link (the old one stops working)")
            c.execute("INSERT INTO accounts(name, role, token_hash, created_at) VALUES (?,?,?,?)",
                      (name, role, token_hash, utcnow()))

    def reissue_token(self, name: str, token_hash: str, role: str | None = None) -> None:
        """A new login token for an account (re-activating a revoked one); the old token and every
        browser session opened with it stop working."""
        if role is not None and role not in ROLES:
            raise AccountError(f"role {role!r}: one of {', '.join(ROLES)}")
        with self.transaction() as c:
            if not c.execute("SELECT 1 FROM accounts WHERE name = ?", (name,)).fetchone():
                raise AccountError(f"no account named {name} (add it with `itcollect annotators add {name}`)")
            c.execute("UPDATE accounts SET token_hash = ?, revoked_at = NULL, role = COALESCE(?, role)"
                      " WHERE name = ?", (token_hash, role, name))
            c.execute("DELETE FROM web_sessions WHERE name = ?", (name,))

    def revoke_account(self, name: str) -> list[tuple[int, int]]:
        """Stop an account: its token and its open browser sessions get 401 from now on, and its
        leases go back to the pool at once, as their expiry would (a dialogue with committed turns
        is continued, with its turns, by the next annotator who takes the spec). Its work stays.
        Returns the ``(spec_id, copy)`` given back."""
        with self.transaction() as c:
            row = c.execute("SELECT revoked_at FROM accounts WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise AccountError(f"no account named {name}")
            if row[0] is None:
                c.execute("UPDATE accounts SET revoked_at = ? WHERE name = ?", (utcnow(), name))
            c.execute("DELETE FROM web_sessions WHERE name = ?", (name,))
            return give_back(c, "holder = ?", (human_holder(name),))

    def get_account(self, name: str) -> dict[str, Any] | None:
        row = self.conn.execute("SELECT name, role, created_at, revoked_at, last_seen_at FROM accounts"
                                " WHERE name = ?", (name,)).fetchone()
        return None if row is None else dict(row)

    def accounts(self) -> list[dict[str, Any]]:
        """Every account, oldest first (no token hashes)."""
        return [dict(r) for r in self.query(
            "SELECT name, role, created_at, revoked_at, last_seen_at FROM accounts ORDER BY created_at, name")]

    def account_for_token(self, token_hash: str) -> dict[str, Any] | None:
        """The active account whose login token hashes to ``token_hash``."""
        row = self.conn.execute("SELECT name, role FROM accounts WHERE token_hash = ? AND revoked_at IS NULL",
                                (token_hash,)).fetchone()
        return None if row is None else dict(row)

    def touch_account(self, name: str) -> None:
        """Record that the account was seen now (the server calls it at most once a minute)."""
        with self.transaction() as c:
            c.execute("UPDATE accounts SET last_seen_at = ? WHERE name = ?", (utcnow(), name))

    # -- browser sessions ----------------------------------------------------------------------
    def open_web_session(self, name: str, sid_hash: str, csrf: str, lifetime_s: float, *,
                         now: float | None = None) -> None:
        """Record a browser session opened by a login (expired ones are dropped on the way)."""
        now = time.time() if now is None else now
        with self.transaction() as c:
            c.execute("DELETE FROM web_sessions WHERE expires_at < ?", (now,))
            c.execute("INSERT INTO web_sessions(sid_hash, name, csrf, created_at, expires_at) VALUES (?,?,?,?,?)",
                      (sid_hash, name, csrf, utcnow(), now + lifetime_s))
            c.execute("UPDATE accounts SET last_seen_at = ? WHERE name = ?", (utcnow(), name))

    def web_session(self, sid_hash: str, *, now: float | None = None) -> dict[str, Any] | None:
        """The live session with this hash and its active account: ``{name, role, csrf, expires_at}``;
        None when unknown, expired or the account was revoked."""
        now = time.time() if now is None else now
        row = self.conn.execute(
            "SELECT s.name, a.role, s.csrf, s.expires_at FROM web_sessions s JOIN accounts a ON a.name = s.name"
            " WHERE s.sid_hash = ? AND s.expires_at >= ? AND a.revoked_at IS NULL", (sid_hash, now)).fetchone()
        return None if row is None else dict(row)

    def set_account_language(self, name: str, lang: str | None) -> None:
        """The interface language an account's person chose (None: back to the default)."""
        with self.transaction() as c:
            c.execute("UPDATE accounts SET ui_lang = ? WHERE name = ?", (lang, name))

    def account_language(self, name: str) -> str | None:
        """The interface language an account chose, None when it chose none."""
        row = self.conn.execute("SELECT ui_lang FROM accounts WHERE name = ?", (name,)).fetchone()
        return None if row is None else row[0]

    def close_web_session(self, sid_hash: str) -> None:
        with self.transaction() as c:
            c.execute("DELETE FROM web_sessions WHERE sid_hash = ?", (sid_hash,))

    # -- what a lead sees ------------------------------------------------------------------------
    def flagged_dialogue_counts(self) -> dict[str, int]:
        """Human dialogues flagged for review, per annotator."""
        return {r[0]: r[1] for r in self.query(
            "SELECT annotator, COUNT(*) FROM dialogues WHERE origin = 'human' AND flagged = 1 GROUP BY annotator")}

    def last_actions(self) -> dict[str, str]:
        """The time of each person's latest logged action (session or review)."""
        return {r[0]: r[1] for r in self.query("SELECT annotator, MAX(created_at) FROM session_events GROUP BY annotator")}

    def spec_pool(self, *, now: float | None = None) -> list[dict[str, Any]]:
        """The plan and how far it got, per pair and instruction language: specs planned, pending,
        leased (in progress under a live lease), stalled (in progress, lease run out), done,
        skipped and failed; ``progress`` (done / planned: skips and failures are no progress) and
        ``to_replan`` (skipped + failed: how many specs the pool is short of its plan)."""
        now = time.time() if now is None else now
        out: dict[tuple[str, str, str], dict[str, Any]] = {}
        for src, tgt, ilang, status, live, n in self.query(
                "SELECT s.src_lang, s.tgt_lang, s.instruction_lang, s.status,"
                f" {LIVE_LEASE} AS live, COUNT(*)"
                " FROM specs s"
                " GROUP BY s.src_lang, s.tgt_lang, s.instruction_lang, s.status, live", (now,)):
            row = out.setdefault((src, tgt, ilang), {
                "pair": f"{src}-{tgt}", "instruction_lang": ilang, "planned": 0, "pending": 0, "leased": 0,
                "stalled": 0, "done": 0, "skipped": 0, "failed": 0})
            row["planned"] += n
            if status == "in_progress":
                row["leased" if live else "stalled"] += n
            else:
                row[status] += n
        for row in out.values():
            # done against planned: a skipped or failed spec closes without a dialogue for the corpus,
            # so the pool ends that many short of its plan (specs to plan again)
            row["progress"] = row["done"] / row["planned"] if row["planned"] else 0.0
            row["to_replan"] = row["skipped"] + row["failed"]
        return [out[k] for k in sorted(out)]

    def lead_dialogues(self, annotator: str, *, pair: str | None = None, since: str | None = None,
                       until: str | None = None, limit: int = 500) -> list[dict[str, Any]]:
        """One person's dialogues for the lead's drill-down, the latest change first: status, the
        review outcome, the judge's lowest current score; ``pair`` ``src-tgt``, ``since`` / ``until``
        ISO dates (the last change on or after / before the day after)."""
        sql = ("SELECT d.id, d.spec_id, d.copy, d.src_lang, d.tgt_lang, d.instruction_lang, d.status,"
               " d.status_reason, d.review_status, d.flagged, d.created_at, d.updated_at,"
               " (SELECT MIN(j.score) FROM judgements j WHERE j.dialogue_id = d.id AND j.status = 'judged'"
               "  AND j.dialogue_rev = d.turns_rev) AS judge_score,"
               " (SELECT COUNT(*) FROM turns t WHERE t.dialogue_id = d.id AND t.role = 'assistant'"
               "  AND t.state = 'active') AS answers"
               " FROM dialogues d WHERE d.annotator = ? AND d.origin = 'human'")
        params: list[Any] = [annotator]
        if pair:
            src, _, tgt = pair.partition("-")
            sql += " AND d.src_lang = ? AND d.tgt_lang = ?"
            params += [src, tgt]
        if since:
            sql += " AND d.updated_at >= ?"
            params.append(since)
        if until:
            sql += " AND d.updated_at < ?"
            params.append(until + "~")  # every time of that day sorts before "YYYY-MM-DD~"
        sql += " ORDER BY d.updated_at DESC, d.id LIMIT ?"
        params.append(limit)
        return [{**dict(r), "flagged": bool(r["flagged"]), "pair": f"{r['src_lang']}-{r['tgt_lang']}"}
                for r in self.query(sql, params)]
