"""What the judgements change downstream: filter rules, stats, export columns, the review order."""

from __future__ import annotations

import copy
import io
import json

import datasets
import numpy as np
import pytest

from itcollect.export import export_dataset
from itcollect.filter import run_filter
from itcollect.judge import JudgeOptions, run_judge
from itcollect.session.review import run_review
from itcollect.stats.report import collect_stats, render_stats

from .conftest import run_cli
from .judging import imported, judge_rows, make_ws, variant_answer, variant_responder

#: A..G are judged: the variant of their first answer (F and G have a second, rated answer); H is
#: imported after judging (unjudged).
FIRST = ["clean", "wellformed", "prose", "fence", "garbage", "clean", "clean"]
EXTRAS = {5: [("Why did you choose 'approuvé'?", "Because a council approves a budget [noncompliant].")],
          6: [("Why did you choose 'approuvé'?", "Because it is the usual verb for a vote [partly].")]}
NAMES = "ABCDEFGH"


def verdicts(ws) -> dict[str, tuple]:
    return {d["id"]: (v["kept"], v["reasons"], v["detail"]) for d in ws.store.iter_dialogues(("done",))
            for v in [ws.store.get_verdict(d["id"])]}


@pytest.fixture
def corpus(tmp_path, fake_openai):
    """The workspace, {name: dialogue id}; filtered once before judging (the verdicts of then)."""
    ws = make_ws(tmp_path, extra="\n[filter]\nnear_dup = false\n")
    fake_openai.responder = variant_responder
    ids = imported(ws, tmp_path, [variant_answer(v, i) for i, v in enumerate(FIRST)], extras=EXTRAS)
    run_filter(ws.store, ws.config, workers=1)
    before = verdicts(ws)
    summary = run_judge(ws, JudgeOptions(base_url=fake_openai.base_url, model="judge-model"), show_progress=False)
    assert (summary.judged, summary.unparsed) == (8, 1)
    ids += imported(ws, tmp_path, [variant_answer("clean", 7)], name="late.jsonl")
    by_name = dict(zip(NAMES, ids))
    yield ws, by_name, before
    ws.close()


def _with(ws, **filter_keys):
    cfg = copy.deepcopy(dict(ws.config))
    cfg["filter"].update(filter_keys)
    return cfg


def test_judge_rules_off_leave_verdicts_as_before_judging(corpus):
    ws, ids, before = corpus
    assert all(kept for kept, _, _ in before.values())  # the deterministic rules keep all of them
    run_filter(ws.store, ws.config, workers=1)
    after = verdicts(ws)
    assert {k: after[k] for k in before} == before and after[ids["H"]] == (True, [], {})


@pytest.mark.parametrize("keys,dropped", [
    ({"min_judge_score": -5.0}, {"B": ["low_judge_score"], "C": ["low_judge_score"]}),
    ({"max_critical_errors": 0}, {"C": ["critical_error"]}),
    ({"require_compliance": True}, {"F": ["not_compliant"]}),
    ({"min_judge_rating": 3}, {"F": ["low_judge_score"]}),
    ({"require_judge": True}, {"E": ["not_judged"], "H": ["not_judged"]}),
    ({"min_judge_score": -5.0, "min_judge_rating": 3, "max_critical_errors": 0, "require_compliance": True,
      "require_judge": True},
     {"B": ["low_judge_score"], "C": ["low_judge_score", "critical_error"], "E": ["not_judged"],
      "F": ["low_judge_score", "not_compliant"], "H": ["not_judged"]}),
])
def test_thresholds_keep_and_drop_exactly_with_reasons(corpus, keys, dropped):
    ws, ids, _ = corpus
    result = run_filter(ws.store, _with(ws, **keys), workers=1)
    got = verdicts(ws)
    for name, did in ids.items():
        kept, reasons, _ = got[did]
        assert reasons == dropped.get(name, []) and kept == (name not in dropped), (name, reasons)
    assert result.kept == 8 - len(dropped)
    assert result.thresholds["min_judge_score"] == keys.get("min_judge_score", 0.0)


