"""A workspace is a folder holding ``itcollect.toml`` and ``itcollect.db``."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from itcollect.config import CONFIG_FILE, DEFAULT_CONFIG_TEXT, Config, load_config
from itcollect.kernel.errors import ConfigError, ServiceError, WorkspaceError
from itcollect.kernel.storeurl import check_store_url, store_url
from itcollect.store import STORE_FILE, Store


class Workspace:
    """Config and store of one workspace folder; the store opens on first use."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        self.config_path = self.root / CONFIG_FILE
        self.db_path = self.root / STORE_FILE
        if not self.config_path.is_file():
            raise WorkspaceError(
                f"no itcollect workspace here ({CONFIG_FILE} not found); run 'itcollect init DIR' "
                f"or pass -C DIR", path=str(self.root))
        self.config: Config = load_config(self.config_path)
        try:
            #: the PostgreSQL URL of the store ([store] url or ITCOLLECT_STORE_URL), or "" (the file)
            self.store_url = store_url(self.config.settings.store.url)
        except ValueError as exc:
            raise ConfigError(str(exc), path=str(self.config_path)) from None
        self._store: Store | None = None

    @property
    def store_target(self) -> str:
        """What :class:`Store` opens: the PostgreSQL URL, or the path of ``itcollect.db``."""
        return self.store_url or str(self.db_path)

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = Store(self.store_target)
        return self._store

    def open_store(self) -> Store:
        """A new connection (for another thread or process)."""
        return Store(self.store_target)

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def init_workspace(directory: str | Path, force: bool = False, store: str = "") -> Workspace:
    """Create a workspace; refuses an existing one unless ``force`` (which rewrites the config
    but keeps the store: a store holds paid-for answers and is never deleted by init). ``store``:
    a PostgreSQL URL written as ``[store] url`` (empty: the workspace's ``itcollect.db``)."""
    root = Path(directory)
    problem = check_store_url(store)
    if problem:
        raise WorkspaceError(f"--store: {problem}", path=str(root))
    if root.exists() and not root.is_dir():
        raise WorkspaceError("exists and is not a folder", path=str(root))
    config_path = root / CONFIG_FILE
    if (config_path.exists() or (root / STORE_FILE).exists()) and not force:
        raise WorkspaceError("already an itcollect workspace (use --force to rewrite its config)",
                             path=str(root))
    try:
        root.mkdir(parents=True, exist_ok=True)
        config_path.write_text(config_text_with_store(store), encoding="utf-8")
    except OSError as exc:
        raise WorkspaceError(f"cannot create the workspace: {exc.strerror}", path=str(root)) from None
    ws = Workspace(root)
    _ = ws.store  # create and migrate the store now, so init fails loudly rather than a later command
    return ws


def config_text_with_store(url: str) -> str:
    """The default config with ``[store] url`` set to ``url`` (the only line that differs)."""
    if not url:
        return DEFAULT_CONFIG_TEXT
    head, sep, tail = DEFAULT_CONFIG_TEXT.partition("[store]\n")
    body, line, rest = tail.partition('url = ""\n')
    if not sep or not line:  # pragma: no cover - the declaration has the key
        raise AssertionError("the default config has no [store] url line")
    return f"{head}{sep}{body}url = {json.dumps(url)}\n{rest}"


class WorkspaceLock:
    """An exclusive, non-blocking lock on a file in the workspace folder, held for a run: for the
    work that two processes on one workspace must not do at once (e.g. Batch API runs, which
    would race on the same calls' next rounds). The file holds the holder's pid, which the
    refusal names; the lock goes with the process, so a killed holder never leaves it behind.

    ``what`` names the run in the refusal (``another `simulate --batch-api` is running ...``).
    ``store_url``: a PostgreSQL store, whose workspaces may be on several hosts: the lock is then an
    advisory lock on the database server (named by ``filename``) instead of the file.
    """

    def __init__(self, root: str | Path, filename: str, what: str, store_url: str = "") -> None:
        self.path = os.path.join(str(root), filename)
        self.what = what
        self.store_url = store_url
        self.fh: Any = None

    def __enter__(self) -> WorkspaceLock:
        if self.store_url:
            from itcollect.kernel.storeurl import describe
            from itcollect.store import try_run_lock

            self.fh = try_run_lock(self.store_url, os.path.basename(self.path))
            if self.fh is None:
                raise ServiceError(f"another {self.what} is running on this store; wait for it or stop it first",
                                   path=describe(self.store_url))
            return self
        import fcntl  # POSIX only: imported when a lock is taken, so this module imports everywhere

        self.fh = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - held for the run
        try:
            fcntl.flock(self.fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.fh.seek(0)
            other = self.fh.read().strip()
            self.fh.close()
            raise ServiceError(f"another {self.what} is running on this workspace"
                               f"{f' (pid {other})' if other else ''}; wait for it or stop it first",
                               path=self.path) from None
        self.fh.seek(0)
        self.fh.truncate()
        self.fh.write(str(os.getpid()))
        self.fh.flush()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.fh is not None:
            self.fh.close()
