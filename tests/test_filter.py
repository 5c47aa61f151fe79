"""Golden tests of the filter rules: one passing and one failing dialogue per rule, in en and zh.

Dialogues are written to a real store and judged by a real filter run (near-duplicate detection
off here: it has its own tests in test_dedup.py).
"""

from __future__ import annotations

import pytest

from itcollect.filter import run_filter
from itcollect.filter.rules import REFUSAL_KEYWORDS, find_identity, find_refusal, repeated_ngram
from itcollect.kernel.checks import normalize_for_compare
from itcollect.workspace import init_workspace

from .conftest import run_cli

# Distinct news sentences so that no two test dialogues are exact duplicates.
CITIES = [("Lyon", "里昂"), ("Hamburg", "汉堡"), ("Boston", "波士顿"), ("Osaka", "大阪"), ("Seville", "塞维利亚"),
          ("Krakow", "克拉科夫"), ("Porto", "波尔图"), ("Dublin", "都柏林"), ("Geneva", "日内瓦"), ("Turin", "都灵"),
          ("Bergen", "卑尔根"), ("Leeds", "利兹"), ("Graz", "格拉茨"), ("Nantes", "南特"), ("Malmo", "马尔默"),
          ("Cork", "科克"), ("Bilbao", "毕尔巴鄂"), ("Leipzig", "莱比锡"), ("Lille", "里尔"), ("Utrecht", "乌得勒支"),
          ("Aarhus", "奥胡斯"), ("Brno", "布尔诺"), ("Split", "斯普利特"), ("Tartu", "塔尔图"), ("Basel", "巴塞尔"),
          ("Gdansk", "格但斯克"), ("Toulouse", "图卢兹"), ("Verona", "维罗纳"), ("Ghent", "根特"), ("Oulu", "奥卢")]


def en_dialogue(k: int) -> dict:
    """An English-instruction en->zh dialogue about city k (passes every rule)."""
    city, city_zh = CITIES[k % len(CITIES)]
    n = k + 2
    src = f"The city council of {city} approved a budget of {n} million euros for public housing on Tuesday."
    return {
        "source": src, "src": "en", "tgt": "zh", "instr": "en",
        "turns": [
            ("user", f'Translate into Chinese: "{src}"', "translate"),
            ("assistant", f"{city_zh}市议会周二批准了一项{n}百万欧元的公共住房预算。", "translate"),
            ("user", "Please make it more formal.", "style"),
            ("assistant", f"{city_zh}市议会于周二正式通过了总额为{n}百万欧元的公共住房预算案。", "style"),
        ]}


def zh_dialogue(k: int) -> dict:
    """A Chinese-instruction zh->en dialogue about city k (passes every rule)."""
    city, city_zh = CITIES[k % len(CITIES)]
    n = k + 2
    src = f"{city_zh}市政府周二宣布了一项耗资{n}亿元的公共交通计划，以缓解市中心的交通拥堵。"
    return {
        "source": src, "src": "zh", "tgt": "en", "instr": "zh",
        "turns": [
            ("user", f"请把这句话翻译成英文：“{src}”", "translate"),
            ("assistant", f"The {city} city government announced a public transport plan costing {n} hundred "
                          "million yuan on Tuesday to ease traffic congestion in the city centre.", "translate"),
            ("user", "请让译文更自然一些。", "polish"),
            ("assistant", f"On Tuesday, the {city} city government unveiled a {n}00-million-yuan public transport "
                          "plan to relieve congestion downtown.", "polish"),
        ]}


def add_dialogue(store, spec: dict, *, origin: str = "simulated", finish: dict | None = None,
                 meta: dict | None = None, created_at_order: int | None = None) -> str:
    """Write a finished dialogue (as simulate would) and return its id."""
    did = store.create_dialogue(origin=origin, source_text=spec["source"], src_lang=spec["src"],
                                tgt_lang=spec["tgt"], instruction_lang=spec["instr"], status="done",
                                annotator="li.wei" if origin == "human" else "gpt-4o-mini", meta=meta or {})
    turns = []
    for i, (role, content, itype) in enumerate(spec["turns"]):
        t = {"role": role, "content": content, "interaction_type": itype,
             "author": ("human" if origin == "human" else "model") if role != "assistant" else "model"}
        if role == "assistant":
            t["model"] = "gpt-4o-mini"
            t["finish_reason"] = (finish or {}).get(i, "stop")
            t["template_hash"] = "abc123"
        turns.append(t)
    store.add_turns(did, turns)
    if created_at_order is not None:  # a fixed creation order (dialogues written in one millisecond tie)
        with store.transaction() as c:
            c.execute("UPDATE dialogues SET created_at = ? WHERE id = ?",
                      (f"2026-01-01T00:00:{created_at_order:02d}.000Z", did))
    return did