def test_verdict_details_name_the_turn_the_score_and_the_worst_error(corpus):
    ws, ids, _ = corpus
    run_filter(ws.store, _with(ws, min_judge_score=-5.0, min_judge_rating=3, max_critical_errors=0,
                               require_compliance=True, require_judge=True), workers=1)
    got = verdicts(ws)
    assert got[ids["B"]][2]["low_judge_score"] == {
        "turn": 1, "score": -6.0, "worst": {"span": "budget", "category": "accuracy/mistranslation", "severity": "major"}}
    assert got[ids["C"]][2]["critical_error"] == {
        "turn": 1, "critical": 1, "score": -25.0,
        "worst": {"span": "conseil", "category": "accuracy/mistranslation", "severity": "critical"}}
    assert got[ids["F"]][2]["low_judge_score"] == {"turn": 3, "rating": 2, "reason": "It ignores the request."}
    assert got[ids["F"]][2]["not_compliant"] == {"turn": 3, "compliance": "no", "type": None,
                                                 "reason": "It ignores the request."}
    assert got[ids["E"]][2]["not_judged"] == {"turn": 1, "status": "unparsed"}
    assert got[ids["H"]][2]["not_judged"] == {"turn": 1, "status": "unjudged"}


def test_an_answer_edited_after_judging_is_not_judged_any_more(corpus, fake_openai):
    ws, ids, _ = corpus
    turn = ws.store.get_turns(ids["D"])[1]
    ws.store.update_turn(turn["id"], content=turn["content"] + " Bien.", author="human",
                         original_content=turn["content"])
    run_filter(ws.store, _with(ws, require_judge=True), workers=1)
    assert verdicts(ws)[ids["D"]][1] == ["not_judged"]
    assert collect_stats(ws.store, ws.config)["judge"]["unjudged"] == 2  # D's answer and H's
    run_judge(ws, JudgeOptions(base_url=fake_openai.base_url, model="judge-model"), show_progress=False)
    run_filter(ws.store, _with(ws, require_judge=True), workers=1)
    assert verdicts(ws)[ids["D"]][1] == []


def test_stats_judge_section(corpus):
    ws, ids, _ = corpus
    j = collect_stats(ws.store, ws.config)["judge"]
    assert set(j) >= {"judged", "unjudged", "unparsed", "score", "by_pair", "by_type", "by_origin", "errors",
                      "compliance", "review_agreement"}
    answers = ws.store.scalar("SELECT COUNT(*) FROM turns t JOIN dialogues d ON d.id=t.dialogue_id"
                              " WHERE d.status='done' AND t.state='active' AND t.role='assistant'")
    assert (j["judged"], j["unparsed"], j["unjudged"]) == (8, 1, 1)
    assert j["judged"] + j["unparsed"] + j["unjudged"] == answers
    scores = [0.0, -6.0, -25.0, -2.0, 0.0, 0.0]  # the first answers of A, B, C, D, F, G
    assert j["score"] == {"mean": round(float(np.mean(scores)), 3), "p10": round(float(np.percentile(scores, 10)), 3),
                          "median": round(float(np.median(scores)), 3)}
    assert j["by_pair"] == {"en-fr": {"judged": 8, "mean": round(float(np.mean(scores)), 3), "rating_mean": 2.5}}
    assert j["by_origin"]["imported"]["judged"] == 8
    assert j["by_type"]["translate"] == {"judged": 6, "mean": round(float(np.mean(scores)), 3)}
    assert j["by_type"]["untyped"] == {"judged": 2, "mean": None, "rating_mean": 2.5}
    assert j["errors"] == {"accuracy/mistranslation": {"critical": 1, "major": 1, "minor": 0},
                           "fluency/spelling": {"critical": 0, "major": 0, "minor": 1},
                           "style": {"critical": 0, "major": 0, "minor": 1},
                           "locale_convention": {"critical": 0, "major": 0, "minor": 1}}
    assert j["compliance"] == {"untyped": {"yes": 0, "partly": 1, "no": 1}}
    assert j["review_agreement"] == {"n": 0, "agreement": None, "kappa": None}
    assert j["filter"]["kept"]["dialogues"] == 6  # judged dialogues the filter (before judging) kept
    text = render_stats(collect_stats(ws.store, ws.config))
    assert "LLM judge" in text and "judged 8  unparsed 1  unjudged 1" in text
    assert "accuracy/mistranslation" in text


def _kappa(pairs):
    n = len(pairs)
    po = sum(a == b for a, b in pairs) / n
    pa, pb = sum(a for a, _ in pairs) / n, sum(b for _, b in pairs) / n
    pe = pa * pb + (1 - pa) * (1 - pb)
    return n, po, (po - pe) / (1 - pe)


