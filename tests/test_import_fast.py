"""``import``'s fast path (worker processes, a cache of repeated texts, rows built in the workers,
bulk writes) stores exactly what the reference path (one process, every text detected as it
comes) stores: the same dialogues, turns, detected languages and meta, and the same report."""

from __future__ import annotations

import json
import sqlite3

import pytest

from itcollect import importer
from itcollect.importer import import_files
from itcollect.workspace import init_workspace

EN = ["The central bank raised interest rates again on Tuesday to curb inflation.",
      "Heavy rain flooded several roads in the north of the country overnight.",
      "The city council approved the new housing budget after a long debate.",
      "Thousands of people gathered in the capital to mark the anniversary."]
ZH = ["国务院周二发布了新的住房政策，引起市场广泛关注。", "国际油价周二大幅下跌，创下三个月来最低水平。",
      "市政府宣布将在明年扩建地铁网络，以缓解交通拥堵。"]
DE = ["Die Regierung hat am Dienstag ein neues Gesetz zur Förderung erneuerbarer Energien beschlossen.",
      "Die Preise für Strom sind im Oktober wieder deutlich gestiegen."]
FR = ["Le gouvernement a adopté mardi une nouvelle loi sur le logement.",
      "Les prix de l'électricité ont de nouveau fortement augmenté en octobre."]
FOLLOW = ["Please make it more formal.", "请让译文更自然一些。", "Make it shorter.", "Why did you use this word?"]


def _records() -> list:
    """~80 records: repeated requests (the cache), every language, metadata or none, duplicates,
    bad records in between."""
    out: list = []
    k = 0
    for src_list, req in ((EN, "Translate into Chinese: {}"), (ZH, "把这句话翻译成英文：“{}”"),
                          (DE, "Translate this German sentence into French: {}"), (EN, "Please translate:\n{}")):
        for s in src_list:
            for answer_list in (ZH, EN, DE, FR):
                k += 1
                answer = answer_list[k % len(answer_list)]
                messages = [{"role": "user", "content": req.format(s)}, {"role": "assistant", "content": answer},
                            {"role": "user", "content": FOLLOW[k % len(FOLLOW)]},
                            {"role": "assistant", "content": answer_list[(k + 1) % len(answer_list)]}]
                rec: dict = {"messages": messages, "id": f"r{k}"}
                if k % 3 == 0:
                    rec.update(src_lang="en" if src_list is EN else "zh", tgt_lang="zh")
                if k % 5 == 0:
                    rec = {"conversations": [{"from": "human" if m["role"] == "user" else "gpt", "value": m["content"]}
                                             for m in messages]}
                out.append(rec)
                if k % 11 == 0:
                    out.append("{not json")
                if k % 13 == 0:
                    out.append({"messages": [{"role": "user", "content": "only a question"}]})
                if k % 17 == 0:
                    out.append(rec)  # an exact duplicate
    return out


def _store_rows(ws) -> tuple[list, list]:
    conn = sqlite3.connect(ws.db_path)
    d = conn.execute("SELECT id, origin, annotator, source_id, source_text, src_lang, tgt_lang, instruction_lang, status,"
                     " origin_file, origin_line, meta FROM dialogues ORDER BY id").fetchall()
    t = conn.execute("SELECT dialogue_id, idx, role, content, state, author, model, lang, detected_lang,"
                     " interaction_type, finish_reason FROM turns ORDER BY dialogue_id, idx").fetchall()
    runs = conn.execute("SELECT path, format, records, imported, duplicates FROM import_runs ORDER BY id").fetchall()
    bad = conn.execute("SELECT reason, count FROM import_bad ORDER BY run_id, reason").fetchall()
    conn.close()
    return d + runs + bad, t


@pytest.mark.parametrize("layout", ["jsonl", "json"])
def test_fast_path_stores_what_the_reference_path_stores(tmp_path, monkeypatch, layout):
    records = _records()
    if layout == "jsonl":
        data = tmp_path / "dump.jsonl"
        data.write_text("".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n"
                                for r in records), encoding="utf-8")
    else:
        data = tmp_path / "dump.json"
        data.write_text(json.dumps([r for r in records if not isinstance(r, str)], ensure_ascii=False, indent=1),
                        encoding="utf-8")
    # many batches and transactions, so the worker processes, the in-flight bound and the
    # cross-batch cache are all exercised on a small file
    monkeypatch.setattr(importer, "BATCH", 7)
    monkeypatch.setattr(importer, "WRITE_BATCH", 10)
    importer._LANG_CACHES.clear()
    reports = {}
    rows = {}
    for name, kw in (("reference", {"fast": False}), ("fast", {"workers": 2}), ("fast-1", {"workers": 1})):
        ws = init_workspace(tmp_path / name)
        (report,) = import_files(ws.store, [data], **kw)
        reports[name] = (report.records, report.imported, report.duplicates, dict(report.bad), report.bad_examples)
        rows[name] = _store_rows(ws)
        ws.close()
    assert reports["fast"] == reports["reference"] == reports["fast-1"]
    records_, imported, duplicates, _bad, _examples = reports["reference"]
    assert imported > 50 and duplicates >= 3 and records_ == imported + duplicates + sum(_bad.values())
    dialogues, turns = rows["reference"]
    assert len(turns) == 4 * imported
    assert {t[8] for t in turns} == {"en", "zh", "de", "fr"}  # every language was detected
    assert rows["fast"] == rows["reference"]
    assert rows["fast-1"] == rows["reference"]


def test_fast_path_reimport_adds_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(importer, "BATCH", 5)
    data = tmp_path / "dump.jsonl"
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in _records() if not isinstance(r, str)),
                    encoding="utf-8")
    ws = init_workspace(tmp_path / "ws")
    (first,) = import_files(ws.store, [data], workers=2)
    (second,) = import_files(ws.store, [data], workers=2)
    assert first.imported > 50 and second.imported == 0
    assert second.duplicates == first.imported + first.duplicates
    assert ws.store.dialogue_counts()["total"] == first.imported
    ws.close()
