"""``itcollect session --web`` in a real browser: Debian's Chromium driven by Selenium through
Debian's chromedriver (nothing is downloaded: the driver path is given, and Selenium Manager is
told to stay offline). The server is the real CLI in a subprocess, the LLM the loopback fake
server answering slowly enough that the answer is seen arriving piece by piece.

The tests skip, with a reason that says so, only when no browser can be had; ``.ci/run``
installs ``chromium`` and ``chromium-driver`` first. Screenshots of the annotator page and the
lead's dashboard go to each test's tmp_path.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from itcollect.store import Store, source_id_for
from itcollect.workspace import init_workspace

from .test_session import SOURCES, CountingResponder, make_workspace
from .webutil import Client, WebServer, add_account

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"

try:
    import selenium  # noqa: F401

    _SELENIUM = True
except ImportError:  # pragma: no cover - the test extra has it
    _SELENIUM = False

_NO_BROWSER = None
if not _SELENIUM:
    _NO_BROWSER = "selenium is not installed (pip install -e '.[test]')"
elif not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
    _NO_BROWSER = ("NO BROWSER: the real-browser tests of session --web did NOT run: install Debian's chromium "
                   "and chromium-driver (apt-get install -y chromium chromium-driver; .ci/run does)")

pytestmark = pytest.mark.skipif(_NO_BROWSER is not None, reason=_NO_BROWSER or "")


class Browser:
    """One Chromium with its own profile (a browser context of its own: cookies, storage)."""

    def __init__(self) -> None:
        os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must never try to download anything
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        self.profile = tempfile.mkdtemp(prefix="itc-chromium-")
        opts = webdriver.ChromeOptions()
        opts.binary_location = CHROMIUM
        for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--window-size=1400,1000", f"--user-data-dir={self.profile}"):
            opts.add_argument(arg)
        self.d = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
        self.d.set_page_load_timeout(30)

    def quit(self) -> None:
        try:
            self.d.quit()
        finally:
            shutil.rmtree(self.profile, ignore_errors=True)

    # -- reading the page ------------------------------------------------------------------------
    def js(self, script: str, *args):
        return self.d.execute_script(script, *args)

    def text(self, css: str) -> str:
        return self.js("const n = document.querySelector(arguments[0]); return n ? n.textContent : null;", css)

    def visible(self, css: str) -> bool:
        return bool(self.js("const n = document.querySelector(arguments[0]); return !!n && !n.closest('[hidden]');",
                            css))

    def enabled(self, action: str) -> bool:
        return bool(self.js("const b = document.querySelector(`#actions button[data-action='${arguments[0]}']`);"
                            " return !!b && !b.hidden && !b.disabled;", action))

    def turns(self) -> list[tuple[str, str]]:
        return [tuple(x) for x in self.js(
            "return [...document.querySelectorAll('#conversation .turn')].map(n => "
            "[n.dataset.role, n.querySelector('.turn-text').textContent]);")]

    def wait(self, cond, timeout: float = 30, what: str = "") -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                if cond():
                    return
            except Exception:  # noqa: BLE001 - the page is changing under us: look again
                pass
            time.sleep(0.03)
        raise AssertionError(f"timed out waiting for {what or cond}; notice: {self.text('#notice')!r}")

    # -- acting ---------------------------------------------------------------------------------
    def key(self, keys: str) -> None:
        """Keys pressed with the focus where it is (as a person would)."""
        from selenium.webdriver.common.action_chains import ActionChains

        ActionChains(self.d).send_keys(keys).perform()

    def type_request(self, text: str) -> None:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.common.keys import Keys

        box = self.d.find_element(By.ID, "request")
        box.clear()
        box.send_keys(text)
        box.send_keys(Keys.ENTER)

    def wait_decision(self) -> None:
        self.wait(lambda: self.enabled("accept"), what="an answer to decide on")

    def shot(self, path: Path) -> Path:
        self.d.save_screenshot(str(path))
        return path


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
def servers(web_servers):
    return web_servers


@pytest.fixture
def llm(fake_openai):
    fake_openai.responder = CountingResponder()
    fake_openai.stream_chunk_delay = 0.06
    return fake_openai


def serve(servers: list, ws: Path, url: str, *extra: str) -> WebServer:
    s = WebServer(ws, url, *extra)
    servers.append(s)
    return s


def test_annotator_page_request_stream_accept_edit_regenerate_undo_finish_and_keys(tmp_path, llm, servers,
                                                                                     browsers):
    ws = make_workspace(tmp_path / "ws", 2, instruction_langs=("en",))
    srv = serve(servers, ws, llm.base_url)
    b = browsers()
    b.d.get(add_account(ws, "alice"))
    b.wait(lambda: b.text("#source") == SOURCES[0], what="the first spec")
    assert b.d.current_url == f"{srv.url}/"
    assert "alice" in b.text("#who") and "waiting" in b.text("#progress")
    assert b.text("#pair") == "en → zh" and "English" in b.text("#ilang")
    assert [li.strip() for li in b.js("return [...document.querySelectorAll('#plan li')].map(n => n.textContent)")] \
        == ["translate", "polish"]
    assert b.js("return document.getElementById('request').placeholder").startswith("e.g. Translate")
    # the guidelines beside the work, opened at the planned type, in both languages
    b.wait(lambda: b.text("#guide-body h3") == "translate", what="the guide's translate section")
    b.js("document.querySelector(\".guide .tabs button[data-lang='zh']\").click()")
    b.wait(lambda: "第一轮" in b.text("#guide-body"), what="the Chinese guide")

    # keys do not fire while typing: the request box takes them as text
    assert b.js("return document.activeElement.id") == "request"
    b.key("afs!gqeru")
    assert b.js("return document.getElementById('request').value") == "afs!gqeru"
    assert not b.visible("#panel-skip") and not b.visible("#panel-flag") and b.turns() == []

    # a request; the answer streams in piece by piece (the page itself records what it showed)
    b.js("window.__seen = []; new MutationObserver(() => window.__seen.push("
         "document.getElementById('live-text').textContent)).observe(document.getElementById('live-text'),"
         " {childList: true, characterData: true, subtree: true});")
    b.type_request("Please translate this sentence into Chinese.")
    b.wait_decision()
    seen = [t for t in b.js("return window.__seen") if t]
    final = b.turns()[-1][1]
    assert b.turns()[0] == ("user", f'Please translate this sentence into Chinese.\n\n"{SOURCES[0]}"')
    assert any(0 < len(s) < len(final) and final.startswith(s) for s in seen), (seen, final)

    b.key("a")  # accept, by key (nothing has the focus but the page)
    b.wait(lambda: b.js("return document.activeElement.id") == "request", what="the next request box")
    assert b.js("return document.querySelector('#plan li.current').textContent").strip() == "polish"
    b.type_request("Could you make it sound more natural?")
    b.wait_decision()
    first = b.turns()[-1][1]
    b.key("r")  # regenerate
    b.wait(lambda: b.enabled("accept") and b.turns()[-1][1] != first, what="a regenerated answer")
    b.key("e")  # edit
    b.wait(lambda: b.visible("#edit-text"), what="the edit box")
    assert b.js("return document.getElementById('edit-text').value") == b.turns()[-1][1]
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    edit = b.d.find_element(By.ID, "edit-text")
    edit.clear()
    edit.send_keys("市议会周一通过了新桥的预算。")
    edit.send_keys(Keys.CONTROL, Keys.ENTER)
    b.wait(lambda: b.turns()[-1] == ("assistant", "市议会周一通过了新桥的预算。"), what="the edited answer")
    assert "edited by you" in b.js("return [...document.querySelectorAll('#conversation .turn-head')].pop()"
                                   ".textContent")
    b.key(Keys.ESCAPE)  # leave the request box; then g shows the guide for the next type and logs it
    b.key("g")
    b.wait(lambda: b.text("#guide-body h3") == "follow_up", what="the guide at the next type")
    b.shot(tmp_path / "annotator.png")

    # one request beyond the plan, then undone
    b.d.find_element(By.ID, "request").click()
    b.type_request("What could this mean for commuters?")
    b.wait_decision()
    assert len(b.turns()) == 6
    b.key("u")
    b.wait(lambda: len(b.turns()) == 4, what="the undo")
    # finish by key: the next spec comes
    b.key(Keys.ESCAPE)
    b.key("f")
    b.wait(lambda: b.text("#source") == SOURCES[1], what="the next spec")
    assert "Dialogue finished." in b.text("#notice")
    b.wait(lambda: "1 done" in b.text("#progress"), what="the progress line")
    b.shot(tmp_path / "annotator-next.png")

    with Store(ws / "itcollect.db") as store:
        d1 = store.dialogue_for_spec(1)
        assert d1["status"] == "done" and d1["annotator"] == "alice"
        turns = sorted(store.get_turns(d1["id"], include_inactive=True), key=lambda t: t["id"])
        assert [(t["role"], t["state"], t["author"]) for t in turns] == [
            ("user", "active", "human"), ("assistant", "active", "model"), ("user", "active", "human"),
            ("assistant", "rejected", "model"), ("assistant", "active", "human"), ("user", "undone", "human"),
            ("assistant", "undone", "model")]
        assert turns[1]["content"] == final and turns[4]["content"] == "市议会周一通过了新桥的预算。"
        actions = [e["action"] for e in store.session_events(annotator="alice")]
        assert actions.count("guidelines") == 1 and "regenerate" in actions and "undo" in actions
    assert llm.paid_twice() == {}


def test_reload_mid_answer_continues_at_that_turn(tmp_path, llm, servers, browsers):
    ws = make_workspace(tmp_path / "ws", 1, instruction_langs=("en",))
    serve(servers, ws, llm.base_url)
    llm.stream_chunk_delay = 0.6  # a slow answer: it is still arriving when the page reloads
    b = browsers()
    b.d.get(add_account(ws, "alice"))
    b.wait(lambda: b.text("#source") == SOURCES[0])
    b.type_request("Please translate this sentence into Chinese.")
    b.wait(lambda: b.visible("#live") and len(b.text("#live-text") or "") > 0, what="the answer starting")
    assert not b.enabled("accept")
    b.d.refresh()
    b.wait(lambda: "Resuming dialogue" in (b.text("#notice") or ""), what="the resume message")
    assert "1 request(s) and 0 answer(s) kept" in b.text("#notice")
    b.wait(lambda: b.visible("#live") or b.enabled("accept"), what="the answer going on")
    b.wait_decision()
    shown = b.turns()[-1][1]
    with Store(ws / "itcollect.db") as store:
        turns = store.get_turns(store.dialogue_for_spec(1)["id"], include_inactive=True)
        assert [(t["role"], t["state"]) for t in turns] == [("user", "active"), ("assistant", "active")]
        assert turns[1]["content"] == shown
    assert llm.paid_twice() == {} and sum(llm.answered.values()) == 1  # the answer was not paid twice
    b.key("a")
    b.wait(lambda: b.js("return document.activeElement.id") == "request")


def test_an_answer_with_warnings_is_accepted_with_a_reason_asked_for_first(tmp_path, llm, servers, browsers):
    """The page asks for the reason before accepting because the engine's view says the answer
    needs one (``accept_needs_reason``), not from a rule of its own; the reason is stored."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    ws = make_workspace(tmp_path / "ws", 1, instruction_langs=("en",))
    llm.responder = lambda body: "The city council approved the budget for the new bridge on Monday."
    serve(servers, ws, llm.base_url)
    b = browsers()
    b.d.get(add_account(ws, "alice"))
    b.wait(lambda: b.text("#source") == SOURCES[0], what="the spec")
    b.type_request("Please translate this sentence into Chinese.")
    b.wait_decision()
    # each warning is a sentence that says what to do, its code kept beside it (data-code)
    assert "write it in Chinese" in b.text("#conversation .turn-model .warnings")
    assert b.js("return document.querySelector('#conversation .turn-model .warnings li').dataset.code") \
        == "wrong_language"
    b.key("a")
    b.wait(lambda: b.visible("#reason-text"), what="the reason asked for")
    box = b.d.find_element(By.ID, "reason-text")
    box.send_keys("a name that stays in English")
    box.send_keys(Keys.ENTER)
    b.wait(lambda: b.js("return document.activeElement.id") == "request", what="the next request box")
    with Store(ws / "itcollect.db") as store:
        turns = store.get_turns(store.dialogue_for_spec(1)["id"])
        assert turns[-1]["params"]["override"] == "a name that stays in English"