def test_review_agreement_and_kappa_on_hand_built_reviews(corpus):
    ws, ids, _ = corpus
    # judge pass without thresholds: the lowest score >= -5 (A 0, D -2, F 0, G 0 pass; B -6, C -25 fail)
    judge_pass = {"A": True, "B": False, "C": False, "D": True, "F": True, "G": True}
    review = {"A": "accepted", "B": "rejected", "C": "accepted", "D": "rejected", "F": "accepted", "G": "accepted",
              "E": "rejected", "H": "accepted"}  # E (unparsed) and H (unjudged) are left out of the figure
    for name, verdict in review.items():
        ws.store.set_review(ids[name], "rev", verdict)
    pairs = [(judge_pass[k], review[k] == "accepted") for k in judge_pass]
    n, po, kappa = _kappa(pairs)
    ra = collect_stats(ws.store, ws.config)["judge"]["review_agreement"]
    assert ra == {"n": n, "agreement": round(po, 4), "kappa": round(kappa, 4)} and n == 6
    # with a judge threshold on, passing means passing the thresholds: -1 fails D (-2) too
    cfg = _with(ws, min_judge_score=-1.0)
    judge_pass["D"] = False
    n, po, kappa = _kappa([(judge_pass[k], review[k] == "accepted") for k in judge_pass])
    ra = collect_stats(ws.store, cfg)["judge"]["review_agreement"]
    assert ra == {"n": n, "agreement": round(po, 4), "kappa": round(kappa, 4)}
    # the reviews did not make the judgements stale
    assert collect_stats(ws.store, ws.config)["judge"]["judged"] == 8


def test_export_columns_line_up_with_the_answers(corpus, tmp_path):
    ws, ids, _ = corpus
    run_filter(ws.store, ws.config, workers=1)
    out = tmp_path / "out"
    export_dataset(ws.store, ws.config, out, fmt="all", validation_share=0.0, test_share=0.0, workers=1)
    dd = datasets.load_from_disk(str(out / "hf"))
    rows = {r["id"]: r for s in dd for r in dd[s]}
    assert len(rows) == 8
    stored = {r["turn_id"]: r for r in judge_rows(ws)}
    for name, did in ids.items():
        r = rows[did]
        answers = [t for t in ws.store.get_turns(did) if t["role"] == "assistant"]
        assert len(r["turn_judge_scores"]) == len(r["turn_judge_errors"]) == len(r["turn_compliance"]) == \
            len(r["turn_judge_ratings"]) == len(answers) == sum(m["role"] == "assistant" for m in r["messages"])
        for k, t in enumerate(answers):
            j = stored.get(t["id"])
            if j is None or j["status"] != "judged":
                assert (r["turn_judge_scores"][k], r["turn_judge_errors"][k], r["turn_compliance"][k]) == \
                    (None, None, None), name
                continue
            assert r["turn_judge_scores"][k] == j["score"] and r["turn_compliance"][k] == j["compliance"]
            assert r["turn_judge_ratings"][k] == j["rating"]
            if j["kind"] == "translation":
                assert json.loads(r["turn_judge_errors"][k]) == json.loads(j["errors"])
            else:
                assert r["turn_judge_errors"][k] is None
        assert r["judge_model"] == (None if name in "EH" else "judge-model")
    assert rows[ids["F"]]["turn_compliance"] == [None, "no"] and rows[ids["F"]]["turn_judge_ratings"] == [None, 2]
    assert rows[ids["B"]]["turn_judge_scores"] == [-6.0]
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "## LLM judge" in card and "8 of 10 assistant answers are judged by judge-model" in card
    assert "accuracy/mistranslation" in card


def test_review_order_judge_serves_the_worst_first_with_the_error_spans(corpus):
    ws, ids, _ = corpus
    ws.store.update_dialogue(ids["H"], flagged=1)  # flagged, never judged: after the judged ones

    def served(order):
        out = io.StringIO()
        run_review(ws.store, "rev", interactive=False, stdin=io.StringIO("next\n" * 20), stdout=out, order=order)
        events = [json.loads(line.split(" ", 1)[1]) for line in out.getvalue().splitlines()
                  if line.startswith("review ")]
        return events

    events = served("judge")
    names = {v: k for k, v in ids.items()}
    order = [names[e["dialogue_id"]] for e in events]
    assert order[:3] == ["C", "B", "D"] and sorted(order[3:6]) == ["A", "F", "G"] and order[6:] == ["H"]
    assert [e["remaining"] for e in events] == list(range(7, 0, -1))
    b = next(e for e in events if e["dialogue_id"] == ids["B"])
    assert b["judge_score"] == -6.0
    answer = b["turns"][1]
    assert answer["judge"]["score"] == -6.0 and answer["judge"]["errors"][0] == {
        "span": "budget", "category": "accuracy/mistranslation", "severity": "major"}
    assert "budget" in answer["content"] and "judge" not in b["turns"][0]
    assert [names[e["dialogue_id"]] for e in served("default")] == ["H"]
    # CLI: --order goes with --review
    r = run_cli("-C", str(ws.root), "session", "--annotator", "rev", "--review", "--order", "judge", input="quit\n")
    assert r.returncode == 0 and f'"dialogue_id": "{ids["C"]}"' in r.stdout.splitlines()[1]
    r = run_cli("-C", str(ws.root), "session", "--annotator", "rev", "--order", "judge", input="quit\n")
    assert r.returncode == 2


