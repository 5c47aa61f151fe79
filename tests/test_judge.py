"""``itcollect judge`` against the loopback OpenAI server: parsing, arithmetic, idempotence, kill -9."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from itcollect.judge import JudgeOptions, Weights, parse_judgement, run_judge
from itcollect.llm.judgement.parse import Unparsable, extract_json, mqm_score
from itcollect.llm.judgement.schema import json_schema
from itcollect.workspace import Workspace

from .conftest import REPO, run_cli
from .judging import (
    CONFIG,
    GARBAGE,
    TRUNCATED,
    VARIANTS,
    imported,
    judge_rows,
    make_ws,
    simulated,
    variant_answer,
    variant_responder,
)
from .responders import JUDGE_ROLE, judge_item, responder
from .waiting import kill_9_after


def judge(ws, server, **kw):
    return run_judge(ws, JudgeOptions(base_url=server.base_url, model=kw.pop("model", "judge-model"), **kw),
                     show_progress=False)


def judge_calls(server) -> list[dict]:
    return [r for r in server.requests if r.get("body", {}).get("messages", [{}])[0].get("content", "")
            .startswith(JUDGE_ROLE)]


# -- parsing and arithmetic (pure) ----------------------------------------------------------------------
@pytest.mark.parametrize("text,score,n_errors", [
    ('{"errors": []}', 0.0, 0),
    ('{"errors": [{"span": "a", "category": "accuracy/mistranslation", "severity": "major"}]}', -5.0, 1),
    ('Sure. {"errors": [{"span": "a", "category": "style", "severity": "minor"}]} Done.', -1.0, 1),
    ('```json\n{"errors": [{"span": "a", "category": "Mistranslation", "severity": "Critical"}]}\n```', -25.0, 1),
    ('{"errors": [{"span": "a", "category": "made-up", "severity": "major"}, '
     '{"span": "b", "category": "style", "severity": "weird"}]}', -5.0, 2),
    ('[{"span": "a", "category": "fluency/grammar", "severity": "minor"}]', -1.0, 1),
    ('{"errors": [{"category": "no-error", "severity": "no-error"}]}', 0.0, 0),
])
def test_parse_translation_judgements(text, score, n_errors):
    j = parse_judgement(text, "translation", False, Weights.from_config())
    assert j.score == score and len(j.errors) == n_errors


def test_mqm_arithmetic_weights_and_floor():
    w = Weights(minor=1, major=5, critical=25, non_translation=25, floor=-25)
    errs = [{"category": "style", "severity": "minor"}] * 3 + [{"category": "terminology", "severity": "major"}]
    assert mqm_score(errs, w) == (-8.0, 0)
    assert mqm_score(errs * 4, w) == (-25.0, 0)  # 32 floored at 25
    assert mqm_score([{"category": "non_translation", "severity": "minor"}], w) == (-25.0, 1)
    assert mqm_score([{"category": "other", "severity": "unknown"}], w) == (0.0, 0)  # recorded, not scored
    custom = Weights(minor=0.5, major=2, critical=10, non_translation=10, floor=-12)
    assert mqm_score([{"category": "style", "severity": "minor"}, {"category": "x", "severity": "critical"},
                      {"category": "y", "severity": "critical"}], custom) == (-12.0, 2)
    # parsed unknown category -> other, unknown severity kept as given
    j = parse_judgement('{"errors": [{"span": "s", "category": "Fluency - Inconsistency", "severity": "Neutral"}]}',
                        "translation", False, w)
    assert j.errors == [{"category": "other", "severity": "neutral", "span": "s"}] and j.score == 0.0


@pytest.mark.parametrize("text,kind,revision,why", [
    (TRUNCATED, "translation", False, "no JSON"),
    (GARBAGE, "translation", False, "no JSON"),
    ('{"errors": "none"}', "translation", False, "not a list"),
    ('{"errors": ["bad"]}', "translation", False, "not an object"),
    ('{"errors": []}', "translation", True, "compliance"),
    ('{"errors": [], "compliance": "maybe"}', "translation", True, "compliance"),
    ('{"rating": 7, "in_instruction_language": true, "compliance": "yes"}', "rating", True, "rating"),
    ('{"rating": 4, "compliance": "yes"}', "rating", True, "in_instruction_language"),
    ('{"verdict": "ok"}', "translation", False, "errors"),
])
def test_unparsable_answers_say_why(text, kind, revision, why):
    with pytest.raises(Unparsable, match=why):
        parse_judgement(text, kind, revision, Weights.from_config())


def test_revision_and_rating_fields_are_normalised():
    j = parse_judgement('{"errors": [], "compliance": "Partially", "reason": "the term\\nis pasted"}',
                        "translation", True, Weights.from_config())
    assert j.compliance == "partly" and j.reason == "the term is pasted"
    j = parse_judgement('{"rating": "4/5", "in_instruction_language": "no", "compliance": false, "reason": "x"}',
                        "rating", True, Weights.from_config())
    assert (j.rating, j.in_instruction_language, j.compliance) == (4, False, "no")
    assert extract_json('x {"a": 1} y {"b": 2}') == {"a": 1}


def test_schemas_are_strict_objects():
    for kind in ("translation", "rating"):
        for revision in (False, True):
            s = json_schema(kind, revision)
            assert s["additionalProperties"] is False and set(s["required"]) == set(s["properties"])
            assert ("compliance" in s["properties"]) == revision


# -- the run against the loopback server ------------------------------------------------------------------
def test_every_reply_shape_is_parsed_or_recorded_unparsed(tmp_path, fake_openai):
    fake_openai.responder = variant_responder
    ws = make_ws(tmp_path)
    names = list(VARIANTS)
    ids = imported(ws, tmp_path, [variant_answer(v, i) for i, v in enumerate(names)])
    summary = judge(ws, fake_openai)
    rows = {r["dialogue_id"]: r for r in judge_rows(ws)}
    got = {v: rows[ids[i]] for i, v in enumerate(names)}
    expected_scores = {"wellformed": -6.0, "prose": -25.0, "fence": -2.0, "unknown": -6.0, "clean": 0.0,
                       "pileup": -25.0, "nontranslation": -25.0, "truncatedonce": 0.0}
    for v, score in expected_scores.items():
        assert got[v]["status"] == "judged" and got[v]["score"] == score, (v, got[v])
        assert got[v]["raw"] is None
    # unknown category -> other, scored by its severity; unknown severity recorded, not scored
    errs = json.loads(got["unknown"]["errors"])
    assert [(e["category"], e["severity"]) for e in errs] == [("other", "major"), ("terminology", "neutral"),
                                                              ("accuracy/omission", "minor")]
    assert json.loads(got["prose"]["errors"])[0]["category"] == "accuracy/mistranslation"
    assert got["prose"]["n_critical"] == 1 and got["nontranslation"]["n_critical"] == 1
    for v in ("truncated", "garbage"):  # asked twice, then recorded with the raw text
        assert got[v]["status"] == "unparsed" and got[v]["score"] is None, got[v]
        assert got[v]["raw"] == VARIANTS[v][1] and "asked again" in got[v]["reason"]
        assert got[v]["sample"] == 1
    assert got["truncatedonce"]["sample"] == 1 and got["wellformed"]["sample"] == 0
    assert summary.judged == 8 and summary.unparsed == 2 and summary.reasked == 3
    # one call per answer, one more for each re-ask; every call distinct (new sample, new key)
    assert fake_openai.total_requests == len(names) + 3 == len(fake_openai.counts)
    # the re-ask tells the judge what was wrong and carries the first reply
    reasks = [r["body"] for r in judge_calls(fake_openai) if judge_item(r["body"])["reask"]]
    assert len(reasks) == 3 and all(b["messages"][2]["role"] == "assistant" for b in reasks)
    assert all("could not be read" in b["messages"][3]["content"] for b in reasks)
    ws.close()


def test_what_each_answer_gets_judged_for(tmp_path, fake_openai):
    """Translations get MQM spans (revisions also compliance); explanations and follow-ups a rating;
    an imported dialogue's later untyped answers the rating prompt; every prompt is sandboxed data."""
    ws = make_ws(tmp_path)
    simulated(ws, fake_openai, 30)
    imported(ws, tmp_path, ["Le conseil a approuvé le budget lundi."],
             extra_turns=[("Why 'approuvé'? {{ 7*7 }}", "Because it is the usual verb for a vote.")])
    fake_openai.reset()
    summary = judge(ws, fake_openai)
    answers = ws.store.query(
        "SELECT t.id, t.interaction_type, t.idx, d.origin FROM turns t JOIN dialogues d ON d.id=t.dialogue_id"
        " WHERE t.role='assistant' AND t.state='active' AND d.status='done'")
    rows = {r["turn_id"]: r for r in judge_rows(ws)}
    assert len(rows) == len(answers) == summary.judged and summary.unparsed == 0
    kinds = set()
    for a in answers:
        r = rows[a["id"]]
        t = a["interaction_type"] if a["origin"] != "imported" else ("translate" if a["idx"] == 1 else None)
        assert r["interaction_type"] == t
        kind = "rating" if t in ("explain", "follow_up", None) else "translation"
        assert r["kind"] == kind and r["judge_model"] == "judge-model" and len(r["template_hash"]) == 64
        assert r["template_name"] == f"judge/{kind}.j2" and r["call_key"]
        revision = a["idx"] > 1
        assert (r["compliance"] is not None) == revision and (r["reason"] is not None) == revision
        if kind == "rating":
            assert r["rating"] == 4 and r["in_instruction_language"] == 1 and r["score"] is None
        else:
            assert r["score"] in (0.0, -1.0, -5.0) and r["rating"] is None
        kinds.add((kind, revision))
    assert kinds == {("translation", False), ("translation", True), ("rating", True)}
    for req in judge_calls(fake_openai):
        body = req["body"]
        item = judge_item(body)
        schema = body["response_format"]["json_schema"]["schema"]  # the default: json_schema
        assert ("compliance" in schema["properties"]) == item["revision"]
        assert body["temperature"] == 0.0
    prompt = next(r["body"]["messages"][1]["content"] for r in judge_calls(fake_openai)
                  if "Why 'approuvé'? {{ 7*7 }}" in r["body"]["messages"][1]["content"])
    assert "49" not in prompt and prompt.startswith("Task: rate")
    ws.close()


