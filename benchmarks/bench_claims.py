"""Benchmark: how long one simulate claim holds the writer at the scale of a full plan.

    python benchmarks/bench_claims.py [--specs 160000] [--dialogues 100000] [--batch 128] [--leases 200]
                                      [--store postgresql://USER@HOST:PORT/EMPTY_DB]

``simulate`` claims specs a batch at a time from inside its event loop, so a slow claim stops every
call of the run for its duration. This builds a store with ``--specs`` specs of which ``--dialogues``
already have a (simulated, done) dialogue, as two thirds into a 160K run, then times a few claims of
``--batch`` specs and prints the milliseconds per claim. Then ``--leases`` human leases (one spec
each, as ``session`` and ``session --web`` take them) with overlap off and with
``[session] overlap_share = 0.5`` (every lease also looks for a free copy of an overlap spec).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from itcollect.store import Store  # noqa: E402
from itcollect.store.core import utcnow  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--specs", type=int, default=160_000)
    ap.add_argument("--dialogues", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--claims", type=int, default=8)
    ap.add_argument("--leases", type=int, default=200)
    ap.add_argument("--store", default="", help="an empty PostgreSQL database instead of a SQLite file")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-claims-") as tmp:
        store = Store(args.store or Path(tmp) / "s.db")
        now = utcnow()
        with store.transaction() as c:
            c.execute("INSERT INTO sources(id, text, lang, origin_file, created_at) VALUES ('s1', 'x', 'en', 'f', ?)",
                      (now,))
            c.executemany(
                "INSERT INTO specs(id, seed, seq, source_id, src_lang, tgt_lang, instruction_lang, n_turns,"
                " interaction_types, status, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                [(i, 1, i, "s1", "en", "zh", "en", 2, '["translate","polish"]',
                  "done" if i <= args.dialogues else "pending", now, now) for i in range(1, args.specs + 1)])
            c.executemany("INSERT INTO dialogues(id, spec_id, origin, status, created_at, updated_at)"
                          " VALUES (?,?,?,?,?,?)",
                          [(f"d{i}", i, "simulated", "done", now, now) for i in range(1, args.dialogues + 1)])
        times = []
        for n in range(args.claims):
            t0 = time.perf_counter()
            ids = store.claim_specs(f"simulate-b{n}@bench:{n}", args.batch)
            times.append((time.perf_counter() - t0) * 1000)
            assert len(ids) == args.batch
        leases = {}
        for label, share in (("off", 0.0), ("0.5", 0.5)):
            lt = []
            for n in range(args.leases):
                holder = f"human:{label}-{n}"
                t0 = time.perf_counter()
                try:
                    from itcollect.store import Overlap

                    spec = store.lease_next_spec(holder, 600, overlap=Overlap(share, 2))
                except (ImportError, TypeError):  # code from before overlap
                    if share:
                        break
                    spec = store.lease_next_spec(holder, 600)
                lt.append((time.perf_counter() - t0) * 1000)
                assert spec is not None
            if lt:
                lt.sort()
                leases[label] = (lt[len(lt) // 2], lt[-1])
        store.close()
    times.sort()
    print(f"# backend {store.backend}")
    print(f"# {args.specs:,} specs, {args.dialogues:,} with a dialogue: claim of {args.batch} specs "
          f"median {times[len(times) // 2]:.1f} ms, max {times[-1]:.1f} ms ({args.claims} claims)")
    for label, (med, worst) in leases.items():
        print(f"# human lease of one spec, overlap {label}: median {med:.2f} ms, max {worst:.2f} ms "
              f"({args.leases} leases)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
