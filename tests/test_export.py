"""``itcollect export``: the dataset loads with ``datasets`` and holds exactly the stored dialogues."""

from __future__ import annotations

import json
from collections import defaultdict

import datasets
import pytest
import yaml

from itcollect.export import export_dataset, sharegpt_record
from itcollect.filter import run_filter
from itcollect.kernel.errors import InputError
from itcollect.workspace import init_workspace

from .conftest import run_cli
from .test_filter import add_dialogue, en_dialogue, zh_dialogue

SYSTEM = "You are a careful translator."


def _corpus(ws, n_sources: int = 24) -> dict[str, str]:
    """Dialogues over shared sources (2 per source: another instruction language); one refusal."""
    store = ws.store
    ids = {}
    for k in range(n_sources):
        for variant in (0, 1):
            spec = en_dialogue(k) if k % 2 == 0 else zh_dialogue(k)
            if variant:  # the same source, asked for differently (not a near-duplicate)
                spec = dict(spec)
                t = spec["turns"]
                if spec["instr"] == "en":
                    spec["turns"] = [("user", f"Could you put this news sentence into Chinese for me? {spec['source']}",
                                      "translate"), t[1],
                                     ("user", "Now make it much shorter, like a headline.", "length"),
                                     ("assistant", "市议会批准住房预算", "length")]
                else:
                    spec["turns"] = [("user", f"帮我把下面这条新闻译成英语，谢谢：{spec['source']}", "translate"), t[1],
                                     ("user", "再短一点，像新闻标题那样。", "length"),
                                     ("assistant", "City unveils transport plan", "length")]
            sid = f"src{k:03d}"
            if variant == 0:
                store.add_source(source_id=sid, text=spec["source"], lang=spec["src"], origin_file="news.txt",
                                 docid=f"doc{k // 4}")
            did = add_dialogue(store, spec, origin="human" if k % 3 == 0 else "simulated")
            store.conn.execute("UPDATE dialogues SET source_id=? WHERE id=?", (sid, did))
            ids[did] = sid
    bad = en_dialogue(90)
    bad["turns"][3] = ("assistant", "I'm sorry, but I can't help with that.", "style")
    ids[add_dialogue(store, bad)] = None
    return ids


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    ws = init_workspace(root / "ws")
    ids = _corpus(ws)
    # the test sentences differ only in a city and a number: keep near-dup detection out of this
    run_filter(ws.store, ws.config, near_dup=False)
    result = export_dataset(ws.store, ws.config, root / "out", fmt="all", system_prompt=SYSTEM,
                            validation_share=0.2, test_share=0.2)
    yield ws, root / "out", result, ids
    ws.close()


def test_load_from_disk_and_parquet(exported):
    ws, out, result, ids = exported
    dd = datasets.load_from_disk(str(out / "hf"))
    assert set(dd) == {"train", "validation", "test"}
    total = sum(len(dd[s]) for s in dd)
    assert total == result.counts["total"] == len(ids) - 1  # the refusal is not exported
    cols = set(dd["train"].column_names)
    assert {"id", "messages", "source", "source_id", "src_lang", "tgt_lang", "instruction_lang",
            "interaction_types", "origin", "annotator", "models", "template_hashes", "created_at",
            "user_turn_authors", "turn_models", "docid"} <= cols
    files = {s: sorted(str(p) for p in (out / "parquet").glob(f"{s}-*.parquet")) for s in dd}
    pq = datasets.load_dataset("parquet", data_files=files, cache_dir=str(out.parent / "hfcache"))
    for s in dd:
        assert sorted(pq[s]["id"]) == sorted(dd[s]["id"])
    assert len(dd["validation"]) > 0 and len(dd["test"]) > 0


