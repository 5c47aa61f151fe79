"""``itcollect session --review``: walk flagged and edited dialogues and accept or reject them.

``--order judge`` also serves every dialogue the LLM judge scored, the lowest turn score first,
then the rest as before; each answer then carries its judgement (score, error spans, compliance,
rating: the ``judge`` key of a turn in the ``review`` event; marked in the answer on a terminal).

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


def _judgement(j: dict[str, Any]) -> dict[str, Any]:
    return {k: j[k] for k in ("status", "score", "errors", "compliance", "reason", "rating", "in_instruction_language",
                              "judge_model")}


def review_item(store: Store, d: dict[str, Any]) -> dict[str, Any]:
    turns = store.get_turns(d["id"], include_inactive=True)
    judged = store.current_judgements(dialogue_ids=[d["id"]])
    item = {"dialogue_id": d["id"], "spec_id": d["spec_id"], "annotator": d["annotator"], "status": d["status"],
            "status_reason": d["status_reason"], "flagged": bool(d["flagged"]), "flags": d["meta"].get("flags", []),
            "source": d["source_text"], "src_lang": d["src_lang"], "tgt_lang": d["tgt_lang"],
            "instruction_lang": d["instruction_lang"],
            "turns": [{"turn_id": t["id"], "idx": t["idx"], "role": t["role"], "state": t["state"],
                       "author": t["author"], "content": t["content"], "original_content": t["original_content"],
                       "type": t["interaction_type"], "warnings": t["warnings"],
                       **({"judge": _judgement(judged[t["id"]])} if t["id"] in judged and t["state"] == "active"
                          else {})} for t in turns
                      if t["role"] != "system"]}
    scores = [j["score"] for j in judged.values() if j["status"] == "judged" and j["score"] is not None]
    if judged:
        item["judge_score"] = min(scores) if scores else None
    return item


def next_review(store: Store, skipped: set[str] | frozenset[str] = frozenset(),
                order: str = "default") -> dict[str, Any] | None:
    """The next dialogue to review (as :func:`review_item`, plus ``remaining``: the queue's length
    without the ones this reviewer left for later), or None when nothing is left. The terminal,
    the line protocol and the web page all walk the queue through this; the queue is read again
    each time (other reviewers' verdicts and new judgements count at once), one row and a count
    (``order="judge"`` may queue every judged dialogue of the corpus)."""
    exclude = sorted(skipped)
    first = store.review_queue(order=order, limit=1, exclude=exclude)
    if not first:
        return None
    return {"remaining": store.review_queue_size(order=order, exclude=exclude), **review_item(store, first[0])}


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
               stdin: IO[str] | None = None, stdout: IO[str] | None = None, order: str = "default") -> int:
    if interactive is None:
        interactive = sys.stdin.isatty() and sys.stdout.isatty()
    if interactive:
        return _review_tui(store, reviewer, order)
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout

    def emit(tag: str, **data: Any) -> None:
        stdout.write(f"{tag} {json.dumps(data, ensure_ascii=False, sort_keys=True)}\n")
        stdout.flush()

    skipped: set[str] = set()
    emit("session", annotator=reviewer, mode="review", commands=["accept", "reject", "next", "quit"])
    while True:
        item = next_review(store, skipped, order)
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


_SEVERITY_STYLE = {"critical": "bold white on red", "major": "bold red underline", "minor": "yellow underline"}


def _marked(content: str, judge: dict[str, Any] | None, base_style: str) -> Any:
    """The answer with the judge's error spans marked by severity (critical, major, minor)."""
    from rich.text import Text

    text = Text(content, style=base_style)
    if judge and judge.get("errors"):
        for sev in ("minor", "major", "critical"):  # the most severe style wins where spans overlap
            spans = [e["span"] for e in judge["errors"] if e.get("severity") == sev and e.get("span")]
            if spans:
                text.highlight_words(spans, _SEVERITY_STYLE[sev])
    return text


def _judge_line(judge: dict[str, Any]) -> str:
    if judge["status"] != "judged":
        return f"judge ({judge['judge_model']}): reply not readable"
    parts = []
    if judge.get("score") is not None:
        parts.append(f"score {judge['score']:g}")
    if judge.get("rating") is not None:
        parts.append(f"rating {judge['rating']}/5" + ("" if judge.get("in_instruction_language") else
                                                     ", not in the instruction language"))
    parts += [f"{e['severity']} {e['category']} «{e['span']}»" for e in judge.get("errors") or []]
    if judge.get("compliance"):
        parts.append(f"compliance {judge['compliance']}" + (f": {judge['reason']}" if judge.get("reason") else ""))
    return f"judge ({judge['judge_model']}): " + " · ".join(parts)


def _review_tui(store: Store, reviewer: str, order: str = "default") -> int:
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
        item = next_review(store, skipped, order)
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
        if item.get("judge_score") is not None:
            head.append(f"\nlowest judge score: {item['judge_score']:g}", style="magenta")
        console.print(Panel(head, title=f"review {item['dialogue_id'][:8]} · {item['remaining']} left"))
        for t in item["turns"]:
            style = "dim strike" if t["state"] != "active" else ""
            label = {"user": "You", "assistant": "Model"}[t["role"]]
            if t["author"] == "human" and t["role"] == "assistant":
                console.print(Text(f"  model said › {t['original_content']}", style="dim"))
                label = "Edited"
            console.print(Text(f"{label} [{t['state']}] › ", style="bold") + _marked(t["content"], t.get("judge"), style))
            if t.get("judge"):
                console.print(Text(f"  {_judge_line(t['judge'])}", style="magenta"))
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
