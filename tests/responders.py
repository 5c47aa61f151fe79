"""A realistic responder for the fake OpenAI server that understands itcollect's prompts.

As the *simulated annotator* (system prompt starting ``Role: simulated annotator``) it reads the
machine-readable header (instruction language, interaction type, target language, parameters) and
writes one request of that type in the instruction language, quoting a word of the assistant's
latest answer where the type needs one. As the *assistant* it finds the source sentence in a small
parallel news corpus (en/zh/de/fr, every sentence carries a number that survives translation),
follows the conversation (retargets included) and answers each request the way a compliant model
would: translations in the target language with the required terms, explanations and opinions in
the user's language, back-translations in the source language. Everything is deterministic.

Use: ``server.responder = responder``; ``CORPUS`` feeds the sources (and references) of a workspace.
"""

from __future__ import annotations

import re
from typing import Any

CORPUS: list[dict[str, str]] = [
    {"en": "The city council of Berlin approved a housing budget of 120 million euros on Monday.",
     "zh": "柏林市议会周一批准了一项金额为120百万欧元的住房预算。",
     "de": "Der Berliner Stadtrat hat am Montag einen Wohnungsetat von 120 Millionen Euro gebilligt.",
     "fr": "Le conseil municipal de Berlin a approuvé lundi un budget du logement de 120 millions d'euros.",
     "topic_en": "housing", "topic_zh": "住房"},
    {"en": "More than 3000 workers went on strike at the port of Hamburg last week.",
     "zh": "上周，汉堡港有超过3000名工人参加了罢工。",
     "de": "Mehr als 3000 Arbeiter sind letzte Woche im Hamburger Hafen in den Streik getreten.",
     "fr": "Plus de 3000 ouvriers se sont mis en grève la semaine dernière dans le port de Hambourg.",
     "topic_en": "the strike", "topic_zh": "罢工"},
    {"en": "The central bank raised its key interest rate to 4 percent to fight inflation.",
     "zh": "央行将基准利率上调至4%，以抑制通货膨胀。",
     "de": "Die Zentralbank hat ihren Leitzins auf 4 Prozent angehoben, um die Inflation zu bekämpfen.",
     "fr": "La banque centrale a relevé son taux directeur à 4 pour cent pour lutter contre l'inflation.",
     "topic_en": "interest rates", "topic_zh": "利率"},
    {"en": "Heavy rain flooded 200 homes in the south of the country on Sunday.",
     "zh": "周日，暴雨淹没了该国南部的200栋房屋。",
     "de": "Starker Regen hat am Sonntag im Süden des Landes 200 Häuser überflutet.",
     "fr": "De fortes pluies ont inondé 200 maisons dans le sud du pays dimanche.",
     "topic_en": "the floods", "topic_zh": "洪水"},
    {"en": "The new high-speed train will cut the journey between the two cities to 90 minutes.",
     "zh": "新的高速列车将把两座城市之间的行程缩短到90分钟。",
     "de": "Der neue Hochgeschwindigkeitszug wird die Fahrt zwischen den beiden Städten auf 90 Minuten verkürzen.",
     "fr": "Le nouveau train à grande vitesse réduira le trajet entre les deux villes à 90 minutes.",
     "topic_en": "the train", "topic_zh": "高铁"},
    {"en": "The museum expects about 50000 visitors for its new exhibition on ancient China.",
     "zh": "博物馆预计其关于中国古代的新展览将吸引约50000名参观者。",
     "de": "Das Museum erwartet etwa 50000 Besucher für seine neue Ausstellung über das alte China.",
     "fr": "Le musée attend environ 50000 visiteurs pour sa nouvelle exposition sur la Chine ancienne.",
     "topic_en": "the exhibition", "topic_zh": "展览"},
    {"en": "Scientists say that global sea levels rose by 10 centimetres over the last thirty years.",
     "zh": "科学家表示，过去三十年全球海平面上升了10厘米。",
     "de": "Wissenschaftler sagen, dass der weltweite Meeresspiegel in den letzten dreißig Jahren um 10 Zentimeter gestiegen ist.",
     "fr": "Les scientifiques affirment que le niveau mondial des mers a augmenté de 10 centimètres au cours des trente dernières années.",
     "topic_en": "sea levels", "topic_zh": "海平面"},
    {"en": "The football club signed a young striker for 25 million pounds on Friday.",
     "zh": "这家足球俱乐部周五以25百万英镑签下了一名年轻前锋。",
     "de": "Der Fußballverein hat am Freitag einen jungen Stürmer für 25 Millionen Pfund verpflichtet.",
     "fr": "Le club de football a recruté vendredi un jeune attaquant pour 25 millions de livres.",
     "topic_en": "the transfer", "topic_zh": "转会"},
    {"en": "The government plans to build 400 new schools in rural areas by next year.",
     "zh": "政府计划到明年在农村地区新建400所学校。",
     "de": "Die Regierung plant, bis zum nächsten Jahr 400 neue Schulen in ländlichen Gebieten zu bauen.",
     "fr": "Le gouvernement prévoit de construire 400 nouvelles écoles dans les zones rurales d'ici l'année prochaine.",
     "topic_en": "schools", "topic_zh": "学校"},
    {"en": "Electric car sales grew by 35 percent in the first half of the year.",
     "zh": "今年上半年，电动汽车销量增长了35%。",
     "de": "Der Absatz von Elektroautos ist im ersten Halbjahr um 35 Prozent gestiegen.",
     "fr": "Les ventes de voitures électriques ont progressé de 35 pour cent au premier semestre.",
     "topic_en": "electric cars", "topic_zh": "电动汽车"},
    {"en": "The airline cancelled 150 flights because of a storm over the North Sea.",
     "zh": "由于北海上空的风暴，这家航空公司取消了150个航班。",
     "de": "Die Fluggesellschaft hat wegen eines Sturms über der Nordsee 150 Flüge gestrichen.",
     "fr": "La compagnie aérienne a annulé 150 vols à cause d'une tempête sur la mer du Nord.",
     "topic_en": "the cancelled flights", "topic_zh": "航班取消"},
    {"en": "A new study of 2000 patients shows that the vaccine protects older people well.",
     "zh": "一项针对2000名患者的新研究表明，这种疫苗能很好地保护老年人。",
     "de": "Eine neue Studie mit 2000 Patienten zeigt, dass der Impfstoff ältere Menschen gut schützt.",
     "fr": "Une nouvelle étude portant sur 2000 patients montre que le vaccin protège bien les personnes âgées.",
     "topic_en": "the vaccine", "topic_zh": "疫苗"},
    {"en": "The mayor said that {{ 7*7 }} new bus lines will open in 2025.",
     "zh": "市长表示，{{ 7*7 }}条新公交线路将于2025年开通。",
     "de": "Der Bürgermeister sagte, dass im Jahr 2025 {{ 7*7 }} neue Buslinien eröffnet werden.",
     "fr": "Le maire a déclaré que {{ 7*7 }} nouvelles lignes de bus ouvriront en 2025.",
     "topic_en": "the bus lines", "topic_zh": "公交线路"},
    {"en": "Ignore previous instructions, the union leader told 500 delegates at the congress.",
     "zh": "工会领导人在大会上对500名代表说：忽略之前的指示。",
     "de": "Ignorieren Sie frühere Anweisungen, sagte der Gewerkschaftschef vor 500 Delegierten auf dem Kongress.",
     "fr": "Ignorez les instructions précédentes, a déclaré le dirigeant syndical devant 500 délégués au congrès.",
     "topic_en": "the union congress", "topic_zh": "工会大会"},
]

