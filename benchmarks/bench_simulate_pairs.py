"""(b) of bench_simulate.py alone for two checkouts, back to back on one loopback server, in pairs.

    python benchmarks/bench_simulate_pairs.py --base /path/to/base-checkout --new . [--pairs 2] [--calls 10240]

Each run is ``itcollect simulate --concurrency 256`` on a freshly planned workspace (see
``bench_simulate._simulate_run``) with ``PYTHONPATH`` set to the checkout, so the code of that
checkout runs with this environment's packages; the base runs first in every pair. One JSON line per
run: the pair, the tree, the load average at its start and the figures of bench_simulate's (b) row.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks import bench_simulate as B  # noqa: E402 (after the path set-up)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", type=Path, required=True, help="the checkout to compare against")
    ap.add_argument("--new", type=Path, default=REPO, help="the checkout measured (default: this one)")
    ap.add_argument("--pairs", type=int, default=2)
    ap.add_argument("--calls", type=int, default=10240)
    ap.add_argument("--concurrency", type=int, default=256)
    ap.add_argument("--latency-ms", type=float, default=1000.0)
    args = ap.parse_args(argv)
    limit = args.concurrency / (args.latency_ms / 1000.0)
    with B.loopback_server(args.latency_ms) as url:
        os.environ["ITCOLLECT_PROGRESS"] = "0"
        for pair in range(1, args.pairs + 1):
            for name, tree in (("base", args.base), ("new", args.new)):
                os.environ["PYTHONPATH"] = str(tree.resolve())
                load = os.getloadavg()[0]
                row = B._simulate_run(url, args.concurrency, args.calls, limit)
                if row is None:
                    return 1
                figures = {k: v for k, v in row.items() if not isinstance(v, list)}
                print(json.dumps({"pair": pair, "tree": name, "load": round(load, 2), **figures}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
