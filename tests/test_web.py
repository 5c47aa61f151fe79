"""``itcollect session --web`` and ``itcollect annotators`` over plain HTTP: the real CLI, the real
server in a subprocess, the loopback LLM server, the real store. (The page itself is tested in a
real browser in test_web_browser.py.)"""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import time
from pathlib import Path

import pytest

from itcollect.store import Store, source_id_for
from itcollect.workspace import init_workspace

from .conftest import run_cli
from .test_session import SOURCES, CountingResponder, make_workspace
from .webutil import Client, WebServer, add_account, http

TOKEN_URL = re.compile(r"^http://[^/\s]+/login\?token=[A-Za-z0-9_-]{40,}$")


@pytest.fixture
def llm(fake_openai):
    fake_openai.responder = CountingResponder()
    return fake_openai


@pytest.fixture
def servers(web_servers):
    return web_servers


def set_config(ws: Path, old: str, new: str) -> None:
    cfg = ws / "itcollect.toml"
    text = cfg.read_text(encoding="utf-8")
    assert old in text
    cfg.write_text(text.replace(old, new), encoding="utf-8")


def start(servers: list, ws: Path, llm_url: str, *extra: str) -> WebServer:
    s = WebServer(ws, llm_url, *extra)
    servers.append(s)
    return s


# -- accounts ------------------------------------------------------------------------------------
def test_annotators_add_list_revoke(tmp_path):
    ws = make_workspace(tmp_path / "ws", 1)
    r = run_cli("-C", str(ws), "annotators", "add", "alice")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    url = lines[-1]
    assert TOKEN_URL.match(url), r.stdout
    assert url.startswith("http://127.0.0.1:8765/login?token=")  # no server running: the configured address
    token = url.split("token=", 1)[1]
    # shown once, stored hashed: the token is nowhere in the database file
    raw = b"".join(p.read_bytes() for p in ws.glob("itcollect.db*"))
    assert token.encode() not in raw
    with Store(ws / "itcollect.db") as store:
        assert store.get_account("alice")["role"] == "annotator"

    assert run_cli("-C", str(ws), "annotators", "add", "bob", "--role", "reviewer").returncode == 0
    again = run_cli("-C", str(ws), "annotators", "add", "alice")
    assert again.returncode == 1 and "already has an account" in again.stderr and "--new-token" in again.stderr
    assert "Traceback" not in again.stderr
    bad = run_cli("-C", str(ws), "annotators", "add", "li wei")
    assert bad.returncode == 1 and "is not allowed" in bad.stderr
    role = run_cli("-C", str(ws), "annotators", "add", "carl", "--role", "boss")
    assert role.returncode == 2

    listed = json.loads(run_cli("-C", str(ws), "annotators", "list", "--json").stdout)["annotators"]
    assert [(a["name"], a["role"], a["status"]) for a in listed] == [("alice", "annotator", "active"),
                                                                     ("bob", "reviewer", "active")]
    table = run_cli("-C", str(ws), "annotators", "list").stdout
    assert "alice" in table and "reviewer" in table and "never" in table

    r = run_cli("-C", str(ws), "annotators", "revoke", "alice")
    assert r.returncode == 0 and "revoked alice" in r.stdout
    assert run_cli("-C", str(ws), "annotators", "revoke", "nobody").returncode == 1
    listed = json.loads(run_cli("-C", str(ws), "annotators", "list", "--json").stdout)["annotators"]
    assert listed[0]["status"] == "revoked"
    # a new link lets a revoked person back in
    r = run_cli("-C", str(ws), "annotators", "add", "alice", "--new-token")
    assert r.returncode == 0 and TOKEN_URL.match(r.stdout.strip().splitlines()[-1])
    assert r.stdout.strip().splitlines()[-1] != url

    # [web] public_url is the link address when no server runs
    set_config(ws, 'public_url = ""', 'public_url = "https://annotate.example.org/"')
    r = run_cli("-C", str(ws), "annotators", "add", "dora")
    assert r.stdout.strip().splitlines()[-1].startswith("https://annotate.example.org/login?token=")


def test_no_endpoint_or_a_taken_port_fails_before_serving(tmp_path, llm, servers):
    ws = make_workspace(tmp_path / "ws", 1)
    r = run_cli("-C", str(ws), "session", "--web", "--port", "0", env={"OPENAI_API_KEY": ""}, timeout=60)
    assert r.returncode == 1 and "no LLM endpoint configured" in r.stderr and "Traceback" not in r.stderr
    assert r.stdout == "" and not (ws / ".itcollect" / "web.json").exists()
    srv = start(servers, ws, llm.base_url)
    r = run_cli("-C", str(ws), "session", "--web", "--port", str(srv.port), "--base-url", llm.base_url,
                "--model", "m", timeout=60)
    assert r.returncode == 1 and f"cannot listen on 127.0.0.1:{srv.port}" in r.stderr and r.stdout == ""
    assert json.loads((ws / ".itcollect" / "web.json").read_text())["pid"] == srv.proc.pid  # left alone


def test_session_usage_errors(tmp_path):
    ws = make_workspace(tmp_path / "ws", 1)
    for args in (["session"], ["session", "--web", "--annotator", "a"], ["session", "--annotator", "a", "--port", "1"],
                 ["session", "--web", "--review"]):
        r = run_cli("-C", str(ws), *args, input="")
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert "Traceback" not in r.stderr


