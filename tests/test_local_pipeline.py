"""End to end against the REAL llama.cpp server and the bundled SmolLM2-135M (``--local``).

The unit tests use the suite's fault-injecting loopback server; these check the same pipeline
against a real OpenAI-compatible server: multi-turn calls, streaming, the request ledger,
provenance, a loadable export. They assert protocol-level facts only: a 135M model's words are
not a test oracle. Marked ``llamacpp``; .ci/run installs ``itcollect[local]`` so they run there.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

from itcollect.llm.local import BUNDLED_MODEL_NAME

from .conftest import run_cli

pytestmark = [
    pytest.mark.llamacpp,
    pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None,
                       reason="llama_cpp is not importable: pip install -e '.[test,local]' to run the real "
                              "llama.cpp integration tests"),
]

GERMAN = """\
Die Regierung hat am Dienstag ein neues Gesetz zur Förderung des Wohnungsbaus vorgestellt.
Der Bundestag stimmte mit großer Mehrheit für die Reform der Rentenversicherung.
Die Polizei ermittelt nach einem Brand in einer Lagerhalle im Hamburger Hafen.
Die Inflation in der Eurozone ist im vergangenen Monat leicht gesunken.
Der Stadtrat will den öffentlichen Nahverkehr in der Innenstadt ausbauen.
Nach dem Sturm blieben viele Schulen in Norddeutschland am Montag geschlossen.
"""
FRENCH = """\
Le gouvernement a présenté mardi un nouveau projet de loi sur le logement.
Les agriculteurs ont manifesté devant la préfecture pour dénoncer la hausse des coûts.
La banque centrale a décidé de maintenir ses taux d'intérêt inchangés.
Des milliers de personnes ont participé à la marche pour le climat à Paris.
Le maire a annoncé la rénovation complète de la gare centrale d'ici deux ans.
Les exportations françaises ont progressé de trois pour cent au premier trimestre.
"""

#: Gold English for each source: what the scripted human annotator types as their edit.
ENGLISH = dict(zip(GERMAN.splitlines() + FRENCH.splitlines(), [
    "On Tuesday the government presented a new law to promote housing construction.",
    "The Bundestag voted by a large majority for the reform of the pension insurance.",
    "The police are investigating after a fire in a warehouse in the port of Hamburg.",
    "Inflation in the eurozone fell slightly last month.",
    "The city council wants to expand public transport in the city centre.",
    "After the storm, many schools in northern Germany stayed closed on Monday.",
    "On Tuesday the government presented a new housing bill.",
    "Farmers demonstrated in front of the prefecture to denounce rising costs.",
    "The central bank decided to keep its interest rates unchanged.",
    "Thousands of people took part in the climate march in Paris.",
    "The mayor announced the complete renovation of the central station within two years.",
    "French exports grew by three percent in the first quarter.",
]))

#: Into English with English instructions: the one direction a 135M model manages often enough for
#: dialogues to get past the first turn, so multi-turn behaviour is exercised. Short answers keep
#: the test fast on 2 cores.
_CONFIG_EDITS = {
    r"^pairs = .*$": 'pairs = { "de-en" = 1, "fr-en" = 1 }',
    r"^instruction_langs = .*$": "instruction_langs = { en = 1 }",
    r"^turns = .*$": 'turns = { "2" = 1 }',
    r"^must_include_share = .*$": "must_include_share = 0.0",
    r"^n_ctx = .*$": "n_ctx = 1024",
    r"^n_threads = .*$": "n_threads = 1",  # the suite runs -n 2: two servers share the cores
    r"^concurrency = .*$": "concurrency = 2",
    r"^max_tokens = 512$": "max_tokens = 96",  # [llm.assistant]
    r"^max_tokens = 200$": "max_tokens = 64",  # [llm.annotator]
    # Greedy decoding: the same calls every run (a re-sample would repeat itself, so none).
    r"^temperature = 0.7$": "temperature = 0.0",  # [llm.assistant]
    r"^temperature = 1.0$": "temperature = 0.0",  # [llm.annotator]
    r"^max_turn_retries = .*$": "max_turn_retries = 0",
}


def _workspace(tmp_path: Path, specs: int, extra_edits: dict[str, str] | None = None) -> Path:
    ws = tmp_path / "ws"
    assert run_cli("init", str(ws)).returncode == 0
    cfg = ws / "itcollect.toml"
    text = cfg.read_text(encoding="utf-8")
    for pattern, line in {**_CONFIG_EDITS, **(extra_edits or {})}.items():
        text, n = re.subn(pattern, line, text, count=1, flags=re.M)
        assert n == 1, pattern
    cfg.write_text(text, encoding="utf-8")
    (tmp_path / "de.txt").write_text(GERMAN, encoding="utf-8")
    (tmp_path / "fr.txt").write_text(FRENCH, encoding="utf-8")
    for name, lang in (("de.txt", "de"), ("fr.txt", "fr")):
        r = run_cli("-C", str(ws), "ingest", str(tmp_path / name), "--lang", lang)
        assert r.returncode == 0, r.stderr
    r = run_cli("-C", str(ws), "plan", "--dialogues", str(specs), "--seed", "1")
    assert r.returncode == 0, r.stderr
    return ws


def _stats(ws: Path) -> dict:
    r = run_cli("-C", str(ws), "stats", "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def _events(stdout: str) -> list[tuple[str, dict]]:
    out = []
    for line in stdout.splitlines():
        tag, _, payload = line.partition(" ")
        out.append((tag, json.loads(payload) if payload else {}))
    return out


@pytest.mark.timeout(600)
def test_session_local_streams_answers_and_records_provenance(tmp_path):
    from itcollect.workspace import Workspace

    ws = _workspace(tmp_path, specs=1)
    accept = "accept integration test: a 135M model, warnings expected"
    script = "\n".join(["request Please translate the sentence into English.", accept,
                        "request Make it shorter, please.", accept, "finish", "quit", ""])
    r = run_cli("-C", str(ws), "session", "--annotator", "li.wei", "--local", input=script, timeout=300)
    assert r.returncode == 0, r.stderr
    events = _events(r.stdout)
    tags = [t for t, _ in events]
    assert "done" in tags, r.stdout[-2000:]
    answers = [e for t, e in events if t == "answer"]
    assert len(answers) == 2  # two user turns, two model answers: a multi-turn conversation
    # Streaming: each answer arrived as several deltas that add up to the committed text.
    pieces: list[list[str]] = [[]]
    for tag, e in events:
        if tag == "delta" and not e.get("reset"):
            pieces[-1].append(e["text"])
        elif tag == "answer":
            pieces.append([])
    for got, answer in zip(pieces, answers):
        assert len(got) >= 2
        assert "".join(got).strip() == answer["text"].strip()
        assert answer["model"] == BUNDLED_MODEL_NAME and not answer["from_ledger"]
    done_id = next(e["dialogue_id"] for t, e in events if t == "done")

    with Workspace(ws) as w:
        dialogue = w.store.get_dialogue(done_id)
        assert dialogue["origin"] == "human" and dialogue["status"] == "done"
        turns = [t for t in w.store.get_turns(done_id) if t["state"] == "active"]
        roles = [t["role"] for t in turns if t["role"] != "system"]
        assert roles == ["user", "assistant", "user", "assistant"]
        for t in turns:
            if t["role"] == "user":
                assert t["author"] == "human" and t["annotator"] == "li.wei"
            elif t["role"] == "assistant":
                assert t["author"] == "model" and t["model"] == BUNDLED_MODEL_NAME
                assert t["call_key"]
                call = w.store.ledger_lookup(t["call_key"])
                assert call is not None and call["status"] == "done"
                assert call["response"].strip() == t["content"].strip()
                assert call["base_url"].startswith("http://127.0.0.1:")
        # The second answer's call sent the whole conversation: request, answer, request.
        request = json.loads(w.store.ledger_lookup(turns[-1]["call_key"])["request"])
        convo = [(m["role"], m["content"]) for m in request["messages"] if m["role"] != "system"]
        assert convo == [(t["role"], t["content"]) for t in turns[:-1] if t["role"] != "system"]
    calls = _stats(ws)["calls"]
    assert calls["sent"] >= 2 and calls["failed"] == 0 and calls["cost_usd"] == 0


@pytest.mark.timeout(900)
def test_simulate_and_session_local_then_filter_and_export(tmp_path):
    """simulate --local and session --local share a workspace and the real server's answers land
    in the ledger, the turns (with provenance) and a dataset that ``datasets`` loads."""
    import datasets

    from itcollect.workspace import Workspace

    ws = _workspace(tmp_path, specs=3)
    r = run_cli("-C", str(ws), "simulate", "--local", "--limit", "2", "--json", timeout=600)
    assert r.returncode == 0, r.stderr
    run = json.loads(r.stdout.strip().splitlines()[-1])
    assert run["done"] + run["failed"] == 2
    assert run["calls"]["sent"] >= 2

    with Workspace(ws) as w:
        simulated = [d for d in w.store.iter_dialogues() if d["origin"] == "simulated"]
        assert len(simulated) == 2
        roles_seen = set()
        for d in simulated:
            turns = w.store.get_turns(d["id"])
            assert [t["role"] for t in turns] == ["user", "assistant"] * (len(turns) // 2) + ["user"] * (len(turns) % 2)
            for t in turns:
                assert t["author"] == "model" and t["template_hash"]
                if t["role"] == "assistant" or t["idx"] > 0:  # every answer and every written request was a call
                    call = w.store.ledger_lookup(t["call_key"])
                    assert call["status"] == "done" and call["model"] == BUNDLED_MODEL_NAME
                    assert call["base_url"].startswith("http://127.0.0.1:")
                    assert call["response"].strip() and call["prompt_tokens"] > 0
                    roles_seen.add(call["role"])
                    assert t["model"] == BUNDLED_MODEL_NAME
            # Past the first answer, every annotator call (a kept or a rejected sample) is grounded in
            # the conversation so far, and the next answer's call carries the conversation back.
            if len(turns) >= 2:
                samples = [t for t in w.store.get_turns(d["id"], include_inactive=True) if t["idx"] == 2]
                for t in samples:
                    request = json.loads(w.store.ledger_lookup(t["call_key"])["request"])
                    assert turns[1]["content"].strip() in "\n".join(m["content"] for m in request["messages"])
                    roles_seen.add("annotator")
            if len(turns) >= 4:
                request = json.loads(w.store.ledger_lookup(turns[3]["call_key"])["request"])
                convo = [(m["role"], m["content"]) for m in request["messages"] if m["role"] != "system"]
                assert convo == [(t["role"], t["content"]) for t in turns[:3]]
        assert "assistant" in roles_seen
        ledger = w.store.ledger_calls()
        assert ledger and all(c["status"] in ("done", "failed") for c in ledger)  # nothing left pending
        assert {c["model"] for c in ledger} == {BUNDLED_MODEL_NAME}
        assert len(ledger) == run["calls"]["sent"]

    # The third spec: a human at the (non-interactive) session, with a gold edit.
    r = run_cli("-C", str(ws), "session", "--annotator", "ana", "--local", input="quit\n", timeout=300)
    assert r.returncode == 0, r.stderr
    first = next(e for t, e in _events(r.stdout) if t == "dialogue")
    source = first["source"]
    script = "\n".join(["request Please translate this news sentence into English.", f"edit {ENGLISH[source]}",
                        "finish one gold turn is enough for this test", "quit", ""])  # (an early finish)
    r = run_cli("-C", str(ws), "session", "--annotator", "ana", "--local", input=script, timeout=300)
    assert r.returncode == 0, r.stderr
    events = _events(r.stdout)
    human_id = next(e["dialogue_id"] for t, e in events if t == "done")
    # quitting with nothing written gave the spec back; the same (lowest pending) spec comes again,
    # as a fresh dialogue
    second = next(e for t, e in events if t == "dialogue")
    assert second["spec_id"] == first["spec_id"] and second["source"] == source and second["resumed"] is False

    # Nothing pending any more: a second simulate sends nothing.
    r = run_cli("-C", str(ws), "simulate", "--local", "--json", timeout=300)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1])["calls"]["sent"] == 0

    assert run_cli("-C", str(ws), "filter").returncode == 0
    out = tmp_path / "out"
    r = run_cli("-C", str(ws), "export", "--hf", str(out), "--format", "all")
    assert r.returncode == 0, r.stderr
    stats = _stats(ws)
    dd = datasets.load_from_disk(str(out / "hf"))
    rows = [row for split in dd.values() for row in split]
    assert len(rows) == stats["filter"]["kept"] >= 1
    by_id = {row["id"]: row for row in rows}
    assert human_id in by_id, "the human dialogue with a gold English edit was filtered out"
    human = by_id[human_id]
    assert human["origin"] == "human" and human["annotator"] == "ana"
    assert human["messages"][-1] == {"role": "assistant", "content": ENGLISH[source]}
    assert human["messages"][0]["role"] == "user" and source in human["messages"][0]["content"]
    for row in rows:
        if row["origin"] == "simulated":
            assert row["models"] == [BUNDLED_MODEL_NAME] and row["template_hashes"]
    sharegpt = json.loads((out / "sharegpt.json").read_text(encoding="utf-8"))
    assert len(sharegpt) == len(rows)


@pytest.mark.timeout(900)
def test_judge_local_answers_in_the_schema_through_the_grammar(tmp_path):
    """judge --local with response_format json_object: llama.cpp's server turns the judgement's JSON
    schema into a grammar, so a complete reply of even a 135M model is a JSON object of that schema
    (its content is noise and not checked)."""
    from itcollect.workspace import Workspace

    ws = _workspace(tmp_path, specs=1, extra_edits={r"^response_format = .*$": 'response_format = "json_object"',
                                                    r"^n_ctx = .*$": "n_ctx = 2048",  # a judge prompt is ~1K tokens
                                                    r"^max_tokens = 800$": "max_tokens = 160"})  # [llm.judge]
    records = [
        {"messages": [{"role": "user", "content": 'Translate into English: "Die Inflation ist leicht gesunken."'},
                      {"role": "assistant", "content": "Inflation fell slightly."}],
         "src_lang": "de", "tgt_lang": "en", "instruction_lang": "en",
         "source_text": "Die Inflation ist leicht gesunken."},
        {"messages": [{"role": "user", "content": 'Translate into English: "Le maire a annoncé la rénovation."'},
                      {"role": "assistant", "content": "The mayor announced the renovation."},
                      {"role": "user", "content": "Why did you choose 'announced'?"},
                      {"role": "assistant", "content": "Because 'annoncé' means that the mayor made it public."}],
         "src_lang": "fr", "tgt_lang": "en", "instruction_lang": "en",
         "source_text": "Le maire a annoncé la rénovation."},
    ]
    path = tmp_path / "dialogues.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    assert run_cli("-C", str(ws), "import", str(path)).returncode == 0
    r = run_cli("-C", str(ws), "judge", "--local", "--json", timeout=600)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["judged"] + out["unparsed"] == 3 and out["calls"]["sent"] >= 3
    with Workspace(ws) as w:
        rows = w.store.query("SELECT kind, status, call_key FROM judgements")
        assert len(rows) == 3 and {r["kind"] for r in rows} == {"translation", "rating"}
        calls = [c for c in w.store.ledger_calls() if c["role"] == "judge"]
        complete = 0
        for c in calls:
            body = json.loads(c["request"])
            assert body["response_format"]["type"] == "json_object" and body["response_format"]["schema"]
            assert c["status"] == "done" and c["model"] == BUNDLED_MODEL_NAME
            if c["finish_reason"] == "stop":
                reply = json.loads(c["response"])  # the grammar's work: valid JSON
                assert set(reply) == set(body["response_format"]["schema"]["required"])
                complete += 1
        assert complete >= 1
    # nothing left: a second run sends nothing
    r = run_cli("-C", str(ws), "judge", "--local", "--json", timeout=300)
    assert r.returncode == 0 and json.loads(r.stdout.strip().splitlines()[-1])["calls"]["sent"] == 0


def test_session_web_local_answers_from_the_bundled_model_and_stops_its_server(tmp_path):
    """``session --web --local``: the page's answers come from the llama.cpp server the command
    started (streamed, recorded with the bundled model's name), and stopping the web server stops
    that llama.cpp server too (no orphan holding the model in memory)."""
    import psutil

    from .webutil import Client, WebServer, add_account

    ws = _workspace(tmp_path, 1)
    srv = WebServer(ws, None)
    try:
        children = psutil.Process(srv.proc.pid).children(recursive=True)
        assert any("llama_cpp.server" in " ".join(p.cmdline()) for p in children), children
        c = Client(srv.url, add_account(ws, "alice"))
        c.state(load=True)
        c.act("/api/request", {"text": "Please translate this sentence into English."})
        events = c.stream(timeout=120)
        assert events[-1][0] == "end" and events[-1][1]["ok"] is True, events[-3:]
        assert sum(1 for e, _ in events if e == "delta") >= 2  # streamed in pieces
        st = c.state()
        answer = st["dialogue"]["turns"][-1]
        assert answer["role"] == "assistant" and answer["content"].strip()
    finally:
        assert srv.stop() == 0, srv.stderr()
    assert not [p for p in children if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    from itcollect.store import Store

    with Store(ws / "itcollect.db") as store:
        (d,) = list(store.iter_dialogues())
        turns = store.get_turns(d["id"])
        assert [t["role"] for t in turns] == ["user", "assistant"]
        assert turns[1]["model"] == BUNDLED_MODEL_NAME and turns[1]["call_key"]
        assert store.ledger_lookup(turns[1]["call_key"])["status"] == "done"
