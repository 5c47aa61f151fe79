"""The lead's routes of the web app: the team's progress, the pool, and the per-annotator quality
figures and overlap agreement of ``stats --annotators``."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from itcollect.config import Config
from itcollect.session.web.api import RouteTable
from itcollect.session.web.desk import TAB_TIMEOUT_S
from itcollect.stats.quality import quality_figures
from itcollect.store import Store

if TYPE_CHECKING:
    from itcollect.session.web.app import WebApp

routes = RouteTable()


class LeadFigures:
    """The team's figures, read in a worker thread of their own on a connection of their own: they
    read the whole action log and every spec (a second or more at the scale of a full plan), which
    must not hold up the annotators' requests on the event loop. WAL lets it read while the server
    writes."""

    def __init__(self, path: Any, config: Config) -> None:
        self.path = path
        self.config = config
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="itcollect-lead")
        self._reader: Store | None = None

    def _read(self) -> dict[str, Any]:
        if self._reader is None:
            self._reader = Store(self.path, migrate=False)
        store = self._reader
        return {"stats": store.annotator_stats(), "flagged": store.flagged_dialogue_counts(),
                "last_action": store.last_actions(), "accounts": store.accounts(), "pool": store.spec_pool(),
                "specs": store.spec_counts(), "quality": quality_figures(store, self.config)}

    async def read(self) -> dict[str, Any]:
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._read)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        if self._reader is not None:
            self._reader.close()


@routes.get("/api/lead")
async def lead(app: WebApp, request: Request) -> Response:
    who = app.auth(request, roles=("lead",))
    figures = await app.lead.read()
    stats, flagged, last_action = figures["stats"], figures["flagged"], figures["last_action"]
    accounts = {a["name"]: a for a in figures["accounts"]}
    now = time.monotonic()
    rows = []
    for name in sorted(set(accounts) | set(stats)):
        a = accounts.get(name)
        st = stats.get(name, {})
        desk = app.desks.get(name)
        seen = max([t for t in ((a or {}).get("last_seen_at"), last_action.get(name)) if t], default=None)
        rows.append({
            "name": name, "role": a["role"] if a else None,
            "account": ("revoked" if a["revoked_at"] else "active") if a else "terminal only",
            "dialogues": st.get("dialogues", 0), "skipped": st.get("skipped", 0),
            "flagged": flagged.get(name, 0), "turns": st.get("turns", 0), "edits": st.get("edits", 0),
            "regenerations": st.get("regenerations", 0), "skip_reasons": st.get("skip_reasons", {}),
            "median_seconds_per_dialogue": st.get("median_seconds_per_dialogue"), "last_seen": seen,
            "online": bool(desk and (desk.open_tabs(now) or now - desk.last_heard < TAB_TIMEOUT_S)),
            "working_on": desk.s.current.spec["id"] if desk and desk.s.current else None})
    quality = figures["quality"]  # the same figures as `stats --annotators`
    return JSONResponse({"lead": who.name, "csrf": who.csrf, "annotators": rows, "pool": figures["pool"],
                         "specs": figures["specs"], "quality": quality["annotators"],
                         "agreement": quality["agreement"]})