def with_turn(spec: dict, idx: int, content: str | None = None, role: str | None = None) -> dict:
    out = dict(spec)
    turns = list(spec["turns"])
    r, c, it = turns[idx]
    turns[idx] = (role or r, c if content is None else content, it)
    out["turns"] = turns
    return out


def _cases() -> list[tuple[str, str, dict, dict]]:
    """(case id, expected reason or '' for pass, spec, extra kwargs)."""
    cases: list[tuple[str, str, dict, dict]] = []
    k = iter(range(100))

    def both(rule: str, make_fail_en, make_fail_zh, pass_en=None, pass_zh=None, **extra):
        cases.append((f"{rule}-en-pass", "", pass_en or en_dialogue(next(k)), extra.get("pass_kw", {})))
        cases.append((f"{rule}-en-fail", rule, make_fail_en(en_dialogue(next(k))), extra.get("fail_kw", {})))
        cases.append((f"{rule}-zh-pass", "", pass_zh or zh_dialogue(next(k)), extra.get("pass_kw", {})))
        cases.append((f"{rule}-zh-fail", rule, make_fail_zh(zh_dialogue(next(k))), extra.get("fail_kw", {})))

    both("wrong_language_answer",
         lambda s: with_turn(s, 1, "The council approved a new housing budget on Tuesday."),
         lambda s: with_turn(s, 1, "市政府周二宣布了一项新的公共交通计划。"))
    both("wrong_language_request",
         lambda s: with_turn(s, 2, "Bitte mach es formeller und klarer, danke."),
         lambda s: with_turn(s, 2, "Please make the translation sound more natural."))
    both("copies_source",
         lambda s: with_turn(s, 1, s["source"]),
         lambda s: with_turn(s, 1, s["source"]))
    both("copies_previous",
         lambda s: with_turn(s, 3, s["turns"][1][1]),
         lambda s: with_turn(s, 3, s["turns"][1][1]))
    both("length_ratio",
         lambda s: with_turn(s, 1, "预算。"),
         lambda s: with_turn(s, 1, "A plan."))
    both("refusal",
         lambda s: with_turn(s, 3, "I'm sorry, but I can't help with that request."),
         lambda s: with_turn(s, 3, "抱歉，我无法提供这个翻译。"))
    both("identity_leak",
         lambda s: with_turn(s, 3, "As an AI language model, I would translate it as follows: 市议会批准了预算。"),
         lambda s: with_turn(s, 3, "作为一个人工智能，我认为应该这样翻译：The plan was announced on Tuesday."))
    both("repeated_ngrams",
         lambda s: with_turn(s, 3, "市议会批准了预算，市议会批准了预算，市议会批准了预算，市议会批准了预算。"),
         lambda s: with_turn(s, 3, "The city government announced a plan, the city government announced a plan, "
                                   "the city government announced a plan, the city government announced a plan."))
    both("roles_not_alternating",
         lambda s: with_turn(s, 1, role="user"),
         lambda s: with_turn(s, 3, role="user"))
    both("empty_turn",
         lambda s: with_turn(s, 3, "   "),
         lambda s: with_turn(s, 3, ""))
    both("too_few_turns",
         lambda s: {**s, "turns": s["turns"][:2]},
         lambda s: {**s, "turns": s["turns"][:2]})
    return cases


CASES = _cases()


