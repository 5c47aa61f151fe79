"""``itcollect session --web``: bind, say where, serve until Ctrl-C or SIGTERM.

uvicorn runs the app on the calling thread's event loop. The socket is bound before anything is
printed, so ``listening on http://HOST:PORT`` (the first stdout line, flushed; with ``--port 0``
it names the port the system chose) is true the moment a script reads it: connections made then
wait in the socket's backlog until the loop accepts them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from itcollect.config import Config, settings
from itcollect.kernel.errors import ServiceError
from itcollect.session.web.auth import remove_server_record, url_host, write_server_record
from itcollect.session.web.guard import access_handler
from itcollect.store.interfaces import WebStore


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto must say TCP: asyncio sets TCP_NODELAY only on sockets that do, and without it every
    # response body waits ~40 ms for the client's delayed ACK of the headers (Nagle).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise ServiceError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.setblocking(False)
    return sock


def _logging(access_log: str, root: Path) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("itcollect web: %(levelname)s: %(message)s"))
    for name in ("itcollect.web", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(logging.WARNING)
        logger.propagate = False
    access = logging.getLogger("itcollect.web.access")  # one line per request (session/web/guard.py)
    access.handlers[:] = [access_handler(access_log, root)]
    access.setLevel(logging.INFO)
    access.propagate = False


def serve(config: Config, store: WebStore, root: Path, *, host: str | None = None, port: int | None = None,
          base_url: str | None = None, model: str | None = None, out: IO[str] | None = None,
          compare: Sequence[str] | None = None) -> int:
    """Serve the workspace's sessions in the browser; returns the exit status (0 after Ctrl-C)."""
    import uvicorn

    from itcollect.llm import LLMClient
    from itcollect.session import session_config
    from itcollect.session.web.app import WebApp

    out = out or sys.stdout
    cfg = session_config(config)
    typed = settings(cfg)
    host = typed.web.host if host is None else host
    port = int(typed.web.port if port is None else port)

    systems = None
    if compare is not None:  # every system answers each request (session/compare.py)
        from itcollect.llm.endpoints import resolve_systems

        systems = resolve_systems(typed, compare, base_url=base_url)

    def factory() -> Any:
        # one client for the whole team (see SharedClient): room for a call per annotator; the
        # config's rate limits apply to the team together, as the provider counts them
        if systems is not None:
            return LLMClient(cfg, store, command="session", endpoints={e.role: e for e in systems},
                             concurrency=max(256, typed.llm.concurrency))
        return LLMClient(cfg, store, command="session", base_url=base_url, model=model,
                         concurrency=max(256, typed.llm.concurrency))

    # Build the client now: a missing endpoint or key is one clear error before anything is served.
    first = factory()

    sock = _bind(host, port)
    port = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    own_url = f"http://{url_host(host)}:{port}"
    write_server_record(root, url=own_url, link_url=typed.web.public_url or own_url)
    webapp = WebApp(cfg, store, factory, first_client=first, on_shutdown=lambda: remove_server_record(root),
                    compare=systems)
    _logging(typed.web.access_log, root)
    store.forget_action_keys()

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            """uvicorn's handling of Ctrl-C / SIGTERM (a graceful stop), without re-raising the
            signal afterwards: a stop asked for is a clean exit, status 0."""
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            original = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in original.items():
                    signal.signal(sig, handler)

        def handle_exit(self, sig: int, frame: Any) -> None:
            webapp.stopping = True  # open answer streams end within a second
            super().handle_exit(sig, frame)

    server = Server(uvicorn.Config(webapp.build(), log_config=None, access_log=False, lifespan="on", ws="none",
                                   proxy_headers=True, forwarded_allow_ips=typed.web.trusted_proxies,
                                   timeout_graceful_shutdown=5, log_level="warning"))
    print(f"listening on http://{shown}:{port}", file=out, flush=True)
    print(f"itcollect: serving the sessions of {root} (login links: `itcollect annotators add NAME`; "
          f"Ctrl-C stops)", file=sys.stderr, flush=True)
    try:
        asyncio.run(server.serve(sockets=[sock]))
    finally:
        remove_server_record(root)
        sock.close()
    print("itcollect: stopped; everything committed is kept", file=sys.stderr, flush=True)
    return 0
