"""``simulate --compare``: several systems per turn, the judge picks, the best continues — against the
loopback OpenAI server (real HTTP, several models on it, one system on a dead port), real SQLite, the
real CLI (a subprocess really killed with SIGKILL)."""

from __future__ import annotations

import json
import socket
import subprocess

import pytest

from itcollect.kernel.errors import UsageError
from itcollect.kernel.outcomes import break_tie
from itcollect.plan import plan_specs
from itcollect.simulate import SimulateOptions, run_batch_simulation, run_simulation
from itcollect.workspace import Workspace, init_workspace

from .conftest import run_cli
from .responders import JUDGE_ROLE, MARK, fill_workspace_sources, systems_responder
from .test_simulate import spawn_simulate
from .waiting import kill_9_after

#: ``m-wrong``'s answer: in the other language (English for an answer with Chinese, else Chinese), so
#: it fails simulate's language checks where a turn asks for one language (marked, so the judge ranks
#: it below ``m-a`` where the checks let it pass: a back-translation may be in either)
WRONG = {True: "This is English, sadly." + MARK, False: "这是中文，不是要求的语言。" + MARK}

CONFIG = """
[llm]
timeout_s = 5.0
max_retries = 2
backoff_base_s = 0.01
backoff_max_s = 0.02
circuit_breaker_failures = 50
concurrency = 16

[llm.judge]
model = "judge-model"

[llm.systems.down]
model = "m-down"
base_url = "{dead}"

[mix]
max_uses_per_source = 40

[batch]
poll_interval_s = 0.01
poll_max_s = 0.02

[simulate]
max_turn_retries = 2

[prices]
"m-a" = [1.0, 2.0, 0.5, 1.0]
"m-worse" = [1.0, 2.0, 0.5, 1.0]
"m-wrong" = [1.0, 2.0, 0.5, 1.0]
"m-b" = [1.0, 2.0, 0.5, 1.0]
"judge-model" = [1.0, 2.0, 0.5, 1.0]
"fake-model" = [1.0, 2.0, 0.5, 1.0]
"""


def compare_responder(body: dict) -> str:
    """:func:`~tests.responders.systems_responder` (answers marked per system, the judge strictly
    ordering them by their marks) for the systems of these tests: ``m-a`` and ``m-b`` answer alike
    (no mark: equal judgements), ``m-worse`` with one mark (judged worse), ``m-wrong`` in a wrong
    language (fails simulate's checks)."""
    messages = body.get("messages") or []
    system = messages[0]["content"] if messages and messages[0]["role"] == "system" else ""
    model = body.get("model")
    if model == "m-wrong" and not system.startswith((JUDGE_ROLE, "Role: simulated annotator")):
        return WRONG[any("\u4e00" <= c <= "\u9fff" for c in systems_responder(body))]
    return systems_responder({**body, "model": "m-worse1" if model == "m-worse" else model})


def dead_url() -> str:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    sock.close()
    return url


def make_ws(tmp_path, n: int, *, seed: int = 0) -> Workspace:
    ws = init_workspace(tmp_path / "ws")
    (ws.root / "itcollect.toml").write_text(CONFIG.format(dead=dead_url()), encoding="utf-8")
    ws.close()
    ws = Workspace(ws.root)
    fill_workspace_sources(ws.store)
    plan_specs(ws.store, ws.config, n, seed=seed)
    return ws


def opts(server, systems: str, **kw) -> SimulateOptions:
    return SimulateOptions(base_url=server.base_url, model="fake-model", compare=tuple(systems.split(",")),
                           judge_base_url=server.base_url, **kw)


def requests_by_role(server) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in server.requests:
        body = r.get("body") or {}
        system = (body.get("messages") or [{}])[0].get("content", "")
        role = ("judge" if system.startswith(JUDGE_ROLE) else
                "annotator" if system.startswith("Role: simulated annotator") else body.get("model", "?"))
        out[role] = out.get(role, 0) + 1
    return out


def comparisons(ws: Workspace) -> list[dict]:
    return [c for d in ws.store.iter_dialogues() for c in ws.store.comparisons_of(d["id"])]


