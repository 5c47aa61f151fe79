"""The annotator's page in a real headless Chromium when the server goes away (issue 24 item 4) and
when someone who does not annotate opens it (item 7). Screenshots go to the test's tmp_path; the
paths are printed (pytest -s shows them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from itcollect.store import Store

from .test_session import CountingResponder, make_workspace
from .test_web_browser import _NO_BROWSER, Browser
from .webutil import WebServer, add_account

pytestmark = pytest.mark.skipif(_NO_BROWSER is not None, reason=_NO_BROWSER or "")


@pytest.fixture
def browsers():
    opened: list[Browser] = []

    def new() -> Browser:
        b = Browser()
        opened.append(b)
        return b

    yield new
    for b in opened:
        b.quit()


@pytest.fixture
def servers():
    started: list[WebServer] = []
    yield started
    for s in started:
        if s.proc.poll() is None:
            s.proc.kill()
            s.proc.wait(10)
        s._close()


@pytest.fixture
def llm(fake_openai):
    fake_openai.responder = CountingResponder()
    return fake_openai


def serve(servers: list, ws: Path, url: str, *extra: str) -> WebServer:
    s = WebServer(ws, url, *extra)
    servers.append(s)
    return s


def shot(b: Browser, path: Path) -> None:
    b.d.save_screenshot(str(path))
    print(f"screenshot: {path}")


def test_a_flag_and_a_request_made_while_the_server_is_killed_are_saved_once_it_is_back(tmp_path, llm, servers,
                                                                                     browsers):
    ws = make_workspace(tmp_path / "ws", 2, instruction_langs=("en",))
    srv = serve(servers, ws, llm.base_url)
    b = browsers()
    b.d.get(add_account(ws, "alice"))
    b.wait(lambda: (b.text("#dlg") or "").startswith("dialogue "), what="the first spec")
    dialogue = b.text("#dlg")
    port = srv.port

    srv.kill9()
    b.js("document.activeElement.blur()")
    b.key("!")
    b.wait(lambda: b.visible("#panel-flag"), what="the flag form")
    b.d.find_element("id", "flag-note").send_keys("the number 802 looks wrong")
    b.js("document.querySelector('#panel-flag button[type=submit]').click()")
    b.wait(lambda: "Not saved yet" in (b.text("#notice") or ""), what="the page saying it was not saved")
    note = b.text("#notice")
    assert "flag «the number 802 looks wrong»" in note and "Nothing is lost" not in note
    # a request typed during the outage waits behind the flag, in order
    b.type_request("Please translate this sentence into Chinese.")
    b.wait(lambda: "2 unsent action(s)" in (b.text("#notice") or ""), what="the request kept too")
    shot(b, tmp_path / "outage.png")
    with Store(ws / "itcollect.db") as store:
        assert not [e for e in store.session_events(annotator="alice") if e["action"] == "flag"]

    # the server comes back on the same workspace and port: the page sends both, each once
    serve(servers, ws, llm.base_url, "--port", str(port))
    b.wait(lambda: "Saved now that the server is back" in (b.text("#notice") or ""), timeout=60,
           what="the page saying it was saved")
    shot(b, tmp_path / "back.png")
    assert b.text("#dlg") == dialogue
    b.wait(lambda: b.turns() and b.turns()[0][0] == "user", what="the request in the conversation")
    with Store(ws / "itcollect.db") as store:
        events = store.session_events(annotator="alice")
        assert [e["action"] for e in events].count("flag") == 1
        flagged = [x for x in store.iter_dialogues() if x["annotator"] == "alice"]
        assert flagged and flagged[0]["flagged"] and flagged[0]["meta"]["flags"][0]["note"] == "the number 802 looks wrong"
        turns = store.get_turns(flagged[0]["id"])
        assert turns[0]["role"] == "user" and turns[0]["content"].startswith("Please translate this sentence")
    assert b.js("return Object.keys(localStorage).filter(k => k.startsWith('itcollect-outbox')).length") == 0


def test_a_lead_opening_the_annotate_page_is_sent_to_their_own_and_takes_no_lease(tmp_path, llm, servers, browsers):
    ws = make_workspace(tmp_path / "ws", 1, instruction_langs=("en",))
    srv = serve(servers, ws, llm.base_url)
    b = browsers()
    b.d.get(add_account(ws, "lee", "lead"))
    b.wait(lambda: b.d.current_url.endswith("/lead"), what="the lead's page")
    b.d.get(srv.url + "/")
    b.wait(lambda: b.d.current_url.endswith("/lead"), what="the lead sent back to their page")
    with Store(ws / "itcollect.db") as store:
        assert store.lease_list() == []
