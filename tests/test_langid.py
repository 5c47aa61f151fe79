"""Language identification and normalisation: accuracy on short news sentences, determinism,
and that the speed-ups (the word check, Moses precheck) change no result."""

from __future__ import annotations

import random
import unicodedata

import pytest
from sacremoses import MosesPunctNormalizer

from itcollect.ingest import IngestOptions, IngestSettings, ingest_paths
from itcollect.kernel import langid
from itcollect.kernel.errors import ItcollectError
from itcollect.kernel.langid import detect_language, detect_languages, han_ratio, letter_ratio
from itcollect.kernel.normalize import normalize_text, normalize_whitespace

from .conftest import SAMPLES

SHORT = {
    "en": ["He said no.", "Prices fell again.", "The vote was close.", "Rain is expected later.",
           "She won the final.", "Talks resume on Monday.", "Markets rallied today.", "It was a draw."],
    "de": ["Er sagte nein.", "Die Preise fielen.", "Das Spiel endete torlos.", "Morgen wird es regnen.",
           "Sie gewann das Finale.", "Die Gespräche gehen weiter.", "Der Zug fällt aus.", "Es war knapp."],
    "fr": ["Il a dit non.", "Les prix ont baissé.", "Le vote était serré.", "Il pleuvra demain.",
           "Elle a gagné la finale.", "Les discussions reprennent lundi.", "La Bourse a progressé.",
           "C'était un match nul."],
    "zh": ["他说不。", "价格下跌了。", "我们走吧。", "比赛结束了。", "明天有雨。", "会谈周一恢复。", "股市上涨。",
           "投票结果很接近。"],
}


@pytest.mark.parametrize("lang", sorted(SHORT))
def test_short_sentences_in_every_language(lang):
    assert detect_languages(SHORT[lang]) == [lang] * len(SHORT[lang])


def test_short_chinese_is_chinese_with_both_backends():
    for backend in ("lingua", "langdetect"):
        assert [detect_language(t, backend=backend) for t in SHORT["zh"]] == ["zh"] * len(SHORT["zh"])


def test_no_letters_means_no_language():
    assert detect_languages(["", "12 345", "---", "3.5%"]) == [None, None, None, None]


def test_restricted_to_the_workspace_languages():
    assert detect_language("Die Preise fielen im Oktober deutlich.", ["en", "fr"]) in ("en", "fr")
    assert detect_language("他说不。", ["en", "de"]) is None
    assert detect_language("The harbour reopened on Monday.", ["en", "zh"]) == "en"


def test_langdetect_backend_is_deterministic():
    texts = [t for lang in ("en", "de", "fr") for t in SHORT[lang]] + [
        "The central bank kept its benchmark interest rate unchanged on Wednesday."]
    first = detect_languages(texts, backend="langdetect")
    assert all(r in (None, "en", "de", "fr") for r in first)
    for _ in range(3):
        assert detect_languages(texts, backend="langdetect") == first
    assert first[-1] == "en"


def test_word_check_agrees_with_lingua_on_every_sample_sentence(workspace):
    summary = ingest_paths(workspace.store, [str(SAMPLES)], IngestSettings.from_config(workspace.config),
                           IngestOptions())
    assert summary.kept == 181
    texts = [s["text"] for s in workspace.store.iter_sources()]
    extra = ["The stock market closed higher on Friday as investors welcomed the data.",
             "Die Regierung will die Steuern für kleine Unternehmen im kommenden Jahr deutlich senken.",
             "Die französische Regierung hat am Dienstag neue Sparmaßnahmen angekündigt.",
             "Charles de Gaulle airport was closed for two hours on Sunday after a security alert.",
             "Le New York Times a publié mardi une enquête sur les ventes d'armes."]
    texts += extra + [t for lang in ("en", "de", "fr") for t in HEADLINES[lang]]
    fast = detect_languages(texts, fast=True)
    full = detect_languages(texts, fast=False)
    assert fast == full
    n_headlines = sum(map(len, HEADLINES.values()))
    assert fast[-n_headlines - 5:-n_headlines] == ["en", "de", "de", "en", "fr"]
    assert fast[-n_headlines:] == [lang for lang in ("en", "de", "fr") for _ in HEADLINES[lang]]


#: Headlines without the function words that decide a line: the content-word step decides them.
HEADLINES = {
    "en": ["Stocks slump amid recession fears", "Unemployment rises sharply across northern regions",
           "Hospital workers demand higher wages", "Wildfires force thousands to evacuate homes"],
    "de": ["Gewerkschaft droht mit Streik am Flughafen", "Bundesregierung beschließt neues Klimaschutzgesetz",
           "Bauern fordern höhere Preise für Milch"],
    "fr": ["Grève générale paralyse hôpitaux parisiens", "Inondations meurtrières frappent villages côtiers",
           "Agriculteurs réclament davantage aides européennes", "Incendie ravage entrepôt lyonnais"],
}
EN_DE_FR = ("en", "de", "fr")


@pytest.mark.parametrize("lang", sorted(HEADLINES))
def test_content_words_decide_headlines_the_function_words_leave_open(lang):
    lexicon = langid._lexicon()
    for text in HEADLINES[lang]:
        assert langid._word_guess(text, EN_DE_FR, None) is None, text  # function words alone: unsure
        assert langid._word_guess(text, EN_DE_FR, lexicon) == lang, text
    assert detect_languages(HEADLINES[lang], fast=False) == [lang] * len(HEADLINES[lang])  # lingua agrees