# -- the server: first line, login, state, 401, stop -----------------------------------------------
def test_first_line_login_state_and_401s(tmp_path, llm, servers):
    ws = make_workspace(tmp_path / "ws", 2)
    srv = start(servers, ws, llm.base_url)
    assert srv.first_line == f"listening on http://127.0.0.1:{srv.port}"
    rec = json.loads((ws / ".itcollect" / "web.json").read_text())
    assert rec["pid"] == srv.proc.pid

    # `annotators add` points its link at the running server; the URL is its last line
    url = add_account(ws, "alice")
    assert url.startswith(f"{srv.url}/login?token=")

    # no cookie, a made-up cookie, a wrong token: 401, and no cookie is set
    status, _, _, _ = http(srv.url, "GET", "/api/state")
    assert status == 401
    status, _, _, _ = http(srv.url, "GET", "/api/state", headers={"Cookie": "itcollect_session=forged"})
    assert status == 401
    bad = Client(srv.url)
    assert bad.login(f"{srv.url}/login?token=not-a-token") == 401 and bad.login_cookies == []
    assert bad.login(f"{srv.url}/login") == 401

    c = Client(srv.url)
    assert c.login(url) == 303
    assert c.login_headers["location"] == "/"
    cookie = c.login_cookies[0].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie
    assert "secure" not in cookie  # plain http on loopback ("auto")
    st = c.state()
    assert st["annotator"] == "alice"
    d = st["dialogue"]
    assert d["spec_id"] == 1 and d["source"] == SOURCES[0] and d["turns"] == [] and d["id"]
    assert d["plan"] == [{"type": "translate"}, {"type": "polish"}] and d["state"] == "ask"
    assert st["progress"]["pool"] == 1 and "waiting" in st["progress"]["line"]
    # what the page may offer comes from the engine (Session.allowed_actions), language names too
    assert st["actions"] == ["request", "type", "skip", "flag", "guidelines", "pause"]
    assert st["languages"]["zh"] == "Chinese (中文)" and st["languages"]["en"] == "English"
    # the guide arrives rendered by the server: safe HTML, headings one level down
    status, guide = c.get("/api/guidelines?lang=en")
    sections = {s["key"]: s for s in guide["sections"]}
    assert status == 200 and sections["type:translate"]["html"].startswith("<h3>translate</h3>")
    assert "<table>" in sections["general:judging"]["html"] and sections["type:translate"]["text"]
    assert c.get("/api/guidelines?lang=xx")[0] == 400
    # the page itself is static and served with a strict content security policy
    status, headers, body, _ = http(srv.url, "GET", "/")
    assert status == 200 and b"annotate.js" in body
    assert "script-src 'self'" in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"

    # behind a TLS proxy on this machine (X-Forwarded-Proto from a trusted address) the cookie is Secure
    u = url.split(srv.url, 1)[1]
    status, _, _, cookies = http(srv.url, "GET", u, headers={"X-Forwarded-Proto": "https"})
    assert status == 303 and "secure" in cookies[0].lower()

    # roles: an annotator gets neither the review queue nor the lead's figures
    assert c.get("/api/review")[0] == 403 and c.get("/api/lead")[0] == 403

    # revoked: the open session and the link get 401 at once (revoked by another process)
    assert run_cli("-C", str(ws), "annotators", "revoke", "alice").returncode == 0
    status, body = c.get("/api/state")
    assert status == 401
    assert Client(srv.url).login(url) == 401

    assert srv.stop() == 0
    assert not (ws / ".itcollect" / "web.json").exists()


def test_csrf_and_body_bound(tmp_path, llm, servers):
    ws = make_workspace(tmp_path / "ws", 1)
    set_config(ws, "max_body_bytes = 65536", "max_body_bytes = 2048")
    srv = start(servers, ws, llm.base_url)
    c = Client(srv.url, add_account(ws, "alice"))
    c.state()
    status, out = c.post("/api/request", {"text": "Please translate this sentence into Chinese."}, csrf=False)
    assert status == 403 and "CSRF" in out["error"]
    real = c.csrf
    c.csrf = "wrong"
    assert c.post("/api/request", {"text": "Please translate this sentence into Chinese."})[0] == 403
    c.csrf = real
    status, out = c.post("/api/request", {"text": "x" * 5000})
    assert status == 413 and "2048 bytes" in out["error"] and "max_body_bytes" in out["error"]
    # a body without a Content-Length (chunked) is counted as it arrives
    status, _, data, _ = http(srv.url, "POST", "/api/request", body=iter([b'{"text": "' + b"y" * 3000 + b'"}']),
                              headers={**c.headers(), "Content-Type": "application/json",
                                       "Transfer-Encoding": "chunked"}, chunked=True)
    assert status == 413 and b"too large" in data
    with Store(ws / "itcollect.db") as store:  # nothing of the refused requests was written
        assert store.get_turns(store.dialogue_for_spec(1)["id"], include_inactive=True) == []
    # within the bound, it works
    status, out = c.post("/api/request", {"text": "Please translate this sentence into Chinese."})
    assert status == 200 and out["dialogue"]["state"] == "answer"