def test_every_answer_is_compared_the_judged_best_continues_and_a_rerun_pays_nothing(tmp_path, fake_openai):
    fake_openai.responder = compare_responder
    ws = make_ws(tmp_path, 12)
    summary = run_simulation(ws, opts(fake_openai, "m-a,m-worse,m-wrong"), show_progress=False)
    assert summary.done == 12 and summary.failed == 0, summary.failures
    store = ws.store
    answers = rejected = 0
    for d in store.iter_dialogues():
        turns = store.get_turns(d["id"])
        by_idx = {c["idx"]: c for c in store.comparisons_of(d["id"])}
        assert d["status"] == "done" and sorted(by_idx) == [t["idx"] for t in turns if t["role"] == "assistant"]
        assert [s["name"] for s in store.dialogue_systems(d["id"])] == ["m-a", "m-worse", "m-wrong"]
        for t in turns:
            if t["role"] != "assistant":
                continue
            answers += 1
            c = by_idx[t["idx"]]
            cands = {x["system"]: x for x in c["candidates"]}
            assert c["status"] == "decided" and c["chooser"] == "judge" and c["winner"] == "m-a" and not c["tie"]
            assert c["turn_id"] == t["id"] and t["model"] == "m-a" and t["content"] == cands["m-a"]["content"]
            wrong = cands["m-wrong"]
            if wrong["status"] == "rejected":  # failed simulate's checks: it loses, never judged
                rejected += 1
                assert wrong["judge_status"] is None and wrong["warnings"] and c["ranking"][-1] == ["m-wrong"]
            else:
                assert wrong["judge_status"] == "judged" and c["ranking"][0] == ["m-a"]
            for name in ("m-a", "m-worse"):  # judged, with their provenance
                x = cands[name]
                assert x["status"] == "answered" and x["judge_status"] == "judged" and x["judge_model"] == "judge-model"
                assert x["call_key"] and x["judge_call_key"] and len(x["prompt_hash"]) == 64 and x["prompt_tokens"] > 0
            assert len({x["prompt_hash"] for x in cands.values()}) == 1
    assert rejected > answers // 2
    # one call per system and a judgement per candidate that passed the checks, each paid once
    by_role = requests_by_role(fake_openai)
    assert by_role["m-a"] == by_role["m-worse"] == by_role["m-wrong"] == answers
    assert by_role["judge"] == 3 * answers - rejected and not fake_openai.paid_twice()
    assert summary.compare.compared == answers and summary.compare.void == 0 and summary.compare.ties == 0
    runs = store.compare_runs()
    assert len(runs) == 1 and [s["name"] for s in runs[0]["systems"]] == ["m-a", "m-worse", "m-wrong"]
    assert runs[0]["judge_model"] == "judge-model" and runs[0]["chooser"] == "judge" and runs[0]["finished_at"]
    fake_openai.reset()
    again = run_simulation(ws, opts(fake_openai, "m-a,m-worse,m-wrong"), show_progress=False)
    assert again.done == 0 and fake_openai.total_requests == 0
    ws.close()


def test_equal_answers_are_a_tie_recorded_and_the_seed_chooses_which_continues(tmp_path, fake_openai):
    fake_openai.responder = compare_responder
    ws = make_ws(tmp_path, 8, seed=3)
    summary = run_simulation(ws, opts(fake_openai, "m-a,m-b"), show_progress=False)
    assert summary.done == 8
    cs = comparisons(ws)
    assert cs and all(c["tie"] and c["status"] == "decided" and c["ranking"] == [["m-a", "m-b"]] for c in cs)
    for c in cs:
        assert c["winner"] == break_tie(["m-a", "m-b"], 3, c["dialogue_id"], c["idx"])
        turn = next(t for t in ws.store.get_turns(c["dialogue_id"]) if t["idx"] == c["idx"])
        assert turn["model"] == c["winner"]
    assert {c["winner"] for c in cs} == {"m-a", "m-b"}  # the seed, not the order, chooses
    assert summary.compare.ties == summary.compare.compared == len(cs)
    ws.close()


def test_a_system_whose_endpoint_is_down_fails_and_the_turn_goes_on(tmp_path, fake_openai):
    fake_openai.responder = compare_responder
    ws = make_ws(tmp_path, 4)
    summary = run_simulation(ws, opts(fake_openai, "m-a,m-worse,down"), show_progress=False)
    assert summary.done == 4 and summary.compare.compared > 0
    for c in comparisons(ws):
        down = next(x for x in c["candidates"] if x["system"] == "down")
        assert down["status"] == "failed" and "down's answer for turn" in down["failure"] and down["model"] == "m-down"
        assert c["status"] == "decided" and c["winner"] == "m-a"
    ws.close()
    # two systems, one down: fewer than two answers, not a comparison (void, says so); the one answer continues
    ws2 = make_ws(tmp_path / "two", 3)
    summary = run_simulation(ws2, opts(fake_openai, "m-a,down"), show_progress=False)
    assert summary.done == 3 and summary.compare.compared == 0 and summary.compare.void > 0
    cs = comparisons(ws2)
    assert cs and all(c["status"] == "void" and "fewer than two answers" in c["reason"] and c["turn_id"] for c in cs)
    assert not ws2.store.has_comparisons()
    ws2.close()


