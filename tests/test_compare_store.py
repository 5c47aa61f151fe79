"""Comparisons in the store (issue 23, part 1): compare runs, a dialogue's systems, every candidate
with its provenance, the decision and the one answer that continues; recorded by
``itcollect.compare.record`` in one transaction, on a real SQLite store."""

from __future__ import annotations

import sqlite3

import pytest

from itcollect.compare import record
from itcollect.kernel.errors import StoreConflict, StoreError
from itcollect.kernel.outcomes import break_tie
from itcollect.store import SCHEMA_VERSION, Store

SYSTEMS = [{"name": "qwen72", "model": "Qwen2.5-72B-Instruct", "base_url": "http://gpu1:8000/v1"},
           {"name": "ours", "model": "our-sft-v3", "base_url": "http://gpu2:8000/v1"},
           {"name": "gpt-4o-mini", "model": "gpt-4o-mini", "base_url": None}]


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "s.db")
    yield s
    s.close()


def _dialogue(store: Store) -> str:
    did = store.create_dialogue(origin="simulated", annotator="annot-model", source_text="Hello.", src_lang="en",
                                tgt_lang="de", instruction_lang="en")
    store.add_turn(did, role="user", content='Translate into German: "Hello."', author="model",
                   interaction_type="translate")
    return did


def _cand(system: str, content: str | None, status: str = "answered", **more):
    model = next(s["model"] for s in SYSTEMS if s["name"] == system)
    return {"system": system, "model": model, "status": status, "content": content, "prompt_hash": "ph1",
            "call_key": f"key-{system}", "prompt_tokens": 20, "completion_tokens": 5, "latency_ms": 800.0, **more}


def test_a_judged_turn_keeps_every_candidate_and_continues_with_the_best(store):
    run = record.start_run(store, "simulate", "judge", SYSTEMS, judge_model="judge-m", seed=7)
    did = _dialogue(store)
    kept, changed = record.systems_of(store, did, SYSTEMS, run)
    assert [s["name"] for s in kept] == ["qwen72", "ours", "gpt-4o-mini"] and not changed
    cands = [_cand("qwen72", "Hallo.", judge_status="judged", score=-1.0),
             _cand("ours", "Hallo!", judge_status="judged", score=0.0),
             _cand("gpt-4o-mini", None, status="failed", failure="connection refused", call_key=None)]
    got = record.record_judged_turn(store, did, 1, cands, seed=7, judge_model="judge-m",
                                    turn={"interaction_type": "translate"}, run_id=run,
                                    labels=["ours", "gpt-4o-mini", "qwen72"])
    assert (got.winner, got.tie, got.void) == ("ours", False, False)
    turns = store.get_turns(did)
    assert [(t["role"], t["content"], t["model"], t["call_key"]) for t in turns[1:]] == [
        ("assistant", "Hallo!", "our-sft-v3", "key-ours")]
    assert turns[1]["id"] == got.turn_id and turns[1]["interaction_type"] == "translate"
    # the losing answer is kept as a candidate only, never as a turn (of any state)
    assert all(t["content"] != "Hallo." for t in store.get_turns(did, include_inactive=True))
    c = store.comparison_at(did, 1)
    assert c["status"] == "decided" and c["chooser"] == "judge" and c["decision"] == "rank"
    assert c["ranking"] == [["ours"], ["qwen72"]] and c["winner"] == "ours" and c["annotator"] == "judge-m"
    assert c["labels"] == ["ours", "gpt-4o-mini", "qwen72"] and c["run_id"] == run and c["turn_id"] == got.turn_id
    by = {k["system"]: k for k in c["candidates"]}
    assert by["qwen72"]["content"] == "Hallo." and by["qwen72"]["base_url"] is None  # as given
    assert (by["qwen72"]["prompt_hash"], by["qwen72"]["latency_ms"], by["qwen72"]["completion_tokens"]) == \
        ("ph1", 800.0, 5)
    assert by["gpt-4o-mini"]["status"] == "failed" and by["gpt-4o-mini"]["failure"] == "connection refused"
    record.finish_run(store, run)
    (r,) = store.compare_runs()
    assert r["chooser"] == "judge" and r["seed"] == 7 and r["finished_at"]
    assert [s["name"] for s in r["systems"]] == ["qwen72", "ours", "gpt-4o-mini"]


def test_a_dialogue_keeps_the_systems_it_started_with(store):
    did = _dialogue(store)
    record.systems_of(store, did, SYSTEMS[:2])
    kept, changed = record.systems_of(store, did, [SYSTEMS[2], SYSTEMS[0]])
    assert changed and [s["name"] for s in kept] == ["qwen72", "ours"]
    assert kept[0]["model"] == "Qwen2.5-72B-Instruct" and kept[0]["base_url"] == "http://gpu1:8000/v1"
    assert store.dialogue_systems(_dialogue(store)) == []


