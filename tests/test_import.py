"""``itcollect import``: formats, inferred languages, provenance, bad records, idempotence."""

from __future__ import annotations

import json

import pytest

from itcollect import importer
from itcollect.importer import import_files, split_source
from itcollect.kernel.errors import InputError
from itcollect.workspace import init_workspace

from .conftest import run_cli

MESSAGES_EN = {"messages": [
    {"role": "user", "content": 'Translate into Chinese: "The central bank raised interest rates again on Tuesday."'},
    {"role": "assistant", "content": "央行周二再次上调了利率。"},
    {"role": "user", "content": "Please make it more formal."},
    {"role": "assistant", "content": "中央银行于周二再度上调利率。"}], "source": "wmt", "id": "a1"}
SHAREGPT_ZH = {"conversations": [
    {"from": "human", "value": "把这句话翻译成英文：“国务院周二发布了新的住房政策。”"},
    {"from": "gpt", "value": "The State Council issued a new housing policy on Tuesday."},
    {"from": "human", "value": "为什么用 issued 这个词？"},
    {"from": "gpt", "value": "因为“发布”指正式公布政策，issued 是新闻中常用的说法。"}]}
WITH_META = {"messages": [
    {"role": "system", "content": "You are a translator."},
    {"role": "user", "content": "Übersetze ins Französische: Die Regierung hat am Dienstag ein neues Gesetz beschlossen."},
    {"role": "assistant", "content": "Le gouvernement a adopté mardi une nouvelle loi."}],
    "src_lang": "de", "tgt_lang": "fr", "instruction_lang": "en", "model": "gpt-4o-mini"}


def _write_jsonl(path, records):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n"
                            for r in records), encoding="utf-8")
    return path


def _dialogues(store):
    return [(d, t) for d, t in store.iter_corpus()]


def test_import_jsonl_and_sharegpt(workspace, tmp_path):
    store = workspace.store
    a = _write_jsonl(tmp_path / "a.jsonl", [MESSAGES_EN, WITH_META])
    b = tmp_path / "b.json"
    b.write_text(json.dumps([SHAREGPT_ZH], ensure_ascii=False, indent=2), encoding="utf-8")
    reports = import_files(store, [a, b])
    assert [(r.format, r.records, r.imported) for r in reports] == [("jsonl", 2, 2), ("json", 1, 1)]
    got = {t[0]["content"][:12]: (d, t) for d, t in _dialogues(store)}
    assert len(got) == 3
    d, turns = got["Translate in"]
    assert (d["origin"], d["src_lang"], d["tgt_lang"], d["instruction_lang"]) == ("imported", "en", "zh", "en")
    assert d["source_text"] == "The central bank raised interest rates again on Tuesday."
    assert d["origin_file"] == str(a.resolve()) and d["origin_line"] == 1
    assert d["meta"] == {"source": "wmt", "id": "a1", "tgt_lang_from": "request"}
    assert [t["detected_lang"] for t in turns] == ["en", "zh", "en", "zh"]
    assert all(t["author"] == "imported" for t in turns)
    d, turns = got["把这句话翻译成英文：“国"]
    assert (d["src_lang"], d["tgt_lang"], d["instruction_lang"]) == ("zh", "en", "zh")
    assert d["source_text"] == "国务院周二发布了新的住房政策。"
    assert [t["role"] for t in turns] == ["user", "assistant", "user", "assistant"]
    d, turns = got["You are a tr"]
    assert (d["src_lang"], d["tgt_lang"], d["instruction_lang"]) == ("de", "fr", "en")  # metadata wins
    assert turns[0]["role"] == "system" and turns[2]["model"] == "gpt-4o-mini"
    assert store.dialogue_counts()["by_status"] == {"done": 3}


def test_reimport_adds_nothing(workspace, tmp_path):
    store = workspace.store
    a = _write_jsonl(tmp_path / "a.jsonl", [MESSAGES_EN])
    import_files(store, [a])
    # the same dialogue from another file, as ShareGPT, with other whitespace: same id
    other = {"conversations": [{"from": "human" if m["role"] == "user" else "gpt", "value": "  " + m["content"]}
                               for m in MESSAGES_EN["messages"]]}
    b = _write_jsonl(tmp_path / "b.jsonl", [other])
    r1, r2 = import_files(store, [a, b])
    assert (r1.imported, r1.duplicates, r2.imported, r2.duplicates) == (0, 1, 0, 1)
    assert store.dialogue_counts()["total"] == 1 and store.turn_count() == 4
    assert store.import_totals()["duplicates"] == 2


