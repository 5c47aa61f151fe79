"""The ASGI app of ``itcollect session --web`` (Starlette): the annotation sessions in a browser.

This module holds the server's state and plumbing (sign-in, the request body, the desks, the
pages, start and stop); the routes are declared beside their handlers by audience:
:mod:`.annotate` (the annotator's dialogue), :mod:`.review` (the review queue), :mod:`.lead`
(the team's figures), on the shared pieces of :mod:`.api`.

A thin front-end over the session engine: every action is the same :class:`~..engine.Session`
call the terminal UI and the line protocol make, committed before the response leaves, and the
page is static HTML/CSS/JS (``static/``) that renders what the JSON API returns, always as text.

Accounts and security: a login link (``itcollect annotators add``) sets an HttpOnly,
SameSite=Strict session cookie; every state-changing request carries the session's CSRF token in
``X-CSRF-Token`` (403 without it); an unknown, expired or revoked session gets 401 and nothing
else; request bodies are bounded by ``[web] max_body_bytes`` (413 with a message). Annotators act
only through their own engine session, so they see and change only their own work; reviewers get
the review queue (``--review`` semantics), a lead the team's progress.

All store access runs on the event loop's thread: the store is one synchronous SQLite connection
and the engine's writes are short transactions, so a non-LLM action takes a few milliseconds and
no two writes of this process interleave. Model answers stream through server-sent events
(``GET /api/stream``) from a task per annotator (:mod:`.desk`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import logging
import time
from collections.abc import Callable, Sequence
from importlib import resources
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from itcollect.config import Config, settings
from itcollect.kernel.errors import ItcollectError
from itcollect.kernel.prompting import load_prompts
from itcollect.session.catalog import UI_LANGS, catalog_js, ui_lang
from itcollect.session.engine import CommandError, Session
from itcollect.session.review import ReviewError
from itcollect.session.web import annotate, guard, lead, returned, review
from itcollect.session.web import compare as _compare  # noqa: F401  (its routes join annotate's table)
from itcollect.session.web.api import HOME, ApiError, Body, Handler, RouteTable, Who, read_body
from itcollect.session.web.auth import new_secret, secret_hash
from itcollect.session.web.desk import TAB_TIMEOUT_S, Desk, SharedClient
from itcollect.store.interfaces import WebStore

log = logging.getLogger("itcollect.web")

COOKIE = "itcollect_session"
CSRF_HEADER = "x-csrf-token"
_TOUCH_EVERY_S = 60.0

_SECURITY_HEADERS = [
    (b"content-security-policy", b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                                 b"connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
                                 b"form-action 'self'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]
_PAGES = {"/": "index.html", "/review": "review.html", "/lead": "lead.html", "/returned": "returned.html"}
_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}

#: The routes every audience shares: the pages, their files, signing in and out.
routes = RouteTable()


def _static_files() -> dict[str, bytes]:
    root = resources.files("itcollect.session.web").joinpath("static")
    return {p.name: p.read_bytes() for p in root.iterdir() if p.name.rsplit(".", 1)[-1] in ("html", "js", "css", "svg")}


class SecurityHeaders:
    """Pure ASGI middleware (no buffering, so streamed answers pass through at once): a strict
    Content-Security-Policy (scripts from this server only: even a rendering bug could not run an
    injected script), no sniffing, no framing, no referrer, and no caching of the API. It also
    says how long the app took before the response started (``Server-Timing: app;dur=MS``), the
    server's own latency, which a benchmark or a browser's dev tools can read apart from the network."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        no_store = scope["path"].startswith(("/api/", "/login"))
        started = time.perf_counter()

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", [])) + _SECURITY_HEADERS
                took = (time.perf_counter() - started) * 1000
                headers.append((b"server-timing", f"app;dur={took:.2f}".encode()))
                if no_store:
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class WebApp:
    """The server's state: the store, one :class:`Desk` (engine session) per annotator, the
    reviewers' items left for later, the lead's figures, and the routes of every audience.
    ``client_factory()`` builds an LLM client; the server shares one among all sessions
    (:class:`SharedClient`), ``first_client`` if given (built before serving, to fail early)."""

    #: Every audience's routes, mounted in this order.
    TABLES: tuple[RouteTable, ...] = (routes, annotate.routes, review.routes, lead.routes,
                                         returned.routes)

    def __init__(self, config: Config, store: WebStore, client_factory: Callable[[], Any], *,
                 first_client: Any = None, on_shutdown: Callable[[], None] | None = None,
                 compare: Sequence[Any] | None = None) -> None:
        self.config = config
        self.compare = compare  # the systems' endpoints of a compare session (session --web --compare)
        self.store = store
        self.llm = SharedClient(client_factory, first_client)
        web = settings(config).web
        self.max_body = web.max_body_bytes
        self.session_s = web.session_hours * 3600.0
        self.secure_cookie = web.secure_cookie
        self.desks: dict[str, Desk] = {}
        self.review_later: dict[str, set[str]] = {}
        self.lead = lead.LeadFigures(store.target, config)
        self._touched: dict[str, float] = {}
        self.static = _static_files()
        self.static["catalog.js"] = catalog_js()
        self.language = web.language
        self._on_shutdown = on_shutdown
        self.stopping = False
        # one set of compiled templates for every annotator's session (compiling per session would
        # stall the event loop ~50 ms each time someone new logs in)
        path = getattr(config, "path", None)
        self.prompts = load_prompts(config, path.parent if path else None)

    # -- plumbing --------------------------------------------------------------------------------
    def desk(self, name: str) -> Desk:
        desk = self.desks.get(name)
        if desk is None:
            desk = self.desks[name] = Desk(Session(self.config, self.store, name, self.llm.handle,
                                                   prompts=self.prompts))
            if self.compare is not None:
                from itcollect.session.compare import CompareTurns

                desk.s.compare = CompareTurns(desk.s, self.compare)
        return desk

    def auth(self, request: Request, *, roles: tuple[str, ...] | None = None, csrf: bool = False,
             csrf_value: str | None = None) -> Who:
        sid = request.cookies.get(COOKIE)
        row = self.store.web_session(secret_hash(sid)) if sid else None
        if sid is None or row is None:
            raise ApiError(401, "not logged in: open your login link again (ask your coordinator for a new one)")
        who = Who(row["name"], row["role"], row["csrf"], secret_hash(sid), ui_lang(request.headers.get("x-lang")))
        guard.set_account(request.scope, who.name)
        if csrf:
            sent = csrf_value if csrf_value is not None else request.headers.get(CSRF_HEADER, "")
            if not sent or not hmac.compare_digest(sent.encode(), who.csrf.encode()):
                raise ApiError(403, "missing or wrong CSRF token: reload the page")
        if roles is not None and who.role not in roles:
            raise ApiError(403, f"this needs the role {' or '.join(roles)}; you are {who.role}")
        now = time.monotonic()
        if now - self._touched.get(who.name, -_TOUCH_EVERY_S) >= _TOUCH_EVERY_S:
            self._touched[who.name] = now
            self.store.touch_account(who.name)
        return who

    async def body(self, request: Request) -> Body:
        """The request's JSON object, at most ``[web] max_body_bytes`` (:func:`.api.read_body`)."""
        return await read_body(request, self.max_body)

    def secure(self, request: Request) -> bool:
        if self.secure_cookie == "always":
            return True
        if self.secure_cookie == "never":
            return False
        return request.url.scheme == "https"

    # -- the app -----------------------------------------------------------------------------------
    async def sweep(self) -> None:
        """Now and then: an annotator whose every tab went silent (closed without last words,
        browser killed, network gone) has quit, as far as the clock of active time goes."""
        while True:
            await asyncio.sleep(min(30.0, TAB_TIMEOUT_S / 3))
            now = time.monotonic()
            for desk in list(self.desks.values()):
                if (desk.tabs or desk.quit_after_answer) and desk.s.current is not None and not desk.streaming \
                        and not desk.open_tabs(now) and now - desk.last_heard > TAB_TIMEOUT_S:
                    async with desk.lock:
                        with contextlib.suppress(Exception):
                            desk.s.quit()

    def warm_up(self) -> None:
        """Load the language detector and compile the templates (about a second) in a thread at
        start, as simulate does before its first call, so the first answer's checks do not stall
        everybody's requests while they load."""
        from itcollect.kernel.langid import warm_up

        try:
            typed = settings(self.config)
            warm_up(typed.workspace.languages, typed.ingest.langid_backend)
            self.prompts.warm_up()
        except Exception:  # noqa: BLE001 - the first check loads whatever is missing, and says what failed
            log.exception("warming up")

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette):
        loop = asyncio.get_running_loop()
        loop.run_in_executor(None, self.warm_up)
        sweeper = loop.create_task(self.sweep())
        try:
            yield
        finally:
            self.stopping = True
            sweeper.cancel()
            for desk in list(self.desks.values()):
                try:
                    await desk.close()
                except Exception:  # noqa: BLE001 - shutting down: close the others all the same
                    log.exception("closing a session")
            await self.llm.aclose()
            self.lead.close()
            if self._on_shutdown is not None:
                self._on_shutdown()

    def routes(self) -> list[Route]:
        return [Route(path, self._wrap(functools.partial(handler, self)), methods=[method])
                for table in self.TABLES for method, path, handler in table.entries]

    @staticmethod
    def _wrap(handler: Callable[[Request], Any]) -> Callable[[Request], Any]:
        """Errors as JSON the page shows: ``{"error": message, ...}`` with the right status."""
        async def run(request: Request) -> Response:
            try:
                return await handler(request)
            except ApiError as exc:
                return JSONResponse({"error": exc.message, **exc.extra}, status_code=exc.status)
            except (CommandError, ReviewError) as exc:
                return JSONResponse({"error": exc.message, "code": "refused"}, status_code=409)
            except ItcollectError as exc:  # the store failed (disk full, locked...): say so, keep serving
                log.error("%s %s: %s", request.method, request.url.path, exc.format())
                return JSONResponse({"error": exc.format(), "code": "server"}, status_code=500)

        return run

    def build(self) -> Any:
        app = Starlette(routes=self.routes(), lifespan=self.lifespan)
        return guard.AccessLog(SecurityHeaders(app))


