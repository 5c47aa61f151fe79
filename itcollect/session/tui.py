"""The interactive terminal UI of ``itcollect session``.

prompt_toolkit gives the request line what annotators expect of a modern shell: line editing,
history across sessions (per annotator, in the workspace), multi-line input (Alt+Enter or Esc then
Enter inserts a newline; Enter sends) and correct cursor movement over CJK wide characters. rich
renders the source panel, the conversation and the guidelines (Markdown). Every decision is one
key. All state changes go through :class:`~.engine.Session`, which commits before returning.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from pathlib import Path
from typing import Any

from itcollect.config import settings
from itcollect.kernel.checks import lang_label
from itcollect.kernel.dialogue import planned_turns
from itcollect.session.catalog import ui_lang, warning_sentence
from itcollect.session.engine import AnswerFailed, CommandError, ControlRevealed, EarlyFinish, Session
from itcollect.session.guidelines import guideline_section
from itcollect.session.keys import read_key_async
from itcollect.session.status import status_line
from itcollect.session.wording import taken_back_request
from itcollect.store import SKIP_REASONS, LeaseLost

#: The key menus, (key, action, label) each: the one after an answer and the one after the endpoint
#: failed. A menu offers what :meth:`Session.allowed_actions` allows of it.
DECISION_MENU = (("a", "accept", "[a]ccept"), ("e", "edit", "[e]dit"), ("r", "regenerate", "[r]egenerate"),
                 ("u", "undo", "[u]ndo"), ("f", "finish", "[f]inish"), ("s", "skip", "[s]kip"),
                 ("!", "flag", "[!]flag"), ("g", "guidelines", "[g]uide"), ("q", "quit", "[q]uit"))
RETRY_MENU = (("r", "retry", "[r]etry"), ("u", "undo", "[u]ndo the request"), ("s", "skip", "[s]kip"),
              ("q", "quit", "[q]uit"))
#: a compare session (``--compare``): after ``pick none`` (every answer bad)
ALLBAD_MENU = (("e", "edit", "[e] write the answer"), ("r", "regenerate", "[r]egenerate all"),
               ("u", "undo", "[u]ndo"), ("s", "skip", "[s]kip"), ("!", "flag", "[!]flag"), ("g", "guidelines", "[g]uide"),
               ("q", "quit", "[q]uit"))
#: ... and while the candidates wait for a pick (keys 1-9 pick the answer of that number, A = 1)
PICK_MENU = (("k", "rank", "ran[k]"), ("n", "none", "[n]one good"), ("r", "regenerate", "[r]egenerate all"),
             ("u", "undo", "[u]ndo"), ("s", "skip", "[s]kip"), ("!", "flag", "[!]flag"), ("g", "guidelines", "[g]uide"),
             ("q", "quit", "[q]uit"))
SLASH_HELP = ("/finish  /skip REASON [note]  /flag [note]  /undo  /type ID  /guide [TYPE]  /status  /quit"
              "   (Alt+Enter: new line, Ctrl-D: quit)")


#: the request prompt's commands, by the engine action that makes each available
_SLASH = (("finish", "/finish"), ("skip", "/skip REASON [note]"), ("flag", "/flag [note]"), ("undo", "/undo"),
          ("type", "/type ID"), ("guidelines", "/guide [TYPE]"))


def slash_hint(allowed: list[str]) -> str:
    """The commands the request prompt takes now (of what the dialogue allows), in one line."""
    cmds = [c for action, c in _SLASH if action in allowed] + ["/status", "/quit"]
    return "commands: " + "  ".join(cmds) + "   (Alt+Enter: new line)"


class Quit(Exception):
    pass


class TerminalUI:
    def __init__(self, session: Session, *, history_dir: str | Path | None = None) -> None:
        from rich.console import Console

        self.s = session
        self.console = Console(highlight=False)
        self.history_dir = Path(history_dir) if history_dir else None
        self._prompt: Any = None
        #: a request taken back with undo, put in the next request prompt
        self._taken_back = ""
        self._activity = time.monotonic()
        self._shown: str | None = None  # the version of the dialogue whose candidates are on screen

    # -- prompt_toolkit pieces --------------------------------------------------------------------
    def _prompt_session(self, history: bool = True) -> Any:
        """The request prompt (with the annotator's history), or a plain one for reasons and edits."""
        if history and self._prompt is not None:
            return self._prompt
        from prompt_toolkit import PromptSession
        from prompt_toolkit.history import FileHistory, InMemoryHistory
        from prompt_toolkit.key_binding import KeyBindings

        hist: Any = InMemoryHistory()
        if history and self.history_dir is not None:
            try:
                self.history_dir.mkdir(parents=True, exist_ok=True)
                hist = FileHistory(str(self.history_dir / f"{self.s.annotator}.history"))
            except OSError:
                pass
        kb = KeyBindings()

        @kb.add("escape", "enter")
        def _newline(event: Any) -> None:
            event.current_buffer.insert_text("\n")

        @kb.add("enter")
        def _submit(event: Any) -> None:
            event.current_buffer.validate_and_handle()

        ps: PromptSession[str] = PromptSession(history=hist, key_bindings=kb, multiline=True, bottom_toolbar=self._toolbar)
        ps.default_buffer.on_text_changed += self._touch
        if history:
            self._prompt = ps
        return ps

    def _touch(self, _buffer: Any = None) -> None:
        self._activity = time.monotonic()

    async def _keep_lease(self) -> None:
        """Renew the lease now and then while the annotator is typing (typing is work, too: a long
        request must not lose its spec); an idle terminal lets the lease run out as it should."""
        period = max(1.0, min(60.0, self.s.lease_s / 3))
        while True:
            await asyncio.sleep(period)
            if self.s.current is not None and time.monotonic() - self._activity < self.s.lease_s / 2:
                try:
                    self.s.renew()
                except Exception:  # noqa: BLE001 - a failed renewal shows up at the next action
                    pass

    def _toolbar(self) -> str:
        try:
            return " " + status_line(self.s.progress())
        except Exception:  # noqa: BLE001 - the toolbar must never break the prompt
            return ""

    async def _text(self, message: str, default: str = "", history: bool = True,
                    placeholder: str | None = None) -> str | None:
        """A line (or several) of text; None on Ctrl-D / Ctrl-C."""
        from prompt_toolkit.formatted_text import FormattedText

        session = self._prompt_session(history)
        # one line: prompt_toolkit shows a newline inside a placeholder as a literal ^J
        hint = FormattedText([("fg:ansibrightblack", f"e.g. {' '.join(placeholder.split())}")]) if placeholder else None
        try:
            return await session.prompt_async(message, default=default, placeholder=hint)
        except (EOFError, KeyboardInterrupt):
            return None

    async def _key(self, message: str, keys: dict[str, str]) -> str:
        """One key press among ``keys`` (Ctrl-C / Ctrl-D mean quit)."""
        return await read_key_async(message, keys, toolbar=self._toolbar)

    async def _menu(self, menu: tuple[tuple[str, str, str], ...], sep: str) -> str:
        """The actions of ``menu`` that the dialogue allows now, one key each; the action chosen."""
        allowed = self.s.allowed_actions()
        offered = [m for m in menu if m[1] in allowed]
        return await self._key(sep.join(label for _, _, label in offered) + " › ", {k: a for k, a, _ in offered})

    # -- rendering ----------------------------------------------------------------------------------
    def show_dialogue(self) -> None:
        from rich.panel import Panel
        from rich.text import Text

        cur = self.s.current
        assert cur is not None
        spec = cur.spec
        plan = planned_turns(spec)
        plan_text = ", ".join(p["type"] + (f" ({', '.join(f'{k}={v}' for k, v in p.items() if k != 'type')})"
                                           if len(p) > 1 else "") for p in plan)
        body = Text()
        body.append("Source  ", style="bold")
        body.append(cur.source["text"] + "\n")
        if cur.reference:
            body.append("Ref.    ", style="bold dim")
            body.append(cur.reference + "\n", style="dim")
        body.append("Pair    ", style="bold")
        body.append(f"{spec['src_lang']} → {spec['tgt_lang']}    ")
        body.append("Requests in ", style="bold")
        body.append(lang_label(spec["instruction_lang"]) + "\n")
        body.append("Plan    ", style="bold")
        body.append(f"{plan_text}  [{spec['n_turns']} turns]")
        self.console.print(Panel(body, title=f"dialogue {cur.dialogue_id[:8]} · spec {spec['id']}",
                                 subtitle=self.s.annotator, expand=True))
        self.console.print(Text(self._toolbar().strip(), style="dim"))
        if cur.resume_note:
            self.console.print(f"[yellow]{cur.resume_note}[/yellow]")
        for t in self.s.conversation():
            self.show_turn(t)

    def show_turn(self, t: dict[str, Any]) -> None:
        from rich.text import Text

        if t["role"] == "user":
            self.console.print(Text(f"You ({t.get('interaction_type') or '?'}) › ", style="bold cyan") + Text(t["content"]))
        else:
            who = "Model" if t["author"] == "model" else "Model (edited)"
            self.console.print(Text(f"{who} › ", style="bold green") + Text(t["content"]))
            self.show_warnings(t["warnings"], request=t["role"] == "user")

    def show_warnings(self, warnings: list[str], *, request: bool = False) -> None:
        """Each warning as a sentence that says what to do, its code beside it (dim)."""
        from rich.markup import escape

        lang = ui_lang(settings(self.s.config).web.language)
        for w in warnings:
            self.console.print(f"[bold yellow]  warning:[/bold yellow] {escape(warning_sentence(w, lang, request=request))}"
                               f" [dim]({escape(w)})[/dim]")

    def show_control(self) -> None:
        """After a decision on a control item: say so; after a miss, show the model's real answer."""
        from rich.text import Text

        note = self.s.take_control_note()
        if note is None:
            return
        self.console.print(f"[bold magenta]{note['message']}[/bold magenta]")
        if note.get("answer"):
            self.console.print(Text("Model › ", style="bold green") + Text(note["answer"]["text"]))

    def error(self, message: str) -> None:
        self.console.print(f"[bold red]{message}[/bold red]")

    # -- streaming an answer --------------------------------------------------------------------------
    async def _stream(self, fn: Any) -> None:
        """Run an engine call that streams an answer; Ctrl-C abandons the answer (the request stays)."""
        from rich.text import Text

        self.console.print(Text("Model › ", style="bold green"), end="")
        out = sys.stdout

        def on_delta(piece: str) -> None:
            out.write(piece)
            out.flush()

        def on_reset() -> None:
            out.write("\n[connection lost, asking again…]\n")
            out.flush()

        loop = asyncio.get_running_loop()
        task = asyncio.ensure_future(fn(on_delta, on_reset))
        try:
            loop.add_signal_handler(signal.SIGINT, task.cancel)
        except (NotImplementedError, RuntimeError):  # pragma: no cover - not on this platform
            pass
        try:
            answer = await task
        except asyncio.CancelledError:
            out.write("\n")
            self.error("Interrupted: the answer was discarded; your request is kept.")
            self.s.interrupted()
            return
        except AnswerFailed as exc:
            out.write("\n")
            self.error(f"The model could not answer: {exc.message}")
            self.console.print("Your request is kept. Retry when the endpoint is back, or undo the request.")
            return
        finally:
            try:
                loop.remove_signal_handler(signal.SIGINT)
            except (NotImplementedError, RuntimeError):  # pragma: no cover
                pass
        out.write("\n")
        out.flush()
        if answer.from_ledger:
            self.console.print("[dim](answer already paid for: taken from the ledger)[/dim]")
        self.show_warnings(answer.warnings)

    # -- the loop ---------------------------------------------------------------------------------------
    async def run(self) -> int:
        self.console.print(f"[bold]itcollect session[/bold] · {self.s.annotator} · "
                           "keys: a accept, e edit, r regenerate, u undo, f finish, s skip, ! flag, "
                           "g guidelines, q quit")
        keeper = asyncio.ensure_future(self._keep_lease())
        try:
            while True:
                if self.s.current is None:
                    cur = self.s.open_next()
                    if cur is None:
                        self.console.print("[green]No spec is waiting: every spec is done or leased by someone "
                                           "else. Thank you![/green]")
                        return 0
                    self.show_dialogue()
                try:
                    await self.step()
                except ControlRevealed:
                    pass  # shown below
                except CommandError as exc:
                    self.error(exc.message)
                except LeaseLost as exc:
                    self.error(f"{exc.message}. Your committed turns stay; moving on.")
                    self.s.lease_lost()
                self.show_control()
        except Quit:
            self.s.quit()
            self.console.print("Saved. Run the same command to continue exactly here.")
            return 0
        finally:
            keeper.cancel()
            await self.s.close()

    async def _answers(self) -> None:
        """Ask for the answer(s) to the pending request: the model's, streamed; in a compare
        session every system's, shown one under the other once they are all in."""
        if self.s.compare is None:
            await self._stream(self.s.get_answer)
            return
        self.console.print(f"[dim]asking {len(self.s.compare.systems)} systems…[/dim]")
        try:
            asked = await self.s.compare.ask()
        except AnswerFailed as exc:
            self.error(f"No system could answer: {exc.message}")
            self.console.print("Your request is kept. Retry when the endpoints are back, or undo the request.")
            return
        self._shown = None
        if asked.void:
            self.console.print(f"[yellow]{asked.void}: the one answer is an ordinary answer.[/yellow]")
            self.show_candidates(asked.answers)

    def show_candidates(self, answers: list[dict[str, Any]]) -> None:
        from rich.text import Text

        for a in answers:
            if "failed" in a:
                self.console.print(Text(f"{a['label']} › ", style="bold green") + Text(f"(failed: {a['failed']})",
                                                                                       style="red"))
                continue
            self.console.print(Text(f"{a['label']} › ", style="bold green") + Text(a["content"]))
            self.show_warnings(a["warnings"])

    async def pick(self) -> None:
        """The candidates wait: a number key picks (1 = A), k ranks, n says none is good."""
        from itcollect.session.compare import LABELS

        v = self.s.view() or {}
        answers = v.get("candidates") or []
        if v.get("version") != self._shown:
            self.show_candidates(answers)
            self._shown = v.get("version")
        numbers = {str(k + 1): "pick:" + a["label"] for k, a in enumerate(answers[:9]) if "failed" not in a}
        allowed = self.s.allowed_actions()
        offered = [m for m in PICK_MENU if m[1] in allowed or (m[1] == "none" and "pick" in allowed)]
        keys = {**numbers, **{k: a for k, a, _ in offered}}
        first, last = min(numbers, default="1"), max(numbers, default="1")
        choice = await self._key(f"[{first}-{last}] pick ({LABELS[int(first) - 1]}={first}) "
                                 + " ".join(label for _, _, label in offered) + " › ", keys)
        compare = self.s.compare
        assert compare is not None
        if choice.startswith("pick:"):
            label = choice[5:]
            reason = None
            if next(a for a in answers if a["label"] == label)["warnings"]:
                reason = await self._text("Reason to pick it despite the warnings › ", history=False)
                if not reason or not reason.strip():
                    self.console.print("[dim]not picked[/dim]")
                    return
            compare.pick(label, reason)
            self.console.print(f"[dim]{label} picked; it continues the dialogue[/dim]")
        elif choice == "rank":
            order = await self._text("Rank, best first (A>B=C) › ", history=False)
            if order and order.strip():
                compare.rank(order.strip())
        elif choice == "none":
            reason = await self._text("What is wrong with every answer? › ", history=False)
            if reason and reason.strip():
                compare.pick_none(reason)
                self.console.print("Write the answer yourself (e), or ask every system again (r).")
        else:
            await self.action(choice)

    async def step(self) -> None:
        state = self.s.state()
        if state == "pick":
            await self.pick()
        elif state == "allbad":
            await self.action(await self._menu(ALLBAD_MENU, " "))
        elif state == "answer":
            await self._answers()
            if self.s.current is not None and self.s.state() == "answer":
                await self.action(await self._menu(RETRY_MENU, "  "))
        elif state == "decide":
            await self.action(await self._menu(DECISION_MENU, " "))
        else:
            await self.ask()

    async def ask(self) -> None:
        type_id = self.s.next_type()
        # the commands this prompt takes, shown without asking (what the dialogue allows now)
        self.console.print(f"[dim]{slash_hint(self.s.allowed_actions())}[/dim]")
        default, self._taken_back = self._taken_back, ""
        text = await self._text(f"You ({type_id}) › ", default=default, placeholder=self.s.suggestion())
        if text is None:
            raise Quit
        text = text.strip()
        if not text:
            return
        if text.startswith("/"):
            cmd, _, arg = text[1:].partition(" ")
            await self.slash(cmd.lower(), arg.strip())
            return
        r = self.s.add_request(text)
        if r["content"] != text:
            self.console.print("[dim](the source sentence is attached to your first request)[/dim]")
        self.show_warnings(r["warnings"], request=True)
        await self._answers()

    async def slash(self, cmd: str, arg: str) -> None:
        if cmd in ("quit", "q", "exit"):
            raise Quit
        if cmd == "finish":
            await self.action("finish")
        elif cmd == "skip":
            reason, _, note = arg.partition(" ")
            if reason:
                self.s.skip(reason, note or None)
                self.console.print("[dim]skipped[/dim]")
            else:
                await self.action("skip")
        elif cmd == "flag":
            self.s.flag(arg or None)
            self.console.print("[dim]flagged for review[/dim]")
        elif cmd == "undo":
            await self.action("undo")
        elif cmd == "type":
            self.s.set_next_type(arg)
        elif cmd in ("guide", "guidelines", "g"):
            self.show_guidelines(arg or None)
        elif cmd == "status":
            self.console.print(status_line(self.s.progress()))
        else:
            self.console.print(SLASH_HELP)

    async def _finish(self) -> str | None:
        """Finish (the dialogue's id; None when not finished): before the planned turns the engine
        refuses without a reason, so ask for one with the count."""
        try:
            did = self.s.finish()
        except EarlyFinish as exc:
            reason = await self._text(f"Only {exc.done} of {exc.planned} planned turns. Finish early anyway? "
                                      "Reason (empty: go on with the dialogue) › ", history=False)
            if not reason or not reason.strip():
                self.console.print("[dim]not finished: go on with the next request[/dim]")
                return None
            did = self.s.finish(reason.strip())
            self.console.print(f"[green]Dialogue finished early ({exc.done} of {exc.planned} planned turns).[/green]\n")
            return did
        self.console.print("[green]Dialogue finished.[/green]\n")
        return did

    def show_guidelines(self, type_id: str | None = None) -> None:
        from rich.markdown import Markdown

        type_id = type_id or self.s.current_type()
        lang = self.s.current.spec["instruction_lang"] if self.s.current else "en"
        text = guideline_section(type_id, lang)
        if not text:
            self.error(f"no guideline section for {type_id!r}")
            return
        self.s.log_guidelines(type_id)
        self.console.print(Markdown(text))

    async def action(self, name: str) -> None:
        s = self.s
        if name == "quit":
            raise Quit
        if name == "accept":
            turn = s.pending_answer()
            reason = None
            if turn is not None and turn["warnings"]:
                reason = await self._text("Reason to accept despite the warnings › ", history=False)
                if not reason or not reason.strip():
                    self.console.print("[dim]not accepted[/dim]")
                    return
            s.accept(reason)
        elif name == "edit" and s.state() == "allbad":
            text = await self._text("Your answer › ", history=False)
            if text and text.strip():
                s.edit(text)
        elif name == "edit":
            turn = s.pending_answer()
            if turn is None:
                raise CommandError("there is no answer to edit")
            text = await self._text("Your version › ", default=turn["content"], history=False)
            if text is None or not text.strip():
                self.console.print("[dim]edit cancelled[/dim]")
                return
            r = s.edit(text)
            if r["warnings"]:
                self.show_warnings(r["warnings"])
                self.console.print("Your edit is saved; accept it (with a reason) or edit again.")
        elif name == "regenerate":
            s.reject_answer()
            self.show_control()
            await self._answers()
        elif name == "retry":
            await self._answers()
        elif name == "undo":
            assert s.current is not None  # actions run on an open dialogue
            taken = taken_back_request(s.conversation(), s.current.source["text"])
            s.undo()
            self._taken_back = taken or ""  # back in the prompt, to correct and send again
            self.console.print("[dim]last request taken back (it is in the prompt again)[/dim]")
        elif name == "finish":
            did = await self._finish()
            if did is None:
                return
            if s.compare is not None:
                for c in s.compare.reveal(did):
                    names = ", ".join(f"{label} = {name}" for label, name in c["systems"].items())
                    self.console.print(f"[dim]answer {c['idx']}: {names}[/dim]")
        elif name == "skip":
            keys = {str(i + 1): r for i, r in enumerate(SKIP_REASONS)}
            keys["c"] = "cancel"
            choice = await self._key("Skip because: " + "  ".join(f"[{k}] {v}" for k, v in keys.items()) + " › ",
                                     keys)
            if choice in ("cancel", "quit"):
                return
            note = await self._text("Note (optional) › ", history=False)
            s.skip(choice, note or None)
            self.console.print("[dim]skipped[/dim]\n")
        elif name == "flag":
            note = await self._text("Note for the reviewer › ", history=False)
            s.flag(note or None)
            self.console.print("[dim]flagged for review[/dim]")
        elif name == "guidelines":
            self.show_guidelines()