def test_two_annotators_in_two_browsers_never_get_the_same_spec(tmp_path, llm, servers, browsers):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    ws = make_workspace(tmp_path / "ws", 4, instruction_langs=("en",))
    serve(servers, ws, llm.base_url)
    llm.stream_chunk_delay = 0.0
    a, b = browsers(), browsers()
    a.d.get(add_account(ws, "alice"))
    b.d.get(add_account(ws, "bob"))
    seen: dict[str, list[str]] = {"alice": [], "bob": []}
    for name, br in (("alice", a), ("bob", b)):
        br.wait(lambda br=br: (br.text("#dlg") or "").startswith("dialogue "), what=f"{name}'s spec")
        seen[name].append(br.text("#dlg").split("spec ")[1])
    for br in (a, b):
        br.type_request("Please translate this sentence into Chinese.")
    for br in (a, b):
        br.wait_decision()
        br.key("f")  # 1 of 2 planned turns: the page asks for a reason first
        br.wait(lambda br=br: br.visible("#reason-text"), what="the early finish's reason")
        br.d.find_element(By.ID, "reason-text").send_keys("one turn is enough here", Keys.ENTER)
    for name, br in (("alice", a), ("bob", b)):
        br.wait(lambda br=br, name=name: br.text("#dlg").split("spec ")[1] not in seen[name], what="the next spec")
        seen[name].append(br.text("#dlg").split("spec ")[1])
    specs = seen["alice"] + seen["bob"]
    assert sorted(specs) == ["1", "2", "3", "4"], seen
    with Store(ws / "itcollect.db") as store:
        done = {d["spec_id"]: d["annotator"] for d in store.iter_dialogues(statuses=["done"])}
        assert done == {int(seen["alice"][0]): "alice", int(seen["bob"][0]): "bob"}