@pytest.fixture(scope="module")
def judged(tmp_path_factory):
    """One workspace holding every golden dialogue, filtered once; case id -> verdict."""
    ws = init_workspace(tmp_path_factory.mktemp("golden") / "ws")
    ids = {}
    for case_id, _expected, spec, kw in CASES:
        ids[case_id] = add_dialogue(ws.store, spec, **kw)
    # truncation: finish_reason of an answer
    ids["truncated-en-pass"] = add_dialogue(ws.store, en_dialogue(60))
    ids["truncated-en-fail"] = add_dialogue(ws.store, en_dialogue(61), finish={3: "length"})
    ids["truncated-zh-pass"] = add_dialogue(ws.store, zh_dialogue(60))
    ids["truncated-zh-fail"] = add_dialogue(ws.store, zh_dialogue(61), finish={3: "length"})
    # chrF floor against a reference translation
    en_ref, zh_ref = en_dialogue(62), zh_dialogue(62)
    ids["low_chrf-en-pass"] = add_dialogue(ws.store, en_ref, meta={"reference": en_ref["turns"][1][1]})
    ids["low_chrf-zh-pass"] = add_dialogue(ws.store, zh_ref, meta={"reference": zh_ref["turns"][1][1]})
    en_bad, zh_bad = en_dialogue(63), zh_dialogue(63)
    ids["low_chrf-en-fail"] = add_dialogue(ws.store, en_bad, meta={"reference": "住房委员会否决了所有提案并宣布休会。"})
    ids["low_chrf-zh-fail"] = add_dialogue(ws.store, zh_bad, meta={
        "reference": "Protesters blocked the motorway for hours demanding higher wages."})
    # an answer naming OpenAI is fine when the news itself is about OpenAI
    openai_src = en_dialogue(64)
    openai_src["source"] = "OpenAI released a new model on Tuesday, the company said in a statement."
    openai_src["turns"] = [
        ("user", f'Translate into Chinese: "{openai_src["source"]}"', "translate"),
        ("assistant", "OpenAI公司在一份声明中表示，该公司于周二发布了一款新模型。", "translate"),
        ("user", "Please make it shorter.", "length"),
        ("assistant", "OpenAI周二发布新模型。", "length"),
    ]
    ids["identity_leak-en-pass-openai-news"] = add_dialogue(ws.store, openai_src)
    leak = zh_dialogue(64)
    ids["identity_leak-zh-fail-chatgpt"] = add_dialogue(ws.store, with_turn(leak, 3, "我是ChatGPT，这是我的译文：The plan."))
    cfg = dict(ws.config)
    cfg["filter"] = {**cfg["filter"], "min_user_turns": 2, "min_chrf": 30.0}
    result = run_filter(ws.store, cfg, near_dup=False)
    verdicts = {case: ws.store.get_verdict(did) for case, did in ids.items()}
    yield verdicts, result
    ws.close()


EXTRA = [("truncated-en-pass", ""), ("truncated-en-fail", "truncated"), ("truncated-zh-pass", ""),
         ("truncated-zh-fail", "truncated"), ("low_chrf-en-pass", ""), ("low_chrf-zh-pass", ""),
         ("low_chrf-en-fail", "low_chrf"), ("low_chrf-zh-fail", "low_chrf"),
         ("identity_leak-en-pass-openai-news", ""), ("identity_leak-zh-fail-chatgpt", "identity_leak")]


@pytest.mark.parametrize("case_id,expected", [(c[0], c[1]) for c in CASES] + EXTRA,
                         ids=[c[0] for c in CASES] + [e[0] for e in EXTRA])
def test_golden_rule(judged, case_id, expected):
    verdicts, _ = judged
    v = verdicts[case_id]
    if expected:
        assert not v["kept"] and expected in v["reasons"], v
    else:
        assert v["kept"] and v["reasons"] == [], v


def test_run_is_recorded_with_thresholds(judged):
    _, result = judged
    assert result.thresholds["min_user_turns"] == 2 and result.thresholds["min_chrf"] == 30.0
    assert result.kept + result.dropped == result.total == len(CASES) + len(EXTRA)


def test_rerun_with_other_thresholds_is_cheap_and_replaces_verdicts(workspace):
    store = workspace.store
    ok = add_dialogue(store, en_dialogue(0))
    short = add_dialogue(store, {**zh_dialogue(1), "turns": zh_dialogue(1)["turns"][:2]})
    first = run_filter(store, workspace.config)
    assert first.detected > 0  # the first run detects and caches turn languages
    assert store.get_verdict(short)["kept"]
    cfg = dict(workspace.config)
    cfg["filter"] = {**cfg["filter"], "min_user_turns": 2}
    second = run_filter(store, cfg)
    assert second.detected == 0  # nothing detected again
    assert second.run_id != first.run_id
    v = store.get_verdict(short)
    assert not v["kept"] and v["reasons"] == ["too_few_turns"] and v["run_id"] == second.run_id
    assert store.get_verdict(ok)["kept"]
    assert store.filter_totals()["kept"] == 1  # only the latest run counts
    assert store.dialogue_counts()["total"] == 2  # nothing deleted