def test_fewer_than_two_systems_or_one_twice_is_a_usage_error_naming_the_configured_ones(tmp_path, fake_openai):
    ws = make_ws(tmp_path, 2)
    root = ws.root
    with pytest.raises(UsageError):
        run_simulation(ws, opts(fake_openai, "m-a"), show_progress=False)
    ws.close()
    for systems, said in (("m-a", "two or more systems, got 1"), ("m-a,down,m-a", "names m-a more than once")):
        r = run_cli("-C", str(root), "simulate", "--base-url", fake_openai.base_url, "--compare", systems)
        assert r.returncode == 2, r.stderr
        assert said in r.stderr and "configured systems ([llm.systems.NAME]): down" in r.stderr
    r = run_cli("-C", str(root), "simulate", "--judge-model", "j")
    assert r.returncode == 2 and "--judge-model and --judge-base-url go with --compare" in r.stderr
    assert fake_openai.total_requests == 0


def test_replay_specs_go_to_compare_runs_only(tmp_path, fake_openai):
    fake_openai.responder = compare_responder
    ws = make_ws(tmp_path, 3)
    spec = next(ws.store.iter_specs())
    ws.store.add_replay_specs([{**spec, "replay_of": "dialogue-x", "seed": 9}])
    plain = run_simulation(ws, SimulateOptions(base_url=fake_openai.base_url, model="fake-model"), show_progress=False)
    assert plain.done == 3
    replay = [s for s in ws.store.iter_specs() if s["status"] == "pending"]
    assert len(replay) == 1 and replay[0]["seed"] == 9  # a plain simulate leaves the replay
    plain_opts = SimulateOptions(base_url=fake_openai.base_url, model="fake-model", dry_run=True)
    assert run_simulation(ws, plain_opts, show_progress=False).estimate["dialogues"] == 0  # nor counts it
    summary = run_simulation(ws, opts(fake_openai, "m-a,m-worse"), show_progress=False)
    assert summary.done == 1 and ws.store.spec_counts()["pending"] == 0
    d = ws.store.dialogue_for_spec(replay[0]["id"])
    assert d is not None and ws.store.comparisons_of(d["id"])
    # a dialogue a comparison started, back to pending (an interrupted run): a plain run neither
    # claims nor counts it, a compare run does
    from itcollect.simulate import DialogueDriver

    plan_specs(ws.store, ws.config, 1, seed=5)
    new = next(s for s in ws.store.iter_specs(("pending",)))
    started = DialogueDriver(ws.config).load_or_create(ws.store, new)
    ws.store.set_dialogue_systems(started.dialogue_id, [{"name": "m-a", "model": "m-a"}, {"name": "m-b", "model": "m-b"}])
    assert run_simulation(ws, plain_opts, show_progress=False).estimate["dialogues"] == 0
    assert run_simulation(ws, SimulateOptions(base_url=fake_openai.base_url, model="fake-model"),
                          show_progress=False).done == 0
    assert run_simulation(ws, opts(fake_openai, "m-a,m-worse", dry_run=True), show_progress=False).estimate["dialogues"] == 1
    again = run_simulation(ws, opts(fake_openai, "m-a,m-worse"), show_progress=False)
    assert again.done == 1 and again.compare.own_systems == 1
    assert {x["system"] for c in ws.store.comparisons_of(started.dialogue_id) for x in c["candidates"]} == {"m-a", "m-b"}
    ws.close()