def test_bad_records_are_counted_never_half_imported(workspace, tmp_path):
    store = workspace.store
    bad = [
        "not json at all",
        {"text": "no messages"},
        {"messages": []},
        {"messages": [{"role": "robot", "content": "x"}, {"role": "assistant", "content": "y"}]},
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "  "}]},
        {"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]},
        {"messages": [{"role": "user", "content": "only a question"}]},
        {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"},
                      {"role": "user", "content": "unanswered"}]},
        {"messages": [{"role": "user", "content": 5}, {"role": "assistant", "content": "a"}]},
        [1, 2],
    ]
    path = _write_jsonl(tmp_path / "mixed.jsonl", [MESSAGES_EN, *bad, SHAREGPT_ZH])
    (report,) = import_files(store, [path])
    assert report.records == 12 and report.imported == 2
    assert dict(report.bad) == {"not_json": 1, "no_messages": 2, "bad_role": 1, "empty_content": 1,
                                "roles_not_alternating": 1, "no_answer": 1, "unanswered_last_turn": 1,
                                "bad_content": 1, "not_an_object": 1}
    assert report.bad_examples[0] == (2, "not_json")
    assert store.dialogue_counts()["total"] == 2 and store.turn_count() == 8  # only whole dialogues
    assert store.import_totals()["bad"]["no_messages"] == 2


@pytest.mark.parametrize("content,message,line", [
    (b"\x00\x01\x02binary", "binary file", 1),
    (b'{"messages": []}\n{"messages": [{"role": "user", "content": "caf\xe9"}]}\n', "not UTF-8", 2),
    (b"plain text, one sentence a line\n", "not JSON or JSONL", 1),
])
def test_unusable_file_changes_nothing(workspace, tmp_path, content, message, line):
    good = _write_jsonl(tmp_path / "good.jsonl", [MESSAGES_EN])
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(content)
    with pytest.raises(InputError) as exc:
        import_files(workspace.store, [good, bad])  # the good file is not imported either
    assert message in str(exc.value) and f"{bad}:{line}:" in str(exc.value)
    assert workspace.store.dialogue_counts()["total"] == 0
    assert workspace.store.import_totals()["runs"] == 0


def test_missing_file(workspace, tmp_path):
    with pytest.raises(InputError, match="no such file"):
        import_files(workspace.store, [tmp_path / "nope.jsonl"])


def test_json_array_is_streamed_across_chunks(workspace, tmp_path, monkeypatch):
    monkeypatch.setattr(importer, "_CHUNK", 37)  # force many partial reads inside records
    records = []
    for i in range(30):
        rec = json.loads(json.dumps(SHAREGPT_ZH, ensure_ascii=False))
        rec["conversations"][3]["value"] += f" ({i})"
        records.append(rec)
    path = tmp_path / "dump.json"
    path.write_text("\n" + json.dumps(records, ensure_ascii=False, indent=1), encoding="utf-8")
    (report,) = import_files(workspace.store, [path])
    assert (report.records, report.imported, dict(report.bad)) == (30, 30, {})
    lines = sorted(d["origin_line"] for d, _ in workspace.store.iter_corpus())
    text = path.read_text(encoding="utf-8").split("\n")
    assert all(text[n - 1].strip() == "{" for n in lines)  # origin_line points at the record


def test_truncated_json_array_counts_the_rest_as_bad(workspace, tmp_path):
    path = tmp_path / "cut.json"
    full = json.dumps([SHAREGPT_ZH, MESSAGES_EN], ensure_ascii=False)
    path.write_text(full[: len(full) - 40], encoding="utf-8")
    (report,) = import_files(workspace.store, [path])
    assert report.imported == 1 and report.bad["not_json"] == 1


def test_split_source():
    assert split_source('Translate into German: "The bank raised rates on Tuesday."') == (
        "The bank raised rates on Tuesday.", "Translate into German:")
    assert split_source("请翻译成英文：今天的天气很好，适合出门散步。")[0] == "今天的天气很好，适合出门散步。"
    assert split_source("Please translate:\nThe bank raised rates.")[0] == "The bank raised rates."
    assert split_source("The bank raised rates.") == ("The bank raised rates.", "")


def test_import_cli(tmp_path):
    ws = init_workspace(tmp_path / "ws")
    ws.close()
    data = _write_jsonl(tmp_path / "d.jsonl", [MESSAGES_EN, "oops", SHAREGPT_ZH])
    r = run_cli("-C", str(tmp_path / "ws"), "import", str(data))
    assert r.returncode == 0, r.stderr
    assert "3 records, 2 imported" in r.stdout and "not_json 1" in r.stdout
    bad = tmp_path / "bad.json"
    bad.write_bytes(b"\xff\xfe\x00")
    r = run_cli("-C", str(tmp_path / "ws"), "import", str(bad))
    assert r.returncode == 1
    assert r.stderr.strip().count("\n") == 0 and str(bad) in r.stderr and "Traceback" not in r.stderr
    r = run_cli("-C", str(tmp_path / "ws"), "import")
    assert r.returncode == 2


