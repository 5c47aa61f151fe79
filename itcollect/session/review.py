"""``itcollect session --review``: walk flagged and edited dialogues and accept or reject them.

The verdict goes to ``dialogues.review_status`` (accepted | rejected) with the reviewer's name and
note in the dialogue's meta and the action log. Interactive on a terminal (one key per verdict);
otherwise a line protocol like the session's: the tool prints ``review {...}`` (the dialogue with
all its turns, rejected and undone ones included, edited answers with the model's original) and
``ready {"expect": "verdict"}``; commands are ``accept [NOTE]``, ``reject [NOTE]``, ``next`` (leave
it for later) and ``quit``; ``idle`` ends the queue.
"""

from __future__ import annotations

import json
import sys
from typing import IO, Any

from ..errors import ItcollectError
from ..store import Store

#: reviewer's command -> the verdict stored in ``dialogues.review_status``
VERDICTS = {"accept": "accepted", "reject": "rejected"}


class ReviewError(ItcollectError):
    """A verdict that cannot be recorded: unknown dialogue, not in the queue, or already reviewed."""


def review_item(store: Store, d: dict[str, Any]) -> dict[str, Any]:
    turns = store.get_turns(d["id"], include_inactive=True)
    return {"dialogue_id": d["id"], "spec_id": d["spec_id"], "annotator": d["annotator"], "status": d["status"],
            "status_reason": d["status_reason"], "flagged": bool(d["flagged"]), "flags": d["meta"].get("flags", []),
            "source": d["source_text"], "src_lang": d["src_lang"], "tgt_lang": d["tgt_lang"],
            "instruction_lang": d["instruction_lang"],
            "turns": [{"turn_id": t["id"], "idx": t["idx"], "role": t["role"], "state": t["state"],
                       "author": t["author"], "content": t["content"], "original_content": t["original_content"],
                       "type": t["interaction_type"], "warnings": t["warnings"]} for t in turns
                      if t["role"] != "system"]}


def next_review(store: Store, skipped: set[str] | frozenset[str] = frozenset()) -> dict[str, Any] | None:
    """The next dialogue to review (as :func:`review_item`, plus ``remaining``: the queue's length
    without the ones this reviewer left for later), or None when nothing is left. The terminal,
    the line protocol and the web page all walk the queue through this."""
    queue = [d for d in store.review_queue() if d["id"] not in skipped]
    if not queue:
        return None
    return {"remaining": len(queue), **review_item(store, queue[0])}


def record_verdict(store: Store, reviewer: str, dialogue_id: str, command: str, note: str | None = None) -> str:
    """Record ``accept`` or ``reject`` (with a note) on a dialogue of the queue; returns the stored
    verdict. Checked and written in one transaction, so two reviewers deciding the same dialogue
    at once cannot both succeed: the second gets a :class:`ReviewError` naming the first."""
    verdict = VERDICTS.get(command)
    if verdict is None:
        raise ReviewError(f"verdict {command!r}: accept or reject")
    with store.transaction():
        d = store.get_dialogue(dialogue_id)
        if d is None or d["status"] not in ("done", "skipped"):
            raise ReviewError(f"no finished dialogue {dialogue_id!r} to review")
        if d["review_status"] is not None:
            by = (d["meta"].get("reviews") or [{}])[-1].get("reviewer", "someone")
            raise ReviewError(f"dialogue {dialogue_id[:8]} was already reviewed ({d['review_status']} by {by})")
        store.set_review(dialogue_id, reviewer, verdict, (note or "").strip() or None)
    return verdict


def run_review(store: Store, reviewer: str, *, interactive: bool | None = None,
               stdin: IO[str] | None = None, stdout: IO[str] | None = None) -> int:
    if interactive is None:
        interactive = sys.stdin.isatty() and sys.stdout.isatty()
    if interactive:
        return _review_tui(store, reviewer)
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout

    def emit(tag: str, **data: Any) -> None:
        stdout.write(f"{tag} {json.dumps(data, ensure_ascii=False, sort_keys=True)}\n")
        stdout.flush()

    skipped: set[str] = set()
    emit("session", annotator=reviewer, mode="review", commands=["accept", "reject", "next", "quit"])
    while True:
        item = next_review(store, skipped)
        if item is None:
            emit("idle", message="nothing left to review")
            return 0
        emit("review", **item)
        while True:
            emit("ready", expect="verdict")
            line = stdin.readline()
            if not line:
                emit("bye", reason="end of input")
                return 0
            cmd, _, note = line.strip().partition(" ")
            cmd = cmd.lower()
            if not cmd or cmd.startswith("#"):
                continue
            if cmd in VERDICTS:
                try:
                    record_verdict(store, reviewer, item["dialogue_id"], cmd, note)
                except ReviewError as exc:
                    emit("error", command=cmd, message=exc.message)
                    break
                emit("ok", action=cmd, dialogue_id=item["dialogue_id"])
                break
            if cmd == "next":
                skipped.add(item["dialogue_id"])
                break
            if cmd == "quit":
                emit("bye", reason="quit")
                return 0
            emit("error", command=cmd, message="commands: accept [NOTE], reject [NOTE], next, quit")


def _review_tui(store: Store, reviewer: str) -> int:
    from prompt_toolkit import prompt
    from prompt_toolkit.key_binding import KeyBindings
    from rich.console import Console
    from rich.panel import Panel
    from rich.text import Text

    console = Console(highlight=False)
    keys = {"a": "accept", "r": "reject", "n": "next", "q": "quit"}
    kb = KeyBindings()
    for k in keys:
        kb.add(k)(lambda event, k=k: event.app.exit(result=k))
    kb.add("c-c")(lambda event: event.app.exit(result="q"))
    kb.add("c-d")(lambda event: event.app.exit(result="q"))
    kb.add("<any>")(lambda event: None)
    skipped: set[str] = set()
    while True:
        item = next_review(store, skipped)
        if item is None:
            console.print("[green]Nothing left to review.[/green]")
            return 0
        head = Text()
        head.append(f"{item['src_lang']} → {item['tgt_lang']} · requests in {item['instruction_lang']} · by "
                    f"{item['annotator']} · {item['status']}" + (" · FLAGGED" if item["flagged"] else "") + "\n",
                    style="bold")
        head.append(item["source"] or "")
        for f in item["flags"]:
            head.append(f"\nflag: {f.get('note') or ''}", style="yellow")
        console.print(Panel(head, title=f"review {item['dialogue_id'][:8]} · {item['remaining']} left"))
        for t in item["turns"]:
            style = "dim strike" if t["state"] != "active" else ""
            label = {"user": "You", "assistant": "Model"}[t["role"]]
            if t["author"] == "human" and t["role"] == "assistant":
                console.print(Text(f"  model said › {t['original_content']}", style="dim"))
                label = "Edited"
            console.print(Text(f"{label} [{t['state']}] › ", style="bold") + Text(t["content"], style=style))
        choice = keys[prompt("[a]ccept [r]eject [n]ext [q]uit › ", key_bindings=kb)]
        if choice == "quit":
            return 0
        if choice == "next":
            skipped.add(item["dialogue_id"])
            continue
        note = prompt("Note (optional) › ").strip() or None
        try:
            record_verdict(store, reviewer, item["dialogue_id"], choice, note)
        except ReviewError as exc:
            console.print(f"[bold red]{exc.message}[/bold red]")
