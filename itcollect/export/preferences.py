"""Preference rows of the compared turns of a kept dialogue (``export --format dpo``).

One row per compared turn with a strict winner and each answer it is paired against:

* ``prompt`` — the dialogue's messages up to and including that turn's request (the system prompt
  first when the export gives one), ``chosen`` / ``rejected`` — each a list holding one assistant
  message (TRL's conversational preference format);
* who chose: the comparison's own chooser (``human``, ``judge``, or ``human_edit`` when the
  person's text continued: a person's decision is never re-ranked by judge scores, which only
  order the candidates a pick leaves unordered when the worst of them is wanted);
* the winner: alone in the decision's best tier (a tie, or ``none``, has no winner and gives no
  row); with ``human_edit`` the person's text is chosen against every candidate it replaced;
* the pairs (``[export] preference_pairs``): ``best_vs_worst`` — against the worst (the last tier;
  within it, the lowest judge score, then the name) — or ``best_vs_each`` — against every answer
  below the winner. Candidates whose call failed have no answer and are never paired.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from itcollect.export.rows import sharegpt_conversation
from itcollect.kernel.outcomes import judge_key, tiers

PAIRS = ("best_vs_worst", "best_vs_each")
#: ``chosen_system`` of a row whose chosen answer is the person's own text
HUMAN_TEXT = "human"


def schema():
    """The Arrow schema of a preference row (``dpo/parquet`` and the ``dpo`` DatasetDict)."""
    import pyarrow as pa

    s = pa.string()
    messages = pa.list_(pa.struct([("role", s), ("content", s)]))
    return pa.schema([
        ("id", s), ("dialogue_id", s), ("source_id", s), ("src_lang", s), ("tgt_lang", s), ("instruction_lang", s),
        ("interaction_type", s), ("turn", pa.int32()),
        ("prompt", messages), ("chosen", messages), ("rejected", messages),
        ("chosen_system", s), ("rejected_system", s), ("chooser", s),
        ("chosen_score", pa.float64()), ("rejected_score", pa.float64()),
        ("chosen_rating", pa.int32()), ("rejected_rating", pa.int32()), ("margin", pa.float64()),
    ])


def _worst(last_tier: Sequence[str], by_system: Mapping[str, Mapping[str, Any]]) -> str:
    return min(last_tier, key=lambda s: (judge_key(by_system[s]), s))


def preference_rows(row: Mapping[str, Any], turns: Sequence[Mapping[str, Any]],
                    comparisons: Sequence[Mapping[str, Any]], system_prompt: str | None,
                    pairs: str = "best_vs_worst") -> list[dict[str, Any]]:
    """The preference rows of one dialogue: ``row`` is its SFT row (for its provenance columns),
    ``turns`` its active turns (with ``id`` and ``idx``), ``comparisons`` its decided ones."""
    if pairs not in PAIRS:
        raise ValueError(f"unknown preference pairs {pairs!r} (one of {', '.join(PAIRS)})")
    out: list[dict[str, Any]] = []
    for c in comparisons:
        before = [t for t in turns if t["idx"] < c["idx"]]
        answer = next((t for t in turns if t["idx"] == c["idx"]), None)
        if not before or before[-1]["role"] != "user" or answer is None or answer["role"] != "assistant":
            continue  # the dialogue no longer has this exchange as it was compared
        by_system = {k["system"]: k for k in c["candidates"] if k["status"] != "failed" and k["content"] is not None}
        order = [[s for s in tier if s in by_system] for tier in tiers(c)]
        if c["chooser"] == "human_edit":
            chosen, chosen_text = None, answer["content"]
            rejected = [s for tier in order for s in tier]
        else:
            if len(order[0]) != 1 or order[0][0] not in by_system:
                continue  # no strict winner
            chosen = order[0][0]
            chosen_text = by_system[chosen]["content"]
            lower = [tier for tier in order[1:] if tier]
            if not lower:
                continue
            rejected = ([s for tier in lower for s in tier] if pairs == "best_vs_each"
                        else [_worst(lower[-1], by_system)])
        prompt = [{"role": t["role"], "content": t["content"]} for t in before]
        if system_prompt and prompt[0]["role"] != "system":
            prompt.insert(0, {"role": "system", "content": system_prompt})
        itype = before[-1].get("interaction_type") or answer.get("interaction_type")
        request_no = sum(1 for t in before if t["role"] == "user")
        win = by_system.get(chosen, {}) if chosen else {}
        for r in rejected:
            lose = by_system[r]
            cs, rs = win.get("score"), lose.get("score")
            out.append({
                "id": f"{row['id']}:{c['idx']}:{r}", "dialogue_id": row["id"], "source_id": row["source_id"],
                "src_lang": row["src_lang"], "tgt_lang": row["tgt_lang"], "instruction_lang": row["instruction_lang"],
                "interaction_type": itype, "turn": request_no,
                "prompt": prompt, "chosen": [{"role": "assistant", "content": chosen_text}],
                "rejected": [{"role": "assistant", "content": lose["content"]}],
                "chosen_system": chosen or HUMAN_TEXT, "rejected_system": r, "chooser": c["chooser"],
                "chosen_score": cs, "rejected_score": rs, "chosen_rating": win.get("rating"),
                "rejected_rating": lose.get("rating"),
                "margin": None if cs is None or rs is None else round(float(cs) - float(rs), 6),
            })
    return out


def sharegpt_ranking_json(pref: Mapping[str, Any]) -> str:
    """LLaMA-Factory's ShareGPT preference record: ``conversations`` ending on the user's turn,
    ``chosen`` / ``rejected`` single ``{from: gpt, value}`` messages, the system prompt in
    ``system``."""
    conv, system = sharegpt_conversation(pref["prompt"])
    rec: dict[str, Any] = {"id": pref["id"], "conversations": conv,
                           "chosen": {"from": "gpt", "value": pref["chosen"][0]["content"]},
                           "rejected": {"from": "gpt", "value": pref["rejected"][0]["content"]}}
    if system is not None:
        rec["system"] = system
    for key in ("chosen_system", "rejected_system", "chooser", "margin"):
        rec[key] = pref[key]
    return json.dumps(rec, ensure_ascii=False)


def kto_json(pref: Mapping[str, Any], chosen: bool) -> str:
    """TRL's unpaired preference (KTO) record: ``prompt`` (messages), ``completion`` (one assistant
    message), ``label`` (desirable or not)."""
    side = "chosen" if chosen else "rejected"
    rid = pref["id"].rsplit(":", 1)[0] + ":chosen" if chosen else pref["id"]
    return json.dumps({"id": rid, "prompt": pref["prompt"], "completion": pref[side],
                       "label": chosen, "system": pref[f"{side}_system"], "chooser": pref["chooser"]},
                      ensure_ascii=False)


def kto_lines(prefs: Sequence[Mapping[str, Any]]) -> list[str]:
    """A dialogue's KTO records: each turn's chosen answer once (desirable), each answer it was
    paired against (undesirable)."""
    lines, seen = [], set()
    for p in prefs:
        turn = (p["dialogue_id"], p["turn"])
        if turn not in seen:
            seen.add(turn)
            lines.append(kto_json(p, True))
        lines.append(kto_json(p, False))
    return lines


__all__ = ["PAIRS", "HUMAN_TEXT", "schema", "preference_rows", "sharegpt_ranking_json", "kto_json", "kto_lines"]