def test_full_dialogue_over_http_records_match_the_terminal(tmp_path, llm, servers):
    llm.stream_chunk_delay = 0.01
    ws = make_workspace(tmp_path / "ws", 2, instruction_langs=("en",))
    srv = start(servers, ws, llm.base_url)
    c = Client(srv.url, add_account(ws, "alice"))
    st = c.state(load=True)
    assert st["dialogue"]["suggestion"]  # the first-turn template's wording, as a hint
    out = c.act("/api/request", {"text": "Please translate this sentence into Chinese."})
    assert out["streaming"] is True and out["dialogue"]["state"] == "answer"
    assert out["actions"] == ["stop", "flag", "guidelines", "pause"]  # while the answer streams
    assert out["message"] == "The source sentence is attached to your first request."
    events = c.stream()
    kinds = [e for e, _ in events]
    assert kinds[-1] == "end" and events[-1][1]["ok"] is True
    streamed = "".join(d.get("text", "") for e, d in events if e in ("snapshot", "delta"))
    assert kinds.count("delta") >= 2  # it arrived in pieces
    st = c.state()
    answer = st["dialogue"]["turns"][-1]
    assert st["dialogue"]["state"] == "decide" and answer["role"] == "assistant" and answer["content"] == streamed
    assert st["actions"] == ["accept", "edit", "regenerate", "undo", "finish", "skip", "flag", "guidelines", "pause"]
    # actions decided on an outdated screen are refused (a second tab): nothing is written
    old = dict(c.last)
    c.act("/api/accept")
    c.last, fresh = old, c.last
    status, out = c.post("/api/accept")
    assert status == 409 and out["code"] == "stale"
    c.last = fresh
    # second turn: the guide's example request for the planned type is the hint
    assert c.last["dialogue"]["suggestion"] == "Make it sound more natural; it reads like a translation."
    c.act("/api/request", {"text": "Could you make it sound more natural?"})
    c.answer()
    c.act("/api/regenerate")
    st = c.answer()
    c.act("/api/edit", {"text": "市议会周一通过了新桥的预算。"})
    # a request beyond the plan, undone
    c.act("/api/request", {"text": "What could this mean for commuters?"})
    assert c.answer()["dialogue"]["type"] == "follow_up"
    c.act("/api/undo")
    c.act("/api/flag", {"note": "check the numbers"})
    out = c.act("/api/finish")
    assert out["finished"] and out["dialogue"] is None
    nxt = c.state()
    assert nxt["dialogue"]["spec_id"] == 2 and nxt["progress"]["dialogues"] == 1
    out = c.act("/api/skip", {"reason": "not_news", "note": "a byline"})
    assert out["skipped"]
    assert c.state()["dialogue"] is None and c.last["idle"]

    with Store(ws / "itcollect.db") as store:
        d1 = store.dialogue_for_spec(1)
        assert (d1["status"], d1["origin"], d1["annotator"], d1["flagged"]) == ("done", "human", "alice", 1)
        turns = sorted(store.get_turns(d1["id"], include_inactive=True), key=lambda t: t["id"])
        assert [(t["role"], t["state"], t["author"], t["interaction_type"]) for t in turns] == [
            ("user", "active", "human", "translate"), ("assistant", "active", "model", "translate"),
            ("user", "active", "human", "polish"), ("assistant", "rejected", "model", "polish"),
            ("assistant", "active", "human", "polish"),
            ("user", "undone", "human", "follow_up"), ("assistant", "undone", "model", "follow_up")]
        assert turns[0]["content"] == f'Please translate this sentence into Chinese.\n\n"{SOURCES[0]}"'
        assert turns[4]["content"] == "市议会周一通过了新桥的预算。" and turns[4]["original_content"]
        d2 = store.dialogue_for_spec(2)
        assert (d2["status"], d2["status_reason"]) == ("skipped", "not_news: a byline")
        actions = [e["action"] for e in store.session_events(annotator="alice")]
        for a in ("open", "request", "answer", "accept", "regenerate", "edit", "undo", "flag", "finish", "skip"):
            assert a in actions, a
        assert store.leases_held("human:alice") == []
    assert llm.paid_twice() == {}


def test_two_tabs_of_one_annotator_share_the_dialogue_and_cannot_corrupt_it(tmp_path, llm, servers):
    ws = make_workspace(tmp_path / "ws", 3)
    srv = start(servers, ws, llm.base_url)
    url = add_account(ws, "alice")
    a, b = Client(srv.url, url, tab="A"), Client(srv.url, url, tab="B")
    assert a.state()["dialogue"]["id"] == b.state()["dialogue"]["id"]
    a.act("/api/request", {"text": "请把这句话译成中文。"})
    st_b = b.state()
    assert st_b["streaming"] or st_b["dialogue"]["state"] == "decide"  # tab B sees the same answer coming
    a.answer()
    b.answer()
    a.act("/api/accept")
    status, out = b.post("/api/accept")  # tab B still shows the undecided answer
    assert status == 409 and "another tab" in out["error"]
    status, out = b.post("/api/request", {"text": "请润色一下。"})
    assert status == 409  # B must look again first
    b.state()
    b.act("/api/request", {"text": "请润色一下，让它更通顺。"})
    b.answer()  # the request's answer is being written: wait for it, so the turns below are final
    with Store(ws / "itcollect.db") as store:
        turns = store.get_turns(store.dialogue_for_spec(1)["id"], include_inactive=True)
        # the refused request and accept of tab B left nothing: one request after the first answer
        assert [(t["role"], t["state"]) for t in turns] == [("user", "active"), ("assistant", "active"),
                                                             ("user", "active"), ("assistant", "active")]
        assert turns[2]["content"] == "请润色一下，让它更通顺。"
        assert [e["action"] for e in store.session_events(annotator="alice")].count("accept") == 1


