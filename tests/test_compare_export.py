"""``export --format dpo`` (and ``all`` when comparisons exist): the preference rows of compared
turns load back with ``datasets`` in the SFT export's splits, as LLaMA-Factory's ShareGPT ranking
files and TRL's KTO rows (issue 23, part 4). The expected rows are listed by hand."""

from __future__ import annotations

import json

import datasets
import pytest

from itcollect.config import load_config
from itcollect.export import export_dataset
from itcollect.filter import run_filter
from itcollect.kernel.errors import ConfigError, InputError
from itcollect.workspace import init_workspace

from .test_filter import add_dialogue, en_dialogue, zh_dialogue

SYSTEM = "You are a careful translator."


def _cands(winner_text: str, winner: str, others: dict[str, str], scores: dict[str, float] | None = None,
           failed: tuple[str, ...] = ()):
    scores = scores or {}
    out = [{"system": winner, "model": f"m-{winner}", "status": "answered", "content": winner_text}]
    out += [{"system": s, "model": f"m-{s}", "status": "answered", "content": t} for s, t in others.items()]
    out += [{"system": s, "model": f"m-{s}", "status": "failed", "failure": "HTTP 503"} for s in failed]
    for c in out:
        if c["system"] in scores:
            c.update(judge_status="judged", judge_model="j", score=scores[c["system"]])
    return out


def _compare(store, did, idx, cands, **decision):
    turn = next(t for t in store.get_turns(did) if t["idx"] == idx)
    cid = store.add_comparison(did, idx, cands)
    store.decide_comparison(cid, turn_id=turn["id"], **decision)
    return turn


def _workspace(root, pairs: str | None = None):
    ws = init_workspace(root / "ws")
    if pairs:
        text = ws.config_path.read_text(encoding="utf-8").replace('preference_pairs = "best_vs_worst"',
                                                                    f'preference_pairs = "{pairs}"')
        ws.config_path.write_text(text, encoding="utf-8")
        ws.config = load_config(ws.config_path)
    store = ws.store
    for k in range(6):  # plain dialogues, for the splits
        add_dialogue(store, en_dialogue(k + 10))
    judged = add_dialogue(store, en_dialogue(1))
    turns = store.get_turns(judged)
    # turn 1, the judge: A 0 > B -1 > C -5 (D's call failed: it takes no part)
    _compare(store, judged, 1, _cands(turns[1]["content"], "A", {"B": "答案B", "C": "答案C"},
                                      {"A": 0.0, "B": -1.0, "C": -5.0}, failed=("D",)),
             chooser="judge", decision="rank", ranking=[["A"], ["B"], ["C"]], winner="A", annotator="j")
    # turn 3, the judge: A = B > C, a tie: no strict winner, no row
    _compare(store, judged, 3, _cands(turns[3]["content"], "A", {"B": "答案B2", "C": "答案C2"},
                                      {"A": -1.0, "B": -1.0, "C": -5.0}),
             chooser="judge", decision="rank", ranking=[["A", "B"], ["C"]], winner="A", tie=True, annotator="j")
    human = add_dialogue(store, zh_dialogue(2), origin="human")
    turns = store.get_turns(human)
    # turn 1, a person picks B; the judge scored A -2 and C -10: the worst of the rest is C
    _compare(store, human, 1, _cands(turns[1]["content"], "B", {"A": "Answer A", "C": "Answer C"},
                                     {"A": -2.0, "C": -10.0}),
             chooser="human", decision="pick", winner="B", annotator="li.wei")
    # turn 3, all bad; the person wrote the answer: chosen against every candidate
    _compare(store, human, 3, _cands("Answer A3", "A", {"B": "Answer B3", "C": "Answer C3"}),
             chooser="human_edit", decision="none", reason="all too literal", annotator="li.wei")
    dropped = en_dialogue(3)
    dropped["turns"][3] = ("assistant", "I'm sorry, but I can't help with that.", "style")
    gone = add_dialogue(store, dropped)  # the filter drops it: none of its rows are exported
    _compare(store, gone, 1, _cands(store.get_turns(gone)[1]["content"], "A", {"B": "x"}), chooser="judge",
             decision="rank", ranking=[["A"], ["B"]], winner="A", annotator="j")
    run_filter(store, ws.config, near_dup=False)
    return ws, {"judged": judged, "human": human, "gone": gone}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("dpo")
    ws, ids = _workspace(root)
    result = export_dataset(ws.store, ws.config, root / "out", fmt="all", system_prompt=SYSTEM,
                            validation_share=0.25, test_share=0.25)
    yield ws, root / "out", result, ids
    ws.close()


def _rows(out):
    dd = datasets.load_from_disk(str(out / "dpo"))
    return dd, [dict(r, split=s) for s in dd for r in dd[s]]


def test_best_against_worst_and_the_person_overrides(exported):
    ws, out, result, ids = exported
    dd, rows = _rows(out)
    got = sorted((r["dialogue_id"] == ids["judged"], r["turn"], r["chosen_system"], r["rejected_system"], r["chooser"],
                  r["margin"]) for r in rows)
    assert got == sorted([
        (True, 1, "A", "C", "judge", 5.0),  # best against worst; the tie at turn 2 gives nothing
        (False, 1, "B", "C", "human", None),  # the person's pick; C the judge's worst of the rest
        (False, 2, "human", "A", "human_edit", None),  # the person's own text against every candidate
        (False, 2, "human", "B", "human_edit", None),
        (False, 2, "human", "C", "human_edit", None)])
    assert ids["gone"] not in {r["dialogue_id"] for r in rows}
    assert result.counts["preferences"]["rows"] == 5
    assert result.counts["preferences"]["by_chooser"] == {"human": 1, "human_edit": 3, "judge": 1}


