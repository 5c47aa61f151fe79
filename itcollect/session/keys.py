"""One key press on a terminal (prompt_toolkit), shared by the session's terminal UI and the review
desk's: the keys of a menu, Ctrl-C and Ctrl-D meaning quit, every other key ignored."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def _key_session(keys: dict[str, str], toolbar: Callable[[], str] | None) -> Any:
    from prompt_toolkit import PromptSession
    from prompt_toolkit.key_binding import KeyBindings

    kb = KeyBindings()
    for key in keys:
        kb.add(key)(lambda event, k=key: event.app.exit(result=k))
    kb.add("c-c")(lambda event: event.app.exit(result="q"))
    kb.add("c-d")(lambda event: event.app.exit(result="q"))
    kb.add("<any>")(lambda event: None)
    return PromptSession(key_bindings=kb, bottom_toolbar=toolbar)


def read_key(message: str, keys: dict[str, str], *, toolbar: Callable[[], str] | None = None) -> str:
    """The value of the key pressed among ``keys`` (key -> value); ``"quit"`` for Ctrl-C / Ctrl-D."""
    return keys.get(_key_session(keys, toolbar).prompt(message), "quit")


async def read_key_async(message: str, keys: dict[str, str], *, toolbar: Callable[[], str] | None = None) -> str:
    """:func:`read_key` inside a running event loop."""
    return keys.get(await _key_session(keys, toolbar).prompt_async(message), "quit")
