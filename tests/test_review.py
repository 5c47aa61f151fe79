"""Error-typed review through the line protocol: marks, fixes and verdicts stored with the reviewer
as author; ``--order overlap``: the pick survives filter and export."""

from __future__ import annotations

import json

import pytest

from itcollect.llm.judgement.schema import CATEGORIES, SEVERITIES
from itcollect.store import Store

from .conftest import run_cli
from .test_overlap import set_config
from .test_session import CountingResponder, events, make_workspace, session


def review(ws, name: str, script: str, *extra: str):
    r = run_cli("-C", str(ws), "session", "--annotator", name, "--review", *extra, input=script)
    assert r.returncode == 0, r.stderr
    return events(r.stdout)


def test_marks_fixes_and_verdicts_are_stored_with_the_reviewer_as_author(tmp_path, fake_openai):
    fake_openai.responder = CountingResponder()
    ws = make_workspace(tmp_path / "ws", 2, types=("translate",), instruction_langs=("en",))
    r = session(ws, "li.wei", "\n".join([
        "request Please translate this sentence into Chinese.", "edit 市议会周一批准了新桥的预算。", "finish",
        "request Please translate this sentence into Chinese.", "accept", "flag check the number", "finish"]) + "\n",
        fake_openai.base_url)
    assert r.returncode == 0, r.stderr
    with Store(ws / "itcollect.db") as store:
        d1, d2 = store.dialogue_for_spec(1), store.dialogue_for_spec(2)
        a1 = [t for t in store.get_turns(d1["id"]) if t["role"] == "assistant"][0]
        a2 = [t for t in store.get_turns(d2["id"]) if t["role"] == "assistant"][0]
    span = "新桥"
    start = a1["content"].index(span)
    fixed = "市议会周一批准了新大桥的预算。"
    ev = review(ws, "rev", "\n".join([
        f"mark {a1['id']} accuracy/mistranslation major {span} -- bridge, not new bridge",
        f"mark {a1['id']} fluency/grammar minor @0:3",
        f"mark {a1['id']} nonsense major {span}",        # not a category of the judge's list
        f"mark {a1['id']} style huge {span}",            # not a severity
        f"mark {a1['id']} style minor 不在这里",          # not in the answer
        f"fix {a1['id']} {fixed}",
        "accept good after the fix",
        f"mark {a2['id']} terminology critical @0:2",
        "reject the number is wrong",
    ]) + "\n")
    tags = [t for t, _ in ev]
    session_ev = ev[0][1]
    assert session_ev["categories"] == [*CATEGORIES, "other"] and session_ev["severities"] == list(SEVERITIES)
    assert tags.count("error") == 3
    assert [e["verdict"] for t, e in ev if t == "ok" and e["action"] in ("accept", "reject")] == ["fixed", "rejected"]
    assert tags[-1] == "idle"
    # the item printed again after the fix shows the reviewer's version and the marks
    after_fix = [e for t, e in ev if t == "review"][3]
    answers = [t for t in after_fix["turns"] if t["role"] == "assistant"]
    assert [(t["state"], t["content"]) for t in answers] == [("rejected", a1["content"]), ("active", fixed)]
    assert answers[1]["review_fix"] == {"reviewer": "rev", "replaces": a1["id"]}
    with Store(ws / "itcollect.db") as store:
        marks = store.review_marks()
        assert [(m["turn_id"], m["reviewer"], m["category"], m["severity"], m["start"], m["end"], m["span"], m["note"])
                for m in marks] == [
            (a1["id"], "rev", "accuracy/mistranslation", "major", start, start + len(span), span,
             "bridge, not new bridge"),
            (a1["id"], "rev", "fluency/grammar", "minor", 0, 3, a1["content"][:3], None),
            (a2["id"], "rev", "terminology", "critical", 0, 2, a2["content"][:2], None)]
        turns = store.get_turns(d1["id"], include_inactive=True)
        old = next(t for t in turns if t["id"] == a1["id"])
        new = next(t for t in turns if t["role"] == "assistant" and t["state"] == "active")
        assert old["state"] == "rejected" and old["content"] == a1["content"] and old["author"] == "human"
        assert old["annotator"] == "li.wei" and old["params"]["fixed_by_review"] == new["id"]
        assert (new["content"], new["author"], new["annotator"], new["original_content"], new["idx"]) == (
            fixed, "human", "rev", a1["content"], a1["idx"])
        d1, d2 = store.dialogue_for_spec(1), store.dialogue_for_spec(2)
        assert (d1["review_status"], d2["review_status"]) == ("fixed", "rejected")
        assert d1["meta"]["reviews"][-1]["reviewer"] == "rev" and d2["meta"]["reviews"][-1]["note"] == "the number is wrong"
        rev_actions = [e["action"] for e in store.session_events(annotator="rev")]
        assert rev_actions == ["review_mark", "review_mark", "review_fix", "review_fixed", "review_mark",
                               "review_reject"]
        # a reviewer's fix is not the annotator's edit, and a reviewer is no annotator
        activity = store.annotator_stats()
        assert set(activity) == {"li.wei"} and activity["li.wei"]["edits"] == 1
    # the queue is empty now; a decided dialogue cannot be fixed or judged again
    assert review(ws, "rev2", "quit\n")[-1][0] == "idle"
    from itcollect.session.review import ReviewError, record_fix, record_verdict

    with Store(ws / "itcollect.db") as store:
        with pytest.raises(ReviewError, match="already reviewed"):
            record_fix(store, "rev2", d2["id"], a2["id"], "另一个版本。")
        with pytest.raises(ReviewError, match="already reviewed"):
            record_verdict(store, "rev2", d1["id"], "reject")


