"""``plan --from-split test`` (issue 23, part 6): the dialogues an export puts in the test split are
replayed as new specs, not counted toward max_uses_per_source, added once per seed, and their
dialogues never exported."""

from __future__ import annotations

import datasets
import pytest

from itcollect.export import export_dataset
from itcollect.filter import run_filter
from itcollect.kernel.errors import InputError
from itcollect.kernel.splits import split_pass
from itcollect.plan import replay_split
from itcollect.workspace import init_workspace

from .test_filter import add_dialogue, en_dialogue, zh_dialogue


def _spec(k: int, d: dict) -> dict:
    return {"seed": 0, "seq": k, "source_id": f"src{k:03d}", "src_lang": d["src"], "tgt_lang": d["tgt"],
            "instruction_lang": d["instr"], "n_turns": 2, "interaction_types": ["translate", d["turns"][2][2]],
            "params": {"variant": k, "turns": [{}, {"k": k}]}}


@pytest.fixture
def ws(tmp_path):
    ws = init_workspace(tmp_path / "ws")
    store = ws.store
    for k in range(12):
        d = en_dialogue(k) if k % 2 == 0 else zh_dialogue(k)
        store.add_source(source_id=f"src{k:03d}", text=d["source"], lang=d["src"], origin_file="news.txt")
        store.add_specs([_spec(k, d)])
        did = add_dialogue(store, d)
        spec_id = store.scalar("SELECT id FROM specs WHERE seq=?", (k,))
        store.conn.execute("UPDATE dialogues SET spec_id=?, source_id=? WHERE id=?", (spec_id, f"src{k:03d}", did))
        store.conn.execute("UPDATE specs SET status='done' WHERE id=?", (spec_id,))
    add_dialogue(store, en_dialogue(40), origin="imported")  # no spec: nothing to replay
    run_filter(store, ws.config, near_dup=False)
    yield ws
    ws.close()


def _test_ids(ws) -> set[str]:
    e = ws.config["export"]
    split_by_id, _ = split_pass(ws.store.iter_kept_keys(), e["validation_share"], e["test_share"], e["split_seed"])
    return {did for did, k in split_by_id.items() if k == 2}


def _shares(ws, validation: float, test: float) -> None:
    text = ws.config_path.read_text(encoding="utf-8")
    text = text.replace("validation_share = 0.02", f"validation_share = {validation}")
    text = text.replace("test_share = 0.02", f"test_share = {test}")
    ws.config_path.write_text(text, encoding="utf-8")
    from itcollect.config import load_config

    ws.config = load_config(ws.config_path)


def test_the_test_split_is_replayed_once_per_seed_and_uses_no_source(ws):
    _shares(ws, 0.25, 0.25)
    store = ws.store
    test_ids = _test_ids(ws)
    assert len(test_ids) >= 2
    uses = store.source_use_counts()
    r = replay_split(store, ws.config, "test", seed=5)
    assert (r.dialogues, r.added, r.existing) == (len(test_ids), len(test_ids) - r.without_spec, 0)
    replays = [s for s in store.iter_specs() if s["params"].get("replay")]
    assert {s["params"]["replay"]["dialogue"] for s in replays} <= test_ids and len(replays) == r.added
    for s in replays:  # the spec replayed as it was: source, languages, turns, types, parameters
        original = store.get_spec(s["params"]["replay"]["spec"])
        assert s["status"] == "pending" and s["seed"] == 5 and s["seq"] < 0
        for key in ("source_id", "src_lang", "tgt_lang", "instruction_lang", "n_turns", "interaction_types"):
            assert s[key] == original[key], key
        assert {k: v for k, v in s["params"].items() if k != "replay"} == original["params"]
    assert store.source_use_counts() == uses  # not counted toward max_uses_per_source
    assert store.spec_count_for_seed(5) == 0 and store.max_spec_seq(5) == -1  # no position of seed 5's plan
    again = replay_split(store, ws.config, "test", seed=5)
    assert (again.added, again.existing) == (0, r.added)
    assert replay_split(store, ws.config, "test", seed=6).added == r.added  # another seed replays again


def test_replayed_dialogues_are_never_exported(ws, tmp_path):
    _shares(ws, 0.25, 0.25)
    store = ws.store
    before = _test_ids(ws)
    replay_split(store, ws.config, "test", seed=1)
    # play every replay (as simulate --compare would), finish it, filter again: kept but not exported
    played = []
    for s in [s for s in store.iter_specs() if s["params"].get("replay")]:
        d = en_dialogue(s["seq"] + 100)
        did = add_dialogue(store, d)
        store.conn.execute("UPDATE dialogues SET spec_id=?, source_id=? WHERE id=?", (s["id"], s["source_id"], did))
        played.append(did)
    run_filter(store, ws.config, near_dup=False)
    assert _test_ids(ws) == before  # the splits do not move
    result = export_dataset(store, ws.config, tmp_path / "out", fmt="hf")
    dd = datasets.load_from_disk(str(tmp_path / "out" / "hf"))
    exported = {r["id"] for s in dd for r in dd[s]}
    assert exported and not exported & set(played)
    assert result.counts["total"] == len(exported)


def test_replaying_needs_filter_verdicts_and_a_split(tmp_path):
    fresh = init_workspace(tmp_path / "fresh")
    with pytest.raises(InputError, match="run 'itcollect filter' first"):
        replay_split(fresh.store, fresh.config, "test")
    with pytest.raises(InputError, match="unknown split"):
        replay_split(fresh.store, fresh.config, "dev")
    fresh.close()


def test_plan_cli_from_split(cli, ws):
    _shares(ws, 0.25, 0.25)
    ws.close()
    root = str(ws.root)
    out = cli("-C", root, "plan", "--from-split", "test", "--seed", "3")
    assert out.returncode == 0, out.stderr
    assert "test split:" in out.stdout and "replay specs for seed 3" in out.stdout
    both = cli("-C", root, "plan", "--from-split", "test", "--dialogues", "5")
    assert both.returncode == 2 and "--from-split" in both.stderr
