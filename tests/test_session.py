"""``itcollect session`` through the real CLI against the loopback OpenAI-compatible server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from itcollect.store import Store, source_id_for
from itcollect.workspace import Workspace, init_workspace

from .conftest import run_cli

ZH_DIGITS = "零一二三四五六七八九"
SOURCES = [
    "The city council approved the budget for the new bridge on Monday.",
    "Prices of fresh vegetables rose sharply after the storm last week.",
    "The museum will reopen to visitors after two years of renovation.",
    "Local farmers say the dry summer has cut their harvest by half.",
]


def zh_answer(body: dict, n: int) -> str:
    """A Chinese answer determined by the last request and how often it was asked (a regenerate
    asks the same messages again and must get a different text)."""
    last = body["messages"][-1]["content"]
    digest = "".join(ZH_DIGITS[int(c, 16) % 10] for c in source_id_for(last)[:6])
    return f"市议会周一批准了新桥预算，编号{digest}，第{ZH_DIGITS[n % 10]}稿。"


class CountingResponder:
    def __init__(self) -> None:
        self.seen: Counter[str] = Counter()

    def __call__(self, body: dict) -> str:
        key = json.dumps(body["messages"], ensure_ascii=False)
        n = self.seen[key]
        self.seen[key] += 1
        return zh_answer(body, n)


def make_workspace(root: Path, n_specs: int, *, instruction_langs=("en", "zh"), types=("translate", "polish"),
                   config_extra: str = "") -> Path:
    ws = init_workspace(root)
    if config_extra:
        with open(ws.config_path, "a", encoding="utf-8") as fh:
            fh.write(config_extra)
    store = ws.store
    specs = []
    for i in range(n_specs):
        text = SOURCES[i] if i < len(SOURCES) else f"{SOURCES[i % len(SOURCES)][:-1]} (report {i})."
        sid = source_id_for(text)
        store.add_source(source_id=sid, text=text, lang="en", origin_file="news.txt", origin_line=i + 1)
        specs.append({"seed": 0, "seq": i, "source_id": sid, "src_lang": "en", "tgt_lang": "zh",
                      "instruction_lang": instruction_langs[i % len(instruction_langs)], "n_turns": len(types),
                      "interaction_types": list(types), "params": {"variant": 0, "turns": [{} for _ in types]}})
    store.add_specs(specs)
    ws.close()
    return root


def events(stdout: str) -> list[tuple[str, dict]]:
    out = []
    for line in stdout.splitlines():
        tag, _, payload = line.partition(" ")
        out.append((tag, json.loads(payload)))
    return out


def session(ws: Path, name: str, script: str, url: str, *extra: str, timeout: float = 120):
    return run_cli("-C", str(ws), "session", "--annotator", name, "--base-url", url, "--model", "fake-model",
                   *extra, input=script, timeout=timeout)


@pytest.fixture
def server(fake_openai):
    fake_openai.responder = CountingResponder()
    return fake_openai


def test_scripted_session_three_dialogues_records_match_exactly(tmp_path, server):
    ws = make_workspace(tmp_path / "ws", 3)
    script = "\n".join([
        # dialogue 1 (requests in English): accept, then edit, finish
        "request Please translate this sentence into Chinese.",
        "accept",
        "request Could you make it sound more natural?",
        "edit",
        "市议会周一通过了新桥的预算。",
        ".",
        "finish",
        # dialogue 2 (requests in Chinese): regenerate then accept; a request undone; another; finish
        "request 请把这句话译成中文。",
        "regenerate",
        "accept",
        "request 请润色一下。",
        "undo",
        "request 请润色一下，让它更通顺。",
        "accept",
        "flag the source has a typo",
        "finish",
        # dialogue 3: skipped
        "skip not_news boilerplate",
        "",
    ]) + "\n"
    r = session(ws, "li.wei", script, server.base_url)
    assert r.returncode == 0, r.stderr
    ev = events(r.stdout)
    tags = [t for t, _ in ev]
    assert "error" not in tags and "endpoint_error" not in tags, r.stdout
    assert tags.count("done") == 2 and tags.count("skipped") == 1 and tags[-1] == "idle"
    assert any(t == "delta" for t in tags)  # the answers streamed

    with Store(ws / "itcollect.db") as store:
        dialogues = sorted(store.iter_dialogues(), key=lambda d: d["spec_id"])
        assert [(d["spec_id"], d["status"], d["origin"], d["annotator"], d["instruction_lang"]) for d in dialogues] == [
            (1, "done", "human", "li.wei", "en"), (2, "done", "human", "li.wei", "zh"),
            (3, "skipped", "human", "li.wei", "en")]
        assert dialogues[2]["status_reason"] == "not_news: boilerplate"
        assert dialogues[1]["flagged"] == 1 and dialogues[1]["meta"]["flags"][0]["note"] == "the source has a typo"
        assert store.spec_counts() == {"total": 3, "pending": 0, "in_progress": 0, "done": 2, "failed": 0,
                                       "skipped": 1}
        assert store.leases_held("human:li.wei") == []

        def rows(d):
            return [(t["role"], t["state"], t["author"], t["annotator"], t["interaction_type"], t["content"],
                     t["original_content"])
                    for t in sorted(store.get_turns(d["id"], include_inactive=True), key=lambda t: t["id"])]

        # as in simulate: the system prompt is rendered per call (not a turn); answers name its template
        from itcollect.kernel.prompting import load_prompts

        prompts = load_prompts({})
        system1 = prompts.render("assistant_system.j2", instruction_lang="en")
        first_answer = store.get_turns(dialogues[0]["id"])[1]
        assert (first_answer["template_name"], first_answer["template_hash"]) == (system1.name, system1.hash)
        assert first_answer["lang"] == "zh" and first_answer["params"] == {"sample": 0}
        d1 = rows(dialogues[0])
        q1 = f'Please translate this sentence into Chinese.\n\n"{SOURCES[0]}"'
        msgs1 = [{"role": "system", "content": system1.text}, {"role": "user", "content": q1}]
        a1 = zh_answer({"messages": msgs1}, 0)
        q2 = "Could you make it sound more natural?"
        a2 = zh_answer({"messages": msgs1 + [{"role": "assistant", "content": a1}, {"role": "user", "content": q2}]}, 0)
        assert d1 == [
            ("user", "active", "human", "li.wei", "translate", q1, None),
            ("assistant", "active", "model", None, "translate", a1, None),
            ("user", "active", "human", "li.wei", "polish", q2, None),
            ("assistant", "active", "human", "li.wei", "polish", "市议会周一通过了新桥的预算。", a2),
        ]
        d2 = rows(dialogues[1])
        system2 = prompts.render("assistant_system.j2", instruction_lang="zh").text
        assert "Chinese" in system2  # rendered for a Chinese-instruction dialogue
        q1 = f'请把这句话译成中文。\n\n"{SOURCES[1]}"'
        msgs2 = [{"role": "system", "content": system2}, {"role": "user", "content": q1}]
        rejected, kept = zh_answer({"messages": msgs2}, 0), zh_answer({"messages": msgs2}, 1)
        assert rejected != kept
        after = msgs2 + [{"role": "assistant", "content": kept}]
        undone_q, final_q = "请润色一下。", "请润色一下，让它更通顺。"
        undone_a = zh_answer({"messages": after + [{"role": "user", "content": undone_q}]}, 0)
        final_a = zh_answer({"messages": after + [{"role": "user", "content": final_q}]}, 0)
        assert d2 == [
            ("user", "active", "human", "li.wei", "translate", q1, None),
            ("assistant", "rejected", "model", None, "translate", rejected, None),
            ("assistant", "active", "model", None, "translate", kept, None),
            ("user", "undone", "human", "li.wei", "polish", undone_q, None),
            ("assistant", "undone", "model", None, "polish", undone_a, None),
            ("user", "active", "human", "li.wei", "polish", final_q, None),
            ("assistant", "active", "model", None, "polish", final_a, None),
        ]
        # the model's answers carry their provenance: model name and the ledger's call key
        answers = [t for t in store.get_turns(dialogues[1]["id"], include_inactive=True) if t["role"] == "assistant"]
        assert all(t["model"] == "fake-model" and t["call_key"] for t in answers)
        assert len({t["call_key"] for t in answers}) == len(answers)
        assert rows(dialogues[2]) == []
        actions = [e["action"] for e in store.session_events(annotator="li.wei")]
        assert actions.count("regenerate") == 1 and actions.count("undo") == 1 and actions.count("edit") == 1
        assert actions.count("finish") == 2 and actions.count("skip") == 1 and actions.count("flag") == 1

    stats = json.loads(run_cli("-C", str(ws), "stats", "--json").stdout)
    me = stats["annotator_details"]["li.wei"]
    assert me["dialogues"] == 2 and me["skipped"] == 1 and me["turns"] == 4 and me["edits"] == 1
    assert me["regenerations"] == 1 and me["skip_reasons"] == {"not_news": 1}
    assert me["median_seconds_per_dialogue"] is not None
    figures = stats["annotators"]["li.wei"]  # the contract's keys, exactly
    assert list(figures) == ["dialogues", "turns", "median_active_s", "s_per_word", "accepted_unchanged_share",
                             "edit_size", "skip_rate", "flag_rate", "fast_accepts", "control_items",
                             "control_catch_rate", "overlap_specs", "agreement_chrf", "review",
                             "returns", "fixes", "early_finishes"]  # (the last three: issue 24)
    assert figures["dialogues"] == 2 and figures["turns"] == 4 and figures["skip_rate"] == round(1 / 3, 4)
    assert figures["control_items"] == 0 and figures["control_catch_rate"] is None
    assert figures["agreement_chrf"] is None and figures["review"] == {"accepted": 0, "rejected": 0, "fixed": 0}
    assert stats["dialogues"]["by_origin"]["human"] == 3
    table = run_cli("-C", str(ws), "stats").stdout
    assert "Annotators" in table and "li.wei" in table and "not_news 1" in table


def test_protocol_errors_warnings_and_overrides(tmp_path, server):
    ws = make_workspace(tmp_path / "ws", 1, instruction_langs=("en",))
    server.responder = lambda body: "The council approved the budget for the new bridge on Monday."
    script = "\n".join([
        "accept",                       # nothing to accept yet
        f"request Translate into Chinese: {SOURCES[0]}",  # pasted source: not attached twice
        "request again?",               # must decide first
        "accept",                       # English answer to a zh target: warning, reason required
        "accept proper names only, checked by hand",
        "bogus",
        "skip because",                 # not a valid reason
        "quit",
    ]) + "\n"
    r = session(ws, "ann", script, server.base_url)
    assert r.returncode == 0, r.stderr
    ev = events(r.stdout)
    errors = [d["message"] for t, d in ev if t == "error"]
    assert len(errors) == 5
    assert "no answer to accept" in errors[0] and "decide on the last answer" in errors[1]
    assert "warnings" in errors[2] and "unknown command" in errors[3] and "skip reason" in errors[4]
    request = next(d for t, d in ev if t == "request")
    assert request["content"] == f"Translate into Chinese: {SOURCES[0]}" and request["warnings"] == []
    answer = next(d for t, d in ev if t == "answer")
    assert any(w.startswith("wrong_language") for w in answer["warnings"])
    with Store(ws / "itcollect.db") as store:
        override = [e for e in store.session_events(annotator="ann") if e["action"] == "override"]
        assert override[0]["detail"]["reason"] == "proper names only, checked by hand"
        turn = store.get_turns(store.dialogue_for_spec(1)["id"])[-1]
        assert turn["warnings"] and turn["role"] == "assistant"
        assert turn["params"]["override"] == "proper names only, checked by hand"
        assert store.get_spec(1)["status"] == "in_progress"  # quit keeps the lease for the resume


def test_unreachable_endpoint_gives_retry_choice_not_a_crash(tmp_path, server):
    import socket

    ws = make_workspace(tmp_path / "ws", 1)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    dead = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    sock.close()  # nothing listens there now
    r = session(ws, "ann", "request Please translate this into Chinese.\nretry\nquit\n", dead)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    ev = events(r.stdout)
    assert [t for t, _ in ev].count("endpoint_error") == 2
    assert [d["expect"] for t, d in ev if t == "ready"][-1] == "retry"
    # the endpoint is back: the request is still there and gets its answer first thing
    r = session(ws, "ann", "accept\nfinish one turn is enough here\n", server.base_url)
    ev = events(r.stdout)
    opened = next(d for t, d in ev if t == "dialogue")
    assert opened["resumed"] and "no answer yet" in opened["message"]
    assert "answer" in [t for t, _ in ev]
    assert "done" in [t for t, _ in ev]
    with Store(ws / "itcollect.db") as store:
        turns = store.get_turns(store.dialogue_for_spec(1)["id"], include_inactive=True)
        assert [t["role"] for t in turns] == ["user", "assistant"]


def test_review_walks_flagged_and_edited_dialogues(tmp_path, server):
    ws = make_workspace(tmp_path / "ws", 3)
    script = "\n".join([
        "request Please translate this sentence into Chinese.", "accept", "finish one turn is enough here",
        "request 请把这句话译成中文。", "edit", "我的译文。", ".", "finish one turn is enough here",
        "request Please translate this sentence into Chinese.", "accept", "flag check the numbers", "finish one turn is enough here",
    ]) + "\n"
    assert session(ws, "ann", script, server.base_url).returncode == 0
    r = run_cli("-C", str(ws), "session", "--annotator", "rev", "--review", input="accept fine\nreject wrong\n")
    assert r.returncode == 0, r.stderr
    ev = events(r.stdout)
    reviewed = [d for t, d in ev if t == "review"]
    assert [d["spec_id"] for d in reviewed] == [2, 3] and ev[-1][0] == "idle"
    edited = next(t for t in reviewed[0]["turns"] if t["role"] == "assistant")
    assert edited["author"] == "human" and edited["original_content"] and edited["content"] == "我的译文。"
    with Store(ws / "itcollect.db") as store:
        assert store.dialogue_for_spec(2)["review_status"] == "accepted"
        assert store.dialogue_for_spec(3)["review_status"] == "rejected"
        assert store.dialogue_for_spec(1)["review_status"] is None
        review = store.dialogue_for_spec(3)["meta"]["reviews"][0]
        assert (review["reviewer"], review["verdict"], review["note"]) == ("rev", "rejected", "wrong")


def test_guidelines_section_for_current_type(tmp_path, server):
    ws = make_workspace(tmp_path / "ws", 2, instruction_langs=("zh", "en"), types=("translate", "explain"))
    r = session(ws, "ann", "guidelines\nrequest 请把这句话译成中文。\naccept\nguidelines\nguidelines retarget en\nquit\n",
                server.base_url)
    g = [d for t, d in events(r.stdout) if t == "guidelines"]
    assert [(x["type"], x["lang"]) for x in g] == [("translate", "zh"), ("explain", "zh"), ("retarget", "en")]
    assert g[0]["text"].startswith("## type: translate") and "如何评判回答" in g[0]["text"]
    assert "## type: explain" in g[1]["text"] and "Now give it in French." in g[2]["text"]


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_sixteen_sessions_drain_two_hundred_specs_each_exactly_once(tmp_path, server, backend, request, monkeypatch):
    target = str(tmp_path / "ws" / "itcollect.db")
    if backend == "postgresql":  # the sessions' processes and this test on one PostgreSQL database
        target = request.getfixturevalue("pg_url")
        monkeypatch.setenv("ITCOLLECT_STORE_URL", target)
    ws = make_workspace(tmp_path / "ws", 200, types=("translate",))
    script = "request Please translate this sentence into Chinese.\naccept\nfinish\n" * 200
    script_file = tmp_path / "script.txt"
    script_file.write_text(script, encoding="utf-8")
    env = dict(os.environ, ITCOLLECT_PROGRESS="0")
    env.pop("OPENAI_BASE_URL", None)
    procs = []
    for i in range(16):
        with open(script_file, encoding="utf-8") as fh:
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "itcollect", "-C", str(ws), "session", "--annotator", f"a{i:02d}",
                 "--base-url", server.base_url, "--model", "fake-model"],
                stdin=fh, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env))
    outs = [p.communicate(timeout=280) for p in procs]
    for p, (_out, err) in zip(procs, outs):
        assert p.returncode == 0, err
    done = [d["dialogue_id"] for out, _ in outs for t, d in events(out) if t == "done"]
    assert len(done) == 200 and len(set(done)) == 200
    assert all(not any(t == "error" for t, _ in events(out)) for out, _ in outs)
    with Store(target) as store:
        assert store.spec_counts()["done"] == 200
        dialogues = list(store.iter_dialogues())
        assert len(dialogues) == 200 and {d["spec_id"] for d in dialogues} == set(range(1, 201))
        for d in dialogues:
            turns = store.get_turns(d["id"], include_inactive=True)
            assert [t["role"] for t in turns] == ["user", "assistant"]
            assert {t["annotator"] for t in turns if t["role"] == "user"} == {d["annotator"]}
    # every answer paid once
    assert server.paid_twice() == {}


def _read_until(proc: subprocess.Popen, tag: str, seen: list, timeout: float = 60) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        t, _, payload = line.partition(" ")
        seen.append((t, json.loads(payload)))
        if t == tag:
            return seen[-1][1]
    raise AssertionError(f"no {tag!r} event; saw {[t for t, _ in seen]}")


def test_kill_9_during_streamed_answer_resumes_at_the_right_turn(tmp_path, server):
    ws = make_workspace(tmp_path / "ws", 2)
    env = dict(os.environ, ITCOLLECT_PROGRESS="0")
    env.pop("OPENAI_BASE_URL", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "itcollect", "-C", str(ws), "session", "--annotator", "ann",
         "--base-url", server.base_url, "--model", "fake-model"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, bufsize=1)
    seen: list = []
    try:
        _read_until(proc, "ready", seen)
        proc.stdin.write("request Please translate this sentence into Chinese.\n")
        proc.stdin.flush()
        _read_until(proc, "answer", seen)
        proc.stdin.write("accept\n")
        proc.stdin.flush()
        _read_until(proc, "ok", seen)
        server.set_latency(60.0)  # the next answer hangs on the wire
        n_before = server.total_requests
        proc.stdin.write("request Could you make it sound more natural?\n")
        proc.stdin.flush()
        _read_until(proc, "request", seen)  # the request is committed
        deadline = time.time() + 30
        while server.total_requests == n_before and time.time() < deadline:
            time.sleep(0.05)
        assert server.total_requests > n_before  # the answer is being produced
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdin.close()
        proc.stdout.close()
        proc.stderr.close()
    server.set_latency(0.0)

    with Store(ws / "itcollect.db") as store:
        did = store.dialogue_for_spec(1)["id"]
        before = store.get_turns(did, include_inactive=True)
        assert [(t["role"], t["state"]) for t in before] == [("user", "active"), ("assistant", "active"),
                                                              ("user", "active")]
        assert store.get_spec(1)["status"] == "in_progress"

    r = session(ws, "ann", "accept\nfinish\nquit\n", server.base_url)
    assert r.returncode == 0, r.stderr
    ev = events(r.stdout)
    opened = next(d for t, d in ev if t == "dialogue")
    assert opened["spec_id"] == 1 and opened["resumed"] is True
    assert "2 request(s) and 1 answer(s) kept" in opened["message"] and "asked again" in opened["message"]
    assert [d["role"] for t, d in ev if t == "turn"] == ["user", "assistant", "user"]
    answer = next(d for t, d in ev if t == "answer")
    assert answer["idx"] == 3
    assert "done" in [t for t, _ in ev]
    with Store(ws / "itcollect.db") as store:
        after = store.get_turns(did, include_inactive=True)
        assert [t["id"] for t in after[:3]] == [t["id"] for t in before]
        assert [(t["role"], t["content"]) for t in after[:3]] == [(t["role"], t["content"]) for t in before]
        assert [t["role"] for t in after] == ["user", "assistant", "user", "assistant"]
        assert store.dialogue_for_spec(1)["status"] == "done"
        actions = [e["action"] for e in store.session_events(annotator="ann")]
        assert actions.count("resume") == 1 and actions.count("accept") == 2


def test_bad_annotator_name_and_missing_workspace_are_clear(tmp_path):
    ws = make_workspace(tmp_path / "ws", 1)
    r = run_cli("-C", str(ws), "session", "--annotator", "li wei", "--base-url", "http://127.0.0.1:9/v1",
                "--model", "m", input="quit\n")
    assert r.returncode == 1 and "annotator name" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("-C", str(tmp_path / "nowhere"), "session", "--annotator", "x", input="")
    assert r.returncode == 1 and "no itcollect workspace" in r.stderr
    assert run_cli("-C", str(ws), "session", input="").returncode == 2


def test_workspace_helper_is_valid(tmp_path):
    ws = make_workspace(tmp_path / "ws", 2)
    w = Workspace(ws)
    assert w.store.spec_counts()["pending"] == 2
    w.close()


def test_guides_have_a_section_for_every_interaction_type_in_both_languages():
    from itcollect.kernel.taxonomy import INTERACTION_TYPES
    from itcollect.session.guidelines import guide_sections, guideline_section

    for lang in ("en", "zh"):
        sections = guide_sections(lang)
        for type_id in INTERACTION_TYPES:
            assert f"type:{type_id}" in sections, (lang, type_id)
        for topic in ("screen", "requests", "judging", "skipping", "time"):
            assert f"general:{topic}" in sections, (lang, topic)
    assert "## type: length" in guideline_section("length", "zh") and "二十个字" in guideline_section("length", "zh")
    assert guideline_section("no_such_type", "en").startswith("## general: judging")


def test_checks_follow_what_the_human_asked_not_only_the_plan():
    from itcollect.session.wording import human_request_params as h

    langs = ("en", "zh", "de", "fr")
    assert h("length", "请控制在二十个字以内。", "zh", langs) == {"mode": "max", "n": 20, "unit": "characters"}
    assert h("length", "Say it in at most 12 words.", "en", langs) == {"mode": "max", "n": 12, "unit": "words"}
    assert h("length", "Can you make it shorter?", "en", langs) == {"mode": "shorter"}
    assert h("style", "请改成新闻标题的风格。", "zh", langs) == {"register": "headline"}
    assert h("style", "Make it sound poetic.", "en", langs) == {}
    assert h("retarget", "Now give it in French.", "zh", langs) == {"lang": "fr"}
    assert h("retarget", "现在请译成德语。", "en", langs) == {"lang": "de"}


def test_reference_shown_only_when_the_config_allows(tmp_path, server):
    for allowed in (False, True):
        ws = make_workspace(tmp_path / f"ws{allowed}", 1)
        if allowed:
            cfg = ws / "itcollect.toml"
            cfg.write_text(cfg.read_text(encoding="utf-8").replace("show_reference = false", "show_reference = true"),
                           encoding="utf-8")
        with Store(ws / "itcollect.db") as store:
            store.add_reference(source_id_for(SOURCES[0]), "zh", "市议会周一批准了新桥的预算。")
        r = session(ws, "ann", "quit\n", server.base_url)
        opened = next(d for t, d in events(r.stdout) if t == "dialogue")
        assert opened["reference"] == ("市议会周一批准了新桥的预算。" if allowed else None)
        assert opened["source"] == SOURCES[0] and (opened["src_lang"], opened["tgt_lang"]) == ("en", "zh")
        assert opened["plan"] == [{"type": "translate"}, {"type": "polish"}]


def test_no_endpoint_configured_fails_before_leasing_anything(tmp_path):
    ws = make_workspace(tmp_path / "ws", 1)
    r = run_cli("-C", str(ws), "session", "--annotator", "ann", input="request hi\n",
                env={"OPENAI_API_KEY": ""})
    assert r.returncode == 1 and "no LLM endpoint configured" in r.stderr and "Traceback" not in r.stderr
    with Store(ws / "itcollect.db") as store:
        assert store.get_spec(1)["status"] == "pending" and list(store.iter_dialogues()) == []


def _spec_state(ws: Path) -> dict[int, tuple[str, str | None, int]]:
    """spec id -> (status, lease holder, dialogues for it)."""
    store = Store(ws / "itcollect.db")
    try:
        out = {}
        for spec in store.iter_specs():
            lease = store.lease_of(spec["id"])
            out[spec["id"]] = (spec["status"], lease["holder"] if lease else None,
                               1 if store.dialogue_for_spec(spec["id"]) is not None else 0)
        return out
    finally:
        store.close()


def test_quit_right_after_finish_gives_the_freshly_opened_spec_back(tmp_path, server):
    """`finish` opens (and leases) the next spec before a script can say `quit`: quitting on a
    dialogue with nothing written must return it to the pool at once, not hold it for 30 min."""
    ws = make_workspace(tmp_path / "ws", 2, instruction_langs=("en",), types=("translate",))
    script = "request Please translate this sentence into Chinese.\naccept\nfinish\nquit\n"
    r = session(ws, "li.wei", script, server.base_url)
    assert r.returncode == 0, r.stderr
    tags = [t for t, _ in events(r.stdout)]
    assert tags.count("done") == 1 and tags.count("dialogue") == 2 and tags[-1] == "bye"
    state = _spec_state(ws)
    assert sorted(state.values()) == [("done", None, 1), ("pending", None, 0)]
    # another annotator gets that spec at once, as a fresh dialogue (not a takeover)
    r2 = session(ws, "chen.yu", "quit\n", server.base_url)
    dialogue = next(d for t, d in events(r2.stdout) if t == "dialogue")
    assert dialogue["resumed"] is False
    # end of input quits the same way
    r3 = session(ws, "chen.yu", "", server.base_url)
    assert r3.returncode == 0, r3.stderr
    assert sorted(_spec_state(ws).values()) == [("done", None, 1), ("pending", None, 0)]


def test_quit_with_turns_keeps_the_lease_and_resumes(tmp_path, server):
    ws = make_workspace(tmp_path / "ws", 2, instruction_langs=("en",), types=("translate", "polish"))
    r = session(ws, "li.wei", "request Please translate this sentence into Chinese.\nquit\n", server.base_url)
    assert r.returncode == 0, r.stderr
    state = _spec_state(ws)
    held = [s for s in state.values() if s[1] is not None]
    assert held == [("in_progress", "human:li.wei", 1)]
    # a request that was undone still counts as work on record: the lease stays too
    r = session(ws, "li.wei", "undo\nquit\n", server.base_url)
    dialogue = next(d for t, d in events(r.stdout) if t == "dialogue")
    assert dialogue["resumed"] is True
    assert [s for s in _spec_state(ws).values() if s[1] is not None] == [("in_progress", "human:li.wei", 1)]


def test_a_revision_after_an_explanation_is_compared_with_the_translation(tmp_path, fake_openai):
    """The session's checks come from the same expectations as simulate's: a polish after an
    explanation must differ from the last *translation*, not from the explanation."""
    translation = "市议会周一批准了新桥的预算。"

    def responder(body):
        last = body["messages"][-1]["content"]
        if "Why" in last:
            return "I chose “批准” because it is the usual verb for a council approving a budget."
        return translation  # the translation, and the same text again for the polish

    fake_openai.responder = responder
    ws = make_workspace(tmp_path / "ws", 1, instruction_langs=("en",), types=("translate", "explain", "polish"))
    script = "\n".join(["request Please translate this sentence into Chinese.", "accept",
                        "request Why did you choose “批准”?", "accept",
                        "request Could you make it sound more natural?", "quit"]) + "\n"
    r = session(ws, "li.wei", script, fake_openai.base_url)
    assert r.returncode == 0, r.stderr
    answers = [d for t, d in events(r.stdout) if t == "answer"]
    assert len(answers) == 3
    assert answers[1]["warnings"] == []
    assert any(w.startswith("unchanged") for w in answers[2]["warnings"]), answers[2]
