"""``stats``: realised mix vs target, request diversity, import/export records, --plot."""

from __future__ import annotations

import json

from itcollect.filter import run_filter
from itcollect.stats.corpus import _rouge_l, diversity_section, mix_section
from itcollect.stats.report import collect_stats
from itcollect.workspace import init_workspace

from .conftest import run_cli
from .test_filter import add_dialogue, en_dialogue, zh_dialogue

CONTRACT = {"sources", "ingest", "specs", "dialogues", "turns", "calls", "filter"}


def test_mix_vs_target(workspace):
    store = workspace.store
    for k in range(3):
        add_dialogue(store, en_dialogue(k))
    add_dialogue(store, zh_dialogue(5), origin="human")
    mix = mix_section(store, workspace.config)
    assert mix["pair"]["en-zh"] == {"count": 3, "share": 0.75, "target": 0.35}
    assert mix["pair"]["zh-en"]["count"] == 1
    assert mix["pair"]["en-de"] == {"count": 0, "share": 0.0, "target": 0.08}  # planned, not realised
    assert mix["instruction_lang"]["zh"]["count"] == 1 and mix["instruction_lang"]["zh"]["target"] == 0.5
    assert mix["turns"]["2"]["count"] == 4
    assert mix["interaction_type"]["style"]["count"] == 3 and mix["interaction_type"]["polish"]["count"] == 1
    assert "translate" not in mix["interaction_type"]  # the first turn is not a follow-up type
    assert mix["origin"] == {"simulated": {"count": 3, "share": 0.75}, "human": {"count": 1, "share": 0.25}}
    run_filter(store, workspace.config)
    mix = mix_section(store, workspace.config)
    assert mix["pair"]["en-zh"]["kept"] == 3


def _mix_by_definition(store, kept_only):
    """The realised mix as one SQL aggregate per question and variant (the earlier implementation)."""
    kept = " JOIN verdicts v ON v.dialogue_id=d.id AND v.kept=1" if kept_only else ""
    base = f"FROM dialogues d{kept} WHERE d.status='done'"
    q = store.query
    return {
        "pair": {f"{a}-{b}": n for a, b, n in q(f"SELECT d.src_lang, d.tgt_lang, COUNT(*) {base} GROUP BY 1, 2")},
        "instruction_lang": {str(a): n for a, n in q(f"SELECT d.instruction_lang, COUNT(*) {base} GROUP BY 1")},
        "origin": {a: n for a, n in q(f"SELECT d.origin, COUNT(*) {base} GROUP BY 1")},
        "turns": {str(a): n for a, n in q(
            f"SELECT n, COUNT(*) FROM (SELECT (SELECT COUNT(*) FROM turns t WHERE t.dialogue_id=d.id"
            f" AND t.state='active' AND t.role='user') AS n {base}) GROUP BY n")},
        "interaction_type": {str(a): n for a, n in q(
            f"SELECT t.interaction_type, COUNT(*) FROM turns t JOIN dialogues d ON d.id=t.dialogue_id{kept}"
            f" WHERE d.status='done' AND t.state='active' AND t.role='user' AND t.interaction_type IS NOT NULL"
            f" AND t.interaction_type != 'translate' GROUP BY 1")}}


def test_mix_counts_of_all_and_kept_in_one_pass_equal_their_definition(workspace):
    store = workspace.store
    for k in range(6):
        add_dialogue(store, en_dialogue(k))
    for k in range(3):
        add_dialogue(store, zh_dialogue(10 + k), origin="human")
    add_dialogue(store, en_dialogue(0))  # an exact duplicate: the filter drops one of the two
    spec = en_dialogue(20)
    spec["turns"][1] = ("assistant", "The council approved the housing budget on Tuesday, as planned.",
                        "translate")  # English where Chinese was asked: dropped
    add_dialogue(store, spec)
    run_filter(store, workspace.config)
    done, kept = store.mix_counts_with_kept()
    assert done == _mix_by_definition(store, False) and kept == _mix_by_definition(store, True)
    assert sum(kept["pair"].values()) < sum(done["pair"].values())  # the filter did drop some
    assert list(done["pair"].values()) == sorted(done["pair"].values(), reverse=True)


