"""The annotator's page in a real headless Chromium when the server goes away (issue 24 item 4) and
when someone who does not annotate opens it (item 7). Screenshots go to the test's tmp_path; the
paths are printed (pytest -s shows them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from itcollect.store import Store

from .test_session import CountingResponder, make_workspace
from .test_web_browser import _NO_BROWSER, Browser, browsers, serve, servers  # noqa: F401  (fixtures)
from .webutil import add_account

pytestmark = pytest.mark.skipif(_NO_BROWSER is not None, reason=_NO_BROWSER or "")


@pytest.fixture
def llm(fake_openai):
    fake_openai.responder = CountingResponder()
    return fake_openai


def shot(b: Browser, path: Path) -> None:
    b.d.save_screenshot(str(path))
    print(f"screenshot: {path}")


def test_a_flag_and_a_request_made_while_the_server_is_killed_are_saved_once_it_is_back(tmp_path, llm, servers,  # noqa: F811
                                                                                     browsers):  # noqa: F811
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


def test_a_lead_opening_the_annotate_page_is_sent_to_their_own_and_takes_no_lease(tmp_path, llm, servers, browsers):  # noqa: F811
    ws = make_workspace(tmp_path / "ws", 1, instruction_langs=("en",))
    srv = serve(servers, ws, llm.base_url)
    b = browsers()
    b.d.get(add_account(ws, "lee", "lead"))
    b.wait(lambda: b.d.current_url.endswith("/lead"), what="the lead's page")
    b.d.get(srv.url + "/")
    b.wait(lambda: b.d.current_url.endswith("/lead"), what="the lead sent back to their page")
    with Store(ws / "itcollect.db") as store:
        assert store.lease_list() == []


UNCOVERED = """
const n = document.querySelector(arguments[0]);
if (!n || n.closest('[hidden]')) return 'hidden';
if (arguments[1]) n.scrollIntoView({block: 'nearest'});
const r = n.getBoundingClientRect();
if (r.width === 0 || r.height === 0) return 'no size';
if (r.top < 0 || r.bottom > innerHeight || r.left < 0 || r.right > innerWidth) return 'off screen';
const x = r.left + r.width / 2, y = r.top + Math.min(r.height / 2, 12);
const hit = document.elementFromPoint(x, y);
return hit && (hit === n || n.contains(hit)) ? 'ok' : 'covered by ' + (hit ? hit.outerHTML.slice(0, 80) : 'nothing');
"""
PAGE_FITS = "return [document.documentElement.scrollWidth, innerWidth];"
SIZES = ((1366, 900), (390, 844))


def _viewport(b: Browser, w: int, h: int) -> None:
    """The page's viewport (innerWidth x innerHeight) at w x h, whatever the window's frame takes."""
    b.d.set_window_size(w, h)
    iw, ih = b.js("return [innerWidth, innerHeight]")
    b.d.set_window_size(w + (w - iw), h + (h - ih))


def test_no_control_or_message_is_covered_at_both_sizes(tmp_path, llm, servers, browsers):  # noqa: F811
    ws = make_workspace(tmp_path / "ws", 2, instruction_langs=("en",))
    llm.responder = lambda body: "The city council approved the budget for the new bridge on Monday."
    srv = serve(servers, ws, llm.base_url)
    b = browsers()
    b.d.get(add_account(ws, "alice"))
    b.wait(lambda: (b.text("#dlg") or "").startswith("dialogue "), what="the spec")
    for w, h in SIZES:
        _viewport(b, w, h)
        b.js("window.scrollTo(0, 0)")
        shot(b, tmp_path / f"annotate-{w}x{h}.png")
        width, inner = b.js(PAGE_FITS)
        assert width <= inner, (w, h, width, inner)
        # on load, without scrolling: the request box and its suggestion button
        for css in ("#request", "#use-suggestion"):
            assert b.js(UNCOVERED, css, False) == "ok", (w, h, css, b.js(UNCOVERED, css, False))
        assert b.js(UNCOVERED, "#actions button[data-action='skip']", True) == "ok", (w, h)
    # an answer with warnings: the warning and the "accept anyway because..." box are not under the bar
    _viewport(b, *SIZES[0])
    b.type_request("Please translate this sentence into Chinese.")
    b.wait_decision()
    b.key("a")
    b.wait(lambda: b.visible("#reason-text"), what="the reason asked for")
    for w, h in SIZES:
        _viewport(b, w, h)
        shot(b, tmp_path / f"reason-{w}x{h}.png")
        for css in ("#conversation .turn.pending .warnings", "#reason-text", "#panel-reason button[type=submit]"):
            assert b.js(UNCOVERED, css, True) == "ok", (w, h, css, b.js(UNCOVERED, css, True))

    lead = browsers()
    lead.d.get(add_account(ws, "lee", "lead"))
    lead.wait(lambda: lead.visible("#board"), what="the lead's page")
    for w, h in SIZES:
        _viewport(lead, w, h)
        shot(lead, tmp_path / f"lead-{w}x{h}.png")
        width, inner = lead.js(PAGE_FITS)
        assert width <= inner, (w, h, width, inner)
        right = lead.js("const t = document.getElementById('quality'); const c = t.closest('.card');"
                        " return [c.getBoundingClientRect().right, innerWidth];")
        assert right[0] <= right[1], (w, h, right)
    assert srv.proc.poll() is None
