"""The guidelines as the web page shows them: Markdown rendered on the server by markdown-it-py into
HTML that is safe as it is (raw HTML, images and unsafe links off), every section of both guides."""

from __future__ import annotations

from itcollect.session.guidelines import GUIDE_LANGS, guide_sections
from itcollect.session.web.guide import render, sections_html


def test_headings_move_down_and_lose_the_section_word():
    assert render("## type: translate\n").strip() == "<h3>translate</h3>"
    assert render("## general: screen — the screen\n").strip() == "<h3>screen — the screen</h3>"
    assert render("### Examples\n").strip() == "<h4>Examples</h4>"
    assert render("###### deep\n").strip() == "<h6>deep</h6>"


def test_inline_marks_lists_and_tables():
    html = render("Say *what* to change, `e` or **a**.\n\n- one\n  more\n- two\n\n| key | action |\n|---|---|\n"
                  "| `a` | accept |\n")
    assert "<em>what</em>" in html and "<code>e</code>" in html and "<strong>a</strong>" in html
    assert "<ul>\n<li>one\nmore</li>\n<li>two</li>\n</ul>" in html
    assert "<th>key</th>" in html and "<td><code>a</code></td>" in html


def test_raw_html_images_and_unsafe_links_stay_text():
    html = render('<script>alert(1)</script> <img src=x onerror="alert(2)">\n\n'
                  "[x](javascript:alert(3)) [y](data:text/html;base64,PHNjcmlwdD4=) [z](vbscript:msgbox)\n\n"
                  "![pic](https://example.org/p.png) [ok](https://example.org/a) [m](mailto:lead@example.org)\n")
    assert "<script" not in html and "<img" not in html and "&lt;script&gt;" in html
    for bad in ('href="javascript', 'href="data:', 'href="vbscript'):
        assert bad not in html
    assert '<a href="https://example.org/a">ok</a>' in html and 'href="mailto:lead@example.org"' in html


def test_every_section_of_both_guides_renders_safely():
    for lang in GUIDE_LANGS:
        sections = sections_html(lang)
        assert [s["key"] for s in sections] == list(guide_sections(lang))
        for s in sections:
            assert s["html"].startswith("<h3>") and "<script" not in s["html"] and "<img" not in s["html"]
            assert not s["html"].startswith("<h3>type:") and not s["html"].startswith("<h3>general:")