def test_a_run_needs_two_distinct_systems(store):
    with pytest.raises(ValueError, match="two or more distinct"):
        record.start_run(store, "simulate", "judge", SYSTEMS[:1])
    with pytest.raises(ValueError, match="two or more distinct"):
        record.start_run(store, "simulate", "judge", [SYSTEMS[0], SYSTEMS[0]])
    assert store.compare_runs() == []


def test_a_tie_is_recorded_and_broken_by_the_seed_whatever_the_order(store):
    for order in ([0, 1], [1, 0]):
        did = _dialogue(store)
        c = [_cand("qwen72", "Hallo.", judge_status="judged", score=-1.0, compliance=None, rating=None),
             _cand("ours", "Hallo!", judge_status="judged", score=-1.0)]
        got = record.record_judged_turn(store, did, 1, [c[k] for k in order], seed=3, judge_model="j",
                                        turn={})
        assert got.tie and not got.void
        assert got.winner == break_tie(["ours", "qwen72"], 3, did, 1)
        stored = store.comparison_at(did, 1)
        assert stored["tie"] and stored["ranking"] == [["ours", "qwen72"]]


def test_score_then_compliance_then_rating_and_checks_lose_without_a_judgement(store):
    did = _dialogue(store)
    store.add_turn(did, role="assistant", content="Hallo.", author="model")
    store.add_turn(did, role="user", content="More formal, please.", author="model", interaction_type="style")
    cands = [_cand("qwen72", "Guten Tag.", judge_status="judged", score=0.0, compliance="partly", rating=5),
             _cand("ours", "Seien Sie gegrüßt.", judge_status="judged", score=0.0, compliance="yes", rating=3),
             _cand("gpt-4o-mini", "Hello.", status="rejected", failure="copies the source")]
    got = record.record_judged_turn(store, did, 3, cands, seed=0, judge_model="j", turn={"interaction_type": "style"})
    assert got.winner == "ours"
    assert store.comparison_at(did, 3)["ranking"] == [["ours"], ["qwen72"], ["gpt-4o-mini"]]
    assert [t["content"] for t in store.get_turns(did)][-1] == "Seien Sie gegrüßt."


def test_fewer_than_two_answers_is_not_a_comparison_and_the_one_answer_continues(store):
    did = _dialogue(store)
    cands = [_cand("qwen72", "Hallo.", judge_status="judged", score=0.0),
             _cand("ours", None, status="failed", failure="HTTP 503")]
    got = record.record_judged_turn(store, did, 1, cands, seed=0, judge_model="j", turn={})
    assert got.void and got.winner == "qwen72" and "not a comparison" in got.reason
    c = store.comparison_at(did, 1)
    assert c["status"] == "void" and c["turn_id"] == got.turn_id and c["decision"] is None
    assert store.get_turns(did)[-1]["content"] == "Hallo."
    assert not store.has_comparisons()
    # every answer failed a check: nothing continues, nothing is decided
    did2 = _dialogue(store)
    got2 = record.record_judged_turn(store, did2, 1, [_cand("qwen72", "Hello.", status="rejected"),
                                                      _cand("ours", "Hello.", status="rejected")],
                                     seed=0, judge_model="j", turn={})
    assert got2.void and got2.turn_id is None and got2.winner is None and "failed a check" in got2.reason
    assert len(store.get_turns(did2)) == 1
    # the turn is tried again (simulate samples anew): a new comparison at the same position
    got3 = record.record_judged_turn(store, did2, 1, [_cand("qwen72", "Hallo.", judge_status="judged", score=0.0),
                                                      _cand("ours", "Hello.", status="rejected")],
                                     seed=0, judge_model="j", turn={})
    assert not got3.void and got3.winner == "qwen72"
    assert store.comparison_at(did2, 1)["id"] == got3.comparison_id
    assert [c["status"] for c in store.comparisons_of(did2)] == ["void", "decided"]


def test_a_turn_is_written_whole_or_not_at_all(store):
    did = _dialogue(store)
    store.add_turn(did, role="assistant", content="already there", author="model", idx=1)
    with pytest.raises(StoreConflict):  # the answer position is taken: nothing of the comparison stays
        record.record_judged_turn(store, did, 1, [_cand("qwen72", "Hallo.", judge_status="judged", score=0.0),
                                                  _cand("ours", "Hallo!", judge_status="judged", score=-5.0)],
                                  seed=0, judge_model="j", turn={})
    assert store.comparison_at(did, 1) is None and store.comparisons_of(did) == []
    assert store.scalar("SELECT COUNT(*) FROM candidates") == 0