def test_reviewer_accepts_and_rejects_and_the_lead_sees_the_team(tmp_path, llm, servers, browsers):
    ws = make_workspace(tmp_path / "ws", 3, instruction_langs=("zh",))
    srv = serve(servers, ws, llm.base_url)
    llm.stream_chunk_delay = 0.0
    ann = Client(srv.url, add_account(ws, "alice"))
    ann.state()
    ann.act("/api/request", {"text": "请把这句话译成中文。"})
    ann.answer()
    ann.act("/api/regenerate")
    ann.answer()
    ann.act("/api/edit", {"text": "我的译文。"})
    ann.act("/api/finish", {"reason": "one turn is enough here"})
    ann.state()
    ann.act("/api/request", {"text": "请把这句话译成中文。"})
    ann.answer()
    ann.act("/api/flag", {"note": "数字要核对"})
    ann.act("/api/finish", {"reason": "one turn is enough here"})
    ann.state()  # alice holds the third spec

    b = browsers()
    b.d.get(add_account(ws, "bob", "reviewer"))
    b.wait(lambda: b.visible("#item") and "by alice" in b.text("#by"), what="the review item")
    assert b.d.current_url.endswith("/review")
    states = b.js("return [...document.querySelectorAll('#turns .turn')].map(n => n.dataset.state)")
    assert "rejected" in states  # the rejected answer is shown
    assert "the model said" in b.text("#turns")
    assert b.text("#remaining") == "2 to review"
    # an error span: select two characters of the edited answer, press m, choose, save
    b.js("const t = [...document.querySelectorAll('#turns .turn[data-role=assistant]:not(.inactive) .turn-text')][0];"
         " const r = document.createRange(); r.setStart(t.firstChild, 1); r.setEnd(t.firstChild, 3);"
         " const s = window.getSelection(); s.removeAllRanges(); s.addRange(r);")
    b.key("m")
    b.wait(lambda: b.visible("#markform"), what="the mark form")
    assert b.text("#mark-span") == "的译"
    b.js("document.getElementById('mark-category').value = 'fluency/grammar';"
         " document.getElementById('mark-severity').value = 'major';")
    b.d.find_element("id", "mark-save").click()
    b.wait(lambda: b.js("return document.querySelectorAll('#turns .mark-major').length") == 2, what="the mark")
    assert "major · fluency/grammar" in b.text("#turns .marks")
    b.shot(tmp_path / "review.png")
    b.key("a")
    b.wait(lambda: "FLAGGED" in (b.text("#by") or ""), what="the flagged dialogue")
    assert "数字要核对" in b.text("#flags")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    note = b.d.find_element(By.ID, "note")
    note.send_keys("the number is wrong")  # 'r' and 'n' typed here do not fire
    assert b.visible("#item") and "FLAGGED" in b.text("#by")
    note.send_keys(Keys.ESCAPE)
    b.key("r")  # r regenerates on the annotator's page: here it is no verdict (issue 24 item 1)
    b.wait(lambda: "x rejects" in (b.text("#notice") or ""), what="the note that r is no verdict")
    assert b.visible("#item") and "FLAGGED" in b.text("#by")
    b.key("x")
    b.wait(lambda: b.visible("#idle"), what="the empty queue")
    assert "Press u" in b.text("#notice")
    b.wait(lambda: b.visible("#recent"), what="the latest verdicts")
    assert [li.split(" dialogue")[0] for li in b.js(
        "return [...document.querySelectorAll('#recent-list li')].map(n => n.textContent)")] == ["rejected", "accepted"]
    with Store(ws / "itcollect.db") as store:
        assert store.dialogue_for_spec(2)["review_status"] == "rejected"
    b.key("u")  # the mistaken verdict is taken back: the dialogue is back to decide again
    b.wait(lambda: b.visible("#item") and "FLAGGED" in (b.text("#by") or ""), what="the dialogue back")
    assert "taken back" in b.text("#notice")
    review_shots(b, tmp_path / "review-undo")
    b.key("a")
    b.wait(lambda: b.visible("#idle"), what="the empty queue again")
    # a verdict further back: "take back / change" beside it in the list
    b.d.find_element(By.CSS_SELECTOR, "#recent-list li:nth-child(2) [data-undo]").click()
    b.wait(lambda: b.visible("#item") and "FLAGGED" not in (b.text("#by") or ""), what="the first dialogue back")
    b.d.find_element(By.ID, "note").send_keys("fine")
    b.d.find_element(By.CSS_SELECTOR, "[data-verdict=reject]").click()
    b.wait(lambda: b.visible("#idle"), what="the empty queue at last")
    with Store(ws / "itcollect.db") as store:
        assert store.dialogue_for_spec(1)["review_status"] == "rejected"
        d2 = store.dialogue_for_spec(2)
        assert d2["review_status"] == "accepted"
        assert [(r["reviewer"], r.get("verdict"), r.get("undoes"), r.get("note")) for r in d2["meta"]["reviews"]] == [
            ("bob", "rejected", None, "the number is wrong"), ("bob", None, "rejected", None),
            ("bob", "accepted", None, None)]
    # the page keeps no list of review orders: an unknown one is the server's 400, shown as it says
    b.d.get(srv.url + "/review?order=nonsense")
    b.wait(lambda: "review order 'nonsense'" in (b.text("#notice") or ""), what="the server's order error")
    assert "default, judge, overlap" in b.text("#notice")

    lead = browsers()
    lead.d.get(add_account(ws, "lee", "lead"))
    lead.wait(lambda: lead.visible("#board") and "alice" in (lead.text("#people") or ""), what="the dashboard")
    assert lead.d.current_url.endswith("/lead")
    row = lead.js("return [...document.querySelectorAll('#people tbody tr')].map(r => "
                  "[...r.cells].map(c => c.textContent))")
    alice = next(r for r in row if r[0] == "alice")
    assert alice[3:7] == ["2", "0", "1", "2"] and alice[10] == "spec 3"
    quality = lead.js("return [...document.querySelectorAll('#quality tbody tr')].map(r => "
                      "[...r.cells].map(c => c.textContent))")
    assert [q[:3] for q in quality] == [["alice", "2", "2"]]
    pool = lead.js("return [...document.querySelectorAll('#pool tbody tr')].map(r => "
                   "[...r.cells].map(c => c.textContent))")
    assert pool[0][:9] == ["en-zh", "zh", "3", "0", "1", "0", "2", "0", "0"]
    assert pool[0][9].strip() == "67% done"   # done against planned
    lead.shot(tmp_path / "lead.png")


