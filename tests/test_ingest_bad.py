"""Bad input: each case is either a file-level error (exit 1, store unchanged for that file) or a
counted drop, as README "ingest" documents."""

from __future__ import annotations

import gzip
import json
import tracemalloc

import pytest

from itcollect.ingest import IngestOptions, IngestSettings, ingest_paths

from .conftest import SAMPLES, run_cli


def ingest(ws, *paths, **opts):
    return ingest_paths(ws.store, [str(p) for p in paths], IngestSettings.from_config(ws.config),
                        IngestOptions(**opts))


def good_lines(n: int) -> str:
    return "".join(f"The council approved plan number {i} for the new bridge over the river.\n" for i in range(n))


def failure(ws, path, **opts) -> str:
    before = ws.store.ingest_table_counts()
    summary = ingest(ws, path, **opts)
    assert not summary.files and len(summary.failures) == 1
    assert ws.store.ingest_table_counts() == before  # the failed file left nothing behind
    return summary.failures[0].format()


def test_invalid_utf8_names_file_and_line_and_rolls_back_inserted_batches(workspace, tmp_path):
    f = tmp_path / "mixed.en.txt"
    # more good lines than one batch, so rows were inserted before the bad byte is met
    f.write_bytes(good_lines(2500).encode() + b"Caf\xe9 prices rose again in the city centre this week.\n")
    one_ok = tmp_path / "ok.en.txt"
    one_ok.write_text(good_lines(3))
    assert ingest(workspace, one_ok).kept == 3
    msg = failure(workspace, f)
    assert msg.startswith(f"{f}:2501: not valid UTF-8 (byte 0xe9 at column 4)")
    assert sum(workspace.store.source_counts_by_lang().values()) == 3


def test_binary_file(workspace, tmp_path):
    f = tmp_path / "image.txt"
    f.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    assert "binary file" in failure(workspace, f)


def test_utf16_file_gets_a_specific_hint(workspace, tmp_path):
    f = tmp_path / "wide.txt"
    f.write_bytes("The council approved the new budget on Tuesday.\n".encode("utf-16"))
    assert "UTF-16" in failure(workspace, f)


@pytest.mark.parametrize("content", [b"", gzip.compress(b"", mtime=0)], ids=["empty", "empty-gzip"])
def test_empty_file(workspace, tmp_path, content):
    f = tmp_path / ("empty.txt.gz" if content else "empty.txt")
    f.write_bytes(content)
    assert "file is empty" in failure(workspace, f)


