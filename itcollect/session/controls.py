"""Control items: one planted, unambiguous error in a copy of the model's first answer (the WMT
human-evaluation practice of "bad references"), to measure whether annotators read what they accept.

:func:`plant_error` changes exactly one thing, of one of four kinds, deterministically for a key
(the dialogue id) and language-aware for en / zh / de / fr:

* ``number``    the first digit of a number changed (120 → 220, 9 → 8; 第一 → 第二 and runs of
                Chinese digits likewise);
* ``negation``  a negation dropped (not, n't, nicht, kein, ne … pas, 不, 没有) or added to the first
                auxiliary (is → is not, hat → hat nicht, a → n'a pas, 是 → 不是);
* ``entity``    a weekday, month, country or city swapped for another (Monday → Tuesday, 柏林 → 慕尼黑);
* ``omission``  the last clause of a sentence of several left out (at a comma or semicolon).

The kinds are tried in an order drawn from the key, the first that applies is used; an answer in
which none applies is no control (None). Nothing here touches the store: the engine decides when
a dialogue is a control, records the planted turn and what was changed, and keeps the model's
real answer (:mod:`.engine`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from itcollect.store.availability import unit_hash

KINDS = ("number", "negation", "entity", "omission")


@dataclass(frozen=True)
class Planted:
    """An answer with one planted error: where, what it was, what it became."""

    text: str
    kind: str
    start: int        # offset of the change in the real answer
    before: str       # the real answer's text there ('' when something was added)
    after: str        # what the planted answer has instead ('' when something was left out)

    @property
    def description(self) -> str:
        """One line for the annotator, after their decision."""
        what = {"number": "a number was changed", "negation": "a negation was dropped or added",
                "entity": "a name was swapped", "omission": "a clause was left out"}[self.kind]
        if self.kind == "omission":
            return f"{what}: «{self.before.strip(' ,;，；')}»"
        return f"{what}: «{self.before.strip()}» → «{self.after.strip()}»"

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "description": self.description}


def _pick(key: str, what: str, n: int) -> int:
    return int(unit_hash("control", key, what) * n)


def _replace(text: str, start: int, end: int, new: str, kind: str) -> Planted | None:
    planted = text[:start] + new + text[end:]
    if planted == text:
        return None
    return Planted(planted, kind, start, text[start:end], new)


# -- numbers ------------------------------------------------------------------------------------------
_DIGITS = re.compile(r"\d[\d,.\u00a0\u202f]*\d|\d")
_ZH_DIGITS = "零一二三四五六七八九"
_ZH_NUMBER = re.compile(r"第[一二三四五六七八九十百]+|[零〇一二三四五六七八九]{2,}")


def _bump(ch: str, digits: str) -> str:
    k = digits.index(ch)
    return digits[k - 1] if k == 9 else digits[k + 1] if k else digits[1]


def _number(text: str, lang: str, key: str) -> Planted | None:
    found = [(m.start(), m.end(), "digit") for m in _DIGITS.finditer(text)]
    if lang == "zh" or not found:
        found += [(m.start(), m.end(), "zh") for m in _ZH_NUMBER.finditer(text)]
    if not found:
        return None
    start, end, how = sorted(found)[_pick(key, "number", len(found))]
    num = text[start:end]
    if how == "digit":
        new = _bump(num[0], "0123456789") + num[1:]
    else:
        k = 1 if num.startswith("第") else 0
        ch = num[k]
        swap = _bump(ch, _ZH_DIGITS) if ch in _ZH_DIGITS else {"十": "九", "百": "千", "〇": "一"}[ch]
        new = num[:k] + swap + num[k + 1:]
    return _replace(text, start, end, new, "number")


# -- negation -----------------------------------------------------------------------------------------
_EN_NT = {"don't": "do", "doesn't": "does", "didn't": "did", "isn't": "is", "aren't": "are", "wasn't": "was",
          "weren't": "were", "won't": "will", "can't": "can", "couldn't": "could", "wouldn't": "would",
          "shouldn't": "should", "hasn't": "has", "haven't": "have", "hadn't": "had"}
_DROP: dict[str, list[tuple[re.Pattern[str], Callable[[re.Match[str]], str]]]] = {
    "en": [(re.compile(r"\b(" + "|".join(k.replace("'", "['’]") for k in _EN_NT) + r")\b", re.I),
            lambda m: _EN_NT[m.group(1).lower().replace("’", "'")]),
           (re.compile(r"\b(?:not|never) (?=\w)", re.I), lambda m: "")],
    "de": [(re.compile(r" (?:nicht|nie)\b"), lambda m: ""),
           (re.compile(r"\b([Kk])ein(e[mnrs]?)?\b"), lambda m: ("E" if m.group(1) == "K" else "e") + "in"
            + (m.group(2) or ""))],
    "fr": [(re.compile(r"\bn(?:e |['’])(\w+) (?:pas|plus|jamais)\b"), lambda m: m.group(1))],
    "zh": [(re.compile(r"没有(?=[\u4e00-\u9fff])|不(?![过断少同仅久但管论止单光足得])(?=[\u4e00-\u9fff])"),
            lambda m: "")],
}
_DE_AUX = "ist|sind|war|waren|wird|werden|hat|haben|hatte|hatten|kann|können"
_FR_AUX = "est|sont|était|étaient|a|ont|avait|avaient|va|vont|sera|seront|peut|peuvent"
_ADD: dict[str, list[tuple[re.Pattern[str], Callable[[re.Match[str]], str]]]] = {
    "en": [(re.compile(r"\b(is|are|was|were|will|can|could|would|should|has|have|had|must)\b(?! not\b)"),
            lambda m: m.group(1) + " not")],
    # main clause: after the finite verb; verb-final (a subordinate clause): before the verb group
    "de": [(re.compile(rf"\b({_DE_AUX})\b(?! nicht\b)(?!\s*(?:[.,;!?]|$))"), lambda m: m.group(1) + " nicht"),
           (re.compile(rf"(?<!nicht )\b(\w+) ({_DE_AUX})(?=\s*(?:[.,;!?]|$))"),
            lambda m: f"nicht {m.group(1)} {m.group(2)}")],
    # ne ... pas around the verb, and around a reflexive pronoun with it (ne se sont pas)
    "fr": [(re.compile(rf"(?<!\by )(?<!\bse )(?<!\bme )(?<!\bte )(?<!\bnous )(?<!\bvous )(?<!['’])\b({_FR_AUX})\b"
                       r"(?! pas\b)"),
            lambda m: ("n'" if m.group(1)[0] in "aeéiou" else "ne ") + m.group(1) + " pas"),
           (re.compile(rf"\b(se|me|te|nous|vous) ({_FR_AUX})\b(?! pas\b)"),
            lambda m: f"ne {m.group(1)} {m.group(2)} pas")],
    # 是 -> 不是; a verb of two characters with 了 -> 没有 + the verb (批准了 -> 没有批准)
    "zh": [(re.compile(r"(?<![于但就还总只可或要凡正也都则而像即若不])是"), lambda m: "不是"),
           (re.compile(r"(?<![为除极太])([\u4e00-\u9fff]{2})了(?=[\u4e00-\u9fff\d])"), lambda m: "没有" + m.group(1))],
}


def _negation(text: str, lang: str, key: str) -> Planted | None:
    rules = _DROP.get(lang, []) + _ADD.get(lang, [])
    found = [(m, fn) for pattern, fn in rules for m in pattern.finditer(text)]
    if not found:
        return None
    m, fn = found[_pick(key, "negation", len(found))]
    return _replace(text, m.start(), m.end(), fn(m), "negation")


# -- named entities -----------------------------------------------------------------------------------
def _cycle(*names: str) -> dict[str, str]:
    return {a: b for a, b in zip(names, names[1:] + names[:1])}


_ENTITIES: dict[str, dict[str, str]] = {
    "en": {**_cycle("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"),
           **_cycle("January", "February", "March", "April", "June", "July", "August", "September", "October",
                    "November", "December"),
           **_cycle("Germany", "France", "Italy", "Spain"), **_cycle("China", "Japan"),
           **_cycle("Berlin", "Munich", "Hamburg"), **_cycle("London", "Paris"), **_cycle("Beijing", "Shanghai"),
           **_cycle("Britain", "Ireland"), **_cycle("Europe", "Asia")},
    "de": {**_cycle("Montag", "Dienstag", "Mittwoch", "Donnerstag", "Freitag", "Samstag", "Sonntag"),
           **_cycle("Januar", "Februar", "März", "April", "Juni", "Juli", "August", "September", "Oktober",
                    "November", "Dezember"),
           **_cycle("Deutschland", "Frankreich", "Italien", "Spanien"), **_cycle("China", "Japan"),
           **_cycle("Berlin", "München", "Hamburg"), **_cycle("London", "Paris"), **_cycle("Peking", "Shanghai"),
           **_cycle("Europa", "Asien")},
    "fr": {**_cycle("lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche"),
           **_cycle("janvier", "février", "mars", "avril", "juin", "juillet", "août", "septembre", "octobre",
                    "novembre", "décembre"),
           **_cycle("Allemagne", "France", "Italie", "Espagne", "Chine"),
           **_cycle("Berlin", "Munich", "Hambourg"), **_cycle("Londres", "Paris"), **_cycle("Pékin", "Shanghai"),
           **_cycle("Europe", "Asie")},
    "zh": {**_cycle("周一", "周二", "周三", "周四", "周五", "周六", "周日"),
           **_cycle("星期一", "星期二", "星期三", "星期四", "星期五", "星期六", "星期日"),
           **_cycle("德国", "法国", "意大利", "西班牙"), **_cycle("中国", "日本"), **_cycle("美国", "英国"),
           **_cycle("柏林", "慕尼黑", "汉堡"), **_cycle("伦敦", "巴黎"), **_cycle("北京", "上海"),
           **_cycle("欧洲", "亚洲")},
}
_ENTITY_RE = {lang: re.compile((r"\b(" if lang != "zh" else "(") + "|".join(
    sorted(map(re.escape, names), key=len, reverse=True)) + (r")\b" if lang != "zh" else ")"))
    for lang, names in _ENTITIES.items()}


def _entity(text: str, lang: str, key: str) -> Planted | None:
    pattern = _ENTITY_RE.get(lang)
    found = list(pattern.finditer(text)) if pattern else []
    if not found:
        return None
    m = found[_pick(key, "entity", len(found))]
    return _replace(text, m.start(), m.end(), _ENTITIES[lang][m.group(1)], "entity")


# -- omission -----------------------------------------------------------------------------------------
_CLAUSE_END = re.compile(r"[,;]\s+|[，；]")
_HAN = re.compile(r"[\u4e00-\u9fff]")


def _big_enough(part: str, lang: str) -> bool:
    if lang == "zh" or len(_HAN.findall(part)) > len(part) / 3:
        return len(_HAN.findall(part)) >= 4
    return len(re.findall(r"\w+", part)) >= 3


def _omission(text: str, lang: str, key: str) -> Planted | None:
    body = text.rstrip()
    tail = ""
    while body and body[-1] in ".!?。！？\"”»":
        tail = body[-1] + tail
        body = body[:-1]
    cuts = [m for m in _CLAUSE_END.finditer(body)]
    options = [m for m in cuts if _big_enough(body[m.end():], lang) and _big_enough(body[:m.start()], lang)
               and not _CLAUSE_END.search(body[m.end():])]
    if not options:
        return None
    m = options[-1]
    return _replace(text, m.start(), len(body), "", "omission")


_PLANTERS = {"number": _number, "negation": _negation, "entity": _entity, "omission": _omission}


def plant_error(text: str, lang: str | None, key: str) -> Planted | None:
    """A copy of ``text`` (in ``lang``) with one planted error, or None when none applies."""
    if not text.strip():
        return None
    lang = lang or ""
    first = _pick(key, "kind", len(KINDS))
    for kind in KINDS[first:] + KINDS[:first]:
        planted = _PLANTERS[kind](text, lang, key)
        if planted is not None and planted.text.strip():
            return planted
    return None


# -- the record of a control in its turn (``params["control"]``) --------------------------------------
def control_record(planted: Planted, real: str) -> dict[str, Any]:
    """What a planted turn keeps of its control: what was changed, the planted and the real text,
    and the ``outcome`` (None until the annotator decides)."""
    return {"kind": planted.kind, "start": planted.start, "before": planted.before, "after": planted.after,
            "description": planted.description, "planted": planted.text, "real": real, "outcome": None}


def control_of(turn: dict[str, Any]) -> dict[str, Any] | None:
    """The control record of a planted turn (None for every other turn)."""
    c = (turn.get("params") or {}).get("control")
    return c if isinstance(c, dict) else None


def decided(turn: dict[str, Any], outcome: str, via: str, annotator: str) -> dict[str, Any]:
    """The control record of a planted turn once decided: ``miss`` (accepted unchanged) or
    ``catch`` (edited, regenerated), by which action and whom."""
    return {**(control_of(turn) or {}), "outcome": outcome, "via": via, "decided_by": annotator}


def control_note(turn: dict[str, Any], ctl: dict[str, Any], real: dict[str, Any] | None = None) -> dict[str, Any]:
    """What front-ends show after a decision on a control item: ``outcome``, ``kind``,
    ``description``, the planted ``turn_id``, after a miss the model's real ``answer`` (turn id
    and text), and a ``message`` in words."""
    word = {"miss": "you accepted it unchanged (a miss); the model's real answer is shown now: decide on it",
            "catch": "you caught it"}[ctl["outcome"]]
    return {"outcome": ctl["outcome"], "kind": ctl["kind"], "description": ctl["description"],
            "turn_id": turn["id"], "answer": real,
            "message": f"That answer was a control item with a planted error ({ctl['description']}): {word}."}


__all__ = ["KINDS", "Planted", "control_note", "control_of", "control_record", "decided", "plant_error"]