def review_shots(b: Browser, stem: Path, *, fits: bool = True) -> list[Path]:
    """Screenshots at a desktop's 1366x900 and a phone's 390x844 (paths printed in the test's output),
    and (``fits``) the page no wider than the window; the window is left at its size before."""
    size = b.d.get_window_size()
    paths = []
    for w, h in ((1366, 900), (390, 844)):
        b.d.set_window_size(w, h)
        paths.append(b.shot(stem.with_name(f"{stem.name}-{w}x{h}.png")))
        if fits:
            assert b.js("return document.documentElement.scrollWidth") <= b.js("return window.innerWidth") + 1, (w, h)
    b.d.set_window_size(size["width"], size["height"])
    print("screenshots:", *paths)
    return paths


def test_lead_progress_counts_only_done_and_says_what_to_replan(tmp_path, llm, servers, browsers):
    """Issue 24 item 2: zh-fr-like case: 3 planned, 0 done, 2 skipped shows 0 %, the skips apart,
    and "2 to re-plan"."""
    ws = make_workspace(tmp_path / "ws", 3, instruction_langs=("en",))
    srv = serve(servers, ws, llm.base_url)
    ann = Client(srv.url, add_account(ws, "alice"))
    for _ in range(2):
        ann.state()
        ann.act("/api/skip", {"reason": "bad_source"})
    lead = browsers()
    lead.d.get(add_account(ws, "lee", "lead"))
    lead.wait(lambda: lead.visible("#board") and lead.text("#pool tbody"), what="the pool")
    row = lead.js("return [...document.querySelector('#pool tbody tr').cells].map(c => c.textContent)")
    assert row[:9] == ["en-zh", "en", "3", "1", "0", "0", "0", "2", "0"]
    assert row[9].strip() == "0% done · short of the plan: 2 to re-plan"
    widths = lead.js("return [...document.querySelectorAll('#pool .bar span')].map(s => s.style.width)")
    assert widths[0] == "0%" and widths[1].startswith("66.6")   # done, skipped (grey) apart
    review_shots(lead, tmp_path / "lead-short", fits=False)  # the lead page's phone width: issue 24 item 5