def test_truncated_gzip(workspace, tmp_path):
    data = gzip.compress(good_lines(4000).encode())
    f = tmp_path / "cut.en.txt.gz"
    f.write_bytes(data[: len(data) // 2])
    msg = failure(workspace, f)
    assert msg.startswith(str(f)) and "truncated or corrupt gzip data after line" in msg


def test_missing_file_fails_but_other_files_are_ingested(workspace, tmp_path):
    ok = tmp_path / "ok.en.txt"
    ok.write_text(good_lines(2))
    summary = ingest(workspace, tmp_path / "nope.txt", ok)
    assert [f.kept for f in summary.files] == [2]
    assert [e.format() for e in summary.failures] == [f"{tmp_path / 'nope.txt'}: no such file"]


def test_twenty_megabyte_single_line_is_a_counted_too_long_with_bounded_memory(workspace, tmp_path):
    f = tmp_path / "huge.en.txt"
    with open(f, "wb") as out:
        out.write(b"The first line is an ordinary sentence about the local elections.\n")
        out.write(b"word " * (4 * 1024 * 1024))  # 20 MiB, no newline for a long while
        out.write(b"\nThe last line is another ordinary sentence about the harvest this year.\n")
    tracemalloc.start()
    try:
        summary = ingest(workspace, f)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    report = summary.files[0]
    assert (report.records, report.kept, report.dropped["too_long"]) == (3, 2, 1)
    assert peak < 8 * 1024 * 1024  # read in 1 MiB pieces, never held whole


def test_twenty_megabyte_line_as_the_whole_file(workspace, tmp_path):
    f = tmp_path / "one.jsonl"
    f.write_bytes(b'{"text": "' + b"x" * (20 * 1024 * 1024) + b'"}')
    report = ingest(workspace, f).files[0]
    assert (report.records, report.kept) == (1, 0)
    assert {r: n for r, n in report.dropped.items() if n} == {"too_long": 1}


def test_broken_json_on_line_n_is_a_counted_bad_record(workspace, tmp_path):
    f = tmp_path / "news.jsonl"
    lines = [json.dumps({"text": f"Le conseil municipal a voté le budget numéro {i} pour la ville."}) for i in range(5)]
    lines.insert(3, '{"text": "Le maire a démissionné mardi soir, selon la préfecture", ')
    f.write_text("\n".join(lines) + "\n", encoding="utf-8")
    report = ingest(workspace, f).files[0]
    assert report.kept == 5 and report.dropped["bad_record"] == 1
    assert report.bad_examples[0][0] == 4 and report.bad_examples[0][1].startswith("invalid JSON")


def test_tsv_wrong_column_count_is_a_counted_bad_record(workspace, tmp_path):
    f = tmp_path / "pairs.en-de.tsv"
    f.write_text("source\treference\n"
                 "The river burst its banks after days of rain.\tDer Fluss trat nach tagelangem Regen über die Ufer.\n"
                 "The bridge stays closed until further notice.\n"
                 "Schools will reopen on Monday, officials said.\tDie Schulen öffnen am Montag.\textra\n",
                 encoding="utf-8")
    report = ingest(workspace, f).files[0]
    assert report.kept == 1 and report.dropped["bad_record"] == 2
    assert report.bad_examples == [(3, "expected 2 columns, found 1"), (4, "expected 2 columns, found 3")]


def test_file_where_every_record_is_malformed_is_unusable(workspace, tmp_path):
    f = tmp_path / "notjson.jsonl"
    f.write_text("this is not json\nneither is this\n\n")
    msg = failure(workspace, f)
    assert msg.startswith(f"{f}:1: no usable records")


def test_malformed_xml_names_the_line(workspace, tmp_path):
    good = (SAMPLES / "newstest-sample.en-zh.xml").read_text(encoding="utf-8").splitlines()
    good[10] = good[10].replace("</seg>", "</sag>")
    f = tmp_path / "broken.xml"
    f.write_text("\n".join(good), encoding="utf-8")
    msg = failure(workspace, f)
    assert msg.startswith(f"{f}:11: malformed XML: mismatched tag")


def test_unclosed_sgm_seg_and_stray_text_are_bad_records(workspace, tmp_path):
    f = tmp_path / "x.sgm"
    f.write_text('<srcset srclang="en">\n<doc docid="d1">\n<seg id="1">The port reopened on Monday after the '
                 'storm.</seg>\n<seg id="2">The second segment never closes\nstray text\n'
                 '<hl><seg id="3">Two segments share this line today.</seg> <seg id="4">The second one is here '
                 'as well.</seg></hl>\n</doc>\n</srcset>\n')
    report = ingest(workspace, f).files[0]
    assert report.kept == 3 and report.dropped["bad_record"] == 2
    assert [ln for ln, _ in report.bad_examples] == [4, 5]


def test_cli_exit_codes_and_one_line_errors(tmp_path):
    ws = tmp_path / "ws"
    assert run_cli("init", str(ws)).returncode == 0
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"A perfectly fine first line about the weather today.\n\xff\xfe\n")
    ok = tmp_path / "ok.en.txt"
    ok.write_text(good_lines(2))
    res = run_cli("-C", str(ws), "ingest", str(bad), str(tmp_path / "missing.txt"), str(ok))
    assert res.returncode == 1
    errors = res.stderr.strip().splitlines()
    assert errors == [f"itcollect: error: {bad}:2: not valid UTF-8 (byte 0xff at column 1); convert the file to UTF-8",
                      f"itcollect: error: {tmp_path / 'missing.txt'}: no such file"]
    assert "Traceback" not in res.stderr
    assert "ok.en.txt" in res.stdout  # the good file was ingested and reported
    stats = json.loads(run_cli("-C", str(ws), "stats", "--json").stdout)
    assert stats["sources"]["total"] == 2 and len(stats["ingest"]["files"]) == 1
    usage = run_cli("-C", str(ws), "ingest", "--format", "docx", str(ok))
    assert usage.returncode == 2
    nothing = run_cli("-C", str(ws), "ingest")
    assert nothing.returncode == 2


def test_columns_option_naming_more_columns_than_the_file_has(workspace, tmp_path):
    f = tmp_path / "one.tsv"
    f.write_text("The harbour reopened on Monday after the storm passed.\n")
    assert "--columns names 2 columns but the file has 1" in failure(workspace, f, columns=["source", "reference"])


def test_memory_does_not_grow_with_the_number_of_lines(workspace, tmp_path):
    """Streaming: the peak of Python allocations while ingesting 12,000 lines is about that of
    3,000 lines (one batch at a time), not four times as much."""
    settings = IngestSettings.from_config(workspace.config)
    warm = tmp_path / "warm.en.txt"
    warm.write_text(good_lines(50))
    ingest_paths(workspace.store, [str(warm)], settings, IngestOptions())  # imports, caches, models
    peaks = {}
    for n in (3000, 12000):
        f = tmp_path / f"n{n}.en.txt"
        f.write_text("".join(f"Plan {n}-{i} for the new bridge over the river was approved by the council.\n"
                             for i in range(n)))
        tracemalloc.start()
        try:
            summary = ingest_paths(workspace.store, [str(f)], settings, IngestOptions())
            peaks[n] = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert summary.kept == n
    assert peaks[12000] < 1.5 * peaks[3000] + 512 * 1024, peaks


def _spawn_ingest(root, path):
    import os
    import subprocess
    import sys

    from .conftest import REPO

    env = dict(os.environ, ITCOLLECT_PROGRESS="0")
    return subprocess.Popen([sys.executable, "-m", "itcollect", "-C", str(root), "ingest", str(path)],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_scratch(root, proc, timeout: float = 120.0):
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        found = list(root.glob(".itcollect-ingest-*.tmp"))
        if found:
            return found[0]
        time.sleep(0.01)
    raise AssertionError(f"ingest never staged its file: {proc.communicate()}")


def test_other_writers_are_not_locked_out_while_a_file_is_ingested(workspace, tmp_path):
    """The file's rows are staged outside the store's write lock: a writer that waits at most
    5 s for the lock (a running simulate, an annotator) writes while the ingest is still reading."""
    import sqlite3

    from itcollect.store.core import utcnow

    f = tmp_path / "long.en.txt"
    f.write_text("".join(f"The council approved plan {i} for the new bridge across the wide river.\n"
                         for i in range(60_000)))
    root = workspace.root
    before = workspace.store.ingest_table_counts()
    proc = _spawn_ingest(root, f)
    scratch = _wait_for_scratch(root, proc)
    seen = utcnow()
    other = sqlite3.connect(str(root / "itcollect.db"), timeout=5, isolation_level=None)
    for _ in range(3):
        other.execute("BEGIN IMMEDIATE")  # would wait for the whole file before
        other.execute("ROLLBACK")
    other.close()
    assert scratch.exists() and proc.poll() is None  # the ingest was still staging meanwhile
    assert workspace.store.ingest_table_counts() == before  # and nothing of it is visible yet
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert workspace.store.ingest_table_counts()["sources"] == before["sources"] + 60_000
    run = workspace.store.ingest_runs()[-1]  # started when the file did, finished at the merge
    assert run["started_at"] <= seen < run["finished_at"]
    assert not list(root.glob(".itcollect-ingest-*.tmp"))


def test_killed_ingest_leaves_the_store_unchanged_and_its_scratch_file_is_removed_next_time(workspace, tmp_path):
    import os
    import signal

    f = tmp_path / "long.en.txt"
    f.write_text(good_lines(60_000))
    root = workspace.root
    before = workspace.store.ingest_table_counts()
    proc = _spawn_ingest(root, f)
    scratch = _wait_for_scratch(root, proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    assert scratch.exists() and workspace.store.ingest_table_counts() == before
    small = tmp_path / "small.en.txt"
    small.write_text(good_lines(5))
    assert ingest(workspace, small).files[0].kept == 5
    assert not scratch.exists()
    assert workspace.store.ingest_table_counts()["sources"] == before["sources"] + 5