def test_diversity_lsh_parameters_are_the_filter_optimiser_s():
    from itcollect.filter.dedup import lsh_params
    from itcollect.stats.corpus import DIVERSITY_LSH

    assert DIVERSITY_LSH == lsh_params(0.4, 64)


def test_rouge_l():
    assert _rouge_l("a b c d".split(), "a b c d".split()) == 1.0
    assert abs(_rouge_l("a b c d".split(), "a x c d".split()) - 0.75) < 1e-9
    assert _rouge_l("a b".split(), "c d".split()) == 0.0


def test_diversity_per_instruction_language(workspace):
    store = workspace.store
    # en: two near-identical follow-up requests and distinct ones; zh: all distinct
    for k, req in enumerate(["Please make it more formal.", "Please make it more formal!",
                             "Could you explain why you chose that verb?", "Shorten it to a headline for the front page."]):
        spec = en_dialogue(k)
        spec["turns"][2] = ("user", req, "style")
        add_dialogue(store, spec)
    for k, req in enumerate(["请让译文更自然一些。", "为什么用这个动词？", "请改成新闻标题的风格。"]):
        spec = zh_dialogue(10 + k)
        spec["turns"][2] = ("user", req, "polish")
        add_dialogue(store, spec)
    div = diversity_section(store)
    assert set(div) == {"en", "zh"}
    assert div["en"]["requests"] == 8 and div["zh"]["requests"] == 6
    # the first requests ("Translate into Chinese:" + the quoted source removed) are identical, and so
    # are the two "more formal" ones: 4 + 2 of 8 English requests
    assert div["en"]["rouge_l_over_0_7"] == 0.75
    assert 0 < div["en"]["distinct_1"] <= 1 and 0 < div["zh"]["distinct_2"] <= 1
    assert div["zh"]["rouge_l_over_0_7"] == 0.5  # only the three identical first requests


def test_stats_json_keeps_contract_and_plots(tmp_path):
    ws = init_workspace(tmp_path / "ws")
    add_dialogue(ws.store, en_dialogue(1))
    add_dialogue(ws.store, zh_dialogue(2))
    run_filter(ws.store, ws.config)
    data = collect_stats(ws.store, ws.config)
    ws.close()
    assert CONTRACT <= set(data) and {"mix", "diversity", "imports", "exports"} <= set(data)
    r = run_cli("-C", str(tmp_path / "ws"), "stats", "--json", "--plot", str(tmp_path / "mix.png"))
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert got["filter"]["kept"] == 2 and got["mix"]["pair"]["zh-en"]["count"] == 1
    png = (tmp_path / "mix.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    r = run_cli("-C", str(tmp_path / "ws"), "stats")
    assert r.returncode == 0 and "Mix (finished dialogues) vs target" in r.stdout and "ROUGE-L" in r.stdout


def test_plot_without_matplotlib_says_how_to_install_it(tmp_path):
    """matplotlib is the [plot] extra: without it, --plot is one clear line (exit 1), before any
    statistics are computed, and plain stats still work."""
    init_workspace(tmp_path / "ws").close()
    blocker = tmp_path / "no-matplotlib" / "matplotlib"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('matplotlib is blocked for this test')\n")
    env = {"PYTHONPATH": str(blocker.parent)}
    r = run_cli("-C", str(tmp_path / "ws"), "stats", "--plot", str(tmp_path / "mix.png"), env=env)
    assert r.returncode == 1 and "pip install 'itcollect[plot]'" in r.stderr
    assert r.stderr.count("\n") == 1 and not (tmp_path / "mix.png").exists()
    assert run_cli("-C", str(tmp_path / "ws"), "stats", "--json", env=env).returncode == 0