def test_a_control_item_is_said_after_the_decision_and_the_real_answer_comes_back(tmp_path, llm, servers, browsers):
    ws = make_workspace(tmp_path / "ws", 1, types=("translate",), instruction_langs=("en",))
    cfg = ws / "itcollect.toml"
    cfg.write_text(cfg.read_text(encoding="utf-8").replace("control_share = 0.0", "control_share = 1.0"),
                   encoding="utf-8")
    serve(servers, ws, llm.base_url)
    b = browsers()
    b.d.get(add_account(ws, "alice"))
    b.wait(lambda: b.visible("#request"), what="the request box")
    b.type_request("Please translate this sentence into Chinese.")
    b.wait_decision()
    planted = b.turns()[-1][1]
    b.key("a")
    b.wait(lambda: "control item" in (b.text("#notice") or ""), what="the control note")
    assert b.js("return document.getElementById('notice').className") == "notice notice-control"
    b.wait_decision()
    real = b.turns()[-1][1]
    assert real != planted and [r for r, _ in b.turns()] == ["user", "assistant"]
    b.key("a")
    b.wait(lambda: b.enabled("finish"), what="finish")
    with Store(ws / "itcollect.db") as store:
        d = store.dialogue_for_spec(1)
        ctl = [t["params"]["control"] for t in store.get_turns(d["id"], include_inactive=True)
               if t["params"].get("control")]
        assert [(c["outcome"], c["planted"], c["real"]) for c in ctl] == [("miss", planted, real)]


