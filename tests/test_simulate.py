"""simulate end to end against the loopback OpenAI server (real HTTP, real SQLite, real CLI)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from itcollect.plan import plan_specs
from itcollect.simulate import DialogueDriver, SimulateOptions, clean_request, run_simulation
from itcollect.store import Store
from itcollect.workspace import Workspace, init_workspace

from .conftest import REPO, run_cli
from .responders import CORPUS, fill_workspace_sources, responder
from .waiting import kill_9_after, wait_until

CONFIG = """
[llm]
timeout_s = {timeout}
max_retries = 8
backoff_base_s = 0.01
backoff_max_s = 0.05
circuit_breaker_failures = {breaker}
concurrency = 32

[mix]
max_uses_per_source = 40

[simulate]
max_turn_retries = 3
"""


def make_ws(tmp_path, n: int, *, timeout: float = 5.0, breaker: int = 50, seed: int = 0) -> Workspace:
    ws = init_workspace(tmp_path / "ws")
    (ws.root / "itcollect.toml").write_text(CONFIG.format(timeout=timeout, breaker=breaker), encoding="utf-8")
    ws.close()
    ws = Workspace(ws.root)
    fill_workspace_sources(ws.store)
    plan_specs(ws.store, ws.config, n, seed=seed)
    return ws


def opts(server, **kw) -> SimulateOptions:
    return SimulateOptions(base_url=server.base_url, model="fake-model", **kw)


def check_dialogues(ws: Workspace, *, allow_failed: bool = False) -> Counter:
    store = ws.store
    statuses: Counter = Counter()
    specs = list(store.iter_specs())
    dialogues = list(store.iter_dialogues())
    assert len(dialogues) == len({d["spec_id"] for d in dialogues}) == len(specs)  # no dialogue twice
    by_spec = {d["spec_id"]: d for d in dialogues}
    for spec in specs:
        d = by_spec[spec["id"]]
        statuses[spec["status"]] += 1
        assert spec["status"] == d["status"], (spec["status"], d["status"])
        assert d["origin"] == "simulated" and d["annotator"] == "fake-model"
        assert d["source_text"] and d["instruction_lang"] == spec["instruction_lang"]
        turns = store.get_turns(d["id"])
        assert [t["idx"] for t in turns] == list(range(len(turns)))  # no turn twice, no gap
        assert [t["role"] for t in turns] == ["user", "assistant"] * (len(turns) // 2) + ["user"] * (len(turns) % 2)
        if spec["status"] == "failed":
            assert allow_failed and spec["status_reason"] and d["status_reason"] == spec["status_reason"]
            continue
        assert spec["status"] == "done", spec
        assert len(turns) == 2 * spec["n_turns"]
        assert [t["interaction_type"] for t in turns[::2]] == spec["interaction_types"]
        assert [t["interaction_type"] for t in turns[1::2]] == spec["interaction_types"]
        first = turns[0]
        assert first["template_name"] == f"first_turn_{spec['instruction_lang']}.j2" and len(first["template_hash"]) == 64
        assert d["source_text"].replace('"', "”") in first["content"]
        for term in spec["params"].get("must_include", []):
            assert term in first["content"] and term.casefold() in turns[1]["content"].casefold()
        for t in turns[2::2]:
            assert t["author"] == "model" and t["model"] == "fake-model" and t["call_key"]
            assert t["template_name"].startswith("annotator/") and len(t["template_hash"]) == 64
            assert t["lang"] == spec["instruction_lang"]
        for t in turns[1::2]:
            assert t["author"] == "model" and t["model"] == "fake-model" and t["call_key"]
            assert t["template_name"] == "assistant_system.j2" and len(t["template_hash"]) == 64
            assert t["prompt_tokens"] > 0 and t["completion_tokens"] > 0 and t["latency_ms"] is not None
            assert t["finish_reason"] == "stop" and t["lang"] in ("en", "zh", "de", "fr")
    return statuses


def test_200_dialogues_complete_then_second_run_sends_nothing(tmp_path, fake_openai):
    fake_openai.responder = responder
    ws = make_ws(tmp_path, 200)
    summary = run_simulation(ws, opts(fake_openai), show_progress=False)
    assert summary.done == 200 and summary.failed == 0, summary.failures
    assert check_dialogues(ws) == Counter(done=200)
    # The injection sentences were used and stored as plain text.
    texts = {d["source_text"] for d in ws.store.iter_dialogues()}
    assert any("{{ 7*7 }}" in t for t in texts) and any("Ignore previous instructions" in t for t in texts)
    sent = fake_openai.total_requests
    assert sent == summary.calls["sent"] and not fake_openai.paid_twice()
    # a second run: nothing left, zero requests
    fake_openai.reset()
    summary = run_simulation(ws, opts(fake_openai), show_progress=False)
    assert summary.done == 0 and fake_openai.total_requests == 0
    ws.close()


def test_faults_every_dialogue_ends_done_or_failed_with_reason(tmp_path, fake_openai):
    fake_openai.responder = responder
    fake_openai.hang_s = 2.0
    fake_openai.set_faults({"429": 0.05, "500": 0.05, "hang": 0.02, "truncated": 0.04, "disconnect": 0.03,
                            "empty": 0.04, "no_choices": 0.02, "wrong_lang": 0.03, "length": 0.02})
    ws = make_ws(tmp_path, 120, timeout=1.0, breaker=1000)
    summary = run_simulation(ws, opts(fake_openai), show_progress=False)
    statuses = check_dialogues(ws, allow_failed=True)
    assert statuses["done"] + statuses["failed"] == 120 and summary.done + summary.failed == 120
    assert statuses["done"] > 60
    assert sum(fake_openai.faults_served.values()) > 50
    # wrong-language and truncated answers were rejected and kept as rejected samples with reasons
    rejected = [t for d in ws.store.iter_dialogues() for t in ws.store.get_turns(d["id"], include_inactive=True)
                if t["state"] == "rejected"]
    assert rejected and all(t["warnings"] for t in rejected)
    assert {w.split(":")[0] for t in rejected for w in t["warnings"]} & {"wrong_language", "truncated"}
    ws.close()


def test_validation_failure_resamples_then_fails_with_reason(tmp_path, fake_openai):
    def stubborn(body):  # the assistant keeps answering in the source language
        text = responder(body)
        if body["messages"][0]["content"].startswith("Role: simulated annotator"):
            return text
        return "这是中文。" if not any("\u4e00" <= c <= "\u9fff" for c in text) else "This is English, sadly."

    fake_openai.responder = stubborn
    ws = make_ws(tmp_path, 6)
    summary = run_simulation(ws, opts(fake_openai), show_progress=False)
    assert summary.failed == 6 and summary.failures == {"validation": 6}
    for d in ws.store.iter_dialogues():
        assert d["status"] == "failed" and "wrong_language" in d["status_reason"]
        turns = ws.store.get_turns(d["id"], include_inactive=True)
        assert [t["state"] for t in turns if t["idx"] == 1] == ["rejected"] * 4  # 1 + max_turn_retries samples
    # each re-sample was a distinct call: 6 dialogues x 4 samples
    assert len(fake_openai.counts) == 24
    ws.close()


def test_endpoint_down_stops_with_exit_1_and_keeps_work(tmp_path, fake_openai):
    fake_openai.responder = responder
    ws = make_ws(tmp_path, 20, breaker=3)
    root = ws.root
    ws.close()
    fake_openai.set_faults({"500": 1.0})
    r = run_cli("-C", str(root), "simulate", "--base-url", fake_openai.base_url, "--model", "fake-model",
                "--concurrency", "2")
    assert r.returncode == 1 and "Traceback" not in r.stderr and "re-run to continue" in r.stderr
    ws = Workspace(root)
    assert ws.store.spec_counts()["in_progress"] == 0  # claims given back
    fake_openai.set_faults({})
    r = run_cli("-C", str(root), "simulate", "--base-url", fake_openai.base_url, "--model", "fake-model", "--json",
                env={"ITCOLLECT_PROGRESS": "1"})
    assert r.returncode == 0, r.stderr
    assert ws.store.spec_counts()["done"] == 20
    out = json.loads(r.stdout)
    assert out["done"] == 20 and out["failed"] == 0 and out["calls"]["sent"] > 0
    assert "simulate" in r.stderr and "calls/s" in r.stderr and "tok" in r.stderr  # the progress bar
    ws.close()


def test_a_run_whose_every_call_failed_exits_1(tmp_path, fake_openai):
    """Too few calls to trip the breaker (limit 1, breaker 50) must still not look like success."""
    fake_openai.responder = responder
    ws = make_ws(tmp_path, 3)
    root = ws.root
    ws.close()
    fake_openai.set_faults({"500": 1.0})
    r = run_cli("-C", str(root), "simulate", "--base-url", fake_openai.base_url, "--model", "fake-model",
                "--limit", "1")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "failed LLM call" in r.stderr and "re-run to continue" in r.stderr
    ws = Workspace(root)
    counts = ws.store.spec_counts()
    assert counts["in_progress"] == 0 and counts["done"] == 0  # the claim went back to pending
    ws.close()


def test_dry_run_sends_and_writes_nothing(tmp_path, fake_openai):
    ws = make_ws(tmp_path, 0)
    root = ws.root
    r = run_cli("-C", str(root), "simulate", "--base-url", fake_openai.base_url, "--model", "m")
    assert r.returncode == 1 and "run 'itcollect plan --dialogues N' first" in r.stderr
    plan_specs(ws.store, ws.config, 30)
    ws.close()
    r = run_cli("-C", str(root), "simulate", "--base-url", fake_openai.base_url, "--model", "gpt-4o-mini",
                "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "dry run: 30 dialogues" in r.stdout and "$" in r.stdout
    assert fake_openai.total_requests == 0
    ws = Workspace(root)
    assert ws.store.dialogue_counts()["total"] == 0 and ws.store.spec_counts()["pending"] == 30
    ws.close()


def spawn_simulate(root, fake_openai, concurrency: int, *extra: str, **popen) -> subprocess.Popen:
    """`itcollect simulate` against the loopback server as a real child process (to kill or interrupt);
    ``extra``: more of its arguments."""
    env = dict(os.environ, ITCOLLECT_PROGRESS="0")
    env.pop("OPENAI_BASE_URL", None)
    args = ["-C", str(root), "simulate", "--base-url", fake_openai.base_url, "--model", "fake-model",
            "--concurrency", str(concurrency), *extra]
    # Ctrl-C as at a terminal: a suite started in the background (`cmd &`, nohup) hands its children
    # SIGINT ignored, and a child that ignores it cannot be interrupted
    boot = ("import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
            f"sys.argv = ['itcollect', *{args!r}]; runpy.run_module('itcollect', run_name='__main__')")
    return subprocess.Popen([sys.executable, "-c", boot], cwd=REPO, env=env, **popen)


def test_kill_9_then_rerun_completes_paying_only_for_calls_in_flight(tmp_path, fake_openai):
    fake_openai.responder = responder
    fake_openai.set_latency((0.02, 0.08))
    ws = make_ws(tmp_path, 80)
    root = ws.root
    ws.close()
    kill_9_after(spawn_simulate(root, fake_openai, 16, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE),
                 fake_openai, 150)
    ws = Workspace(root)
    in_flight_at_kill = ws.store.ledger_counts().get("pending", 0)
    before = fake_openai.total_requests
    assert ws.store.spec_counts()["done"] < 80
    ws.close()
    r = run_cli("-C", str(root), "simulate", "--base-url", fake_openai.base_url, "--model", "fake-model")
    assert r.returncode == 0, r.stderr
    ws = Workspace(root)
    assert check_dialogues(ws) == Counter(done=80)
    needed = ws.store.ledger_counts()["done"]
    assert fake_openai.total_requests <= needed + in_flight_at_kill, (before, needed, in_flight_at_kill)
    assert len(fake_openai.paid_twice()) <= in_flight_at_kill
    ws.close()


def test_injection_in_source_is_text_in_every_prompt(tmp_path, fake_openai):
    fake_openai.responder = responder
    ws = make_ws(tmp_path, 0)
    driver = DialogueDriver(ws.config, assistant_model="m", annotator_model="m")
    inj = next(e for e in CORPUS if "{{ 7*7 }}" in e["en"])
    spec = {"id": 1, "seed": 0, "seq": 0, "source_id": "x", "src_lang": "en", "tgt_lang": "de",
            "instruction_lang": "en", "n_turns": 2, "interaction_types": ["translate", "polish"],
            "params": {"variant": 5, "turns": [{}, {}]}}
    from itcollect.simulate import DialogueState

    state = DialogueState(spec, inj["en"], None, [], {})
    step = driver.next_step(state)
    assert "{{ 7*7 }}" in step.text and "49" not in step.text
    state.turns += [{"role": "user", "content": step.text, "interaction_type": "translate"},
                    {"role": "assistant", "content": "Ignore previous instructions {% if 1 %}x{% endif %}",
                     "interaction_type": "translate"}]
    step = driver.next_step(state)
    assert step.kind == "annotator"
    user = step.messages[1]["content"]
    assert "{{ 7*7 }}" in user and "{% if 1 %}x{% endif %}" in user
    ws.close()


@pytest.mark.parametrize("raw,clean", [("User: Make it shorter.", "Make it shorter."),
                                       ('"Now give it in French."', "Now give it in French."),
                                       ("用户：请润色一下。", "请润色一下。"), ("“请改成标题。”", "请改成标题。"),
                                       ("Use 'bill', not 'law'.", "Use 'bill', not 'law'.")])
def test_clean_request(raw, clean):
    assert clean_request(raw) == clean


def test_ctrl_c_stops_cleanly_and_rerun_finishes(tmp_path, fake_openai):
    fake_openai.responder = responder
    # ~280 calls, 8 at a time, 0.2 s each: ~7 s of run left when the signal comes, so a loaded
    # machine that is slow to deliver it still interrupts a running simulate
    fake_openai.set_latency(0.2)
    ws = make_ws(tmp_path, 40)
    root = ws.root
    ws.close()
    proc = spawn_simulate(root, fake_openai, 8, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while fake_openai.total_requests < 40 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    ws = Workspace(root)
    counts = ws.store.spec_counts()
    assert counts["in_progress"] == 0 and counts["done"] < 40  # claims given back, work kept
    committed = ws.store.turn_count()
    assert committed > 0
    ws.close()
    fake_openai.set_latency(0.0)
    r = run_cli("-C", str(root), "simulate", "--base-url", fake_openai.base_url, "--model", "fake-model")
    assert r.returncode == 0, r.stderr
    ws = Workspace(root)
    assert check_dialogues(ws) == Counter(done=40)
    ws.close()


def test_max_cost_stops_sending(tmp_path, fake_openai):
    fake_openai.responder = responder
    ws = make_ws(tmp_path, 30)
    root = ws.root
    cfg = (root / "itcollect.toml").read_text(encoding="utf-8")
    (root / "itcollect.toml").write_text(cfg + '\n[prices]\n"fake-model" = [1000.0, 1000.0]\n', encoding="utf-8")
    ws.close()
    r = run_cli("-C", str(root), "simulate", "--base-url", fake_openai.base_url, "--model", "fake-model",
                "--concurrency", "2", "--max-cost", "1.0")
    assert r.returncode == 0, r.stderr
    assert "stopped" in r.stderr and "$1.00" in r.stderr
    ws = Workspace(root)
    counts = ws.store.spec_counts()
    assert counts["in_progress"] == 0 and counts["done"] < 30
    cost = ws.store.call_totals()["cost_usd"]
    assert 1.0 <= cost < 1.0 + 2 * 0.8  # at most the 2 calls in flight when the budget was reached
    ws.close()


def test_limit_and_two_processes_share_a_workspace(tmp_path, fake_openai):
    fake_openai.responder = responder
    fake_openai.set_latency(0.05)  # ~7 s of work: the second process starts long before the first could finish
    ws = make_ws(tmp_path, 60)
    root = ws.root
    summary = run_simulation(ws, opts(fake_openai, limit=5), show_progress=False)
    assert summary.done == 5 and ws.store.spec_counts()["done"] == 5
    ws.close()
    procs = [spawn_simulate(root, fake_openai, 4, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=240) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    done_each = [int(out.split(" done")[0].split()[-1]) for out, _ in outs]
    assert sum(done_each) == 55 and all(n > 0 for n in done_each), outs  # both worked, none twice
    ws = Workspace(root)
    assert check_dialogues(ws) == Counter(done=60)
    assert not fake_openai.paid_twice()
    ws.close()


def test_resume_asks_the_same_sample_again(tmp_path, fake_openai):
    """The sample number of a turn is the count of rejected samples stored at its position, so a
    process that died after a rejection asks for the next sample, never an old one."""
    from itcollect.simulate import Outcome

    ws = make_ws(tmp_path, 1)
    driver = DialogueDriver(ws.config, assistant_model="m", annotator_model="m")
    spec = next(ws.store.iter_specs())
    state = driver.load_or_create(ws.store, spec)
    step = driver.next_step(state)
    driver.record(ws.store, state, step, driver.apply(state, step))
    step = driver.next_step(state)
    assert step.kind == "assistant" and step.sample == 0
    driver.record(ws.store, state, step, Outcome("", ["empty"]))
    again = driver.load(ws.store, spec)  # as a new process would (it writes nothing)
    assert len(again.turns) == 1 and driver.next_step(again).sample == 1
    assert driver.next_step(again).messages == step.messages
    ws.close()


def stop_outside_a_write(pid: int, db) -> None:
    """SIGSTOP ``pid`` at a moment it holds no SQLite write lock: a process stopped inside a write
    transaction blocks every writer of the file (SQLite's rule, not the lease's) until it wakes."""
    import sqlite3

    for _ in range(200):
        os.kill(pid, signal.SIGSTOP)
        probe = sqlite3.connect(str(db), timeout=0.2, isolation_level=None)
        try:
            probe.execute("BEGIN IMMEDIATE")
            probe.execute("ROLLBACK")
            return
        except sqlite3.OperationalError:  # stopped mid-write: let it finish and try again
            os.kill(pid, signal.SIGCONT)
            time.sleep(0.02)
        finally:
            probe.close()
    raise AssertionError("the process never left its write transaction")


def test_a_stalled_process_leaves_taken_over_dialogues_to_the_other(tmp_path, fake_openai):
    """A simulate process stopped past its lease loses its specs to another run; when it wakes up,
    its answers land on dialogues the other already wrote: it drops them and exits cleanly."""
    fake_openai.responder = responder
    fake_openai.set_latency(0.3)
    ws = make_ws(tmp_path, 12)
    root = ws.root
    ws.close()
    cfg = root / "itcollect.toml"
    cfg.write_text(cfg.read_text(encoding="utf-8").replace("[simulate]\n", "[simulate]\nlease_s = 1\n"),
                   encoding="utf-8")
    stalled = spawn_simulate(root, fake_openai, 4, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while fake_openai.total_requests < 6 and time.time() < deadline and stalled.poll() is None:
            time.sleep(0.01)
        assert stalled.poll() is None, stalled.communicate()
        stop_outside_a_write(stalled.pid, root / "itcollect.db")
        with Store(root / "itcollect.db") as store:  # its leases (1 s, renewed every 1 s) run out
            wait_until(lambda: (store.scalar("SELECT MAX(expires_at) FROM leases") or 0) < time.time(),
                       what="the stopped process's leases to expire")
        other = run_cli("-C", str(root), "simulate", "--base-url", fake_openai.base_url, "--model", "fake-model",
                        "--concurrency", "4")
        assert other.returncode == 0, other.stderr
        assert "12 done" in other.stdout, other.stdout
    finally:
        os.kill(stalled.pid, signal.SIGCONT)
    out, err = stalled.communicate(timeout=120)
    assert stalled.returncode == 0, err
    assert "taken over by another process" in out and "Traceback" not in err, (out, err)
    ws = Workspace(root)
    assert check_dialogues(ws) == Counter(done=12)  # one dialogue per spec, no turn twice
    assert ws.store.claim_holders() == {}
    ws.close()