def test_review_queue_and_lead_figures(tmp_path, llm, servers):
    ws = make_workspace(tmp_path / "ws", 3, instruction_langs=("zh",))
    srv = start(servers, ws, llm.base_url)
    ann = Client(srv.url, add_account(ws, "alice"))
    ann.state()
    # dialogue 1: regenerated and edited; dialogue 2: flagged, with an undone request; dialogue 3: plain
    ann.act("/api/request", {"text": "请把这句话译成中文。"})
    ann.answer()
    ann.act("/api/regenerate")
    ann.answer()
    ann.act("/api/edit", {"text": "我的译文。"})
    ann.act("/api/finish", {"reason": "one turn is enough here"})
    ann.state()
    ann.act("/api/request", {"text": "请把这句话译成中文。"})
    ann.answer()
    ann.act("/api/accept")
    ann.act("/api/request", {"text": "请润色一下。"})
    ann.answer()
    ann.act("/api/undo")
    ann.act("/api/flag", {"note": "数字要核对"})
    ann.act("/api/finish", {"reason": "one turn is enough here"})
    ann.state()
    ann.act("/api/request", {"text": "请把这句话译成中文。"})
    ann.answer()
    ann.act("/api/finish", {"reason": "one turn is enough here"})

    rev = Client(srv.url, add_account(ws, "bob", "reviewer"))
    assert rev.login_headers["location"] == "/review"
    status, out = rev.get("/api/review")
    assert status == 200
    item = out["item"]
    assert item["spec_id"] == 1 and item["remaining"] == 2 and item["annotator"] == "alice"
    states = [(t["role"], t["state"]) for t in item["turns"]]
    assert ("assistant", "rejected") in states  # rejected answers are shown to the reviewer
    edited = [t for t in item["turns"] if t["author"] == "human" and t["role"] == "assistant"][0]
    assert edited["content"] == "我的译文。" and edited["original_content"]
    assert rev.get("/api/lead")[0] == 403
    status, out = rev.post("/api/review/verdict", {"dialogue_id": item["dialogue_id"], "verdict": "accept",
                                                   "note": "fine"})
    assert status == 200 and out["item"]["spec_id"] == 2
    second = out["item"]
    assert ("user", "undone") in [(t["role"], t["state"]) for t in second["turns"]] and second["flagged"]
    # a second reviewer deciding the same dialogue at once loses cleanly
    rev2 = Client(srv.url, add_account(ws, "cleo", "reviewer"))
    rev2.get("/api/review")
    assert rev.post("/api/review/verdict", {"dialogue_id": second["dialogue_id"], "verdict": "reject",
                                            "note": "numbers wrong"})[0] == 200
    status, out = rev2.post("/api/review/verdict", {"dialogue_id": second["dialogue_id"], "verdict": "accept"})
    assert status == 409 and "already reviewed" in out["error"] and "bob" in out["error"]
    status, out = rev.get("/api/review")
    assert out["item"] is None
    # issue 24 item 1: the verdicts still standing, newest first; one is taken back and changed
    assert [(v["dialogue_id"], v["verdict"]) for v in out["recent"]] == [(second["dialogue_id"], "rejected"),
                                                                         (item["dialogue_id"], "accepted")]
    status, out = rev.post("/api/review/undo", {"dialogue_id": item["dialogue_id"]})
    assert status == 200 and "accepted taken back" in out["message"]
    assert out["item"]["dialogue_id"] == item["dialogue_id"] and out["item"]["review_status"] is None
    assert [v["dialogue_id"] for v in out["recent"]] == [second["dialogue_id"]]
    status, out = rev.post("/api/review/undo", {"dialogue_id": item["dialogue_id"]})
    assert status == 409 and "no verdict to take back" in out["error"]
    status, out = rev.post("/api/review/verdict", {"dialogue_id": item["dialogue_id"], "verdict": "accept",
                                                   "note": "fine after all"})
    assert status == 200 and out["last_verdict"] == {"dialogue_id": item["dialogue_id"], "verdict": "accepted"}
    assert out["item"] is None
    with Store(ws / "itcollect.db") as store:
        d1 = store.dialogue_for_spec(1)
        assert d1["review_status"] == "accepted"
        assert [(r["reviewer"], r.get("verdict"), r.get("undoes")) for r in d1["meta"]["reviews"]] == [
            ("bob", "accepted", None), ("bob", None, "accepted"), ("bob", "accepted", None)]
        d2 = store.dialogue_for_spec(2)
        assert d2["review_status"] == "rejected" and d2["meta"]["reviews"][0]["note"] == "numbers wrong"

    lead = Client(srv.url, add_account(ws, "lee", "lead"))
    assert lead.login_headers["location"] == "/lead"
    status, out = lead.get("/api/lead")
    assert status == 200
    alice = next(r for r in out["annotators"] if r["name"] == "alice")
    assert (alice["dialogues"], alice["skipped"], alice["flagged"], alice["turns"]) == (3, 0, 1, 3)  # the undone request is not counted
    assert alice["median_seconds_per_dialogue"] is not None and alice["last_seen"]
    assert [r["name"] for r in out["annotators"]] == ["alice", "bob", "cleo", "lee"]
    assert out["pool"] == [{"pair": "en-zh", "instruction_lang": "zh", "planned": 3, "pending": 0, "leased": 0,
                            "stalled": 0, "done": 3, "skipped": 0, "failed": 0, "progress": 1.0, "to_replan": 0}]


def test_lead_progress_is_done_against_planned_and_says_how_many_specs_to_replan(tmp_path, llm, servers):
    """Issue 24 item 2: 3 planned, 0 done, 2 skipped is 0 % done (not 67 %), 2 short of the plan."""
    ws = make_workspace(tmp_path / "ws", 3, instruction_langs=("en",))
    srv = start(servers, ws, llm.base_url)
    ann = Client(srv.url, add_account(ws, "alice"))
    for _ in range(2):
        ann.state()
        ann.act("/api/skip", {"reason": "bad_source", "note": "garbled"})
    ann.state()  # alice holds the third
    lead = Client(srv.url, add_account(ws, "lee", "lead"))
    status, out = lead.get("/api/lead")
    assert status == 200
    assert out["pool"] == [{"pair": "en-zh", "instruction_lang": "en", "planned": 3, "pending": 0, "leased": 1,
                            "stalled": 0, "done": 0, "skipped": 2, "failed": 0, "progress": 0.0, "to_replan": 2}]