def test_html_in_sources_and_answers_is_shown_as_text(tmp_path, llm, servers, browsers):
    root = tmp_path / "ws"
    ws = init_workspace(root)
    evil = ('Officials said <img src=x onerror="document.title=\'pwned\'"> and <script>document.title="owned"'
            '</script> were found.')
    sid = source_id_for(evil)
    ws.store.add_source(source_id=sid, text=evil, lang="en", origin_file="news.txt", origin_line=1)
    ws.store.add_specs([{"seed": 0, "seq": 0, "source_id": sid, "src_lang": "en", "tgt_lang": "zh",
                         "instruction_lang": "en", "n_turns": 1, "interaction_types": ["translate"], "params": {}}])
    ws.close()
    llm.responder = lambda body: '官员说<b>发现</b>了<img src=y onerror="document.title=\'answer\'">。'
    serve(servers, root, llm.base_url)
    b = browsers()
    b.d.get(add_account(root, "alice"))
    b.wait(lambda: b.text("#source") == evil, what="the source, as text")
    b.type_request("Translate <u>this</u> into Chinese.")
    b.wait_decision()
    assert b.turns()[-1][1] == '官员说<b>发现</b>了<img src=y onerror="document.title=\'answer\'">。'
    assert b.turns()[0][1].startswith("Translate <u>this</u> into Chinese.")
    assert b.js("return document.querySelectorAll('main img, main script, main b, main u').length") == 0
    assert b.d.title == "itcollect · annotate"