def test_only_done_dialogues_and_active_turns_count(workspace):
    store = workspace.store
    spec = en_dialogue(3)
    did = add_dialogue(store, spec)
    # a rejected (regenerated) answer that copied the source must not count
    bad = store.add_turn(did, role="assistant", content=spec["source"], author="model", idx=99)
    store.set_turn_state(bad, "rejected")
    store.create_dialogue(origin="simulated", source_text="x", status="in_progress")
    result = run_filter(store, workspace.config)
    assert result.total == 1
    assert store.get_verdict(did)["kept"]


def test_detectors_en_zh():
    assert find_refusal("I'm sorry, but I can't translate this.")
    assert find_refusal("抱歉，我无法完成这个请求。")
    assert find_refusal("The bank said it cannot lower rates.") is None
    assert find_identity("As an AI language model, I think...")
    assert find_identity("我是ChatGPT。")
    assert find_identity("作为一个人工智能，我不能")
    assert find_identity("The language of the model is clear.") is None
    assert all(k == k.lower() for k in REFUSAL_KEYWORDS)
    assert repeated_ngram("a b c d a b c d a b c d", 4, 3) == ("a b c d", 3)
    assert repeated_ngram("a b c d a b c d", 4, 3) is None
    assert normalize_for_compare("Ｈello,  World！") == "helloworld"


def test_filter_cli_exit_codes(tmp_path):
    ws = init_workspace(tmp_path / "ws")
    add_dialogue(ws.store, en_dialogue(5))
    ws.close()
    r = run_cli("-C", str(tmp_path / "ws"), "filter", "--workers", "2")
    assert r.returncode == 0, r.stderr
    assert "kept 1" in r.stdout
    r = run_cli("-C", str(tmp_path / "ws"), "filter", "--workers", "0")
    assert r.returncode == 2
    r = run_cli("-C", str(tmp_path / "ws"), "filter", "--near-dup-threshold", "2")
    assert r.returncode == 2
    r = run_cli("-C", str(tmp_path / "nowhere"), "filter")
    assert r.returncode == 1 and "workspace" in r.stderr


# Texts that stress the fast paths of the tokenizer, norm and length rule against their regex definitions.
_TRICKY = ["", "   ", "Hello, World! it's 2024_05 A-B", "snake_case__x", "tab\there\x1fand\x00nul", "ÄÖÜ straße İstanbul",
           "把这句话译成英文：“Record coach station”", "abc中文def", "中文abc中", "数字123和ABC", "ｆｕｌｌ　ｗｉｄｔｈ１２",
           "\ufa6e\ufa6f\ufada unassigned compatibility ideographs \uf900\ufaff", "\u3400\u4dbf\u9fff edge", "²³ ½ x²",
           "emoji 😀 text", "Ｈello,  World！", "\u00a0nbsp\u2003em space\u3000ideographic", "line\nbreak\r\nend",
           "Je ne peux pas traduire ça, désolé.", "ИЗВИНИТЕ, я не могу"]


def test_tokenize_equals_its_regex_definition():
    import random
    import re

    from itcollect.kernel.text import TOKEN, tokenize

    rng = random.Random(0)
    alphabet = "aZ09_ -,.!\t\n中文字\u3400\uf900\ufa6e\ufaffÄß²😀：“”\u00a0"
    texts = _TRICKY + ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30))) for _ in range(2000)]
    texts += [chr(c) + "a" + chr(c) for c in range(0, 0x3000, 7)]
    for text in texts:
        assert tokenize(text) == TOKEN.findall(text), text
        assert tokenize(text.lower()) == TOKEN.findall(text.lower()), text
    # the rules' length measure relies on split() dropping exactly what \s matches
    assert all((re.fullmatch(r"\s", c) is not None) == c.isspace() for c in map(chr, range(0x110000)))


