"""``hf/`` and ``dpo/`` are streamed page by page in ``save_to_disk``'s layout; each must be what
``datasets`` itself writes from the same rows (``load_dataset("parquet")`` + ``save_to_disk``, the
way both were built before), so a trainer's ``load_from_disk`` cannot tell them apart."""

from __future__ import annotations

import json

import datasets
import pytest

from . import test_compare_export, test_export


def _reference(parquet_root, tmp_path, name):
    """What datasets writes for the export's own Parquet shards."""
    files = {s: sorted(str(f) for f in parquet_root.glob(f"{s}-*.parquet")) for s in ("train", "validation", "test")}
    files = {s: f for s, f in files.items() if f}  # in split order, as the export gave them
    dd = datasets.load_dataset("parquet", data_files=files, cache_dir=str(tmp_path / f"cache-{name}"))
    ref = tmp_path / f"ref-{name}"
    dd.save_to_disk(str(ref))
    return ref


def _same_layout(ours, ref):
    assert json.loads((ours / "dataset_dict.json").read_text()) == json.loads((ref / "dataset_dict.json").read_text())
    for split in json.loads((ref / "dataset_dict.json").read_text())["splits"]:
        mine = json.loads((ours / split / "state.json").read_text())
        theirs = json.loads((ref / split / "state.json").read_text())
        assert mine.keys() == theirs.keys()
        assert {k: v for k, v in mine.items() if k != "_fingerprint"} == \
            {k: v for k, v in theirs.items() if k != "_fingerprint"}
        info = json.loads((ours / split / "dataset_info.json").read_text())
        assert info["features"] == json.loads((ref / split / "dataset_info.json").read_text())["features"]
        assert sorted(p.name for p in (ours / split).glob("*.arrow")) == \
            sorted(p.name for p in (ref / split).glob("*.arrow"))
    a, b = datasets.load_from_disk(str(ours)), datasets.load_from_disk(str(ref))
    assert list(a) == list(b)
    for split in a:
        assert a[split].features == b[split].features
        assert a[split].num_rows == b[split].num_rows > 0
        assert a[split].to_list() == b[split].to_list()


@pytest.mark.parametrize("which", ["sft", "dpo"])
def test_streamed_dataset_dict_is_what_save_to_disk_writes(which, tmp_path, request):
    if which == "sft":
        _, out, _, _ = request.getfixturevalue("sft_export")
        _same_layout(out / "hf", _reference(out / "parquet", tmp_path, "hf"))
    else:
        _, out, _, _ = request.getfixturevalue("dpo_export")
        _same_layout(out / "dpo", _reference(out / "dpo" / "parquet", tmp_path, "dpo"))


@pytest.fixture(scope="module")
def sft_export(tmp_path_factory):
    yield from test_export.exported.__wrapped__(tmp_path_factory)


@pytest.fixture(scope="module")
def dpo_export(tmp_path_factory):
    yield from test_compare_export.exported.__wrapped__(tmp_path_factory)


def test_fingerprint_depends_on_the_rows_only(sft_export, tmp_path):
    """Two exports of the same rows name the same fingerprint (no random state in the files)."""
    from itcollect.export import export_dataset

    ws, out, _, _ = sft_export
    again = tmp_path / "again"
    export_dataset(ws.store, ws.config, again, fmt="hf", system_prompt=test_export.SYSTEM,
                   validation_share=0.2, test_share=0.2)
    for split in json.loads((out / "hf" / "dataset_dict.json").read_text())["splits"]:
        assert (json.loads((again / "hf" / split / "state.json").read_text())
                == json.loads((out / "hf" / split / "state.json").read_text()))
