"""The web server's robustness over plain HTTP (issue 24 items 4, 7, 9): an action sent twice is
applied once (also across a restart), login rate limiting, the account-name rule, the access log
without tokens, leases of revoked accounts and of people who do not annotate, and the lead's
release of any lease. The real CLI, the real server in a subprocess, the loopback LLM server, the
real store."""

from __future__ import annotations

import re
import unicodedata

import pytest

from itcollect.store import Store

from .conftest import run_cli
from .test_session import CountingResponder, make_workspace
from .test_web import set_config, start
from .webutil import Client, add_account, http


@pytest.fixture
def llm(fake_openai):
    fake_openai.responder = CountingResponder()
    return fake_openai


@pytest.fixture
def servers(web_servers):
    return web_servers


ACCESS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (\S+) (GET|POST) (\S+) (\d{3}|-) (\S+) \d+\.\d$")


def flags(ws, name="alice"):
    with Store(ws / "itcollect.db") as store:
        return [e for e in store.session_events(annotator=name) if e["action"] == "flag"]


# -- item 4: an action sent twice is applied once --------------------------------------------------------
def test_an_action_sent_twice_with_its_key_is_applied_once_also_after_a_restart(tmp_path, llm, servers):
    ws = make_workspace(tmp_path / "ws", 2)
    srv = start(servers, ws, llm.base_url)
    ann = Client(srv.url, add_account(ws, "alice"))
    ann.state()
    first = ann.post("/api/flag", {"note": "check the number"}, extra={"X-Action-Key": "k-1"})
    assert first[0] == 200 and not first[1].get("replayed")
    # the same action again (the page did not hear the answer): the version it carries is now old,
    # but the key says it was applied: the state comes back, nothing is applied twice
    again = ann.post("/api/flag", {"note": "check the number", "version": 0}, extra={"X-Action-Key": "k-1"})
    assert again[0] == 200 and again[1]["replayed"] is True and "Already saved" in again[1]["message"]
    assert len(flags(ws)) == 1
    # another key is another action
    assert ann.post("/api/flag", {"note": "and the name"}, extra={"X-Action-Key": "k-2"})[0] == 200
    assert len(flags(ws)) == 2

    # the keys live in the store: after kill -9 and a restart on the same workspace, still applied once
    srv.kill9()
    srv2 = start(servers, ws, llm.base_url)
    ann.base = srv2.url
    ann.state()
    replay = ann.post("/api/flag", {"note": "and the name"}, extra={"X-Action-Key": "k-2"})
    assert replay[0] == 200 and replay[1]["replayed"] is True
    assert len(flags(ws)) == 2
    # an action refused (here: the wrong version) does not use up its key: sent again right, it is applied
    refused = ann.post("/api/flag", {"note": "third", "version": -5}, extra={"X-Action-Key": "k-3"})
    assert refused[0] == 409
    assert ann.post("/api/flag", {"note": "third"}, extra={"X-Action-Key": "k-3"})[1].get("replayed") is None
    assert len(flags(ws)) == 3


# -- item 9: names, rate limit, access log -----------------------------------------------------------------
def test_account_names_are_a_safe_set(tmp_path):
    ws = make_workspace(tmp_path / "ws", 1)
    for bad in ("<img/src=x/onerror=alert(1)>", "a/b", "../etc", "-dash", ".dot", "li wei", "x" * 65, "a\\b",
                "semi;colon"):
        r = run_cli("-C", str(ws), "annotators", "add", "--", bad)
        assert r.returncode == 1, bad
        assert "is not allowed" in r.stderr and "letters of any script" in r.stderr and "Traceback" not in r.stderr
    for good in ("王芳", "li.wei", "anna-k_2", "Ünal", "x" * 64, "9lives"):
        assert run_cli("-C", str(ws), "annotators", "add", good).returncode == 0, good
    decomposed = "Jose\u0301"  # NFC-normalised: the same account as the composed spelling
    assert run_cli("-C", str(ws), "annotators", "add", decomposed).returncode == 0
    again = run_cli("-C", str(ws), "annotators", "add", unicodedata.normalize("NFC", decomposed))
    assert again.returncode == 1 and "already has an account" in again.stderr
    with Store(ws / "itcollect.db") as store:
        assert store.get_account("José") is not None
    # the terminal session follows the same rule
    r = run_cli("-C", str(ws), "session", "--annotator", "a/b", "--base-url", "http://127.0.0.1:9/v1",
                "--model", "m", input="quit\n")
    assert r.returncode == 1 and "is not allowed" in r.stderr