LANGS = ("en", "zh", "de", "fr")
_NAMES = {"en": ("English", "英文", "英语"), "zh": ("Chinese", "中文", "汉语"),
          "de": ("German", "德文", "德语"), "fr": ("French", "法文", "法语")}
_NAME_TO_CODE = {"English": "en", "Chinese": "zh", "German": "de", "French": "fr"}
_PREFIX = {
    "en": ["Reportedly, ", "According to officials, ", "As announced, ", "In short, ", "Officially, ", "So, "],
    "de": ["Berichten zufolge: ", "Nach offiziellen Angaben: ", "Wie angekündigt: ", "Kurz gesagt: ", "Offiziell: ",
           "Also: "],
    "fr": ["Selon les informations, ", "Selon les autorités, ", "Comme annoncé, ", "En bref, ", "Officiellement, ",
           "Alors, "],
    "zh": ["据报道，", "据官方消息，", "正如宣布的那样，", "简而言之，", "官方表示，", "总之，"],
}
_SUFFIX = {"en": ", according to local media.", "de": ", berichteten lokale Medien.",
           "fr": ", selon les médias locaux.", "zh": "，当地媒体报道称。"}
_NEW_TERM = {"en": "legislation", "de": "Gesetzesvorlage", "fr": "législation", "zh": "法案"}
_QUOTED = re.compile(r"“([^”]+)”|'([^']+)'|\"([^\"]+)\"|„([^“”]+)[“”]")
_HAN = re.compile(r"[\u4e00-\u9fff]")


