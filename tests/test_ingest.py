"""Ingest of every format against golden counts of data/samples (see data/README.md)."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest

from itcollect.ingest import IngestOptions, IngestSettings, ingest_paths
from itcollect.kernel.normalize import normalize_text
from itcollect.store import source_id_for

from .conftest import SAMPLES, run_cli

# file -> (format, records, kept, dropped, references stored)
GOLDEN = {
    "newstest-sample.en-zh.xml": ("wmt-xml", 25, 22, {"empty": 1, "duplicate": 1, "wrong_language": 1}, 24),
    "newstest-sample.de-en.sgm": ("sgm", 46, 42, {"non_letters": 1, "too_short": 1, "wrong_language": 1,
                                                  "duplicate": 1}, 0),
    "news.zh.txt.gz": ("txt", 50, 45, {"empty": 1, "too_short": 1, "wrong_language": 1, "duplicate": 1,
                                       "non_letters": 1}, 0),
    "pairs.en-fr.tsv": ("tsv", 34, 30, {"too_short": 1, "empty": 1, "bad_record": 1, "duplicate": 1}, 30),
    "news.fr.jsonl": ("jsonl", 47, 42, {"bad_record": 2, "wrong_language": 1, "empty": 1, "duplicate": 1}, 5),
}
TOTAL_BY_LANG = {"de": 42, "en": 52, "fr": 42, "zh": 45}


def ingest(ws, *paths, **opts):
    settings = IngestSettings.from_config(ws.config)
    return ingest_paths(ws.store, [str(p) for p in paths], settings, IngestOptions(**opts))


def one(ws, path, **opts):
    summary = ingest(ws, path, **opts)
    assert not summary.failures, summary.failures
    assert len(summary.files) == 1
    return summary.files[0]


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_sample_golden_counts(workspace, name):
    fmt, records, kept, dropped, refs = GOLDEN[name]
    report = one(workspace, SAMPLES / name)
    assert report.fmt == fmt
    assert (report.records, report.kept, report.refs) == (records, kept, refs)
    assert {r: n for r, n in report.dropped.items() if n} == dropped
    run = workspace.store.ingest_runs()[-1]
    assert run["kept"] == kept and run["lines"] == records and run["dropped"] == dropped


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_gzipped_and_plain_variants_give_the_same_counts(workspace, tmp_path, name):
    src = SAMPLES / name
    if name.endswith(".gz"):
        other = tmp_path / name[:-3]
        other.write_bytes(gzip.decompress(src.read_bytes()))
    else:
        other = tmp_path / (name + ".gz")
        other.write_bytes(gzip.compress(src.read_bytes()))
    fmt, records, kept, dropped, refs = GOLDEN[name]
    report = one(workspace, other)
    assert (report.fmt, report.records, report.kept, report.refs) == (fmt, records, kept, refs)
    assert {r: n for r, n in report.dropped.items() if n} == dropped


def test_gzip_is_detected_by_magic_bytes_not_name(workspace, tmp_path):
    disguised = tmp_path / "zhnews.txt"
    shutil.copy(SAMPLES / "news.zh.txt.gz", disguised)
    report = one(workspace, disguised, lang="zh")
    assert (report.fmt, report.kept, report.dropped["wrong_language"]) == ("txt", 45, 1)


@pytest.mark.parametrize("name,fmt", [("newstest-sample.en-zh.xml", "wmt-xml"), ("newstest-sample.de-en.sgm", "sgm"),
                                      ("news.fr.jsonl", "jsonl"), ("pairs.en-fr.tsv", "tsv")])
def test_format_sniffed_from_content_when_the_name_says_nothing(workspace, tmp_path, name, fmt):
    anonymous = tmp_path / "upload-0001"
    shutil.copy(SAMPLES / name, anonymous)
    report = one(workspace, anonymous)
    assert report.fmt == fmt
    assert report.kept == GOLDEN[name][2]


def test_plain_text_without_declared_language_keeps_each_lines_detected_language(workspace, tmp_path):
    anonymous = tmp_path / "lines"
    anonymous.write_bytes(gzip.decompress((SAMPLES / "news.zh.txt.gz").read_bytes()))
    report = one(workspace, anonymous)
    assert report.fmt == "txt"
    # nothing declared: the English line is an English source, not a wrong_language drop
    assert report.kept == 46 and report.dropped["wrong_language"] == 0
    assert workspace.store.source_counts_by_lang() == {"en": 1, "zh": 45}


def test_declared_lang_is_checked_not_trusted(workspace):
    report = one(workspace, SAMPLES / "pairs.en-fr.tsv", lang="fr")
    assert report.kept == 0
    assert report.dropped["wrong_language"] == 31  # the 30 sentences and the duplicate row (checked first)
    assert workspace.store.source_counts_by_lang() == {}


def test_format_can_be_forced(workspace, tmp_path):
    f = tmp_path / "pairs.txt"
    f.write_text("source\treference\nThe harbour reopened on Monday after the storm passed.\t"
                 "Le port a rouvert lundi après le passage de la tempête.\n", encoding="utf-8")
    as_text = one(workspace, f, lang="en")
    # as text: the header is too short and the pair is one sentence (tab -> space), no reference
    assert (as_text.fmt, as_text.kept, as_text.refs, as_text.dropped["too_short"]) == ("txt", 1, 0, 1)
    report = one(workspace, f, fmt="tsv")
    assert report.fmt == "tsv" and report.kept == 1 and report.refs == 1


def test_reingest_adds_nothing(workspace):
    first = ingest(workspace, SAMPLES)
    assert first.kept == 181 and not first.failures
    counts = workspace.store.ingest_table_counts()
    second = ingest(workspace, SAMPLES)
    assert second.kept == 0
    assert second.dropped["duplicate"] == 181 + 5
    after = workspace.store.ingest_table_counts()
    assert after["sources"] == counts["sources"] == 181
    assert after["source_refs"] == counts["source_refs"] == 59
    assert after["ingest_runs"] == counts["ingest_runs"] + 5  # the second run is recorded, with its drops
    assert workspace.store.source_counts_by_lang() == TOTAL_BY_LANG


def test_wmt_xml_references_docid_origlang_and_testsuite(workspace):
    one(workspace, SAMPLES / "newstest-sample.en-zh.xml")
    text = normalize_text("The central bank kept its benchmark interest rate unchanged on Wednesday, saying "
                          "inflation was cooling more slowly than expected.", "en")
    src = workspace.store.get_source(source_id_for(text))
    assert src["lang"] == "en" and src["docid"] == "econ-2024-001" and src["origlang"] == "en"
    assert src["seg_id"] == "1" and src["origin_file"].endswith("newstest-sample.en-zh.xml")
    assert src["origin_line"] == 7
    assert [(r["lang"], r["translator"]) for r in src["references"]] == [("zh", "A"), ("zh", "B")]
    assert src["references"][0]["text"] == "央行周三维持基准利率不变，称通胀降温速度慢于预期。"
    sci = workspace.store.get_source(source_id_for(normalize_text(
        "Both goals came in the second half after the coach made two bold substitutions.", "en")))
    assert sci["docid"] == "sci-2024-002" and sci["origlang"] == "zh" and sci["seg_id"] == "13"
    # the testsuite doc is skipped entirely, and the <hyp> is not taken as a reference
    texts = [s["text"] for s in workspace.store.iter_sources()]
    assert not any("didn't say whether" in t for t in texts)
    refs = [r["text"] for s in workspace.store.iter_sources() for r in workspace.store.get_source(s["id"])["references"]]
    assert "央行周三保持利率。" not in refs


def test_sgm_entities_docid_origlang(workspace):
    one(workspace, SAMPLES / "newstest-sample.de-en.sgm")
    by_text = {s["text"]: s for s in workspace.store.iter_sources()}
    quoted = 'Der Wirtschaftsminister sprach von einem "wichtigen Schritt" für den Klimaschutz.'
    assert quoted in by_text
    assert by_text[quoted]["docid"] == "politik-2024-07" and by_text[quoted]["origlang"] == "de"
    amp = [t for t in by_text if "Müller & Söhne" in t]
    assert len(amp) == 1 and by_text[amp[0]]["origlang"] == "en"
    assert any("'Die Lage ist ernst, aber nicht hoffnungslos.'" in t for t in by_text)
    assert not any("&quot;" in t or "&amp;" in t for t in by_text)
    assert set(s["lang"] for s in by_text.values()) == {"de"}


def test_tsv_references_take_the_language_from_the_file_name(workspace):
    one(workspace, SAMPLES / "pairs.en-fr.tsv")
    src = workspace.store.get_source(source_id_for(
        "The museum will reopen in May after a renovation that took almost four years."))
    assert src["references"] == [{"lang": "fr", "translator": "",
                                  "text": "Le musée rouvrira en mai après une rénovation qui a duré près de quatre ans."}]
    assert src["origin_line"] == 19


def test_tsv_columns_option_and_language_header(workspace, tmp_path):
    f = tmp_path / "corpus.tsv"
    f.write_text("17\tDie Preise für Strom sind im Oktober wieder deutlich gestiegen.\t"
                 "Electricity prices rose sharply again in October.\n", encoding="utf-8")
    report = one(workspace, f, columns=["-", "de", "en"])
    assert report.kept == 1 and report.refs == 1
    src = next(iter(workspace.store.iter_sources()))
    assert src["lang"] == "de"
    assert workspace.store.get_source(src["id"])["references"][0]["lang"] == "en"
    g = tmp_path / "corpus2.tsv"
    g.write_text("zh\ten\n国际油价周二大幅下跌，创下三个月来最低水平。\tOil prices fell sharply on Tuesday.\n",
                 encoding="utf-8")
    report = one(workspace, g)
    assert report.kept == 1 and report.records == 1
    zh = [s for s in workspace.store.iter_sources() if s["lang"] == "zh"]
    assert workspace.store.get_source(zh[0]["id"])["references"][0]["lang"] == "en"


def test_csv_with_quoted_fields(workspace, tmp_path):
    f = tmp_path / "pairs.csv"
    f.write_text('en,fr\n"Prices rose, and wages fell, in the third quarter of the year.",'
                 '"Les prix ont augmenté, et les salaires ont baissé, au troisième trimestre."\n'
                 '"The mayor said the bridge would reopen in spring.",too,many\n', encoding="utf-8")
    report = one(workspace, f)
    assert report.fmt == "csv" and report.kept == 1 and report.dropped["bad_record"] == 1
    assert report.bad_examples == [(3, "expected 2 columns, found 3")]
    src = next(iter(workspace.store.iter_sources()))
    assert src["text"] == "Prices rose, and wages fell, in the third quarter of the year." and src["lang"] == "en"


def test_jsonl_field_options_and_translation_objects(workspace, tmp_path):
    f = tmp_path / "custom.jsonl"
    f.write_text(json.dumps({"body": "The ministry said exports to Asia had doubled since last spring.",
                             "fr_ref": "Le ministère a indiqué que les exportations vers l'Asie avaient doublé."}) + "\n",
                 encoding="utf-8")
    report = one(workspace, f, text_field="body", ref_field="fr_ref", ref_lang="fr")
    assert report.kept == 1 and report.refs == 1
    g = tmp_path / "hf.jsonl"
    g.write_text(json.dumps({"translation": {"de": "Der Hafen wurde nach dem Sturm am Montag wieder geöffnet.",
                                             "en": "The port reopened on Monday after the storm."}}) + "\n",
                 encoding="utf-8")
    report = one(workspace, g, lang="de")
    assert report.kept == 1 and report.refs == 1
    failed = ingest(workspace, g).failures  # every record unusable: the file fails, naming the cause
    assert len(failed) == 1 and "source language is unknown" in str(failed[0]) and ":1:" in str(failed[0])


def test_directory_argument_skips_readme_init_and_hidden_files(workspace, tmp_path):
    d = tmp_path / "in"
    (d / "sub").mkdir(parents=True)
    (d / "README.md").write_text("# notes\n")
    (d / "__init__.py").write_text("")
    (d / ".hidden.txt").write_text("The hidden file should never be read by ingest at all.\n")
    (d / "notes.md").write_text("Not a sentence file, even though it has plenty of words in it.\n")
    (d / "sub" / "b.en.txt").write_text("The second file is read after the first one in sorted order.\n")
    (d / "a.en.txt").write_text("The first file holds exactly one sentence for this test.\n")
    summary = ingest(workspace, d)
    assert [Path(f.path).name for f in summary.files] == ["a.en.txt", "b.en.txt"]
    assert summary.kept == 2


def test_cli_ingest_samples_folder_and_stats(tmp_path):
    assert run_cli("init", str(tmp_path / "ws")).returncode == 0
    res = run_cli("-C", str(tmp_path / "ws"), "ingest", str(SAMPLES))
    assert res.returncode == 0, res.stderr
    assert "total" in res.stdout and "wrong_language" in res.stdout and "181" in res.stdout
    stats = json.loads(run_cli("-C", str(tmp_path / "ws"), "stats", "--json").stdout)
    assert stats["sources"] == {"total": 181, "by_lang": TOTAL_BY_LANG}
    assert stats["ingest"]["kept"] == 181
    assert stats["ingest"]["dropped"] == {"bad_record": 3, "duplicate": 5, "empty": 4, "non_letters": 2,
                                          "too_short": 3, "wrong_language": 4}
    assert len(stats["ingest"]["files"]) == 5


def test_cli_relative_paths_resolve_from_cwd_then_workspace(tmp_path):
    ws = tmp_path / "ws"
    assert run_cli("init", str(ws)).returncode == 0
    (ws / "inbox.en.txt").write_text("The committee will publish its final report in the autumn.\n")
    res = run_cli("-C", "ws", "ingest", "inbox.en.txt", "--json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["kept"] == 1


def test_langdetect_backend_from_the_config(tmp_path):
    from itcollect.workspace import Workspace, init_workspace

    init_workspace(tmp_path / "ws").close()
    cfg = tmp_path / "ws" / "itcollect.toml"
    cfg.write_text(cfg.read_text().replace('langid_backend = "lingua"', 'langid_backend = "langdetect"'))
    with Workspace(tmp_path / "ws") as ws:
        assert IngestSettings.from_config(ws.config).backend == "langdetect"
        report = one(ws, SAMPLES / "news.fr.jsonl")
        # full news sentences are easy for langdetect too: the same golden counts
        assert (report.kept, report.dropped["wrong_language"]) == (42, 1)


def test_language_codes_are_normalised(workspace, tmp_path):
    f = tmp_path / "wmt.xml"
    f.write_text('<dataset id="t"><collection id="c"><doc id="d1" origlang="zh">'
                 '<src lang="zh-CN"><p><seg id="1">国际油价周二大幅下跌，创下三个月来最低水平。</seg></p></src>'
                 '<ref lang="EN" translator="x"><p><seg id="1">Oil prices fell sharply on Tuesday.</seg></p></ref>'
                 '</doc></collection></dataset>', encoding="utf-8")
    report = one(workspace, f)
    assert report.kept == 1
    src = next(iter(workspace.store.iter_sources()))
    assert src["lang"] == "zh"
    assert workspace.store.get_source(src["id"])["references"][0]["lang"] == "en"


SENTENCES_EN = [
    "The central bank raised its interest rate by a quarter point on Thursday.",
    "Heavy rain flooded several roads in the north of the country overnight.",
    "The company said its profits had fallen for the third quarter in a row.",
    "Thousands of people gathered in the capital to mark the anniversary.",
]


@pytest.mark.parametrize("layout", ["pretty", "one_line", "gzip"])
def test_json_array_of_strings_and_objects(workspace, tmp_path, layout):
    items = [SENTENCES_EN[0], {"text": SENTENCES_EN[1], "de": None}, {"text": SENTENCES_EN[2],
             "reference": "Das Unternehmen meldete den dritten Gewinnrückgang in Folge.", "ref_lang": "de"},
             SENTENCES_EN[3], 42, ""]
    # one line of ~2 MB (json.dump of a list): far past the reader's 1 MiB chunk and line limit
    filler = [{"text": f"Officials counted {i} ballots in the district before noon on Sunday."} for i in range(25_000)]
    text = json.dumps(items + filler, ensure_ascii=False, indent=2 if layout == "pretty" else None)
    f = tmp_path / ("sentences.en.json.gz" if layout == "gzip" else "sentences.en.json")
    if layout == "gzip":
        f.write_bytes(gzip.compress(text.encode("utf-8")))
    else:
        f.write_text(text, encoding="utf-8")
    report = one(workspace, f)
    assert report.records == len(items) + len(filler)
    assert report.dropped["bad_record"] == 1 and report.dropped["empty"] == 1  # the 42 and the ""
    assert report.kept == 4 + len(filler) and report.refs == 1
    assert workspace.store.get_source(source_id_for(normalize_text(SENTENCES_EN[3]))) is not None
    if layout == "pretty":  # the line of the element that is not a sentence
        assert report.bad_examples == [(text[:text.index("42")].count("\n") + 1, "a JSON int, not an object")]


def test_truncated_json_array_keeps_what_came_before(workspace, tmp_path):
    f = tmp_path / "cut.json"
    f.write_text(json.dumps(SENTENCES_EN, indent=1)[:-40], encoding="utf-8")  # cut inside the last string
    report = one(workspace, f, lang="en")
    assert report.kept == 3 and report.dropped["bad_record"] == 1
    assert "invalid JSON inside the array" in report.bad_examples[0][1]
    g = tmp_path / "open.json"
    g.write_text(json.dumps(SENTENCES_EN[:2])[:-1] + ",\n", encoding="utf-8")  # no closing bracket
    report = one(workspace, g, lang="en")
    assert report.kept == 0 and report.dropped["duplicate"] == 2 and report.bad_examples[0][1].startswith(
        "the JSON array ends early")


def test_json_array_with_invalid_utf8_is_one_clear_error(tmp_path):
    r = run_cli("init", str(tmp_path / "ws"))
    assert r.returncode == 0
    f = tmp_path / "bad.en.json"
    f.write_bytes(b'["' + SENTENCES_EN[0].encode() + b'", "caf\xe9 au lait and more words here"]')
    r = run_cli("-C", str(tmp_path / "ws"), "ingest", str(f))
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "bad.en.json" in r.stderr and "not valid UTF-8" in r.stderr


# -- in-file language attributes that are no declaration (srclang="any") ---------------------------
ZH_LINES = ["国际油价周二大幅下跌，创下三个月来最低水平。", "国务院周二发布了新的住房政策，引起市场广泛关注。"]
EN_LINES = ["The harbour reopened on Monday after the storm had passed.",
            "The city council approved the new budget after a long debate."]


def _sgm(srclang: str, docs: list[tuple[str | None, list[str]]]) -> str:
    out = [f'<srcset setid="newstest" srclang="{srclang}">']
    for k, (origlang, lines) in enumerate(docs):
        attr = f' origlang="{origlang}"' if origlang is not None else ""
        out.append(f'<doc sysid="ref" docid="d{k}" genre="news"{attr}>')
        out += [f'<seg id="{i + 1}">{line}</seg>' for i, line in enumerate(lines)]
        out.append("</doc>")
    return "\n".join(out + ["</srcset>"]) + "\n"


def test_sgm_srclang_any_falls_back_to_each_docs_origlang(workspace, tmp_path):
    f = tmp_path / "testset.sgm"  # the name says nothing about the language
    f.write_text(_sgm("any", [("zh", ZH_LINES), ("en", EN_LINES)]), encoding="utf-8")
    report = one(workspace, f)
    assert (report.kept, report.dropped["wrong_language"]) == (4, 0)
    assert workspace.store.source_counts_by_lang() == {"en": 2, "zh": 2}
    assert not report.warnings


def test_sgm_origlang_is_checked_not_trusted(workspace, tmp_path):
    f = tmp_path / "testset.sgm"
    f.write_text(_sgm("any", [("zh", ZH_LINES + [EN_LINES[0]]), ("en", EN_LINES[1:])]), encoding="utf-8")
    report = one(workspace, f)
    assert (report.kept, report.dropped["wrong_language"]) == (3, 1)


def test_sgm_srclang_any_prefers_the_file_name_over_origlang(workspace, tmp_path):
    # an older WMT source file: all English, half of it translated from German originals
    f = tmp_path / "newstest2017-ende-src.en.sgm"
    f.write_text(_sgm("any", [("de", EN_LINES[:1]), ("en", EN_LINES[1:])]), encoding="utf-8")
    report = one(workspace, f)
    assert (report.kept, report.dropped["wrong_language"]) == (2, 0)
    assert workspace.store.source_counts_by_lang() == {"en": 2}


def test_sgm_nothing_declared_means_detection(workspace, tmp_path):
    f = tmp_path / "testset.sgm"
    f.write_text(_sgm("any", [(None, ZH_LINES), ("und", EN_LINES)]), encoding="utf-8")
    report = one(workspace, f)
    assert (report.kept, report.dropped["wrong_language"]) == (4, 0)
    assert workspace.store.source_counts_by_lang() == {"en": 2, "zh": 2}


def test_sgm_language_codes_are_normalised_not_cut(workspace, tmp_path):
    f = tmp_path / "testset.sgm"
    f.write_text(_sgm("eng", [(None, EN_LINES)]), encoding="utf-8")  # ISO 639-2, not "en" + "g"
    assert one(workspace, f).kept == 2
    g = tmp_path / "testset2.sgm"
    g.write_text(_sgm("chi", [(None, ZH_LINES)]), encoding="utf-8")  # was cut to "ch": every line dropped
    assert one(workspace, g).kept == 2
    h = tmp_path / "testset3.sgm"
    h.write_text(_sgm("ger", [(None, EN_LINES)]), encoding="utf-8")  # German declared, English lines
    assert one(workspace, h).dropped["wrong_language"] == 2


def test_a_language_outside_the_workspace_is_still_a_declaration(workspace, tmp_path):
    # srclang="cs": the lines are Czech; detection among en/zh/de/fr would call them something else
    f = tmp_path / "testset.sgm"
    f.write_text(_sgm("cs", [("cs", ["Vláda ve středu schválila nový zákon o podpoře obnovitelných zdrojů.",
                                     "Ceny elektřiny v říjnu opět výrazně vzrostly podle statistického úřadu."])]),
                 encoding="utf-8")
    report = one(workspace, f)
    assert (report.kept, report.dropped["wrong_language"]) == (0, 2)
    assert "'cs'" in report.warnings[0] and "srclang" in report.warnings[0]


def test_wmt_xml_src_lang_any_falls_back_to_origlang(workspace, tmp_path):
    f = tmp_path / "testset.xml"
    docs = "".join(f'<doc id="d{k}" origlang="{lang}"><src lang="any"><p>'
                   + "".join(f'<seg id="{i + 1}">{s}</seg>' for i, s in enumerate(lines)) + "</p></src></doc>"
                   for k, (lang, lines) in enumerate([("zh", ZH_LINES), ("en", EN_LINES)]))
    f.write_text(f'<dataset id="t"><collection id="general">{docs}</collection></dataset>', encoding="utf-8")
    report = one(workspace, f)
    assert (report.kept, report.dropped["wrong_language"]) == (4, 0)
    assert workspace.store.source_counts_by_lang() == {"en": 2, "zh": 2}


def test_jsonl_lang_field_that_is_no_language_code(workspace, tmp_path):
    f = tmp_path / "lines.jsonl"
    f.write_text("".join(json.dumps({"text": s, "lang": "mul"}, ensure_ascii=False) + "\n"
                         for s in ZH_LINES + EN_LINES), encoding="utf-8")
    report = one(workspace, f)
    assert report.kept == 4 and workspace.store.source_counts_by_lang() == {"en": 2, "zh": 2}


def test_every_record_dropped_for_one_reason_warns_with_the_likely_cause(tmp_path):
    assert run_cli("init", str(tmp_path / "ws")).returncode == 0
    f = tmp_path / "headlines.de.txt"  # the name declares German; the lines are English
    f.write_text("\n".join(EN_LINES) + "\n", encoding="utf-8")
    res = run_cli("-C", str(tmp_path / "ws"), "ingest", str(f))
    assert res.returncode == 0, res.stderr
    warning = [line for line in res.stderr.splitlines() if line.startswith("itcollect: warning:")]
    assert len(warning) == 1 and str(f) in warning[0]
    assert "all 2 records" in warning[0] and "wrong_language" in warning[0]
    assert "'de'" in warning[0] and "file name" in warning[0] and "--lang" in warning[0]
    # --json: stdout stays one JSON document, the warning goes to stderr and into the file's entry
    res = run_cli("-C", str(tmp_path / "ws"), "ingest", str(f), "--json")
    assert res.returncode == 0
    doc = json.loads(res.stdout)
    assert doc["files"][0]["warnings"] and "wrong_language" in doc["files"][0]["warnings"][0]
    assert "itcollect: warning:" in res.stderr
    # a file ingested again: every record a duplicate, said so
    g = tmp_path / "again.en.txt"
    g.write_text("\n".join(EN_LINES) + "\n", encoding="utf-8")
    assert run_cli("-C", str(tmp_path / "ws"), "ingest", str(g)).returncode == 0
    res = run_cli("-C", str(tmp_path / "ws"), "ingest", str(g))
    assert res.returncode == 0 and "duplicate" in res.stderr and "already" in res.stderr
    # a file with kept records or mixed reasons: no warning
    h = tmp_path / "mixed.en.txt"
    h.write_text(EN_LINES[0] + "\nShort line.\n" + ZH_LINES[0] + "\n", encoding="utf-8")
    res = run_cli("-C", str(tmp_path / "ws"), "ingest", str(h))
    assert res.returncode == 0 and "warning" not in res.stderr


def test_a_new_source_format_is_one_reader_and_one_registry_line(tmp_path, monkeypatch):
    """Readers share one signature and are found through READERS: a registered format is chosen
    by its file ending and its records go through the same checks as any other's."""
    from itcollect.ingest import IngestOptions, IngestSettings, ingest_paths
    from itcollect.ingest import readers as R
    from itcollect.workspace import init_workspace

    def read_pipe(f, opts, stats):  # "a | b" lines: source | reference
        for lineno, text in f.lines():
            src, _, ref = (text or "").partition("|")
            yield R.Record(lineno, src.strip(), refs=[R.Ref(ref.strip(), opts.ref_lang)] if ref.strip() else [])

    monkeypatch.setitem(R.READERS, "pipe", R.Reader(read_pipe, (".pipe",)))
    monkeypatch.setitem(R._EXTENSIONS, ".pipe", "pipe")
    path = tmp_path / "news.en-de.pipe"
    path.write_text("The parliament approved the new budget on Monday. | Das Parlament billigte am Montag den Haushalt.\n"
                    "\n", encoding="utf-8")
    ws = init_workspace(tmp_path / "ws")
    try:
        summary = ingest_paths(ws.store, [str(path)], IngestSettings.from_config(ws.config), IngestOptions())
        report = summary.files[0]
        assert report.fmt == "pipe" and report.kept == 1 and dict(+report.dropped) == {"empty": 1}
        (source,) = ws.store.iter_sources()
        assert source["lang"] == "en" and source["text"].startswith("The parliament")
        assert [(r["lang"], r["text"][:13]) for r in ws.store.get_source(source["id"])["references"]] == \
            [("de", "Das Parlament")]
    finally:
        ws.close()
