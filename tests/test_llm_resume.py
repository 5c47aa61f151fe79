"""kill -9 in the middle of a run of LLM calls, then the same run again (ledger level).

The calls run in a real subprocess that is SIGKILLed; the loopback server lives in the test
process and counts what it was asked and what it answered per call key.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from itcollect.config import parse_config
from itcollect.llm import LLMClient
from itcollect.store import Store

REPO = Path(__file__).resolve().parent.parent
N_CALLS = 40
CONCURRENCY = 4
CONFIG = "[llm]\nmax_retries = 2\nbackoff_base_s = 0.01\nbackoff_max_s = 0.05\ntimeout_s = 10.0\n"

CHILD = textwrap.dedent(f"""
    import asyncio, sys
    from itcollect.config import parse_config
    from itcollect.llm import LLMClient
    from itcollect.store import Store

    async def main(db, url):
        store = Store(db)
        client = LLMClient(parse_config({CONFIG!r}), store, command="child", base_url=url, model="fake-model",
                           concurrency={CONCURRENCY}, env={{}})
        await asyncio.gather(*(client.chat("assistant", [{{"role": "user", "content": f"sentence {{i}}"}}])
                               for i in range({N_CALLS})))
        await client.aclose()

    asyncio.run(main(sys.argv[1], sys.argv[2]))
""")


async def _all_calls(db: Path, url: str):
    store = Store(db)
    client = LLMClient(parse_config(CONFIG), store, command="rerun", base_url=url, model="fake-model",
                       concurrency=CONCURRENCY, env={})
    try:
        return await asyncio.gather(*(client.chat("assistant", [{"role": "user", "content": f"sentence {i}"}])
                                      for i in range(N_CALLS)))
    finally:
        await client.aclose()
        store.close()


def test_kill9_then_rerun_pays_nothing_twice(fake_openai, tmp_path):
    db = tmp_path / "itcollect.db"
    Store(db).close()
    fake_openai.set_latency(0.25)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(db), fake_openai.base_url], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    watcher = Store(db)
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            if watcher.ledger_counts()["done"] >= 10:
                break
            assert proc.poll() is None, proc.stderr.read().decode()
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        assert proc.returncode == -signal.SIGKILL
        states = {r["key"]: r["status"] for r in watcher.ledger_calls()}
    finally:
        watcher.close()
    done_at_kill = {k for k, s in states.items() if s == "done"}
    pending_at_kill = {k for k, s in states.items() if s == "pending"}
    assert 10 <= len(done_at_kill) < N_CALLS and pending_at_kill
    seen_before = dict(fake_openai.counts)

    results = asyncio.run(_all_calls(db, fake_openai.base_url))

    keys = {r.call_key for r in results}
    assert len(keys) == N_CALLS
    assert {r.call_key for r in results if r.from_ledger} == done_at_kill
    resent = {k: n - seen_before.get(k, 0) for k, n in fake_openai.counts.items() if n > seen_before.get(k, 0)}
    assert set(resent) == keys - done_at_kill  # only calls that never returned are sent again
    assert all(n == 1 for n in resent.values())
    for k in done_at_kill:  # a call answered before the kill is never paid twice
        assert fake_openai.answered[k] == 1
    # the server answered at most: every call once + the ones in flight when the process died
    assert sum(fake_openai.answered.values()) <= N_CALLS + CONCURRENCY
    with Store(db) as store:
        assert store.ledger_counts() == {"pending": 0, "done": N_CALLS, "failed": 0, "batched": 0}
        totals = store.call_totals()
        assert totals["from_ledger"] == len(done_at_kill)
        assert totals["sent"] == N_CALLS  # answers recorded: before the kill + after it