def test_failed_logins_are_limited_logged_and_kept_across_a_restart(tmp_path, llm, servers):
    ws = make_workspace(tmp_path / "ws", 1)
    srv = start(servers, ws, llm.base_url)
    good = add_account(ws, "alice")
    token = good.split("token=", 1)[1]
    for k in range(10):
        status, _, _, _ = http(srv.url, "GET", f"/login?token=wrong{k}")
        assert status == 401
    status, headers, body, _ = http(srv.url, "GET", "/login?token=wrong-again")
    assert status == 429 and 1 <= int(headers["retry-after"]) <= 60 and b"too many failed logins" in body
    # even the right link waits: the client is slowed, whatever it sends
    assert http(srv.url, "GET", f"/login?token={token}")[0] == 429
    srv.kill9()
    err = srv.stderr()
    assert err.count("failed login from 127.0.0.1") == 10
    # the counters are in the store: a restart does not reset them
    srv2 = start(servers, ws, llm.base_url)
    assert http(srv2.url, "GET", f"/login?token={token}")[0] == 429
    with Store(ws / "itcollect.db") as store:
        assert len(store.login_failures("127.0.0.1", 60.0)) == 10
        # a minute later (the failures' clock moved back) the client may log in again
        with store.transaction() as c:
            c.execute("UPDATE web_login_failures SET at = at - 61")
    ann = Client(srv2.url)
    assert ann.login(good) == 303 and ann.cookie
    assert ann.login_headers["location"] == "/"  # sent on to a URL without the token
    srv2.stop()
    for text in (err, srv2.stderr()):
        assert token not in text and "token=" not in text


def test_an_access_log_line_per_request_without_tokens(tmp_path, llm, servers):
    ws = make_workspace(tmp_path / "ws", 1)
    srv = start(servers, ws, llm.base_url)
    url = add_account(ws, "alice")
    token = url.split("token=", 1)[1]
    ann = Client(srv.url, url)
    ann.state()
    assert ann.post("/api/flag", {"note": "x"})[0] == 200
    assert http(srv.url, "GET", "/api/state")[0] == 401
    srv.stop()
    lines = [m for m in (ACCESS.match(line) for line in srv.stderr().splitlines()) if m]
    got = [(m.group(2), m.group(3), m.group(4), m.group(5)) for m in lines]
    assert ("GET", "/login", "303", "alice") in got
    assert ("GET", "/api/state", "200", "alice") in got
    assert ("POST", "/api/flag", "200", "alice") in got
    assert ("GET", "/api/state", "401", "-") in got
    assert all(m.group(1) == "127.0.0.1" for m in lines)
    assert token not in srv.stderr()

    # [web] access_log = PATH: the lines go to that file (relative to the workspace) instead
    set_config(ws, 'access_log = ""', 'access_log = "logs/access.log"')
    srv2 = start(servers, ws, llm.base_url)
    url2 = run_cli("-C", str(ws), "annotators", "add", "alice", "--new-token").stdout.strip().splitlines()[-1]
    Client(srv2.url, url2).state()
    srv2.stop()
    written = (ws / "logs" / "access.log").read_text(encoding="utf-8").splitlines()
    assert any(ACCESS.match(line) and " GET /api/state 200 alice " in line for line in written)
    assert not any(ACCESS.match(line) for line in srv2.stderr().splitlines())
    assert url2.split("token=", 1)[1] not in "".join(written)


