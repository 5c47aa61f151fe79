"""What a turn expects (itcollect/kernel/dialogue.py), and that simulate, the session and the filter read
it the same way."""

from __future__ import annotations

from itcollect.filter.rules import DialogueView, build_rules, check_dialogue, thresholds
from itcollect.kernel.dialogue import RequestInfo, expectations, planned_params, planned_turns

SPEC = {"src_lang": "en", "tgt_lang": "zh", "instruction_lang": "en", "n_turns": 5,
        "interaction_types": ["translate", "explain", "polish", "retarget", "back_translate"],
        "params": {"variant": 3, "must_include": ["预算"],
                   "turns": [{}, {"kind": "choice"}, {}, {"lang": "de"}, {}]}}


def _plan(answers=()):
    return [RequestInfo(t, planned_params(SPEC, k), answers[k] if k < len(answers) else None)
            for k, t in enumerate(SPEC["interaction_types"])]


def test_planned_params_put_the_first_turns_terms_on_turn_zero_only():
    assert planned_params(SPEC, 0) == {"must_include": ["预算"]}
    assert planned_params(SPEC, 3) == {"lang": "de"}
    assert [p["type"] for p in planned_turns(SPEC)] == SPEC["interaction_types"]


def test_expectations_follow_the_plan_turn_by_turn():
    answers = ["市议会批准了预算。", "I chose 批准 because it is the formal verb.", "市议会通过了预算。",
               "Der Stadtrat hat das Budget gebilligt.", "The council approved the budget. (differences: none)"]
    exp = expectations(src_lang="en", tgt_lang="zh", instruction_lang="en", requests=_plan(answers))
    assert [e.type for e in exp] == SPEC["interaction_types"]
    assert [e.target_before for e in exp] == ["zh", "zh", "zh", "zh", "de"]
    assert [e.target for e in exp] == ["zh", "zh", "zh", "de", "de"]
    assert [e.answer_lang for e in exp] == ["zh", "en", "zh", "de", "en"]
    assert [e.strict for e in exp] == [True, True, True, True, False]  # a back-translation mixes languages
    assert exp[0].must_include == ("预算",) and exp[2].must_include == ()
    # a revision revises the last translation, not the explanation that came between
    assert exp[2].previous_answer == answers[0]
    assert exp[2].previous_translation == answers[0]
    assert exp[4].previous_answer == answers[3]
    # an explanation's previous answer is simply the last answer
    assert exp[1].previous_answer == answers[0]


def test_a_retarget_without_a_named_language_takes_its_answers_language():
    reqs = [RequestInfo("translate", {}, "市议会批准了预算。", "zh"),
            RequestInfo("retarget", {}, "Le conseil a approuvé le budget.", "fr"),
            RequestInfo("polish", {}, None)]
    exp = expectations(src_lang="en", tgt_lang="zh", instruction_lang="en", requests=reqs)
    assert [e.target for e in exp] == ["zh", "fr", "fr"]
    # ... unless it came back in the instruction language: that is no new target
    reqs[1] = RequestInfo("retarget", {}, "The council approved the budget.", "en")
    assert expectations(src_lang="en", tgt_lang="zh", instruction_lang="en", requests=reqs)[2].target == "zh"


def test_imported_turns_without_types():
    reqs = [RequestInfo(None, {}, "市议会批准了预算。"), RequestInfo(None, {}, "好的。")]
    exp = expectations(src_lang="en", tgt_lang="zh", instruction_lang="zh", requests=reqs)
    assert exp[0].type == "translate" and exp[0].answer_lang == "zh" and exp[0].strict
    assert exp[1].type is None and exp[1].answer_lang is None and not exp[1].strict


def _dialogue(turns, langs, **d):
    base = {"id": "d1", "source_text": "The council approved the budget.", "src_lang": "en", "tgt_lang": "zh",
            "instruction_lang": "en", "origin": "simulated"}
    base.update(d)
    return DialogueView(base, turns, langs)


def _turn(role, content, itype=None, params=None):
    return {"role": role, "content": content, "interaction_type": itype, "params": params or {}, "finish_reason": "stop"}


def test_filter_holds_each_answer_to_the_expected_language():
    turns = [_turn("user", "Please translate: The council approved the budget.", "translate"),
             _turn("assistant", "市议会批准了预算。", "translate"),
             _turn("user", "Now give it in German.", "retarget", {"lang": "de"}),
             _turn("assistant", "Der Stadtrat hat das Budget gebilligt.", "retarget"),
             _turn("user", "Translate it back into English and compare.", "back_translate"),
             _turn("assistant", "The council approved the budget. Nothing differs.", "back_translate")]
    langs = ["en", "zh", "en", "de", "en", "en"]
    reasons, _ = check_dialogue(_dialogue(turns, langs), build_rules(thresholds()))
    assert "wrong_language_answer" not in reasons
    langs[3] = "zh"  # the retarget answered in the old target
    reasons, detail = check_dialogue(_dialogue(turns, langs), build_rules(thresholds()))
    assert "wrong_language_answer" in reasons
    assert detail["wrong_language_answer"] == {"turn": 3, "found": "zh", "expected": "de"}
