"""Build ``itcollect/kernel/langid_lexicon.tsv.gz``, the content words langid's word check counts.

    pip install wordfreq==3.1.1 && python tools/build_langid_lexicon.py

A word goes in for language L when it is among wordfreq's 30,000 most frequent words of L, has at
least three letters, is not one of langid's function words, and is at least 20 times as frequent
in L as in each of the other two languages (en, de, fr). So "students", "Gewerkschaft" and
"grève" are in, "station", "inflation" and "court" (words of two of them) are not.

wordfreq's lists are case-folded ("straße" is "strasse"); langid looks words up the same way. The
output is sorted and written without a timestamp, so the same wordfreq gives the same bytes.
wordfreq is needed here only: itcollect reads the file and never imports it.
"""

from __future__ import annotations

import gzip
import io
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from itcollect.kernel.langid import _FUNCTION_WORDS, LEXICON_LANGUAGES, LEXICON_PATH  # noqa: E402

TOP_N = 30_000
MIN_RATIO = 20.0
MIN_LETTERS = 3


def build() -> dict[str, str]:
    """word -> language."""
    import wordfreq

    lexicon: dict[str, str] = {}
    for lang in LEXICON_LANGUAGES:
        others = [o for o in LEXICON_LANGUAGES if o != lang]
        for word in wordfreq.top_n_list(lang, TOP_N):
            if len(word) < MIN_LETTERS or not word.isalpha() or word in _FUNCTION_WORDS:
                continue
            freq = wordfreq.word_frequency(word, lang)
            if freq >= MIN_RATIO * max(wordfreq.word_frequency(word, o) for o in others):
                lexicon[word] = lang
    return lexicon


def main() -> None:
    from importlib.metadata import version

    lexicon = build()
    buf = io.BytesIO()
    # mtime=0: no timestamp in the gzip header, so a rebuild from the same wordfreq is byte-identical
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, compresslevel=9) as gz:
        gz.write(f"# wordfreq {version('wordfreq')}: top {TOP_N}, ratio >= {MIN_RATIO:g}, "
                 f">= {MIN_LETTERS} letters; built by tools/build_langid_lexicon.py\n".encode())
        for word, lang in sorted(lexicon.items()):
            gz.write(f"{word}\t{lang}\n".encode())
    LEXICON_PATH.write_bytes(buf.getvalue())
    counts = {lang: sum(1 for v in lexicon.values() if v == lang) for lang in LEXICON_LANGUAGES}
    print(f"{LEXICON_PATH.relative_to(REPO)}: {len(lexicon)} words {counts}, {LEXICON_PATH.stat().st_size} bytes")


if __name__ == "__main__":
    main()