def test_html_in_a_source_is_served_as_text(tmp_path, llm, servers):
    ws_path = tmp_path / "ws"
    ws = init_workspace(ws_path)
    evil = 'Officials said <script>alert("x")</script> and <img src=x onerror="alert(1)"> were found in the bill.'
    sid = source_id_for(evil)
    ws.store.add_source(source_id=sid, text=evil, lang="en", origin_file="news.txt", origin_line=1)
    ws.store.add_specs([{"seed": 0, "seq": 0, "source_id": sid, "src_lang": "en", "tgt_lang": "zh",
                         "instruction_lang": "en", "n_turns": 1, "interaction_types": ["translate"],
                         "params": {}}])
    ws.close()
    llm.responder = lambda body: '<b>官员</b>说发现了<script>alert("y")</script>。'
    srv = start(servers, ws_path, llm.base_url)
    c = Client(srv.url, add_account(ws_path, "alice"))
    status, headers, body, _ = http(srv.url, "GET", "/api/state", headers=c.headers())
    assert status == 200 and headers["content-type"].startswith("application/json")
    assert json.loads(body)["dialogue"]["source"] == evil  # data, to be set as text by the page
    c.state()
    c.act("/api/request", {"text": "Translate <i>this</i> please."})
    st = c.answer()
    assert st["dialogue"]["turns"][-1]["content"] == '<b>官员</b>说发现了<script>alert("y")</script>。'
    # no page the server sends contains the data; every page runs only its own scripts
    for page in ("/", "/review", "/lead"):
        status, headers, body, _ = http(srv.url, "GET", page)
        assert b"onerror" not in body and b"alert" not in body
        assert "default-src 'self'" in headers["content-security-policy"]
    # and the page's scripts never assign HTML
    js = b"".join(http(srv.url, "GET", f"/static/{n}")[2] for n in ("common.js", "annotate.js", "review.js", "lead.js"))
    assert b"innerHTML" not in js.replace(b"never assigns innerHTML", b"") and b"outerHTML" not in js
    assert b"insertAdjacentHTML" not in js and b"document.write" not in js


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_32_annotators_claiming_at_once_never_share_a_spec(tmp_path, llm, servers, backend, request, monkeypatch):
    target = str(tmp_path / "ws" / "itcollect.db")
    if backend == "postgresql":  # the workspace, its web server and this test on one PostgreSQL database
        target = request.getfixturevalue("pg_url")
        monkeypatch.setenv("ITCOLLECT_STORE_URL", target)
    ws = make_workspace(tmp_path / "ws", 24)
    srv = start(servers, ws, llm.base_url)
    import aiohttp

    from itcollect.session.web.auth import issue_token, login_url

    # 32 accounts through the store's API (the CLI's `annotators add` is tested above; 32 processes
    # would only make this test slow)
    with Store(target) as store:
        urls = [login_url(srv.url, issue_token(store, f"a{i:02d}")) for i in range(32)]

    async def one(url: str) -> tuple[str, dict]:
        jar = aiohttp.CookieJar(unsafe=True)
        async with aiohttp.ClientSession(cookie_jar=jar) as http_session:
            async with http_session.get(url, allow_redirects=False) as resp:
                assert resp.status == 303
            logged_in.append(url)
            if len(logged_in) == len(urls):  # every client logged in; now all claim together
                start_line.set()
            await start_line.wait()
            async with http_session.get(f"{srv.url}/api/state") as resp:
                assert resp.status == 200
                return url, await resp.json()

    async def all_at_once():
        # a failed login ends the gather with its error at once; the deadline is for a hung server
        return await asyncio.wait_for(asyncio.gather(*(one(u) for u in urls)), 120)

    logged_in: list[str] = []
    start_line = asyncio.Event()
    results = asyncio.run(all_at_once())
    got = [st["dialogue"]["spec_id"] for _, st in results if st["dialogue"]]
    idle = [st for _, st in results if st["dialogue"] is None]
    assert len(got) == 24 and len(set(got)) == 24 and len(idle) == 8
    assert all(st["idle"] for st in idle)
    with Store(target) as store:
        holders = [store.lease_of(i)["holder"] for i in range(1, 25)]
        assert len(set(holders)) == 24
        assert store.spec_counts()["in_progress"] == 24


def test_kill_9_mid_answer_then_restart_continues_with_nothing_lost(tmp_path, llm, servers):
    ws = make_workspace(tmp_path / "ws", 2, instruction_langs=("en",))
    srv = start(servers, ws, llm.base_url)
    url = add_account(ws, "alice")
    c = Client(srv.url, url)
    c.state()
    c.act("/api/request", {"text": "Please translate this sentence into Chinese."})
    c.answer()
    c.act("/api/accept")
    llm.set_latency(60.0)  # the next answer hangs on the wire
    n_before = llm.total_requests
    c.act("/api/request", {"text": "Could you make it sound more natural?"})
    deadline = time.time() + 30
    while llm.total_requests == n_before and time.time() < deadline:
        time.sleep(0.05)
    assert llm.total_requests > n_before  # the answer is being produced
    srv.kill9()
    llm.set_latency(0.0)
    with Store(ws / "itcollect.db") as store:
        did = store.dialogue_for_spec(1)["id"]
        before = store.get_turns(did, include_inactive=True)
        assert [(t["role"], t["state"]) for t in before] == [("user", "active"), ("assistant", "active"),
                                                              ("user", "active")]

    srv2 = start(servers, ws, llm.base_url)
    assert json.loads((ws / ".itcollect" / "web.json").read_text())["pid"] == srv2.proc.pid
    c.base = srv2.url  # the same browser: its cookie still works after the restart
    st = c.state(load=True)
    assert st["dialogue"]["id"] == did and st["dialogue"]["resumed"]
    assert "2 request(s) and 1 answer(s) kept" in st["message"] and "asked again" in st["message"]
    assert st["streaming"] or st["dialogue"]["state"] == "decide"  # asked again at once, as the terminal does
    st = c.answer()
    assert st["dialogue"]["state"] == "decide" and st["dialogue"]["turns"][-1]["idx"] == 3
    c.act("/api/accept")
    c.act("/api/finish")
    with Store(ws / "itcollect.db") as store:
        after = store.get_turns(did, include_inactive=True)
        assert [(t["id"], t["content"]) for t in after[:3]] == [(t["id"], t["content"]) for t in before]
        assert [t["role"] for t in after] == ["user", "assistant", "user", "assistant"]
        assert store.dialogue_for_spec(1)["status"] == "done"
        actions = [e["action"] for e in store.session_events(annotator="alice")]
        assert actions.count("resume") == 1 and actions.count("accept") == 2
    assert llm.paid_twice() == {}


