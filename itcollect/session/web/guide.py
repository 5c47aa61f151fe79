"""The annotation guidelines as the web page shows them: each section's Markdown rendered on the
server by markdown-it-py into HTML that is safe to put in the page as it is.

Safe because of the parser's settings, not a filter afterwards: raw HTML in the Markdown is off
(``<script>`` in a guide shows as text), images are off (the page loads nothing from a guide),
and a link is kept only to an http(s) or mailto address or a place in the page (anything else,
``javascript:`` or ``data:`` say, stays text). Headings move one level down (the page's own
headings come first) and lose the ``type:`` / ``general:`` word the tool finds sections by.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from markdown_it import MarkdownIt

from itcollect.session.guidelines import guide_sections

_SECTION_WORD = re.compile(r"^(type|general):\s*")
_SAFE_LINK = re.compile(r"^(https?://|mailto:|#|/(?!/))", re.IGNORECASE)


def _safe_link(url: str) -> bool:
    return bool(_SAFE_LINK.match(url.strip()))


def _guide_headings(state: Any) -> None:
    """A core rule after the inline parse: headings one level down, without the section word."""
    for k, tok in enumerate(state.tokens):
        if tok.type in ("heading_open", "heading_close"):
            tok.tag = f"h{min(6, int(tok.tag[1:]) + 1)}"
            if tok.type == "heading_open" and k + 1 < len(state.tokens):
                inline = state.tokens[k + 1]
                inline.content = _SECTION_WORD.sub("", inline.content)
                if inline.children and inline.children[0].type == "text":
                    inline.children[0].content = _SECTION_WORD.sub("", inline.children[0].content)


class _GuideMarkdown(MarkdownIt):
    """The parser with our link check (markdown-it-py asks ``validateLink`` of every link)."""

    def validateLink(self, url: str) -> bool:  # markdown-it-py's name for it
        return _safe_link(url)


@lru_cache(maxsize=1)
def _markdown() -> MarkdownIt:
    md = _GuideMarkdown("commonmark", {"html": False, "linkify": False, "typographer": False})
    md.enable("table").disable("image")
    md.core.ruler.push("guide_headings", _guide_headings)
    return md


def render(text: str) -> str:
    """One piece of a guide's Markdown as safe HTML."""
    return _markdown().render(text)


@lru_cache(maxsize=4)
def sections_html(lang: str) -> tuple[dict[str, str], ...]:
    """The guide's sections in ``lang`` for the page: ``key``, the Markdown ``text`` and its ``html``."""
    return tuple({"key": k, "text": v, "html": render(v)} for k, v in guide_sections(lang).items())
