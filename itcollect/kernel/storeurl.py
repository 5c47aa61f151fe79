"""Where a workspace's store lives: its ``itcollect.db`` or a PostgreSQL database named by a URL.

``[store] url`` in ``itcollect.toml`` (empty = the workspace's file), overridden by the
``ITCOLLECT_STORE_URL`` environment variable. A URL never carries a password: libpq reads it from
``PGPASSWORD`` or ``~/.pgpass``, so no secret is written into a workspace. Every other libpq URL
parameter (``?sslmode=require``, ``sslrootcert=...``) passes through untouched.
"""

from __future__ import annotations

import os
from urllib.parse import unquote, urlsplit

#: The environment variable that overrides ``[store] url`` (containers, CI).
STORE_URL_ENV = "ITCOLLECT_STORE_URL"

_SCHEMES = ("postgresql", "postgres")

_NO_PASSWORD = ("a password in the store URL is refused (it would be written to the workspace); "
                "give it to libpq with PGPASSWORD or ~/.pgpass")


def is_postgres_url(url: str) -> bool:
    return urlsplit(url).scheme in _SCHEMES if "://" in url else False


def check_store_url(url: str) -> str | None:
    """Why ``url`` cannot be a ``[store] url`` (None: it can). Empty is the workspace's file."""
    if not url:
        return None
    if not is_postgres_url(url):
        return f"{url!r} is not a postgresql:// URL (leave it empty for the workspace's itcollect.db)"
    parts = urlsplit(url)
    try:
        password = parts.password
    except ValueError:  # pragma: no cover - a malformed netloc
        return f"{describe(url)}: malformed URL"
    query = {k.lower(): v for k, _, v in (item.partition("=") for item in parts.query.split("&") if item)}
    if password is not None or "password" in query:
        return _NO_PASSWORD
    return None


def store_url(configured: str) -> str:
    """The store URL in force: ``ITCOLLECT_STORE_URL`` when set and not empty, else ``configured``.
    Raises ValueError with one line when it cannot be used."""
    url = os.environ.get(STORE_URL_ENV, "").strip() or configured
    problem = check_store_url(url)
    if problem:
        where = STORE_URL_ENV if os.environ.get(STORE_URL_ENV, "").strip() else "store.url"
        raise ValueError(f"{where}: {problem}")
    return url


def describe(url: str) -> str:
    """``host:port/database`` of a PostgreSQL URL, for messages: never a user's password (there is
    none: :func:`check_store_url` refuses it) nor the URL's parameters."""
    parts = urlsplit(url)
    try:
        host = parts.hostname or os.environ.get("PGHOST", "localhost")
        port = parts.port or int(os.environ.get("PGPORT", "5432"))
    except ValueError:
        host, port = parts.netloc.rpartition("@")[2], 5432
    query = {k: v for k, _, v in (item.partition("=") for item in parts.query.split("&") if item)}
    if host.startswith("/") or "host" in query:  # a Unix socket folder
        host = unquote(query.get("host", host))
    database = unquote(parts.path.lstrip("/")) or query.get("dbname") or os.environ.get("PGDATABASE", "")
    return f"{host}:{port}/{database}"
