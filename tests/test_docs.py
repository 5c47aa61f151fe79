"""The README and the manual in docs/: every relative link resolves, on GitHub and in the mkdocs site.

``mkdocs build --strict`` (run by ``.ci/run``) checks the links between the pages of docs/ as the
site renders them; this test also covers README.md, which is not part of the site, and GitHub's
anchors, which are spelled differently from Python-Markdown's for some headings: a link must work
in both places, so an anchor must name a heading under both spellings.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from .conftest import REPO

DOCS = REPO / "docs"
PAGES = sorted(DOCS.glob("*.md"))
LINK = re.compile(r"!?\[(?:[^\]\\]|\\.)*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
FENCE = re.compile(r"^\s*(```|~~~)")


def _prose(text: str) -> list[str]:
    """The lines of ``text`` outside fenced code blocks, with inline code spans blanked out."""
    out, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            out.append("")
            continue
        out.append("" if fenced else re.sub(r"(`+).*?\1", "", line))
    return out


def _heading_text(raw: str) -> str:
    """What a heading reads as once rendered: code spans and links as their text, no emphasis."""
    text = re.sub(r"(`+)(.*?)\1", r"\2", raw)
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)
    return re.sub(r"(\*\*|__|\*)", "", text)


def github_slug(text: str) -> str:
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def mkdocs_slug(text: str) -> str:
    """Python-Markdown's ``toc`` slug (mkdocs' default), the one spelled in ``markdown.extensions.toc``."""
    from markdown.extensions.toc import slugify

    return slugify(text, "-")


def anchors(path: Path) -> dict[str, set[str]]:
    """Each slug spelling -> the anchors of the headings of ``path`` (repeats numbered as each does)."""
    found: dict[str, set[str]] = {"github": set(), "mkdocs": set()}
    fenced = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            fenced = not fenced
        m = None if fenced else HEADING.match(line)
        if not m:
            continue
        text = _heading_text(m.group(2))
        for kind, slug, sep in (("github", github_slug, "-"), ("mkdocs", mkdocs_slug, "_")):
            base = slug(text)
            anchor, n = base, 0
            while anchor in found[kind]:
                n += 1
                anchor = f"{base}{sep}{n}"
            found[kind].add(anchor)
    return found


def relative_links(path: Path) -> list[tuple[int, str]]:
    links = []
    for lineno, line in enumerate(_prose(path.read_text(encoding="utf-8")), 1):
        for target in LINK.findall(line):
            if not re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto: ...
                links.append((lineno, target))
    return links


@pytest.mark.parametrize("path", [REPO / "README.md", *PAGES], ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_resolves(path):
    assert relative_links(path) or path.name == "config.md", f"{path.name} links to no other page"
    broken = []
    for lineno, target in relative_links(path):
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        if not dest.exists():
            broken.append(f"{path.name}:{lineno}: {target}: no such file")
            continue
        if path.parent == DOCS and DOCS not in dest.parents:
            broken.append(f"{path.name}:{lineno}: {target}: outside docs/ (the site cannot link it)")
            continue
        if anchor and dest.suffix == ".md":
            have = anchors(dest)
            for kind in ("github", "mkdocs"):
                if anchor not in have[kind]:
                    broken.append(f"{path.name}:{lineno}: {target}: no heading with the {kind} anchor {anchor!r}")
    assert not broken, "\n".join(broken)


@pytest.mark.parametrize("path", [REPO / "README.md", *PAGES], ids=lambda p: str(p.relative_to(REPO)))
def test_lists_start_after_a_blank_line(path):
    """GitHub starts a list on the line after a paragraph; Python-Markdown (the site) reads such a
    list as more of the paragraph, dashes and all, unless a blank line comes first."""
    item = re.compile(r"^\s*(?:[-*+]|\d+\.)\s")
    lines = _prose(path.read_text(encoding="utf-8"))
    glued = [f"{path.name}:{i + 1}" for i in range(1, len(lines))
             if item.match(lines[i]) and lines[i - 1].strip() and not item.match(lines[i - 1])
             and not lines[i - 1].startswith((" ", "\t"))]
    assert not glued, f"a list glued to the paragraph above it: {glued}"


def test_slugs_match_the_two_renderers_on_known_headings():
    assert github_slug("The Batch API (--batch-api)") == "the-batch-api---batch-api"
    assert mkdocs_slug("The Batch API (--batch-api)") == "the-batch-api-batch-api"
    assert github_slug("The judge's rules") == mkdocs_slug("The judge's rules") == "the-judges-rules"


def test_every_page_is_in_the_nav_and_the_readme_index():
    config = yaml.safe_load((REPO / "mkdocs.yml").read_text(encoding="utf-8"))

    def files(nav) -> list[str]:
        out = []
        for item in nav:
            for value in (item.values() if isinstance(item, dict) else [item]):
                out += files(value) if isinstance(value, list) else [value]
        return out

    in_nav = files(config["nav"])
    assert sorted(in_nav) == sorted(p.name for p in PAGES) and len(set(in_nav)) == len(in_nav)
    readme_links = {target.partition("#")[0] for _, target in relative_links(REPO / "README.md")}
    assert {f"docs/{p.name}" for p in PAGES} <= readme_links


def test_quick_start_is_the_two_lines_ci_runs():
    """``.ci/run`` runs the second line of the ```sh block under "## Quick start": it must stay a
    block of exactly two lines, the second installing the test extras and running the suite."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    block = text.split("\n## Quick start\n", 1)[1].split("```sh\n", 1)[1].split("\n```", 1)[0]
    lines = block.splitlines()
    assert len(lines) == 2
    assert lines[0].endswith("pip install '.[local]' && itcollect demo")
    assert lines[1].endswith("pip install -e '.[test,local]' && pytest -n 2")


def test_no_page_points_at_a_module_that_moved():
    """Paths named in the prose (``itcollect/...``) exist, so a move updates the manual."""
    missing = []
    for path in [REPO / "README.md", REPO / "ARCHITECTURE.md", *PAGES]:
        for m in re.finditer(r"`(itcollect/[\w/.-]+\.(?:py|jsonl|gz|md))`", path.read_text(encoding="utf-8")):
            if not (REPO / m.group(1)).exists():
                missing.append(f"{path.name}: {m.group(1)}")
    assert not missing, f"the prose names paths that do not exist (a module moved: name its new path): {missing}"
