"""Issue 24 items 3, 6 and 8 over plain HTTP (the real server in a subprocess, the loopback LLM
server, the real store): the interface language per account, warnings as sentences beside their
codes, early finishes, and waiting while specs are only leased by others."""

from __future__ import annotations

import pytest

from itcollect.store import Store

from .test_session import CountingResponder, make_workspace
from .test_web import servers as servers  # noqa: F401  (the fixture)
from .test_web import start
from .webutil import Client, add_account, http


@pytest.fixture
def llm(fake_openai):
    fake_openai.responder = CountingResponder()
    return fake_openai


def _page_lang(srv, c: Client | None, accept: str = "") -> str:
    headers = dict(c.headers(csrf=False)) if c else {}
    if accept:
        headers["Accept-Language"] = accept
    status, _, body, _ = http(srv.url, "GET", "/", headers=headers)
    assert status == 200
    return body.decode().split('<html lang="', 1)[1].split('"', 1)[0]


def test_language_per_account_and_warnings_as_sentences(tmp_path, llm, servers):  # noqa: F811
    ws = make_workspace(tmp_path / "ws", 1, instruction_langs=("zh",))
    srv = start(servers, ws, llm.base_url)
    c = Client(srv.url, add_account(ws, "alice"))
    # no choice yet, [web] language = "auto": the browser's
    assert _page_lang(srv, c) == "en"
    assert _page_lang(srv, c, "zh-CN,zh;q=0.9,en;q=0.8") == "zh"
    assert _page_lang(srv, None, "fr-FR,en;q=0.5") == "en"
    # the catalog the pages read is served beside them
    status, _, js, _ = http(srv.url, "GET", "/static/catalog.js")
    assert status == 200 and b"IT_CATALOG" in js and "标注".encode() in js
    c.state()
    assert c.post("/api/language", {"lang": "xx"}, version=False)[0] == 400
    assert c.post("/api/language", {"lang": "zh"}, version=False, csrf=False)[0] == 403
    assert c.post("/api/language", {"lang": "zh"}, version=False)[0] == 200
    assert _page_lang(srv, c, "en-US") == "zh"  # the account's choice wins over the browser
    with Store(ws / "itcollect.db") as store:
        assert store.account_language("alice") == "zh"

    # "Now translate it into German please." on a spec whose requests are planned in Chinese: a
    # request (no not_a_request), in the wrong language, said as a sentence in the page's language
    c.lang = "zh"
    out = c.act("/api/request", {"text": "Now translate it into German please."})
    codes = [w.split(":")[0] for w in out["request_warnings"]]
    assert "wrong_language" in codes and "not_a_request" not in codes
    assert any("请用中文写请求" in s for s in out["request_warning_text"])
    c.answer()
    turns = c.state()["dialogue"]["turns"]
    assert turns[0]["warnings"] == out["request_warnings"]  # the codes stay the contract
    assert turns[0]["warning_text"] == out["request_warning_text"]
    c.lang = "en"
    turns = c.state()["dialogue"]["turns"]
    assert "This dialogue's requests are planned in Chinese: write the request in Chinese." in turns[0]["warning_text"]


def test_early_finish_asks_with_the_count_and_undo_gives_the_request_back(tmp_path, llm, servers):  # noqa: F811
    ws = make_workspace(tmp_path / "ws", 1)  # two planned turns
    srv = start(servers, ws, llm.base_url)
    c = Client(srv.url, add_account(ws, "alice"))
    c.state()
    c.act("/api/request", {"text": "Please translate this sentence into Chinese."})
    c.answer()
    c.state()
    # undo: the request it took back comes back for the box, as typed (without the attached source)
    out = c.act("/api/undo")
    assert out["undone_request"] == "Please translate this sentence into Chinese."
    c.act("/api/request", {"text": "Please translate this sentence into Chinese."})
    c.answer()
    c.state()
    status, out = c.post("/api/finish")
    assert status == 409 and out["code"] == "early_finish" and (out["done"], out["planned"]) == (1, 2)
    assert "1 of 2 planned turns" in out["error"]
    with Store(ws / "itcollect.db") as store:  # nothing changed
        assert store.dialogue_for_spec(1)["status"] != "done"
    out = c.act("/api/finish", {"reason": "one turn is enough for a headline"})
    assert out["finished"]
    with Store(ws / "itcollect.db") as store:
        d = store.dialogue_for_spec(1)
        assert d["status"] == "done" and d["early_finish"] == "one turn is enough for a headline"


def test_the_page_waits_while_the_only_spec_is_leased_by_someone_else(tmp_path, llm, servers):  # noqa: F811
    ws = make_workspace(tmp_path / "ws", 1)
    srv = start(servers, ws, llm.base_url)
    alice = Client(srv.url, add_account(ws, "alice"))
    bob = Client(srv.url, add_account(ws, "bob"))
    assert alice.state()["dialogue"]["spec_id"] == 1
    st = bob.state()  # nothing to open, but alice holds the spec: waiting, not idle
    assert st["dialogue"] is None and st["waiting"]["leased_by_others"] == 1 and st["waiting"]["retry_s"] > 0
    assert "leased by other annotators" in st["idle"]
    alice.act("/api/pause", {})  # nothing written: the spec goes back at once
    assert bob.state()["dialogue"]["spec_id"] == 1
    st = alice.state()
    assert st["dialogue"] is None and st["waiting"]["leased_by_others"] == 1
