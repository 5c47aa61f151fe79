"""One dataset row per kept dialogue: its messages and its provenance, as Arrow and as ShareGPT."""

from __future__ import annotations

import json
from typing import Any

from itcollect.kernel.splits import group_key_of

#: json.dumps(..., ensure_ascii=False) builds an encoder per call; this one is built once
_JSON = json.JSONEncoder(ensure_ascii=False)
_json_str = json.encoder.encode_basestring  # what _JSON uses for a str (the C version when available)

#: the turn columns :func:`build_row` reads (the renderer reads no others: ~15 us a dialogue less)
ROW_TURN_FIELDS = ("role", "content", "author", "model", "interaction_type", "template_name", "template_hash",
                   "created_at")


def schema():
    """The Arrow schema of a row (the Parquet shards and ``hf/``)."""
    import pyarrow as pa

    s, ls = pa.string(), pa.list_(pa.string())
    return pa.schema([
        ("id", s),
        ("messages", pa.list_(pa.struct([("role", s), ("content", s)]))),
        ("source", s), ("source_id", s), ("docid", s),
        ("src_lang", s), ("tgt_lang", s), ("instruction_lang", s),
        ("interaction_types", ls),
        ("origin", s), ("annotator", s),
        ("models", ls), ("template_hashes", ls),
        ("created_at", s),
        ("n_user_turns", pa.int32()),
        ("user_turn_authors", ls), ("turn_models", ls), ("turn_templates", ls), ("turn_created_at", ls),
        ("origin_file", s), ("filter_run_id", pa.int64()),
        # the LLM judge (itcollect judge), one entry per assistant answer (null: no current judgement)
        ("turn_judge_scores", pa.list_(pa.float64())), ("turn_judge_errors", ls), ("turn_compliance", ls),
        ("turn_judge_ratings", pa.list_(pa.int32())), ("judge_model", s),
    ])


def group_key(d: dict[str, Any]) -> str:
    """The unit a split is assigned to: one source sentence (by id, else by normalised text)."""
    return group_key_of(d["id"], d.get("source_id"), d.get("source_text"))


def build_row(d: dict[str, Any], turns: list[dict[str, Any]], system_prompt: str | None,
              run_id: int | None, judgements: dict[int, dict[str, Any]] | None = None) -> dict[str, Any]:
    """One dataset row: the stored active turns in order, plus provenance (one pass over the turns).

    ``judgements``: current judgements by turn id (:meth:`Store.current_judgements`); an answer
    without one (or whose judgement is unparsed) gets nulls in the judge columns."""
    messages: list[dict[str, str]] = []
    models: list[str] = []
    hashes: list[str] = []
    itypes: list[str | None] = []
    authors: list[str | None] = []
    answer_models: list[str | None] = []
    templates: list[str | None] = []
    created: list[str | None] = []
    j_scores: list[float | None] = []
    j_errors: list[str | None] = []
    j_compliance: list[str | None] = []
    j_ratings: list[int | None] = []
    j_models: list[str] = []
    judgements = judgements or {}
    for t in turns:
        role = t["role"]
        messages.append({"role": role, "content": t["content"]})
        model, th = t.get("model"), t.get("template_hash")
        if model and model not in models:
            models.append(model)
        if th and th not in hashes:
            hashes.append(th)
        templates.append(t.get("template_name"))
        created.append(t.get("created_at"))
        if role == "user":
            itypes.append(t.get("interaction_type"))
            authors.append(t.get("author"))
        elif role == "assistant":
            answer_models.append(model)
            j = judgements.get(t["id"]) if judgements else None
            if j is not None and j["status"] == "judged":
                j_scores.append(j["score"])
                errors = j["errors"]  # the store's canonical JSON text (or decoded spans)
                j_errors.append((errors if isinstance(errors, str) else _JSON.encode(errors))
                                if j["kind"] == "translation" else None)
                j_compliance.append(j["compliance"])
                j_ratings.append(j["rating"])
                if j["judge_model"] not in j_models:
                    j_models.append(j["judge_model"])
            else:
                j_scores.append(None)
                j_errors.append(None)
                j_compliance.append(None)
                j_ratings.append(None)
            if itypes and itypes[-1] is None and t.get("interaction_type"):
                itypes[-1] = t["interaction_type"]  # the type may sit on the answer turn instead
    if itypes and itypes[0] is None and d.get("origin") != "imported":
        itypes[0] = "translate"
    if system_prompt and not (messages and messages[0]["role"] == "system"):
        messages.insert(0, {"role": "system", "content": system_prompt})
    return {
        "id": d["id"],
        "messages": messages,
        "source": d.get("source_text"),
        "source_id": d.get("source_id") or group_key(d),
        "docid": d.get("docid") or (d["meta"].get("docid") if isinstance(d.get("meta"), dict) else None),
        "src_lang": d.get("src_lang"), "tgt_lang": d.get("tgt_lang"),
        "instruction_lang": d.get("instruction_lang"),
        "interaction_types": itypes,
        "origin": d.get("origin"), "annotator": d.get("annotator"),
        "models": models, "template_hashes": hashes,
        "created_at": d.get("created_at"),
        "n_user_turns": len(itypes),
        "user_turn_authors": authors,
        "turn_models": answer_models,
        "turn_templates": templates,
        "turn_created_at": created,
        "origin_file": d.get("origin_file"),
        "filter_run_id": run_id,
        "turn_judge_scores": j_scores,
        "turn_judge_errors": j_errors,
        "turn_compliance": j_compliance,
        "turn_judge_ratings": j_ratings,
        "judge_model": ",".join(j_models) if j_models else None,
    }


