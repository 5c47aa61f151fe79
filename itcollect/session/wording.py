"""What a person's request fixes by its own wording: the parameters the session engine records
with a human request (a length bound, shorter / longer, a style register, a retarget's new
language), so its answer is checked against what was actually asked, not the plan's draw."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from itcollect.kernel.checks import length_unit, normalize_for_compare
from itcollect.kernel.errors import ItcollectError
from itcollect.kernel.prompting import quote_source
from itcollect.kernel.taxonomy import mentions_language, zh_number

_REGISTERS = (("headline", ("headline", "标题")), ("children", ("child", "kids", "儿童", "小学生", "孩子")),
              ("plain", ("plain", "simple words", "通俗", "浅显", "大白话")),
              ("casual", ("casual", "informal", "friend", "chatty", "口语", "随意", "轻松")),
              ("formal", ("formal", "正式", "书面")))
_SHORTER = ("shorter", "shorten", "brief", "concise", "condense", "短", "精简", "简洁", "压缩")
_LONGER = ("longer", "expand", "more detail", "elaborate", "长一", "详细", "扩展", "扩充")
_NUMBER = re.compile(r"\d+")


@lru_cache(maxsize=1)
def _zh_numbers() -> list[tuple[str, int]]:
    return sorted(((zh_number(n), n) for n in range(1, 100)), key=lambda x: -len(x[0]))


def human_request_params(type_id: str, text: str, target: str, languages: Any) -> dict[str, Any]:
    """Parameters a request fixes by its own wording: a length bound (digits or Chinese numerals),
    shorter / longer, a style register, a retarget's new language."""
    low = text.casefold()
    out: dict[str, Any] = {}
    if type_id == "length":
        m = _NUMBER.search(text)
        n = int(m.group()) if m else next((v for k, v in _zh_numbers() if k in text), None)
        if n:
            out.update(mode="max", n=n, unit=length_unit(target) if target else None)
        elif any(w in low for w in _SHORTER):
            out["mode"] = "shorter"
        elif any(w in low for w in _LONGER):
            out["mode"] = "longer"
    elif type_id == "style":
        for register, words in _REGISTERS:
            if any(w in low for w in words):
                out["register"] = register
                break
    elif type_id == "retarget":
        named = [lang for lang in languages if lang != target and mentions_language(text, lang)]
        if named:
            out["lang"] = named[0]
    return out


def first_request_hint(prompts: Any, spec: dict[str, Any], source: str) -> str | None:
    """The wording simulate's first-turn template would use for this spec (without the sentence,
    which is attached anyway): the grey hint of a first request. None when it cannot be rendered."""
    params = spec.get("params") or {}
    try:
        r = prompts.render(f"first_turn_{spec['instruction_lang']}.j2", source=source, src_lang=spec["src_lang"],
                           tgt_lang=spec["tgt_lang"], variant=int(params.get("variant", 0)),
                           terms=list(params.get("must_include") or []))
    except ItcollectError:
        return None
    head, sep, _ = r.text.rpartition("\n\n")
    return (head if sep else r.text).strip() or None


def attach_source(text: str, source: str) -> str:
    """A first request with the source sentence attached as simulate's first-turn template does
    (the request, a blank line, the sentence quoted), unless the annotator pasted it already."""
    if normalize_for_compare(source) in normalize_for_compare(text):
        return text
    return f"{text}\n\n{quote_source(source)}"


def detach_source(text: str, source: str) -> str:
    """A committed request without the source sentence :func:`attach_source` attached: what the
    annotator typed, put back in the box after ``undo``."""
    tail = f"\n\n{quote_source(source)}"
    return text[:-len(tail)] if text.endswith(tail) else text


def taken_back_request(turns: list[dict[str, Any]], source: str) -> str | None:
    """The text of the last request among ``turns`` (the one ``undo`` is about to take back), as typed."""
    last = next((t for t in reversed(turns) if t["role"] == "user"), None)
    return None if last is None else detach_source(last["content"], source)
