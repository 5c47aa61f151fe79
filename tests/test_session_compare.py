"""``itcollect session --compare A,B[,..]``: every system answers each request, the person picks,
blind. Through the real CLI (line protocol) against the loopback OpenAI-compatible server, one real
call per system, a real SQLite store; then ``stats --compare --json`` and ``export --format dpo``
read what the session recorded."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from itcollect.session.compare import label_order, parse_rank
from itcollect.store import Store

from .conftest import run_cli
from .test_session import _read_until, events, make_workspace, zh_answer

#: each system writes its own (Chinese) answer, so the candidates differ and pass the checks
MARK = {"qwen-72b": "甲", "our-sft": "乙", "mini-x": "丙"}


class SystemResponder:
    def __init__(self) -> None:
        self.seen: Counter[str] = Counter()

    def __call__(self, body: dict) -> str:
        key = body["model"] + json.dumps(body["messages"], ensure_ascii=False)
        n = self.seen[key]
        self.seen[key] += 1
        if body["model"] == "english-x":  # a system that answers in the wrong language
            return "The city council approved the budget for the new bridge on Monday, it said."
        return zh_answer(body, n).replace("稿。", f"稿，{MARK.get(body['model'], '丁')}版。")


def systems_config(url: str, down_url: str | None = None) -> str:
    text = (f'\n[llm.systems.qwen72]\nbase_url = "{url}"\nmodel = "qwen-72b"\n'
            f'\n[llm.systems.ours]\nbase_url = "{url}"\nmodel = "our-sft"\n')
    if down_url:
        text += f'\n[llm.systems.down]\nbase_url = "{down_url}"\nmodel = "gone"\n'
    return text


def compare_session(ws: Path, name: str, script: str, url: str, systems: str, timeout: float = 120):
    return run_cli("-C", str(ws), "session", "--annotator", name, "--base-url", url, "--compare", systems,
                   input=script, timeout=timeout)


@contextlib.contextmanager
def live_session(ws: Path, name: str, systems: str, *extra: str) -> Iterator[tuple[subprocess.Popen, Callable[..., dict]]]:
    """``session --compare`` in a subprocess speaking the line protocol: yields the process and
    ``say(line, until_tag)`` (writes a line, returns the next event with that tag); killed if
    still running afterwards, its pipes closed."""
    env = dict(os.environ, ITCOLLECT_PROGRESS="0")
    env.pop("OPENAI_BASE_URL", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "itcollect", "-C", str(ws), "session", "--annotator", name, "--compare", systems,
         *extra],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, bufsize=1)
    seen: list = []

    def say(line: str | None, tag: str) -> dict:
        if line is not None:
            proc.stdin.write(line + "\n")
            proc.stdin.flush()
        return _read_until(proc, tag, seen)

    try:
        say(None, "ready")
        yield proc, say
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
        for f in (proc.stdin, proc.stdout, proc.stderr):
            if not f.closed:
                f.close()


def kill_9(proc: subprocess.Popen) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


@pytest.fixture
def server(fake_openai):
    fake_openai.responder = SystemResponder()
    return fake_openai


def _workspace(root: Path, n: int, extra: str) -> Path:
    ws = make_workspace(root, n, instruction_langs=("en",), config_extra=extra)
    # no retries: a system that is down fails at once (the session caps them anyway)
    cfg = ws / "itcollect.toml"
    text = re.sub(r"(?m)^max_retries = \d+", "max_retries = 0", cfg.read_text(encoding="utf-8"))
    cfg.write_text(text, encoding="utf-8")
    return ws


def _ws(tmp_path: Path, url: str, n: int = 2, down_url: str | None = None) -> Path:
    return _workspace(tmp_path / "ws", n, systems_config(url, down_url))


def test_label_order_is_seeded_and_fresh_per_turn():
    names = ["qwen72", "ours", "mini-x", "d", "e"]
    assert label_order(names, 0, "dlg", 2, 0) == label_order(names, 0, "dlg", 2, 0)
    orders = {tuple(label_order(names, 0, "dlg", idx, 0)) for idx in range(2, 40, 2)}
    assert len(orders) > 5 and all(sorted(o) == sorted(names) for o in orders)
    assert parse_rank("a>B=c") == [["A"], ["B", "C"]]
    with pytest.raises(ValueError):
        parse_rank("A>>B")


def test_protocol_pick_rank_none_edit_regenerate_undo_and_the_figures(tmp_path, server):
    ws = _ws(tmp_path, server.base_url)
    script = "\n".join([
        # dialogue 1: a pick of a label that does not exist, a pick, an edit of the pick, a rank
        "request Please translate this sentence into Chinese.",
        "pick Z",
        "accept",
        "pick A",
        "edit 市议会周一通过了新桥的预算。",
        "request Could you make it sound more natural?",
        "rank B>A=C fluent",
        "finish",
        # dialogue 2: all bad, regenerate, all bad again, written by the person; undo a turn; pick
        "request Please translate this sentence into Chinese.",
        "pick none",
        "pick none every answer drops the date",
        "regenerate",
        "pick none still wrong",
        "edit 蔬菜价格在上周的风暴之后大幅上涨。",
        "request Could you make it sound more natural?",
        "undo",
        "request Could you polish it a little?",
        "pick C",
        "finish",
        "",
    ]) + "\n"
    r = compare_session(ws, "alice", script, server.base_url, "qwen72,ours,mini-x")
    assert r.returncode == 0, r.stderr
    ev = events(r.stdout)
    tags = [t for t, _ in ev]
    assert "endpoint_error" not in tags, r.stdout
    # the names stay hidden until the dialogue is done
    first_done = tags.index("done")
    hidden = "\n".join(r.stdout.splitlines()[:first_done])
    assert "qwen" not in hidden and "our-sft" not in hidden and "mini-x" not in hidden
    cands = [d for t, d in ev if t == "candidates"]
    assert len(cands) == 6  # d1: 2 requests; d2: request, regenerate, request (undone), request
    for c in cands:
        assert [a["label"] for a in c["answers"]] == ["A", "B", "C"]
        assert len({a["content"] for a in c["answers"]}) == 3 and all(a["content"] for a in c["answers"])
        assert set(c["answers"][0]) == {"label", "content", "warnings", "warning_text"}
    # each candidates event is followed by a ready that expects a pick
    for k, t in enumerate(tags):
        if t == "candidates":
            assert ev[k + 1] == ("ready", {**ev[k + 1][1], "expect": "pick"})
    assert any(t == "delta" and "label" in d for t, d in ev)  # the answers streamed, by label
    errors = [d for t, d in ev if t == "error"]
    assert [e["command"] for e in errors] == ["pick", "accept", "pick"]
    assert "no answer 'Z': the answers are A, B, C" in errors[0]["message"]
    assert "pick none needs a reason" in errors[2]["message"]
    readies = [d["expect"] for t, d in ev if t == "ready"]
    assert "decision" in readies  # after pick none
    done = [d for t, d in ev if t == "done"]
    assert len(done) == 2
    reveal = done[0]["compared"]
    assert [x["idx"] for x in reveal] == [1, 3]
    assert all(sorted(x["systems"].values()) == ["mini-x", "ours", "qwen72"] for x in reveal)

    with Store(ws / "itcollect.db") as store:
        d1, d2 = store.dialogue_for_spec(1)["id"], store.dialogue_for_spec(2)["id"]
        c1 = store.comparisons_of(d1)
        assert [(c["idx"], c["status"], c["chooser"], c["decision"]) for c in c1] == [
            (1, "decided", "human_edit", "pick"), (3, "decided", "human", "rank")]
        assert c1[0]["winner"] == c1[0]["labels"][0]  # A was picked
        labels = c1[1]["labels"]
        assert c1[1]["ranking"] == [[labels[1]], [labels[0], labels[2]]] and c1[1]["winner"] == labels[1]
        assert c1[1]["reason"] == "fluent" and all(c["annotator"] == "alice" for c in c1)
        turns = store.get_turns(d1)
        assert turns[1]["content"] == "市议会周一通过了新桥的预算。" and turns[1]["author"] == "human"
        assert turns[1]["original_content"] == next(
            k["content"] for k in c1[0]["candidates"] if k["system"] == c1[0]["winner"])
        assert turns[3]["content"] == next(k["content"] for k in c1[1]["candidates"] if k["system"] == labels[1])
        assert [k["status"] for k in c1[0]["candidates"]] == ["answered"] * 3
        assert {k["model"] for k in c1[0]["candidates"]} == {"qwen-72b", "our-sft", "mini-x"}
        every = store.comparisons_of(d2, include_undone=True)
        assert [(c["idx"], c["status"], c["decision"]) for c in every] == [
            (1, "undone", "none"), (1, "decided", "none"), (3, "undone", None), (3, "decided", "pick")]
        assert every[1]["chooser"] == "human_edit" and every[1]["reason"] == "still wrong"
        t2 = store.get_turns(d2)
        assert t2[1]["content"] == "蔬菜价格在上周的风暴之后大幅上涨。" and t2[1]["author"] == "human"
        assert every[1]["turn_id"] == t2[1]["id"] and every[3]["turn_id"] == t2[3]["id"]
        assert every[3]["winner"] == every[3]["labels"][2]
        runs = store.compare_runs()
        assert runs[-1]["command"] == "session" and runs[-1]["chooser"] == "human"
        assert [s["name"] for s in runs[-1]["systems"]] == ["qwen72", "ours", "mini-x"]
    # one real call per system and try, none paid twice (regenerate asks again: a new call)
    assert server.paid_twice() == {}
    models: Counter[str] = Counter()
    for key, n in server.responder.seen.items():
        models[next(m for m in MARK if key.startswith(m))] += n
    assert models == {"qwen-72b": 6, "our-sft": 6, "mini-x": 6}

    st = run_cli("-C", str(ws), "stats", "--compare", "--json")
    assert st.returncode == 0, st.stderr
    comp = json.loads(st.stdout)
    comp = comp.get("compare", comp)
    assert comp["by_chooser"] == {"human": 2, "judge": 0, "human_edit": 2}
    assert comp["turns"] == 4
    flt = run_cli("-C", str(ws), "filter")
    assert flt.returncode == 0, flt.stderr
    ex = run_cli("-C", str(ws), "export", "--hf", str(tmp_path / "out"), "--format", "dpo")
    assert ex.returncode == 0, ex.stderr + ex.stdout
    import datasets

    dd = datasets.load_from_disk(str(tmp_path / "out" / "dpo"))
    rows = [row for split in dd.values() for row in split]
    assert rows and {row["chooser"] for row in rows} >= {"human", "human_edit"}
    edited = [row for row in rows if row["chooser"] == "human_edit"]
    assert {row["chosen"][0]["content"] for row in edited} >= {"市议会周一通过了新桥的预算。"}


def test_one_system_down_fails_with_a_reason_and_the_turn_goes_on(tmp_path, server):
    down = "http://127.0.0.1:9/v1"  # the discard port: nothing listens
    ws = _ws(tmp_path, server.base_url, n=1, down_url=down)
    with live_session(ws, "bob", "qwen72,down,ours") as (proc, say):
        cand = say("request Please translate this sentence into Chinese.", "candidates")
        failed = [a for a in cand["answers"] if "failed" in a]
        assert len(failed) == 1 and failed[0]["failed"] and failed[0]["content"] == ""
        assert "void" not in cand
        ok = next(a["label"] for a in cand["answers"] if "failed" not in a)
        err = say(f"pick {failed[0]['label']}", "error")  # nothing to pick: refused, nothing written
        assert err["message"].startswith(f"answer {failed[0]['label']} failed (")
        say(f"pick {ok}\nfinish one turn is enough here", "done")
        proc.stdin.close()
        assert proc.wait(timeout=60) == 0
    with Store(ws / "itcollect.db") as store:
        did = store.dialogue_for_spec(1)["id"]
        c = store.comparisons_of(did)[0]
        by = {k["system"]: k for k in c["candidates"]}
        assert by["down"]["status"] == "failed" and by["down"]["failure"]
        assert c["status"] == "decided" and c["winner"] == c["labels"]["ABC".index(ok)] != "down"

    # two systems, one down: fewer than two answers, not a comparison; the one answer is an ordinary one
    ws2 = _workspace(tmp_path / "ws2", 1, systems_config(server.base_url, down))
    r = compare_session(ws2, "bob", "request Please translate this sentence into Chinese.\naccept\nfinish one turn is enough here\n",
                        server.base_url, "qwen72,down")
    assert r.returncode == 0, r.stderr
    ev = events(r.stdout)
    cand = next(d for t, d in ev if t == "candidates")
    assert "not a comparison" in cand["void"]
    k = [t for t, _ in ev].index("candidates")
    assert ev[k + 1][0] == "ready" and ev[k + 1][1]["expect"] == "decision"
    assert "done" in [t for t, _ in ev] and "error" not in [t for t, _ in ev]
    with Store(ws2 / "itcollect.db") as store:
        did = store.dialogue_for_spec(1)["id"]
        c = store.comparisons_of(did)[0]
        assert c["status"] == "void" and "fewer than two answers (1 of 2)" in c["reason"]
        assert c["turn_id"] == store.get_turns(did)[1]["id"]


def test_bad_compare_lists_exit_2_naming_the_configured_systems(tmp_path, server):
    ws = _ws(tmp_path, server.base_url, n=1)
    for systems in ("qwen72", "qwen72,qwen72"):
        r = compare_session(ws, "bob", "quit\n", server.base_url, systems)
        assert r.returncode == 2, (r.stdout, r.stderr)
        assert "qwen72, ours" in r.stderr


def _paid(ws: Path) -> int:
    """Answers in the workspace's ledger (read as another process would)."""
    import sqlite3

    con = sqlite3.connect(ws / "itcollect.db", timeout=30)
    try:
        return con.execute("SELECT COUNT(*) FROM llm_calls WHERE status='done'").fetchone()[0]
    finally:
        con.close()


