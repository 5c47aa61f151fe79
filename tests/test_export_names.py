"""``[export] annotator_names = "pseudonymise"``: the annotator column holds a stable keyed hash of
each name; the key comes from $ITCOLLECT_PSEUDONYM_KEY or the workspace's .itcollect/pseudonym.key,
and is never in the export."""

from __future__ import annotations

import stat

import datasets

from itcollect.export import export_dataset
from itcollect.export.names import pseudonym
from itcollect.filter import run_filter
from itcollect.workspace import Workspace, init_workspace

from .test_filter import add_dialogue, en_dialogue, zh_dialogue


def _names(out) -> set[str]:
    dd = datasets.load_from_disk(str(out / "hf"))
    return {a for s in dd for a in dd[s]["annotator"]}


def _everything(out) -> bytes:
    return b"".join(p.read_bytes() for p in out.rglob("*") if p.is_file())


def test_pseudonymised_names_are_stable_keyed_and_the_key_is_not_exported(tmp_path, monkeypatch):
    monkeypatch.delenv("ITCOLLECT_PSEUDONYM_KEY", raising=False)
    ws = init_workspace(tmp_path / "ws")
    for k in range(6):
        add_dialogue(ws.store, en_dialogue(k) if k % 2 else zh_dialogue(k), origin="human" if k < 3 else "simulated")
    run_filter(ws.store, ws.config, near_dup=False)
    export_dataset(ws.store, ws.config, tmp_path / "keep", fmt="all", validation_share=0, test_share=0)
    assert _names(tmp_path / "keep") == {"li.wei", "gpt-4o-mini"}  # "keep", the default
    ws.close()

    cfg = tmp_path / "ws" / "itcollect.toml"
    text = cfg.read_text(encoding="utf-8")
    assert 'annotator_names = "keep"' in text
    cfg.write_text(text.replace('annotator_names = "keep"', 'annotator_names = "pseudonymise"'), encoding="utf-8")
    ws = Workspace(tmp_path / "ws")
    export_dataset(ws.store, ws.config, tmp_path / "p1", fmt="all", validation_share=0, test_share=0)
    key_file = tmp_path / "ws" / ".itcollect" / "pseudonym.key"
    key = key_file.read_bytes().strip()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    names = _names(tmp_path / "p1")
    assert names == {pseudonym(key, "li.wei"), pseudonym(key, "gpt-4o-mini")}
    assert all(n.startswith("ann-") and len(n) == 16 for n in names)
    blob = _everything(tmp_path / "p1")
    assert b"li.wei" not in blob and key not in blob
    # stable: the same key, the same pseudonyms
    export_dataset(ws.store, ws.config, tmp_path / "p2", fmt="hf", validation_share=0, test_share=0)
    assert _names(tmp_path / "p2") == names
    # the environment's key wins over the file: other pseudonyms
    monkeypatch.setenv("ITCOLLECT_PSEUDONYM_KEY", "team-secret")
    export_dataset(ws.store, ws.config, tmp_path / "p3", fmt="hf", validation_share=0, test_share=0)
    assert _names(tmp_path / "p3") == {pseudonym(b"team-secret", "li.wei"), pseudonym(b"team-secret", "gpt-4o-mini")}
    ws.close()