def test_stats_plot_draws_the_score_distribution(corpus, tmp_path):
    ws, _, _ = corpus
    png = tmp_path / "mix.png"
    r = run_cli("-C", str(ws.root), "stats", "--plot", str(png), "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["judge"]["histogram"] == {"0": 3, "-2": 1, "-6": 1, "-25": 1}
    assert png.stat().st_size > 10_000


def test_unjudged_workspace_stats_and_export(tmp_path, fake_openai):
    ws = make_ws(tmp_path)
    imported(ws, tmp_path, [variant_answer("clean")])
    j = collect_stats(ws.store, ws.config)["judge"]
    assert (j["judged"], j["unparsed"], j["unjudged"]) == (0, 0, 1) and j["score"]["mean"] is None
    run_filter(ws.store, ws.config, workers=1)
    out = tmp_path / "out"
    export_dataset(ws.store, ws.config, out, fmt="hf", validation_share=0.0, test_share=0.0, workers=1)
    row = datasets.load_from_disk(str(out / "hf"))["train"][0]
    assert row["turn_judge_scores"] == [None] and row["judge_model"] is None
    assert "LLM judge" not in (out / "README.md").read_text(encoding="utf-8")
    ws.close()


def test_review_terminal_marks_the_judges_error_spans(corpus):
    """The interactive review (a real pseudo-terminal) with --order judge: the worst dialogue first,
    its lowest score, and the judge's line with the error span under the answer."""
    import os
    import sys

    pexpect = pytest.importorskip("pexpect")
    ws, ids, _ = corpus
    env = dict(os.environ, PROMPT_TOOLKIT_NO_CPR="1", TERM="xterm", ITCOLLECT_PROGRESS="0", COLUMNS="140",
               LINES="40")
    child = pexpect.spawn(sys.executable, ["-m", "itcollect", "-C", str(ws.root), "session", "--annotator", "rev",
                                           "--review", "--order", "judge"],
                          env=env, encoding="utf-8", timeout=60, dimensions=(40, 140))
    log = io.StringIO()
    child.logfile_read = log
    try:
        child.expect("6 left")  # every judged dialogue with a score (E's reply was unparsed, H is unjudged)
        child.expect("lowest judge score: -25")
        child.expect("budget numéro 3")  # C's answer, the worst
        child.expect("judge \\(judge-model\\): score -25 · critical accuracy/mistranslation «conseil»")
        child.expect(r"\[a\]ccept")
        child.send("n")  # later
        child.expect("5 left")
        child.expect("score -6 · major accuracy/mistranslation «budget» · minor fluency/spelling «lundi»")
        child.expect(r"judge suggests major accuracy/mistranslation «budget» · open: \[c\]onfirm")
        child.expect(r"\[a\]ccept")
        child.send("c")  # the first open suggestion: confirmed, a mark as the judge said
        child.expect("budget» · confirmed by rev")
        child.expect(r"judge suggests minor fluency/spelling «lundi» · open")
        child.expect(r"\[a\]ccept")
        child.send("d")
        child.expect("lundi» · dismissed by rev")
        child.expect(r"\[a\]ccept")
        child.send("q")
        child.expect(pexpect.EOF)
    except pexpect.TIMEOUT:  # show the screen, without escape codes
        import re

        print(re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", log.getvalue())[-4000:])
        raise
    finally:
        child.close()
    assert child.exitstatus == 0
    assert [(s["category"], s["decision"]) for s in ws.store.review_suggestions(ids["B"])] == [
        ("accuracy/mistranslation", "confirmed"), ("fluency/spelling", "dismissed")]
    assert [(m["category"], m["span"]) for m in ws.store.review_marks(ids["B"])] == [
        ("accuracy/mistranslation", "budget")]


def test_the_judges_error_spans_are_suggested_marks_and_stats_put_the_judge_against_reviewers(corpus):
    """Issue 24 item 11: on the review queue the judge's error spans are suggested marks a reviewer
    confirms, changes or dismisses (one command each), stored; stats' judge section gives, per
    category, precision (confirmed / decided) and recall (confirmed / (confirmed + marks the judge
    did not suggest)), figures computed by hand below."""
    ws, ids, _ = corpus

    def answer(name):
        return next(t for t in ws.store.get_turns(ids[name]) if t["role"] == "assistant")

    tb, td = answer("B")["id"], answer("D")["id"]
    script = "\n".join([
        "next",                                              # C
        f"suggest {tb} 0 confirm",                           # budget: accuracy/mistranslation major
        f"suggest {tb} 1 change fluency/grammar",            # lundi: fluency/spelling -> fluency/grammar
        f"suggest {tb} 1 dismiss",                           # decided already
        f"mark {tb} terminology minor numéro",               # the judge did not see it
        "accept",
        f"suggest {td} 0 dismiss",                           # a: style
        f"suggest {td} 1 dismiss",                           # b: locale_convention
        f"mark {td} accuracy/mistranslation major conseil",  # missed by the judge
        "reject", "quit"]) + "\n"
    out = io.StringIO()
    run_review(ws.store, "rev", interactive=False, stdin=io.StringIO(script), stdout=out, order="judge")
    ev = [(line.split(" ", 1)[0], json.loads(line.split(" ", 1)[1])) for line in out.getvalue().splitlines()]
    b = next(e for t, e in ev if t == "review" and e["dialogue_id"] == ids["B"])
    assert [(s["index"], s["category"], s["severity"], s["span"], s["decision"])
            for s in b["turns"][1]["suggestions"]] == [
        (0, "accuracy/mistranslation", "major", "budget", None), (1, "fluency/spelling", "minor", "lundi", None)]
    content = b["turns"][1]["content"]
    assert content[b["turns"][1]["suggestions"][0]["start"]:b["turns"][1]["suggestions"][0]["end"]] == "budget"
    assert [e["decision"] for t, e in ev if t == "ok" and e["action"] == "suggest"] == [
        "confirmed", "changed", "dismissed", "dismissed"]
    errors = [e["message"] for t, e in ev if t == "error"]
    assert len(errors) == 1 and "already changed (by rev)" in errors[0]
    after = [e for t, e in ev if t == "review" and e["dialogue_id"] == ids["B"]][-1]
    assert [s["decision"] for s in after["turns"][1]["suggestions"]] == ["confirmed", "changed"]
    marks = [(m["turn_id"], m["category"], m["severity"], m["span"]) for m in ws.store.review_marks()]
    assert marks == [(tb, "accuracy/mistranslation", "major", "budget"), (tb, "fluency/grammar", "minor", "lundi"),
                     (tb, "terminology", "minor", "numéro"), (td, "accuracy/mistranslation", "major", "conseil")]
    assert [(s["category"], s["decision"]) for s in ws.store.review_suggestions(ids["D"])] == [
        ("style", "dismissed"), ("locale_convention", "dismissed")]
    r = run_cli("-C", str(ws.root), "stats", "--json")
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)["judge"]["suggestions"]

    def fig(suggested=0, confirmed=0, changed=0, dismissed=0, missed=0, precision=None, recall=None):
        return {"suggested": suggested, "confirmed": confirmed, "changed": changed, "dismissed": dismissed,
                "missed": missed, "precision": precision, "recall": recall}

    assert got == {
        "accuracy/mistranslation": fig(1, 1, missed=1, precision=1.0, recall=0.5),  # budget yes; conseil missed
        "fluency/grammar": fig(missed=1, recall=0.0),                                # the changed one, as the reviewer's
        "fluency/spelling": fig(1, changed=1, precision=0.0),
        "locale_convention": fig(1, dismissed=1, precision=0.0),
        "style": fig(1, dismissed=1, precision=0.0),
        "terminology": fig(missed=1, recall=0.0)}
    text = run_cli("-C", str(ws.root), "stats").stdout
    assert "suggested marks (review)" in text
    # taking back the mark of a confirmed suggestion opens the suggestion again
    mark_id = ws.store.review_marks()[0]["id"]
    ws.store.remove_review_mark(mark_id, "rev")
    assert [s["category"] for s in ws.store.review_suggestions(ids["B"])] == ["fluency/spelling"]