def test_kill_9_while_systems_answer_resumes_without_paying_twice(tmp_path, server):
    from tests.fakeserver import FakeOpenAI

    slow = FakeOpenAI(responder=SystemResponder()).start()
    try:
        ws = _workspace(tmp_path / "ws", 1, (
            f'\n[llm.systems.qwen72]\nbase_url = "{server.base_url}"\nmodel = "qwen-72b"\n'
            f'\n[llm.systems.ours]\nbase_url = "{slow.base_url}"\nmodel = "our-sft"\n'))
        slow.set_latency(60.0)
        with live_session(ws, "ann", "qwen72,ours") as (proc, say):
            say("request Please translate this sentence into Chinese.", "request")
            deadline = time.time() + 30
            while (_paid(ws) < 1 or not slow.requests) and time.time() < deadline:
                time.sleep(0.05)
            assert _paid(ws) == 1 and slow.requests  # one answer paid (in the ledger), one on the wire
            kill_9(proc)
        with Store(ws / "itcollect.db") as store:
            did = store.dialogue_for_spec(1)["id"]
            assert store.comparisons_of(did) == []  # nothing half-written
        slow.set_latency(0.0)
        n_fast = len(server.requests)
        r = compare_session(ws, "ann", "pick A\nfinish one turn is enough here\n", server.base_url, "qwen72,ours")
        assert r.returncode == 0, r.stderr
        ev = events(r.stdout)
        assert next(d for t, d in ev if t == "dialogue")["resumed"] is True
        cand = next(d for t, d in ev if t == "candidates")
        assert len(cand["answers"]) == 2 and all(a["content"] for a in cand["answers"])
        assert len(server.requests) == n_fast  # the paid answer came from the ledger
        assert server.paid_twice() == {} and slow.paid_twice() == {}

        # killed after the candidates were committed: a restart shows the same ones, asks nobody
        ws2 = _workspace(tmp_path / "ws2", 1, systems_config(server.base_url))
        with live_session(ws2, "ann", "qwen72,ours") as (proc, say):
            shown = say("request Please translate this sentence into Chinese.", "candidates")
            kill_9(proc)
        n = len(server.requests)
        r = compare_session(ws2, "ann", "pick B\nfinish one turn is enough here\n", server.base_url, "qwen72,ours")
        assert r.returncode == 0, r.stderr
        ev = events(r.stdout)
        assert next(d for t, d in ev if t == "dialogue")["message"].endswith(
            "the answers to your last request are waiting for your pick.")
        assert next(d for t, d in ev if t == "candidates")["answers"] == shown["answers"]
        assert len(server.requests) == n and "done" in [t for t, _ in ev]
    finally:
        slow.stop()


