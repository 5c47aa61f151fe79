"""Ingest throughput: generate N news-like lines, ingest them, print sentences/s and peak RSS.

    python benchmarks/bench_ingest.py --lines 1000000

The lines are built from the bundled sample sentences (data/samples): each generated sentence
joins the first, middle and last third of three sample sentences of one language (en 35%, zh 35%,
de 15%, fr 15%) and inserts a year, so the text has real news vocabulary and function words and
is almost always unique. About 3% are deliberate drops (blank, too short, numbers only, exact
repeats). The timed part is exactly what `itcollect ingest FILE` does: reading, NFC/whitespace,
Moses punctuation normalisation, the length/letter checks, language identification (lingua
restricted to the workspace languages), hashing, dedup against the store and batched inserts in
one transaction. ``--profile`` prints where the time goes (cProfile, top functions).
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import random
import resource
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from itcollect.ingest import IngestOptions, IngestSettings, ingest_paths  # noqa: E402
from itcollect.workspace import init_workspace  # noqa: E402


def seed_sentences(tmp: Path) -> dict[str, list[str]]:
    """The kept sample sentences per language (ingested into a scratch workspace)."""
    ws = init_workspace(tmp / "seed")
    ingest_paths(ws.store, [str(REPO / "data" / "samples")], IngestSettings.from_config(ws.config), IngestOptions())
    by_lang: dict[str, list[str]] = {}
    for src in ws.store.iter_sources():
        by_lang.setdefault(src["lang"], []).append(src["text"])
    ws.close()
    return by_lang


def generate(path: Path, n: int, seeds: dict[str, list[str]], seed: int = 0) -> None:
    rng = random.Random(seed)
    langs, weights = ["en", "zh", "de", "fr"], [0.35, 0.35, 0.15, 0.15]
    words = {lang: [s.split() for s in seeds[lang]] for lang in seeds if lang != "zh"}
    recent: list[str] = []
    with open(path, "w", encoding="utf-8") as out:
        for _ in range(n):
            r = rng.random()
            if r < 0.005:
                line = ""
            elif r < 0.01:
                line = "Read more."
            elif r < 0.015:
                line = f"{rng.randint(1, 99)}.{rng.randint(0, 9)}% | {rng.randint(100, 9999)} | {rng.randint(1, 12)}/2024"
            elif r < 0.03 and recent:
                line = rng.choice(recent)
            else:
                lang = rng.choices(langs, weights)[0]
                year = str(rng.randint(1950, 2049))
                if lang == "zh":
                    a, b, c = (rng.choice(seeds["zh"]) for _ in range(3))
                    k1, k2 = len(a) // 3, 2 * len(b) // 3
                    line = a[:k1] + year + "年" + b[k1:k2] + c[k2:]
                else:
                    a, b, c = (rng.choice(words[lang]) for _ in range(3))
                    k1, k2 = len(a) // 3, 2 * len(b) // 3
                    parts = a[:k1] + b[k1:k2] + c[k2:]
                    parts.insert(rng.randint(1, len(parts) - 1), year)
                    line = " ".join(parts)
                if len(recent) < 1000:
                    recent.append(line)
                else:
                    recent[rng.randrange(1000)] = line
            out.write(line + "\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--profile", action="store_true", help="print the top functions by cumulative time")
    ap.add_argument("--backend", default="lingua", choices=["lingua", "langdetect"])
    ap.add_argument("--no-fast-langid", action="store_true", help="ask lingua for every line")
    ap.add_argument("--keep", metavar="DIR", help="work in DIR and keep it (default: a temp dir)")
    args = ap.parse_args()

    tmpdir = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench_ingest_"))
    tmpdir.mkdir(parents=True, exist_ok=True)
    for old in ("seed", "ws"):
        shutil.rmtree(tmpdir / old, ignore_errors=True)
    seeds = seed_sentences(tmpdir)
    data = tmpdir / "generated.txt"
    t0 = time.perf_counter()
    generate(data, args.lines, seeds)
    gen_s = time.perf_counter() - t0
    size_mb = data.stat().st_size / 1e6
    print(f"generated {args.lines:,} lines ({size_mb:.1f} MB) in {gen_s:.1f}s -> {data}")

    ws = init_workspace(tmpdir / "ws")
    settings = IngestSettings.from_config(ws.config)
    settings.backend = args.backend
    settings.fast_langid = not args.no_fast_langid
    profiler = cProfile.Profile() if args.profile else None
    # Another writer (what a running simulate or an annotator's session is to ingest): every 20 ms
    # it takes the store's write lock and lets go; the longest wait is how long ingest held it.
    probe_stop, waits = threading.Event(), []

    def probe() -> None:
        conn = sqlite3.connect(str(tmpdir / "ws" / "itcollect.db"), timeout=600, isolation_level=None)
        while not probe_stop.wait(0.02):
            t = time.perf_counter()
            conn.execute("BEGIN IMMEDIATE")
            waits.append(time.perf_counter() - t)
            conn.execute("ROLLBACK")
        conn.close()

    prober = threading.Thread(target=probe, daemon=True)
    prober.start()
    t0, c0 = time.perf_counter(), time.process_time()
    if profiler:
        profiler.enable()
    summary = ingest_paths(ws.store, [str(data)], settings, IngestOptions())
    if profiler:
        profiler.disable()
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    probe_stop.set()
    prober.join()
    ws.close()
    if summary.failures:
        print("FAILED:", summary.failures[0].format())
        return 1
    report = summary.files[0]
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"ingested {report.records:,} lines in {elapsed:.1f}s: kept {report.kept:,}, dropped "
          + ", ".join(f"{r} {n:,}" for r, n in sorted(report.dropped.items()) if n))
    print(f"throughput: {report.records / elapsed:,.0f} sentences/s (wall clock); "
          f"{report.records / cpu:,.0f} sentences per CPU-second ({cpu:.1f}s CPU, all threads)")
    print(f"peak RSS: {peak_mb:,.0f} MB")
    print(f"another writer, probing every 20 ms: waited at most {max(waits) * 1000:,.0f} ms for the write lock "
          f"({len(waits):,} probes)")
    print(f"store: {(tmpdir / 'ws' / 'itcollect.db').stat().st_size / 1e6:.0f} MB; cpus: {os.cpu_count()}; "
          f"load average at end: {os.getloadavg()[0]:.1f}")
    if profiler:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(18)
    return 0


if __name__ == "__main__":
    sys.exit(main())