def test_the_judges_error_spans_are_suggested_marks_confirmed_changed_or_dismissed(tmp_path, llm, servers,
                                                                                   browsers):
    """Issue 24 item 11 on the page: where the judge scored an answer, its error spans are framed
    as suggestions; c confirms (a mark as the judge said), k changes (the mark form with the judge's
    choice filled in), d dismisses; each stored."""
    from itcollect.judge import JudgeOptions, run_judge

    from .judging import imported, make_ws, variant_answer, variant_responder

    ws = make_ws(tmp_path)
    llm.responder = variant_responder
    did = imported(ws, tmp_path, [variant_answer("wellformed", 0)])[0]
    ws.store.update_dialogue(did, flagged=1)  # in the default queue too
    summary = run_judge(ws, JudgeOptions(base_url=llm.base_url, model="judge-model"), show_progress=False)
    assert summary.judged == 1
    root = ws.root
    ws.close()
    srv = serve(servers, root, llm.base_url)
    b = browsers()
    b.d.get(add_account(root, "rev", "reviewer"))
    b.wait(lambda: b.visible("#item") and b.js("return document.querySelectorAll('.suggestions li').length") == 2,
           what="the judge's suggestions")
    assert b.js("return [...document.querySelectorAll('.turn-text .suggested')].map(n => n.textContent)") == [
        "budget", "lundi"]
    review_shots(b, tmp_path / "suggestions")
    b.key("c")
    b.wait(lambda: b.js("return document.querySelector('.suggestions li').dataset.decision") == "confirmed",
           what="the confirmed suggestion")
    assert "major · accuracy/mistranslation" in b.text("#turns .marks")
    b.key("k")
    b.wait(lambda: b.visible("#markform"), what="the mark form for a change")
    assert b.text("#mark-span") == "lundi"
    assert b.js("return document.getElementById('mark-category').value") == "fluency/spelling"
    b.js("document.getElementById('mark-category').value = 'fluency/grammar';")
    b.d.find_element("id", "mark-save").click()
    b.wait(lambda: b.js("return [...document.querySelectorAll('.suggestions li')].map(n => n.dataset.decision)")
           == ["confirmed", "changed"], what="the changed suggestion")
    b.key("d")
    b.wait(lambda: "No open suggestion" in (b.text("#notice") or ""), what="nothing left to decide")
    with Store(root / "itcollect.db") as store:
        assert [(s["category"], s["decision"], s["reviewer"]) for s in store.review_suggestions(did)] == [
            ("accuracy/mistranslation", "confirmed", "rev"), ("fluency/spelling", "changed", "rev")]
        assert [(m["category"], m["severity"], m["span"]) for m in store.review_marks(did)] == [
            ("accuracy/mistranslation", "major", "budget"), ("fluency/grammar", "minor", "lundi")]
    assert srv.url


def test_lead_drills_down_filters_and_downloads_the_export(tmp_path, llm, servers, browsers):
    """Issue 24 item 12 on the page: a name opens that person's dialogues (status, review, judge
    score), the pair and date filters narrow them, and the export downloads as a zip."""
    import datetime

    from .conftest import run_cli

    ws = make_workspace(tmp_path / "ws", 2, instruction_langs=("zh",))
    srv = serve(servers, ws, llm.base_url)
    llm.stream_chunk_delay = 0.0
    ann = Client(srv.url, add_account(ws, "alice"))
    ann.state()
    ann.act("/api/request", {"text": "请把这句话译成中文。"})
    ann.answer()
    ann.act("/api/finish", {"reason": "one turn is enough here"})
    ann.state()
    ann.act("/api/skip", {"reason": "not_news"})
    assert run_cli("-C", str(ws), "filter").returncode == 0
    lead = browsers()
    lead.d.get(add_account(ws, "lee", "lead"))
    lead.wait(lambda: lead.visible("#board") and lead.js("return !!document.querySelector('[data-drill=alice]')"),
              what="the dashboard")
    lead.d.find_element("css selector", "[data-drill=alice]").click()
    lead.wait(lambda: lead.visible("#drill") and lead.text("#drill-count") == "2 dialogues", what="the drill-down")
    rows = lead.js("return [...document.querySelectorAll('#drill-table tbody tr')].map(r => "
                   "[...r.cells].map(c => c.textContent))")
    assert sorted((r[1], r[2], r[3], r[4], r[5]) for r in rows) == [
        ("1", "en-zh", "done", "–", "–"), ("2", "en-zh", "skipped (not_news)", "–", "–")]
    tomorrow = (datetime.datetime.now(datetime.timezone.utc).date() + datetime.timedelta(days=1)).isoformat()
    lead.js("document.getElementById('drill-since').value = arguments[0];", tomorrow)
    lead.d.find_element("css selector", "#drill-filters button[type=submit]").click()
    lead.wait(lambda: lead.text("#drill-count") == "0 dialogues", what="the date filter")
    lead.js("document.getElementById('drill-since').value = ''; document.getElementById('drill-pair').value = 'en-zh';")
    lead.d.find_element("css selector", "#drill-filters button[type=submit]").click()
    lead.wait(lambda: lead.text("#drill-count") == "2 dialogues", what="the pair filter")
    review_shots(lead, tmp_path / "lead-drill", fits=False)  # the lead page's phone width: issue 24 item 5
    lead.d.find_element("id", "export-zip").click()
    lead.wait(lambda: "Downloaded the export" in (lead.text("#notice") or ""), what="the zip")
    with Store(ws / "itcollect.db") as store:
        assert len(store.list_exports()) == 1