def test_terminal_compare_keys_pick_and_the_names_after_finish(tmp_path, server):
    pexpect = pytest.importorskip("pexpect")
    ws = _ws(tmp_path, server.base_url, n=1)
    env = dict(os.environ, PROMPT_TOOLKIT_NO_CPR="1", TERM="xterm", ITCOLLECT_PROGRESS="0", COLUMNS="110", LINES="40")
    env.pop("OPENAI_BASE_URL", None)
    child = pexpect.spawn(sys.executable, ["-m", "itcollect", "-C", str(ws), "session", "--annotator", "li.wei",
                                           "--compare", "qwen72,ours"],
                          env=env, encoding="utf-8", timeout=60, dimensions=(40, 110))
    try:
        child.expect(r"You \(translate\)")
        child.send("Please translate this sentence into Chinese.\r")
        child.expect("asking 2 systems")
        child.expect("A › ")
        child.expect("B › ")
        child.expect(r"\[1-2\] pick")
        child.send("7")                  # no answer 7: the key is not offered
        child.send("2")
        child.expect("B picked")
        child.expect(r"You \(polish\)")
        child.send("Could you make it sound more natural?\r")
        child.expect(r"\[1-2\] pick")
        child.send("n")
        child.expect("What is wrong with every answer")
        child.send("both drop the date\r")
        child.expect(r"\[e\] write the answer")
        child.send("e")
        child.expect("Your answer")
        child.send("市议会周一通过了新桥的预算。\r")
        child.expect(r"You \(")
        child.send("/finish\r")
        child.expect("Dialogue finished")
        child.expect("answer 1: A = (qwen72|ours), B = (qwen72|ours)")
        child.sendcontrol("d")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0
    with Store(ws / "itcollect.db") as store:
        did = store.dialogue_for_spec(1)["id"]
        c = store.comparisons_of(did)
        assert c[0]["winner"] == c[0]["labels"][1] and c[0]["chooser"] == "human"
        assert (c[1]["decision"], c[1]["chooser"], c[1]["reason"]) == ("none", "human_edit", "both drop the date")
        assert store.dialogue_for_spec(1)["status"] == "done"