def test_content_words_leave_mixed_sparse_and_foreign_lines_to_lingua():
    lexicon = langid._lexicon()
    undecided = [
        "Gewerkschaft students Flughafen warnings",  # hits in two languages
        "Stocks slump",  # two hits are not enough
        "Großbrand zerstört Lagerhalle",  # two hits of three words
        "Unemployment rises zzyzx qwertz blorf frobnitz",  # three hits, not half the words
        "Wildfires force thousands, sagt Minister Habeck",  # a German function word against English content
        "",
    ]
    for text in undecided:
        assert langid._word_guess(text, EN_DE_FR, lexicon) is None, text
    # French is not a candidate: French content words decide nothing, not the nearest candidate
    assert langid._word_guess(HEADLINES["fr"][0], ("en", "de"), lexicon) is None
    assert langid._word_guess(HEADLINES["de"][0], ("en", "de"), lexicon) == "de"
    # ß is looked up folded, as wordfreq folds it ("Straße" is "strasse")
    assert lexicon["strasse"] == "de"
    assert langid._word_guess("Großbrand zerstört Lagerhalle völlig", EN_DE_FR, lexicon) == "de"


def test_lexicon_file_keeps_its_promises():
    lexicon = langid._lexicon()
    counts = {lang: sum(1 for v in lexicon.values() if v == lang) for lang in langid.LEXICON_LANGUAGES}
    assert set(lexicon.values()) == set(langid.LEXICON_LANGUAGES)
    assert all(n > 10_000 for n in counts.values()), counts
    assert all(len(w) >= 3 and w.isalpha() and w == w.casefold() for w in lexicon)
    assert not set(lexicon) & set(langid._FUNCTION_WORDS)  # the two steps count different words
    # words of two of the languages are in neither list
    assert not {"station", "inflation", "court", "hotel", "restaurant"} & set(lexicon)


def test_a_missing_lexicon_is_one_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(langid, "LEXICON_PATH", tmp_path / "langid_lexicon.tsv.gz")
    langid._lexicon.cache_clear()
    try:
        with pytest.raises(ItcollectError, match="langid_lexicon.tsv.gz: langid's word list is missing"):
            detect_languages(["Stocks slump amid recession fears"])
    finally:
        langid._lexicon.cache_clear()


def test_letter_and_han_ratios_keep_their_meaning():
    def ref_letter_ratio(text):
        chars = [ch for ch in text if not ch.isspace()]
        return sum(1 for ch in chars if ch.isalpha() or unicodedata.category(ch) == "Mn") / len(chars) if chars else 0.0

    for text in ["abc 123", "Größe", "e\u0301te\u0301", "中文 text", "½ ² ³", "", "   ", "http://x.y/z"]:
        assert letter_ratio(text) == pytest.approx(ref_letter_ratio(text))
    assert han_ratio("中文ab") == pytest.approx(0.5)
    assert han_ratio("123") == 0.0


def test_fast_moses_matches_sacremoses_exactly():
    alphabet = list("abc XYZ 12 -!?\t()\"'`,.;:%«»„“”–—´‘’‚…\u00a0") + ["''", " ,", " :", "nº\u00a0", "\u00a0cm"]
    rng = random.Random(7)
    samples = ["Le taux de chômage a reculé à 7,3 % au troisième trimestre, selon l'Insee.",
               'Der Bürgermeister sagte, das Projekt sei "ehrgeizig, aber machbar".',
               "He said: « non » (twice) – and left…", "Prices rose 5 % in ( March ) ."]
    samples += ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 30))) for _ in range(3000)]
    for lang in ("en", "de", "fr"):
        moses = MosesPunctNormalizer(lang=lang)
        for text in samples:
            pre = normalize_whitespace(unicodedata.normalize("NFC", text))
            if pre:
                assert normalize_text(text, lang) == normalize_whitespace(moses.normalize(pre)), (lang, text)


def test_chinese_keeps_full_width_punctuation():
    assert normalize_text("  央行周三维持利率不变，称通胀降温（慢于预期）。 ", "zh") == "央行周三维持利率不变，称通胀降温（慢于预期）。"
    assert normalize_text("Cafe\u0301  au   lait", "fr") == "Café au lait"


def test_detect_languages_cache_changes_no_result():
    from itcollect.kernel.langid import detect_languages

    texts = ["The council approved the budget on Tuesday.", "Der Rat hat den Haushalt am Dienstag gebilligt.",
             "Le conseil a approuvé le budget mardi.", "国务院周二发布了新政策。", "Make it shorter.", "12 %",
             "Make it shorter.", "Rain", "The council approved the budget on Tuesday."] * 10
    cache: dict = {}
    assert detect_languages(texts, cache=cache) == detect_languages(texts)
    assert set(cache) == set(texts)
    assert detect_languages(texts[::-1], cache=cache, parallel=False) == detect_languages(texts[::-1])


def test_normalize_whitespace_all_is_normalize_whitespace_of_each():
    from itcollect.kernel.normalize import normalize_whitespace, normalize_whitespace_all

    cases = [["a b", "c"], [" a", "b"], ["a", "b "], ["a", "", "b"], ["a\u00a0b"], ["a\tb", "c"], ["a  b"],
             ["x\u200by", "z"], ["", ""], ["a\x1fb"], ["今天 天气", "很好"], ["a\n", "b"], ["\u3000a"], []]
    for texts in cases:
        assert normalize_whitespace_all(list(texts)) == [normalize_whitespace(t) for t in texts], texts


def test_needs_fix_is_the_regex_it_replaces():
    from itcollect.kernel.normalize import _NEEDS_FIX, _needs_fix

    every = "x".join(map(chr, range(0x110000)))  # each code point alone between two letters
    assert {c for c in _NEEDS_FIX.findall(every)} == {c for c in every if _needs_fix(c)}
    for text in ("a  b", "a \tb", "ab", " a", "a ", "a\u3000 b", "", "   ", "a b c"):
        assert _needs_fix(text) == (_NEEDS_FIX.search(text) is not None), repr(text)