def test_closing_the_last_tab_quits_and_the_next_load_resumes(tmp_path, llm, servers):
    ws = make_workspace(tmp_path / "ws", 1, instruction_langs=("en",))
    srv = start(servers, ws, llm.base_url)
    c = Client(srv.url, add_account(ws, "alice"), tab="T1")
    c.state()
    c.act("/api/request", {"text": "Please translate this sentence into Chinese."})
    c.answer()
    # the page's last words (sendBeacon: CSRF token and tab in a text/plain body)
    status, _, _, _ = http(srv.url, "POST", "/api/away", body=json.dumps({"csrf": "nope", "tab": "T1"}).encode(),
                           headers={"Cookie": c.cookie, "Content-Type": "text/plain"})
    assert status == 403
    status, _, _, _ = http(srv.url, "POST", "/api/away", body=json.dumps({"csrf": c.csrf, "tab": "T1"}).encode(),
                           headers={"Cookie": c.cookie, "Content-Type": "text/plain"})
    assert status == 200
    st = c.state(load=True)
    assert st["dialogue"]["resumed"] and "the last answer is waiting for your decision" in st["message"]
    with Store(ws / "itcollect.db") as store:
        actions = [e["action"] for e in store.session_events(annotator="alice")]
        assert actions[-2:] == ["quit", "resume"]
        assert store.lease_of(1)["holder"] == "human:alice"  # the lease stayed


def test_store_schema_has_no_clear_secrets(tmp_path):
    ws = init_workspace(tmp_path / "ws")
    ws.close()
    conn = sqlite3.connect(tmp_path / "ws" / "itcollect.db")
    cols = {r[1] for r in conn.execute("PRAGMA table_info(accounts)")} | \
        {r[1] for r in conn.execute("PRAGMA table_info(web_sessions)")}
    conn.close()
    assert "token_hash" in cols and "sid_hash" in cols and "token" not in cols and "sid" not in cols


def test_endpoint_failure_gives_retry_and_the_request_is_kept(tmp_path, llm, servers):
    ws = make_workspace(tmp_path / "ws", 1, instruction_langs=("en",))
    srv = start(servers, ws, llm.base_url)
    c = Client(srv.url, add_account(ws, "alice"))
    c.state()
    llm.queue_faults("500", "500", "500")  # every attempt of the session's call (1 + 2 retries) fails
    c.act("/api/request", {"text": "Please translate this sentence into Chinese."})
    end = c.stream()[-1]
    assert end[0] == "end" and end[1]["ok"] is False and "could not answer" in end[1]["error"]
    st = c.state(load=True)
    assert st["dialogue"]["state"] == "answer" and not st["streaming"] and st["answer_error"]
    assert "no answer yet" in st["message"]  # the terminal's words for a request without an answer
    status, out = c.post("/api/accept")
    assert status == 409 and out["code"] == "refused"  # nothing to accept: nothing changed
    c.act("/api/retry")
    st = c.answer()
    assert st["dialogue"]["state"] == "decide" and st["answer_error"] is None
    with Store(ws / "itcollect.db") as store:
        turns = store.get_turns(store.dialogue_for_spec(1)["id"], include_inactive=True)
        assert [t["role"] for t in turns] == ["user", "assistant"]
        actions = [e["action"] for e in store.session_events(annotator="alice")]
        assert actions.count("request") == 1 and actions.count("endpoint_error") == 1