# -- the target language a first request names -----------------------------------------------------
EN_SOURCE = "The city council approved the new housing budget after a long debate on Tuesday."
ZH_SOURCE = "国务院周二发布了新的住房政策，引起市场广泛关注。"


def _sharegpt(*turns: str) -> dict:
    return {"conversations": [{"from": "human" if i % 2 == 0 else "gpt", "value": t} for i, t in enumerate(turns)]}


def _import_and_filter(workspace, tmp_path, records):
    from itcollect.filter import run_filter

    path = _write_jsonl(tmp_path / "dump.jsonl", records)
    (report,) = import_files(workspace.store, [path])
    assert report.imported == len(records)
    run_filter(workspace.store, workspace.config, near_dup=False)
    out = {}
    for d, turns in workspace.store.iter_corpus():
        out[turns[0]["content"]] = (d, workspace.store.get_verdict(d["id"]))
    return out


def test_a_named_target_holds_the_answer_to_it(workspace, tmp_path):
    copied = _sharegpt(f"Translate into Chinese: {EN_SOURCE}", EN_SOURCE)  # the source copied back
    french = {"messages": [{"role": "user", "content": "Translate into German: " + EN_SOURCE},
                           {"role": "assistant", "content": "Le conseil municipal a approuvé mardi le nouveau "
                                                            "budget du logement après un long débat."}]}
    german = _sharegpt(f"Translate this English sentence into German: {EN_SOURCE}",
                       "Der Stadtrat hat am Dienstag nach langer Debatte den neuen Wohnungshaushalt beschlossen.")
    zh_request = _sharegpt(f"把这句话译成德语：“{ZH_SOURCE}”",
                           "Der Staatsrat hat am Dienstag eine neue Wohnungspolitik veröffentlicht, die auf dem "
                           "Markt große Aufmerksamkeit erregt hat.")
    got = _import_and_filter(workspace, tmp_path, [copied, french, german, zh_request])
    d, v = got[f"Translate into Chinese: {EN_SOURCE}"]
    assert (d["src_lang"], d["tgt_lang"], d["meta"]["tgt_lang_from"]) == ("en", "zh", "request")
    assert not v["kept"] and "copies_source" in v["reasons"] and "wrong_language_answer" in v["reasons"]
    d, v = got["Translate into German: " + EN_SOURCE]
    assert (d["tgt_lang"], d["meta"]["tgt_lang_from"]) == ("de", "request")
    assert not v["kept"] and "wrong_language_answer" in v["reasons"]
    assert v["detail"]["wrong_language_answer"]["found"] == "fr"
    d, v = got[f"Translate this English sentence into German: {EN_SOURCE}"]
    assert (d["src_lang"], d["tgt_lang"], d["meta"]["tgt_lang_from"]) == ("en", "de", "request")
    assert v["kept"], v
    d, v = got[f"把这句话译成德语：“{ZH_SOURCE}”"]
    assert (d["src_lang"], d["tgt_lang"], d["instruction_lang"]) == ("zh", "de", "zh") and v["kept"], v


def test_no_named_target_the_answer_decides(workspace, tmp_path):
    plain = _sharegpt(f"Please translate:\n{ZH_SOURCE}",
                      "The State Council issued a new housing policy on Tuesday, drawing wide attention.")
    meta = {**_sharegpt(f"Translate into Chinese: {EN_SOURCE}", "Le conseil a approuvé le budget mardi soir."),
            "tgt_lang": "fr"}
    copied = _sharegpt(f"Please translate this:\n{EN_SOURCE}", EN_SOURCE)
    got = _import_and_filter(workspace, tmp_path, [plain, meta, copied])
    d, v = got[f"Please translate:\n{ZH_SOURCE}"]
    assert (d["src_lang"], d["tgt_lang"], d["meta"]["tgt_lang_from"]) == ("zh", "en", "answer") and v["kept"], v
    d, v = got[f"Translate into Chinese: {EN_SOURCE}"]  # metadata wins over the request
    assert (d["tgt_lang"], d["meta"]["tgt_lang_from"]) == ("fr", "metadata")
    # the answer's language (en) made the target, but a copy of the source is a copy whatever the languages
    d, v = got[f"Please translate this:\n{EN_SOURCE}"]
    assert (d["src_lang"], d["tgt_lang"], d["meta"]["tgt_lang_from"]) == ("en", "en", "answer")
    assert not v["kept"] and v["reasons"] == ["copies_source"]