def test_returned_to_me_shows_the_marks_and_note_and_the_annotator_revises_and_sends_back(tmp_path, llm, servers,
                                                                                          browsers):
    """Issue 24 item 10 on the page: "returned to me" lists the rejected dialogue with the reviewer's
    mark and note; "revise" saves a new version; "send back" empties the list."""
    ws = make_workspace(tmp_path / "ws", 1, instruction_langs=("zh",))
    srv = serve(servers, ws, llm.base_url)
    llm.stream_chunk_delay = 0.0
    alice_url = add_account(ws, "alice")
    ann = Client(srv.url, alice_url)
    ann.state()
    ann.act("/api/request", {"text": "请把这句话译成中文。"})
    ann.answer()
    ann.act("/api/flag", {"note": "请看一下"})
    ann.act("/api/finish", {"reason": "one turn is enough here"})
    bob_url = add_account(ws, "bob", "reviewer")
    rev = Client(srv.url, bob_url)
    item = rev.get("/api/review")[1]["item"]
    answer = next(t for t in item["turns"] if t["role"] == "assistant")
    rev.post("/api/review/mark", {"dialogue_id": item["dialogue_id"], "turn_id": answer["turn_id"],
                                  "category": "fluency/grammar", "severity": "minor", "start": 0, "end": 2})
    rev.post("/api/review/verdict", {"dialogue_id": item["dialogue_id"], "verdict": "reject", "note": "语序不对"})
    b = browsers()
    b.d.get(add_account(ws, "alice2"))  # a fresh login of someone else first: nothing returned
    b.d.get(srv.url + "/returned")
    b.wait(lambda: b.visible("#none"), what="nothing returned to alice2")
    b.d.delete_all_cookies()
    b.d.get(alice_url)
    b.d.get(srv.url + "/returned")
    b.wait(lambda: b.js("return document.querySelectorAll('#dialogues article').length") == 1, what="the returned one")
    assert "语序不对" in b.text(".review-note")
    assert "minor · fluency/grammar" in b.text("#dialogues .marks")
    review_shots(b, tmp_path / "returned")
    b.d.find_element("css selector", "[data-tool=revise]").click()
    box = b.d.find_element("css selector", ".fix-box")
    box.clear()
    box.send_keys("我改好的译文。")
    b.d.find_element("css selector", "[data-tool=save-revision]").click()
    b.wait(lambda: "your revision" in (b.text("#dialogues") or ""), what="the revision")
    b.d.find_element("css selector", "[data-tool=send-back]").click()
    b.wait(lambda: b.visible("#none"), what="the list empty after sending back")
    with Store(ws / "itcollect.db") as store:
        assert store.get_dialogue(item["dialogue_id"])["review_status"] is None
    # the reviewer sees the revision in their queue, said as one
    b.d.delete_all_cookies()
    b.d.get(bob_url)
    b.wait(lambda: b.visible("#item") and "revised by alice after the verdict rejected" in (b.text("#turns") or ""),
           what="the revision in the review queue")
    assert "before the revision" in b.text("#turns")
