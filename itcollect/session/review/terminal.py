"""The review desk on a terminal (``session --review`` when stdin and stdout are terminals): rich
renders each item, the reviewers' marks and the judge's error spans styled by severity; every
decision is one key (:mod:`itcollect.session.keys`, as in the session's terminal UI)."""

from __future__ import annotations

from typing import Any

from itcollect.llm.judgement.schema import SEVERITIES
from itcollect.session.keys import read_key
from itcollect.session.review.logic import (
    MARK_CATEGORIES,
    ReviewError,
    answer_on_screen,
    dialogue_of_turn,
    item_dialogues,
    next_review,
    parse_span,
    record_fix,
    record_mark,
    record_pick,
    record_suggestion,
    record_undo,
    record_verdict,
    refresh,
    reopen_item,
)
from itcollect.store.interfaces import ReviewStore

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
        for g in t.get("suggestions") or []:
            state = f"{g['decision']} by {g['by']}" if g["decision"] else \
                "open: [c]onfirm [k] change [d]ismiss" if g["start"] is not None else "not in the answer: [d]ismiss"
            console.print(Text(f"  judge suggests {g['severity']} {g['category']} «{g['span']}» · {state}",
                               style="magenta"))
        if t.get("control"):
            c = t["control"]
            console.print(Text(f"  control item: {c['description']} · {c['outcome'] or 'undecided'}",
                               style="magenta"))
        for m in t["marks"]:
            console.print(Text(f"  mark {m['id']}: {m['severity']} {m['category']} «{m['span']}» by {m['reviewer']}",
                               style="cyan"))


#: the judge's suggested marks: one key each, on the first open one on screen
_SUGGESTION_KEYS = {"c": "confirm", "k": "change", "d": "dismiss"}


def _suggestion(store: ReviewStore, reviewer: str, item: dict[str, Any], decision: str, choose: Any) -> None:
    """Decide the first open suggestion of the judge on screen (``change``: category and severity asked)."""
    for d in item_dialogues(item):
        for t in d["turns"]:
            for g in t.get("suggestions") or []:
                if g["decision"] is None and t["state"] == "active":
                    extra: list[str | None] = []
                    if decision == "change":
                        category = choose("Category:", list(MARK_CATEGORIES))
                        severity = choose("Severity:", list(SEVERITIES)) if category else None
                        if not (category and severity):
                            return
                        extra = [category, severity]
                    record_suggestion(store, reviewer, d["dialogue_id"], t["turn_id"], g["index"], decision, *extra)
                    return
    raise ReviewError("no open suggestion of the judge on screen")


def _undo(console: Any, store: ReviewStore, reviewer: str, decided: list[str], skipped: set[str],
          order: str) -> dict[str, Any] | None:
    """Take back this session's last verdict: its dialogue, to decide again (None: nothing to undo)."""
    if not decided:
        console.print("[yellow]no verdict of this session to take back[/yellow]")
        return None
    try:
        undone = record_undo(store, reviewer, decided[-1])
    except ReviewError as exc:
        console.print(f"[bold red]{exc.message}[/bold red]")
        decided.pop()
        return None
    console.print(f"[dim]{undone} taken back: decide again[/dim]")
    return reopen_item(store, decided.pop(), skipped, order)


def run_terminal(store: ReviewStore, reviewer: str, order: str = "default") -> int:
    """The review desk on a terminal: one key a decision, until the queue is empty or ``q``."""
    from prompt_toolkit import prompt
    from rich.console import Console

    console = Console(highlight=False)
    key = read_key

    def choose(title: str, options: list[str]) -> str | None:
        keys = {str(i + 1) if i < 9 else chr(ord("a") + i - 9): o for i, o in enumerate(options)}
        keys["0"] = "cancel"
        picked = key(title + " " + "  ".join(f"[{k}] {v}" for k, v in keys.items()) + " › ", keys)
        return None if picked in ("cancel", "quit") else picked

    skipped: set[str] = set()
    if order == "overlap":
        keys = {"m": "mark", "e": "fix", "p": "pick", "n": "next", "q": "quit", **_SUGGESTION_KEYS}
        menu = "[m]ark an error  [e]dit (fix) an answer  [p]ick the copy to keep  [n]ext  [q]uit › "
    else:
        # the keys of the annotator's desk mean the same here: e writes your version, u takes back;
        # r (regenerate there) is not a verdict here, x rejects
        keys = {"m": "mark", "e": "fix", "a": "accept", "x": "reject", "u": "undo", "n": "next", "q": "quit",
                **_SUGGESTION_KEYS}
        menu = "[m]ark an error  [e]dit (fix) an answer  [a]ccept  [x] reject  [u]ndo last verdict  [n]ext  [q]uit › "
    decided: list[str] = []
    item = next_review(store, skipped, order)
    while True:
        if item is None:
            console.print("[green]Nothing left to review.[/green]")
            if not decided or key("[u]ndo the last verdict  [q]uit › ", {"u": "undo", "q": "quit"}) != "undo":
                return 0
            item = _undo(console, store, reviewer, decided, skipped, order)
            continue
        numbers: dict[int, int] = {}
        dialogues = item_dialogues(item)
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
            if choice in _SUGGESTION_KEYS.values():
                _suggestion(store, reviewer, item, choice, choose)
                item = refresh(store, item)
                continue
            if choice == "undo":
                item = _undo(console, store, reviewer, decided, skipped, order) or item
                continue
            if choice in ("mark", "fix"):
                n = prompt("Answer number › ").strip()
                if not n.isdigit() or int(n) not in by_number:
                    console.print("[red]no such answer[/red]")
                    continue
                turn_id = by_number[int(n)]
                content = answer_on_screen(item, turn_id)["content"]
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
                item = refresh(store, item)
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
                decided.append(item["dialogue_id"])
                console.print(f"[dim]{verdict} (u takes it back)[/dim]")
        except ReviewError as exc:
            console.print(f"[bold red]{exc.message}[/bold red]")
            if "already" not in exc.message:
                continue
        item = next_review(store, skipped, order)
