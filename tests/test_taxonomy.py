"""The interaction taxonomy: every type registered, and each check tells a compliant answer from a bad one."""

from __future__ import annotations

import pytest

from itcollect.kernel.checks import reason_code
from itcollect.kernel.taxonomy import (
    INTERACTION_TYPES,
    CheckContext,
    answer_language,
    check_answer,
    check_request,
    quoted_terms,
    requested_language,
    zh_number,
)

SRC = "The government presented a new housing bill on Monday."
DE = "Die Regierung hat am Montag ein neues Wohnungsgesetz vorgestellt."


def ctx(**kw):
    base = dict(source=SRC, src_lang="en", tgt_lang="de", instruction_lang="en", previous_answer=DE,
                previous_translation=DE)
    base.update(kw)
    return CheckContext(**base)


def codes(reasons):
    return {reason_code(r) for r in reasons}


def test_registry_covers_the_brief():
    for t in ("translate", "terminology", "style", "length", "polish", "correct", "explain", "retarget",
              "back_translate", "follow_up"):
        it = INTERACTION_TYPES[t]
        assert it.id == t and it.description and it.answer_lang in ("target", "instruction", "mixed")
    assert answer_language("explain", ctx(instruction_lang="zh")) == "zh"
    assert answer_language("retarget", ctx(params={"lang": "fr"})) == "fr"
    assert answer_language("polish", ctx()) == "de"


def test_translate():
    c = ctx(previous_answer=None, must_include=["Wohnungsgesetz"])
    assert check_answer("translate", DE, c) == []
    assert codes(check_answer("translate", SRC, c)) == {"wrong_language", "copies_source"}
    assert codes(check_answer("translate", "Die Regierung hat am Montag ein Gesetz vorgestellt.", c)) == {"missing_terms"}
    assert codes(check_answer("translate", "", c)) == {"empty"}


def test_terminology_and_revisions():
    c = ctx(request="Please use 'Gesetzentwurf' rather than 'Gesetz'.")
    good = "Die Regierung hat am Montag einen neuen Gesetzentwurf zum Wohnungsbau vorgestellt."
    assert check_answer("terminology", good, c) == []
    assert "missing_terms" in codes(check_answer("terminology", "Die Regierung stellte am Montag etwas vor.", c))
    assert "unchanged" in codes(check_answer("polish", DE, ctx()))
    assert check_answer("polish", "Am Montag stellte die Regierung ein neues Wohnungsgesetz vor.", ctx()) == []
    assert check_answer("correct", "Am Montag legte die Regierung ein neues Wohnungsgesetz vor.", ctx()) == []


def test_style_headline_and_length():
    c = ctx(params={"register": "headline"})
    assert check_answer("style", "Regierung stellt neues Wohnungsgesetz vor", c) == []
    assert "not_headline" in codes(check_answer("style", "Regierung stellt neues Wohnungsgesetz vor.", c))
    c = ctx(params={"mode": "max", "n": 5})
    assert check_answer("length", "Regierung stellt Wohnungsgesetz vor", c) == []
    assert "too_long" in codes(check_answer("length", DE, c))
    c = ctx(params={"mode": "shorter"})
    assert check_answer("length", "Regierung stellt Wohnungsgesetz vor.", c) == []
    assert "not_shorter" in codes(check_answer("length", DE.replace("neues", "ganz neues, großes"), c))
    zh = ctx(tgt_lang="zh", params={"mode": "max", "n": 10}, previous_answer="政府周一提出了一项新的住房法案。")
    assert check_answer("length", "政府提出新住房法案", zh) == []
    assert "too_long" in codes(check_answer("length", "政府周一在新闻发布会上提出了一项全新的住房法案。", zh))


