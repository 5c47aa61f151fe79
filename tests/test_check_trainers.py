"""tools/check_trainers.py without the trainers: how it reads an export, a trainer's log and a result.

The check itself (two optimizer steps in TRL and LLaMA-Factory) runs in .ci/run (TRL's half) and by
hand; these tests cover the parts that decide whether it passes."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def ct():
    spec = importlib.util.spec_from_file_location("check_trainers", REPO / "tools" / "check_trainers.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _write_export(out: Path, with_ranking: bool) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    (out / "parquet").mkdir(parents=True)
    msgs = [[{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}] for i in range(5)]
    pq.write_table(pa.table({"messages": msgs[:3]}), out / "parquet" / "train-00000-of-00002.parquet")
    pq.write_table(pa.table({"messages": msgs[3:4]}), out / "parquet" / "train-00001-of-00002.parquet")
    pq.write_table(pa.table({"messages": msgs[4:]}), out / "parquet" / "test-00000-of-00001.parquet")
    info = {"itcollect": {"file_name": "sharegpt.json", "formatting": "sharegpt"},
            "itcollect_test": {"file_name": "sharegpt_test.json", "formatting": "sharegpt"}}
    (out / "sharegpt.json").write_text(json.dumps([{"conversations": []}] * 4), encoding="utf-8")
    if with_ranking:
        info["itcollect_kto"] = {"file_name": "kto.json", "columns": {"kto_tag": "label"}}
        info["itcollect_dpo"] = {"file_name": "dpo.json", "formatting": "sharegpt", "ranking": True}
        info["itcollect_dpo_test"] = {"file_name": "dpo_test.json", "formatting": "sharegpt", "ranking": True}
        (out / "dpo.json").write_text(json.dumps([{"conversations": []}] * 2), encoding="utf-8")
        (out / "dpo" / "parquet").mkdir(parents=True)
        pq.write_table(pa.table({"prompt": [msgs[0][:1]] * 2, "chosen": [msgs[0][1:]] * 2,
                                 "rejected": [msgs[1][1:]] * 2}),
                       out / "dpo" / "parquet" / "train-00000-of-00001.parquet")
    (out / "dataset_info.json").write_text(json.dumps(info), encoding="utf-8")


def test_export_counts_and_entries(ct, tmp_path):
    out = tmp_path / "out"
    _write_export(out, with_ranking=False)
    assert ct.parquet_rows(out / "parquet") == 4 and ct.parquet_rows(out / "parquet", "test") == 1
    assert ct.llamafactory_entries(out) == ("itcollect", None)
    assert ct.dpo_folder(out) is None and ct.preference_rows(out) == 0
    assert sorted(ct.exported_text(out)) == sorted([f"q{i}" for i in range(5)] + [f"a{i}" for i in range(5)])


def test_preference_export_is_found(ct, tmp_path):
    out = tmp_path / "out"
    _write_export(out, with_ranking=True)
    assert ct.llamafactory_entries(out) == ("itcollect", "itcollect_dpo")
    assert ct.dpo_folder(out) == out / "dpo" and ct.preference_rows(out) == 2
    assert ct.json_rows(out / "dpo.json") == 2
    assert "a1" in ct.exported_text(out)


def test_stage_plan_skips_dpo_without_preference_rows(ct, tmp_path):
    out = tmp_path / "out"
    _write_export(out, with_ranking=False)
    (out / "hf").mkdir()
    (out / "hf" / "dataset_dict.json").write_text('{"splits": ["train"]}', encoding="utf-8")
    trl = ct.stage_plan(out, "trl")
    assert [(s, n, inner is None) for s, n, inner, _ in trl] == [("sft", 4, False), ("dpo", 0, True)]
    assert "no preference rows" in trl[1][3]
    lf = ct.stage_plan(out, "llamafactory")
    assert [(s, n, inner is None) for s, n, inner, _ in lf] == [("sft", 4, False), ("dpo", 0, True)]
    assert lf[0][2][:4] == ["llamafactory-sft", "--data", str(out), "--dataset"]


def test_llamafactory_log(ct):
    log = ("[INFO|trainer.py:1470] >>   Num examples = 1,234\n[WARNING] Dropped invalid example: [..]\n"
           "Skipping this abnormal example.\n")
    assert ct.parse_llamafactory_log(log) == {"loaded": 1234, "dropped_invalid": 2}
    assert ct.parse_llamafactory_log("nothing") == {"loaded": None, "dropped_invalid": 0}


def test_judge_stage(ct):
    ok = {"loaded": 7, "steps": ct.STEPS, "losses": [7.5, 7.4]}
    assert ct.judge_stage(ok, 7) is None
    assert "loaded 6 rows of 7" in ct.judge_stage({**ok, "loaded": 6}, 7)
    assert "dropped 1" in ct.judge_stage({**ok, "dropped_invalid": 1}, 7)
    assert "optimizer steps" in ct.judge_stage({**ok, "steps": 1}, 7)
    assert "finite" in ct.judge_stage({**ok, "losses": [float("nan")]}, 7)
    assert "finite" in ct.judge_stage({**ok, "losses": []}, 7)


def test_venv_dir_follows_the_pins(ct, tmp_path, monkeypatch):
    a = ct.venv_dir(tmp_path, "trl")
    assert a == ct.venv_dir(tmp_path, "trl") and a.name.startswith("trl-")
    assert a != ct.venv_dir(tmp_path, "llamafactory")
    monkeypatch.setitem(ct.TRAINERS, "trl", ["trl==0.0.1"])
    assert ct.venv_dir(tmp_path, "trl") != a


def test_simulate_compared_gives_one_preference_row_per_compared_turn(ct, tmp_path, fake_openai):
    """The check's comparisons are ``simulate --compare`` of its two systems on the loopback server:
    the second system's answers carry the responder's marks and lose every judged turn, so each
    compared turn comes out of ``export --format dpo`` as one TRL conversational preference row."""
    import datasets

    from itcollect.export import export_dataset
    from itcollect.filter import run_filter
    from itcollect.plan import plan_specs
    from itcollect.workspace import Workspace, init_workspace

    from .responders import MARK, fill_workspace_sources, systems_responder

    fake_openai.responder = systems_responder
    ws = init_workspace(tmp_path / "ws")
    fill_workspace_sources(ws.store)
    plan_specs(ws.store, ws.config, 4, seed=3)
    ws.close()
    compared = ct.simulate_compared(tmp_path / "ws", fake_openai.base_url, tmp_path)
    ws = Workspace(tmp_path / "ws")
    answers = ws.store.scalar("SELECT COUNT(*) FROM turns WHERE role='assistant' AND state='active'")
    assert compared == answers > 0  # every answer turn was compared
    run_filter(ws.store, ws.config, near_dup=False)
    export_dataset(ws.store, ws.config, tmp_path / "out", fmt="dpo", validation_share=0, test_share=0)
    ws.close()
    rows = list(datasets.load_from_disk(str(tmp_path / "out" / "dpo"))["train"])
    assert len(rows) == ct.preference_rows(tmp_path / "out") > 0
    for r in rows:
        assert (r["chosen_system"], r["rejected_system"], r["chooser"]) == (ct.CHOSEN_SYSTEM, ct.REJECTED_SYSTEM,
                                                                            "judge")
        assert r["prompt"][-1]["role"] == "user" and len(r["chosen"]) == len(r["rejected"]) == 1
        assert r["rejected"][0]["content"] == r["chosen"][0]["content"] + MARK * 2
