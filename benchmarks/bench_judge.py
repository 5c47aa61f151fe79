"""Throughput of ``itcollect judge`` against the loopback server, like simulate's benchmark.

    python benchmarks/bench_judge.py [--latency-ms 1000] [--concurrency 256] [--calls 10240]

The loopback server (tests/fakeserver.py with the responder of tests/responders.py, which answers
judge prompts with a well-formed judgement) runs in its own process with a fixed latency, so with
concurrency C and latency L the best possible rate is C / L calls/s ("the limit"). The workspace
holds ``--calls`` imported dialogues of one answer each, every one a different sentence (every
judge call is a real HTTP call, none a ledger hit). ``itcollect judge --concurrency C`` then runs as
a child process; the rate is measured on the server (first request to last answer), CPU is the
child's user+system time, with and without its start-up (the same command with ``--limit 0``).
Target (issue 14): >= 0.9 of the limit.

Why 10,240 calls: a run's span holds one latency period of start-up in which no answer can arrive
(see bench_simulate.py); with 40 rounds the cap for any client is 0.976 of the limit.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
PY = sys.executable

from benchmarks.bench_simulate import _measure, _run_child, loopback_server  # noqa: E402 (after the path set-up)

_SUBJECTS = ["The city council", "The central bank", "The airline", "The football club", "The museum",
             "The government", "The union", "The hospital", "The university", "The port authority"]
_VERBS = ["approved", "announced", "cancelled", "postponed", "reviewed", "criticised", "funded", "opened"]
_OBJECTS = ["a housing budget", "a new bus line", "150 flights", "a study of 2000 patients", "a strike",
            "a school building plan", "an exhibition on ancient China", "a rail link"]


def dialogues(n: int) -> list[dict]:
    """``n`` distinct en->fr dialogues of one request and one answer."""
    out = []
    for i in range(n):
        s = _SUBJECTS[i % 10]
        v = _VERBS[(i // 10) % 8]
        o = _OBJECTS[(i // 80) % 8]
        source = f"{s} {v} {o} on Monday, report number {i + 1} said."
        answer = f"Selon le rapport numéro {i + 1}, {s.lower()} a {v} {o} lundi."
        out.append({"messages": [{"role": "user", "content": f'Translate into French: "{source}"'},
                                 {"role": "assistant", "content": answer}],
                    "src_lang": "en", "tgt_lang": "fr", "instruction_lang": "en", "source_text": source,
                    "model": "bench-assistant"})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--latency-ms", type=float, default=1000.0)
    ap.add_argument("--concurrency", type=int, default=256)
    ap.add_argument("--calls", type=int, default=10240, help="answers to judge (one call each)")
    ap.add_argument("--workdir", type=Path, default=None, help="build the workspace here (default: a temporary folder)")
    args = ap.parse_args(argv)

    limit = args.concurrency / (args.latency_ms / 1000.0)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-judge-"))
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, ITCOLLECT_PROGRESS="0")
    env.pop("OPENAI_BASE_URL", None)
    try:
        with loopback_server(args.latency_ms) as url:
            _judge_run(url, work, args, limit, env)
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


def _judge_run(url: str, work: Path, args: argparse.Namespace, limit: float, env: dict[str, str]) -> None:
    """Import the dialogues into a fresh workspace under ``work`` and measure ``judge`` on them."""
    ws = work / "ws"
    if ws.exists():
        shutil.rmtree(ws)
    subprocess.run([PY, "-m", "itcollect", "init", str(ws)], check=True, capture_output=True, env=env)
    data = work / "dialogues.jsonl"
    data.write_text("".join(json.dumps(d) + "\n" for d in dialogues(args.calls)), encoding="utf-8")
    t0 = time.perf_counter()
    subprocess.run([PY, "-m", "itcollect", "-C", str(ws), "import", str(data)], check=True, capture_output=True,
                   env=env)
    print(f"# server {url}  latency {args.latency_ms:g} ms  concurrency {args.concurrency}  limit {limit:g} "
          f"calls/s  answers {args.calls} (imported in {time.perf_counter() - t0:.1f} s)", flush=True)
    cmd = [PY, "-m", "itcollect", "-C", str(ws), "judge", "--base-url", url, "--model", "bench-judge",
           "--concurrency", str(args.concurrency)]
    _, startup = _run_child([*cmd, "--limit", "0"], env=env)
    row = _measure(url, "itcollect judge", cmd, limit, env=env, startup_cpu=startup)
    judged = subprocess.run([PY, "-m", "itcollect", "-C", str(ws), "stats", "--json"], capture_output=True,
                            text=True, env=env, check=True)
    j = json.loads(judged.stdout)["judge"]
    print(f"# itcollect judge: {row['calls_per_s']:.1f} calls/s = {row['fraction_of_limit']:.3f} of the limit "
          f"({row['calls']} calls in {row['seconds']} s); CPU/call {row['cpu_ms_per_call']:.2f} ms "
          f"({row['cpu_ms_per_call_excl_startup']:.2f} ms without start-up); judged {j['judged']}, "
          f"unparsed {j['unparsed']}, unjudged {j['unjudged']}", flush=True)
    try:
        load = os.getloadavg()
        print(f"# load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}", flush=True)
    except OSError:  # pragma: no cover
        pass


if __name__ == "__main__":
    sys.exit(main())