# -- item 7: leases ---------------------------------------------------------------------------------------
def test_revoking_an_account_gives_its_lease_back_with_its_turns(tmp_path, llm, servers):
    ws = make_workspace(tmp_path / "ws", 1)
    srv = start(servers, ws, llm.base_url)
    alice = Client(srv.url, add_account(ws, "alice"))
    st = alice.state()
    spec = st["dialogue"]["spec_id"]
    alice.act("/api/request", {"text": "Please translate this into Chinese."})
    alice.answer()
    alice.act("/api/accept")
    r = run_cli("-C", str(ws), "annotators", "revoke", "alice")
    assert r.returncode == 0 and "1 leased spec(s) went back to the pool" in r.stdout
    with Store(ws / "itcollect.db") as store:
        assert store.lease_of(spec) is None and store.get_spec(spec)["status"] == "pending"
    assert alice.get("/api/state")[0] == 401
    # the next annotator continues the dialogue, with alice's committed turns
    bob = Client(srv.url, add_account(ws, "bob"))
    d = bob.state()["dialogue"]
    assert d["spec_id"] == spec and [t["role"] for t in d["turns"]] == ["user", "assistant"]


def test_reviewers_and_leads_take_no_lease_and_the_lead_releases_any(tmp_path, llm, servers):
    ws = make_workspace(tmp_path / "ws", 2)
    srv = start(servers, ws, llm.base_url)
    rev = Client(srv.url, add_account(ws, "rev", "reviewer"))
    lead = Client(srv.url, add_account(ws, "lee", "lead"))
    for person, home in ((rev, "/review"), (lead, "/lead")):
        status, out = person.get("/api/state")
        assert status == 403 and out["home"] == home and out["code"] == "role"
    with Store(ws / "itcollect.db") as store:
        assert store.lease_list() == []

    alice = Client(srv.url, add_account(ws, "alice"))
    spec = alice.state()["dialogue"]["spec_id"]
    status, out = lead.get("/api/lead")
    assert status == 200
    assert [(x["spec_id"], x["copy"], x["holder"], x["live"], x["turns"]) for x in out["leases"]] == \
        [(spec, 0, "alice", True, 0)]
    assert rev.post("/api/lead/release", {"spec_id": spec, "copy": 0}, version=False)[0] == 403
    status, out = lead.post("/api/lead/release", {"spec_id": spec, "copy": 0}, version=False)
    assert status == 200 and out["released"] == {"spec_id": spec, "copy": 0, "holder": "alice"}
    assert lead.get("/api/lead")[1]["leases"] == []
    assert lead.post("/api/lead/release", {"spec_id": spec, "copy": 0}, version=False)[0] == 404
    # alice's page moves on at its next request, and says why
    st = alice.state()
    assert "gave this dialogue back" in (st["message"] or "")
    with Store(ws / "itcollect.db") as store:
        assert [lease["spec_id"] for lease in store.lease_list()] == [st["dialogue"]["spec_id"]]


def test_the_guards_on_both_store_backends(store):
    """The store side of items 4 and 9 on SQLite and on PostgreSQL: an action key is claimed once
    per account, failed logins are counted per client in a window."""
    assert store.claim_action_key("alice", "k1", "/api/flag") is True
    assert store.claim_action_key("alice", "k1", "/api/flag") is False
    assert store.claim_action_key("bob", "k1", "/api/flag") is True  # keys are per account
    assert store.forget_action_keys(now=10**11) == 2
    for k in range(3):
        store.record_login_failure("10.0.0.1", now=1000.0 + k)
    store.record_login_failure("10.0.0.2", now=1001.0)
    assert store.login_failures("10.0.0.1", 60.0, now=1030.0) == [1000.0, 1001.0, 1002.0]
    assert store.login_failures("10.0.0.1", 60.0, now=1061.5) == [1002.0]