# -- the routes every audience shares -------------------------------------------------------------------
@routes.get("/")
@routes.get("/review")
@routes.get("/lead")
@routes.get("/returned")
async def page(app: WebApp, request: Request) -> Response:
    name = _PAGES.get(request.url.path)
    if name is None or name not in app.static:
        return PlainTextResponse("not found", status_code=404)
    html = app.static[name].replace(b'<html lang="en">', f'<html lang="{page_language(app, request)}">'.encode(), 1)
    return Response(html, media_type=_TYPES[".html"])


def page_language(app: WebApp, request: Request) -> str:
    """The language a page is served in: the signed-in account's choice, else ``[web] language``,
    and with "auto" the browser's (Chinese when Accept-Language prefers it over English)."""
    sid = request.cookies.get(COOKIE)
    row = app.store.web_session(secret_hash(sid)) if sid else None
    chosen = app.store.account_language(row["name"]) if row else None
    if chosen in UI_LANGS:
        return chosen
    if app.language != "auto":
        return app.language
    for part in request.headers.get("accept-language", "").split(","):
        tag = part.split(";")[0].strip().lower()
        if tag.startswith(("zh", "en")):
            return tag[:2]
    return "en"


@routes.post("/api/language")
async def language(app: WebApp, request: Request) -> Response:
    """The account's interface language (en | zh), stored: every page of every device follows."""
    who = app.auth(request, csrf=True)
    lang = (await app.body(request)).text("lang")
    if lang not in UI_LANGS:
        raise ApiError(400, f"lang: one of {', '.join(UI_LANGS)}")
    app.store.set_account_language(who.name, lang)
    return JSONResponse({"ok": True, "lang": lang})


