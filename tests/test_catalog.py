"""The message catalog every human front-end reads (issue 24 item 6): both languages, the same
placeholders, and a check's warning as a sentence that says what to do."""

from __future__ import annotations

import json
import string

import pytest

from itcollect.kernel import checks as C
from itcollect.session.catalog import MESSAGES, UI_LANGS, catalog_js, t, warning_sentence


def _fields(text: str) -> set[str]:
    return {f for _, f, _, _ in string.Formatter().parse(text) if f}


@pytest.mark.parametrize("key", sorted(MESSAGES))
def test_every_message_in_both_languages_with_the_same_placeholders(key):
    entry = MESSAGES[key]
    assert set(entry) == set(UI_LANGS), key
    assert all(entry[lang].strip() for lang in UI_LANGS), key
    assert _fields(entry["en"]) == _fields(entry["zh"]), key


def test_a_wrong_language_request_is_a_sentence_that_says_what_to_do():
    reasons = C.check_language("Now translate it into German please.", "zh", languages=("en", "zh", "de"))
    assert reasons and C.reason_code(reasons[0]) == "wrong_language"
    en = warning_sentence(reasons[0], "en", request=True)
    assert en == "This dialogue's requests are planned in Chinese: write the request in Chinese."
    zh = warning_sentence(reasons[0], "zh", request=True)
    assert "中文" in zh and "请用中文" in zh
    assert "!=" not in en + zh and "wrong_language" not in en + zh


def test_every_check_code_has_its_own_sentence():
    codes = ["empty", "not_a_request: no question or instruction", "request_too_long: 130 words",
             "copies_source", "missing_terms: 802", "too_long: 20 words > 12", "truncated: finish_reason length",
             "off_topic: no content words shared with the source or translation", "unchanged: same as before"]
    for reason in codes:
        for lang in UI_LANGS:
            s = warning_sentence(reason, lang)
            assert not s.startswith(C.reason_code(reason)) and s != t("warn.other", lang, reason=reason), (reason, lang)
    assert warning_sentence("brand_new_code: x", "en") == "Check this: brand_new_code: x."


def test_the_pages_read_the_same_catalog():
    js = catalog_js().decode()
    payload = js[js.index("{"):js.rindex("}") + 1]
    assert json.loads(payload) == MESSAGES
