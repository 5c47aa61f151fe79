"""``[simulate] first_turn``: first requests written by the annotator LLM (checked like every request,
the template after failed samples), the "mixed" share, and the diversity figures ``stats`` reports for
first and later requests apart — against the loopback OpenAI server (real HTTP, real SQLite)."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from itcollect.kernel.taxonomy import requested_language
from itcollect.plan import plan_specs
from itcollect.simulate import DialogueDriver, SimulateOptions, run_simulation
from itcollect.stats.corpus import diversity_sections
from itcollect.workspace import Workspace, init_workspace

from .conftest import run_cli
from .fake_batch import FakeBatchAPI
from .fakeserver import FakeOpenAI
from .responders import fill_workspace_sources, responder

CONFIG = """
[llm]
timeout_s = 10.0
max_retries = 4
backoff_base_s = 0.01
backoff_max_s = 0.05
concurrency = 16
[mix]
max_uses_per_source = 40
{mix_extra}
[simulate]
max_turn_retries = {retries}
first_turn = "{first_turn}"
first_turn_llm_share = {share}
[batch]
poll_interval_s = 0.02
poll_backoff = 1.5
poll_max_s = 0.1
"""


def make_ws(tmp_path, n: int, first_turn: str, *, share: float = 0.5, retries: int = 3,
            name: str = "ws", mix_extra: str = "must_include_share = 0.5") -> Workspace:
    ws = init_workspace(tmp_path / name)
    (ws.root / "itcollect.toml").write_text(
        CONFIG.format(first_turn=first_turn, share=share, retries=retries, mix_extra=mix_extra), encoding="utf-8")
    ws.close()
    ws = Workspace(ws.root)
    fill_workspace_sources(ws.store)
    plan_specs(ws.store, ws.config, n, seed=3)
    return ws


def opts(server) -> SimulateOptions:
    return SimulateOptions(base_url=server.base_url, model="fake-model")


def is_annotator(body: dict) -> bool:
    messages = body.get("messages") or [{}]  # the client's first call probes the endpoint with none
    return str(messages[0].get("content", "")).startswith("Role: simulated annotator")


def is_opening(body: dict) -> bool:
    return is_annotator(body) and "Interaction type: translate" in body["messages"][0]["content"]


def first_turns(ws: Workspace) -> list[tuple[dict, dict, list[dict]]]:
    """(spec, dialogue, every turn at position 0 with the rejected samples) of each dialogue."""
    out = []
    for d in ws.store.iter_dialogues():
        turns = [t for t in ws.store.get_turns(d["id"], include_inactive=True) if t["idx"] == 0]
        out.append((ws.store.get_spec(d["spec_id"]), d, turns))
    return out


def own_words(turn: dict, source: str) -> str:
    return turn["content"].replace('"' + source.replace('"', "”") + '"', "").strip()


def test_llm_writes_every_first_request_checked_and_the_source_attached(tmp_path, fake_openai):
    fake_openai.responder = responder
    ws = make_ws(tmp_path, 40, "llm")
    summary = run_simulation(ws, opts(fake_openai), show_progress=False)
    assert summary.done == 40 and summary.failed == 0, summary.failures
    specs = list(ws.store.iter_specs())
    # one more call per dialogue than with templates: the first request is an annotator call
    assert fake_openai.total_requests == sum(2 * s["n_turns"] for s in specs) and not fake_openai.paid_twice()
    with_terms = 0
    for spec, d, turns in first_turns(ws):
        (first,) = turns
        assert first["state"] == "active" and first["template_name"] == "annotator/translate.j2"
        assert first["author"] == "model" and first["annotator"] == "fake-model" and first["call_key"]
        assert first["params"]["first_turn"] == "llm" and first["lang"] == spec["instruction_lang"]
        source = d["source_text"]
        # the request's own words, then the source quoted exactly as the templates quote it
        assert first["content"].endswith('\n\n"' + source.replace('"', "”") + '"')
        words = own_words(first, source)
        assert words and requested_language(words, ("en", "zh", "de", "fr"), spec["src_lang"]) == spec["tgt_lang"]
        for term in spec["params"].get("must_include", []):
            with_terms += 1
            assert term in words
        # the assistant answered the LLM-written request into the requested language
        answer = ws.store.get_turns(d["id"])[1]
        assert answer["lang"] == spec["tgt_lang"]
    assert with_terms > 0  # the plan gave some dialogues must-include terms, and the requests named them
    # the prompt named the language and the terms: what the fake annotator read them from
    ws.close()


def test_failed_openings_fall_back_to_the_template_without_failing_the_dialogue(tmp_path, fake_openai):
    bad = iter(["Could you translate this for me?",  # names no language
                "As a student I need this translated into {src}.",  # the wrong language
                "{source}",  # copies the source
                "这句话怎么翻译？"])  # the wrong instruction language (never asked: the template stands in)

    def poor_openings(body: dict) -> str:
        if not is_opening(body):
            return responder(body)
        user = body["messages"][1]["content"]
        source = user.split("<source>\n", 1)[1].split("\n</source>", 1)[0]
        system = body["messages"][0]["content"]
        src = system.split("Source language: ", 1)[1].split("\n", 1)[0]
        return next(bad, "Translate it, thanks.").format(source=source, src=src)

    fake_openai.responder = poor_openings
    ws = make_ws(tmp_path, 1, "llm", retries=3, mix_extra="instruction_langs = {en = 1}\nmust_include_share = 0.0")
    summary = run_simulation(ws, opts(fake_openai), show_progress=False)
    assert summary.done == 1 and summary.failed == 0, summary.failures
    ((spec, d, turns),) = first_turns(ws)
    rejected = [t for t in turns if t["state"] == "rejected"]
    active = [t for t in turns if t["state"] == "active"]
    assert len(rejected) == 3 and [t["params"]["sample"] for t in rejected] == [0, 1, 2]
    reasons = [w for t in rejected for w in t["warnings"]]
    assert any(w.startswith("request_off_plan: does not ask for") for w in reasons), reasons
    assert any(w == "copies_source" for w in reasons), reasons
    assert all(t["template_name"] == "annotator/translate.j2" for t in rejected)
    (first,) = active
    assert first["template_name"] == f"first_turn_{spec['instruction_lang']}.j2" and first["annotator"] == "template"
    assert first["params"]["first_turn"] == "template_fallback"
    # a re-run sends nothing: the dialogue is done, the failed samples are not asked again
    fake_openai.reset()
    assert run_simulation(ws, opts(fake_openai), show_progress=False).done == 0
    assert fake_openai.total_requests == 0
    ws.close()


def test_mixed_share_is_a_stable_choice_per_spec(tmp_path):
    ws = make_ws(tmp_path, 600, "mixed", share=0.3)
    specs = list(ws.store.iter_specs())
    driver = DialogueDriver(ws.config)
    picks = [driver.opening_by_llm(s) for s in specs]
    assert 0.24 <= sum(picks) / len(picks) <= 0.36
    assert picks == [DialogueDriver(ws.config).opening_by_llm(s) for s in specs]  # same spec, same choice
    cfg = dict(ws.config)
    for mode, expected in (("template", 0), ("llm", len(specs))):
        cfg["simulate"] = {**ws.config["simulate"], "first_turn": mode}
        assert sum(DialogueDriver(cfg).opening_by_llm(s) for s in specs) == expected
    cfg["simulate"] = {**ws.config["simulate"], "first_turn": "mixed", "first_turn_llm_share": 0.0}
    assert not any(DialogueDriver(cfg).opening_by_llm(s) for s in specs)
    ws.close()


def test_mixed_run_then_stats_show_first_and_later_diversity_apart(tmp_path, fake_openai):
    fake_openai.responder = responder
    ws_t = make_ws(tmp_path, 60, "template", name="template")
    ws_m = make_ws(tmp_path, 60, "mixed", share=0.5, name="mixed")
    for ws in (ws_t, ws_m):
        s = run_simulation(ws, opts(fake_openai), show_progress=False)
        assert s.done == 60, s.failures
    by_spec = {s["id"]: DialogueDriver(ws_m.config).opening_by_llm(s) for s in ws_m.store.iter_specs()}
    written = Counter()
    for spec, _d, turns in first_turns(ws_m):
        (first,) = turns
        written["model" if by_spec[spec["id"]] else "template"] += 1
        assert (first["template_name"] == "annotator/translate.j2") == by_spec[spec["id"]]
    div_t, div_m = diversity_sections(ws_t.store), diversity_sections(ws_m.store)
    assert div_t["first_written_by"] == {"template": 60}
    assert div_m["first_written_by"] == dict(written) and 15 <= written["model"] <= 45
    for div in (div_t, div_m):
        for lang, d in div["all"].items():
            first, later = div["first"].get(lang), div["later"].get(lang)
            assert d["requests"] == (first["requests"] if first else 0) + (later["requests"] if later else 0)
    # the same plan (same seed, same sources): LLM-written openings are more varied than the templates'
    en_t, en_m = div_t["first"]["en"], div_m["first"]["en"]
    assert en_m["distinct_2"] > en_t["distinct_2"]
    ws_t.close()
    ws_m.close()
    r = run_cli("-C", str(tmp_path / "mixed"), "stats", "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert set(data["diversity_by_turn"]) == {"first", "later", "first_written_by"}
    assert data["diversity_by_turn"]["first_written_by"] == dict(written)
    assert data["diversity"] == div_m["all"]
    r = run_cli("-C", str(tmp_path / "mixed"), "stats")
    assert r.returncode == 0 and "first requests" in r.stdout and "later requests" in r.stdout
    assert "first requests written by: model" in r.stdout


def test_dry_run_counts_the_opening_calls(tmp_path, fake_openai):
    ws = make_ws(tmp_path, 20, "llm")
    root = ws.root
    specs = list(ws.store.iter_specs())
    ws.close()
    r = run_cli("-C", str(root), "simulate", "--base-url", fake_openai.base_url, "--model", "gpt-4o-mini",
                "--dry-run", "--json")
    assert r.returncode == 0, r.stderr
    est = json.loads(r.stdout)["dry_run"]
    assert est["calls"] == sum(2 * s["n_turns"] for s in specs)
    assert fake_openai.total_requests == 0


def test_batch_api_mode_writes_first_requests_too(tmp_path):
    api = FakeBatchAPI()
    server = FakeOpenAI(extra_routes=api.install, responder=responder).start()
    try:
        ws = make_ws(tmp_path, 12, "llm")
        specs = list(ws.store.iter_specs())
        r = run_cli("-C", str(ws.root), "simulate", "--batch-api", "--base-url", server.base_url, "--model",
                    "gpt-4o-mini", "--dry-run", "--json")
        assert r.returncode == 0, r.stderr
        est = json.loads(r.stdout)["estimate"]
        assert est["remaining_calls"] == est["calls"] == sum(2 * s["n_turns"] for s in specs)
        # the first round is the openings: annotator calls only
        assert est["next_round"]["by_role"] == {"annotator": 12}
        r = run_cli("-C", str(ws.root), "simulate", "--batch-api", "--base-url", server.base_url, "--model",
                    "gpt-4o-mini")
        assert r.returncode == 0, r.stderr
        for spec, _d, turns in first_turns(ws):
            assert spec["status"] == "done"
            assert [t["template_name"] for t in turns] == ["annotator/translate.j2"]
        ws.close()
    finally:
        server.stop()


@pytest.mark.parametrize("bad, message", [
    ('first_turn = "llms"', "simulate.first_turn must be one of"),
    ("first_turn_llm_share = 1.5", "simulate.first_turn_llm_share must be between 0 and 1"),
])
def test_bad_first_turn_config_is_one_clear_line(tmp_path, bad, message):
    ws = init_workspace(tmp_path / "ws")
    ws.close()
    (tmp_path / "ws" / "itcollect.toml").write_text(f"[simulate]\n{bad}\n", encoding="utf-8")
    r = run_cli("-C", str(tmp_path / "ws"), "stats")
    assert r.returncode == 1 and message in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