def test_order_overlap_pick_survives_filter_and_export(tmp_path, fake_openai):
    fake_openai.responder = CountingResponder()
    ws = make_workspace(tmp_path / "ws", 2, types=("translate",), instruction_langs=("en",))
    set_config(ws, overlap_share=1.0)
    ask = "request Please translate this sentence into Chinese."
    r = session(ws, "ann", f"{ask}\naccept\nfinish\n{ask}\naccept\nfinish\n", fake_openai.base_url)
    assert r.returncode == 0, r.stderr
    edits = ["市议会周一批准了新桥预算。", "蔬菜价格在上周风暴后大幅上涨。"]
    r = session(ws, "bob", f"{ask}\nedit {edits[0]}\nfinish\n{ask}\nedit {edits[1]}\nfinish\n", fake_openai.base_url)
    assert r.returncode == 0, r.stderr
    with Store(ws / "itcollect.db") as store:
        copies = {s: {d["annotator"]: d["id"] for d in store.dialogues_for_spec(s)} for s in (1, 2)}
    assert all(set(c) == {"ann", "bob"} for c in copies.values())
    # before adjudication: one copy of each spec is kept, by the keep rule
    assert run_cli("-C", str(ws), "filter").returncode == 0
    with Store(ws / "itcollect.db") as store:
        for s in (1, 2):
            verdicts = {a: store.get_verdict(did) for a, did in copies[s].items()}
            assert sorted(v["kept"] for v in verdicts.values()) == [False, True], verdicts
            dropped = next(v for v in verdicts.values() if not v["kept"])
            assert dropped["reasons"] == ["overlap_not_picked"]
    ev = review(ws, "rev", "pick " + copies[1]["bob"][:8] + " the better one\nquit\n", "--order", "overlap")
    item = next(e for t, e in ev if t == "review")
    assert item["mode"] == "overlap" and item["spec_id"] == 1
    assert sorted(d["annotator"] for d in item["dialogues"]) == ["ann", "bob"]
    assert ("ok", {"action": "pick", "spec_id": 1, "dialogue_id": copies[1]["bob"]}) in ev
    with Store(ws / "itcollect.db") as store:
        assert store.overlap_picks()[1]["dialogue_id"] == copies[1]["bob"]
        assert store.get_dialogue(copies[1]["bob"])["review_status"] == "accepted"
    # the pick is final: the queue holds spec 2 only, and spec 1 cannot be picked again
    ev = review(ws, "rev2", "quit\n", "--order", "overlap")
    assert next(e for t, e in ev if t == "review")["spec_id"] == 2
    assert run_cli("-C", str(ws), "filter").returncode == 0
    with Store(ws / "itcollect.db") as store:
        v_ann, v_bob = store.get_verdict(copies[1]["ann"]), store.get_verdict(copies[1]["bob"])
        assert v_bob["kept"] and not v_ann["kept"]
        assert v_ann["reasons"] == ["overlap_not_picked"]
        assert v_ann["detail"]["overlap_not_picked"] == {"picked": copies[1]["bob"], "by": "rev"}
        kept2 = [did for did in copies[2].values() if store.get_verdict(did)["kept"]]
    assert len(kept2) == 1
    out = tmp_path / "out"
    r = run_cli("-C", str(ws), "export", "--hf", str(out), "--format", "all")
    assert r.returncode == 0, r.stderr
    import datasets

    ds = datasets.load_from_disk(str(out / "hf"))
    ids = sorted(row["id"] for split in ds.values() for row in split)
    assert ids == sorted([copies[1]["bob"], kept2[0]])
    exported = {row["id"]: row for split in ds.values() for row in split}
    assert exported[copies[1]["bob"]]["messages"][-1]["content"] == edits[0]
    stats = json.loads(run_cli("-C", str(ws), "stats", "--json").stdout)
    assert stats["filter"]["reasons"]["overlap_not_picked"] == 2


