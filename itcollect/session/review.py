"""``itcollect session --review``: error-typed review of finished dialogues.

Three orders (``--order``):

* ``default`` — flagged dialogues and dialogues with edited answers, one at a time. The reviewer
  marks spans of answers with an error category and severity (the lists of the LLM judge,
  :mod:`itcollect.llm.judgement.schema`), may fix an answer (the fix becomes the active turn with the
  reviewer as its author; the old answer is kept), and decides: ``accept`` (stored as ``fixed``
  when the reviewer fixed an answer of it) or ``reject``;
* ``judge`` — the same, and also every dialogue the LLM judge scored, the lowest turn score first,
  then the rest as before;
* ``overlap`` — the copies of an overlap spec (``[session] overlap_share``), side by side, once all
  of them are finished; the reviewer may mark and fix as above and picks the copy to keep (the
  filter drops the others as ``overlap_not_picked``; the picked one counts as accepted, or fixed).

The verdict goes to ``dialogues.review_status`` with the reviewer's name and note in the dialogue's
meta and the action log; marks, fixes and picks are stored with the reviewer as author
(:mod:`itcollect.store.review`). Interactive on a terminal; otherwise a line protocol like the
session's: the tool prints ``review {...}`` (``mode`` dialogue: one dialogue with all its turns,
rejected and undone ones included, each answer with its ``marks``, its current judgement under
``judge`` (score, error spans, compliance, rating; marked in the answer on a terminal), a reviewer's
fix with ``review_fix``, a control item with ``control``; ``mode`` overlap: ``dialogues``, the
copies) and
``ready {"expect": "verdict" | "pick"}``. Commands:

=================================  ==================================================================
``mark TURN CATEGORY SEVERITY SPAN``  mark an error: SPAN is text of the answer (its first occurrence)
                                   or ``@START:END`` (character offsets); a note may follow `` -- ``
``unmark MARK``                    take back one of your marks
``fix TURN TEXT``                  your version of an answer (TEXT on the line, or the following
                                   lines up to a line holding a single ``.``)
``accept [NOTE]``, ``reject [NOTE]``  the verdict (order default)
``pick DIALOGUE [NOTE]``           the copy to keep (order overlap; an id prefix of 8+ will do)
``next``                           leave it for later; ``quit`` stops
=================================  ==================================================================

After a mark, an unmark or a fix the item is printed again as it now stands; ``idle`` ends the queue.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from typing import IO, Any

from itcollect.llm.judgement.schema import CATEGORIES, OTHER, SEVERITIES
from itcollect.store import ReviewError
from itcollect.store.interfaces import ReviewStore

#: reviewer's command -> the verdict stored in ``dialogues.review_status`` (``accept`` after a fix: ``fixed``)
VERDICTS = {"accept": "accepted", "reject": "rejected"}
#: ``session --review --order`` (``default`` and ``judge`` are orders of the store's review queue)
ORDERS = ("default", "judge", "overlap")
#: what a reviewer may mark an error as (the judge's categories, and ``other``)
MARK_CATEGORIES = (*CATEGORIES, OTHER)
COMMANDS = {"default": ["mark", "unmark", "fix", "accept", "reject", "next", "quit"],
            "judge": ["mark", "unmark", "fix", "accept", "reject", "next", "quit"],
            "overlap": ["mark", "unmark", "fix", "pick", "next", "quit"]}

__all__ = ["ReviewError", "VERDICTS", "ORDERS", "MARK_CATEGORIES", "review_item", "next_review", "record_verdict",
           "record_mark", "record_unmark", "record_fix", "record_pick", "run_review"]


def _judgement(j: dict[str, Any]) -> dict[str, Any]:
    return {k: j[k] for k in ("status", "score", "errors", "compliance", "reason", "rating", "in_instruction_language",
                              "judge_model")}


def review_item(store: ReviewStore, d: dict[str, Any]) -> dict[str, Any]:
    """One dialogue as a reviewer sees it: every turn (rejected and undone ones too), each answer
    with its marks and its current judgement, a fix with who made it, a control item with what was
    planted and the outcome; ``judge_score`` (the lowest) when the judge scored it."""
    turns = store.get_turns(d["id"], include_inactive=True)
    judged = store.current_judgements(dialogue_ids=[d["id"]])
    marks: dict[int, list[dict[str, Any]]] = {}
    for m in store.review_marks(d["id"]):
        marks.setdefault(m["turn_id"], []).append(
            {k: m[k] for k in ("id", "reviewer", "category", "severity", "start", "end", "span", "note")})

    def turn(t: dict[str, Any]) -> dict[str, Any]:
        out = {"turn_id": t["id"], "idx": t["idx"], "role": t["role"], "state": t["state"], "author": t["author"],
               "annotator": t["annotator"], "content": t["content"], "original_content": t["original_content"],
               "type": t["interaction_type"], "warnings": t["warnings"]}
        if t["id"] in judged and t["state"] == "active":
            out["judge"] = _judgement(judged[t["id"]])
        if t["role"] == "assistant":
            out["marks"] = marks.get(t["id"], [])
            params = t["params"] or {}
            if params.get("review_fix"):
                out["review_fix"] = params["review_fix"]
            ctl = params.get("control")
            if ctl:
                out["control"] = {k: ctl.get(k) for k in ("kind", "description", "outcome", "via", "planted")}
        return out

    item = {"dialogue_id": d["id"], "spec_id": d["spec_id"], "copy": d.get("copy", 0), "annotator": d["annotator"],
            "status": d["status"], "status_reason": d["status_reason"], "flagged": bool(d["flagged"]),
            "flags": d["meta"].get("flags", []), "review_status": d["review_status"],
            "source": d["source_text"], "src_lang": d["src_lang"], "tgt_lang": d["tgt_lang"],
            "instruction_lang": d["instruction_lang"],
            "turns": [turn(t) for t in turns if t["role"] != "system"]}
    scores = [j["score"] for j in judged.values() if j["status"] == "judged" and j["score"] is not None]
    if judged:
        item["judge_score"] = min(scores) if scores else None
    return item


def next_review(store: ReviewStore, skipped: set[str] | frozenset[str] = frozenset(), order: str = "default"
                ) -> dict[str, Any] | None:
    """The next item to review, or None when nothing is left. ``mode`` ``dialogue`` (order default:
    :func:`review_item` fields) or ``overlap`` (the spec, its source and ``dialogues``: the copies);
    ``key`` (what ``skipped`` holds for items left for later: the dialogue id, or ``spec:ID``) and
    ``remaining`` (the queue's length without the skipped). The terminal, the line protocol and
    the web page all walk the queue through this; the queue is read again each time (other
    reviewers' verdicts and new judgements count at once), one row and a count (``order="judge"``
    may queue every judged dialogue of the corpus)."""
    if order == "overlap":
        left = [s for s in store.overlap_review_queue() if f"spec:{s}" not in skipped]
        if not left:
            return None
        copies = [review_item(store, d) for d in store.overlap_copies_done(left[0])]
        first = copies[0]
        return {"mode": "overlap", "key": f"spec:{left[0]}", "remaining": len(left), "spec_id": left[0],
                **{k: first[k] for k in ("source", "src_lang", "tgt_lang", "instruction_lang")}, "dialogues": copies}
    if order not in ORDERS:
        raise ReviewError(f"review order {order!r}: one of {', '.join(ORDERS)}")
    exclude = sorted(skipped)
    first = store.review_queue(order=order, limit=1, exclude=exclude)
    if not first:
        return None
    return {"mode": "dialogue", "key": first[0]["id"], "remaining": store.review_queue_size(order=order, exclude=exclude),
            **review_item(store, first[0])}


def record_verdict(store: ReviewStore, reviewer: str, dialogue_id: str, command: str, note: str | None = None) -> str:
    """Record ``accept`` or ``reject`` (with a note) on a dialogue of the queue; returns the stored
    verdict (``fixed`` for an accept of a dialogue with the reviewer's fixes). Checked and written
    in one transaction, so two reviewers deciding the same dialogue at once cannot both succeed:
    the second gets a :class:`ReviewError` naming the first."""
    verdict = VERDICTS.get(command)
    if verdict is None:
        raise ReviewError(f"verdict {command!r}: accept or reject")
    with store.transaction():
        d = _unreviewed(store, dialogue_id)
        if verdict == "accepted" and store.review_fixed_turns(d["id"]):
            verdict = "fixed"
        store.set_review(d["id"], reviewer, verdict, (note or "").strip() or None)
    return verdict


def _unreviewed(store: ReviewStore, dialogue_id: str) -> dict[str, Any]:
    d = store.get_dialogue(dialogue_id)
    if d is None or d["status"] not in ("done", "skipped"):
        raise ReviewError(f"no finished dialogue {dialogue_id!r} to review")
    if d["review_status"] is not None:
        by = (d["meta"].get("reviews") or [{}])[-1].get("reviewer", "someone")
        raise ReviewError(f"dialogue {dialogue_id[:8]} was already reviewed ({d['review_status']} by {by})")
    return d


def record_mark(store: ReviewStore, reviewer: str, dialogue_id: str, turn_id: int, category: str, severity: str,
                start: int, end: int, note: str | None = None) -> int:
    """Mark an error span (category and severity from the judge's lists); returns the mark's id."""
    category, severity = category.strip().lower(), severity.strip().lower()
    if category not in MARK_CATEGORIES:
        raise ReviewError(f"category {category!r}: one of {', '.join(MARK_CATEGORIES)}")
    if severity not in SEVERITIES:
        raise ReviewError(f"severity {severity!r}: one of {', '.join(SEVERITIES)}")
    return store.add_review_mark(dialogue_id, int(turn_id), reviewer, category, severity, int(start), int(end),
                                 (note or "").strip() or None)


def record_unmark(store: ReviewStore, reviewer: str, mark_id: int) -> None:
    store.remove_review_mark(int(mark_id), reviewer)


def record_fix(store: ReviewStore, reviewer: str, dialogue_id: str, turn_id: int, text: str) -> int:
    """The reviewer's version of an answer of a dialogue not reviewed yet; returns the new turn's id."""
    with store.transaction():
        _unreviewed(store, dialogue_id)
        return store.review_fix(dialogue_id, int(turn_id), reviewer, text)


def record_pick(store: ReviewStore, reviewer: str, spec_id: int, dialogue_id: str, note: str | None = None) -> str:
    """Keep one copy of an overlap spec (an id prefix of at least 8 characters will do); returns
    the picked dialogue's id."""
    copies = [d["id"] for d in store.overlap_copies_done(int(spec_id))]
    match = [c for c in copies if c == dialogue_id or (len(dialogue_id) >= 8 and c.startswith(dialogue_id))]
    if len(match) != 1:
        raise ReviewError(f"{dialogue_id!r} is not one of the copies of spec {spec_id}: "
                          f"{', '.join(c[:8] for c in copies)}")
    store.set_overlap_pick(int(spec_id), match[0], reviewer, (note or "").strip() or None)
    return match[0]


def _item_dialogues(item: dict[str, Any]) -> list[dict[str, Any]]:
    return item["dialogues"] if item["mode"] == "overlap" else [item]


def dialogue_of_turn(item: dict[str, Any], turn_id: int) -> str:
    """The dialogue (of those on screen) an answer belongs to."""
    for d in _item_dialogues(item):
        if any(t["turn_id"] == turn_id and t["role"] == "assistant" for t in d["turns"]):
            return d["dialogue_id"]
    raise ReviewError(f"turn {turn_id} is not an answer on screen")


def parse_span(content: str, spec: str) -> tuple[int, int]:
    """``@START:END`` or a piece of text (its first occurrence) -> character offsets."""
    m = re.fullmatch(r"@(\d+):(\d+)", spec.strip())
    if m:
        return int(m.group(1)), int(m.group(2))
    text = spec.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'«":
        text = text[1:-1]
    at = content.find(text) if text else -1
    if at < 0:
        raise ReviewError(f"{text!r} is not in the answer")
    return at, at + len(text)


def _answer(item: dict[str, Any], turn_id: int) -> dict[str, Any]:
    for d in _item_dialogues(item):
        for t in d["turns"]:
            if t["turn_id"] == turn_id:
                return t
    raise ReviewError(f"turn {turn_id} is not an answer on screen")


def run_review(store: ReviewStore, reviewer: str, *, interactive: bool | None = None, order: str = "default",
               stdin: IO[str] | None = None, stdout: IO[str] | None = None) -> int:
    if interactive is None:
        interactive = sys.stdin.isatty() and sys.stdout.isatty()
    if interactive:
        return _review_tui(store, reviewer, order)
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout

    def emit(tag: str, **data: Any) -> None:
        stdout.write(f"{tag} {json.dumps(data, ensure_ascii=False, sort_keys=True)}\n")
        stdout.flush()

    def lines() -> Iterator[str]:
        while True:
            line = stdin.readline()
            if not line:
                return
            yield line.rstrip("\r\n")

    source = lines()

    def block() -> str:
        out = []
        for line in source:
            if line == ".":
                break
            out.append(line[1:] if line.startswith("..") else line)
        return "\n".join(out)

    skipped: set[str] = set()
    emit("session", annotator=reviewer, mode="review", order=order, commands=COMMANDS[order],
         categories=list(MARK_CATEGORIES), severities=list(SEVERITIES))
    while True:
        item = next_review(store, skipped, order)
        if item is None:
            emit("idle", message="nothing left to review")
            return 0
        emit("review", **item)
        while True:
            emit("ready", expect="pick" if order == "overlap" else "verdict")
            line = next(source, None)
            if line is None:
                emit("bye", reason="end of input")
                return 0
            cmd, _, rest = line.strip().partition(" ")
            cmd = cmd.lower()
            if not cmd or cmd.startswith("#"):
                continue
            try:
                if cmd in VERDICTS and order != "overlap":
                    verdict = record_verdict(store, reviewer, item["dialogue_id"], cmd, rest)
                    emit("ok", action=cmd, dialogue_id=item["dialogue_id"], verdict=verdict)
                    break
                if cmd == "pick" and order == "overlap":
                    did, _, note = rest.strip().partition(" ")
                    picked = record_pick(store, reviewer, item["spec_id"], did, note)
                    emit("ok", action="pick", spec_id=item["spec_id"], dialogue_id=picked)
                    break
                if cmd == "mark":
                    parts = rest.split(None, 3)
                    if len(parts) < 4 or not parts[0].isdigit():
                        raise ReviewError("mark TURN CATEGORY SEVERITY SPAN [-- NOTE]")
                    span, _, note = parts[3].partition(" -- ")
                    turn_id = int(parts[0])
                    start, end = parse_span(_answer(item, turn_id)["content"], span)
                    mark_id = record_mark(store, reviewer, dialogue_of_turn(item, turn_id), turn_id, parts[1],
                                          parts[2], start, end, note)
                    emit("ok", action="mark", mark_id=mark_id, turn_id=turn_id, start=start, end=end)
                elif cmd == "unmark":
                    if not rest.strip().isdigit():
                        raise ReviewError("unmark MARK (the mark's id)")
                    record_unmark(store, reviewer, int(rest))
                    emit("ok", action="unmark", mark_id=int(rest))
                elif cmd == "fix":
                    head, _, text = rest.strip().partition(" ")
                    if not head.isdigit():
                        raise ReviewError("fix TURN TEXT")
                    text = text if text.strip() else block()
                    turn_id = int(head)
                    new_id = record_fix(store, reviewer, dialogue_of_turn(item, turn_id), turn_id, text)
                    emit("ok", action="fix", turn_id=turn_id, new_turn_id=new_id)
                elif cmd == "next":
                    skipped.add(item["key"])
                    break
                elif cmd == "quit":
                    emit("bye", reason="quit")
                    return 0
                else:
                    raise ReviewError("commands: " + ", ".join(COMMANDS[order]))
            except ReviewError as exc:
                emit("error", command=cmd, message=exc.message)
                if "already" in exc.message:
                    break
                continue
            # a mark, an unmark or a fix: the item as it now stands
            refreshed = _refresh(store, item)
            if refreshed is None:
                break
            item = refreshed
            emit("review", **item)


def _refresh(store: ReviewStore, item: dict[str, Any]) -> dict[str, Any] | None:
    """The same item, read again (after a mark or a fix)."""
    if item["mode"] == "overlap":
        copies = [review_item(store, d) for d in store.overlap_copies_done(item["spec_id"])]
        return {**item, "dialogues": copies} if copies else None
    d = store.get_dialogue(item["dialogue_id"])
    return None if d is None else {**item, **review_item(store, d)}


# -- the terminal ---------------------------------------------------------------------------------------
_SEVERITY_STYLE = {"critical": "bold white on red", "major": "bold red underline", "minor": "yellow underline"}


def _marked(content: str, marks: list[dict[str, Any]], judge: dict[str, Any] | None, base_style: str) -> Any:
    """The answer with the reviewers' marks and the judge's error spans styled by severity."""
    from rich.text import Text

    text = Text(content, style=base_style)
    for sev in ("minor", "major", "critical"):  # the most severe style wins where spans overlap
        spans = [e["span"] for e in (judge or {}).get("errors") or [] if e.get("severity") == sev and e.get("span")]
        if spans:
            text.highlight_words(spans, _SEVERITY_STYLE[sev])
        for m in marks:
            if m["severity"] == sev:
                text.stylize(_SEVERITY_STYLE[sev], m["start"], m["end"])
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


def _show(console: Any, d: dict[str, Any], numbers: dict[int, int], label: str = "") -> None:
    from rich.panel import Panel
    from rich.text import Text

    head = Text()
    head.append(f"{label}{d['src_lang']} → {d['tgt_lang']} · requests in {d['instruction_lang']} · by "
                f"{d['annotator']} · {d['status']}" + (" · FLAGGED" if d["flagged"] else "") + "\n", style="bold")
    head.append(d["source"] or "")
    for f in d["flags"]:
        head.append(f"\nflag: {f.get('note') or ''}", style="yellow")
    if d.get("judge_score") is not None:
        head.append(f"\nlowest judge score: {d['judge_score']:g}", style="magenta")
    console.print(Panel(head, title=f"dialogue {d['dialogue_id'][:8]} · spec {d['spec_id']}"))
    for t in d["turns"]:
        style = "dim strike" if t["state"] != "active" else ""
        if t["role"] == "user":
            console.print(Text(f"You [{t['state']}] › ", style="bold") + Text(t["content"], style=style))
            continue
        n = numbers.setdefault(t["turn_id"], len(numbers) + 1) if t["state"] == "active" else None
        label_ = "Fixed by " + t["review_fix"]["reviewer"] if t.get("review_fix") else \
            "Edited" if t["author"] == "human" else "Model"
        if t["author"] == "human" and t["original_content"] is not None:
            console.print(Text(f"  before › {t['original_content']}", style="dim"))
        num = f"[{n}] " if n else ""
        console.print(Text(f"{num}{label_} [{t['state']}] › ", style="bold")
                      + _marked(t["content"], t["marks"], t.get("judge"), style))
        if t.get("judge"):
            console.print(Text(f"  {_judge_line(t['judge'])}", style="magenta"))
        if t.get("control"):
            c = t["control"]
            console.print(Text(f"  control item: {c['description']} · {c['outcome'] or 'undecided'}",
                               style="magenta"))
        for m in t["marks"]:
            console.print(Text(f"  mark {m['id']}: {m['severity']} {m['category']} «{m['span']}» by {m['reviewer']}",
                               style="cyan"))


def _review_tui(store: ReviewStore, reviewer: str, order: str = "default") -> int:
    from prompt_toolkit import prompt
    from prompt_toolkit.key_binding import KeyBindings
    from rich.console import Console

    console = Console(highlight=False)

    def key(message: str, keys: dict[str, str]) -> str:
        kb = KeyBindings()
        for k in keys:
            kb.add(k)(lambda event, k=k: event.app.exit(result=k))
        kb.add("c-c")(lambda event: event.app.exit(result="q"))
        kb.add("c-d")(lambda event: event.app.exit(result="q"))
        kb.add("<any>")(lambda event: None)
        return keys.get(prompt(message, key_bindings=kb), "quit")

    def choose(title: str, options: list[str]) -> str | None:
        keys = {str(i + 1) if i < 9 else chr(ord("a") + i - 9): o for i, o in enumerate(options)}
        keys["0"] = "cancel"
        picked = key(title + " " + "  ".join(f"[{k}] {v}" for k, v in keys.items()) + " › ", keys)
        return None if picked in ("cancel", "quit") else picked

    skipped: set[str] = set()
    if order == "overlap":
        keys = {"m": "mark", "x": "fix", "p": "pick", "n": "next", "q": "quit"}
        menu = "[m]ark an error  fi[x] an answer  [p]ick the copy to keep  [n]ext  [q]uit › "
    else:
        keys = {"m": "mark", "x": "fix", "a": "accept", "r": "reject", "n": "next", "q": "quit"}
        menu = "[m]ark an error  fi[x] an answer  [a]ccept  [r]eject  [n]ext  [q]uit › "
    item = next_review(store, skipped, order)
    while True:
        if item is None:
            console.print("[green]Nothing left to review.[/green]")
            return 0
        numbers: dict[int, int] = {}
        dialogues = _item_dialogues(item)
        console.rule(f"review · {item['remaining']} left" + (f" · spec {item['spec_id']}, {len(dialogues)} copies"
                                                              if order == "overlap" else ""))
        for k, d in enumerate(dialogues):
            _show(console, d, numbers, f"copy {k + 1} · " if order == "overlap" else "")
        by_number = {n: t for t, n in numbers.items()}
        choice = key(menu, keys)
        try:
            if choice == "quit":
                return 0
            if choice == "next":
                skipped.add(item["key"])
                item = next_review(store, skipped, order)
                continue
            if choice in ("mark", "fix"):
                n = prompt("Answer number › ").strip()
                if not n.isdigit() or int(n) not in by_number:
                    console.print("[red]no such answer[/red]")
                    continue
                turn_id = by_number[int(n)]
                content = _answer(item, turn_id)["content"]
                if choice == "mark":
                    span = prompt("The wrong text (as it stands in the answer) › ")
                    start, end = parse_span(content, span)
                    category = choose("Category:", list(MARK_CATEGORIES))
                    severity = choose("Severity:", list(SEVERITIES)) if category else None
                    if category and severity:
                        note = prompt("Note (optional) › ").strip() or None
                        record_mark(store, reviewer, dialogue_of_turn(item, turn_id), turn_id, category, severity,
                                    start, end, note)
                else:
                    text = prompt("Your version › ", default=content)
                    if text.strip() and text.strip() != content:
                        record_fix(store, reviewer, dialogue_of_turn(item, turn_id), turn_id, text)
                item = _refresh(store, item)
                continue
            if choice == "pick":
                picked = choose("Keep copy:", [d["dialogue_id"][:8] for d in dialogues])
                if picked is None:
                    continue
                note = prompt("Note (optional) › ").strip() or None
                record_pick(store, reviewer, item["spec_id"], picked, note)
            else:
                note = prompt("Note (optional) › ").strip() or None
                verdict = record_verdict(store, reviewer, item["dialogue_id"], choice, note)
                console.print(f"[dim]{verdict}[/dim]")
        except ReviewError as exc:
            console.print(f"[bold red]{exc.message}[/bold red]")
            if "already" not in exc.message:
                continue
        item = next_review(store, skipped, order)