@routes.get("/static/{name}")
async def static(app: WebApp, request: Request) -> Response:
    name = request.path_params["name"]
    data = app.static.get(name)
    if data is None:
        return PlainTextResponse("not found", status_code=404)
    return Response(data, media_type=_TYPES["." + name.rsplit(".", 1)[-1]], headers={"cache-control": "no-cache"})


@routes.get("/login")
async def login(app: WebApp, request: Request) -> Response:
    client = guard.client_of(request.scope)
    wait = guard.retry_after(app.store, client)
    if wait is not None:
        return PlainTextResponse(f"429 Too Many Requests: too many failed logins from here; try again in {wait} s\n",
                                 status_code=429, headers={"retry-after": str(wait)})
    token = request.query_params.get("token", "")
    account = app.store.account_for_token(secret_hash(token)) if token else None
    if account is None:
        guard.login_failed(app.store, client)
        return PlainTextResponse("401 Unauthorized\n", status_code=401)
    guard.set_account(request.scope, account["name"])
    sid = new_secret()
    app.store.open_web_session(account["name"], secret_hash(sid), new_secret(), app.session_s)
    response = RedirectResponse(HOME.get(account["role"], "/"), status_code=303)
    response.set_cookie(COOKIE, sid, max_age=int(app.session_s), path="/", httponly=True, samesite="strict",
                        secure=app.secure(request))
    return response


@routes.post("/api/logout")
async def logout(app: WebApp, request: Request) -> Response:
    who = app.auth(request, csrf=True)
    app.store.close_web_session(who.sid_hash)
    response = JSONResponse({"ok": True})
    response.delete_cookie(COOKIE, path="/")
    return response


def create_app(config: Config, store: WebStore, client_factory: Callable[[], Any], *,
               on_shutdown: Callable[[], None] | None = None) -> Any:
    """The ASGI app (Starlette behind the security-headers middleware)."""
    return WebApp(config, store, client_factory, on_shutdown=on_shutdown).build()


__all__ = ["ApiError", "COOKIE", "HOME", "Handler", "SecurityHeaders", "WebApp", "Who", "create_app"]