def test_norm_and_repeated_ngram_fast_paths_agree_with_their_definitions():
    import random
    import re
    import unicodedata
    from collections import Counter

    from itcollect.kernel.text import tokenize

    def norm_ref(text):
        return re.sub(r"[\W_]+", "", unicodedata.normalize("NFKC", text).casefold())

    def repeated_ref(toks, k, max_count):
        grams = Counter(zip(*(toks[i:] for i in range(k))))
        if not grams:
            return None
        gram, count = grams.most_common(1)[0]
        return (gram, count) if count >= max_count else None

    for text in _TRICKY:
        assert normalize_for_compare(text) == norm_ref(text), text
    rng = random.Random(1)
    for _ in range(3000):
        vocab = rng.choice([["a", "b"], ["a", "b", "c"], ["x", "y", "z", "w", "v"]])
        toks = [rng.choice(vocab) for _ in range(rng.randint(0, 14))]
        text = " ".join(toks)
        n, max_count = rng.choice([(1, 3), (2, 2), (2, 3), (3, 3), (4, 3)])
        ref = repeated_ref(toks, n, max_count)
        got = repeated_ngram(text, n, max_count, tokenize(text), "en")
        assert (got is None) == (ref is None), (text, n, max_count)
        if got is not None:
            assert got == (" ".join(ref[0]), ref[1])


def test_corpus_reader_joins_verdicts_only_when_asked(workspace):
    store = workspace.store
    good = add_dialogue(store, en_dialogue(3))
    bad = en_dialogue(4)
    bad["turns"][3] = ("assistant", "I'm sorry, but I can't help with that.", "style")
    bad_id = add_dialogue(store, bad)
    run_filter(store, workspace.config)
    plain = {d["id"]: d for d, _ in store.iter_corpus(slim=True)}
    assert set(plain) == {good, bad_id} and all("verdict_kept" not in d for d in plain.values())
    judged = {d["id"]: d for d, _ in store.iter_corpus(with_verdicts=True)}
    assert judged[good]["verdict_kept"] is True and judged[bad_id]["verdict_kept"] is False
    assert "refusal" in judged[bad_id]["verdict_reasons"]
    assert [d["id"] for d, _ in store.iter_corpus(kept_only=True)] == [good]


def test_gc_is_paused_only_during_a_pass(workspace):
    import gc

    from itcollect.kernel.paging import gc_paused

    add_dialogue(workspace.store, en_dialogue(1))
    assert gc.isenabled()
    run_filter(workspace.store, workspace.config)
    assert gc.isenabled()
    with pytest.raises(RuntimeError):
        with gc_paused():
            assert not gc.isenabled()
            raise RuntimeError("boom")
    assert gc.isenabled()
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()  # left as the caller had it
    finally:
        gc.enable()


def test_corpus_reader_without_meta(workspace):
    store = workspace.store
    add_dialogue(store, en_dialogue(2), meta={"reference": "x", "docid": "d1"})
    add_dialogue(store, zh_dialogue(3))
    with_meta = list(store.iter_corpus(slim=True))
    without = list(store.iter_corpus(slim=True, meta=False))
    assert [d["meta"] for d, _ in with_meta][0]["reference"] == "x"
    assert [({k: v for k, v in d.items() if k != "meta"}, t) for d, t in with_meta] == without
    assert all("meta" not in d for d, _ in without)


def test_a_new_rule_is_one_unit_in_the_registry(workspace, monkeypatch):
    """Rules are small units returning (keep, code, details): one more class in RULES is run by the
    filter, stored with its details and counted, and its reasons sort by the turn it fired at."""
    from itcollect.filter import rules as R

    class MentionsHousing(R.TurnRule):
        """an answer that talks about housing (a stand-in for a lead's own rule)"""

        code = "mentions_housing"

        def check_turn(self, p, i):
            return {} if "住房" in p.view.turns[i]["content"] else None

    monkeypatch.setattr(R, "RULES", [*R.RULES, MentionsHousing])
    housing = add_dialogue(workspace.store, en_dialogue(1))
    other = add_dialogue(workspace.store, zh_dialogue(2))
    result = run_filter(workspace.store, workspace.config, workers=1)
    assert result.reasons == {"mentions_housing": 1}
    assert workspace.store.get_verdict(housing)["reasons"] == ["mentions_housing"]
    assert workspace.store.get_verdict(housing)["detail"]["mentions_housing"] == {"turn": 1}
    assert workspace.store.get_verdict(other)["kept"]
    # a turn rule firing at an earlier turn is listed before one firing later, whatever their order in RULES
    view = R.DialogueView({"source_text": "x", "src_lang": "en", "tgt_lang": "zh", "instruction_lang": "en"},
                          [{"role": "user", "content": "Translate please.", "interaction_type": "translate"},
                           {"role": "assistant", "content": "住房预算。", "interaction_type": "translate"},
                           {"role": "user", "content": "Make it shorter.", "interaction_type": "length"},
                           {"role": "assistant", "content": "cut", "interaction_type": "length",
                            "finish_reason": "length"}], ["en", "zh", "en", "zh"])
    reasons, detail = R.check_dialogue(view, R.build_rules(R.thresholds()))
    assert reasons.index("mentions_housing") < reasons.index("truncated")
    assert detail["truncated"] == {"turn": 3}