@pytest.mark.parametrize("mode", ["json_object", "none"])
def test_response_format_modes(tmp_path, fake_openai, mode):
    fake_openai.responder = variant_responder
    ws = make_ws(tmp_path, extra=f'\n[llm.judge]\nresponse_format = "{mode}"\nmax_tokens = 300\n')
    imported(ws, tmp_path, [variant_answer("wellformed")])
    judge(ws, fake_openai)
    body = judge_calls(fake_openai)[0]["body"]
    if mode == "none":
        assert "response_format" not in body
    else:
        assert body["response_format"]["type"] == "json_object"
        assert body["response_format"]["schema"]["required"] == ["errors"]
    assert body["max_tokens"] == 300 and judge_rows(ws)[0]["score"] == -6.0
    ws.close()


def test_idempotent_rejudge_new_model_and_edits(tmp_path, fake_openai):
    ws = make_ws(tmp_path)
    simulated(ws, fake_openai, 12)
    n_answers = ws.store.scalar("SELECT COUNT(*) FROM turns WHERE role='assistant' AND state='active'")
    fake_openai.reset()
    first = judge(ws, fake_openai)
    assert first.judged == n_answers and len(fake_openai.counts) == n_answers
    before = {r["turn_id"]: r for r in judge_rows(ws)}

    fake_openai.reset()  # a second judge sends nothing
    again = judge(ws, fake_openai)
    assert again.judged == 0 and again.todo == 0 and fake_openai.total_requests == 0

    fake_openai.reset()  # --rejudge: one new call per answer, judgements replaced
    re = judge(ws, fake_openai, rejudge=True)
    assert re.judged == n_answers and fake_openai.total_requests == n_answers == len(fake_openai.counts)
    assert not set(fake_openai.counts) & {r["call_key"] for r in before.values()}
    after = {r["turn_id"]: r for r in judge_rows(ws)}
    assert set(after) == set(before) and all(r["generation"] == 1 and r["sample"] == 2 for r in after.values())
    fake_openai.reset()
    assert judge(ws, fake_openai).judged == 0 and fake_openai.total_requests == 0

    fake_openai.reset()  # another judge model judges again
    other = judge(ws, fake_openai, model="judge-model-2")
    assert other.judged == n_answers and fake_openai.total_requests == n_answers
    assert {r["judge_model"] for r in judge_rows(ws)} == {"judge-model-2"}

    # an edited answer: its dialogue is judged again; the unchanged prompts come from the ledger
    d = next(ws.store.iter_dialogues(("done",)))
    turns = ws.store.get_turns(d["id"])
    last = turns[-1]
    ws.store.update_turn(last["id"], content=last["content"] + " (edited)", author="human",
                         original_content=last["content"])
    fake_openai.reset()
    edited = judge(ws, fake_openai, model="judge-model-2")
    n_d = sum(1 for t in turns if t["role"] == "assistant")
    assert edited.judged == n_d and fake_openai.total_requests == 1 and edited.calls["from_ledger"] == n_d - 1
    # a review verdict changes the dialogue, not its turns: nothing to judge again
    ws.store.set_review(d["id"], "rev", "accepted")
    fake_openai.reset()
    assert judge(ws, fake_openai, model="judge-model-2").judged == 0 and fake_openai.total_requests == 0
    ws.close()


