"""Annotator figures and agreement on a hand-built set of dialogues and actions: every expected
value is computed here from the documented definitions (sacrebleu's chrF, the action log's
clock), not read off the output."""

from __future__ import annotations

import json
import re
import statistics
from datetime import datetime, timedelta, timezone

import pytest
from sacrebleu.metrics import CHRF

from itcollect.stats.quality import ANNOTATOR_KEYS, quality_figures
from itcollect.store import Store, source_id_for
from itcollect.workspace import init_workspace

from .conftest import run_cli

T0 = datetime(2026, 3, 2, 9, 0, 0, tzinfo=timezone.utc)
SOURCES = ["The council approved the budget for the new bridge on Monday .",
           "Prices of fresh vegetables rose sharply after the storm last week .",
           "The museum will reopen to visitors after two years of renovation ."]
A1 = "Le conseil a approuvé le budget du nouveau pont lundi ."        # ann: accepted unchanged, fast
M2, E2 = "Le conseil a validé le budget du pont neuf lundi .", "Le conseil a approuvé le budget du pont neuf lundi ."
B1_REJECTED = "Le conseil approuve le budget ."                          # bob regenerates it
B1 = "Lundi , le conseil a approuvé le budget du nouveau pont ."
MB2, EB2 = "Lundi , le conseil valide le budget du pont .", "Lundi , le conseil a validé le budget du pont ."
PLANTED, REAL = "Les prix ont baissé après la tempête .", "Les prix ont fortement augmenté après la tempête ."
C2 = "Les prix des légumes frais ont fortement augmenté après la tempête ."


