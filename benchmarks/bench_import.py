"""Benchmark: ``itcollect import`` of N generated dialogues, and a check that two imports agree.

    python benchmarks/bench_import.py [--dialogues 40000] [--workers N] [--workdir DIR] [--keep]
                                      [--prose] [--code DIR] [--compare-with WS] [--reference]

The workspace is WORKDIR/ws-current (ws-NAME with ``--code .../NAME``, ``-prose`` appended with
``--prose``); the data file WORKDIR/dialogues-N.jsonl (dialogues-prose-N.jsonl) is generated once
and re-used by later runs with the same --workdir.

The dialogues are the Export benchmark's (``bench_export.generate``: seeded, so the same N gives
the same file; 2-5 user turns, pairs among en/zh/de/fr, instructions in en or zh, ~1% exact
duplicates, refusals, copied sources). Their sentences are strings of content words: langid's
function words decide none of the English ones and few German and French ones, its content-word
step ~90% of those (bench_langid.py), and lingua the rest. ``--prose`` generates the same kind
of dialogues with a function word before 45% of the content words (a third of the words, fewer than
running text has), which the function words decide as they decide real news text. The file is imported into
a fresh workspace by ``itcollect import`` in its own process; the benchmark prints wall time, CPU
seconds (the process and the workers it reaped), dialogues per second, peak RSS of the process
tree, the seconds its threads were runnable but waiting for a core, and the load average before and
after (the machine is shared: read the figure beside them).

``--code DIR`` runs the itcollect package found in DIR (a checkout of another commit) instead of
this repository's, for before/after figures on the same data. ``--reference`` imports the file a
second time with ``--workers 1`` and compares the two stores; ``--compare-with WS`` compares with
the store of another workspace (e.g. one imported by the previous code, kept with ``--keep``).
The comparison covers every stored dialogue and turn column but timestamps and row ids.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_export import generate, run_step  # noqa: E402  (the same dialogues as the Export benchmark)

REPO = Path(__file__).resolve().parent.parent
_DIALOGUE_COLS = ("id", "origin", "annotator", "source_id", "source_text", "src_lang", "tgt_lang", "instruction_lang",
                  "status", "origin_file", "origin_line", "meta")
_TURN_COLS = ("dialogue_id", "idx", "role", "content", "state", "author", "model", "lang", "detected_lang",
              "interaction_type", "finish_reason")


def store_digest(db: Path) -> tuple[int, int, str]:
    """(dialogues, turns, sha256 of every dialogue and turn in id order, timestamps and row ids left out)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    h = hashlib.sha256()
    n_d = n_t = 0
    for row in conn.execute(f"SELECT {','.join(_DIALOGUE_COLS)} FROM dialogues ORDER BY id"):
        h.update(repr(row).encode())
        n_d += 1
    for row in conn.execute(f"SELECT {','.join(_TURN_COLS)} FROM turns ORDER BY dialogue_id, idx, id"):
        h.update(repr(row).encode())
        n_t += 1
    conn.close()
    return n_d, n_t, h.hexdigest()


def first_difference(a: Path, b: Path) -> str:
    """The first dialogue or turn row that differs between two stores (for the report)."""
    ca, cb = (sqlite3.connect(f"file:{p}?mode=ro", uri=True) for p in (a, b))
    for sql in (f"SELECT {','.join(_DIALOGUE_COLS)} FROM dialogues ORDER BY id",
                f"SELECT {','.join(_TURN_COLS)} FROM turns ORDER BY dialogue_id, idx, id"):
        for ra, rb in zip(ca.execute(sql), cb.execute(sql)):
            if ra != rb:
                return f"{ra!r}\n  vs\n{rb!r}"
    return "(row counts differ)"


def run_timed(cmd: list[str], cwd: Path) -> tuple[float, float, float, float, str]:
    """Run ``cmd``: (wall s, CPU s of it and its workers, peak RSS of the process tree MB, seconds its
    threads spent runnable but waiting for a core (summed; from /proc/*/task/*/schedstat, sampled
    every 0.2 s: the contention from other work on the machine, and among its own threads), output).
    """
    import subprocess

    import psutil

    env = dict(os.environ, ITCOLLECT_PROGRESS="0")
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=err)
        waits: dict[tuple[int, int], float] = {}
        peak = 0
        while proc.poll() is None:
            try:
                tree = [psutil.Process(proc.pid)]
                tree += tree[0].children(recursive=True)
                peak = max(peak, sum(p.memory_info().rss for p in tree))
                for p in tree:
                    for task in Path(f"/proc/{p.pid}/task").iterdir():
                        waits[(p.pid, int(task.name))] = int((task / "schedstat").read_text().split()[1]) / 1e9
            except (psutil.Error, OSError, ValueError, IndexError):
                pass
            time.sleep(0.2)
        secs = time.perf_counter() - t0
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        out.seek(0)
        err.seek(0)
        text, errtext = out.read(), err.read()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{errtext}")
    return secs, usage.ru_utime + usage.ru_stime, peak / 2**20, sum(waits.values()), text