def test_limit_dry_run_and_cli(tmp_path, fake_openai):
    ws = make_ws(tmp_path)
    simulated(ws, fake_openai, 10)
    root = ws.root
    n_answers = ws.store.scalar("SELECT COUNT(*) FROM turns WHERE role='assistant' AND state='active'")
    ws.close()
    fake_openai.reset()
    r = run_cli("-C", str(root), "judge", "--base-url", fake_openai.base_url, "--model", "gpt-4o", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert f"dry run: {n_answers} answers to judge" in r.stdout and "$" in r.stdout
    assert fake_openai.total_requests == 0
    ws = Workspace(root)
    assert ws.store.scalar("SELECT COUNT(*) FROM judgements") == 0
    assert ws.store.scalar("SELECT COUNT(*) FROM llm_runs WHERE command='judge'") == 0
    ws.close()
    r = run_cli("-C", str(root), "judge", "--base-url", fake_openai.base_url, "--model", "judge-model", "--limit",
                "5", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["judged"] == 5 and out["calls"]["sent"] == 5 and fake_openai.total_requests == 5
    r = run_cli("-C", str(root), "judge", "--base-url", fake_openai.base_url, "--model", "judge-model",
                env={"ITCOLLECT_PROGRESS": "1"})
    assert r.returncode == 0, r.stderr
    assert f"{n_answers - 5} judged, 0 unparsed of {n_answers - 5} answers" in r.stdout
    assert "judge" in r.stderr and "calls/s" in r.stderr  # the progress bar
    assert "warning" not in r.stderr
    # the judge model is the model that wrote the answers: a warning, not a refusal
    r = run_cli("-C", str(root), "judge", "--base-url", fake_openai.base_url, "--model", "fake-model", "--limit", "1")
    assert r.returncode == 0 and "itcollect: warning: the judge model fake-model" in r.stderr
    # usage errors
    r = run_cli("-C", str(root), "judge", "--batch-api", "--local")
    assert r.returncode == 2 and "no Batch API" in r.stderr
    r = run_cli("-C", str(root), "judge", "--limit", "-1")
    assert r.returncode == 2


def test_endpoint_down_exits_1_and_keeps_judgements(tmp_path, fake_openai):
    ws = make_ws(tmp_path)
    simulated(ws, fake_openai, 6)
    root = ws.root
    ws.close()
    cfg = root / "itcollect.toml"
    cfg.write_text(cfg.read_text(encoding="utf-8").replace("circuit_breaker_failures = 50",
                                                           "circuit_breaker_failures = 2"), encoding="utf-8")
    fake_openai.set_faults({"500": 1.0})
    r = run_cli("-C", str(root), "judge", "--base-url", fake_openai.base_url, "--model", "judge-model",
                "--concurrency", "1")
    assert r.returncode == 1 and "Traceback" not in r.stderr and "re-run to continue" in r.stderr
    fake_openai.set_faults({})
    r = run_cli("-C", str(root), "judge", "--base-url", fake_openai.base_url, "--model", "judge-model")
    assert r.returncode == 0, r.stderr
    ws = Workspace(root)
    assert ws.store.scalar("SELECT COUNT(*) FROM judgements WHERE status='judged'") == ws.store.scalar(
        "SELECT COUNT(*) FROM turns WHERE role='assistant' AND state='active'")
    ws.close()


def test_kill_9_then_rerun_judges_every_answer_once(tmp_path, fake_openai):
    ws = make_ws(tmp_path)
    simulated(ws, fake_openai, 60)
    root = ws.root
    n_answers = ws.store.scalar("SELECT COUNT(*) FROM turns WHERE role='assistant' AND state='active'")
    ws.close()
    fake_openai.reset()
    fake_openai.set_latency((0.02, 0.08))
    env = dict(os.environ, ITCOLLECT_PROGRESS="0")
    env.pop("OPENAI_BASE_URL", None)
    proc = subprocess.Popen([sys.executable, "-m", "itcollect", "-C", str(root), "judge", "--base-url",
                             fake_openai.base_url, "--model", "judge-model", "--concurrency", "8"],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    kill_9_after(proc, fake_openai, n_answers // 2)
    ws = Workspace(root)
    in_flight_at_kill = ws.store.scalar("SELECT COUNT(*) FROM llm_calls WHERE role='judge' AND status='pending'")
    answered_at_kill = ws.store.scalar("SELECT COUNT(*) FROM llm_calls WHERE role='judge' AND status='done'")
    judged_at_kill = ws.store.scalar("SELECT COUNT(DISTINCT call_key) FROM judgements")
    assert 0 < answered_at_kill < n_answers and judged_at_kill <= answered_at_kill
    ws.close()
    fake_openai.set_latency(0)
    r = run_cli("-C", str(root), "judge", "--base-url", fake_openai.base_url, "--model", "judge-model", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    ws = Workspace(root)
    rows = judge_rows(ws)
    assert len(rows) == n_answers == len({r["turn_id"] for r in rows})  # every answer judged, once
    assert all(r["status"] == "judged" and r["generation"] == 0 for r in rows)
    # the re-run sent only the calls that never came back (answers with the same source and the
    # same translation share one call); answered ones came from the ledger
    needed = ws.store.scalar("SELECT COUNT(*) FROM llm_calls WHERE role='judge' AND status='done'")
    assert needed == len({r["call_key"] for r in rows}) <= n_answers
    assert out["calls"]["sent"] == needed - answered_at_kill
    # answers paid for whose judgement the kill lost are rebuilt from the ledger
    assert out["calls"]["from_ledger"] >= answered_at_kill - judged_at_kill
    assert fake_openai.total_requests <= needed + in_flight_at_kill
    assert len(fake_openai.paid_twice()) <= in_flight_at_kill
    assert set(fake_openai.paid_twice()) <= {r["call_key"] for r in rows}
    ws.close()
    fake_openai.reset()
    r = run_cli("-C", str(root), "judge", "--base-url", fake_openai.base_url, "--model", "judge-model")
    assert r.returncode == 0 and fake_openai.total_requests == 0


def test_simulate_and_session_do_not_build_the_judge_role(tmp_path, fake_openai):
    """The judge role is built only for judge: a broken [llm.judge] never stops simulate."""
    from itcollect.config import parse_config
    from itcollect.llm import EndpointFlags, LLMClient, resolve_endpoints

    ws = make_ws(tmp_path)
    cfg = parse_config('[llm.judge]\nbase_url = "http://127.0.0.1:9/v1"\n')
    import asyncio

    async def go():
        c = LLMClient(cfg, ws.store, command="t", base_url=fake_openai.base_url, model="m")
        assert c.roles == ("assistant", "annotator")
        with pytest.raises(ValueError, match="not set up"):
            c.model_for("judge")
        await c.aclose()
        j = LLMClient(cfg, ws.store, command="t", endpoints=resolve_endpoints(
            cfg.settings, ("judge",), flags={"judge": EndpointFlags(model="jm")}))
        assert j.roles == ("judge",) and j.model_for("judge") == "jm"
        assert j.base_url_for("judge") == "http://127.0.0.1:9/v1"
        await j.aclose()

    asyncio.run(go())
    ws.close()


def test_responder_dispatches_judge_prompts():
    body = {"messages": [{"role": "system", "content": JUDGE_ROLE + "\n..."},
                         {"role": "user", "content": "Task: rate ...\n<answer>\nIt is fine.\n</answer>\n\nReply with one "
                                                     "JSON object: {\"rating\": 1-5, \"compliance\": ...}"}]}
    assert json.loads(responder(body))["rating"] == 4


@pytest.fixture
def judge_batch_server():
    from .fake_batch import FakeBatchAPI
    from .fakeserver import FakeOpenAI

    api = FakeBatchAPI()
    server = FakeOpenAI(extra_routes=api.install, responder=variant_responder).start()
    server.batch_api = api
    yield server
    server.stop()


BATCH_CONFIG = "\n[batch]\npoll_interval_s = 0.02\npoll_backoff = 1.5\npoll_max_s = 0.1\n"


def test_batch_api_judges_through_the_transport_with_the_online_arithmetic(tmp_path, judge_batch_server):
    """judge --batch-api: the same calls (same ledger keys), the same judgements as online, sent
    through the Batch API transport (no chat completion online); a re-ask goes in the next round;
    a second run submits nothing and an online run afterwards sends nothing."""
    server = judge_batch_server
    ws = make_ws(tmp_path, extra=BATCH_CONFIG)
    names = ["wellformed", "prose", "truncatedonce", "garbage", "clean"]
    ids = imported(ws, tmp_path, [variant_answer(v, i) for i, v in enumerate(names)])
    ws.close()
    r = run_cli("-C", str(tmp_path / "ws"), "judge", "--batch-api", "--base-url", server.base_url, "--model",
                "judge-model", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["judged"] == 4 and out["unparsed"] == 1 and out["reasked"] == 2
    assert server.total_requests == 0  # no online chat completion: everything went in batches
    api = server.batch_api
    assert len(api.batches) == 2  # round 1: every answer; round 2: the two re-asks
    ws = Workspace(tmp_path / "ws")
    rows = {r["dialogue_id"]: r for r in judge_rows(ws)}
    got = {v: rows[ids[i]] for i, v in enumerate(names)}
    assert got["wellformed"]["score"] == -6.0 and got["prose"]["score"] == -25.0 and got["clean"]["score"] == 0.0
    assert got["truncatedonce"]["status"] == "judged" and got["truncatedonce"]["sample"] == 1
    assert got["garbage"]["status"] == "unparsed" and got["garbage"]["raw"] == VARIANTS["garbage"][1]
    assert {b["detail"]["stage"] for b in ws.store.list_batches(["collected"])} == {"judge"}
    ws.close()
    r = run_cli("-C", str(tmp_path / "ws"), "judge", "--batch-api", "--base-url", server.base_url, "--model",
                "judge-model", "--json")
    assert r.returncode == 0 and len(api.batches) == 2, r.stderr
    ws = Workspace(tmp_path / "ws")
    summary = judge(ws, server)
    assert server.total_requests == 0 and summary.judged == 0 and summary.calls["sent"] == 0
    ws.close()


def test_a_judge_batch_run_leaves_simulates_batches_alone(tmp_path, judge_batch_server):
    """Batches carry their stage: a judge batch run neither collects nor waits for a simulate batch
    still out, and simulate's --status still shows it."""
    from itcollect.plan import plan_specs
    from itcollect.simulate import SimulateOptions, run_batch_simulation

    from .responders import fill_workspace_sources

    server = judge_batch_server
    server.responder = responder
    ws = make_ws(tmp_path, extra=BATCH_CONFIG.replace("[batch]\n", "[batch]\nwait = false\n"))
    fill_workspace_sources(ws.store)
    plan_specs(ws.store, ws.config, 3, seed=0)
    server.batch_api.polls_before_done = 10_000  # simulate's batch stays out
    run_batch_simulation(ws, SimulateOptions(base_url=server.base_url, model="fake-model"))
    (sim_batch,) = ws.store.open_batches()
    ids = imported(ws, tmp_path, [variant_answer("wellformed", 0)])
    server.responder = variant_responder
    ws.close()
    # wait = true for the judge run: it must not wait for simulate's batch
    (tmp_path / "ws" / "itcollect.toml").write_text(CONFIG + BATCH_CONFIG, encoding="utf-8")
    server.batch_api.polls_before_done = 0  # (simulate's would be finished at the provider now too)
    r = run_cli("-C", str(tmp_path / "ws"), "judge", "--batch-api", "--base-url", server.base_url, "--model",
                "judge-model", "--json", timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["judged"] == 1
    ws = Workspace(tmp_path / "ws")
    assert [b["id"] for b in ws.store.open_batches()] == [sim_batch["id"]]
    assert ws.store.get_batch(sim_batch["id"])["status"] == sim_batch["status"]
    assert {r["dialogue_id"] for r in judge_rows(ws)} == set(ids)
    ws.close()
