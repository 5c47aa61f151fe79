"""How often langid's word check decides a line, how often it disagrees with lingua, and what each costs.

    python benchmarks/bench_langid.py [--debian] [--file LANG=PATH ...] [--generated N [--prose]]

The check (``itcollect.kernel.langid``, ``fast=True``) decides a line by its function words, else by its
content words, else hands it to lingua. This prints, per text set and step, how many lines the
step decides, how many of those lingua (restricted to en/de/fr, the reference) would have called
another language, a few of those lines, and the CPU time per line of the check and of lingua.

Text sets (lines with letters and no Han, one text each):

* ``--debian``: real text from Debian packages, ``apt-get install fortunes fortunes-de
  manpages-de manpages-fr debian-edu-doc-en debian-edu-doc-fr``: fortune cookies (each line and
  each whole cookie), the prose lines of 400 man pages per language (groff requests and font
  escapes removed) and the paragraphs of the Debian Edu manual. The set is labelled by the
  package's language, but the reference is lingua's answer, not that label.
* ``--file LANG=PATH``: the lines of a UTF-8 text file of your own.
* ``--generated N``: the texts of the first N dialogues of the Import benchmark's data
  (``bench_export.generate``: strings of content words; with ``--prose``, with function words).
"""

from __future__ import annotations

import argparse
import glob
import gzip
import html
import random
import re
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from itcollect.kernel import langid  # noqa: E402

CANDIDATES = ("en", "de", "fr")
_GROFF_ESCAPE = re.compile(r"\\f[BIRP]|\\f\(..|\\\(..|\\[-&e]|\\\*.|\\s[-+]?\d")
_TAG = re.compile(r"<[^>]+>")


def _fortunes(folder: str) -> list[str]:
    out: list[str] = []
    for path in sorted(glob.glob(f"{folder}/*")):
        if path.endswith((".dat", ".u8")) or "art" in Path(path).name or not Path(path).is_file():
            continue
        raw = Path(path).read_bytes()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("latin-1")
        for cookie in text.split("\n%\n"):
            out += [line.strip() for line in cookie.splitlines() if line.strip()]
            out.append(" ".join(cookie.split()))
    return out


def _man_pages(pattern: str, limit: int = 400) -> list[str]:
    files = sorted(glob.glob(pattern))
    random.Random(1).shuffle(files)
    out: list[str] = []
    for path in files[:limit]:
        try:
            text = gzip.open(path, "rt", encoding="utf-8").read()
        except (OSError, UnicodeDecodeError):
            continue
        for line in text.splitlines():
            if line.startswith((".", "'", '\\"')):
                continue
            line = _GROFF_ESCAPE.sub("", line).replace("\\", "").strip()
            if len(line) > 3:
                out.append(line)
    return out


def _html_paragraphs(path: str) -> list[str]:
    if not Path(path).exists():
        return []
    text = re.sub(r"(?s)<(script|style)[^>]*>.*?</\1>", " ", Path(path).read_text(encoding="utf-8"))
    paras = (" ".join(html.unescape(_TAG.sub(" ", p)).split())
             for p in re.split(r"</?(?:p|li|h\d|td|div|pre|dt|dd)[^>]*>", text))
    return [p for p in paras if len(p) > 3]


def debian_texts() -> dict[str, list[str]]:
    edu = "/usr/share/doc/debian-edu-doc-{}/debian-edu-bookworm-manual.html"
    sets = {"en": _fortunes("/usr/share/games/fortunes") + _man_pages("/usr/share/man/man[1-8]/*.gz")
            + _html_paragraphs(edu.format("en")),
            "de": _fortunes("/usr/share/games/fortunes/de") + _man_pages("/usr/share/man/de/man*/*.gz"),
            "fr": _man_pages("/usr/share/man/fr/man*/*.gz") + _html_paragraphs(edu.format("fr"))}
    if not all(sets.values()):
        sys.exit("bench_langid: --debian needs the Debian packages named in the docstring")
    return {f"debian-{lang}": texts for lang, texts in sets.items()}


def generated_texts(n: int, prose: bool) -> list[str]:
    import json
    import tempfile

    from bench_export import generate

    from itcollect.importer import split_source
    from itcollect.kernel.text import text_to_detect

    out: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "dialogues.jsonl"
        generate(path, n, prose=prose)
        records = [json.loads(line) for line in path.open(encoding="utf-8")]
    for rec in records:
        msgs = rec["messages"]
        src = split_source(next(m["content"] for m in msgs if m["role"] == "user"))[0]
        out += [text_to_detect(m, src) for m in msgs]
    return out


def measure(name: str, texts: list[str], examples: int) -> None:
    texts = [t for t in dict.fromkeys(texts) if not langid._HAN.search(t) and any(map(str.isalpha, t))]
    lexicon = langid._lexicon()
    t0 = time.process_time()
    by_function_words = [langid._word_guess(t, CANDIDATES, None) for t in texts]
    t_function = time.process_time() - t0
    t0 = time.process_time()
    by_words = [langid._word_guess(t, CANDIDATES, lexicon) for t in texts]
    t_words = time.process_time() - t0
    detector = langid._lingua_detector(CANDIDATES)
    t0 = time.process_time()
    reference = [None if r is None else langid._lingua_code(r) for r in map(detector.detect_language_of, texts)]
    t_lingua = time.process_time() - t0
    print(f"{name}: {len(texts):,} lines; CPU per line: word check {t_words / len(texts) * 1e6:.1f} us "
          f"(function words alone {t_function / len(texts) * 1e6:.1f} us), lingua {t_lingua / len(texts) * 1e6:.0f} us")
    steps = Counter()
    disagree = Counter()
    shown: list[str] = []
    for text, fw, both, ref in zip(texts, by_function_words, by_words, reference):
        step = "function words" if fw is not None else "content words" if both is not None else "lingua"
        steps[step] += 1
        if both is not None and both != ref:
            disagree[step] += 1
            if len(shown) < examples:
                shown.append(f"    [{step}] {both} (lingua {ref}): {text[:100]!r}")
    for step in ("function words", "content words", "lingua"):
        n = steps[step]
        share = f"{n / len(texts):.1%} of lines"
        if step == "lingua":
            print(f"  left to lingua:           {n:>8,} ({share})")
        else:
            print(f"  decided by {step + ':':<15}{n:>8,} ({share}), lingua says otherwise for "
                  f"{disagree[step]:,} ({disagree[step] / max(n, 1):.2%})")
    print("\n".join(shown))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--debian", action="store_true", help="real text from installed Debian packages")
    ap.add_argument("--file", action="append", default=[], metavar="LANG=PATH", help="a text file of your own")
    ap.add_argument("--generated", type=int, default=0, metavar="N", help="the first N generated dialogues")
    ap.add_argument("--prose", action="store_true", help="generate with function words (bench_import --prose)")
    ap.add_argument("--examples", type=int, default=5, help="disagreeing lines shown per set")
    args = ap.parse_args()
    sets: dict[str, list[str]] = {}
    if args.debian:
        sets.update(debian_texts())
    for spec in args.file:
        lang, _, path = spec.partition("=")
        sets[f"{lang}:{Path(path).name}"] = Path(path).read_text(encoding="utf-8").splitlines()
    if args.generated:
        sets[f"generated{'-prose' if args.prose else ''}-{args.generated}"] = generated_texts(args.generated, args.prose)
    if not sets:
        ap.error("give --debian, --file or --generated")
    langid.warm_up(CANDIDATES)
    for name, texts in sets.items():
        measure(name, texts, args.examples)


if __name__ == "__main__":
    main()
