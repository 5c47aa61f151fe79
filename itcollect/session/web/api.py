"""What every route of the web app shares: the error a handler raises for an answer other than
200, who is asking, the request body (read, bounded and parsed in one place: :func:`read_body`,
typed access through :class:`Body`), and the table in which each audience's module declares its
routes beside their handlers (:class:`RouteTable`)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

if TYPE_CHECKING:
    from itcollect.session.web.app import WebApp

#: Each role's page: where a login, or a visit to another role's page, sends the browser.
HOME = {"annotator": "/", "reviewer": "/review", "lead": "/lead"}

#: An ``async def handler(app, request)`` of a route.
Handler = Callable[["WebApp", Request], Awaitable[Response]]


class ApiError(Exception):
    """An answer other than 200: status, a message for the page, and extra JSON fields."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra


@dataclass
class Who:
    """The signed-in account behind a request."""

    name: str
    role: str
    csrf: str
    sid_hash: str
    #: the language of the page that sent the request (its ``X-Lang``; en | zh): sentences the
    #: server writes for it (warnings) are in that language
    lang: str = "en"


class Body:
    """A request's JSON object with typed access: a field that is missing or of the wrong type is
    a 400 naming the field."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def word(self, key: str) -> str:
        """The field as text, '' when it is missing or empty (an id, an order, a token)."""
        return str(self.data.get(key) or "")

    def text(self, key: str) -> str:
        """A non-empty string."""
        value = self.data.get(key)
        if not isinstance(value, str) or not value.strip():
            raise ApiError(400, f"{key!r} is missing (a non-empty string)")
        return value

    def number(self, key: str) -> int:
        """A whole number."""
        value = self.data.get(key)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ApiError(400, f"{key!r} is missing (a whole number)")
        return value

    def optional(self, key: str) -> str | None:
        """A string, stripped; None when it is missing or blank."""
        value = self.data.get(key)
        if value is None:
            return None
        if not isinstance(value, str):
            raise ApiError(400, f"{key!r} must be a string")
        return value.strip() or None


async def read_body(request: Request, limit: int) -> Body:
    """The JSON object of a request body, at most ``limit`` bytes (``[web] max_body_bytes``; 413
    above it, whether the client declared the length or streamed the body); an empty body is
    ``{}``; anything but a JSON object is a 400."""
    declared = request.headers.get("content-length")
    too_big = (f"the request is too large: more than {limit} bytes (the server's [web] max_body_bytes); "
               f"shorten the text and send it again")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, too_big)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise ApiError(413, too_big)
    if not body.strip():
        return Body({})
    try:
        data = json.loads(body)
    except ValueError:
        raise ApiError(400, "the request body is not JSON") from None
    if not isinstance(data, dict):
        raise ApiError(400, "the request body must be a JSON object")
    return Body(data)


class RouteTable:
    """Routes declared beside their handlers: ``@routes.get(path)`` or ``@routes.post(path)`` on an
    ``async def handler(app, request)``. The app mounts every audience's table
    (:meth:`itcollect.session.web.app.WebApp.routes`)."""

    def __init__(self) -> None:
        self.entries: list[tuple[str, str, Handler]] = []

    def get(self, path: str) -> Callable[[Handler], Handler]:
        return self._add("GET", path)

    def post(self, path: str) -> Callable[[Handler], Handler]:
        return self._add("POST", path)

    def _add(self, method: str, path: str) -> Callable[[Handler], Handler]:
        def declare(handler: Handler) -> Handler:
            self.entries.append((method, path, handler))
            return handler

        return declare