def import_once(exe: list[str], ws: Path, data: Path, workers: int | None,
                work: Path) -> tuple[float, float, float, float, str]:
    """Init ``ws`` and import ``data`` into it: :func:`run_timed` of the import."""
    if ws.exists():
        shutil.rmtree(ws)
    run_step([*exe, "init", str(ws)], work)
    cmd = [*exe, "-C", str(ws), "import", str(data)]
    if workers is not None:
        cmd += ["--workers", str(workers)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    secs, cpu, tree, waited, text = run_timed(cmd, work)
    cpu -= before.ru_utime + before.ru_stime  # RUSAGE_CHILDREN accumulates over every child reaped
    return secs, cpu, tree, waited, text.strip()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dialogues", type=int, default=40_000)
    ap.add_argument("--workers", type=int, default=None, help="--workers of itcollect import (default: its own).")
    ap.add_argument("--workdir", default=None, help="Folder for the data and workspaces (default: a temp dir).")
    ap.add_argument("--keep", action="store_true", help="Keep the workdir.")
    ap.add_argument("--prose", action="store_true",
                    help="Sentences with function words between the content words, as running text has them.")
    ap.add_argument("--code", default=None, help="Run the itcollect package of this source tree instead.")
    ap.add_argument("--reference", action="store_true",
                    help="Also import with --workers 1 and check that both stores hold the same rows.")
    ap.add_argument("--compare-with", default=None, metavar="WS",
                    help="Check that the store equals the one of workspace WS.")
    args = ap.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="itc-bench-import-"))
    work.mkdir(parents=True, exist_ok=True)
    code = Path(args.code).resolve() if args.code else REPO
    # run_step execs the command with this environment: PYTHONPATH picks the code under test
    os.environ["PYTHONPATH"] = str(code) + (os.pathsep + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH")
                                            else "")
    exe = [sys.executable, "-m", "itcollect"]
    n = args.dialogues
    data = work / f"dialogues-{'prose-' if args.prose else ''}{n}.jsonl"
    print(f"cores: {os.cpu_count()}, dialogues: {n:,}, code: {code}, workdir: {work}")
    if not data.exists():
        t0 = time.perf_counter()
        generate(data, n, prose=args.prose)
        print(f"generate  {time.perf_counter() - t0:7.1f} s  ({data.stat().st_size / 1e6:,.0f} MB JSONL)")
    ws = work / ("ws-" + (code.name if args.code else "current") + ("-prose" if args.prose else ""))  # kept apart
    if args.compare_with and Path(args.compare_with).resolve() == ws.resolve():
        sys.exit(f"bench_import: --compare-with {args.compare_with} is the workspace this run imports into "
                 "(it would be compared with itself); copy it away first")
    load = os.getloadavg()
    secs, cpu, tree, waited, text = import_once(exe, ws, data, args.workers, work)
    after = os.getloadavg()
    print(f"import    {secs:7.1f} s wall  {cpu:7.1f} s CPU  {n / secs:8,.0f} dialogues/s  peak RSS (tree) "
          f"{tree:6.0f} MB  waited for a core {waited:6.1f} s  load average before {load[0]:.2f} / after "
          f"{after[0]:.2f} (1 min)   ({text})")
    digest = store_digest(ws / "itcollect.db")
    print(f"store     {digest[0]:,} dialogues, {digest[1]:,} turns, digest {digest[2][:16]}")
    failed = False
    others: list[tuple[str, Path]] = []
    if args.reference:
        ref = work / "ws-reference"
        secs_r, cpu_r, _tree, waited_r, _text = import_once(exe, ref, data, 1, work)
        print(f"reference {secs_r:7.1f} s wall  {cpu_r:7.1f} s CPU  {n / secs_r:8,.0f} dialogues/s  waited for a core "
              f"{waited_r:6.1f} s  (--workers 1)")
        others.append(("--workers 1", ref))
    if args.compare_with:
        others.append((args.compare_with, Path(args.compare_with)))
    for name, other in others:
        other_digest = store_digest(other / "itcollect.db")
        same = other_digest == digest
        failed |= not same
        print(f"compare   {'SAME' if same else 'DIFFERENT'} as {name}: {other_digest[0]:,} dialogues, "
              f"{other_digest[1]:,} turns, digest {other_digest[2][:16]}")
        if not same:
            print("  first difference:\n" + first_difference(ws / "itcollect.db", other / "itcollect.db"))
    if not args.keep and not args.workdir:
        shutil.rmtree(work)
    if failed:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