# -- quality control: controls, error-typed review, overlap, the lead's figures -----------------------
def test_control_review_marks_fix_overlap_pick_and_the_leads_figures(tmp_path, llm, servers):
    """Over HTTP: a control item missed (the real answer comes back for a decision), an overlap spec
    done by two annotators, a reviewer marking, fixing and picking side by side, and the lead
    reading the same figures as `stats --annotators`."""
    ws = make_workspace(tmp_path / "ws", 2, types=("translate",), instruction_langs=("en",))
    set_config(ws, "overlap_share = 0.0", "overlap_share = 0.5")  # spec 2 (plan position 1) overlaps
    set_config(ws, "control_share = 0.0", "control_share = 1.0")
    srv = start(servers, ws, llm.base_url)
    alice = Client(srv.url, add_account(ws, "alice"))
    assert alice.state()["dialogue"]["spec_id"] == 1
    alice.act("/api/request", {"text": "Please translate this sentence into Chinese."})
    planted = alice.answer()["dialogue"]["turns"][-1]["content"]
    out = alice.act("/api/accept")
    assert out["control"]["outcome"] == "miss" and "control item" in out["message"]
    real = out["dialogue"]["turns"][-1]
    assert out["dialogue"]["state"] == "decide" and real["content"] == out["control"]["answer"]["text"] != planted
    alice.act("/api/accept")
    alice.act("/api/finish")
    assert alice.state()["dialogue"]["spec_id"] == 2  # the overlap spec: no control in it
    alice.act("/api/request", {"text": "Please translate this sentence into Chinese."})
    alice.answer()
    assert "control" not in alice.act("/api/accept")
    alice.act("/api/finish")
    bob = Client(srv.url, add_account(ws, "bob"))
    assert bob.state()["dialogue"]["spec_id"] == 2  # its second copy
    bob.act("/api/request", {"text": "Please translate this sentence into Chinese."})
    bob.answer()
    bob.act("/api/edit", {"text": "市议会周一批准了新桥的预算。"})
    bob.act("/api/finish")
    assert bob.state()["dialogue"] is None

    rev = Client(srv.url, add_account(ws, "rev", "reviewer"))
    assert rev.get("/api/review?order=judge")[0] == 200 and rev.get("/api/review?order=nonsense")[0] == 400
    status, out = rev.get("/api/review?order=overlap")
    assert status == 200 and out["order"] == "overlap" and "accuracy/mistranslation" in out["categories"]
    item = out["item"]
    assert item["mode"] == "overlap" and item["spec_id"] == 2
    copies = {d["annotator"]: d for d in item["dialogues"]}
    a_answer = next(t for t in copies["alice"]["turns"] if t["role"] == "assistant")
    b_answer = next(t for t in copies["bob"]["turns"] if t["role"] == "assistant")
    status, out = rev.post("/api/review/mark", {"order": "overlap", "dialogue_id": copies["alice"]["dialogue_id"],
                                                "turn_id": a_answer["turn_id"], "category": "terminology",
                                                "severity": "minor", "start": 0, "end": 3})
    assert status == 200
    marks = next(d for d in out["item"]["dialogues"] if d["annotator"] == "alice")["turns"][1]["marks"]
    assert [(m["span"], m["reviewer"]) for m in marks] == [(a_answer["content"][:3], "rev")]
    status, out = rev.post("/api/review/mark", {"order": "overlap", "dialogue_id": copies["alice"]["dialogue_id"],
                                                "turn_id": a_answer["turn_id"], "category": "made-up",
                                                "severity": "minor", "start": 0, "end": 3})
    assert status == 409 and "category" in out["error"]
    status, out = rev.post("/api/review/fix", {"order": "overlap", "dialogue_id": copies["bob"]["dialogue_id"],
                                               "turn_id": b_answer["turn_id"], "text": "市议会周一批准了新大桥的预算。"})
    assert status == 200
    status, out = rev.post("/api/review/pick", {"order": "overlap", "spec_id": 2,
                                                "dialogue_id": copies["alice"]["dialogue_id"]})
    assert status == 200 and out["item"] is None and "Kept" in out["message"]
    with Store(ws / "itcollect.db") as store:
        assert store.overlap_picks()[2]["reviewer"] == "rev"
        fixed = [t for t in store.get_turns(copies["bob"]["dialogue_id"]) if t["role"] == "assistant"][0]
        assert (fixed["author"], fixed["annotator"], fixed["content"]) == ("human", "rev", "市议会周一批准了新大桥的预算。")

    lead = Client(srv.url, add_account(ws, "lee", "lead"))
    status, out = lead.get("/api/lead")
    assert status == 200
    assert set(out["quality"]) == {"alice", "bob"}
    a = out["quality"]["alice"]
    assert (a["control_items"], a["control_catch_rate"], a["overlap_specs"]) == (1, 0.0, 1)
    assert a["review"] == {"accepted": 1, "rejected": 0, "fixed": 0}
    assert out["agreement"]["pairs"] == 1 and out["agreement"]["by_pair"][0]["annotators"] == ["alice", "bob"]
    # the same figures as the CLI
    cli = json.loads(run_cli("-C", str(ws), "stats", "--annotators", "--json").stdout)
    assert cli["annotators"] == out["quality"]


def test_lead_drills_down_to_an_annotators_dialogues_with_filters_and_downloads_the_export_zip(
        tmp_path, llm, servers):
    """Issue 24 item 12: per annotator their dialogues with status, review outcome and judge score,
    filtered by pair and date; the current filtered export as a zip holding what `export --format
    all` writes."""
    import datetime
    import io
    import zipfile

    ws = make_workspace(tmp_path / "ws", 3, instruction_langs=("zh",))
    srv = start(servers, ws, llm.base_url)
    ann = Client(srv.url, add_account(ws, "alice"))
    for k in range(2):
        ann.state()
        ann.act("/api/request", {"text": "请把这句话译成中文。"})
        ann.answer()
        if k == 0:
            ann.act("/api/flag", {"note": "核对"})
        ann.act("/api/finish", {"reason": "one turn is enough here"})
    ann.state()
    ann.act("/api/skip", {"reason": "bad_source"})
    rev = Client(srv.url, add_account(ws, "bob", "reviewer"))
    item = rev.get("/api/review")[1]["item"]
    assert rev.post("/api/review/verdict", {"dialogue_id": item["dialogue_id"], "verdict": "accept"})[0] == 200
    lead = Client(srv.url, add_account(ws, "lee", "lead"))
    assert lead.get("/api/lead")[0] == 200
    assert rev.get("/api/lead/dialogues?annotator=alice")[0] == 403
    status, out = lead.get("/api/lead/dialogues?annotator=alice")
    assert status == 200
    rows = sorted(out["dialogues"], key=lambda d: d["spec_id"])
    assert [(d["spec_id"], d["pair"], d["status"], d["review_status"], d["flagged"], d["answers"], d["judge_score"])
            for d in rows] == [(1, "en-zh", "done", "accepted", True, 1, None), (2, "en-zh", "done", None, False, 1, None),
                               (3, "en-zh", "skipped", None, False, 0, None)]
    today = datetime.datetime.now(datetime.timezone.utc).date()
    day = datetime.timedelta(days=1)

    def count(query):
        status, out = lead.get("/api/lead/dialogues?annotator=alice&" + query)
        assert status == 200, out
        return len(out["dialogues"])

    assert count("pair=en-zh") == 3 and count("pair=en-fr") == 0
    assert count(f"since={today}&until={today}") == 3
    assert count(f"since={today + day}") == 0 and count(f"until={today - day}") == 0
    status, out = lead.get("/api/lead/dialogues?annotator=alice&since=yesterday")
    assert status == 400 and "YYYY-MM-DD" in out["error"]
    assert lead.get("/api/lead/dialogues?annotator=alice&pair=en_zh%27")[0] == 400
    # the zip: refused without the CSRF token, then the very files `export --format all` writes
    assert run_cli("-C", str(ws), "filter").returncode == 0
    status, _, _, _ = http(srv.url, "POST", "/api/lead/export", body=b"{}",
                           headers={**lead.headers(csrf=False), "Content-Type": "application/json"})
    assert status == 403
    status, headers, data, _ = http(srv.url, "POST", "/api/lead/export", body=b"{}",
                                    headers={**lead.headers(), "Content-Type": "application/json"})
    assert status == 200 and headers["content-type"] == "application/zip"
    assert "itcollect-export.zip" in headers["content-disposition"]
    names = sorted(zipfile.ZipFile(io.BytesIO(data)).namelist())
    out_dir = tmp_path / "cli-export"
    r = run_cli("-C", str(ws), "export", "--hf", str(out_dir), "--format", "all")
    assert r.returncode == 0, r.stderr
    assert names == sorted(p.relative_to(out_dir).as_posix() for p in out_dir.rglob("*") if p.is_file())
    zipped = json.loads(zipfile.ZipFile(io.BytesIO(data)).read("sharegpt.json"))
    assert zipped == json.loads((out_dir / "sharegpt.json").read_text(encoding="utf-8")) and len(zipped) == 2
    with Store(ws / "itcollect.db") as store:
        assert len(store.list_exports()) == 2   # the download was recorded as an export


