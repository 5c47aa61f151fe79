"""The one message catalog of every human front-end (terminal, line protocol, web pages): each
sentence a person reads, in English and Chinese, by key; and a check's warning turned into a
sentence that says what to do.

The machine codes stay the contract (the ``warnings`` of protocol events and the store hold
``"code: detail"`` as :mod:`itcollect.kernel.checks` returns them); :func:`warning_sentence` puts
a sentence in the reader's language beside each. The web pages read the same catalog
(``/static/catalog.js``, built from :data:`MESSAGES` by :func:`catalog_js`) through ``IT.t(key)``,
so a string added here is added for every page; a key missing in Chinese falls back to English.

Adding a string: one entry ``key: {"en": ..., "zh": ...}`` in :data:`MESSAGES`, placeholders as
``{name}`` (``str.format``); ``tests/test_catalog.py`` checks both languages have every key and the
same placeholders.
"""

from __future__ import annotations

import json
import re
from typing import Any

from itcollect.kernel.checks import LANG_NAMES, LANG_NAMES_ZH, reason_code

#: The languages of the interface (a person's account chooses one; the guidelines come in both).
UI_LANGS = ("en", "zh")
DEFAULT_UI_LANG = "en"

MESSAGES: dict[str, dict[str, str]] = {
    # -- shared header and navigation ----------------------------------------------------------------
    "nav.annotate": {"en": "Annotate", "zh": "标注"},
    "nav.review": {"en": "Review", "zh": "审校"},
    "nav.team": {"en": "Team", "zh": "团队"},
    "nav.returned": {"en": "Returned to me", "zh": "退回给我"},
    "nav.logout": {"en": "Log out", "zh": "退出登录"},
    # -- "returned to me" (issue 24 item 10) ----------------------------------------------------------
    "returned.page": {"en": "itcollect · returned to me", "zh": "itcollect · 退回给我"},
    "returned.none_title": {"en": "Nothing returned to you", "zh": "没有退回给你的对话"},
    "returned.none_body": {"en": "Dialogues a reviewer rejects, or decides with error marks, come here with the marks "
                                 "and the reviewer's note.",
                           "zh": "审校员退回的对话，或给出结论时标出了错误的对话，会连同标注和审校员的说明出现在这里。"},
    "returned.howto": {"en": "Each dialogue a reviewer returned to you, with their marks (the wrong words, the "
                             "category, the severity) and their note. \"revise\" writes a new version of an answer "
                             "(the old one is kept); \"send back\" returns the dialogue to the reviewer's queue "
                             "with your revisions.",
                       "zh": "这里是审校员退回给你的每段对话，附有他们的标注（出错的文字、类别、严重程度）和说明。"
                             "“修改”会写出回答的新版本（旧版本保留）；“发回”会把对话连同你的修改送回审校员的队列。"},
    "returned.count": {"en": "{n} returned", "zh": "退回 {n} 段"},
    "returned.by": {"en": "by {reviewer} · dialogue {id} · spec {spec}", "zh": "审校员 {reviewer} · 对话 {id} · 任务 {spec}"},
    "returned.verdict.rejected": {"en": "rejected", "zh": "已退回"},
    "returned.verdict.accepted": {"en": "accepted, with marks", "zh": "已接受（有标注）"},
    "returned.verdict.fixed": {"en": "fixed, with marks", "zh": "已修正（有标注）"},
    "returned.note": {"en": "Reviewer's note: ", "zh": "审校员说明："},
    "returned.request": {"en": "Request", "zh": "请求"},
    "returned.revision": {"en": "Answer · your revision", "zh": "回答 · 你的修改"},
    "returned.fixed_by": {"en": "Answer · fixed by {reviewer}", "zh": "回答 · 由 {reviewer} 修正"},
    "returned.yours": {"en": "Answer · yours", "zh": "回答 · 你写的"},
    "returned.model": {"en": "Answer · model", "zh": "回答 · 模型"},
    "returned.revise": {"en": "revise", "zh": "修改"},
    "returned.save": {"en": "save my revision", "zh": "保存我的修改"},
    "returned.note_placeholder": {"en": "note to the reviewer (optional)", "zh": "给审校员的备注（可选）"},
    "returned.send": {"en": "send back", "zh": "发回"},
    "returned.revised": {"en": "Your new version is the answer now (the old one is kept). Send the dialogue back "
                               "when it is ready.",
                         "zh": "你的新版本现在是回答（旧版本保留）。改好后把对话发回。"},
    "returned.sent": {"en": "Sent back: the reviewer sees your revision in their queue.",
                      "zh": "已发回：审校员会在队列里看到你的修改。"},
    "nav.language": {"en": "Language", "zh": "界面语言"},
    "login.title": {"en": "Please log in", "zh": "请先登录"},
    "login.body": {"en": "Open the login link your coordinator sent you. It was made with {cmd}; if you lost it, "
                         "ask for a new one.",
                   "zh": "请打开协调人发给你的登录链接（用 {cmd} 生成）；如果链接丢了，请向协调人要一个新的。"},
    "net.down": {"en": "The server cannot be reached (network or server down).",
                 "zh": "无法连接服务器（网络或服务器故障）。"},
    "outbox.waiting": {"en": "Not saved yet: the server cannot be reached. This page keeps {n} unsent action(s): "
                              "{list}. It sends them again as soon as the server is back; keep this page open (a "
                              "reload in this browser keeps them too).",
                       "zh": "尚未保存：无法连接服务器。本页保留了 {n} 个未发送的操作：{list}。服务器恢复后会立即重新发送；"
                             "请保持本页打开（在本浏览器中刷新也不会丢失）。"},
    "outbox.saved": {"en": "Saved now that the server is back: {what}.", "zh": "服务器已恢复，已保存：{what}。"},
    "outbox.refused": {"en": "Not saved: {what}. The server said: {error} Your text is back in its box.",
                       "zh": "未保存：{what}。服务器回复：{error} 你的文字已放回原来的输入框。"},
    "action.replayed": {"en": "Already saved: the server had this action before the connection dropped.",
                        "zh": "已保存：连接中断前服务器已收到这个操作。"},
    "lease.released_by_lead": {"en": "The lead gave this dialogue back to the pool; here is your next one.",
                               "zh": "负责人已把这段对话放回任务池；这是你的下一段。"},
    "role.not_annotator": {"en": "The annotate page is for annotators; you are {role}: your page is {home}.",
                           "zh": "标注页面只供标注员使用；你的角色是 {role}，你的页面是 {home}。"},
    "time.never": {"en": "never", "zh": "从未"},
    "time.just_now": {"en": "just now", "zh": "刚刚"},
    "time.min_ago": {"en": "{n} min ago", "zh": "{n} 分钟前"},
    "time.h_ago": {"en": "{n} h ago", "zh": "{n} 小时前"},
    # -- the annotate page -----------------------------------------------------------------------------
    "page.annotate": {"en": "itcollect · annotate", "zh": "itcollect · 标注"},
    "paused.title": {"en": "Paused", "zh": "已暂停"},
    "paused.body": {"en": "Everything is saved. Your dialogue stays yours while its lease lasts; you resume exactly "
                          "here.",
                    "zh": "所有内容都已保存。租约有效期内这段对话仍归你，回来后从这里继续。"},
    "paused.continue": {"en": "Continue", "zh": "继续"},
    "plan": {"en": "Plan", "zh": "计划"},
    "model": {"en": "Model", "zh": "模型"},
    "you": {"en": "You", "zh": "你"},
    "error.kept": {"en": "Your request is kept. Retry when the endpoint is back, or undo the request.",
                   "zh": "你的请求已保存。模型服务恢复后点“重试”，或撤回这条请求。"},
    "ask.label": {"en": "Your request", "zh": "你的请求"},
    "ask.write_in": {"en": "write it in", "zh": "请用此语言书写："},
    "ask.type": {"en": "type of this request", "zh": "本条请求的类型"},
    "ask.use_suggestion": {"en": "use the suggestion", "zh": "使用建议"},
    "ask.keys": {"en": "Enter sends · Shift+Enter new line", "zh": "Enter 发送 · Shift+Enter 换行"},
    "ask.send": {"en": "Send", "zh": "发送"},
    "edit.label": {"en": "Your version of the answer (it becomes the gold answer; the model's is kept)",
                   "zh": "你修改后的回答（作为标准答案；模型原回答会保留）"},
    "edit.keys": {"en": "Ctrl+Enter saves · Esc cancels", "zh": "Ctrl+Enter 保存 · Esc 取消"},
    "edit.save": {"en": "Save edit", "zh": "保存修改"},
    "pick.label": {"en": "Pick the best answer (keys 1-9), rank them, or say none is good",
                   "zh": "选出最好的回答（数字键 1-9），或排序，或选“都不好”"},
    "pick.reason": {"en": "reason (needed for none good)", "zh": "原因（选“都不好”时必填）"},
    "pick.rank": {"en": "Rank", "zh": "排序"},
    "pick.none": {"en": "None good", "zh": "都不好"},
    "cancel": {"en": "Cancel", "zh": "取消"},
    "reason.label": {"en": "The answer has warnings. Accept it anyway because…", "zh": "该回答有警告。仍然接受，理由是……"},
    "reason.needed": {"en": "Give a reason (a few words).", "zh": "请写一个理由（几个字即可）。"},
    "reason.submit": {"en": "Accept with this reason", "zh": "以此理由接受"},
    "skip.label": {"en": "Skip this sentence because…", "zh": "跳过这个句子，理由是……"},
    "skip.note": {"en": "note (optional; needed for other)", "zh": "备注（可选；选“其他”时必填）"},
    "skip.submit": {"en": "Skip", "zh": "跳过"},
    "flag.label": {"en": "Note for the reviewer", "zh": "给审校的备注"},
    "flag.submit": {"en": "Flag for review", "zh": "标记待审"},
    "early.label": {"en": "Finish after {done} of {planned} planned turns? Say why (it is recorded)…",
                    "zh": "只完成了计划 {planned} 轮中的 {done} 轮，确定结束吗？请说明理由（会被记录）……"},
    "early.submit": {"en": "Finish early with this reason", "zh": "以此理由提前结束"},
    "act.accept": {"en": "accept", "zh": "接受"},
    "act.edit": {"en": "edit", "zh": "修改"},
    "act.regenerate": {"en": "regenerate", "zh": "重新生成"},
    "act.retry": {"en": "retry", "zh": "重试"},
    "act.stop": {"en": "stop", "zh": "停止"},
    "act.undo": {"en": "undo", "zh": "撤回"},
    "act.finish": {"en": "finish", "zh": "完成"},
    "act.skip": {"en": "skip", "zh": "跳过"},
    "act.flag": {"en": "flag", "zh": "标记"},
    "act.guidelines": {"en": "guidelines", "zh": "指南"},
    "act.pause": {"en": "pause", "zh": "暂停"},
    "guide.title": {"en": "Guidelines", "zh": "标注指南"},
    "finished": {"en": "Dialogue finished.", "zh": "对话已完成。"},
    "finished_early": {"en": "Dialogue finished early ({done} of {planned} planned turns).",
                       "zh": "对话已提前结束（计划 {planned} 轮，完成 {done} 轮）。"},
    "skipped": {"en": "Sentence skipped.", "zh": "句子已跳过。"},
    "idle": {"en": "Nothing is left to do: every spec is done. Thank you!",
             "zh": "没有剩下的任务了：所有条目都已完成。谢谢！"},
    "idle.title": {"en": "Nothing to do right now", "zh": "现在没有任务"},
    "waiting.title": {"en": "Waiting for a sentence", "zh": "正在等待可做的句子"},
    "waiting": {"en": "{n} spec(s) are leased by other annotators right now. This page waits and opens the next one "
                      "as soon as a lease is released or expires (checking every {s} s).",
                "zh": "目前有 {n} 个条目正被其他标注员占用。本页会等待，一旦有租约释放或过期就打开下一个（每 {s} 秒检查一次）。"},
    "undo.back": {"en": "The request you took back is in the box again.", "zh": "撤回的请求已放回输入框。"},
    # -- warnings: one sentence per check's code, saying what to do ------------------------------------
    "warn.empty": {"en": "The text is empty: write something.", "zh": "内容为空：请写点内容。"},
    "warn.wrong_language": {"en": "This should be written in {lang}, not {got}: write it in {lang}.",
                            "zh": "这里应使用{lang}，而不是{got}：请用{lang}书写。"},
    "warn.wrong_language.request": {
        "en": "This dialogue's requests are planned in {lang}: write the request in {lang}.",
        "zh": "本对话的请求计划使用{lang}：请用{lang}写请求。"},
    "warn.not_a_request": {"en": "This does not read as a request: ask a question or give an instruction "
                                 "(e.g. \"Please make it shorter.\").",
                           "zh": "这不像一个请求：请提问或给出指令（例如“请再简短一些。”）。"},
    "warn.not_a_request.answer": {"en": "This reads like an answer, not a request: write what you ask the model "
                                        "to do.",
                                  "zh": "这读起来像回答而不是请求：请写出你要模型做什么。"},
    "warn.request_too_long": {"en": "The request is long ({detail}): keep it to a sentence or two.",
                              "zh": "请求太长（{detail}）：请控制在一两句话以内。"},
    "warn.request_off_plan": {"en": "The request does not match this turn's plan ({detail}): say what the plan asks "
                                    "for, or change the type.",
                              "zh": "请求与本轮计划不符（{detail}）：请写出计划要求的内容，或更改请求类型。"},
    "warn.copies_source": {"en": "The answer copies the source sentence: edit it into a real translation or "
                                 "regenerate.",
                           "zh": "回答照抄了原句：请修改成真正的译文，或重新生成。"},
    "warn.copies_answer": {"en": "The request repeats the previous answer: ask for something instead.",
                           "zh": "请求重复了上一条回答：请改为提出要求。"},
    "warn.missing_terms": {"en": "The answer lacks required terms ({detail}): edit them in or regenerate.",
                           "zh": "回答缺少必需的术语（{detail}）：请修改补上，或重新生成。"},
    "warn.missing_word": {"en": "The answer lacks the word the request asked for ({detail}): edit or regenerate.",
                          "zh": "回答缺少请求中要求的词（{detail}）：请修改或重新生成。"},
    "warn.not_headline": {"en": "This is not a headline ({detail}): edit it into one short line without a full stop.",
                          "zh": "这不是标题（{detail}）：请改成一行、不带句号的短标题。"},
    "warn.too_long": {"en": "The answer is longer than asked ({detail}): edit it or regenerate.",
                      "zh": "回答超出要求的长度（{detail}）：请修改或重新生成。"},
    "warn.too_short": {"en": "The answer is shorter than asked ({detail}): edit it or regenerate.",
                       "zh": "回答短于要求的长度（{detail}）：请修改或重新生成。"},
    "warn.not_shorter": {"en": "The answer is not shorter than the previous one ({detail}): edit it or regenerate.",
                         "zh": "回答并没有比上一版更短（{detail}）：请修改或重新生成。"},
    "warn.not_longer": {"en": "The answer is not longer than the previous one ({detail}): edit it or regenerate.",
                        "zh": "回答并没有比上一版更长（{detail}）：请修改或重新生成。"},
    "warn.unchanged": {"en": "The answer is the same as the previous one: regenerate or edit it.",
                       "zh": "回答与上一版相同：请重新生成或修改。"},
    "warn.rewritten": {"en": "The answer rewrites far more than asked ({detail}): edit it or regenerate.",
                       "zh": "回答改动远超要求（{detail}）：请修改或重新生成。"},
    "warn.off_topic": {"en": "This shares no content with the source or its translation: check it is about this "
                             "sentence.",
                       "zh": "内容与原句及译文毫无关联：请确认它针对的是这个句子。"},
    "warn.truncated": {"en": "The answer was cut off at the length limit: regenerate it or edit in the end.",
                       "zh": "回答因长度限制被截断：请重新生成，或修改补全结尾。"},
    "warn.other": {"en": "Check this: {reason}.", "zh": "请检查：{reason}。"},
}

