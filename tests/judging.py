"""Workspaces and judge responders shared by the judge tests (judge, filter, stats, export, review)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from itcollect.importer import import_files
from itcollect.plan import plan_specs
from itcollect.simulate import SimulateOptions, run_simulation
from itcollect.workspace import Workspace, init_workspace

from .responders import fill_workspace_sources, judge_answer, judge_item, responder

CONFIG = """
[llm]
timeout_s = 5.0
max_retries = 4
backoff_base_s = 0.01
backoff_max_s = 0.05
circuit_breaker_failures = 50
concurrency = 16

[mix]
max_uses_per_source = 40
"""


def make_ws(tmp_path: Path, *, extra: str = "", name: str = "ws") -> Workspace:
    ws = init_workspace(tmp_path / name)
    (ws.root / "itcollect.toml").write_text(CONFIG + extra, encoding="utf-8")
    ws.close()
    return Workspace(ws.root)


def simulated(ws: Workspace, server: Any, n: int, *, seed: int = 0) -> None:
    """``n`` simulated dialogues (the responder answers like a compliant model)."""
    server.responder = responder
    fill_workspace_sources(ws.store)
    plan_specs(ws.store, ws.config, n, seed=seed)
    summary = run_simulation(ws, SimulateOptions(base_url=server.base_url, model="fake-model"), show_progress=False)
    assert summary.done == n, summary.failures


def imported(ws: Workspace, tmp_path: Path, answers: list[str], *, name: str = "imports.jsonl",
             extra_turns: list[tuple[str, str]] | None = None,
             extras: dict[int, list[tuple[str, str]]] | None = None) -> list[str]:
    """One imported en->fr dialogue per answer (its first answer), with ``extra_turns`` (every
    dialogue) or ``extras[i]`` (dialogue i) after it; returns the dialogue ids in order."""
    path = tmp_path / name
    records = []
    for i, a in enumerate(answers):
        source = f"The council approved budget number {i + 1} on Monday."
        messages = [{"role": "user", "content": f'Translate into French: "{source}"'},
                    {"role": "assistant", "content": a}]
        for req, ans in (extras or {}).get(i, extra_turns or []):
            messages += [{"role": "user", "content": req}, {"role": "assistant", "content": ans}]
        records.append({"messages": messages, "src_lang": "en", "tgt_lang": "fr", "instruction_lang": "en",
                        "source_text": source, "model": "some-model"})
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    import_files(ws.store, [path])
    by_answer = {t[1]["content"]: d["id"] for d, t in ws.store.iter_corpus() if d["origin"] == "imported"}
    return [by_answer[a] for a in answers]


# -- answers of every shape a judge gives ------------------------------------------------------------
WELL_FORMED = json.dumps({"errors": [{"span": "budget", "category": "accuracy/mistranslation", "severity": "major"},
                                     {"span": "lundi", "category": "fluency/spelling", "severity": "minor"}]})
IN_PROSE = ("Here is my assessment of the translation: " + json.dumps(
    {"errors": [{"span": "conseil", "category": "Accuracy/Mistranslation", "severity": "Critical"}]})
    + " Let me know if you need more detail.")
IN_FENCE = "```json\n" + json.dumps({"errors": [
    {"span": "a", "category": "style", "severity": "minor"},
    {"span": "b", "category": "locale convention", "severity": "minor"}]}) + "\n```"
UNKNOWN = json.dumps({"errors": [{"span": "x", "category": "fluency/inconsistency", "severity": "major"},
                                 {"span": "y", "category": "terminology", "severity": "neutral"},
                                 {"span": "z", "category": "accuracy/omission", "severity": "minor"}]})
NO_ERRORS = json.dumps({"errors": []})
PILE_UP = json.dumps({"errors": [{"span": f"w{i}", "category": "accuracy/omission", "severity": "major"}
                                 for i in range(7)]})
NON_TRANSLATION = json.dumps({"errors": [{"span": "tout", "category": "non-translation", "severity": "minor"}]})
TRUNCATED = WELL_FORMED[: len(WELL_FORMED) // 2]
GARBAGE = "The translation looks fine to me overall, nothing to add."

#: variant -> (first reply, reply when asked again)
VARIANTS: dict[str, tuple[str, str]] = {
    "wellformed": (WELL_FORMED, WELL_FORMED),
    "prose": (IN_PROSE, IN_PROSE),
    "fence": (IN_FENCE, IN_FENCE),
    "unknown": (UNKNOWN, UNKNOWN),
    "clean": (NO_ERRORS, NO_ERRORS),
    "pileup": (PILE_UP, PILE_UP),
    "nontranslation": (NON_TRANSLATION, NON_TRANSLATION),
    "truncatedonce": (TRUNCATED, NO_ERRORS),
    "truncated": (TRUNCATED, TRUNCATED),
    "garbage": (GARBAGE, GARBAGE),
}
#: rating variants (an imported dialogue's later answers get the rating prompt)
RATING_VARIANTS: dict[str, dict[str, Any]] = {
    "goodanswer": {"rating": 5, "in_instruction_language": True, "compliance": "yes", "reason": "Right on."},
    "partly": {"rating": 3, "in_instruction_language": True, "compliance": "partly", "reason": "Half of it."},
    "noncompliant": {"rating": 2, "in_instruction_language": False, "compliance": "no",
                     "reason": "It ignores the request."},
}
_MARK = re.compile(r"\[(\w+)\]")


def variant_answer(variant: str, i: int = 0) -> str:
    """An imported answer whose judge reply is ``variant``."""
    return f"Le conseil a approuvé le budget numéro {i + 1} lundi [{variant}]."


def variant_responder(body: dict) -> str:
    """Judge replies chosen by the ``[variant]`` mark in the judged answer (others: well-formed)."""
    item = judge_item(body)
    m = _MARK.search(item["answer"])
    if m is not None and item["kind"] == "rating" and m.group(1) in RATING_VARIANTS:
        return json.dumps(RATING_VARIANTS[m.group(1)])
    if m is None or m.group(1) not in VARIANTS:
        return judge_answer(body)
    first, again = VARIANTS[m.group(1)]
    return again if item["reask"] else first


def judge_rows(ws: Workspace) -> list[dict[str, Any]]:
    return [dict(r) for r in ws.store.query("SELECT * FROM judgements ORDER BY turn_id")]
