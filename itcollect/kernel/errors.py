"""Errors the CLI turns into one clear line on stderr and an exit status.

Library code raises these instead of printing, so that every stage can be used from Python
and the CLI stays a thin shell.
"""

from __future__ import annotations


class ItcollectError(Exception):
    """Bad input or a failed service: the CLI prints one line and exits 1."""

    exit_code = 1

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None) -> None:
        self.message = message
        self.path = path
        self.line = line
        super().__init__(self.format())

    def format(self) -> str:
        where = ""
        if self.path is not None:
            where = str(self.path)
            if self.line is not None:
                where += f":{self.line}"
            where += ": "
        return f"{where}{self.message}"


class InputError(ItcollectError):
    """A file or record the user gave us cannot be used."""


class ConfigError(ItcollectError):
    """itcollect.toml is missing, malformed or names a bad value."""


class WorkspaceError(ItcollectError):
    """No workspace where one was expected, or one where none should be."""


class ServiceError(ItcollectError):
    """An LLM endpoint (or another service) failed in a way retries could not fix."""


class StoreError(ItcollectError):
    """The store cannot be opened, migrated or written (locked, full disk, newer schema)."""


class StoreConflict(StoreError):
    """A write lost a race: another writer already stored the unique row (a dialogue's turn, a
    spec's dialogue). simulate meets it when a spec was taken over from a stalled process."""


class UsageError(ItcollectError):
    """Wrong usage that click could not catch itself: exit 2."""

    exit_code = 2
