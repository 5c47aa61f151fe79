"""The web server's guards, kept in the store rather than in one server's memory so that they hold
across a restart (even ``kill -9``) and, on a server database, across several servers:

* failed logins per client, for the login rate limit (``session/web/guard.py``);
* the idempotency keys of annotators' actions: the page gives every action a key and sends it
  again until the server confirms it; the key is recorded in the same transaction as the action's
  own writes, so an action sent twice (a retry after an outage, a restart in between) is applied
  once.
"""

from __future__ import annotations

import time

from itcollect.store.core import StoreCore

#: How long an action's key is remembered (a page retries for minutes, not days).
ACTION_KEY_DAYS = 7
#: Failed logins older than this are forgotten.
FAILURE_KEEP_S = 3600.0


class WebGuardMixin(StoreCore):
    # -- failed logins ---------------------------------------------------------------------------
    def record_login_failure(self, client: str, *, now: float | None = None) -> None:
        now = time.time() if now is None else now
        with self.transaction() as c:
            c.execute("DELETE FROM web_login_failures WHERE at < ?", (now - FAILURE_KEEP_S,))
            c.execute("INSERT INTO web_login_failures(client, at) VALUES (?, ?)", (client, now))

    def login_failures(self, client: str, window_s: float, *, now: float | None = None) -> list[float]:
        """The times of the client's failed logins in the last ``window_s`` seconds, oldest first."""
        now = time.time() if now is None else now
        return [r[0] for r in self.query("SELECT at FROM web_login_failures WHERE client = ? AND at >= ? ORDER BY at",
                                         (client, now - window_s))]

    # -- idempotency keys ------------------------------------------------------------------------
    def claim_action_key(self, account: str, key: str, path: str, *, now: float | None = None) -> bool:
        """Record an action's key; False when this account already used it (the action was applied).
        Call inside the transaction that applies the action, so the two commit or roll back together."""
        now = time.time() if now is None else now
        with self.transaction() as c:
            cur = c.execute("INSERT INTO web_actions(account, action_key, path, at) VALUES (?, ?, ?, ?)"
                            " ON CONFLICT (account, action_key) DO NOTHING", (account, key, path, now))
            return cur.rowcount == 1

    def forget_action_keys(self, *, now: float | None = None) -> int:
        """Drop the keys older than :data:`ACTION_KEY_DAYS` (the server does it at start)."""
        now = time.time() if now is None else now
        with self.transaction() as c:
            return c.execute("DELETE FROM web_actions WHERE at < ?", (now - ACTION_KEY_DAYS * 86400.0,)).rowcount
