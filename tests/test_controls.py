"""Control items: one planted error in the model's first answer; a miss or a catch; the planted text
never reaches the export as a model answer; kill -9 while a control is on screen."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from itcollect.session.controls import _PLANTERS, KINDS, plant_error
from itcollect.store import Store

from .conftest import REPO, run_cli
from .responders import CORPUS
from .test_overlap import set_config
from .test_session import CountingResponder, events, make_workspace, session

LANGS = ("en", "zh", "de", "fr")


def test_every_kind_in_every_language_changes_exactly_one_span():
    seen = {lang: set() for lang in LANGS}
    for row in CORPUS:
        for lang in LANGS:
            text = row[lang]
            for kind in KINDS:
                for key in ("a", "b", "c"):
                    p = _PLANTERS[kind](text, lang, key)
                    if p is None:
                        continue
                    seen[lang].add(kind)
                    assert p.kind == kind and p.text != text
                    # one span: the real text with `before` at `start` replaced by `after`
                    assert text[p.start:p.start + len(p.before)] == p.before
                    assert p.text == text[:p.start] + p.after + text[p.start + len(p.before):]
                    assert p.description
    assert all(seen[lang] == set(KINDS) for lang in LANGS), seen


@pytest.mark.parametrize("lang,text,kind,planted", [
    ("en", "The council did not approve the budget on Monday.", "negation",
     "The council did approve the budget on Monday."),
    ("en", "The council has approved 12 new schools.", "number", "The council has approved 22 new schools."),
    ("de", "Der Rat hat den Plan nicht gebilligt.", "negation", "Der Rat hat den Plan gebilligt."),
    ("fr", "Le conseil n'a pas approuvé le budget.", "negation", "Le conseil a approuvé le budget."),
    ("zh", "市议会没有批准预算。", "negation", "市议会批准预算。"),
    ("zh", "这是第三次会议。", "number", "这是第四次会议。"),
    ("fr", "Il pleut à Paris depuis lundi.", "entity", "Il pleut à Londres depuis lundi."),
    ("zh", "他周五在北京开会，讨论了新的住房政策。", "omission", "他周五在北京开会。"),
])
def test_planters_per_language(lang, text, kind, planted):
    results = {_PLANTERS[kind](text, lang, key).text for key in "abcdefgh" if _PLANTERS[kind](text, lang, key)}
    assert planted in results


def test_no_control_where_nothing_can_be_planted_and_the_same_key_plants_the_same():
    assert plant_error("Hello there", "en", "k") is None
    text = CORPUS[0]["zh"]
    assert plant_error(text, "zh", "dialogue-1") == plant_error(text, "zh", "dialogue-1")


def control_ws(tmp_path, n: int):
    ws = make_workspace(tmp_path / "ws", n, types=("translate",), instruction_langs=("en",))
    set_config(ws, control_share=1.0)
    return ws


def controls_in(store: Store) -> list[dict]:
    out = []
    for d in store.iter_dialogues():
        for t in store.get_turns(d["id"], include_inactive=True):
            ctl = (t["params"] or {}).get("control")
            if ctl:
                out.append({"spec": d["spec_id"], "turn": t, **ctl})
    return sorted(out, key=lambda c: c["spec"])


def test_miss_and_catch_and_the_export_never_holds_the_planted_text(tmp_path, fake_openai):
    fake_openai.responder = CountingResponder()
    ws = control_ws(tmp_path, 3)
    edit = "市议会周一批准了新桥的预算。"
    script = "\n".join([
        "request Please translate this sentence into Chinese.", "accept", "accept", "finish",  # miss, then the real one
        "request Please translate this sentence into Chinese.", f"edit {edit}", "finish",       # catch by editing
        "request Please translate this sentence into Chinese.", "regenerate", "finish",         # catch by regenerating
    ]) + "\n"
    r = session(ws, "li.wei", script, fake_openai.base_url)
    assert r.returncode == 0, r.stderr
    ev = events(r.stdout)
    assert [t for t, _ in ev].count("done") == 3, r.stdout
    shown = [e for t, e in ev if t == "answer"]
    notes = [e for t, e in ev if t == "control"]
    assert [n["outcome"] for n in notes] == ["miss", "catch", "catch"]
    assert notes[0]["answer"]["text"] != shown[0]["text"]  # after the miss: the model's real answer
    with Store(ws / "itcollect.db") as store:
        ctls = controls_in(store)
        assert [(c["outcome"], c["via"], c["decided_by"]) for c in ctls] == [
            ("miss", "accept", "li.wei"), ("catch", "edit", "li.wei"), ("catch", "regenerate", "li.wei")]
        planted = [c["planted"] for c in ctls]
        assert planted == [shown[0]["text"], shown[1]["text"], shown[2]["text"]]  # what the annotator saw
        for c in ctls:
            assert c["planted"] != c["real"] and c["kind"] in KINDS
        # the planted turns: kept for the figures, never the active model answer
        miss, by_edit, by_regen = ctls
        assert miss["turn"]["state"] == "rejected" and by_regen["turn"]["state"] == "rejected"
        assert by_edit["turn"]["state"] == "active" and by_edit["turn"]["author"] == "human"
        assert by_edit["turn"]["content"] == edit and by_edit["turn"]["original_content"] == by_edit["real"]
        # the dialogue of the miss goes on with the model's real answer, accepted by the annotator
        d1 = store.dialogue_for_spec(miss["spec"])
        answer = [t for t in store.get_turns(d1["id"]) if t["role"] == "assistant"]
        assert [t["content"] for t in answer] == [miss["real"]] and answer[0]["author"] == "model"
    assert run_cli("-C", str(ws), "filter").returncode == 0
    out = tmp_path / "out"
    r = run_cli("-C", str(ws), "export", "--hf", str(out), "--format", "all")
    assert r.returncode == 0, r.stderr
    import datasets

    ds = datasets.load_from_disk(str(out / "hf"))
    rows = [row for split in ds.values() for row in split]
    assert rows  # something was exported to look at
    model_said = [m["content"] for row in rows for m in row["messages"] if m["role"] == "assistant"]
    for text in planted:
        assert text not in model_said
    sharegpt = "".join(p.read_text(encoding="utf-8") for p in out.rglob("*.json"))
    for text in planted:
        assert json.dumps(text, ensure_ascii=False) not in sharegpt


def test_kill_9_while_a_control_is_on_screen_then_resume(tmp_path, fake_openai):
    fake_openai.responder = CountingResponder()
    ws = control_ws(tmp_path, 1)
    env = dict(os.environ, ITCOLLECT_PROGRESS="0", OPENAI_API_KEY="sk-test")
    env.pop("OPENAI_BASE_URL", None)
    cmd = [sys.executable, "-m", "itcollect", "-C", str(ws), "session", "--annotator", "li.wei",
           "--base-url", fake_openai.base_url, "--model", "fake-model"]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=REPO)
    try:
        proc.stdin.write("request Please translate this sentence into Chinese.\n")
        proc.stdin.flush()
        shown = None
        deadline = time.time() + 60
        while time.time() < deadline:
            line = proc.stdout.readline()
            tag, _, payload = line.partition(" ")
            if tag == "answer":
                shown = json.loads(payload)["text"]
            if tag == "ready" and shown is not None:
                assert json.loads(payload)["expect"] == "decision"
                break
        assert shown is not None
        os.kill(proc.pid, signal.SIGKILL)  # the planted answer is on screen, undecided
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    r = session(ws, "li.wei", "accept\naccept\nfinish\n", fake_openai.base_url)
    assert r.returncode == 0, r.stderr
    ev = events(r.stdout)
    turns = [e for t, e in ev if t == "turn"]
    assert turns[-1]["role"] == "assistant" and turns[-1]["content"] == shown  # still the planted answer
    assert [e["outcome"] for t, e in ev if t == "control"] == ["miss"]
    assert [t for t, _ in ev].count("done") == 1
    with Store(ws / "itcollect.db") as store:
        ctls = controls_in(store)
        assert len(ctls) == 1 and ctls[0]["outcome"] == "miss" and ctls[0]["planted"] == shown
        assert fake_openai.paid_twice() == {}