def at(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def chrf(hyp: str, ref: str) -> float:
    return CHRF().sentence_score(hyp, [ref]).score


def both(a: str, b: str) -> float:
    return (chrf(a, b) + chrf(b, a)) / 2


class Builder:
    """Writes dialogues, turns and actions with the times given (a real store, its own API for the
    records; the clock of the action log is set by hand)."""

    def __init__(self, store: Store) -> None:
        self.s = store

    def event(self, name: str, action: str, t: float, did: str | None = None, turn: int | None = None,
              **detail) -> None:
        with self.s.transaction() as c:
            c.execute("INSERT INTO session_events(annotator, dialogue_id, spec_id, action, turn_id, detail, created_at)"
                      " VALUES (?,?,?,?,?,?,?)", (name, did, None, action, turn, json.dumps(detail), at(t)))

    def turn(self, did: str, t: float, **fields) -> int:
        tid = self.s.add_turn(did, **fields)
        with self.s.transaction() as c:
            c.execute("UPDATE turns SET created_at=? WHERE id=?", (at(t), tid))
        return tid

    def request(self, did: str, name: str, t: float, type_: str, text: str = "Please translate.") -> int:
        self.event(name, "request", t, did)
        return self.turn(did, t, role="user", content=text, author="human", annotator=name, interaction_type=type_)

    def answer(self, did: str, name: str, t: float, text: str, type_: str, **extra) -> int:
        tid = self.turn(did, t, role="assistant", content=text, author="model", model="m", interaction_type=type_,
                        lang="fr", **extra)
        self.event(name, "answer", t, did, tid)
        return tid


@pytest.fixture
def built(tmp_path):
    ws = init_workspace(tmp_path / "ws")
    store = ws.store
    specs = []
    for i, text in enumerate(SOURCES):
        sid = source_id_for(text)
        store.add_source(source_id=sid, text=text, lang="en", origin_file="news.txt", origin_line=i + 1)
        specs.append({"seed": 0, "seq": i, "source_id": sid, "src_lang": "en", "tgt_lang": "fr",
                      "instruction_lang": "en", "n_turns": 2, "interaction_types": ["translate", "polish"],
                      "params": {}})
    store.add_specs(specs)
    with store.transaction() as c:
        c.execute("UPDATE specs SET copies = 2, status = 'done' WHERE id = 1")
    b = Builder(store)

    def dialogue(spec: int, name: str, copy: int = 0) -> str:
        return store.create_dialogue(origin="human", spec_id=spec, annotator=name, source_text=SOURCES[spec - 1],
                                     src_lang="en", tgt_lang="fr", instruction_lang="en", copy=copy)

    # ann, spec 1 (overlap copy 0): accepts the first answer 2 s after it appears, edits the second
    d1 = dialogue(1, "ann")
    b.event("ann", "open", 0, d1)
    b.request(d1, "ann", 10, "translate")
    a1 = b.answer(d1, "ann", 12, A1, "translate")
    b.event("ann", "accept", 14, d1, a1)
    b.request(d1, "ann", 30, "polish")
    a2 = b.answer(d1, "ann", 35, M2, "polish")
    store.update_turn(a2, content=E2, original_content=M2, author="human", annotator="ann")
    b.event("ann", "edit", 60, d1, a2)
    b.event("ann", "accept", 60, d1, a2, via="edit")
    b.event("ann", "quit", 70, d1)           # a break: not work...
    b.event("ann", "resume", 400, d1)
    b.event("ann", "finish", 405, d1)
    store.set_dialogue_status(d1, "done")
    # ann, spec 2: a control item caught by regenerating; the next answer accepted after a minute; a flag
    d2 = dialogue(2, "ann")
    b.event("ann", "open", 1000, d2)
    b.request(d2, "ann", 1005, "translate")
    p = b.answer(d2, "ann", 1010, PLANTED, "translate",
                 params={"sample": 0, "control": {"kind": "negation", "planted": PLANTED, "real": REAL,
                                                  "outcome": "catch", "via": "regenerate", "decided_by": "ann"}})
    store.set_turn_state(p, "rejected")
    b.event("ann", "regenerate", 1020, d2, p)
    c2 = b.answer(d2, "ann", 1025, C2, "translate", params={"sample": 1})
    b.event("ann", "accept", 1085, d2, c2)
    b.event("ann", "flag", 1090, d2, note="check the source")
    store.update_dialogue(d2, flagged=1, meta={"flags": [{"annotator": "ann", "note": "check the source"}]})
    b.event("ann", "finish", 1100, d2)
    store.set_dialogue_status(d2, "done")
    # ann, spec 3: skipped
    d3 = dialogue(3, "ann")
    b.event("ann", "open", 2000, d3)
    b.event("ann", "skip", 2010, d3, reason="not_news")
    store.set_dialogue_status(d3, "skipped", "not_news")
    # bob, spec 1 (overlap copy 1): regenerates the first answer, accepts the next after 30 s, edits the second
    d4 = dialogue(1, "bob", copy=1)
    b.event("bob", "open", 100, d4)
    b.request(d4, "bob", 110, "translate")
    r1 = b.answer(d4, "bob", 115, B1_REJECTED, "translate")
    store.set_turn_state(r1, "rejected")
    b.event("bob", "regenerate", 120, d4, r1)
    b1 = b.answer(d4, "bob", 125, B1, "translate", idx=1)
    b.event("bob", "accept", 155, d4, b1)
    b.request(d4, "bob", 160, "polish")
    bb2 = b.answer(d4, "bob", 170, MB2, "polish")
    store.update_turn(bb2, content=EB2, original_content=MB2, author="human", annotator="bob")
    b.event("bob", "edit", 200, d4, bb2)
    b.event("bob", "accept", 200, d4, bb2, via="edit")
    b.event("bob", "finish", 210, d4)
    store.set_dialogue_status(d4, "done")
    # reviews: ann's spec-1 copy accepted, bob's fixed; an error span marked on ann's answer
    store.set_review(d1, "rev", "accepted")
    store.set_review(d4, "rev", "fixed")
    store.add_review_mark(d1, a1, "rev", "accuracy/mistranslation", "major", 0, 10)
    # the judge scored both copies of spec 1
    rev = {d: store.get_dialogue(d)["turns_rev"] for d in (d1, d4)}
    store.save_judgements([
        {"turn_id": tid, "dialogue_id": did, "dialogue_rev": rev[did], "kind": "translation",
         "interaction_type": "translate", "judge_model": "j", "template_name": "t", "template_hash": "h",
         "status": "judged", "score": score, "errors": []}
        for tid, did, score in ((a1, d1, -1.0), (a2, d1, -5.0), (b1, d4, -2.0), (bb2, d4, -2.0))])
    store.set_spec_status(2, "done")
    store.set_spec_status(3, "skipped")
    yield ws
    ws.close()


def active(events: list[tuple[float, str]]) -> float:
    """The documented clock, written out: gaps between actions, not after a quit nor before a resume."""
    total = 0.0
    for (t1, a1), (t2, a2) in zip(events, events[1:]):
        if a1 in ("quit", "lease_lost") or a2 == "resume":
            continue
        total += t2 - t1
    return total


def test_figures_and_agreement_from_the_definitions(built):
    figures = quality_figures(built.store, {"session": {"min_seconds_per_word": 0.5}})
    ann, bob = figures["annotators"]["ann"], figures["annotators"]["bob"]
    assert set(figures["annotators"]) == {"ann", "bob"}  # the reviewer is no annotator
    assert list(ann) == list(ANNOTATOR_KEYS)
    # ann: D1 and D2 finished, D3 skipped
    t_d1 = active([(0, "open"), (10, "request"), (12, "answer"), (14, "accept"), (30, "request"), (35, "answer"),
                   (60, "edit"), (60, "accept"), (70, "quit"), (400, "resume"), (405, "finish")])
    t_d2 = active([(1000, "open"), (1005, "request"), (1010, "answer"), (1020, "regenerate"), (1025, "answer"),
                   (1085, "accept"), (1090, "flag"), (1100, "finish")])
    assert (t_d1, t_d2) == (70 + 5, 100)
    source_words = len(re.findall(r"\w+", SOURCES[0])) + len(re.findall(r"\w+", SOURCES[1]))
    assert ann["dialogues"] == 2 and ann["turns"] == 3
    assert ann["median_active_s"] == pytest.approx(statistics.median([t_d1, t_d2]))
    assert ann["s_per_word"] == pytest.approx((t_d1 + t_d2) / source_words, abs=1e-3)
    # decisions on model answers (the control aside): A1 accepted, M2 edited, C2 accepted
    assert ann["accepted_unchanged_share"] == pytest.approx(2 / 3, abs=1e-4)
    assert ann["edit_size"] == pytest.approx(1 - chrf(E2, M2) / 100, abs=1e-4)
    assert ann["skip_rate"] == pytest.approx(1 / 3, abs=1e-4) and ann["flag_rate"] == pytest.approx(1 / 3, abs=1e-4)
    # fast: A1 accepted 2 s after it appeared, under 0.5 s x its words; C2 took 60 s
    assert 2 < 0.5 * len(A1.split()) and 60 > 0.5 * len(C2.split())
    assert ann["fast_accepts"] == 1
    assert ann["control_items"] == 1 and ann["control_catch_rate"] == 1.0
    assert ann["overlap_specs"] == 1 and ann["agreement_chrf"] == pytest.approx(both(A1, B1), abs=0.01)
    assert ann["review"] == {"accepted": 1, "rejected": 0, "fixed": 0}
    # bob: regenerated the first answer, accepted the next after 30 s, edited the second
    assert bob["dialogues"] == 1 and bob["turns"] == 2 and bob["skip_rate"] == 0.0 and bob["flag_rate"] == 0.0
    assert bob["median_active_s"] == pytest.approx(110.0)
    assert bob["accepted_unchanged_share"] == pytest.approx(1 / 3, abs=1e-4)
    assert bob["edit_size"] == pytest.approx(1 - chrf(EB2, MB2) / 100, abs=1e-4)
    assert bob["fast_accepts"] == 0  # 30 s for an answer of 11 words
    assert bob["control_items"] == 0 and bob["control_catch_rate"] is None
    assert bob["review"] == {"accepted": 0, "rejected": 0, "fixed": 1}
    # agreement on spec 1: final first translations, the polish revisions, decisions, judge scores
    ag = figures["agreement"]
    assert (ag["specs"], ag["pairs"]) == (1, 1)
    assert ag["first_turn_chrf"] == pytest.approx(both(A1, B1), abs=0.01)
    assert ag["revision_chrf"] == pytest.approx(both(E2, EB2), abs=0.01)
    assert ag["decision_agreement"] == 0.0  # ann accepted the first answer, bob regenerated it
    assert ag["judge_score_diff"] == pytest.approx(abs((-1 - 5) / 2 - (-2 - 2) / 2))
    assert [p["annotators"] for p in ag["by_pair"]] == [["ann", "bob"]]
    assert figures["annotator_details"]["ann"]["review_errors"] == {"accuracy/mistranslation": {"major": 1}}
    assert figures["annotator_details"]["ann"]["controls"] == {"missed": 0, "caught": 1}


def test_stats_cli_annotators_table_and_json(built):
    root = built.root
    data = json.loads(run_cli("-C", str(root), "stats", "--json").stdout)
    assert set(data["annotators"]) == {"ann", "bob"}
    assert all(list(a) == list(ANNOTATOR_KEYS) for a in data["annotators"].values())
    assert data["annotators"]["ann"]["fast_accepts"] == 1 and data["agreement"]["pairs"] == 1
    only = json.loads(run_cli("-C", str(root), "stats", "--annotators", "--json").stdout)
    assert only["annotators"] == data["annotators"] and set(only) == {"annotators", "agreement", "annotator_details"}
    table = run_cli("-C", str(root), "stats", "--annotators")
    assert table.returncode == 0
    assert "Annotators (quality)" in table.stdout and "ann & bob" in table.stdout
    assert "accuracy/mistranslation 0/1/0" in table.stdout
    r = run_cli("-C", str(root), "stats", "--annotators", "--plot", str(root / "x.png"))
    assert r.returncode == 2


def test_nothing_to_compute_from_is_null(tmp_path):
    ws = init_workspace(tmp_path / "ws")
    sid = source_id_for(SOURCES[0])
    ws.store.add_source(source_id=sid, text=SOURCES[0], lang="en", origin_file="n.txt", origin_line=1)
    ws.store.add_specs([{"seed": 0, "seq": 0, "source_id": sid, "src_lang": "en", "tgt_lang": "fr",
                         "instruction_lang": "en", "n_turns": 1, "interaction_types": ["translate"], "params": {}}])
    did = ws.store.create_dialogue(origin="human", spec_id=1, annotator="cleo", source_text=SOURCES[0], src_lang="en")
    ws.store.log_event("cleo", "open", dialogue_id=did, spec_id=1)
    cleo = quality_figures(ws.store, ws.config)["annotators"]["cleo"]
    assert cleo == {"dialogues": 0, "turns": 0, "median_active_s": None, "s_per_word": None,
                    "accepted_unchanged_share": None, "edit_size": None, "skip_rate": None, "flag_rate": None,
                    "fast_accepts": 0, "control_items": 0, "control_catch_rate": None, "overlap_specs": 0,
                    "agreement_chrf": None, "review": {"accepted": 0, "rejected": 0, "fixed": 0},
                    "returns": 0, "fixes": 0, "early_finishes": 0}
    ws.close()