def test_rows_equal_the_stored_dialogues(exported):
    ws, out, _result, _ids = exported
    dd = datasets.load_from_disk(str(out / "hf"))
    seen = 0
    for split in dd:
        for row in dd[split]:
            turns = ws.store.get_turns(row["id"])
            assert row["messages"][0] == {"role": "system", "content": SYSTEM}
            assert row["messages"][1:] == [{"role": t["role"], "content": t["content"]} for t in turns]
            d = ws.store.get_dialogue(row["id"])
            assert (row["src_lang"], row["tgt_lang"], row["instruction_lang"], row["origin"]) == (
                d["src_lang"], d["tgt_lang"], d["instruction_lang"], d["origin"])
            assert row["source"] == d["source_text"] and row["source_id"] == d["source_id"]
            assert row["interaction_types"] == [t["interaction_type"] for t in turns if t["role"] == "user"]
            assert row["models"] == ["gpt-4o-mini"] and row["template_hashes"] == ["abc123"]
            assert row["turn_models"] == ["gpt-4o-mini"] * row["n_user_turns"]
            assert row["docid"] == ws.store.get_source(d["source_id"])["docid"]
            seen += 1
    assert seen == len(list(ws.store.iter_corpus(kept_only=True)))


def test_no_source_in_two_splits(exported):
    _ws, out, _result, _ids = exported
    dd = datasets.load_from_disk(str(out / "hf"))
    where = defaultdict(set)
    texts = defaultdict(set)
    for split in dd:
        for row in dd[split]:
            where[row["source_id"]].add(split)
            texts[row["source"]].add(split)
    assert all(len(s) == 1 for s in where.values())
    assert all(len(s) == 1 for s in texts.values())
    assert {"train", "validation", "test"} == set().union(*where.values())


