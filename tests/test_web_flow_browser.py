"""Issue 24 items 3 and 6 in a real headless Chromium, at a desktop (1366x900) and a phone
(390x844) size: finishing before the planned turns asks with the count; undo puts the request
back in the box; the whole page switches to Chinese (stored per account). Screenshots are
written beside each test (their paths are printed)."""

from __future__ import annotations

import pytest

from itcollect.store import Store

from .test_session import SOURCES, make_workspace
from .test_web_browser import browsers, llm, serve, servers  # noqa: F401  (fixtures)
from .test_web_browser import pytestmark as pytestmark  # noqa: F401  (skipped without a browser)
from .webutil import add_account

SIZES = [(1366, 900), (390, 844)]


@pytest.mark.parametrize("size", SIZES, ids=["desktop", "phone"])
def test_early_finish_undo_and_the_page_in_chinese(tmp_path, llm, servers, browsers, size):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    ws = make_workspace(tmp_path / "ws", 2, instruction_langs=("en",))  # two planned turns each
    serve(servers, ws, llm.base_url)
    llm.stream_chunk_delay = 0.0
    b = browsers()
    b.d.set_window_size(*size)
    b.d.get(add_account(ws, "alice"))
    b.wait(lambda: b.text("#source") == SOURCES[0], what="the spec")
    assert b.js("return document.documentElement.lang") == "en"
    request = "Please translate this sentence into Chinese."
    b.type_request(request)
    b.wait_decision()
    # undo: the taken-back request is in the box again
    b.key("u")
    b.wait(lambda: b.js("return document.getElementById('request').value") == request, what="the request back")
    b.wait(lambda: b.visible("#request"), what="the request box")
    b.d.find_element(By.ID, "request").send_keys(Keys.ENTER)
    b.wait_decision()
    # finish after 1 of 2 planned turns: the page asks, with the count, before anything changes
    b.key("f")
    b.wait(lambda: b.visible("#reason-text"), what="the early finish's question")
    assert "1 of 2 planned turns" in b.text("#reason-label")
    b.js("document.getElementById('reason-text').scrollIntoView({block: 'center'})")
    print("screenshot:", b.shot(tmp_path / f"early-finish-{size[0]}.png"))
    with Store(ws / "itcollect.db") as store:
        assert store.dialogue_for_spec(1)["status"] == "in_progress"
    box = b.d.find_element(By.ID, "reason-text")
    box.send_keys("the sentence is a caption", Keys.ENTER)
    b.wait(lambda: "Dialogue finished." in (b.text("#notice") or ""), what="finished")
    b.wait(lambda: b.text("#source") == SOURCES[1], what="the next spec")
    with Store(ws / "itcollect.db") as store:
        assert store.dialogue_for_spec(1)["early_finish"] == "the sentence is a caption"

    # the interface in Chinese, chosen on the page and stored on the account
    b.wait(lambda: b.visible("#ui-lang"), what="the language switch")
    b.js("document.getElementById('ui-lang').click()")
    b.wait(lambda: b.js("return document.documentElement.lang") == "zh", what="the page in Chinese")
    b.wait(lambda: b.text("#source") == SOURCES[1], what="the spec again")
    assert b.text("#actions button[data-action='finish'] span") == "完成"
    assert b.text("#guide h2") == "标注指南"
    assert b.text("#ui-lang") == "English"  # the way back
    with Store(ws / "itcollect.db") as store:
        assert store.account_language("alice") == "zh"
    assert b.js("return document.documentElement.scrollWidth <= window.innerWidth")
    print("screenshot:", b.shot(tmp_path / f"chinese-{size[0]}.png"))
