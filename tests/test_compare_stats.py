"""``stats --compare`` and the ``compare`` key of ``stats --json`` (issue 23, part 5), on small cases
whose figures are worked out by hand in the comments (the oracle), over a real store and the CLI."""

from __future__ import annotations

import json

import pytest

from itcollect.compare import record
from itcollect.stats.compare import agreement, bradley_terry, compare_section, cost
from itcollect.store import Store
from itcollect.store.core import utcnow


def _cand(system: str, status: str = "answered", **more):
    return {"system": system, "model": f"m-{system}", "status": status,
            "content": None if status == "failed" else f"answer of {system}", **more}


def _dialogue(store: Store, pair=("en", "de"), instr="en") -> str:
    did = store.create_dialogue(origin="simulated", source_text="Hello.", src_lang=pair[0], tgt_lang=pair[1],
                                instruction_lang=instr)
    store.add_turn(did, role="user", content="Translate: Hello.", author="model", interaction_type="translate")
    return did


def _second_request(store: Store, did: str) -> None:
    store.add_turn(did, role="user", content="More formal.", author="model", interaction_type="style")


def _human(store: Store, did: str, idx: int, cands, **decision) -> None:
    cid = store.add_comparison(did, idx, cands)
    winner = decision.get("winner")
    tid = None
    if winner is not None:
        tid = store.add_turn(did, role="assistant", content=f"answer of {winner}", author="model", idx=idx)
    store.decide_comparison(cid, annotator="alice", turn_id=tid, **decision)


def _judged(store: Store, did: str, idx: int, scores: dict[str, float]) -> None:
    record.record_judged_turn(store, did, idx, [_cand(s, judge_status="judged", score=v) for s, v in scores.items()]
                              + [_cand("C", judge_status="judged", score=-25.0)], seed=1, judge_model="j",
                              turn={"interaction_type": "translate"})


@pytest.fixture
def corpus(tmp_path):
    """Two dialogues, two compared turns each, systems A, B, C:

    D1 turn 1, judge:  A 0 > B -1 > C -25                    -> A win, B loss, C loss
    D1 turn 2, person: pick B among A, B (C's call failed)    -> B win, A loss (C takes no part)
    D2 turn 1, judge:  A -1 = B -1 > C -25                    -> A tie, B tie, C loss
    D2 turn 2, person: none of A, B, C (all bad)              -> loss for all three
    """
    store = Store(tmp_path / "s.db")
    d1, d2 = _dialogue(store), _dialogue(store, pair=("zh", "en"), instr="zh")
    _judged(store, d1, 1, {"A": 0.0, "B": -1.0})
    _second_request(store, d1)
    _human(store, d1, 3, [_cand("A", judge_status="judged", score=0.0), _cand("B", judge_status="judged", score=-1.0),
                          _cand("C", "failed", failure="HTTP 503")], chooser="human", decision="pick", winner="B")
    _judged(store, d2, 1, {"A": -1.0, "B": -1.0})
    _second_request(store, d2)
    _human(store, d2, 3, [_cand("A"), _cand("B"), _cand("C")], chooser="human", decision="none",
           reason="all keep the English")
    yield store
    store.close()


def test_win_rates_ties_count_half(corpus):
    s = compare_section(corpus)
    assert s["turns"] == 4 and s["by_chooser"] == {"human": 2, "judge": 2, "human_edit": 0}
    figures = {k: {f: v[f] for f in ("turns", "wins", "ties", "losses", "win_rate")} for k, v in s["by_system"].items()}
    assert figures == {  # A: win, loss, tie, loss = 1.5 / 4; B the same; C: three losses
        "A": {"turns": 4, "wins": 1, "ties": 1, "losses": 2, "win_rate": 0.375},
        "B": {"turns": 4, "wins": 1, "ties": 1, "losses": 2, "win_rate": 0.375},
        "C": {"turns": 3, "wins": 0, "ties": 0, "losses": 3, "win_rate": 0.0}}