def test_overlap_specs_are_compared_by_each_annotator_and_their_picks_agree(tmp_path, server):
    from .test_overlap import set_config

    ws = _ws(tmp_path, server.base_url, n=1)
    set_config(ws, overlap_share=1.0, overlap_annotators=2)
    for name, pick in (("alice", "A"), ("bob", "B")):
        r = compare_session(ws, name, f"request Please translate this sentence into Chinese.\npick {pick}\nfinish one turn is enough here\n",
                            server.base_url, "qwen72,ours")
        assert r.returncode == 0, r.stderr
        assert "done" in [t for t, _ in events(r.stdout)], r.stdout
    with Store(ws / "itcollect.db") as store:
        copies = [store.dialogue_for_spec(1, k) for k in (0, 1)]
        assert {d["annotator"] for d in copies} == {"alice", "bob"}
        decided = [store.comparisons_of(d["id"])[0] for d in copies]
        assert {c["annotator"] for c in decided} == {"alice", "bob"}
        winners = {c["annotator"]: c["winner"] for c in decided}
    st = run_cli("-C", str(ws), "stats", "--compare", "--json")
    assert st.returncode == 0, st.stderr
    comp = json.loads(st.stdout)
    pa = comp.get("compare", comp)["pick_agreement"]
    assert pa["n"] == 1 and pa["agreement"] == (1.0 if winners["alice"] == winners["bob"] else 0.0)

    # a compare dialogue opened without --compare is never answered by one model
    ws2 = _ws(tmp_path / "two", server.base_url, n=1)
    r = compare_session(ws2, "carol", "request Please translate this sentence into Chinese.\nquit\n",
                        server.base_url, "qwen72,ours")
    assert r.returncode == 0, r.stderr
    with Store(ws2 / "itcollect.db") as store:
        did = store.dialogue_for_spec(1)["id"]
        store.undo_comparisons(did, 1)  # the request waits for answers again
    r = run_cli("-C", str(ws2), "session", "--annotator", "carol", "--base-url", server.base_url, "--model", "m",
                input="quit\n")
    assert r.returncode == 0, r.stderr
    failed = next(d for t, d in events(r.stdout) if t == "endpoint_error")
    assert "compares systems" in failed["message"]
    with Store(ws2 / "itcollect.db") as store:
        assert [t["role"] for t in store.get_turns(did)] == ["user"]


def test_picking_an_answer_with_warnings_takes_a_reason(tmp_path, server):
    ws = _ws(tmp_path, server.base_url, n=1)
    with live_session(ws, "dan", "qwen72,english-x", "--base-url", server.base_url) as (proc, say):
        cand = say("request Please translate this sentence into Chinese.", "candidates")
        bad = next(a for a in cand["answers"] if a["warnings"])
        assert bad["warning_text"] and len(bad["warning_text"]) == len(bad["warnings"])
        err = say(f"pick {bad['label']}", "error")
        assert "pick it with a reason" in err["message"]
        ok = say(f"pick {bad['label']} the client wants English here", "ok")
        assert ok["label"] == bad["label"]
        say("finish one turn is enough here", "done")
    with Store(ws / "itcollect.db") as store:
        did = store.dialogue_for_spec(1)["id"]
        c = store.comparisons_of(did)[0]
        assert c["winner"] == "english-x" and c["reason"] == "the client wants English here"
        answer = store.get_turns(did)[1]
        assert answer["params"]["override"] == "the client wants English here" and answer["warnings"]
