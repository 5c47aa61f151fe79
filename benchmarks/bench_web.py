"""Benchmark: the web server's own latency for annotators' non-LLM actions, with a team at work.

    python benchmarks/bench_web.py [--annotators 50] [--dialogues 4] [--latency-ms 1000] [--think-ms 300]

Starts the loopback OpenAI-compatible server (tests/fakeserver.py, its own process, every answer
after ``--latency-ms``) and ``itcollect session --web --port 0`` (its own process) on a fresh
workspace, then runs ``--annotators`` scripted annotators at once over HTTP (aiohttp, one cookie
jar each, logged in with their links). Each writes ``--dialogues`` dialogues of two turns:

    next spec (GET /api/state: claim) -> request -> answer streamed (SSE) -> state -> accept
    -> request -> answer streamed -> state -> edit -> finish

with a random pause of up to ``--think-ms`` before each action (people do not act in lockstep;
0 = every annotator fires the moment the previous answer lands). Reported per action, p50 / p95 /
max in ms: the server's own time (its ``Server-Timing`` header: request received by the app ->
response started) and the round trip the client saw (adds HTTP parsing, the event loop's queue
and the client's own scheduling on the same 2 cores). Target: p95 <= 50 ms for accept, edit,
finish and next spec.

No lost action: every action must answer 200, and afterwards the store must hold exactly what
was done: every dialogue done, with its 4 active turns (the edited answer by the human, the
model's kept), one accept and one edit and one finish each in the action log, no lease left,
and no answer paid twice.

Beside them ``--reviewers`` reviewers (default 2) walk the review queue as the edited dialogues
arrive: the review page's GET /api/review ("review"), a verdict, and every third one taken back
(undo) and decided again, reported as the actions "review", "verdict" and "undo".
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

ZH_DIGITS = "零一二三四五六七八九"
NON_LLM = ("next", "request", "state", "accept", "edit", "finish", "review", "verdict", "undo")


def responder(body: dict) -> str:
    """A Chinese answer that differs per request, so every answer passes the checks (the fake
    server loads it with ``--responder benchmarks.bench_web:responder``)."""
    last = body["messages"][-1]["content"]
    digest = "".join(ZH_DIGITS[int(c, 16) % 10] for c in hashlib.sha256(last.encode()).hexdigest()[:8])
    return f"市议会周一批准了新桥的预算，编号{digest}。"


def make_workspace(root: Path, n_specs: int) -> None:
    from itcollect.store import source_id_for
    from itcollect.workspace import init_workspace

    ws = init_workspace(root)
    base = ["The city council approved the budget for the new bridge on Monday",
            "Prices of fresh vegetables rose sharply after the storm last week",
            "The museum will reopen to visitors after two years of renovation",
            "Local farmers say the dry summer has cut their harvest by half"]
    specs = []
    for i in range(n_specs):
        text = f"{base[i % len(base)]} (report {i})."
        sid = source_id_for(text)
        ws.store.add_source(source_id=sid, text=text, lang="en", origin_file="news.txt", origin_line=i + 1)
        specs.append({"seed": 0, "seq": i, "source_id": sid, "src_lang": "en", "tgt_lang": "zh",
                      "instruction_lang": "en", "n_turns": 2, "interaction_types": ["translate", "polish"],
                      "params": {"variant": 0, "turns": [{}, {}]}})
    ws.store.add_specs(specs)
    ws.close()


def accounts(root: Path, n: int, base: str, role: str = "annotator", prefix: str = "ann") -> list[str]:
    from itcollect.session.web.auth import issue_token, login_url
    from itcollect.store import Store

    with Store(root / "itcollect.db") as store:
        return [login_url(base, issue_token(store, f"{prefix}{i:02d}", role)) for i in range(n)]


class Annotator:
    def __init__(self, name: str, link: str, base: str, think_ms: float, rng: random.Random, times: dict) -> None:
        self.name, self.link, self.base = name, link, base
        self.think = think_ms / 1000.0
        self.rng = rng
        self.times = times
        self.csrf = ""
        self.version = None
        self.done: list[str] = []

    async def pause(self) -> None:
        if self.think > 0:
            await asyncio.sleep(self.rng.uniform(0, self.think))

    async def call(self, http, action: str, method: str, path: str, body: dict | None = None, *,
                   refused_ok: bool = False) -> dict:
        headers = {"X-CSRF-Token": self.csrf} if body is not None else {}
        if body is not None and self.version is not None:
            body = {"version": self.version, **body}
        t0 = time.perf_counter()
        async with http.request(method, self.base + path, json=body, headers=headers) as resp:
            data = await resp.json()
            rtt = (time.perf_counter() - t0) * 1000
            m = re.search(r"dur=([0-9.]+)", resp.headers.get("server-timing", ""))
            if resp.status != 200 and not (refused_ok and resp.status == 409):
                raise RuntimeError(f"{self.name} {action}: {resp.status} {data}")
        self.times[action]["server"].append(float(m.group(1)) if m else float("nan"))
        self.times[action]["rtt"].append(rtt)
        if data.get("csrf"):
            self.csrf = data["csrf"]
        if data.get("dialogue"):
            self.version = data["dialogue"]["version"]
        return data

    async def wait_answer(self, http) -> None:
        async with http.get(self.base + "/api/stream") as resp:
            assert resp.status == 200
            async for raw in resp.content:
                line = raw.decode().strip()
                if line.startswith("event: end"):
                    break

    async def run(self, http, dialogues: int) -> None:
        async with http.get(self.link, allow_redirects=False) as resp:
            assert resp.status == 303, resp.status
        for _ in range(dialogues):
            await self.pause()
            st = await self.call(http, "next", "GET", "/api/state")
            if st["dialogue"] is None:
                return
            await self.pause()
            await self.call(http, "request", "POST", "/api/request",
                            {"text": "Please translate this sentence into Chinese."})
            await self.wait_answer(http)
            await self.call(http, "state", "GET", "/api/state")
            await self.pause()
            await self.call(http, "accept", "POST", "/api/accept", {})
            await self.pause()
            await self.call(http, "request", "POST", "/api/request", {"text": "Could you make it sound more natural?"})
            await self.wait_answer(http)
            await self.call(http, "state", "GET", "/api/state")
            await self.pause()
            await self.call(http, "edit", "POST", "/api/edit", {"text": "市议会周一通过了新桥的预算。"})
            await self.pause()
            out = await self.call(http, "finish", "POST", "/api/finish", {})
            self.done.append(out["finished"])
            self.version = None


class Reviewer(Annotator):
    async def review(self, http, annotators_done: asyncio.Event) -> None:
        """Decide what the queue holds until the annotators are done and it is empty."""
        async with http.get(self.link, allow_redirects=False) as resp:
            assert resp.status == 303, resp.status
        decided = 0
        while True:
            await self.pause()
            item = (await self.call(http, "review", "GET", "/api/review"))["item"]
            if item is None:
                if annotators_done.is_set():
                    return
                await asyncio.sleep(0.2)
                continue
            # two reviewers on the same dialogue at once: the second is refused (409), as designed
            out = await self.call(http, "verdict", "POST", "/api/review/verdict",
                                  {"dialogue_id": item["dialogue_id"], "verdict": "accept"}, refused_ok=True)
            if "last_verdict" not in out:
                continue
            decided += 1
            if decided % 3 == 0:  # a mistaken verdict, taken back and decided again
                await self.pause()
                await self.call(http, "undo", "POST", "/api/review/undo",
                                {"dialogue_id": out["last_verdict"]["dialogue_id"]})
                await self.call(http, "verdict", "POST", "/api/review/verdict",
                                {"dialogue_id": item["dialogue_id"], "verdict": "accept"}, refused_ok=True)


async def drive(links: list[str], base: str, dialogues: int, think_ms: float, seed: int,
                reviewer_links: list[str] = ()) -> tuple[dict, list]:
    import aiohttp

    times: dict = defaultdict(lambda: {"server": [], "rtt": []})
    team = [Annotator(f"ann{i:02d}", link, base, think_ms, random.Random(seed + i), times)
            for i, link in enumerate(links)]
    reviewers = [Reviewer(f"rev{i:02d}", link, base, think_ms, random.Random(seed + 1000 + i), times)
                 for i, link in enumerate(reviewer_links)]
    annotators_done = asyncio.Event()

    def session() -> aiohttp.ClientSession:
        return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True), connector=aiohttp.TCPConnector(limit=4),
                                     timeout=aiohttp.ClientTimeout(total=120))

    async def one(a: Annotator) -> None:
        async with session() as http:
            await a.run(http, dialogues)

    async def reviewer(r: Reviewer) -> None:
        async with session() as http:
            await r.review(http, annotators_done)

    async def annotators() -> None:
        await asyncio.gather(*(one(a) for a in team))
        annotators_done.set()

    await asyncio.gather(annotators(), *(reviewer(r) for r in reviewers))
    return times, team


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    if not values:
        return float("nan")
    k = max(0, min(len(values) - 1, int(round(q * (len(values) - 1)))))
    return values[k]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--annotators", type=int, default=50)
    ap.add_argument("--dialogues", type=int, default=4, help="dialogues per annotator")
    ap.add_argument("--latency-ms", type=float, default=1000.0)
    ap.add_argument("--think-ms", type=float, default=300.0)
    ap.add_argument("--reviewers", type=int, default=2, help="reviewers walking the review queue meanwhile")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--profile", metavar="FILE", help="run the web server under cProfile, stats to FILE")
    args = ap.parse_args(argv)
    env = dict(os.environ, ITCOLLECT_PROGRESS="0", PYTHONPATH=str(REPO))
    env.pop("OPENAI_BASE_URL", None)
    procs: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory(prefix="bench-web-") as tmp:
        root = Path(tmp) / "ws"
        n = args.annotators * args.dialogues
        make_workspace(root, n)
        # the server's stderr (its access log: a line per request) goes to a file, so that an
        # unread pipe never holds the server up
        err_path = Path(tmp) / "web.stderr"
        err_file = open(err_path, "w", encoding="utf-8")  # noqa: SIM115 - closed after the run
        try:
            fake = subprocess.Popen([sys.executable, "-m", "tests.fakeserver", "--port", "0", "--latency-ms",
                                     str(args.latency_ms), "--responder", "benchmarks.bench_web:responder"],
                                    cwd=REPO, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            procs.append(fake)
            llm_url = fake.stdout.readline().strip()
            profile = ["-m", "cProfile", "-o", args.profile] if args.profile else []
            web = subprocess.Popen([sys.executable, *profile, "-m", "itcollect", "-C", str(root), "session", "--web",
                                    "--port", "0", "--base-url", llm_url, "--model", "fake-model"],
                                   cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=err_file, text=True)
            procs.append(web)
            first = web.stdout.readline().strip()
            m = re.match(r"^listening on (http://\S+)$", first)
            if not m:
                raise SystemExit(f"the server did not start: {first!r} {err_path.read_text(errors='replace')}")
            base = m.group(1)
            links = accounts(root, args.annotators, base)
            reviewer_links = accounts(root, args.reviewers, base, "reviewer", "rev")
            cpu0 = {p.pid: proc_cpu(p.pid) for p in procs}
            own0 = time.process_time()
            t0 = time.perf_counter()
            times, team = asyncio.run(drive(links, base, args.dialogues, args.think_ms, args.seed, reviewer_links))
            wall = time.perf_counter() - t0
            cpu = {name: proc_cpu(p.pid) - cpu0[p.pid] for name, p in (("web", web), ("llm", fake))}
            cpu["clients"] = time.process_time() - own0
            with urlopen_json(llm_url.replace("/v1", "/_fake/stats")) as stats:
                paid_twice = stats["paid_twice"]
        finally:
            for p in reversed(procs):
                if p.poll() is None:
                    p.terminate()
                    try:
                        p.wait(20)
                    except subprocess.TimeoutExpired:
                        p.kill()
            err_file.close()
        logged = sum(1 for line in err_path.read_text(encoding="utf-8", errors="replace").splitlines()
                     if line[:4].isdigit() and line[4:5] == "-")
        lost = check_store(root, team, args.dialogues, reviewed=args.reviewers > 0)

    print(f"# {args.annotators} annotators x {args.dialogues} dialogues (2 turns each), {args.reviewers} reviewers,"
          f" LLM latency "
          f"{args.latency_ms:.0f} ms, think time up to {args.think_ms:.0f} ms; wall {wall:.1f} s; "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"{'action':<8} {'n':>5}  {'server p50':>10} {'p95':>7} {'max':>7}   {'round trip p50':>14} {'p95':>7} "
          f"{'max':>7}")
    for action in NON_LLM:
        t = times.get(action)
        if not t:
            continue
        s, r = t["server"], t["rtt"]
        print(f"{action:<8} {len(s):>5}  {pct(s, .5):>10.1f} {pct(s, .95):>7.1f} {max(s):>7.1f}   "
              f"{pct(r, .5):>14.1f} {pct(r, .95):>7.1f} {max(r):>7.1f}")
    key = [v for a in ("next", "accept", "edit", "finish") for v in times[a]["server"]]
    key_rtt = [v for a in ("next", "accept", "edit", "finish") for v in times[a]["rtt"]]
    print(f"accept+edit+finish+next: server p50 {statistics.median(key):.1f} ms, p95 {pct(key, .95):.1f} ms; "
          f"round trip p50 {statistics.median(key_rtt):.1f} ms, p95 {pct(key_rtt, .95):.1f} ms "
          f"(target p95 <= 50 ms)")
    print(f"CPU seconds during the run: web server {cpu['web']:.1f}, LLM server {cpu['llm']:.1f}, "
          f"the {args.annotators} clients {cpu['clients']:.1f} (of {2 * wall:.0f} on 2 cores)")
    print(f"lost actions: {lost}; answers paid twice: {paid_twice}; access-log lines: {logged}")
    return 0 if not lost and not paid_twice else 1


def proc_cpu(pid: int) -> float:
    """user + system CPU seconds of a process (Linux /proc)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class urlopen_json:
    def __init__(self, url: str) -> None:
        self.url = url

    def __enter__(self) -> dict:
        from urllib.request import urlopen

        with urlopen(self.url, timeout=10) as r:
            return json.loads(r.read())

    def __exit__(self, *exc) -> None:
        return None


def check_store(root: Path, team: list, dialogues: int, reviewed: bool = False) -> int:
    """Count what is missing from the store against what the annotators were told was done."""
    from itcollect.store import Store

    lost = 0
    with Store(root / "itcollect.db") as store:
        for a in team:
            if len(a.done) != dialogues:
                lost += dialogues - len(a.done)
            events = store.session_events(annotator=a.name)
            for action in ("accept", "edit", "finish"):
                # an edit without warnings logs an accept too: 2 accepts per dialogue
                want = dialogues * (2 if action == "accept" else 1)
                got = sum(1 for e in events if e["action"] == action)
                lost += abs(want - got)
            for did in a.done:
                d = store.get_dialogue(did)
                turns = store.get_turns(did)
                ok = (d is not None and d["status"] == "done" and d["annotator"] == a.name
                      and [(t["role"], t["author"]) for t in turns] == [("user", "human"), ("assistant", "model"),
                                                                        ("user", "human"), ("assistant", "human")]
                      and turns[3]["original_content"]
                      and (not reviewed or d["review_status"] == "accepted"))
                lost += 0 if ok else 1
            lost += len(store.leases_held(f"human:{a.name}"))
    return lost


if __name__ == "__main__":
    sys.exit(main())