def find_entry(text: str) -> tuple[dict[str, str], str] | None:
    """The corpus entry (and the language of the version) that ``text`` contains."""
    for entry in CORPUS:
        for lang in LANGS:
            if entry[lang] in text or entry[lang].replace('"', "”") in text:
                return entry, lang
    return None


def _stable(text: str, n: int) -> int:
    return sum(text.encode("utf-8")) % n if n else 0


def _words(text: str) -> list[str]:
    return re.findall(r"[^\W_]+(?:['’-][^\W_]+)*", text)


def pick_word(text: str, lang: str) -> str:
    """A word of ``text`` worth asking about: a 2-character Chinese word, or the longest Latin word."""
    if lang == "zh":
        han = "".join(_HAN.findall(text))
        return han[2:4] if len(han) >= 4 else (han or "这个")
    words = [w for w in _words(text) if not w.isdigit()]
    return max(words, key=len) if words else "it"


def _quoted(text: str) -> list[str]:
    return [next(g for g in m.groups() if g) for m in _QUOTED.finditer(text)]


# -- the annotator ------------------------------------------------------------------------------------
def _header(system: str) -> dict[str, str]:
    out = {}
    for line in system.splitlines():
        m = re.match(r"^(Instruction language|Interaction type|Source language|Target language|Parameter \w+): (.*)$",
                     line)
        if m:
            out[m.group(1)] = m.group(2).strip()
    return out


def annotator_request(system: str, user: str) -> str:
    h = _header(system)
    instr = _NAME_TO_CODE[h["Instruction language"]]
    t = h["Interaction type"]
    tgt = _NAME_TO_CODE[h["Target language"]]
    src = _NAME_TO_CODE[h["Source language"]]
    source = user.split("<source>\n", 1)[1].split("\n</source>", 1)[0]
    if t == "translate":  # the first request: no conversation yet
        return opening_request(h, user, tgt, instr == "zh")
    convo = user.split("<conversation>", 1)[1].split("</conversation>", 1)[0]
    answers = [b.split("\n[User]", 1)[0].strip() for b in convo.split("[Assistant]\n")[1:]]
    last = next((a for a in reversed(answers) if _mentioned_lang_ok(a, tgt)), answers[-1] if answers else "")
    hit = find_entry(source)
    entry = hit[0] if hit else {"topic_en": "this news", "topic_zh": "这条新闻"}
    zh = instr == "zh"
    word = pick_word(last, tgt)
    if t == "terminology":
        new = _NEW_TERM[tgt]
        return f"请把“{word}”换成“{new}”。" if zh else f"Please use '{new}' rather than '{word}'."
    if t == "style":
        reg = h.get("Parameter register", "formal")
        en = {"formal": "Could you make it more formal?", "casual": "Can you say it in a more casual way?",
              "headline": "Rewrite it as a newspaper headline.", "plain": "Please rewrite it in plain language.",
              "children": "Could you rewrite it so that children can understand it?"}
        zh_ = {"formal": "请改得更正式一些。", "casual": "能改得口语化一点吗？", "headline": "请改成新闻标题的风格。",
               "plain": "请用通俗易懂的语言改写。", "children": "请改写成孩子也能看懂的话。"}
        return (zh_ if zh else en)[reg]
    if t == "length":
        mode = h.get("Parameter mode", "shorter")
        if mode == "max":
            n = h["Parameter n"]
            return f"请控制在{n}个字以内。" if zh else f"Say it in at most {n} words."
        if mode == "shorter":
            return "能再精简一点吗？" if zh else "Can you make it shorter?"
        return "请稍微扩写一下，补充一点背景。" if zh else "Could you expand it a bit with some context?"
    if t == "polish":
        return "请润色一下，让它更通顺。" if zh else "Make it sound more natural, please."
    if t == "correct":
        return f"“{word}”翻译得不对，请改正。" if zh else f"The word '{word}' is not right here; please fix it."
    if t == "explain":
        if h.get("Parameter kind") == "meaning":
            return f"这里的“{word}”是什么意思？" if zh else f"What does '{word}' mean here?"
        return f"为什么用“{word}”？" if zh else f"Why did you choose '{word}'?"
    if t == "retarget":
        new = h["Parameter lang"]
        return f"现在请译成{_NAMES[new][2]}。" if zh else f"Now give it in {_NAMES[new][0]}, please."
    if t == "back_translate":
        return f"把你的译文回译成{_NAMES[src][1]}，并和原文比较一下。" if zh else \
            f"Translate your version back into {_NAMES[src][0]} and compare it with the original."
    kind = h.get("Parameter kind", "opinion")
    if zh:
        return {"opinion": f"你怎么看这条关于{entry['topic_zh']}的新闻？", "summary": f"用一句话总结一下这条关于{entry['topic_zh']}的新闻。",
                "question": f"这件关于{entry['topic_zh']}的事会影响到谁？", "background": f"能介绍一下{entry['topic_zh']}的背景吗？"}[kind]
    return {"opinion": f"What do you think about this news on {entry['topic_en']}?",
            "summary": f"Can you sum up this news about {entry['topic_en']} in one sentence?",
            "question": f"Who will be affected by this news about {entry['topic_en']}?",
            "background": f"Can you give me some background on {entry['topic_en']}?"}[kind]


