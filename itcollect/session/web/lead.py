"""The lead's routes of the web app: the team's progress, the pool, the leases held now (any of
which the lead can give back to the pool), and the per-annotator quality figures and overlap
agreement of ``stats --annotators``."""

from __future__ import annotations

import asyncio
import io
import re
import tempfile
import time
import zipfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from itcollect.config import Config
from itcollect.kernel.errors import ItcollectError
from itcollect.session.catalog import t
from itcollect.session.web.api import ApiError, RouteTable
from itcollect.session.web.desk import TAB_TIMEOUT_S
from itcollect.stats.quality import quality_figures
from itcollect.store import Store, human_holder

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
                "specs": store.spec_counts(), "quality": quality_figures(store, self.config),
                "leases": store.lease_list()}

    async def read(self) -> dict[str, Any]:
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._read)

    async def run(self, fn: Callable[[Store], Any]) -> Any:
        """``fn(store)`` on the lead's own connection, in the lead's thread."""
        def call() -> Any:
            if self._reader is None:
                self._reader = Store(self.path, migrate=False)
            return fn(self._reader)

        return await asyncio.get_running_loop().run_in_executor(self._pool, call)

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
                         "agreement": quality["agreement"], "leases": figures["leases"]})


_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_PAIR = re.compile(r"[A-Za-z]{2,3}-[A-Za-z]{2,3}")


def _filters(request: Request) -> dict[str, str | None]:
    """The drill-down's filters: ``pair`` (``src-tgt``), ``since`` and ``until`` (``YYYY-MM-DD``)."""
    out: dict[str, str | None] = {}
    for key in ("since", "until"):
        value = request.query_params.get(key) or None
        if value is not None and not _DATE.fullmatch(value):
            raise ApiError(400, f"{key} {value!r}: a date as YYYY-MM-DD")
        out[key] = value
    pair = request.query_params.get("pair") or None
    if pair is not None and not _PAIR.fullmatch(pair):
        raise ApiError(400, f"pair {pair!r}: SRC-TGT, as en-zh")
    out["pair"] = pair
    return out


@routes.get("/api/lead/dialogues")
async def dialogues(app: WebApp, request: Request) -> Response:
    """Per annotator, a drill-down to their dialogues: status, review outcome, judge score."""
    app.auth(request, roles=("lead",))
    name = request.query_params.get("annotator", "")
    if not name:
        raise ApiError(400, "'annotator' is missing")
    f = _filters(request)
    rows = await app.lead.run(lambda store: store.lead_dialogues(name, pair=f["pair"], since=f["since"],
                                                                 until=f["until"]))
    return JSONResponse({"annotator": name, **f, "dialogues": rows})


def export_zip(store: Store, config: Config) -> bytes:
    """What ``export --format all`` writes (the dialogues the latest filter run kept), as a zip."""
    from itcollect.export import export_dataset

    with tempfile.TemporaryDirectory(prefix="itcollect-lead-export-") as tmp:
        out = Path(tmp) / "export"
        export_dataset(store, config, out, fmt="all", workers=1)
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            for path in sorted(out.rglob("*")):
                if path.is_file():
                    z.write(path, path.relative_to(out).as_posix())
        return buf.getvalue()


@routes.post("/api/lead/export")
async def export(app: WebApp, request: Request) -> Response:
    """The current filtered export as a zip, for a lead who has no shell (recorded as an export)."""
    app.auth(request, roles=("lead",), csrf=True)
    try:
        data = await app.lead.run(lambda store: export_zip(store, app.config))
    except ItcollectError as exc:
        raise ApiError(409, exc.format()) from None
    return Response(data, media_type="application/zip",
                    headers={"content-disposition": 'attachment; filename="itcollect-export.zip"'})


@routes.post("/api/lead/release")
async def release(app: WebApp, request: Request) -> Response:
    """Give one lease back to the pool, whoever holds it (``{"spec_id": N, "copy": N}``), as its
    expiry would: a started dialogue, with its turns, is continued by the next annotator who takes
    the spec. The holder's page, if open on this server, moves on at its next request."""
    app.auth(request, roles=("lead",), csrf=True)
    body = await app.body(request)
    spec_id, copy = body.number("spec_id"), body.get("copy", 0)
    if isinstance(copy, bool) or not isinstance(copy, int):
        raise ApiError(400, "'copy' must be a whole number")
    holder = app.store.give_back_lease(spec_id, copy)
    if holder is None:
        raise ApiError(404, f"spec {spec_id} (copy {copy}) is not leased to anyone now")
    prefix = human_holder("")
    name = holder.removeprefix(prefix)
    desk = app.desks.get(name) if holder.startswith(prefix) else None
    if desk is not None and desk.s.current is not None and desk.s.current.spec["id"] == spec_id \
            and desk.s.current.copy == copy and not desk.streaming:
        async with desk.lock:
            desk.s.lease_lost()
            desk.notice = t("lease.released_by_lead", app.store.account_language(name))
    return JSONResponse({"ok": True, "released": {"spec_id": spec_id, "copy": copy, "holder": name}})