def rows_to_table(rows: list[dict[str, Any]], schema):
    """Rows -> Arrow table, column by column. Nested columns are assembled from flat value arrays
    and offsets, several times faster than ``Table.from_pylist`` on list-of-struct data."""
    import numpy as np
    import pyarrow as pa

    def offsets(lists: list[list]) -> Any:
        out = np.zeros(len(lists) + 1, dtype=np.int32)
        np.cumsum([len(x) for x in lists], out=out[1:])
        return pa.array(out)

    arrays = []
    for f in schema:
        values = [r[f.name] for r in rows]
        if f.name == "messages":
            roles = [m["role"] for ms in values for m in ms]
            contents = [m["content"] for ms in values for m in ms]
            struct = pa.StructArray.from_arrays([pa.array(roles, pa.string()), pa.array(contents, pa.string())],
                                                fields=list(f.type.value_type))
            arrays.append(pa.ListArray.from_arrays(offsets(values), struct, type=f.type))
        elif pa.types.is_list(f.type):
            flat = pa.array([v for x in values for v in x], f.type.value_type)
            arrays.append(pa.ListArray.from_arrays(offsets(values), flat, type=f.type))
        else:
            arrays.append(pa.array(values, f.type))
    return pa.Table.from_arrays(arrays, schema=schema)


_SHAREGPT_KEYS = ("src_lang", "tgt_lang", "instruction_lang", "origin", "source_id")


def sharegpt_conversation(messages: list[dict[str, Any]]) -> tuple[list[dict[str, str]], str | None]:
    """``{role, content}`` messages as ShareGPT ``conversations`` of ``{from: human|gpt, value}``,
    and the system prompt (None without one)."""
    conv, system = [], None
    for m in messages:
        if m["role"] == "system":
            system = m["content"]
        else:
            conv.append({"from": "human" if m["role"] == "user" else "gpt", "value": m["content"]})
    return conv, system


def sharegpt_record(row: dict[str, Any]) -> dict[str, Any]:
    """FastChat / LLaMA-Factory ShareGPT form of a row (system message -> ``system`` field)."""
    conv, system = sharegpt_conversation(row["messages"])
    rec: dict[str, Any] = {"id": row["id"], "conversations": conv}
    if system is not None:
        rec["system"] = system
    for key in _SHAREGPT_KEYS:
        rec[key] = row[key]
    return rec


def _json_value(v: Any) -> str:
    return _json_str(v) if type(v) is str else _JSON.encode(v)


def sharegpt_json(row: dict[str, Any]) -> str:
    """``json.dumps(sharegpt_record(row), ensure_ascii=False)``, written directly: the strings are
    encoded by json's own C encoder, without building the record and walking it (it runs for every
    exported dialogue: ~30 -> ~10 us)."""
    conv = []
    system = None
    for m in row["messages"]:
        role = m["role"]
        if role == "system":
            system = m["content"]
        else:
            conv.append(('{"from": "human", "value": ' if role == "user" else '{"from": "gpt", "value": ')
                        + _json_value(m["content"]) + "}")
    parts = ['{"id": ', _json_value(row["id"]), ', "conversations": [', ", ".join(conv), "]"]
    if system is not None:
        parts += [', "system": ', _json_value(system)]
    for key in _SHAREGPT_KEYS:
        parts += [', "', key, '": ', _json_value(row[key])]
    parts.append("}")
    return "".join(parts)