def test_a_returned_dialogue_is_revised_and_sent_back_and_the_reviewer_sees_the_revision(tmp_path, llm, servers):
    """Issue 24 item 10: the annotator's "returned to me" has what a reviewer rejected, with the marks
    (span, category, severity) and the note; a revision is a new version of the turn (the old one
    kept); sent back, the reviewer's queue has it again; the lead's figures count returns and fixes."""
    ws = make_workspace(tmp_path / "ws", 2, instruction_langs=("zh",))
    srv = start(servers, ws, llm.base_url)
    ann = Client(srv.url, add_account(ws, "alice"))
    for _ in range(2):
        ann.state()
        ann.act("/api/request", {"text": "请把这句话译成中文。"})
        ann.answer()
        ann.act("/api/flag", {"note": "请看一下"})
        ann.act("/api/finish", {"reason": "one turn is enough here"})
    rev = Client(srv.url, add_account(ws, "bob", "reviewer"))
    item = rev.get("/api/review")[1]["item"]
    answer = next(t for t in item["turns"] if t["role"] == "assistant")
    assert rev.post("/api/review/mark", {"dialogue_id": item["dialogue_id"], "turn_id": answer["turn_id"],
                                         "category": "accuracy/mistranslation", "severity": "major", "start": 0,
                                         "end": 2, "note": "wrong word"})[0] == 200
    status, out = rev.post("/api/review/verdict", {"dialogue_id": item["dialogue_id"], "verdict": "reject",
                                                   "note": "the first words are wrong"})
    assert status == 200
    second = out["item"]
    assert rev.post("/api/review/verdict", {"dialogue_id": second["dialogue_id"], "verdict": "accept"})[0] == 200
    status, out = ann.get("/api/returned")
    assert status == 200 and [d["dialogue_id"] for d in out["dialogues"]] == [item["dialogue_id"]]
    d = out["dialogues"][0]
    assert d["returned"] == {**d["returned"], "verdict": "rejected", "reviewer": "bob",
                             "note": "the first words are wrong"}
    marked = next(t for t in d["turns"] if t["role"] == "assistant")
    assert [(m["span"], m["category"], m["severity"], m["note"]) for m in marked["marks"]] == [
        (answer["content"][:2], "accuracy/mistranslation", "major", "wrong word")]
    # another person's dialogue is not theirs to revise; sending back needs a revision first
    other = Client(srv.url, add_account(ws, "cleo"))
    assert other.get("/api/returned")[1]["dialogues"] == []
    status, out = other.post("/api/returned/revise", {"dialogue_id": d["dialogue_id"], "turn_id": answer["turn_id"],
                                                      "text": "别人的版本。"}, version=False)
    assert status == 409 and "not returned to you" in out["error"]
    status, out = ann.post("/api/returned/send", {"dialogue_id": d["dialogue_id"]}, version=False)
    assert status == 409 and "revise at least one answer" in out["error"]
    status, out = ann.post("/api/returned/revise", {"dialogue_id": d["dialogue_id"], "turn_id": answer["turn_id"],
                                                    "text": "我改好的译文。"}, version=False)
    assert status == 200 and "old one is kept" in out["message"]
    status, out = ann.post("/api/returned/send", {"dialogue_id": d["dialogue_id"], "note": "已改"}, version=False)
    assert status == 200 and out["dialogues"] == []
    with Store(ws / "itcollect.db") as store:
        turns = [t for t in store.get_turns(d["dialogue_id"], include_inactive=True) if t["role"] == "assistant"]
        assert [(t["state"], t["author"], t["annotator"]) for t in turns] == [
            ("rejected", "model", None), ("active", "human", "alice")]
        assert turns[1]["original_content"] == answer["content"]
        assert turns[1]["params"]["revision"] == {"annotator": "alice", "replaces": answer["turn_id"],
                                                  "answers": "rejected"}
        dia = store.get_dialogue(d["dialogue_id"])
        assert dia["review_status"] is None
        assert dia["meta"]["reviews"][-1] == {**dia["meta"]["reviews"][-1], "sent_back_by": "alice",
                                              "undoes": "rejected", "note": "已改"}
    # the reviewer sees the revision in their queue
    status, out = rev.get("/api/review")
    assert out["item"]["dialogue_id"] == d["dialogue_id"]
    revised = next(t for t in out["item"]["turns"] if t["role"] == "assistant" and t["state"] == "active")
    assert revised["content"] == "我改好的译文。" and revised["revision"]["annotator"] == "alice"
    lead = Client(srv.url, add_account(ws, "lee", "lead"))
    quality = lead.get("/api/lead")[1]["quality"]
    assert (quality["alice"]["returns"], quality["alice"]["fixes"]) == (1, 1)