def test_kill_9_then_a_run_with_other_systems_pays_nothing_twice_and_keeps_each_dialogues_systems(tmp_path, fake_openai):
    fake_openai.responder = compare_responder
    fake_openai.set_latency((0.02, 0.06))
    ws = make_ws(tmp_path, 30)
    root = ws.root
    ws.close()
    proc = spawn_simulate(root, fake_openai, 8, "--judge-base-url", fake_openai.base_url, "--compare", "m-a,m-worse",
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    kill_9_after(proc, fake_openai, 120)
    ws = Workspace(root)
    in_flight_at_kill = ws.store.ledger_counts().get("pending", 0)
    started = {d["id"] for d in ws.store.iter_dialogues()}
    assert ws.store.spec_counts()["done"] < 30 and started
    ws.close()
    r = run_cli("-C", str(root), "simulate", "--base-url", fake_openai.base_url, "--model", "fake-model",
                "--judge-base-url", fake_openai.base_url, "--compare", "m-a,m-b", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["done"] > 0 and out["compare"]["own_systems"] > 0 and out["compare"]["systems"] == ["m-a", "m-b"]
    ws = Workspace(root)
    assert ws.store.spec_counts()["done"] == 30
    needed = ws.store.ledger_counts()["done"]
    assert fake_openai.total_requests <= needed + in_flight_at_kill
    assert len(fake_openai.paid_twice()) <= in_flight_at_kill
    for d in ws.store.iter_dialogues():  # a dialogue's candidates are its own systems' only
        names = {x["system"] for c in ws.store.comparisons_of(d["id"]) for x in c["candidates"]}
        kept = [s["name"] for s in ws.store.dialogue_systems(d["id"])]
        assert names == set(kept)
        if d["id"] in started and ws.store.comparisons_of(d["id"]):
            assert kept == ["m-a", "m-worse"]
    assert {tuple(s["name"] for s in run["systems"]) for run in ws.store.compare_runs()} == {
        ("m-a", "m-worse"), ("m-a", "m-b")}
    ws.close()


def outcome_of(ws: Workspace) -> dict:
    """What each compared turn came to, by the spec and position (the same plan in two workspaces)."""
    spec_of = {d["id"]: d["spec_id"] for d in ws.store.iter_dialogues()}
    return {(spec_of[c["dialogue_id"]], c["idx"]): (c["status"], c["winner"], c["ranking"],
                                                    sorted((x["system"], x["status"]) for x in c["candidates"]))
            for c in comparisons(ws)}


def test_batch_api_rounds_compare_the_same_way_as_online(tmp_path, batch_server, fake_openai):
    batch_server.responder = compare_responder
    batch_server.batch_api.polls_before_done = 0
    fake_openai.responder = compare_responder
    ws = make_ws(tmp_path / "batch", 6)
    summary = run_batch_simulation(ws, opts(batch_server, "m-a,m-worse,m-wrong"))
    assert summary.done == 6 and summary.failed == 0 and summary.compare.compared > 0
    # candidates of a turn go out in one round, their judgements in the next
    assert summary.rounds >= 2 and batch_server.total_requests == 0  # nothing online
    online = make_ws(tmp_path / "online", 6)
    run_simulation(online, opts(fake_openai, "m-a,m-worse,m-wrong"), show_progress=False)
    assert outcome_of(ws) == outcome_of(online) and len(outcome_of(ws)) == summary.compare.compared
    submitted = summary.submitted
    again = run_batch_simulation(ws, opts(batch_server, "m-a,m-worse,m-wrong"))
    assert again.submitted == 0 and again.done == 0 and submitted == ws.store.ledger_counts()["done"]
    ws.close()
    online.close()


def test_dry_run_counts_n_answers_and_n_judgements_per_answer(tmp_path, fake_openai):
    ws = make_ws(tmp_path, 10)
    plain = run_batch_simulation(ws, SimulateOptions(base_url=fake_openai.base_url, model="fake-model", dry_run=True))
    compared = run_batch_simulation(ws, opts(fake_openai, "m-a,m-worse,m-wrong", dry_run=True))
    p, c = plain.estimate["by_role"], compared.estimate["by_role"]
    assert p["assistant"] > 0 and p["annotator"] > 0
    assert c == {"annotator": p["annotator"], "system:m-a": p["assistant"], "system:m-worse": p["assistant"],
                 "system:m-wrong": p["assistant"], "judge": 3 * p["assistant"]}
    assert compared.estimate["compare"] == {"systems": ["m-a", "m-worse", "m-wrong"], "judge_model": "judge-model"}
    online = run_simulation(ws, opts(fake_openai, "m-a,m-worse,m-wrong", dry_run=True), show_progress=False)
    assert online.estimate["calls"] == p["annotator"] + 6 * p["assistant"]
    assert online.estimate["cost_usd"] > run_simulation(ws, SimulateOptions(
        base_url=fake_openai.base_url, model="fake-model", dry_run=True), show_progress=False).estimate["cost_usd"]
    assert fake_openai.total_requests == 0 and ws.store.dialogue_counts()["total"] == 0 and not ws.store.compare_runs()
    ws.close()


def test_max_cost_stops_a_compare_run_and_the_next_run_continues(tmp_path, fake_openai):
    fake_openai.responder = compare_responder
    ws = make_ws(tmp_path, 8)
    first = run_simulation(ws, opts(fake_openai, "m-a,m-worse", max_cost=0.0005, concurrency=2), show_progress=False)
    assert first.stop_kind == "cost" and first.done < 8 and first.calls["cost_usd"] >= 0.0005
    rest = run_simulation(ws, opts(fake_openai, "m-a,m-worse"), show_progress=False)
    assert first.done + rest.done == 8 and not fake_openai.paid_twice()
    ws.close()


def test_stats_and_the_preference_export_read_what_a_compare_run_wrote(tmp_path, fake_openai):
    import datasets

    fake_openai.responder = compare_responder
    ws = make_ws(tmp_path, 10)
    summary = run_simulation(ws, opts(fake_openai, "m-a,m-worse,m-wrong"), show_progress=False)
    root, turns = ws.root, summary.compare.compared
    ws.close()
    r = run_cli("-C", str(root), "stats", "--compare", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    stats = out.get("compare", out)  # --compare --json: the compare section
    assert stats["turns"] == turns and stats["by_chooser"]["judge"] == turns
    assert stats["by_system"]["m-a"]["wins"] == turns and stats["by_system"]["m-a"]["win_rate"] == 1.0
    assert stats["by_system"]["m-worse"]["losses"] == stats["by_system"]["m-wrong"]["losses"] == turns
    assert stats["strength"]["m-a"] > stats["strength"]["m-worse"]
    assert run_cli("-C", str(root), "filter").returncode == 0
    r = run_cli("-C", str(root), "export", "--hf", str(tmp_path / "out"), "--format", "dpo")
    assert r.returncode == 0, r.stderr
    dd = datasets.load_from_disk(str(tmp_path / "out" / "dpo"))
    rows = [row for split in dd for row in dd[split]]
    assert rows and all(row["chosen_system"] == "m-a" and row["chooser"] == "judge" for row in rows)
    assert {row["rejected_system"] for row in rows} <= {"m-worse", "m-wrong"}
    assert all(row["prompt"][-1]["role"] == "user" and row["chosen"][0]["role"] == "assistant" for row in rows)


def test_an_unreachable_judge_stops_the_run_with_one_clear_line(tmp_path, fake_openai):
    fake_openai.responder = compare_responder
    ws = make_ws(tmp_path, 3)
    root = ws.root
    ws.close()
    dead = dead_url()
    r = run_cli("-C", str(root), "simulate", "--base-url", fake_openai.base_url, "--model", "fake-model",
                "--compare", "m-a,m-worse", "--judge-base-url", dead)
    assert r.returncode == 1
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and dead.split("//")[1] in lines[0], r.stderr
    ws = Workspace(root)
    assert not ws.store.has_comparisons() and ws.store.spec_counts()["done"] == 0
    ws.close()


def test_an_unknown_system_is_one_clear_line(tmp_path):
    from tests.fakeserver import FakeOpenAI

    server = FakeOpenAI(models=("fake-model", "m-a", "judge-model"), strict_models=True,
                        responder=compare_responder).start()
    try:
        ws = make_ws(tmp_path, 2)
        root = ws.root
        ws.close()
        r = run_cli("-C", str(root), "simulate", "--base-url", server.base_url, "--model", "fake-model",
                    "--judge-base-url", server.base_url, "--compare", "m-a,no-such-model")
        assert r.returncode == 1
        lines = [line for line in r.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and "404" in lines[0] and "no-such-model" in lines[0] and "model name" in lines[0], r.stderr
    finally:
        server.stop()


@pytest.mark.parametrize("phase", ["uploaded", "collected"])
def test_batch_api_compare_killed_then_resumed_pays_each_call_once(tmp_path, batch_server, phase):
    from .test_batch import MODEL, check_exactly_once, kill_batch_run_at

    batch_server.responder = compare_responder
    batch_server.batch_api.polls_before_done = 1
    ws = make_ws(tmp_path, 6)
    args = ("--judge-base-url", batch_server.base_url, "--compare", "m-a,m-worse")
    kill_batch_run_at(phase, ws, batch_server, tmp_path / "paused", *args)
    r = run_cli("-C", str(ws.root), "simulate", "--batch-api", "--base-url", batch_server.base_url,
                "--model", MODEL, *args, "--json")  # the killed run's models, so its calls are the same calls
    assert r.returncode == 0, r.stderr
    assert ws.store.spec_counts()["done"] == 6 and json.loads(r.stdout)["compare"]["compared"] > 0
    check_exactly_once(batch_server.batch_api, ws)
    cs = comparisons(ws)
    assert cs and all(c["status"] == "decided" and c["winner"] == "m-a" for c in cs)
    ws.close()
