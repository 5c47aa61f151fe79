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

from itcollect.local import BUNDLED_MODEL_NAME

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
    r"^max_tokens = 200$": "max_tokens = 48",  # [llm.annotator]
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
    calls = _stats(ws)["calls"]
    assert calls["sent"] >= 2 and calls["failed"] == 0 and calls["cost_usd"] == 0