def test_rows_are_trl_conversational_preferences(exported):
    ws, out, _, ids = exported
    _, rows = _rows(out)
    judged = next(r for r in rows if r["dialogue_id"] == ids["judged"])
    turns = ws.store.get_turns(ids["judged"])
    assert judged["prompt"] == [{"role": "system", "content": SYSTEM}, {"role": "user", "content": turns[0]["content"]}]
    assert judged["chosen"] == [{"role": "assistant", "content": turns[1]["content"]}]
    assert judged["rejected"] == [{"role": "assistant", "content": "答案C"}]
    assert (judged["chosen_score"], judged["rejected_score"], judged["interaction_type"]) == (0.0, -5.0, "translate")
    edit = next(r for r in rows if r["chooser"] == "human_edit" and r["rejected_system"] == "B")
    human_turns = ws.store.get_turns(ids["human"])
    assert [m["content"] for m in edit["prompt"][1:]] == [t["content"] for t in human_turns[:3]]
    assert edit["prompt"][-1]["role"] == "user" and edit["chosen"][0]["content"] == human_turns[3]["content"]
    assert edit["rejected"][0]["content"] == "Answer B3"


def test_the_splits_are_the_sft_exports(exported):
    _, out, result, _ = exported
    sft = datasets.load_from_disk(str(out / "hf"))
    split_of = {r["id"]: s for s in sft for r in sft[s]}
    dd, rows = _rows(out)
    assert rows and all(split_of[r["dialogue_id"]] == r["split"] for r in rows)
    parquet = sorted(p.name for p in (out / "dpo" / "parquet").glob("*.parquet"))
    assert parquet == sorted(f"{s}-00000-of-00001.parquet" for s in dd)
    assert result.counts["preferences"]["splits"] == {s: len(dd[s]) for s in dd}


def test_llamafactory_ranking_entry_and_kto_rows(exported):
    _, out, _, _ = exported
    info = json.loads((out / "dataset_info.json").read_text(encoding="utf-8"))
    entry = info["itcollect_dpo"]
    assert entry["ranking"] is True and entry["formatting"] == "sharegpt"
    assert entry["columns"] == {"messages": "conversations", "system": "system", "chosen": "chosen",
                                "rejected": "rejected"}
    assert info["itcollect"].get("ranking") is None  # the SFT entries are as before
    _, rows = _rows(out)
    records = []
    for name, e in info.items():
        if name.startswith("itcollect_dpo"):
            records += json.loads((out / e["file_name"]).read_text(encoding="utf-8"))
    assert len(records) == len(rows)
    for rec in records:  # LLaMA-Factory's converter: human at odd positions, ending on the user's turn
        conv = rec["conversations"]
        assert len(conv) % 2 == 1 and [m["from"] for m in conv] == ["human", "gpt"] * (len(conv) // 2) + ["human"]
        assert rec["chosen"]["from"] == rec["rejected"]["from"] == "gpt" and rec["system"] == SYSTEM
    kto = [json.loads(line) for p in sorted((out / "dpo").glob("kto_*.jsonl")) for line in p.read_text().splitlines()]
    assert sum(k["label"] for k in kto) == 3  # one chosen answer per compared turn with rows
    assert sum(not k["label"] for k in kto) == len(rows)
    assert all(k["prompt"][-1]["role"] == "user" and k["completion"][0]["role"] == "assistant" for k in kto)
    loaded = datasets.load_dataset("json", data_files=[str(p) for p in (out / "dpo").glob("kto_*.jsonl")],
                                   cache_dir=str(out.parent / "hfcache"))
    assert set(loaded["train"].column_names) >= {"prompt", "completion", "label"}
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "## Preference rows" in card and "| human_edit | 3 |" in card and "config_name: preferences" in card


def test_best_against_each(tmp_path):
    ws, ids = _workspace(tmp_path, pairs="best_vs_each")
    result = export_dataset(ws.store, ws.config, tmp_path / "out", fmt="dpo")
    _, rows = _rows(tmp_path / "out")
    judged = sorted((r["chosen_system"], r["rejected_system"], r["margin"]) for r in rows
                    if r["dialogue_id"] == ids["judged"])
    assert judged == [("A", "B", 1.0), ("A", "C", 5.0)]
    assert sorted(r["rejected_system"] for r in rows if r["chooser"] == "human") == ["A", "C"]
    assert result.counts["preferences"]["rows"] == 7
    assert not (tmp_path / "out" / "dataset_info.json").exists()  # dpo alone: no LLaMA-Factory entries asked
    ws.close()


def test_no_comparisons_all_leaves_dpo_out_and_dpo_alone_says_why(tmp_path):
    ws = init_workspace(tmp_path / "ws")
    add_dialogue(ws.store, en_dialogue(1))
    run_filter(ws.store, ws.config, near_dup=False)
    result = export_dataset(ws.store, ws.config, tmp_path / "out", fmt="all")
    assert "dpo" not in result.formats and not (tmp_path / "out" / "dpo").exists()
    assert "preferences" not in result.counts
    with pytest.raises(InputError, match="simulate --compare"):
        export_dataset(ws.store, ws.config, tmp_path / "out2", fmt="dpo")
    ws.close()


def test_preference_pairs_is_checked(tmp_path):
    ws = init_workspace(tmp_path / "ws")
    ws.close()
    text = ws.config_path.read_text(encoding="utf-8").replace('preference_pairs = "best_vs_worst"',
                                                                'preference_pairs = "all"')
    ws.config_path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match="export.preference_pairs must be one of"):
        load_config(ws.config_path)