def test_rules_own_their_parameters_and_a_rule_that_is_off_is_not_built():
    """Each rule is built from the [filter] settings by its own from_settings (datatrove-style: the
    rule holds its parameters); settings that turn a rule off leave it out of the run."""
    from itcollect.filter import rules as R

    default = {type(r): r for r in R.build_rules(R.thresholds())}
    assert R.LowChrf not in default and R.ReviewRejected in default  # min_chrf 0: off
    assert not any(isinstance(r, R._JudgeRule) for r in default.values())  # judge rules: off by default
    assert [type(r) for r in R.build_rules(R.thresholds())] == [c for c in R.RULES if c in default]
    custom = {type(r): r for r in R.build_rules(R.thresholds(min_user_turns=3, repeat_ngram_n=2, repeat_ngram_max=4,
                                                             min_chrf=40.0, drop_review_rejected=False,
                                                             max_critical_errors=0))}
    assert custom[R.TooFewTurns].min_user_turns == 3
    assert (custom[R.RepeatedNgrams].n, custom[R.RepeatedNgrams].max_count) == (2, 4)
    assert custom[R.LowChrf].min_chrf == 40.0
    assert custom[R.CriticalError].max_critical == 0
    assert R.ReviewRejected not in custom
    # a rule's parameters are its own: two instances with different ones judge the same dialogue apart
    view = R.DialogueView({"source_text": "x", "src_lang": "en", "tgt_lang": "zh", "instruction_lang": "en"},
                          [{"role": "user", "content": "Translate please.", "interaction_type": "translate"},
                           {"role": "assistant", "content": "预算。", "interaction_type": "translate"}], ["en", "zh"])
    assert R.check_dialogue(view, [R.TooFewTurns(1)]) == ([], {})
    assert R.check_dialogue(view, [R.TooFewTurns(2)]) == (["too_few_turns"], {"too_few_turns": {"user_turns": 1}})


def test_the_three_kinds_of_rule_are_listed_structure_then_by_turn_then_dialogue():
    """A structure rule reads the raw view and, when it finds the dialogue malformed, the others do
    not run; turn rules are listed by the turn they fire at; dialogue rules after every turn rule."""
    from itcollect.filter import rules as R

    seen: list[str] = []

    class Whole(R.DialogueRule):
        code = "whole"

        def check(self, p):
            seen.append(self.code)
            return self.drop(answers=len(p.answers))

    class LastAnswer(R.TurnRule):
        code = "last_answer"

        def check_turn(self, p, i):
            return {"len": len(p.view.turns[i]["content"])} if i == p.answers[-1] else None

    class FirstRequest(R.TurnRule):
        code = "first_request"

        def turns(self, p):
            return [p.body_start]

        def check_turn(self, p, i):
            return {}

    turns = [{"role": "system", "content": "Be brief."},
             {"role": "user", "content": "Translate please.", "interaction_type": "translate"},
             {"role": "assistant", "content": "预算。", "interaction_type": "translate"},
             {"role": "user", "content": "Shorter.", "interaction_type": "length"},
             {"role": "assistant", "content": "预算", "interaction_type": "length"}]
    view = R.DialogueView({"source_text": "x", "src_lang": "en", "tgt_lang": "zh", "instruction_lang": "en"},
                          turns, [None, "en", "zh", "en", "zh"])
    rules = [Whole(), LastAnswer(), FirstRequest(), R.TooFewTurns(3)]
    reasons, detail = R.check_dialogue(view, rules)
    assert reasons == ["too_few_turns", "first_request", "last_answer", "whole"]
    assert detail == {"too_few_turns": {"user_turns": 2}, "first_request": {"turn": 1},
                      "last_answer": {"turn": 4, "len": 2}, "whole": {"answers": 2}}
    seen.clear()
    malformed = R.DialogueView(view.dialogue, [*turns, {"role": "user", "content": "And?"}], [*view.langs, "en"])
    assert R.check_dialogue(malformed, [*rules, R.RolesNotAlternating()])[0] == ["roles_not_alternating"]
    assert seen == []  # the prepared rules did not run