def test_sharegpt_is_fastchat_style(exported):
    _ws, out, result, _ids = exported
    n = 0
    for name in ("sharegpt.json", "sharegpt_validation.json", "sharegpt_test.json"):
        data = json.loads((out / name).read_text(encoding="utf-8"))
        for rec in data:
            conv = rec["conversations"]
            assert conv and len(conv) % 2 == 0
            assert [c["from"] for c in conv] == ["human", "gpt"] * (len(conv) // 2)
            assert all(isinstance(c["value"], str) and c["value"] for c in conv)
            assert rec["system"] == SYSTEM
            n += 1
    assert n == result.counts["total"]


def test_llamafactory_entry(exported):
    _ws, out, _result, _ids = exported
    info = json.loads((out / "dataset_info.json").read_text(encoding="utf-8"))
    entry = info["itcollect"]
    assert entry["file_name"] == "sharegpt.json" and (out / entry["file_name"]).is_file()
    assert entry["formatting"] == "sharegpt"
    assert entry["columns"] == {"messages": "conversations", "system": "system"}
    assert entry["tags"] == {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt"}
    assert info["itcollect_test"]["file_name"] == "sharegpt_test.json"


def test_dataset_card(exported):
    ws, out, result, _ids = exported
    text = (out / "README.md").read_text(encoding="utf-8")
    front = yaml.safe_load(text.split("---")[1])
    assert front["license"] == ws.config["export"]["license"]
    assert set(front["language"]) == {"en", "zh"}
    assert front["size_categories"] == ["n<1K"]
    assert "translation" in front["task_categories"]
    assert "| en-zh |" in text and "| zh-en |" in text and "refusal" in text
    assert f"Dialogues: {result.counts['total']}" in text
    exports = ws.store.list_exports()
    assert exports[-1]["counts"]["total"] == result.counts["total"]
    assert exports[-1]["formats"] == ["hf", "llamafactory", "sharegpt"]


def test_llamafactory_entry_without_system_prompt(exported, tmp_path):
    """No record has a ``system`` field, so the entries declare no system column: LLaMA-Factory reads
    every declared column and fails (KeyError: 'system') on a file where no record has it."""
    ws, _out, _result, _ids = exported  # (after test_dataset_card: this export is the store's latest)
    out = tmp_path / "nosys"
    export_dataset(ws.store, ws.config, out, fmt="llamafactory", validation_share=0.2, test_share=0.2)
    info = json.loads((out / "dataset_info.json").read_text(encoding="utf-8"))
    assert set(info) == {"itcollect", "itcollect_validation", "itcollect_test"}
    for entry in info.values():
        assert entry["columns"] == {"messages": "conversations"}
        assert not any("system" in rec for rec in json.loads((out / entry["file_name"]).read_text(encoding="utf-8")))


def test_has_system_message_looks_at_the_split_rows_only():
    import pyarrow as pa

    from itcollect.export.writers import _has_system_message

    table = pa.table({"messages": [[{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}],
                                   [{"role": "system", "content": "s"}, {"role": "user", "content": "c"}]]})
    assert _has_system_message(table, None) and _has_system_message(table, [1])
    assert not _has_system_message(table, [0]) and not _has_system_message(table, [])


def test_export_refuses_before_filter(workspace, tmp_path):
    add_dialogue(workspace.store, en_dialogue(1))
    with pytest.raises(InputError, match="run 'itcollect filter'"):
        export_dataset(workspace.store, workspace.config, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_sharegpt_record_moves_system_prompt():
    row = {"id": "x", "messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "u"},
                                   {"role": "assistant", "content": "a"}],
           "src_lang": "en", "tgt_lang": "zh", "instruction_lang": "en", "origin": "human", "source_id": "s"}
    rec = sharegpt_record(row)
    assert rec["system"] == "S" and rec["conversations"] == [{"from": "human", "value": "u"},
                                                             {"from": "gpt", "value": "a"}]


def test_sharegpt_import_filter_export_round_trip(tmp_path):
    """import -> filter -> export of a ShareGPT file gives back the same conversations (CLI)."""
    records = []
    for k in range(12):
        spec = zh_dialogue(k) if k % 2 else en_dialogue(k)
        records.append({"conversations": [{"from": "human" if r == "user" else "gpt", "value": c}
                                          for r, c, _ in spec["turns"]]})
    src = tmp_path / "sharegpt_dump.json"
    src.write_text(json.dumps(records, ensure_ascii=False, indent=2), encoding="utf-8")
    ws_dir = tmp_path / "ws"
    assert run_cli("init", str(ws_dir)).returncode == 0
    r = run_cli("-C", str(ws_dir), "export", "--hf", str(tmp_path / "early"))
    assert r.returncode == 1 and "filter" in r.stderr  # never filtered: refused
    r = run_cli("-C", str(ws_dir), "import", str(src))
    assert r.returncode == 0, r.stderr
    r = run_cli("-C", str(ws_dir), "filter")
    assert r.returncode == 0 and "kept 12" in r.stdout, r.stdout + r.stderr
    out = tmp_path / "out"
    r = run_cli("-C", str(ws_dir), "export", "--hf", str(out), "--format", "all", "--validation-share", "0.2",
                "--test-share", "0.2")
    assert r.returncode == 0, r.stderr
    back = []
    for name in ("sharegpt.json", "sharegpt_validation.json", "sharegpt_test.json"):
        if (out / name).exists():
            back += [rec["conversations"] for rec in json.loads((out / name).read_text(encoding="utf-8"))]
    key = lambda conv: json.dumps(conv, ensure_ascii=False)  # noqa: E731
    assert sorted(map(key, back)) == sorted(key(r["conversations"]) for r in records)
    dd = datasets.load_from_disk(str(out / "hf"))
    assert sum(len(dd[s]) for s in dd) == 12
    assert set(dd["train"]["origin"]) == {"imported"}
    r = run_cli("-C", str(ws_dir), "export", "--hf", str(out), "--format", "nope")
    assert r.returncode == 2
    r = run_cli("-C", str(ws_dir), "export", "--hf", str(out), "--push-to-hub", "me/ds", env={"HF_TOKEN": ""})
    assert r.returncode == 1 and "HF_TOKEN" in r.stderr


def test_format_sharegpt_only_and_rerun_replaces(exported, tmp_path):
    ws, _out, _result, _ids = exported
    out = tmp_path / "sg"
    (out / "hf").mkdir(parents=True)  # left over from an earlier export
    res = export_dataset(ws.store, ws.config, out, fmt="sharegpt", validation_share=0, test_share=0)
    assert (out / "sharegpt.json").is_file() and not (out / "dataset_info.json").exists()
    assert not (out / "hf").exists() and not (out / "sharegpt_test.json").exists()
    assert res.counts["splits"] == {"train": res.counts["total"], "validation": 0, "test": 0}
    assert len(json.loads((out / "sharegpt.json").read_text(encoding="utf-8"))) == res.counts["total"]
    assert sorted(p.name for p in (out / "parquet").iterdir()) == ["train-00000-of-00001.parquet"]
    with pytest.raises(InputError):
        export_dataset(ws.store, ws.config, out, fmt="csv")


def test_parallel_rendering_gives_identical_files(exported, tmp_path, monkeypatch):
    import itcollect.export as ex

    ws, _out, _result, _ids = exported
    outs = []
    for workers in (1, 2):
        out = tmp_path / f"w{workers}"
        monkeypatch.setattr(ex, "_PAGE_SIZE", 7)  # several pages
        export_dataset(ws.store, ws.config, out, fmt="sharegpt", validation_share=0.2, test_share=0.2,
                       workers=workers)
        outs.append(out)
    for name in ("sharegpt.json", "sharegpt_validation.json", "sharegpt_test.json"):
        assert (outs[0] / name).read_bytes() == (outs[1] / name).read_bytes()
    a = datasets.load_dataset("parquet", data_files=str(outs[0] / "parquet" / "*.parquet"),
                              cache_dir=str(tmp_path / "c1"))["train"]
    b = datasets.load_dataset("parquet", data_files=str(outs[1] / "parquet" / "*.parquet"),
                              cache_dir=str(tmp_path / "c2"))["train"]
    assert a["id"] == b["id"] and a["messages"] == b["messages"]


STRATA = ("en-zh|en", "zh-en|zh", "en-de|en", "zh-fr|en")


def check_split_properties(groups, vs: float, ts: float, seed: int) -> dict[str, str]:
    """``assign_splits`` over Counter groups, checked against its contract rather than a copy of
    its loop; returns the assignment.

    Each group gets exactly one split (so no source sentence is in two); the result depends on the
    seed only, not on the order of the input, and the one-stratum form of a group of one dialogue
    gives the same result as its Counter. A group counts towards its main stratum
    (``most_common``, ties to the first seen), and per main stratum a split's share never exceeds
    its quota (share x the stratum's dialogues) by more than half a dialogue; and it is filled
    greedily: a group kept out of validation (out of test, for one left in train) would have
    passed that bound.
    """
    from collections import Counter

    from itcollect.export import assign_splits
    from itcollect.kernel.splits import SPLITS

    split_of = assign_splits(groups, vs, ts, seed)
    assert split_of.keys() == groups.keys() and set(split_of.values()) <= set(SPLITS)
    assert assign_splits(groups, vs, ts, seed) == split_of
    assert assign_splits(dict(reversed(list(groups.items()))), vs, ts, seed) == split_of
    one_stratum = {k: (next(iter(c)) if sum(c.values()) == 1 else c) for k, c in groups.items()}
    assert assign_splits(one_stratum, vs, ts, seed) == split_of

    size: Counter = Counter()
    for strata in groups.values():
        size.update(strata)
    placed: dict[str, Counter] = defaultdict(Counter)  # main stratum -> split -> dialogues
    for key, strata in groups.items():
        placed[strata.most_common(1)[0][0]][split_of[key]] += sum(strata.values())
    for key, strata in groups.items():
        main, n = strata.most_common(1)[0][0], sum(strata.values())
        quota = {"validation": size[main] * vs + 0.5, "test": size[main] * ts + 0.5}
        for split, limit in quota.items():
            assert placed[main][split] <= limit, (main, split, placed[main], limit)
        if split_of[key] != "validation":
            assert placed[main]["validation"] + n > quota["validation"], (key, main, placed[main])
        if split_of[key] == "train":
            assert placed[main]["test"] + n > quota["test"], (key, main, placed[main])
    return split_of


def _groups(sizes_and_strata) -> dict:
    from collections import Counter

    return {f"src:{g}": Counter(strata) for g, strata in enumerate(sizes_and_strata)}


def test_assign_splits_meets_its_quotas_greedily_in_a_seeded_order():
    import hashlib
    import random

    from itcollect.export import assign_splits

    rng = random.Random(2)
    groups = _groups([rng.choice(STRATA) for _ in range(rng.choice([1, 1, 1, 1, 2, 3, 5]))] for _ in range(3000))
    for seed, vs, ts in ((0, 0.02, 0.02), (7, 0.1, 0.05), (3, 0.0, 0.3), (7, 0.0, 0.0), (1, 0.5, 0.5)):
        split_of = check_split_properties(groups, vs, ts, seed)
        # a split of share 0 stays empty; any other gets groups (and train the rest)
        assert set(split_of.values()) == {"train"} | {s for s, share in (("validation", vs), ("test", ts)) if share}
    # a re-export with the same seed keeps every source sentence in the split it had in earlier
    # releases: the assignment of this input, pinned by digest (not by a copy of the rule)
    for (seed, vs, ts), digest in {(0, 0.02, 0.02): "76d9d44cc792bc44", (7, 0.1, 0.05): "fb55640a242c8837"}.items():
        got = json.dumps(sorted(assign_splits(groups, vs, ts, seed).items())).encode()
        assert hashlib.sha256(got).hexdigest()[:16] == digest, (seed, vs, ts)
    # single-dialogue groups: each stratum's split is its quota rounded (within half a dialogue)
    singles = _groups([rng.choice(STRATA)] for _ in range(997))
    split_of = check_split_properties(singles, 0.1, 0.05, 0)
    for stratum in STRATA:
        n = sum(1 for k, c in singles.items() if stratum in c)
        for split, share in (("validation", 0.1), ("test", 0.05)):
            got = sum(1 for k, c in singles.items() if stratum in c and split_of[k] == split)
            assert abs(got - n * share) <= 0.5, (stratum, split, got, n)
    # the order is the seed's, not the keys': another seed picks other groups, and validation is
    # not the first keys in any sorted order of them
    val = {seed: {k for k, s in check_split_properties(singles, 0.1, 0.05, seed).items() if s == "validation"}
           for seed in (0, 1)}
    assert val[0] != val[1]
    assert val[0] != set(sorted(singles)[:len(val[0])])


@pytest.mark.parametrize("seed", [0, 1])
def test_assign_splits_properties_on_generated_groups(seed):
    from hypothesis import given, settings
    from hypothesis import strategies as st

    group = st.lists(st.sampled_from(STRATA), min_size=1, max_size=6)
    share = st.sampled_from([0.0, 0.02, 0.1, 0.25, 0.5]) | st.floats(0.0, 0.5)

    @settings(max_examples=150, deadline=None, database=None)
    @given(st.lists(group, min_size=1, max_size=60), share, share)
    def prop(groups, vs, ts):
        check_split_properties(_groups(groups), vs, ts, seed)

    prop()


def test_rows_from_the_export_columns_equal_rows_from_every_column(exported):
    """The renderer reads only ROW_TURN_FIELDS of each turn: build_row must not need any other."""
    from itcollect.export import ROW_TURN_FIELDS, build_row

    ws, _out, _result, _ids = exported
    full = list(ws.store.iter_corpus(kept_only=True))
    slim = list(ws.store.iter_corpus(kept_only=True, turn_fields=ROW_TURN_FIELDS))
    assert len(full) == len(slim) > 0
    for (d, turns), (d2, turns2) in zip(full, slim):
        assert d == d2
        assert all(set(t) == {"id", "dialogue_id", *ROW_TURN_FIELDS} for t in turns2)
        assert [{k: t[k] for k in t2} for t, t2 in zip(turns, turns2)] == turns2
        assert build_row(d, turns2, SYSTEM, 1) == build_row(d, turns, SYSTEM, 1)


def test_sharegpt_json_is_json_dumps_of_the_record(exported):
    import random

    from itcollect.export import build_row, sharegpt_json

    ws, _out, _result, _ids = exported
    rows = [build_row(d, t, sp, 1) for d, t in ws.store.iter_corpus(kept_only=True) for sp in (None, SYSTEM)]
    rng = random.Random(0)
    alphabet = ['"', "\\", "\n", "\t", "\x00", "\x1f", "\u2028", "é", "中", "😀", "a", " ", "/", "<"]
    for k in range(300):  # odd strings, None values, several/odd system messages, no messages
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        roles = [rng.choice(["system", "user", "assistant"]) for _ in range(rng.randint(0, 5))]
        rows.append({"id": f"x{k}{text}", "messages": [{"role": r, "content": text + r} for r in roles],
                     "src_lang": rng.choice([None, "en", text]), "tgt_lang": None, "instruction_lang": "zh",
                     "origin": rng.choice([None, "imported"]), "source_id": text})
    for row in rows:
        assert sharegpt_json(row) == json.dumps(sharegpt_record(row), ensure_ascii=False)


def test_a_dialogue_the_split_pass_did_not_see_is_left_out_everywhere(exported, tmp_path, monkeypatch):
    """Workers render every kept dialogue of their pages while the split pass runs; one that pass
    did not see (kept by a filter run in between) is in no file and in none of the card's counts."""
    import itcollect.export as ex

    ws, _out, full, _ids = exported
    real = ws.store.iter_kept_keys
    rows = list(real())
    late = rows[len(rows) // 2][1]
    monkeypatch.setattr(ws.store, "iter_kept_keys", lambda: iter([r for r in rows if r[1] != late]))
    monkeypatch.setattr(ex, "_PAGE_SIZE", 5)
    out = tmp_path / "late"
    result = export_dataset(ws.store, ws.config, out, fmt="all", system_prompt=SYSTEM,
                            validation_share=0.2, test_share=0.2, workers=2)
    dd = datasets.load_from_disk(str(out / "hf"))
    exported_ids = [i for s in dd for i in dd[s]["id"]]
    assert late not in exported_ids and len(exported_ids) == result.counts["total"] == full.counts["total"] - 1
    sharegpt = [r["id"] for name in ("sharegpt.json", "sharegpt_validation.json", "sharegpt_test.json")
                for r in json.loads((out / name).read_text(encoding="utf-8"))]
    assert sorted(sharegpt) == sorted(exported_ids)
    expected = {k: defaultdict(int) for k in ("pair", "instruction_lang", "origin", "user_turns", "interaction_type")}
    for s in dd:
        for row in dd[s]:
            ex._count_row(expected, row)
    for k, v in expected.items():
        assert result.counts[k] == dict(sorted(v.items())), k


def test_a_new_format_is_one_writer_class_and_one_registry_line(exported, tmp_path, monkeypatch):
    """The writer interface: a JSONL format, registered in WRITERS, is chosen by --format and sees
    every exported row once, in its split, in dialogue order."""
    from itcollect.export import ExportWriter, build_row
    from itcollect.export import writers as W

    class JSONLines(ExportWriter):
        name = "jsonl"

        @staticmethod
        def render(rows):
            return [json.dumps({"id": r["id"], "n": r["n_user_turns"]}) for r in rows]

        def write(self, split, page, positions):
            lines = page.rendered["jsonl"]
            with (self.ctx.out / f"{split}.jsonl").open("a", encoding="utf-8") as fh:
                for p in (range(len(lines)) if positions is None else positions):
                    fh.write(lines[p] + "\n")

        def close(self, counts):
            return sorted(p.name for p in self.ctx.out.glob("*.jsonl"))

    monkeypatch.setitem(W.WRITERS, "jsonl", JSONLines)
    ws, _out, full, _ids = exported
    out = tmp_path / "jsonl"
    result = export_dataset(ws.store, ws.config, out, fmt="jsonl", validation_share=0.2, test_share=0.2, workers=2)
    assert result.formats == ["jsonl"] and "train.jsonl" in result.files
    assert not (out / "hf").exists() and (out / "parquet").is_dir() and (out / "README.md").is_file()
    got = {s: [json.loads(x) for x in (out / f"{s}.jsonl").read_text().splitlines()]
           for s in ("train", "validation", "test") if (out / f"{s}.jsonl").exists()}
    assert {s: len(v) for s, v in got.items()} == {s: n for s, n in result.counts["splits"].items() if n}
    expected = {r["id"]: r["n_user_turns"] for r in (build_row(d, t, None, 1) for d, t in ws.store.iter_corpus(kept_only=True))}
    assert {x["id"]: x["n"] for v in got.values() for x in v} == expected
    r = run_cli("-C", str(ws.root), "export", "--hf", str(tmp_path / "x"), "--format", "nope")
    assert r.returncode == 2