_WRONG_LANG = re.compile(r"^\s*(\w+)\s*!=\s*(\w+)\s*$")


def ui_lang(lang: str | None) -> str:
    """``lang`` when the interface speaks it, else the default (English)."""
    return lang if lang in UI_LANGS else DEFAULT_UI_LANG


def t(key: str, lang: str | None = None, /, **values: Any) -> str:
    """The message ``key`` in ``lang`` (English when that language lacks it), filled with ``values``."""
    entry = MESSAGES[key]
    text = entry.get(ui_lang(lang)) or entry[DEFAULT_UI_LANG]
    return text.format(**values) if values else text


def language_name(code: str, lang: str | None) -> str:
    """A language's name in the reader's language ("Chinese" / "中文")."""
    if ui_lang(lang) == "zh":
        return LANG_NAMES_ZH.get(code, code)
    return LANG_NAMES.get(code, code)


def warning_sentence(reason: str, lang: str | None = None, *, request: bool = False) -> str:
    """A check's ``"code: detail"`` as a sentence in ``lang`` that says what to do. ``request``:
    the warning is about a request the annotator wrote (a wrong language then names the
    dialogue's planned request language)."""
    code = reason_code(reason)
    detail = reason.split(":", 1)[1].strip() if ":" in reason else ""
    if code == "wrong_language":
        m = _WRONG_LANG.match(detail)
        if m:
            got, want = m.groups()
            key = "warn.wrong_language.request" if request else "warn.wrong_language"
            return t(key, lang, lang=language_name(want, lang), got=language_name(got, lang))
        return t("warn.other", lang, reason=reason)
    if code == "not_a_request" and "answer" in detail:
        return t("warn.not_a_request.answer", lang)
    key = f"warn.{code}"
    if key not in MESSAGES:
        return t("warn.other", lang, reason=reason)
    return t(key, lang, detail=detail or code)


def warning_sentences(reasons: list[str], lang: str | None = None, *, request: bool = False) -> list[str]:
    return [warning_sentence(r, lang, request=request) for r in reasons]


def catalog_js() -> bytes:
    """``/static/catalog.js``: the catalog for the pages (``IT_CATALOG[key][lang]``)."""
    return ("/* generated from itcollect/session/catalog.py: edit the catalog there */\n"
            f"\"use strict\";\nconst IT_CATALOG = {json.dumps(MESSAGES, ensure_ascii=False, sort_keys=True)};\n"
            ).encode()


__all__ = ["DEFAULT_UI_LANG", "MESSAGES", "UI_LANGS", "catalog_js", "language_name", "t", "ui_lang",
           "warning_sentence", "warning_sentences"]