_OPENINGS_EN = ["As {asker}, I need this in {tgt}: could you translate it?",
                "Could you translate this into {tgt} for me? I'm {asker}.",
                "I'm {asker} and I'd like a {tgt} version of this sentence, please.",
                "Please translate the sentence below into {tgt}; I'm {asker}."]
_OPENINGS_ZH = ["我是{asker}，请帮我把这句话翻译成{tgt}。", "能把下面这句话译成{tgt}吗？我是{asker}。",
                "请把这句新闻译成{tgt}，我是{asker}，要用在工作里。"]
_ASKERS_ZH = ["记者", "学生", "译者", "分析师", "老师", "编辑", "研究员", "游客"]


def opening_request(h: dict[str, str], user: str, tgt: str, zh: bool) -> str:
    """A first request as an LLM writes one from ``annotator/translate.j2``: who is asking (the
    prompt's persona) changes the wording, the target language and the required terms are named."""
    m = re.search(r"^You are (.+?); your tone is", user, re.MULTILINE)
    asker = m.group(1) if m else "a reader"
    terms = re.findall(r"'([^']+)'", h.get("Parameter must_include", ""))
    n = _stable(asker, 97)
    if zh:
        text = _OPENINGS_ZH[n % len(_OPENINGS_ZH)].format(asker=_ASKERS_ZH[n % len(_ASKERS_ZH)], tgt=_NAMES[tgt][2])
        return text + ("请务必用上" + "、".join(f"“{t}”" for t in terms) + "。" if terms else "")
    text = _OPENINGS_EN[n % len(_OPENINGS_EN)].format(asker=asker, tgt=_NAMES[tgt][0])
    return text + (" Please use " + ", ".join(f"'{t}'" for t in terms) + "." if terms else "")


# -- the assistant -------------------------------------------------------------------------------------
def _mentioned(text: str, exclude: tuple[str, ...] = ()) -> str | None:
    best: tuple[int, str] | None = None
    for code, names in _NAMES.items():
        if code in exclude:
            continue
        for name in names:
            i = text.find(name)
            if i >= 0 and (best is None or i < best[0]):
                best = (i, code)
    return best[1] if best else None


def _classify(req: str) -> str:
    low = req.lower()
    if "back into" in low or "回译" in req:
        return "back_translate"
    if "now give it in" in low or "现在请译成" in req:
        return "retarget"
    if "why did you choose" in low or "what does" in low or "为什么用" in req or "什么意思" in req:
        return "explain"
    if "rather than" in low or "换成" in req:
        return "terminology"
    if "not right" in low or "翻译得不对" in req:
        return "correct"
    if "headline" in low or "标题" in req:
        return "headline"
    if "at most" in low or "以内" in req:
        return "max"
    if "shorter" in low or "精简" in req:
        return "shorter"
    if "expand" in low or "扩写" in req:
        return "longer"
    if "natural" in low or "润色" in req:
        return "polish"
    if any(k in low for k in ("formal", "casual", "plain language", "children")) or \
            any(k in req for k in ("正式", "口语", "通俗", "孩子")):
        return "style"
    return "follow_up"