def test_a_rejected_dialogue_is_dropped_by_filter_and_not_exported(tmp_path, fake_openai):
    fake_openai.responder = CountingResponder()
    ws = make_workspace(tmp_path / "ws", 2, types=("translate",), instruction_langs=("en",))
    ask = "request Please translate this sentence into Chinese."
    r = session(ws, "li.wei", f"{ask}\naccept\nflag check it\nfinish\n{ask}\naccept\nflag check it\nfinish\n",
                fake_openai.base_url)
    assert r.returncode == 0, r.stderr
    with Store(ws / "itcollect.db") as store:
        d1, d2 = store.dialogue_for_spec(1)["id"], store.dialogue_for_spec(2)["id"]
    ev = review(ws, "rev", "accept fine\nreject the number is wrong\n")
    assert [e["verdict"] for t, e in ev if t == "ok" and e["action"] in ("accept", "reject")] == ["accepted", "rejected"]
    assert run_cli("-C", str(ws), "filter").returncode == 0
    with Store(ws / "itcollect.db") as store:
        assert store.get_verdict(d1)["kept"]
        v2 = store.get_verdict(d2)
        assert not v2["kept"] and v2["reasons"] == ["review_rejected"]
        assert v2["detail"]["review_rejected"] == {"by": "rev", "note": "the number is wrong"}
    out = tmp_path / "out"
    r = run_cli("-C", str(ws), "export", "--hf", str(out))
    assert r.returncode == 0, r.stderr
    import datasets

    rows = [row for split in datasets.load_from_disk(str(out / "hf")).values() for row in split]
    assert [row["id"] for row in rows] == [d1]
    # reviews that only inform: the rule is off, the rejected dialogue is kept again
    cfg = ws / "itcollect.toml"
    cfg.write_text(cfg.read_text(encoding="utf-8").replace("drop_review_rejected = true",
                                                           "drop_review_rejected = false"), encoding="utf-8")
    assert run_cli("-C", str(ws), "filter").returncode == 0
    with Store(ws / "itcollect.db") as store:
        assert store.get_verdict(d1)["kept"] and store.get_verdict(d2)["kept"]


def test_a_verdict_is_taken_back_and_changed_until_the_dialogue_is_exported(tmp_path, fake_openai):
    """Issue 24 item 1: ``undo`` takes back this session's last verdict (the dialogue comes back to
    decide again), any reviewer may take back a standing verdict by its dialogue, the history keeps
    every verdict, and once an export was written after it the verdict stands."""
    fake_openai.responder = CountingResponder()
    ws = make_workspace(tmp_path / "ws", 2, types=("translate",), instruction_langs=("en",))
    ask = "request Please translate this sentence into Chinese."
    r = session(ws, "li.wei", f"{ask}\naccept\nflag check it\nfinish\n{ask}\naccept\nflag check it\nfinish\n",
                fake_openai.base_url)
    assert r.returncode == 0, r.stderr
    with Store(ws / "itcollect.db") as store:
        d1, d2 = store.dialogue_for_spec(1)["id"], store.dialogue_for_spec(2)["id"]
    ev = review(ws, "rev", "reject oops\nundo\naccept fine on a second look\nundo\n" "undo\nreject wrong\n")
    oks = [(e["action"], e.get("verdict") or e.get("undone"), e["dialogue_id"]) for t, e in ev if t == "ok"]
    assert oks == [("reject", "rejected", d1), ("undo", "rejected", d1), ("accept", "accepted", d1),
                   ("undo", "accepted", d1), ("reject", "rejected", d1)]
    # the second undo in a row has nothing of this session's left to take back
    assert [e["message"] for t, e in ev if t == "error"] == ["undo [DIALOGUE]: no verdict of this session to take back"]
    shown = [e["dialogue_id"] for t, e in ev if t == "review"]
    # a verdict moves on to the next dialogue; an undo there brings the undone one back to decide again
    assert shown == [d1, d2, d1, d2, d1, d2]
    with Store(ws / "itcollect.db") as store:
        d = store.get_dialogue(d1)
        assert d["review_status"] == "rejected" and store.get_dialogue(d2)["review_status"] is None
        assert [(x["reviewer"], x.get("verdict"), x.get("undoes"), x.get("note")) for x in d["meta"]["reviews"]] == [
            ("rev", "rejected", None, "oops"), ("rev", None, "rejected", None),
            ("rev", "accepted", None, "fine on a second look"), ("rev", None, "accepted", None),
            ("rev", "rejected", None, "wrong")]
        assert [e["action"] for e in store.session_events(annotator="rev")] == [
            "review_reject", "review_undo", "review_accept", "review_undo", "review_reject"]
        assert [v["dialogue_id"] for v in store.recent_verdicts("rev")] == [d1]
    # another reviewer changes it by naming the dialogue
    ev = review(ws, "rev2", f"undo {d1}\naccept\nquit\n")
    assert [(e["action"], e["dialogue_id"]) for t, e in ev if t == "ok"] == [("undo", d1), ("accept", d1)]
    with Store(ws / "itcollect.db") as store:
        assert store.get_dialogue(d1)["review_status"] == "accepted"
    # exported: the verdict went out with the data and stands
    assert run_cli("-C", str(ws), "filter").returncode == 0
    r = run_cli("-C", str(ws), "export", "--hf", str(tmp_path / "out"), "--format", "sharegpt")
    assert r.returncode == 0, r.stderr
    ev = review(ws, "rev", f"undo {d1}\nquit\n")
    errors = [e["message"] for t, e in ev if t == "error"]
    assert len(errors) == 1 and "was exported" in errors[0] and "accepted" in errors[0], errors
    with Store(ws / "itcollect.db") as store:
        assert store.get_dialogue(d1)["review_status"] == "accepted"
