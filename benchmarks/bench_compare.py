"""``simulate --compare`` against single-system ``simulate``: how much of the concurrency limit each
keeps in flight, and the CPU per turn, one run each on the same loopback server.

    python benchmarks/bench_compare.py [--latency-ms 1000] [--concurrency 256] [--calls 10240] [--systems 4]

The loopback server (tests/fakeserver.py, its own process) answers every call after the same
latency, so with concurrency C and latency L the limit is C / L calls/s. Both variants are
bench_simulate.py's (b) — a planned workspace of dialogues of 2 user turns over unique sources,
simulated by the CLI in a fresh process, rates measured on the server, CPU the child's — with about
the same number of calls:

  (b) simulate            one system: 3 calls a dialogue (answer, request, answer);
  (d) simulate --compare  N systems (names without a table: models on the assistant's endpoint)
                          and the judge on the same server: per answer turn N answers and N
                          judgements, so 4N + 1 calls a dialogue.

The responder is tests/responders.py's ``systems_responder``: system ``sysK``'s answers carry K
invisible marks, so no two candidates have the same text and every judgement is its own HTTP call
(identical prompts would share one ledger key), and the judge orders them strictly (no ties). Targets (issue 23):
(d) >= 0.9 of the limit, as simulate; its CPU per turn against (b)'s (a compared turn makes 2N
calls instead of 1, so the CPU per call is the fairer ratio; both are printed).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.bench_simulate import _simulate_run, loopback_server  # noqa: E402

SYSTEMS = tuple(f"sys{k + 1}" for k in range(8))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--latency-ms", type=float, default=1000.0)
    ap.add_argument("--concurrency", type=int, default=256)
    ap.add_argument("--calls", type=int, default=10240, help="about this many calls per variant")
    ap.add_argument("--systems", type=int, default=4, choices=range(2, len(SYSTEMS) + 1))
    args = ap.parse_args(argv)
    limit = args.concurrency / (args.latency_ms / 1000.0)
    systems = ",".join(SYSTEMS[:args.systems])
    per_dialogue = 4 * args.systems + 1
    with loopback_server(args.latency_ms, "tests.responders:systems_responder") as url:
        print(f"# server {url}  latency {args.latency_ms:g} ms  concurrency {args.concurrency}  "
              f"limit {limit:g} calls/s  calls {args.calls}  systems {systems}", flush=True)
        single = _simulate_run(url, args.concurrency, args.calls, limit)
        compare = _simulate_run(url, args.concurrency, args.calls, limit, calls_per_dialogue=per_dialogue,
                                label=f"(d) itcollect simulate --compare ({args.systems} systems)",
                                extra=("--compare", systems, "--judge-base-url", url, "--judge-model", "judge-model"))
    if single is None or compare is None:
        return 1
    for row in (single, compare):
        row["cpu_ms_per_turn"] = round(1000 * row["cpu_s"] / row["turns"], 2) if row["turns"] else None
        row["cpu_ms_per_turn_excl_startup"] = (round(row["cpu_ms_per_call_excl_startup"] * row["calls"] / row["turns"], 2)
                                               if row["turns"] else None)
        print(f"# {row['variant']}: {row['dialogues']} dialogues, {row['turns']} answer turns, {row['calls']} calls;"
              f" {row['calls_per_s']:.1f} calls/s = {row['fraction_of_limit']:.2f} of the limit; CPU"
              f" {row['cpu_ms_per_turn']} ms a turn, {row['cpu_ms_per_call']} ms a call (without start-up:"
              f" {row['cpu_ms_per_turn_excl_startup']} ms a turn, {row['cpu_ms_per_call_excl_startup']} ms a call)",
              flush=True)
    ratio = {k: compare[k] / single[k] for k in ("cpu_ms_per_turn", "cpu_ms_per_call", "cpu_ms_per_turn_excl_startup",
                                                  "cpu_ms_per_call_excl_startup")}
    print(f"# --compare against one system: CPU a turn {ratio['cpu_ms_per_turn']:.2f} x, a call"
          f" {ratio['cpu_ms_per_call']:.2f} x (without start-up: {ratio['cpu_ms_per_turn_excl_startup']:.2f} x,"
          f" {ratio['cpu_ms_per_call_excl_startup']:.2f} x); target >= 0.9 of the limit:"
          f" {'met' if compare['fraction_of_limit'] >= 0.9 else 'NOT met'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
