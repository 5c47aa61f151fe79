"""``itcollect simulate --batch-api`` end to end: the real CLI (a subprocess, really killed with
SIGKILL at each phase) against the loopback server's /v1/files and /v1/batches, real SQLite."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from itcollect.llm.batch import LOCK_FILE, PAUSE_ENV, PAUSE_FILE_ENV
from itcollect.plan import plan_specs
from itcollect.workspace import Workspace, init_workspace

from .conftest import run_cli
from .fake_batch import FakeBatchAPI
from .fakeserver import FakeOpenAI
from .responders import fill_workspace_sources, responder

MODEL = "gpt-4o-mini"  # priced in the default config: [0.15, 0.60, 0.075, 0.30] per 1M tokens

CONFIG = """
[llm]
timeout_s = 10.0
[mix]
max_uses_per_source = 40
[batch]
poll_interval_s = 0.02
poll_backoff = 1.5
poll_max_s = 0.1
max_requests_per_file = {per_file}
wait = {wait}
max_attempts = {attempts}
"""


def make_ws(tmp_path, n: int, *, per_file: int = 50_000, wait: bool = True, attempts: int = 3) -> Workspace:
    ws = init_workspace(tmp_path / "ws")
    (ws.root / "itcollect.toml").write_text(
        CONFIG.format(per_file=per_file, wait=str(wait).lower(), attempts=attempts), encoding="utf-8")
    ws.close()
    ws = Workspace(ws.root)
    fill_workspace_sources(ws.store)
    plan_specs(ws.store, ws.config, n, seed=0)
    return ws


def batch_cli(ws: Workspace, server, *args: str, env: dict | None = None):
    return run_cli("-C", str(ws.root), "simulate", "--batch-api", "--base-url", server.base_url, "--model", MODEL,
                   *args, env=env)


def kill_batch_run_at(phase: str, ws: Workspace, server, marker, *extra: str) -> None:
    """Start `simulate --batch-api` (with the arguments ``extra``) as a child process, let it pause at
    ``phase`` and kill -9 it there."""
    env = dict(os.environ, ITCOLLECT_PROGRESS="0", **{PAUSE_ENV: phase, PAUSE_FILE_ENV: str(marker)})
    env.pop("OPENAI_BASE_URL", None)
    proc = subprocess.Popen([sys.executable, "-m", "itcollect", "-C", str(ws.root), "simulate", "--batch-api",
                             "--base-url", server.base_url, "--model", MODEL, *extra],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert marker.exists(), proc.stderr.read().decode() if proc.poll() is not None else "no pause"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stderr.close()


def check_done(ws: Workspace) -> None:
    """Every dialogue done, alternating, each position once, every model turn backed by the ledger."""
    store = ws.store
    specs = list(store.iter_specs())
    dialogues = list(store.iter_dialogues())
    assert len(dialogues) == len({d["spec_id"] for d in dialogues}) == len(specs)
    for d in dialogues:
        spec = store.get_spec(d["spec_id"])
        assert spec["status"] == d["status"] == "done", (spec["status"], d["status"], d["status_reason"])
        turns = store.get_turns(d["id"])
        assert [t["idx"] for t in turns] == list(range(2 * spec["n_turns"]))  # no turn twice, none missing
        assert [t["role"] for t in turns] == ["user", "assistant"] * spec["n_turns"]
        for t in turns[1:]:
            row = store.ledger_lookup(t["call_key"])
            assert row["status"] == "done" and t["model"] == MODEL
    counts = store.ledger_counts()
    assert counts["batched"] == 0 and counts["pending"] == 0


def check_exactly_once(api: FakeBatchAPI, ws: Workspace) -> None:
    """Each custom_id answered once per round it was submitted in; one remote batch and one upload per
    local batch; every answer the server produced is in the ledger (none lost)."""
    assert all(n == 1 for n in api.answered_per_round().values()), api.answered_per_round().most_common(3)
    locals_ = Counter(c["metadata"]["itcollect_batch"] for c in api.created)
    assert all(n == 1 for n in locals_.values()), locals_
    names = Counter(u["filename"] for u in api.uploads)
    assert all(n == 1 for n in names.values()), names
    errored = {cid for _, _, cid in api.errored}
    store = ws.store
    for _, _, cid in api.answered:
        row = store.ledger_lookup(cid)
        assert row is not None and (row["status"] == "done" or cid in errored), (cid, row and row["status"])


def test_300_dialogues_over_several_rounds_with_failures_and_expiry(tmp_path, batch_server):
    api = batch_server.batch_api
    api.fail_first_share = 0.05
    api.expire_next = 1            # the very first batch expires with half its lines answered
    api.polls_before_done = 1
    api.max_requests_per_file = 120
    ws = make_ws(tmp_path, 300, per_file=120)
    r = batch_cli(ws, batch_server, "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["done"] == 300 and out["failed"] == 0 and out["stragglers"] == 0
    assert out["rounds"] >= 5  # one turn of every pending dialogue per round, 2-5 user turns
    check_done(ws)
    check_exactly_once(api, ws)
    assert all(u["lines"] <= 120 for u in api.uploads) and len(api.uploads) > out["rounds"]  # split per file
    # failed and expired requests were resubmitted in a later round, alone: nothing answered is ever resent
    rounds: dict[str, set[int]] = {}
    for _, rnd, cid in api.answered:
        rounds.setdefault(cid, set()).add(int(rnd))
    errored = {cid for _, _, cid in api.errored}
    assert errored and all(len(v) == (2 if cid in errored else 1) for cid, v in rounds.items())
    first = ws.store.list_batches()[0]
    assert first["round"] == 1 and first["detail"]["remote_status"] == "expired"
    expired = {k for k, st in ws.store.batch_item_statuses(first["id"]).items()
               if st == "failed" and 1 not in rounds[k]}
    assert len(expired) == first["n_requests"] - first["n_requests"] // 2
    assert all(min(rounds[cid]) == 2 for cid in expired)  # resubmitted in the very next round
    # the cost is at batch prices
    totals = ws.store.call_totals()
    assert totals["sent"] == out["answered"]
    assert totals["cost_usd"] == pytest.approx(
        (totals["prompt_tokens"] * 0.075 + totals["completion_tokens"] * 0.30) / 1e6, abs=2e-6)
    stats = json.loads(run_cli("-C", str(ws.root), "stats", "--json").stdout)
    assert stats["batch"]["in_flight"] == 0 and stats["batch"]["answered"] == out["answered"]
    assert stats["batch"]["cost_usd"] == pytest.approx(stats["calls"]["cost_usd"], abs=2e-6)
    # a second run finds nothing to do and sends nothing
    created = len(api.created)
    r = batch_cli(ws, batch_server, "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["submitted"] == 0 and len(api.created) == created
    ws.close()


PHASES = ["recorded", "uploaded", "created", "polling", "downloaded", "collected"]


@pytest.mark.parametrize("phase", PHASES)
def test_kill_9_at_each_phase_then_resume(tmp_path, batch_server, phase):
    api = batch_server.batch_api
    api.polls_before_done = 1
    ws = make_ws(tmp_path, 12)
    kill_batch_run_at(phase, ws, batch_server, tmp_path / "paused")
    before = {"uploads": len(api.uploads), "created": len(api.created)}
    if phase in ("uploaded", "created", "polling", "downloaded", "collected"):
        assert before["uploads"] == 1
    if phase in ("created", "polling", "downloaded", "collected"):
        assert before["created"] == 1
    r = batch_cli(ws, batch_server, "--json")
    assert r.returncode == 0, r.stderr
    check_done(ws)
    check_exactly_once(api, ws)
    if phase == "uploaded":  # the file reached the server before the kill: found by name, not re-uploaded
        assert "reusing uploaded file" in r.stderr
    if phase == "created":  # the batch was created before the kill: found by metadata, not re-created
        assert "found remote batch" in r.stderr
    ws.close()


def test_dry_run_estimates_the_whole_run_at_batch_prices_and_writes_nothing(tmp_path, batch_server):
    api = batch_server.batch_api
    ws = make_ws(tmp_path, 40)
    r = batch_cli(ws, batch_server, "--dry-run", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    est = out["estimate"]
    assert out["dry_run"] == est  # the key online dry runs print, in both modes
    # the whole run: every planned call of every dialogue (2-5 user turns: the first request is a
    # template, then one assistant answer per user turn and one annotator request per later turn)
    specs = list(ws.store.iter_specs())
    planned = sum(2 * s["n_turns"] - 1 for s in specs)
    assert est["dialogues"] == est["sampled"] == 40 and est["calls"] == planned == est["remaining_calls"]
    assert est["by_role"] == {"assistant": sum(s["n_turns"] for s in specs),
                              "annotator": sum(s["n_turns"] - 1 for s in specs)}
    assert est["prompt_tokens"] > 0 and est["completion_tokens"] > 0
    expected = (est["prompt_tokens"] * 0.075 + est["completion_tokens"] * 0.30) / 1e6
    assert est["cost_usd"] == pytest.approx(expected, rel=1e-3)
    assert est["cost_usd_online"] == pytest.approx(2 * est["cost_usd"], rel=1e-3)
    assert est["cost_usd_max"] >= est["cost_usd"]
    # the next round, exactly: the first answer of each dialogue, in one input file
    nxt = est["next_round"]
    assert nxt["calls"] == 40 and nxt["by_role"] == {"assistant": 40} and nxt["batches"] == est["batches"] == 1
    assert 0 < nxt["cost_usd"] < est["cost_usd"] and nxt["prompt_tokens"] < est["prompt_tokens"]
    assert batch_server.total_requests == 0 and api.requests == Counter()
    assert ws.store.ledger_counts() == {"pending": 0, "done": 0, "failed": 0, "batched": 0}
    assert list(ws.store.iter_dialogues()) == [] and ws.store.batch_totals()["total"] == 0
    r = batch_cli(ws, batch_server, "--dry-run")
    assert r.returncode == 0 and "at batch prices" in r.stdout and f"about {planned:,} calls" in r.stdout
    # online --dry-run estimates the same run (same calls and tokens), at online prices
    online = run_cli("-C", str(ws.root), "simulate", "--base-url", batch_server.base_url, "--model", MODEL,
                     "--dry-run", "--json")
    assert online.returncode == 0, online.stderr
    on = json.loads(online.stdout)["dry_run"]
    assert (on["calls"], on["prompt_tokens"], on["completion_tokens"]) == \
        (est["calls"], est["prompt_tokens"], est["completion_tokens"])
    assert on["cost_usd"] == pytest.approx(est["cost_usd_online"], abs=1e-4)
    # the first real round submits exactly what the dry run announced
    cfg = (ws.root / "itcollect.toml").read_text().replace("wait = true", "wait = false")
    (ws.root / "itcollect.toml").write_text(cfg)
    r = batch_cli(ws, batch_server, "--json")
    assert r.returncode == 0, r.stderr
    assert api.uploads[0]["lines"] == nxt["calls"]
    ws.close()


def test_status_shows_batches_in_flight_and_what_they_wait_for(tmp_path, batch_server):
    api = batch_server.batch_api
    api.polls_before_done = 1000  # the provider takes "hours"
    api.max_requests_per_file = 10
    ws = make_ws(tmp_path, 25, per_file=10, wait=False)
    r = batch_cli(ws, batch_server)
    assert r.returncode == 0, r.stderr
    assert "25 calls still out" in r.stdout
    r = batch_cli(ws, batch_server, "--status")
    assert r.returncode == 0, r.stderr
    assert "3 batch(es) in flight, 25 calls waiting" in r.stdout
    assert r.stdout.count("waiting for the provider to answer its requests") == 3
    r = batch_cli(ws, batch_server, "--status", "--json")
    status = json.loads(r.stdout)["status"]
    assert sorted(b["requests"] for b in status["in_flight"]) == [5, 10, 10]
    assert {b["remote_status"] for b in status["in_flight"]} == {"in_progress"}
    # the provider finishes round 1 (round 2's batch will need one more poll); the next run collects
    # round 1, submits round 2 and returns without waiting; status says so
    api.polls_before_done = 1
    r = batch_cli(ws, batch_server, "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["answered"] == 25 and out["rounds"] == 1 and out["waiting"] == out["submitted"] > 0
    r = batch_cli(ws, batch_server, "--status")
    assert "Last collected round 1: 3 batch(es), 25 answered" in r.stdout
    ws.close()


def test_max_cost_is_respected_before_submitting(tmp_path, batch_server):
    api = batch_server.batch_api
    ws = make_ws(tmp_path, 40)
    r = batch_cli(ws, batch_server, "--dry-run", "--json")
    est = json.loads(r.stdout)["estimate"]["next_round"]
    budget = est["cost_usd_max"] / 2  # half the first round's worst case
    r = batch_cli(ws, batch_server, "--max-cost", f"{budget:.8f}", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert 0 < out["submitted"] < est["calls"] and out["stopped"] and "--max-cost" in out["stopped"]
    assert api.uploads[0]["lines"] == out["submitted"] and len(api.uploads) == 1
    assert ws.store.call_totals()["cost_usd"] <= budget
    assert ws.store.spec_counts()["in_progress"] == 0  # unfinished specs released for the next run
    ws.close()


def test_mixing_modes_online_never_resends_a_batched_call(tmp_path, batch_server):
    api = batch_server.batch_api
    api.polls_before_done = 1000
    ws = make_ws(tmp_path, 14, wait=False)
    r = batch_cli(ws, batch_server, "--limit", "10")
    assert r.returncode == 0, r.stderr
    batched = set(ws.store.ledger_batched_keys())
    assert len(batched) == 10
    # online simulate while the batch is out: it completes the other 4 dialogues, parks the 10 and
    # sends none of their calls
    r = run_cli("-C", str(ws.root), "simulate", "--base-url", batch_server.base_url, "--model", MODEL, "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["done"] == 4 and out["parked"] == 10
    assert not batched & set(batch_server.counts)
    assert ws.store.ledger_counts()["batched"] == 10
    # a dry run counts nothing for calls that are out in the batch (an online run leaves them)
    r = run_cli("-C", str(ws.root), "simulate", "--dry-run", "--base-url", batch_server.base_url, "--model", MODEL)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    # the provider finishes; the batch run collects its round and completes the 10
    api.polls_before_done = 0
    r = batch_cli(ws, batch_server, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["done"] == 10
    check_done(ws)
    assert not batch_server.paid_twice()
    assert not set(batch_server.counts) & {cid for _, _, cid in api.answered}  # no call paid both ways
    check_exactly_once(api, ws)
    ws.close()


def test_stragglers_left_to_online_simulate(tmp_path, batch_server):
    api = batch_server.batch_api
    api.fail_first_share = 0.3
    ws = make_ws(tmp_path, 20, attempts=1)
    r = batch_cli(ws, batch_server, "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["stragglers"] > 0 and out["done"] + out["stragglers"] == 20
    assert ws.store.spec_counts()["pending"] == out["stragglers"]
    failed = {r["key"] for r in ws.store.ledger_calls(["failed"])}
    r = run_cli("-C", str(ws.root), "simulate", "--base-url", batch_server.base_url, "--model", MODEL)
    assert r.returncode == 0, r.stderr
    assert failed <= set(batch_server.counts)  # online sent the stragglers' calls
    check_done(ws)
    ws.close()


def test_second_batch_run_on_the_same_workspace_is_refused(tmp_path, batch_server):
    ws = make_ws(tmp_path, 3)
    with open(ws.root / LOCK_FILE, "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        r = batch_cli(ws, batch_server)
        dry = batch_cli(ws, batch_server, "--dry-run")  # writes nothing: allowed alongside
        status = batch_cli(ws, batch_server, "--status")
    assert r.returncode == 1 and "another `simulate --batch-api` is running" in r.stderr
    assert dry.returncode == 0 and "at batch prices" in dry.stdout
    assert status.returncode == 0 and "No batch in flight" in status.stdout
    assert "Traceback" not in r.stderr and batch_server.batch_api.requests == Counter()
    ws.close()


def test_bad_batch_config_is_one_clear_line(tmp_path, batch_server):
    ws = make_ws(tmp_path, 3)
    cfg = ws.root / "itcollect.toml"
    cfg.write_text(cfg.read_text().replace("max_requests_per_file = 50000", "max_requests_per_file = 60000"))
    r = batch_cli(ws, batch_server)
    assert r.returncode == 1 and "batch.max_requests_per_file must be 1..50000" in r.stderr
    assert "itcollect.toml" in r.stderr and "Traceback" not in r.stderr
    assert batch_server.batch_api.requests == Counter() and ws.store.batch_totals()["total"] == 0
    ws.close()


def test_endpoint_down_during_upload_then_resume(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ws = make_ws(tmp_path, 6)
    cfg = ws.root / "itcollect.toml"
    cfg.write_text(cfg.read_text().replace("timeout_s = 10.0", "timeout_s = 10.0\nmax_retries = 0"))
    url = f"http://127.0.0.1:{port}/v1"
    r = run_cli("-C", str(ws.root), "simulate", "--batch-api", "--base-url", url, "--model", MODEL)
    assert r.returncode == 1 and "the Batch API failed" in r.stderr and "re-run" in r.stderr
    assert "Traceback" not in r.stderr
    [b] = ws.store.open_batches()  # recorded before the upload was tried: nothing lost
    assert b["status"] == "uploading" and ws.store.ledger_counts()["batched"] == b["n_requests"] == 6
    # another endpoint cannot take over a batch that may have reached the first one
    api = FakeBatchAPI()
    with FakeOpenAI(extra_routes=api.install, responder=responder) as other:
        r = run_cli("-C", str(ws.root), "simulate", "--batch-api", "--base-url", other.base_url, "--model", MODEL)
        assert r.returncode == 1 and f"submitted to {url}" in r.stderr
    # the endpoint is back: the same command resumes and completes
    api = FakeBatchAPI()
    with FakeOpenAI(extra_routes=api.install, responder=responder, port=port) as server:
        r = run_cli("-C", str(ws.root), "simulate", "--batch-api", "--base-url", url, "--model", MODEL)
        assert r.returncode == 0, r.stderr
        check_done(ws)
        check_exactly_once(api, ws)
        assert server.base_url == url
    ws.close()


def test_cancel_stops_the_batches_keeps_their_answers_and_frees_the_rest(tmp_path, batch_server):
    api = batch_server.batch_api
    api.polls_before_done = 1000  # the provider would take its time
    ws = make_ws(tmp_path, 30, per_file=12, wait=False)
    r = batch_cli(ws, batch_server, "--json")  # round 1 submitted, the run returns
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["waiting"] == 30 and len(ws.store.open_batches()) == 3
    r = batch_cli(ws, batch_server, "--cancel", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["cancelled"] == 3 and api.requests["POST cancel"] == 3 and out["submitted"] == 0
    # the fake provider answered a third of each batch (12, 12 and 6 calls) before the cancel took
    # effect: those answers are kept
    assert out["answered"] == 4 + 4 + 2 and out["failed_calls"] == 30 - 10 and out["cost_usd"] > 0
    assert ws.store.open_batches() == [] and ws.store.ledger_counts()["batched"] == 0
    assert ws.store.ledger_counts()["done"] == 10
    assert batch_cli(ws, batch_server, "--cancel").stdout.startswith("simulate --batch-api --cancel: 0 batch(es)")
    # online simulate continues: the 10 answers come from the ledger, nothing is paid twice
    r = run_cli("-C", str(ws.root), "simulate", "--base-url", batch_server.base_url, "--model", MODEL, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["done"] == 30
    check_done(ws)
    assert not set(batch_server.counts) & {cid for _, _, cid in api.answered}
    ws.close()


def test_cancel_closes_a_batch_that_never_reached_the_provider(tmp_path, batch_server):
    api = batch_server.batch_api
    ws = make_ws(tmp_path, 6)
    kill_batch_run_at("recorded", ws, batch_server, tmp_path / "paused")
    assert [b["status"] for b in ws.store.open_batches()] == ["recorded"]
    r = batch_cli(ws, batch_server, "--cancel", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["cancelled"] == 1 and out["failed_calls"] == 6 and out["answered"] == 0
    assert api.requests["POST cancel"] == 0 and not api.uploads  # nothing was sent anywhere
    assert ws.store.open_batches() == [] and ws.store.ledger_counts()["batched"] == 0
    ws.close()