def test_the_interval_resamples_dialogues(corpus):
    # per dialogue, A scores 1 of 2 turns (D1) and 0.5 of 2 (D2): a resample of the two dialogues is
    # D1 D1 (0.5), D2 D2 (0.25) or one of each (0.375), the first two each a quarter of the time, so
    # the 2.5th and 97.5th percentiles are 0.25 and 0.5 exactly; C never scores
    s = compare_section(corpus)
    assert s["by_system"]["A"]["ci95"] == [0.25, 0.5] == s["by_system"]["B"]["ci95"]
    assert s["by_system"]["C"]["ci95"] == [0.0, 0.0]
    assert compare_section(corpus) == s  # seeded: the same store gives the same figures


def test_groups_views_head_to_head_and_strength(corpus):
    s = compare_section(corpus)
    assert set(s["by_pair"]) == {"en-de", "zh-en"} and set(s["by_instruction_lang"]) == {"en", "zh"}
    assert s["by_pair"]["en-de"]["B"]["win_rate"] == 0.5  # D1: B loss, B win
    assert set(s["by_type"]) == {"translate", "style"}
    # translation (first requests): A win + tie = 0.75, B loss + tie = 0.25; revisions: B's pick only
    tr, follow = s["views"]["translation"], s["views"]["instruction_following"]
    assert tr["turns"] == 2 and tr["by_system"]["A"]["win_rate"] == 0.75 and tr["by_system"]["B"]["win_rate"] == 0.25
    assert follow["turns"] == 2 and follow["by_system"]["B"]["win_rate"] == 0.5
    assert follow["by_system"]["A"]["win_rate"] == 0.0 and s["views"]["multi_turn"] == {"turns": 0, "by_system": {}}
    # pairs the decisions order: D1t1 A>B>C, D1t2 B>A, D2t1 A=B>C (the none turn orders nothing)
    assert s["head_to_head"] == {"A vs B": {"turns": 3, "A": 1, "B": 1, "ties": 1},
                                 "A vs C": {"turns": 2, "A": 2, "C": 0, "ties": 0},
                                 "B vs C": {"turns": 2, "B": 2, "C": 0, "ties": 0}}
    # C never wins: strength 0; A and B have 3.5 wins each of the same games: a half each
    assert s["strength"] == {"A": 0.5, "B": 0.5, "C": 0.0}
    # apart: the judge's two turns give A 1.5 of its 2 games with B (C still 0): 0.75 / 0.25;
    # the person's one ordered pair is B over A
    assert s["choosers"]["judge"]["strength"] == {"A": 0.75, "B": 0.25, "C": 0.0}
    assert s["choosers"]["human"]["strength"] == {"A": 0.0, "B": 1.0}
    assert s["choosers"]["human"]["by_system"]["C"]["turns"] == 1
    # D1t2: the person picked B, the judge scored A best: no agreement (D2t2 is 'none')
    assert s["agreement"] == {"n": 1, "agreement": 0.0}


def test_bradley_terry_against_closed_forms():
    assert bradley_terry([]) == {}
    # two systems: p_a / (p_a + p_b) is a's share of the wins (a tie is half a win each)
    assert bradley_terry([("a", "b", 1.0)] * 3 + [("a", "b", 0.0)]) == {"a": 0.75, "b": 0.25}
    assert bradley_terry([("a", "b", 1.0)] * 2 + [("a", "b", 0.5)] * 2) == {"a": 0.75, "b": 0.25}
    # a cycle: everyone equal
    assert bradley_terry([("a", "b", 1.0), ("b", "c", 1.0), ("a", "c", 0.0)]) == {"a": 0.3333, "b": 0.3333,
                                                                                  "c": 0.3333}


def test_bradley_terry_solves_the_likelihood_equations():
    # at the maximum, every system's wins equal its expected wins: W_i = sum_j n_ij p_i / (p_i + p_j)
    games = ([("a", "b", 1.0)] * 5 + [("a", "b", 0.0)] * 2 + [("b", "c", 1.0)] * 3 + [("b", "c", 0.0)] * 3
             + [("a", "c", 1.0)] * 4 + [("a", "c", 0.5)] * 2 + [("a", "c", 0.0)])
    p = bradley_terry(games)
    assert abs(sum(p.values()) - 1) < 1e-3
    for i in p:
        wins = sum(r if a == i else 1 - r for a, b, r in games if i in (a, b))
        expected = sum(p[i] / (p[i] + p[b if a == i else a]) for a, b, _ in games if i in (a, b))
        assert wins == pytest.approx(expected, abs=2e-3), i
    assert p["a"] > p["b"] == p["c"]  # b and c: 3-3 between them, each 5 of 7 against a


