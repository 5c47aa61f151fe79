"""The interactive session in a real pseudo-terminal (pexpect): type a Chinese request, accept,
quit, start again and see the resume."""

from __future__ import annotations

import os
import sys

import pytest

from itcollect.store import Store

from .test_session import CountingResponder, make_workspace

pexpect = pytest.importorskip("pexpect")


def spawn(ws, url):
    env = dict(os.environ, PROMPT_TOOLKIT_NO_CPR="1", TERM="xterm", ITCOLLECT_PROGRESS="0", COLUMNS="110",
               LINES="40")
    env.pop("OPENAI_BASE_URL", None)
    return pexpect.spawn(sys.executable, ["-m", "itcollect", "-C", str(ws), "session", "--annotator", "li.wei",
                                          "--base-url", url, "--model", "fake-model"],
                         env=env, encoding="utf-8", timeout=60, dimensions=(40, 110))


def test_terminal_session_chinese_request_accept_quit_resume(tmp_path, fake_openai):
    fake_openai.responder = CountingResponder()
    ws = make_workspace(tmp_path / "ws", 2, instruction_langs=("zh",))
    child = spawn(ws, fake_openai.base_url)
    try:
        child.expect("Source")
        child.expect(r"You \(translate\)")
        child.send("请把这句新闻翻译成中文，谢谢。\r")
        child.expect("source sentence is attached")
        child.expect("第零稿")                      # the answer streamed onto the screen
        child.expect(r"\[a\]ccept")
        child.send("a")
        child.expect(r"You \(polish\)")          # next turn: the plan's second type
        child.sendcontrol("d")                     # quit at the request prompt
        child.expect("Run the same command to continue")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0

    with Store(ws / "itcollect.db") as store:
        d = store.dialogue_for_spec(1)
        turns = store.get_turns(d["id"])
        assert [(t["role"], t["author"]) for t in turns] == [("user", "human"), ("assistant", "model")]
        assert turns[0]["content"].startswith("请把这句新闻翻译成中文，谢谢。")
        assert store.last_turn_action(turns[1]["id"]) == "accept"

    child = spawn(ws, fake_openai.base_url)
    try:
        child.expect("Resuming dialogue")
        child.expect(r"1 request\(s\) and 1 answer\(s\) kept")
        child.expect("请把这句新闻翻译成中文")        # the conversation so far is shown again
        child.expect(r"You \(polish\)")
        child.send("请润色一下，让它更通顺。\r")
        child.expect(r"\[a\]ccept")
        child.send("f")                            # finish accepts the answer and closes the dialogue
        child.expect("Dialogue finished")
        child.expect(r"You \(translate\)")         # the next spec is leased and shown
        child.sendcontrol("d")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0
    with Store(ws / "itcollect.db") as store:
        assert store.dialogue_for_spec(1)["status"] == "done"
        assert [t["role"] for t in store.get_turns(store.dialogue_for_spec(1)["id"])] == [
            "user", "assistant", "user", "assistant"]
        # quitting on the freshly opened spec 2 (nothing written) gave it back to the pool at once
        assert store.get_spec(2)["status"] == "pending"
        assert store.lease_of(2) is None and store.dialogue_for_spec(2) is None


def test_terminal_control_item_and_review_with_marks_and_a_fix(tmp_path, fake_openai):
    """The terminal says a control item after the decision and shows the real answer; the terminal
    review marks an error span, fixes the answer and accepts (stored as fixed)."""
    from .test_overlap import set_config

    fake_openai.responder = CountingResponder()
    ws = make_workspace(tmp_path / "ws", 1, instruction_langs=("zh",), types=("translate",))
    set_config(ws, control_share=1.0)
    child = spawn(ws, fake_openai.base_url)
    try:
        child.expect(r"You \(translate\)")
        child.send("请把这句新闻翻译成中文，谢谢。\r")
        child.expect(r"\[a\]ccept")
        child.send("a")
        child.expect("control item with a planted error")
        child.expect(r"\[a\]ccept")               # the model's real answer waits for a decision
        child.send("f")
        child.expect("Dialogue finished")
        child.sendcontrol("d")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    with Store(ws / "itcollect.db") as store:
        d = store.dialogue_for_spec(1)
        answer = [t for t in store.get_turns(d["id"]) if t["role"] == "assistant"][0]
        store.update_dialogue(d["id"], flagged=1)  # into the review queue
    env = dict(os.environ, PROMPT_TOOLKIT_NO_CPR="1", TERM="xterm", ITCOLLECT_PROGRESS="0")
    child = pexpect.spawn(sys.executable, ["-m", "itcollect", "-C", str(ws), "session", "--annotator", "rev",
                                           "--review"], env=env, encoding="utf-8", timeout=60, dimensions=(40, 110))
    span = answer["content"][:3]
    try:
        child.expect(r"\[m\]ark")
        child.send("m")
        child.expect("Answer number")
        child.send("1\r")
        child.expect("The wrong text")
        child.send(span + "\r")
        child.expect("Category:")
        child.send("1")                            # accuracy/mistranslation
        child.expect("Severity:")
        child.send("2")                            # major
        child.expect("Note")
        child.send("\r")
        child.expect("mark 1: major accuracy/mistranslation")
        child.expect(r"\[m\]ark")
        child.send("e")                            # e: your version (as the annotator's edit)
        child.expect("Answer number")
        child.send("1\r")
        child.expect("Your version")
        child.sendcontrol("u")                     # clear the answer shown for editing
        child.send("我的修改版本。\r")
        child.expect("Fixed by rev")
        child.expect(r"\[m\]ark")
        child.send("r")                            # r regenerates on the annotator's desk: no verdict here
        child.send("a")
        child.expect("Note")
        child.send("\r")
        child.expect(r"fixed \(u takes it back\)")
        child.expect("Nothing left to review")
        child.expect(r"\[u\]ndo the last verdict")
        child.send("u")                            # a mistaken verdict: taken back, the dialogue again
        child.expect("fixed taken back")
        child.expect(r"\[x\] reject")
        child.send("x")
        child.expect("Note")
        child.send("too literal\r")
        child.expect("Nothing left to review")
        child.send("q")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    with Store(ws / "itcollect.db") as store:
        d = store.dialogue_for_spec(1)
        assert d["review_status"] == "rejected"
        assert [(r["reviewer"], r.get("verdict"), r.get("undoes"), r.get("note")) for r in d["meta"]["reviews"]] == [
            ("rev", "fixed", None, None), ("rev", None, "fixed", None), ("rev", "rejected", None, "too literal")]
        marks = store.review_marks(d["id"])
        assert [(m["reviewer"], m["category"], m["severity"], m["span"]) for m in marks] == [
            ("rev", "accuracy/mistranslation", "major", span)]
        active = [t for t in store.get_turns(d["id"]) if t["role"] == "assistant"][0]
        assert (active["content"], active["annotator"], active["original_content"]) == (
            "我的修改版本。", "rev", answer["content"])