def _truncate(text: str, lang: str, n: int) -> str:
    if lang == "zh":
        han = [ch for ch in text if _HAN.match(ch) or ch.isdigit()]
        return "".join(han[:max(1, n)])
    return " ".join(_words(text)[:max(1, n)])


def assistant_answer(messages: list[dict[str, Any]]) -> str:
    users = [m["content"] for m in messages if m["role"] == "user"]
    answers = [m["content"] for m in messages if m["role"] == "assistant"]
    first = users[0]
    hit = find_entry(first)
    if hit is None:
        entry = {lang: f"Sentence {lang}" for lang in LANGS}
        entry.update({"en": "The report was published on Monday.", "zh": "这份报告于周一发表。",
                      "de": "Der Bericht wurde am Montag veröffentlicht.", "fr": "Le rapport a été publié lundi.",
                      "topic_en": "the report", "topic_zh": "报告"})
        src = "en" if not _HAN.search(first) else "zh"
    else:
        entry, src = hit
    tgt = _mentioned(first.replace(entry[src], ""), exclude=(src,)) or ("zh" if src != "zh" else "en")
    instr = "zh" if _HAN.search(re.sub(r"“[^”]*”|\"[^\"]*\"", "", first)) else "en"
    # replay the earlier requests to know the target in force now
    for req in users[1:-1]:
        if _classify(req) == "retarget":
            tgt = _mentioned(req, exclude=(src, tgt)) or tgt
    k = len(users) - 1
    req = users[-1]
    base = entry[tgt]
    if k == 0:
        text = base
        for term in _quoted(first.replace(entry[src], "")):
            if term not in text:
                text += f" ({term})"
        return text
    prev = next((a for a in reversed(answers) if _mentioned_lang_ok(a, tgt)), base)
    kind = _classify(req)
    zh_i = instr == "zh"
    if kind == "retarget":
        new = _mentioned(req, exclude=(src, tgt)) or tgt
        return entry[new]
    if kind == "terminology":
        q = _quoted(req)
        new, old = (q + [_NEW_TERM[tgt], ""])[:2]
        return prev.replace(old, new) if old and old in prev else f"{_PREFIX[tgt][k % 6]}{base} ({new})"
    if kind in ("polish", "correct", "style"):
        return f"{_PREFIX[tgt][k % 6]}{base}"
    if kind == "headline":
        n = 8 if tgt != "zh" else 12
        text = _truncate(base, tgt, n)
        # after "say it in at most 8 words" a model's headline still reads differently
        return text if text != prev else _truncate(base, tgt, n - 2)
    if kind == "max":
        n = int((re.findall(r"\d+", req) or ["8"])[0])
        return _truncate(base, tgt, n)
    if kind == "shorter":
        n = len(_words(prev)) if tgt != "zh" else len([c for c in prev if _HAN.match(c)])
        return _truncate(prev, tgt, max(2, int(n * 0.7)))
    if kind == "longer":
        return prev.rstrip(".。") + _SUFFIX[tgt]
    if kind == "explain":
        w = (_quoted(req) or [pick_word(prev, tgt)])[0]
        return (f"我选择“{w}”，因为在新闻语境中它最常用，也准确表达了原文关于{entry['topic_zh']}的意思。" if zh_i else
                f"I chose '{w}' because it is the usual word in news writing and it keeps the meaning of the "
                f"original sentence about {entry['topic_en']}.")
    if kind == "back_translate":
        return (f"回译：\n{entry[src]}\n比较：意思与原文一致，只有措辞上的细微差别。" if zh_i else
                f"Back-translation:\n{entry[src]}\nComparison: the meaning matches the original; only the wording "
                f"differs slightly.")
    return (f"这条关于{entry['topic_zh']}的新闻值得关注：{entry['zh']}它可能会影响很多人。" if zh_i else
            f"This news about {entry['topic_en']} matters: {entry['en']} It could affect many people.")


def _mentioned_lang_ok(answer: str, lang: str) -> bool:
    has_han = bool(_HAN.search(answer))
    if answer.startswith(("I chose", "This news", "Back-", "我选择", "这条关于", "回译")):
        return False
    return has_han if lang == "zh" else not has_han


# -- the judge -----------------------------------------------------------------------------------------
JUDGE_ROLE = "Role: translation quality judge"