def test_agreement_is_the_chance_both_pickers_name_the_same_system():
    def row(chooser, decision, cands, winner=None, ranking=None):
        return {"chooser": chooser, "decision": decision, "winner": winner, "ranking": ranking,
                "candidates": [{"system": s, "status": "answered", "judge_status": "judged" if v is not None else None,
                                "score": v, "compliance": None, "rating": None} for s, v in cands]}

    rows = [row("human", "pick", [("A", 0.0), ("B", -1.0)], winner="A"),  # same system: 1
            row("human", "pick", [("A", -1.0), ("B", -1.0)], winner="A"),  # judge tie A=B: 1/2
            row("human_edit", "rank", [("A", 0.0), ("B", -1.0), ("C", -5.0)], winner="A",
                ranking=[["A", "B"], ["C"]]),  # person A=B, judge A: 1/2
            row("human", "pick", [("A", 0.0), ("B", None)], winner="A"),  # B never judged: left out
            row("judge", "rank", [("A", 0.0), ("B", -1.0)], winner="A", ranking=[["A"], ["B"]]),  # not a person
            row("human", "none", [("A", 0.0), ("B", -1.0)])]  # nothing picked
    assert agreement(rows) == {"n": 3, "agreement": round(2 / 3, 4)}


def test_cost_counts_calls_failures_each_paid_key_once_and_the_median_latency(tmp_path):
    store = Store(tmp_path / "s.db")
    now = utcnow()
    store.ledger_apply(begin=[(k, "assistant", "m", None, "{}", now) for k in ("k1", "k2")],
                       done=[("x", "stop", 10, 2, 0.01, 900.0, 1, now, "k1"), ("y", "stop", 10, 2, 0.02, 300.0, 1, now, "k2")])
    did = _dialogue(store)
    store.add_comparison(did, 1, [_cand("A", call_key="k1", latency_ms=900.0), _cand("B", call_key="k2", latency_ms=300.0),
                                  _cand("C", "failed", failure="down")])
    store.undo_comparisons(did, 1)  # taken back, still paid for; the re-asked call comes from the ledger
    store.add_comparison(did, 1, [_cand("A", call_key="k1", latency_ms=1100.0), _cand("B", "rejected", call_key="k2",
                                                                                         latency_ms=300.0),
                                  _cand("C", "failed", failure="down")])
    assert cost(store.compare_call_rows()) == {
        "A": {"calls": 2, "failed": 0, "cost_usd": 0.01, "median_latency_s": 1.0},
        "B": {"calls": 2, "failed": 0, "cost_usd": 0.02, "median_latency_s": 0.3},
        "C": {"calls": 2, "failed": 2, "cost_usd": 0.0, "median_latency_s": None}}
    store.close()


def test_stats_cli_compare_json_text_and_plot(cli, workspace, tmp_path):
    store = workspace.store
    d = _dialogue(store)
    _judged(store, d, 1, {"A": 0.0, "B": -1.0})
    workspace.close()
    root = str(workspace.root)
    full = cli("-C", root, "stats", "--json")
    assert full.returncode == 0, full.stderr
    section = json.loads(full.stdout)["compare"]
    assert section["turns"] == 1 and section["by_system"]["A"]["win_rate"] == 1.0
    only = cli("-C", root, "stats", "--compare", "--json")
    assert only.returncode == 0 and json.loads(only.stdout) == section
    text = cli("-C", root, "stats", "--compare", "--plot", str(tmp_path / "wins.png"))
    assert text.returncode == 0, text.stderr
    assert "Comparisons" in text.stdout and "win rate" in text.stdout
    assert (tmp_path / "wins.png").read_bytes()[:4] == b"\x89PNG"
    everything = cli("-C", root, "stats", "--plot", str(tmp_path / "all.png"))  # the mix, and a win-rate panel
    assert everything.returncode == 0 and "Comparisons" in everything.stdout
    assert (tmp_path / "all.png").stat().st_size > 0
    both = cli("-C", root, "stats", "--compare", "--annotators")
    assert both.returncode == 2 and "one of them" in both.stderr


