/* itcollect web: "returned to me": the dialogues a reviewer rejected or marked, with the marks
 * (span, category, severity) and the note; the annotator revises an answer (a new version, the old
 * one kept) and sends the dialogue back to review. */
"use strict";

(() => {
  const {el, clear, api, notice} = IT;
  const tr = IT.t;
  const $ = (id) => document.getElementById(id);
  let busy = false;
  let navDone = false;

  function renderTurn(d, t) {
    const user = t.role === "user";
    const inactive = t.state !== "active";
    const who = user ? tr("returned.request") : t.revision ? tr("returned.revision") : t.review_fix
      ? tr("returned.fixed_by", {reviewer: t.review_fix.reviewer})
      : t.author === "human" ? tr("returned.yours") : tr("returned.model");
    const node = el("div", {class: `turn ${user ? "turn-user" : "turn-model"}${inactive ? " inactive" : ""}`,
                            "data-turn": t.turn_id, "data-state": t.state, "data-role": t.role},
      el("div", {class: "turn-head"}, who, inactive ? el("span", {class: "badge badge-" + t.state}, t.state) : null),
      el("div", {class: "turn-text"}, t.content));
    if (!user && (t.marks || []).length) {
      node.appendChild(el("ul", {class: "marks"}, ...t.marks.map((m) => el("li", {"data-mark": m.id},
        el("span", {class: `mark mark-${m.severity}`}, m.span), ` ${m.severity} · ${m.category}`,
        m.note ? ` — ${m.note}` : "", ` (${m.reviewer})`))));
    }
    if (!user && !inactive) {
      node.appendChild(el("div", {class: "turn-tools"},
        el("button", {type: "button", "data-tool": "revise", onclick: () => startRevise(d, t, node)}, tr("returned.revise"))));
    }
    return node;
  }

  function startRevise(d, t, node) {
    if (node.querySelector(".fix-box")) return;
    const box = el("textarea", {class: "fix-box"});
    box.value = t.content;
    node.appendChild(box);
    node.appendChild(el("div", {class: "row"}, el("span", {class: "spacer"}),
      el("button", {type: "button", onclick: () => load()}, tr("cancel")),
      el("button", {type: "button", class: "primary", "data-tool": "save-revision",
                    onclick: () => send("/api/returned/revise", {dialogue_id: d.dialogue_id, turn_id: t.turn_id,
                                                                  text: box.value})}, tr("returned.save"))));
    box.focus();
  }

  function render(data) {
    $("who").textContent = `${data.annotator} · ${data.role}`;
    if (!navDone) { clear($("nav-slot")).appendChild(IT.nav(data.role, "/returned")); navDone = true; }
    $("login").hidden = true;
    const list = clear($("dialogues"));
    $("none").hidden = data.dialogues.length > 0;
    $("howto").hidden = !data.dialogues.length;
    $("count").textContent = tr("returned.count", {n: data.dialogues.length});
    for (const d of data.dialogues) {
      const r = d.returned;
      const card = el("article", {class: "card", "data-dialogue": d.dialogue_id},
        el("div", {class: "meta"}, el("span", {class: "pill"}, `${d.src_lang} → ${d.tgt_lang}`),
          el("span", {class: `badge badge-${r.verdict}`}, tr(`returned.verdict.${r.verdict}`)),
          el("span", {class: "muted"}, " " + tr("returned.by", {reviewer: r.reviewer || "?",
                                                                id: d.dialogue_id.slice(0, 8), spec: d.spec_id}))),
        el("p", {class: "source"}, d.source || ""),
        r.note ? el("p", {class: "review-note"}, tr("returned.note"), r.note) : null);
      const turns = el("div", {class: "conversation"});
      for (const t of d.turns) turns.appendChild(renderTurn(d, t));
      card.appendChild(turns);
      const note = el("input", {type: "text", maxlength: "1000", placeholder: tr("returned.note_placeholder")});
      card.appendChild(el("div", {class: "row"}, note, el("button", {type: "button", class: "primary",
        "data-tool": "send-back", onclick: () => send("/api/returned/send", {dialogue_id: d.dialogue_id,
                                                                              note: note.value})}, tr("returned.send"))));
      list.appendChild(card);
    }
  }

  async function load() {
    const r = await api("/api/returned");
    if (r.status === 401) { IT.loginNeeded($("login")); return; }
    if (r.status !== 200) { notice(r.data.error || `error ${r.status}`, "error"); return; }
    render(r.data);
  }

  async function send(path, body) {
    if (busy) return;
    busy = true;
    const r = await api(path, body);
    busy = false;
    if (r.status === 200) { render(r.data); notice(r.data.message, "info"); return; }
    notice(r.data.error || `error ${r.status}`, r.status === 409 ? "warn" : "error");
  }

  load();
})();