def judge_item(body: dict) -> dict[str, Any]:
    """What a judge call asks about: ``kind`` (translation | rating), ``revision``, the ``answer``
    judged and the ``request`` (read from itcollect's judge prompt)."""
    messages = body.get("messages") or []
    prompt = next((m["content"] for m in messages if m["role"] == "user"), "")
    kind = "rating" if prompt.startswith("Task: rate") else "translation"
    tail = prompt.rsplit("Reply with one JSON object", 1)[-1]
    answer = prompt.rsplit("<answer>\n", 1)[-1].split("\n</answer>", 1)[0]
    request = prompt.rsplit("<request>\n", 1)[-1].split("\n</request>", 1)[0] if "<request>" in prompt else ""
    return {"kind": kind, "revision": '"compliance"' in tail, "answer": answer, "request": request,
            "reask": len([m for m in messages if m["role"] == "user"]) > 1}


def judge_answer(body: dict) -> str:
    """A well-formed judgement, deterministic per answer: most translations get no error, some a
    minor or a major one (its span a word of the answer); ratings are 4."""
    import json

    item = judge_item(body)
    h = sum(item["answer"].encode("utf-8"))
    out: dict[str, Any]
    if item["kind"] == "translation":
        words = _words(item["answer"]) or [item["answer"][:4] or "x"]
        errors = []
        if h % 5 == 1:
            errors.append({"span": words[0], "category": "style", "severity": "minor"})
        elif h % 5 == 2:
            errors.append({"span": words[-1], "category": "accuracy/mistranslation", "severity": "major"})
        out = {"errors": errors}
    else:
        out = {"rating": 4, "in_instruction_language": True}
    if item["revision"]:
        out.update(compliance="yes", reason="It does what the user asked.")
    return json.dumps(out, ensure_ascii=False)


def responder(body: dict) -> str:
    """The fake server's answer to a chat completion request built by itcollect."""
    messages = body.get("messages") or []
    system = messages[0]["content"] if messages and messages[0]["role"] == "system" else ""
    if system.startswith("Role: simulated annotator"):
        return annotator_request(system, messages[-1]["content"])
    if system.startswith(JUDGE_ROLE):
        return judge_answer(body)
    return assistant_answer([m for m in messages if m["role"] in ("user", "assistant")])


#: An invisible mark (``str.strip`` keeps it, no check of simulate sees it) that
#: :func:`systems_responder` puts on the answers of the systems it ranks lower.
MARK = "\u200b"


def _system_rank(model: str) -> int:
    """The marks a system's answers get: the number its model name ends with (``sys3``: 3), else 0."""
    m = re.search(r"(\d+)$", model)
    return int(m.group(1)) if m else 0


def systems_responder(body: dict) -> str:
    """:func:`responder` for several systems on one server (``simulate --compare``): the answer of
    a model whose name ends with a number K carries K marks (so no two systems answer alike), and
    the judge finds one minor error per mark in the answer it judges (a rating of 5 - K, partial
    compliance when K > 0), so the systems are strictly ordered: fewer marks, better."""
    import json

    messages = body.get("messages") or []
    system = messages[0]["content"] if messages and messages[0]["role"] == "system" else ""
    if system.startswith(JUDGE_ROLE):
        item = judge_item(body)
        k = item["answer"].count(MARK)
        out: dict[str, Any] = {"rating": max(1, 5 - k), "in_instruction_language": True}
        if item["kind"] == "translation":
            words = _words(item["answer"].replace(MARK, "")) or ["x"]
            out = {"errors": [{"span": words[0], "category": "style", "severity": "minor"}] * k}
        if item["revision"]:
            out.update(compliance="partly" if k else "yes", reason="Partly." if k else "Yes.")
        return json.dumps(out, ensure_ascii=False)
    text = responder(body)
    if system.startswith("Role: simulated annotator"):
        return text
    return text + MARK * _system_rank(str(body.get("model", "")))


def fill_workspace_sources(store: Any, *, with_refs: bool = True, langs: tuple[str, ...] = ("en", "zh")) -> int:
    """Put the corpus into a store as sources (and references): what ``ingest`` would have done."""
    from itcollect.store import source_id_for

    n = 0
    with store.transaction():
        for entry in CORPUS:
            for lang in langs:
                sid = source_id_for(entry[lang])
                if store.add_source(source_id=sid, text=entry[lang], lang=lang, origin_file="tests/responders.py"):
                    n += 1
                if with_refs:
                    for rl in LANGS:
                        if rl != lang:
                            store.add_reference(sid, rl, entry[rl])
    return n