def test_an_empty_workspace_has_an_empty_compare_section(cli, workspace):
    workspace.close()
    out = cli("-C", str(workspace.root), "stats", "--json")
    assert json.loads(out.stdout)["compare"]["turns"] == 0
    text = cli("-C", str(workspace.root), "stats", "--compare")
    assert text.returncode == 0 and "no compared turns yet" in text.stdout


def _copy(store: Store, spec_id: int, copy: int, annotator: str, decisions: list[dict], chooser: str = "human") -> None:
    """A copy of an overlap spec compared by ``annotator``: one decision per request (A, B, C each)."""
    did = store.create_dialogue(origin="human", spec_id=spec_id, annotator=annotator, copy=copy, source_text="Hi.",
                                src_lang="en", tgt_lang="zh", instruction_lang="en")
    for k, decision in enumerate(decisions):
        store.add_turn(did, role="user", content=f"request {k + 1}", author="human", idx=2 * k,
                       interaction_type="translate" if k == 0 else "style")
        cid = store.add_comparison(did, 2 * k + 1, [_cand("A"), _cand("B"), _cand("C")])
        tid = store.add_turn(did, role="assistant", content=f"answer {k + 1}", author="model", idx=2 * k + 1)
        store.decide_comparison(cid, chooser=chooser, annotator=annotator, turn_id=tid, **decision)


def test_the_agreement_of_peoples_picks_on_overlap_specs(tmp_path):
    """Two overlap specs (ids s1, s2); every two copies by two people, per request both decided:

    s1 request 1: alice picks A, bob picks A, carol ranks A = B > C
       alice-bob 1, alice-carol 1/2 (carol's best is A or B), bob-carol 1/2
    s1 request 2: alice picks B, bob says all bad (carol has no second request)
       alice-bob 0
    s2 request 1: alice all bad, dave all bad: 1; the judge's copy takes no part
    n 5, agreement (1 + 1/2 + 1/2 + 0 + 1) / 5 = 0.6 over 2 specs; first request 4 pairs, 3/4
    """
    from .test_leases import make_specs

    store = Store(tmp_path / "s.db")
    s1, s2 = make_specs(store, 2)
    pick = lambda w: {"decision": "pick", "winner": w}  # noqa: E731
    none = {"decision": "none", "reason": "all bad"}
    _copy(store, s1, 0, "alice", [pick("A"), pick("B")])
    _copy(store, s1, 1, "bob", [pick("A"), none])
    _copy(store, s1, 2, "carol", [{"decision": "rank", "ranking": [["A", "B"], ["C"]], "winner": "A"}])
    _copy(store, s2, 0, "alice", [none])
    _copy(store, s2, 1, "dave", [none])
    _copy(store, s2, 2, "judge-model", [{"decision": "rank", "ranking": [["A"], ["B"], ["C"]], "winner": "A"}],
          chooser="judge")
    section = compare_section(store)
    assert section["pick_agreement"] == {"n": 5, "agreement": 0.6, "specs": 2,
                                         "first_request": {"n": 4, "agreement": 0.75}}
    assert section["turns"] == 8 and section["agreement"]["n"] == 0  # no candidate was judged
    from itcollect.stats.compare import render_compare

    assert ("  people's picks on overlap specs: 5 pairs of turns (2 specs), agreement 0.6; first request 4 pairs,"
            " 0.75") in render_compare({"compare": section})
    store.close()


def test_no_overlap_no_pick_agreement(corpus):
    assert compare_section(corpus)["pick_agreement"] == {"n": 0, "agreement": None, "specs": 0,
                                                         "first_request": {"n": 0, "agreement": None}}
