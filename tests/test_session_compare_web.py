"""``session --web --compare A,B,C`` in a real browser (the real-browser suite's Chromium, see
tests/test_web_browser.py): the answers stream side by side, a key picks, "none good" and the
person's own answer, screenshots at a desktop's and a phone's size with nothing covered."""

from __future__ import annotations

from pathlib import Path

from itcollect.store import Store

from .test_session_compare import SystemResponder, _ws
from .test_web_browser import Browser, browsers, pytestmark, review_shots, servers  # noqa: F401
from .webutil import WebServer, add_account


def _uncovered(b: Browser, css: str) -> list[str]:
    """The elements matching ``css`` that are not the topmost at their centre once scrolled into view."""
    return b.js("""
        const out = [];
        for (const n of document.querySelectorAll(arguments[0])) {
          n.scrollIntoView({block: 'center'});
          const r = n.getBoundingClientRect();
          const top = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
          if (!top || !(top === n || n.contains(top))) out.push(n.outerHTML.slice(0, 80));
        }
        return out;""", css)


def _layout(b: Browser) -> list[dict]:
    return b.js("return [...document.querySelectorAll('#candidates .candidate')].map(n => {"
                "const r = n.getBoundingClientRect(); return {left: r.left, top: r.top, right: r.right,"
                " bottom: r.bottom}; });")


def test_web_compare_side_by_side_pick_by_key_none_good_and_own_answer(  # noqa: F811 (the fixtures)
        tmp_path: Path, fake_openai, servers, browsers):  # noqa: F811
    fake_openai.responder = SystemResponder()
    fake_openai.stream_chunk_delay = 0.05
    fake_openai.stream_chunk_chars = 4
    ws = _ws(tmp_path, fake_openai.base_url, n=1)
    srv = WebServer(ws, fake_openai.base_url, "--compare", "qwen72,ours,mini-x")
    servers.append(srv)
    b = browsers()
    b.d.set_window_size(1366, 900)
    b.d.get(add_account(ws, "alice"))
    b.wait(lambda: b.visible("#panel-ask"), what="the request box")
    # the page records how many answers were streaming into their own columns at once
    b.js("window.__live = 0; new MutationObserver(() => { window.__live = Math.max(window.__live,"
         " document.querySelectorAll('#candidates .candidate.live').length); })"
         ".observe(document.getElementById('candidates'), {childList: true, characterData: true, subtree: true});")
    b.type_request("Please translate this sentence into Chinese.")
    b.wait(lambda: len(b.js("return [...document.querySelectorAll('[data-pick]')]")) == 3, what="three pick buttons")
    assert b.js("return window.__live") == 3  # all three streamed side by side
    labels = b.js("return [...document.querySelectorAll('#candidates .candidate')].map(n => n.dataset.label)")
    assert labels == ["A", "B", "C"]
    texts = b.js("return [...document.querySelectorAll('#candidates .candidate .turn-text')].map(n => n.textContent)")
    assert len(set(texts)) == 3 and all("版" in t for t in texts)
    page = b.js("return document.body.innerText")
    assert "qwen" not in page and "our-sft" not in page and "mini-x" not in page  # blind
    assert not b.enabled("accept") and not b.enabled("finish")

    # side by side on a desktop, one under the other on a phone; nothing covered, nothing wider than the window
    desk = _layout(b)
    assert desk[0]["top"] == desk[1]["top"] == desk[2]["top"] and desk[0]["right"] <= desk[1]["left"]
    assert _uncovered(b, "[data-pick], #none-send, #rank-send") == []
    shots = review_shots(b, tmp_path / "compare")
    b.d.set_window_size(390, 844)
    phone = _layout(b)
    assert phone[0]["bottom"] <= phone[1]["top"] and phone[1]["bottom"] <= phone[2]["top"]
    assert _uncovered(b, "[data-pick], #none-send, #rank-send") == []
    assert b.js("return document.documentElement.scrollWidth") <= b.js("return window.innerWidth") + 1
    b.d.set_window_size(1366, 900)
    assert all(p.exists() and p.stat().st_size > 10_000 for p in shots)

    # key 2 picks B: it continues the dialogue
    b.js("document.activeElement && document.activeElement.blur()")
    b.key("2")
    b.wait(lambda: len(b.turns()) == 2, what="the picked answer in the conversation")
    assert b.turns()[1] == ("assistant", texts[1])
    b.wait(lambda: b.visible("#panel-ask"), what="the next request box")

    # none good (with a reason), then the person's own answer
    b.type_request("Could you make it sound more natural?")
    b.wait(lambda: len(b.js("return [...document.querySelectorAll('[data-pick]')]")) == 3, what="the second answers")
    b.js("document.getElementById('none-send').click()")
    b.wait(lambda: "reason" in (b.text("#notice") or ""), what="a reason asked for")
    b.d.find_element("id", "pick-reason").send_keys("every answer drops the date")
    b.js("document.getElementById('none-send').click()")
    b.wait(lambda: b.enabled("edit") and not b.visible("#panel-pick"), what="write the answer or regenerate")
    assert b.enabled("regenerate")
    b.js("document.activeElement && document.activeElement.blur()")
    b.key("e")
    b.wait(lambda: b.visible("#edit-text"), what="the answer box")
    from selenium.webdriver.common.keys import Keys

    box = b.d.find_element("id", "edit-text")
    box.send_keys("市议会周一通过了新桥的预算。")
    box.send_keys(Keys.CONTROL, Keys.ENTER)
    b.wait(lambda: len(b.turns()) == 4, what="the person's answer")
    assert b.turns()[3] == ("assistant", "市议会周一通过了新桥的预算。")

    with Store(ws / "itcollect.db") as store:
        did = store.dialogue_for_spec(1)["id"]
        c = store.comparisons_of(did)
        assert [(x["chooser"], x["decision"]) for x in c] == [("human", "pick"), ("human_edit", "none")]
        assert c[0]["winner"] == c[0]["labels"][1] and c[1]["reason"] == "every answer drops the date"
        assert all(x["annotator"] == "alice" for x in c)


def test_web_compare_reload_mid_stream_shows_every_column_and_pays_once(tmp_path: Path, fake_openai,  # noqa: F811
                                                                          servers, browsers):  # noqa: F811
    fake_openai.responder = SystemResponder()
    fake_openai.stream_chunk_delay = 0.15
    fake_openai.stream_chunk_chars = 3
    ws = _ws(tmp_path, fake_openai.base_url, n=1)
    srv = WebServer(ws, fake_openai.base_url, "--compare", "qwen72,ours")
    servers.append(srv)
    b = browsers()
    b.d.get(add_account(ws, "erin"))
    b.wait(lambda: b.visible("#panel-ask"), what="the request box")
    b.type_request("Please translate this sentence into Chinese.")
    b.wait(lambda: len(b.js("return [...document.querySelectorAll('#candidates .candidate.live')]")) == 2,
           what="both answers streaming")
    b.d.refresh()  # mid-stream: the server keeps asking; the page picks up what was said, then the rest
    b.wait(lambda: len(b.js("return [...document.querySelectorAll('[data-pick]')]")) == 2, what="the two answers")
    texts = b.js("return [...document.querySelectorAll('#candidates .candidate .turn-text')].map(n => n.textContent)")
    assert all(t.endswith("版。") for t in texts) and len(set(texts)) == 2
    assert fake_openai.paid_twice() == {} and len(fake_openai.requests) == 2
    b.key("1")
    b.wait(lambda: len(b.turns()) == 2, what="the pick in the conversation")
    assert b.turns()[1] == ("assistant", texts[0])
