"""Proof that a refactor changed no behaviour: build a fixed workspace, digest what it produced.

    python benchmarks/check_identical.py --out before.json          # on the old commit
    python benchmarks/check_identical.py --out after.json           # on the new one
    python benchmarks/check_identical.py --compare before.json after.json

The workspace is built the same way every time, through the real CLI and the loopback OpenAI
server of the test suite (tests/fakeserver.py with the deterministic responder of
tests/responders.py): ``ingest`` of the bundled samples and a parallel corpus with references,
``import`` of the demo's hand-written dialogues and of 1,500 generated ones (the generator of
bench_export.py, with duplicates, refusals and copied sources), ``plan`` + ``simulate`` of 48
specs, two scripted human ``session`` s, ``plan`` + ``simulate --batch-api`` of 16 more (the loopback
Batch API of tests/fake_batch.py), ``judge`` online (the responder's judgements, one in six first
replies unreadable so the re-ask runs, some re-asks unreadable too) and ``judge --batch-api
--rejudge``, then ``filter`` twice (default thresholds; other thresholds with chrF and a lower
near-duplicate threshold) and ``export --format all``.

The digest holds, per dialogue (keyed by its spec for simulated and human dialogues, whose ids
are random, and by its id for imports, whose ids are content hashes): status, every turn
(content, state, language, type, parameters without the sample-independent volatile fields,
warnings), every judgement row (both generations), and both filter runs' verdicts (reasons, details,
cluster); and the exported Parquet
rows, ShareGPT files, dataset_info.json and card with ids mapped the same way and timestamps
dropped. It reads the SQLite file directly, not through the store's API: the API is what a
refactor may change, the tables are what must stay the same.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

VOLATILE_PARAMS = ()  # turn params hold no timestamps; kept as a hook should one appear
VOLATILE_COLUMNS = {"created_at", "turn_created_at", "filter_run_id"}
#: export columns a change added (``--drop-columns``): left out of the digest, so that the files of a
#: build with more columns can be compared with a digest made before they existed
DROPPED_COLUMNS: set[str] = set()


def _cli(*args: str, cwd: Path, input: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, ITCOLLECT_PROGRESS="0", OPENAI_API_KEY="sk-test")
    env.pop("OPENAI_BASE_URL", None)
    proc = subprocess.run([sys.executable, "-m", "itcollect", *args], cwd=cwd, env=env, input=input,
                          capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise SystemExit(f"itcollect {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def judged_responder(body: dict) -> str:
    """tests/responders.py's answers, except that one judge reply in six (by the answer judged) is
    unreadable at first, and one re-ask in three of those again: the re-ask and ``unparsed`` paths."""
    from tests.responders import JUDGE_ROLE, judge_item, responder

    messages = body.get("messages") or []
    if messages and messages[0]["role"] == "system" and messages[0]["content"].startswith(JUDGE_ROLE):
        item = judge_item(body)
        h = int(hashlib.sha256(item["answer"].encode()).hexdigest()[:8], 16)
        if h % 6 == 0 and (not item["reask"] or h % 18 == 0):
            return "I would rate this answer highly, but I cannot say more."
    return responder(body)


def build(workdir: Path) -> Path:
    from benchmarks.bench_export import generate
    from itcollect.workspace import Workspace
    from tests.fake_batch import FakeBatchAPI
    from tests.fakeserver import FakeOpenAI
    from tests.responders import fill_workspace_sources

    sources_ws = workdir / "ingested"  # ingest alone: the responder below knows only its own corpus
    _cli("init", str(sources_ws), cwd=workdir)
    _cli("-C", str(sources_ws), "ingest", str(REPO / "data" / "samples"), cwd=workdir)
    ws = workdir / "ws"
    _cli("init", str(ws), cwd=workdir)
    w = Workspace(ws)
    fill_workspace_sources(w.store, langs=("en", "zh", "de", "fr"))
    w.close()
    generated = workdir / "generated.jsonl"
    generate(generated, 1500, seed=11)
    _cli("-C", str(ws), "import", str(REPO / "itcollect" / "demo_dialogues.jsonl"), str(generated), cwd=workdir)
    _cli("-C", str(ws), "plan", "--dialogues", "48", "--seed", "7", cwd=workdir)
    server = FakeOpenAI(extra_routes=FakeBatchAPI().install).start()
    server.responder = judged_responder
    try:
        # two human sessions first (they take the lowest specs), then simulate the rest
        script = "\n".join(["request Please translate this sentence, thank you.", "accept",
                             "request Could you make it a little more formal?", "edit", "A hand-made version.",
                             ".", "accept because I rewrote it", "finish",
                             "request 请翻译这句话。", "regenerate", "accept", "flag odd source", "finish", "quit"])
        r = _cli("-C", str(ws), "session", "--annotator", "ann.one", "--base-url", server.base_url, "--model",
                 "fake-model", cwd=workdir, input=script + "\n")
        (workdir / "session.log").write_text(r.stdout, encoding="utf-8")
        _cli("-C", str(ws), "simulate", "--base-url", server.base_url, "--model", "fake-model", "--concurrency",
             "4", cwd=workdir)
        cfg = ws / "itcollect.toml"
        cfg.write_text(cfg.read_text(encoding="utf-8").replace("poll_interval_s = 30.0", "poll_interval_s = 0.01"),
                       encoding="utf-8")
        _cli("-C", str(ws), "plan", "--dialogues", "16", "--seed", "8", cwd=workdir)
        _cli("-C", str(ws), "simulate", "--batch-api", "--base-url", server.base_url, "--model", "fake-model",
             cwd=workdir)
        judge = ["-C", str(ws), "judge", "--base-url", server.base_url, "--model", "judge-model"]
        _cli(*judge, "--concurrency", "8", cwd=workdir)
        (workdir / "judged-online.json").write_text(json.dumps(judgement_digest(ws)))
        _cli(*judge, "--batch-api", "--rejudge", cwd=workdir)
    finally:
        server.stop()
    return ws


def _canonical_ids(db: sqlite3.Connection) -> dict[str, str]:
    out = {}
    for did, spec_id, origin in db.execute("SELECT id, spec_id, origin FROM dialogues"):
        out[did] = f"{origin}:spec{spec_id}" if spec_id is not None else did
    return out


def verdict_digest(ws: Path) -> list:
    """The verdicts of the latest filter run (the store keeps one verdict per dialogue)."""
    db = sqlite3.connect(ws / "itcollect.db")
    ids = _canonical_ids(db)
    rows = {ids[d]: [kept, reasons, detail, ids.get(cluster, cluster)] for d, kept, reasons, detail, cluster in
            db.execute("SELECT dialogue_id, kept, reasons, detail, cluster_id FROM verdicts")}
    kept = sum(1 for r in rows.values() if r[0])
    db.close()
    return [_h(dict(sorted(rows.items()))), kept]


#: Paths that differ between two checkouts or build folders (origin files are stored with them).
PREFIXES: list[str] = [str(REPO)]


def _h(obj) -> str:
    text = json.dumps(obj, ensure_ascii=False, sort_keys=True, default=str)
    for i, prefix in enumerate(PREFIXES):
        text = text.replace(prefix, f"<path{i}>")
    return hashlib.sha256(text.encode()).hexdigest()


def _replace_ids(text: str, ids: dict[str, str]) -> str:
    for did, key in ids.items():
        if did != key:
            text = text.replace(did, key)
    return text


def sources_digest(ws: Path) -> dict:
    db = sqlite3.connect(ws / "itcollect.db")
    tables = {}
    for table, order in (("sources", "id"), ("source_refs", "source_id, lang, text")):
        cols = [r[1] for r in db.execute(f"PRAGMA table_info({table})")]
        keep = [c for c in cols if not c.endswith("_at") and c not in ("run_id", "ingest_run_id")]
        tables[table] = _h(db.execute(f"SELECT {', '.join(keep)} FROM {table} ORDER BY {order}").fetchall())
    cols = [r[1] for r in db.execute("PRAGMA table_info(ingest_runs)")]
    keep = [c for c in cols if not c.endswith("_at") and c not in ("id",)]
    tables["ingest_runs"] = _h(db.execute(f"SELECT {', '.join(keep)} FROM ingest_runs ORDER BY path").fetchall())
    tables["ingest_drops"] = _h(db.execute("SELECT r.path, d.reason, d.count FROM ingest_drops d JOIN ingest_runs r"
                                           " ON r.id = d.run_id ORDER BY r.path, d.reason").fetchall())
    tables["n_sources"] = db.execute("SELECT COUNT(*) FROM sources").fetchone()[0]
    db.close()
    return tables


def judgement_digest(ws: Path) -> list:
    """Every judgement row (one per answer: the latest generation's), ids mapped, and its counts."""
    db = sqlite3.connect(ws / "itcollect.db")
    ids = _canonical_ids(db)
    cols = [r[1] for r in db.execute("PRAGMA table_info(judgements)")]
    rows = []
    for row in db.execute("SELECT j.*, t.idx FROM judgements j JOIN turns t ON t.id = j.turn_id"):
        j = dict(zip([*cols, "turn_idx"], row))
        j["dialogue_id"] = ids.get(j["dialogue_id"], j["dialogue_id"])
        for c in ("turn_id", "created_at"):
            j.pop(c)
        rows.append(j)
    db.close()
    rows.sort(key=lambda j: (j["dialogue_id"], j["turn_idx"]))
    counts = {s: sum(1 for j in rows if j["status"] == s) for s in ("judged", "unparsed")}
    counts["reasked"] = sum(1 for j in rows if j["sample"] % 2)
    return [_h(rows), counts]


def digest_workspace(ws: Path, export_dirs: list[Path]) -> dict:
    import pyarrow.parquet as pq

    db = sqlite3.connect(ws / "itcollect.db")
    ids = _canonical_ids(db)
    dialogues = {}
    tcols = [r[1] for r in db.execute("PRAGMA table_info(turns)")]
    for did, key in ids.items():
        status, reason, flagged = db.execute("SELECT status, status_reason, flagged FROM dialogues WHERE id = ?",
                                             (did,)).fetchone()
        turns = []
        for row in db.execute("SELECT * FROM turns WHERE dialogue_id = ? ORDER BY idx, id", (did,)):
            t = dict(zip(tcols, row))
            params = json.loads(t["params"] or "{}")
            for k in VOLATILE_PARAMS:
                params.pop(k, None)
            turns.append([t["idx"], t["role"], t["state"], t["author"], t["content"], t["original_content"],
                          t["lang"], t["interaction_type"], params, t["warnings"], t["model"], t["template_name"],
                          t["template_hash"], t["call_key"], t["finish_reason"]])
        dialogues[key] = {"status": status, "reason": reason, "flagged": flagged, "turns": turns}
    out = {"dialogues": _h(dict(sorted(dialogues.items()))), "n_dialogues": len(dialogues), "exports": []}
    out["judgements"] = [json.loads((ws.parent / "judged-online.json").read_text()), judgement_digest(ws)]
    for out_dir in export_dirs:
        files = {}
        for path in sorted(out_dir.rglob("*")):
            rel = str(path.relative_to(out_dir))
            if not path.is_file() or rel.startswith("hf/"):
                continue  # hf/ is the same tables as parquet/ (datasets' own metadata holds fingerprints)
            if path.suffix == ".parquet":
                table = pq.read_table(path)
                table = table.drop_columns([c for c in DROPPED_COLUMNS if c in table.schema.names])
                rows = table.to_pylist()
                for r in rows:
                    for c in VOLATILE_COLUMNS:
                        r.pop(c, None)
                    r["id"] = ids.get(r["id"], r["id"])
                rows.sort(key=lambda r: r["id"])
                files[rel] = [table.schema.names, _h(rows)]
            else:
                text = _replace_ids(path.read_text(encoding="utf-8"), ids)
                if path.suffix == ".json" and rel.startswith("sharegpt"):
                    data = json.loads(text)
                    data.sort(key=lambda r: r.get("id", ""))
                    text = json.dumps(data, ensure_ascii=False, sort_keys=True)
                files[rel] = _h(text)
        out["exports"].append(files)
    db.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, help="write the digest of a freshly built workspace here")
    ap.add_argument("--workdir", type=Path, help="build in this folder (default: a temporary one, removed)")
    ap.add_argument("--compare", nargs=2, type=Path, metavar=("A", "B"), help="compare two digests")
    ap.add_argument("--drop-columns", default="", metavar="C1,C2",
                    help="leave these exported columns out of the digest (columns added since the other digest)")
    args = ap.parse_args()
    DROPPED_COLUMNS.update(c for c in args.drop_columns.split(",") if c)
    if args.compare:
        a, b = (json.loads(p.read_text()) for p in args.compare)
        diff = [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
        if diff:
            print("DIFFERENT:", ", ".join(diff))
            for k in diff:
                print(f"  {k}: {json.dumps(a.get(k))[:300]}\n  {' ' * len(k)}  {json.dumps(b.get(k))[:300]}")
            raise SystemExit(1)
        print(f"identical: {a['n_dialogues']} dialogues, judgements {[j[1] for j in a['judgements']]}, verdicts of "
              f"{len(a['verdicts'])} filter runs (kept {a['kept']}), {sum(len(e) for e in a['exports'])} exported files")
        return
    if not args.out:
        ap.error("--out or --compare")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="itcollect-identical-"))
    workdir.mkdir(parents=True, exist_ok=True)
    PREFIXES.append(str(workdir.resolve()))
    try:
        ws = build(workdir)
        exports, verdicts = [], []
        _cli("-C", str(ws), "filter", cwd=workdir)
        verdicts.append(verdict_digest(ws))
        exports.append(workdir / "export-default")
        _cli("-C", str(ws), "export", "--hf", str(exports[-1]), "--format", "all", cwd=workdir)
        cfg = ws / "itcollect.toml"
        cfg.write_text(cfg.read_text(encoding="utf-8").replace("min_chrf = 0.0", "min_chrf = 20.0")
                       .replace("near_dup_threshold = 0.8", "near_dup_threshold = 0.6"), encoding="utf-8")
        _cli("-C", str(ws), "filter", cwd=workdir)
        verdicts.append(verdict_digest(ws))
        exports.append(workdir / "export-strict")
        _cli("-C", str(ws), "export", "--hf", str(exports[-1]), "--format", "all", cwd=workdir)
        digest = digest_workspace(ws, exports)
        digest["sources"] = sources_digest(workdir / "ingested")
        digest["verdicts"] = [v[0] for v in verdicts]
        digest["kept"] = [v[1] for v in verdicts]
        args.out.write_text(json.dumps(digest, indent=1, sort_keys=True))
        print(f"wrote {args.out}: {digest['n_dialogues']} dialogues, kept {digest['kept']}")
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