def test_people_decide_pick_rank_none_and_edit(store):
    did = _dialogue(store)
    cid = store.add_comparison(did, 1, [_cand("qwen72", "Hallo."), _cand("ours", "Hallo!"),
                                        _cand("gpt-4o-mini", "Hi.")], labels=["ours", "qwen72", "gpt-4o-mini"])
    with pytest.raises(StoreConflict):  # one live comparison per answer position
        store.add_comparison(did, 1, [_cand("qwen72", "x"), _cand("ours", "y")])
    assert store.comparison_at(did, 1)["status"] == "open" and not store.has_comparisons()
    with pytest.raises(ValueError, match="not one of"):
        store.decide_comparison(cid, chooser="human", decision="pick", winner="llama")
    with pytest.raises(ValueError, match="at most once"):
        store.decide_comparison(cid, chooser="human", decision="rank", ranking=[["ours"], ["ours", "qwen72"]])
    with pytest.raises(ValueError, match="unknown chooser"):
        store.decide_comparison(cid, chooser="robot", decision="pick", winner="ours")
    with pytest.raises(ValueError, match="person's decision"):
        store.decide_comparison(cid, chooser="judge", decision="none")
    tid = store.add_turn(did, role="assistant", content="Hallo!", author="model", idx=1, model="our-sft-v3")
    store.decide_comparison(cid, chooser="human", decision="rank", ranking=[["ours", "qwen72"], ["gpt-4o-mini"]],
                            winner="ours", tie=True, reason="both fine", annotator="alice", turn_id=tid)
    c = store.comparison_at(did, 1)
    assert (c["decision"], c["winner"], c["tie"], c["reason"], c["annotator"]) == ("rank", "ours", True, "both fine",
                                                                                   "alice")
    assert store.has_comparisons()
    # the person edits the pick: the edit continues, chosen against every candidate
    store.update_turn(tid, content="Hallo zusammen!", original_content="Hallo!", author="human")
    store.decide_comparison(cid, chooser="human_edit", decision="rank", ranking=c["ranking"], winner="ours",
                            tie=True, annotator="alice", turn_id=tid)
    assert store.comparison_at(did, 1)["chooser"] == "human_edit"
    # judge scores of a person's comparison (itcollect judge scores candidates like any answer)
    store.set_candidate_judgements(cid, {"ours": {"judge_status": "judged", "judge_model": "j", "score": -1.0},
                                         "qwen72": {"judge_status": "unparsed", "judge_model": "j"}})
    by = {k["system"]: k for k in store.comparison_at(did, 1)["candidates"]}
    assert by["ours"]["score"] == -1.0 and by["qwen72"]["judge_status"] == "unparsed" and by["gpt-4o-mini"]["judge_status"] is None
    # undo takes the whole turn back, and a new comparison may take its place
    assert store.undo_comparisons(did, 1) == 1
    assert store.comparison_at(did, 1) is None and len(store.comparisons_of(did, include_undone=True)) == 1
    cid2 = store.add_comparison(did, 1, [_cand("qwen72", "Hallo."), _cand("ours", "Hallo!")])
    store.decide_comparison(cid2, chooser="human", decision="none", reason="both keep the English")
    with pytest.raises(StoreError, match="not open"):
        store.decide_comparison(cid, chooser="human", decision="pick", winner="ours")


def test_candidate_and_decision_values_are_checked_by_the_schema(store):
    did = _dialogue(store)
    with pytest.raises(ValueError, match="unknown candidate status"):
        store.add_comparison(did, 1, [_cand("qwen72", "x", status="great"), _cand("ours", "y")])
    with pytest.raises(ValueError, match="one candidate per system"):
        store.add_comparison(did, 1, [_cand("qwen72", "x"), _cand("qwen72", "y")])
    cid = store.add_comparison(did, 1, [_cand("qwen72", "x"), _cand("ours", "y")])
    for sql in ("UPDATE comparisons SET chooser='robot' WHERE id=?", "UPDATE comparisons SET decision='all' WHERE id=?",
                "UPDATE comparisons SET status='later' WHERE id=?",
                "UPDATE candidates SET compliance='maybe' WHERE comparison_id=?"):
        with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
            store.conn.execute(sql, (cid,))


def test_a_store_of_the_previous_schema_gains_the_comparison_tables(tmp_path):
    from itcollect.store import MIGRATIONS

    conn = sqlite3.connect(tmp_path / "old.db")
    conn.executescript("".join(m for m in MIGRATIONS[:8] if isinstance(m, str)) + "\nPRAGMA user_version=8;")
    conn.close()
    store = Store(tmp_path / "old.db")
    assert store.schema_version == SCHEMA_VERSION
    did = _dialogue(store)
    assert store.add_comparison(did, 1, [_cand("qwen72", "x"), _cand("ours", "y")]) > 0
    store.close()