def test_explain_follow_up_back_translate_retarget():
    c = ctx(instruction_lang="zh", request="为什么用“vorgestellt”？")
    assert check_answer("explain", "这里用“vorgestellt”是因为它表示正式地提出或介绍一项法案。", c) == []
    assert "wrong_language" in codes(check_answer("explain", "Weil „vorgestellt“ hier passt.", c))
    assert "missing_word" in codes(check_answer("explain", "这是一个常用的动词，意思是介绍。", c))
    c = ctx(request="What could this mean for renters?")
    assert check_answer("follow_up", "This housing bill could make rents more affordable for families.", c) == []
    assert "off_topic" in codes(check_answer("follow_up", "I enjoy football matches on sunny weekends.", c))
    # a Chinese source and a German translation: the English question's words keep the answer on topic
    c = ctx(source="政府周一提出了一项新的住房法案。", src_lang="zh", request="What could this mean for renters?")
    assert check_answer("follow_up", "Renters could see lower costs if the plan works.", c) == []
    bt = "Back-translation: The government introduced a new housing law on Monday.\nThe source says 'bill'."
    assert check_answer("back_translate", bt, ctx()) == []
    assert check_answer("back_translate", "Die Regierung hat ein Gesetz vorgestellt, alles gleich.", ctx())
    c = ctx(params={"lang": "fr"})
    assert check_answer("retarget", "Le gouvernement a présenté lundi un nouveau projet de loi sur le logement.", c) == []
    assert "wrong_language" in codes(check_answer("retarget", DE, c))


def test_requests():
    assert check_request("style", "Could you make it sound more formal?", ctx()) == []
    assert "not_a_request" in codes(check_request("style", "Sure! Here is a more formal version.", ctx()))
    assert "wrong_language" in codes(check_request("style", "请改得更正式一些。", ctx()))
    assert check_request("style", "请改得更正式一些。", ctx(instruction_lang="zh")) == []
    assert "copies_source" in codes(check_request("polish", SRC, ctx()))
    assert check_request("retarget", "Now give it in French, please.", ctx(params={"lang": "fr"})) == []
    assert "request_off_plan" in codes(check_request("retarget", "Now give it in Spanish.", ctx(params={"lang": "fr"})))
    assert check_request("length", "请控制在十二个字以内。", ctx(instruction_lang="zh", params={"mode": "max", "n": 12})) == []
    assert check_request("length", "Say it in at most 12 words.", ctx(params={"mode": "max", "n": 12})) == []
    assert check_request("translate", "Translate into German and use 'Haushalt': …", ctx(must_include=["Haushalt"])) == []


@pytest.mark.parametrize("n,zh", [(1, "一"), (10, "十"), (12, "十二"), (20, "二十"), (35, "三十五")])
def test_zh_number(n, zh):
    assert zh_number(n) == zh


def test_quoted_terms():
    assert quoted_terms("Use 'housing bill' rather than \"housing law\".") == ["housing bill", "housing law"]
    assert quoted_terms("把“住房法案”换成更正式的术语") == ["住房法案"]


@pytest.mark.parametrize("text,source_lang,expected", [
    ("Translate into German:", "en", "de"),
    ("Please translate this English sentence into German.", "en", "de"),
    ("Translate from English to Chinese, please.", "en", "zh"),
    ("Could you render the following in French?", "en", "fr"),
    ("Translate into simplified Chinese:", "en", "zh"),
    ("Here is a sentence in English. Say it in German.", "en", "de"),
    ("Translate to English:", "en", None),  # "to X" may describe the source; it is the source here
    ("Translate this sentence:", "en", None),
    ("Translate the following German sentence:", "de", None),
    ("What is the capital of France?", "en", None),
    ("把这句话翻译成德语：", "zh", "de"),
    ("把这句英文翻译成中文", "en", "zh"),
    ("请将下面的新闻句子译成英文：", "zh", "en"),
    ("请译为法语。", "zh", "fr"),
    ("请翻译成通顺流畅的英文：", "zh", "en"),
    ("中译英：", "zh", "en"),
    ("这句话用德语怎么说？", "zh", "de"),
    ("Übersetze den englischen Satz ins Deutsche.", "en", "de"),
    ("Hier ist ein Satz auf Deutsch, übersetze ihn ins Englische.", "de", "en"),
    ("Bitte auf Französisch übersetzen:", "de", "fr"),
    ("Traduisez en français :", "en", "fr"),
    ("Voici une phrase en anglais, traduisez-la en allemand.", "en", "de"),
    ("Traduire de l'anglais vers le chinois :", "en", "zh"),
    ("Traduis ceci vers l'anglais.", "fr", "en"),
])
def test_requested_language(text, source_lang, expected):
    assert requested_language(text, source_lang=source_lang) == expected


def test_requested_language_only_among_the_given_languages():
    assert requested_language("Translate into German:", ("en", "zh")) is None
    assert requested_language("Translate into Japanese:") is None
    assert requested_language("How do I move into Germany with my family?") is None
