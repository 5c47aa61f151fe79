"""The annotation guidelines, section by section.

The guides live in ``annotation_guidelines/guide_<lang>.md`` (shipped as the package
``itcollect.annotation_guidelines``); a section starts at a heading ``## type: <id>`` (one per
interaction type) or ``## general: <topic> — <title>`` (the same ids in every language), so the session can show the part that matters for the
turn at hand without the annotator scrolling through the whole guide.
"""

from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources

GUIDE_LANGS = ("en", "zh")
_HEADING = re.compile(r"^## (type|general): *(.+?) *$", re.MULTILINE)


@lru_cache(maxsize=4)
def guide_text(lang: str = "en") -> str:
    """The whole guide in ``lang`` (en | zh; anything else falls back to English)."""
    lang = lang if lang in GUIDE_LANGS else "en"
    return resources.files("itcollect.annotation_guidelines").joinpath(f"guide_{lang}.md").read_text(encoding="utf-8")


@lru_cache(maxsize=4)
def guide_sections(lang: str = "en") -> dict[str, str]:
    """Sections keyed ``type:<id>`` or ``general:<topic>`` (the heading's first word)."""
    text = guide_text(lang)
    matches = list(_HEADING.finditer(text))
    out: dict[str, str] = {}
    for m, nxt in zip(matches, matches[1:] + [None]):
        kind, name = m.group(1), m.group(2)
        key = f"{kind}:{name.split()[0]}"
        out[key] = text[m.start():nxt.start() if nxt else len(text)].rstrip() + "\n"
    return out


def guideline_section(type_id: str, lang: str = "en") -> str:
    """The section for one interaction type, followed by the general section on judging answers.

    An unknown type gets the judging section alone, so the key always shows something useful.
    """
    sections = guide_sections(lang)
    parts = [sections.get(f"type:{type_id}", "")]
    parts.append(sections.get("general:judging", ""))
    return "\n".join(p for p in parts if p)


def guideline_types(lang: str = "en") -> list[str]:
    """Interaction types that have a section in the guide."""
    return [k.split(":", 1)[1] for k in guide_sections(lang) if k.startswith("type:")]


_GOOD = re.compile(r"^(?:Good|好的请求)\s*[:：]\s*$")
_EXAMPLE = re.compile(r"^- [\"“](.+?)[\"”](?=\s|$|（|\()")


def _mostly_chinese(text: str) -> bool:
    han = sum(1 for ch in text if "\u4e00" <= ch <= "\u9fff")
    latin = sum(1 for ch in text if ch.isascii() and ch.isalpha())
    return han > latin


@lru_cache(maxsize=64)
def example_requests(type_id: str, lang: str = "en") -> tuple[str, ...]:
    """The guide's "Good" example requests for a type that are written in ``lang`` (en | zh), in
    the guide's order: what a request box can offer as a hint for the planned type."""
    section = guide_sections(lang).get(f"type:{type_id}", "")
    out: list[str] = []
    in_good = False
    for line in section.splitlines():
        if _GOOD.match(line.strip()):
            in_good = True
            continue
        if in_good:
            if not line.strip():
                break
            m = _EXAMPLE.match(line.strip())
            if m and _mostly_chinese(m.group(1)) == (lang == "zh"):
                out.append(m.group(1).strip())
    return tuple(out)
