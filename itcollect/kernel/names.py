"""Who may be named: the one rule for annotator and account names (the terminal session, the
line protocol, web accounts), which end up in leases, turns, file names, logs and exports."""

from __future__ import annotations

import unicodedata

from itcollect.kernel.errors import ItcollectError

MAX_NAME = 64
_PUNCT = "._-"
NAME_RULE = ("1-64 characters: letters of any script, digits, '.', '_' and '-', starting with a letter or "
             "a digit (e.g. li.wei, 王芳, anna-k)")


def _letter_or_digit(ch: str) -> bool:
    cat = unicodedata.category(ch)
    # letters (L*), digits (Nd) and the combining marks that some scripts' letters need (M*)
    return cat[0] == "L" or cat == "Nd" or cat[0] == "M"


def check_annotator_name(name: str) -> str:
    """The name, stripped and NFC-normalised, or an :class:`ItcollectError` saying the rule."""
    name = unicodedata.normalize("NFC", name.strip())
    ok = 0 < len(name) <= MAX_NAME and _letter_or_digit(name[0]) and unicodedata.category(name[0])[0] != "M" \
        and all(_letter_or_digit(ch) or ch in _PUNCT for ch in name)
    if not ok:
        raise ItcollectError(f"annotator name {name[:80]!r} is not allowed: {NAME_RULE}")
    return name
