"""The session engine says which actions a dialogue allows (``Session.allowed_actions``), and every
engine method refuses exactly the others, in the words the front-ends show: one table of rules for
the terminal's key menus, the line protocol and the web page's buttons. Real store, real LLM client
against the loopback fake server."""

from __future__ import annotations

import asyncio

import pytest

from itcollect.llm import LLMClient
from itcollect.session import session_config
from itcollect.session.engine import ACTIONS, CommandError, Session
from itcollect.workspace import Workspace

from .test_session import CountingResponder, make_workspace

ALWAYS = ["skip", "flag", "guidelines", "quit"]


def _consistent(s: Session) -> list[str]:
    """The allowed actions, after checking that ``require`` agrees with them action by action."""
    allowed = s.allowed_actions()
    for action in ACTIONS:
        if action in allowed:
            s.require(action)
        else:
            with pytest.raises(CommandError):
                s.require(action)
    return allowed


def test_allowed_actions_follow_the_dialogue_and_the_methods_refuse_the_rest(tmp_path, fake_openai):
    fake_openai.responder = CountingResponder()
    ws = Workspace(make_workspace(tmp_path / "ws", 1, instruction_langs=("en",)))
    cfg = session_config(ws.config)
    s = Session(cfg, ws.store, "ann", lambda: LLMClient(cfg, ws.store, command="session",
                                                         base_url=fake_openai.base_url, model="fake-model",
                                                         concurrency=1))
    assert s.allowed_actions() == []  # nothing open
    s.open_next()

    async def walk() -> None:
        # a fresh dialogue: only a request (and its type) moves it on
        assert _consistent(s) == ["request", "type", *ALWAYS]
        for call, words in ((s.accept, "there is no answer to accept"), (s.undo, "nothing to undo"),
                            (s.reject_answer, "there is no answer to regenerate"),
                            (lambda: s.edit("x"), "there is no answer to edit"),
                            (s.finish, "nothing to finish: write a request first, or skip this sentence")):
            with pytest.raises(CommandError, match=words):
                call()
        s.add_request("Please translate this sentence into Chinese.")
        # a request without its answer: ask again, or take it back
        assert _consistent(s) == ["retry", "undo", *ALWAYS]
        with pytest.raises(CommandError, match="the last request has no answer yet: retry, or undo it"):
            s.add_request("Another request.")
        with pytest.raises(CommandError, match="the type applies to the next request"):
            s.set_next_type("polish")
        with pytest.raises(CommandError, match="the last request has no answer: retry or undo it first"):
            s.finish()
        # while it is being fetched (a web page's stream), only what does not touch the turns
        assert s.allowed_actions(answering=True) == ["stop", "flag", "guidelines", "quit"]
        await s.get_answer()
        assert _consistent(s) == ["accept", "edit", "regenerate", "undo", "finish", *ALWAYS]
        assert s.view()["accept_needs_reason"] is bool(s.pending_answer()["warnings"])
        with pytest.raises(CommandError, match="decide on the last answer first"):
            s.add_request("Another request.")
        s.accept()
        # decided: the next request, or second thoughts on the accepted answer, or done
        assert _consistent(s) == ["request", "type", "edit", "undo", "finish", *ALWAYS]
        s.edit("市议会周一通过了新桥的预算。")
        s.finish("one turn is enough here")  # 1 of 2 planned turns: an early finish takes a reason
        assert s.allowed_actions() == []
        await s.close()

    try:
        asyncio.run(walk())
    finally:
        ws.close()
    with pytest.raises(ValueError):
        from itcollect.session.actions import _refusal

        _refusal("dance", "ask", [])
