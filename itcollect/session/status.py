"""An annotator's status line (today's and all-time progress, the pool), the same words in the
terminal, the line protocol and the web page."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any


def local_midnight_utc() -> str:
    """Start of the annotator's local day as the store's UTC timestamp text ('today' on the status line)."""
    now = datetime.now().astimezone()
    start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return start.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def format_seconds(s: float | None) -> str:
    if s is None:
        return "-"
    s = int(round(s))
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def status_line(p: dict[str, Any]) -> str:
    return (f"today: {p['dialogues']} done, {p['skipped']} skipped, {p['turns']} requests | "
            f"all time: {p['total_dialogues']} done | median {format_seconds(p['median_seconds_per_dialogue'])}"
            f" per dialogue | {p['pool']} waiting")
