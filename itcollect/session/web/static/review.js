/* itcollect web: the reviewer's page (the `session --review` queue). Order "default": flagged and
 * edited dialogues with every turn, rejected and undone ones included; order "overlap": the copies
 * of an overlap spec side by side. A reviewer marks error spans (select text, then "mark"), fixes an
 * answer, and decides: accept (fixed, after a fix) / reject, or picks the copy to keep. */
"use strict";

(() => {
  const {el, clear, api, notice} = IT;
  const $ = (id) => document.getElementById(id);
  // The server knows the orders: an unknown one is answered 400 with the list, shown as it is.
  const order = new URLSearchParams(location.search).get("order") || "default";
  let item = null;
  let busy = false;
  let me = null;
  let severities = [];     // the server's severities, the worst first
  let pending = null;      // the selection being marked: {dialogue_id, turn_id, start, end, text}
  let recent = [];         // the reviewer's latest verdicts still standing, newest first (the server's)

  function fillSelect(sel, values) {
    if (sel.options.length) return;
    for (const v of values) sel.appendChild(el("option", {value: v}, v));
  }

  /** The answer's text with the marks as highlighted spans (offsets count code points, as the server does). */
  function markedText(content, marks, suggestions) {
    const chars = Array.from(content);
    const open = new Array(chars.length).fill(false);  // under an open suggestion of the judge
    for (const g of suggestions || []) {
      if (g.decision || g.start === null) continue;
      for (let i = g.start; i < g.end && i < chars.length; i++) open[i] = true;
    }
    const rank = (s) => severities.length - severities.indexOf(s);  // the server lists the worst first
    const sev = new Array(chars.length).fill(0);
    const titles = new Array(chars.length).fill(null);
    for (const m of marks) {
      for (let i = m.start; i < m.end && i < chars.length; i++) {
        if (rank(m.severity) > sev[i]) { sev[i] = rank(m.severity); titles[i] = `${m.severity} · ${m.category}`; }
      }
    }
    const box = el("div", {class: "turn-text"});
    let i = 0;
    while (i < chars.length) {
      let j = i;
      while (j < chars.length && sev[j] === sev[i] && open[j] === open[i]) j++;
      const piece = chars.slice(i, j).join("");
      if (sev[i]) {
        const name = severities[severities.length - sev[i]];
        box.appendChild(el("span", {class: `mark mark-${name}`, title: titles[i]}, piece));
      } else if (open[i]) {
        box.appendChild(el("span", {class: "suggested", title: "suggested by the judge"}, piece));
      } else {
        box.appendChild(document.createTextNode(piece));
      }
      i = j;
    }
    return box;
  }

  /** Offsets (code points) of the selection inside `node`, or null when it is not within it. */
  function selectionIn(node) {
    const sel = window.getSelection();
    if (!sel || sel.rangeCount === 0 || sel.isCollapsed) return null;
    const range = sel.getRangeAt(0);
    if (!node.contains(range.startContainer) || !node.contains(range.endContainer)) return null;
    const before = document.createRange();
    before.selectNodeContents(node);
    before.setEnd(range.startContainer, range.startOffset);
    const start = Array.from(before.toString()).length;
    const text = range.toString();
    return {start, end: start + Array.from(text).length, text};
  }

  function renderTurn(d, t) {
    const user = t.role === "user";
    const inactive = t.state !== "active";
    const who = user ? `Request · ${t.type || "?"}`
      : t.review_fix ? `Answer · fixed by ${t.review_fix.reviewer}`
      : t.revision ? `Answer · revised by ${t.revision.annotator} after the verdict ${t.revision.answers}`
      : t.author === "human" ? "Answer · edited by the annotator" : "Answer · model";
    const text = user || inactive ? el("div", {class: "turn-text"}, t.content) : markedText(t.content, t.marks || [], t.suggestions);
    const node = el("div", {class: `turn ${user ? "turn-user" : "turn-model"}${inactive ? " inactive" : ""}`,
                            "data-state": t.state, "data-turn": t.turn_id, "data-role": t.role},
      el("div", {class: "turn-head"}, who, inactive ? el("span", {class: "badge badge-" + t.state}, t.state) : null),
      text);
    if (!user && t.original_content !== null && t.original_content !== undefined) {
      node.appendChild(el("div", {class: "original-shown"},
        el("span", {class: "muted"}, t.review_fix ? "before the fix: " : t.revision ? "before the revision: "
                                                                         : "the model said: "),
        el("span", {class: "turn-text"}, t.original_content)));
    }
    if (t.judge) {
      const j = t.judge;
      const parts = j.status !== "judged" ? ["reply not readable"] : [
        j.score !== null && j.score !== undefined ? `score ${j.score}` : null,
        j.rating ? `rating ${j.rating}/5` : null,
        ...(j.errors || []).map((e) => `${e.severity} ${e.category} «${e.span}»`),
        j.compliance ? `compliance ${j.compliance}` : null].filter(Boolean);
      node.appendChild(el("div", {class: "judge-note"}, `judge (${j.judge_model}): ${parts.join(" · ")}`));
    }
    if (t.suggestions && t.suggestions.length && !inactive) {
      const list = el("ul", {class: "suggestions"});
      for (const g of t.suggestions) {
        const head = [el("span", {class: "suggested"}, g.span || "(no span)"), ` ${g.severity} · ${g.category} · `];
        const li = el("li", {"data-suggestion": g.index, "data-turn": t.turn_id,
                             "data-decision": g.decision || "open"}, "judge suggests ", ...head);
        if (g.decision) {
          li.appendChild(el("span", {class: "muted"}, `${g.decision} by ${g.by}`));
        } else {
          const act = (decision) => () => decideSuggestion(d, t, g, decision);
          if (g.start !== null) {
            li.appendChild(el("button", {type: "button", class: "link", "data-decide": "confirm",
                                         onclick: act("confirm")}, "c confirm"));
            li.appendChild(el("button", {type: "button", class: "link", "data-decide": "change",
                                         onclick: act("change")}, "k change"));
          } else {
            li.appendChild(el("span", {class: "muted"}, "(not in the answer) "));
          }
          li.appendChild(el("button", {type: "button", class: "link", "data-decide": "dismiss",
                                       onclick: act("dismiss")}, "d dismiss"));
        }
        list.appendChild(li);
      }
      node.appendChild(list);
    }
    if (t.control) {
      node.appendChild(el("div", {class: "control-note"},
        `control item (planted error: ${t.control.description}) · ${t.control.outcome || "not decided"}`));
    }
    if (t.warnings && t.warnings.length) {
      node.appendChild(el("ul", {class: "warnings"}, ...t.warnings.map((w) => el("li", {}, "warning: ", w))));
    }
    if (!user && !inactive) {
      const marks = el("ul", {class: "marks"});
      for (const m of t.marks || []) {
        marks.appendChild(el("li", {"data-mark": m.id}, el("span", {class: `mark mark-${m.severity}`}, m.span),
          ` ${m.severity} · ${m.category}`, m.note ? ` — ${m.note}` : "", ` (${m.reviewer})`,
          m.reviewer === me ? el("button", {type: "button", class: "link", onclick: () => unmark(m.id)}, " remove") : null));
      }
      node.appendChild(marks);
      const tools = el("div", {class: "turn-tools"},
        el("button", {type: "button", "data-tool": "mark", onclick: () => startMark(d, t, text)}, "mark selection"),
        d.review_status ? null : el("button", {type: "button", "data-tool": "fix", onclick: () => startFix(d, t, node)}, "fix"));
      node.appendChild(tools);
    }
    return node;
  }

  function renderDialogue(d, container) {
    for (const t of d.turns) container.appendChild(renderTurn(d, t));
  }

  function render(data, full) {
    me = data.reviewer;
    severities = data.severities;
    $("who").textContent = `${data.reviewer} · ${data.role}`;
    if (full) {
      clear($("nav-slot")).appendChild(IT.nav(data.role, "/review"));
      for (const a of document.querySelectorAll("#orders a")) a.classList.toggle("here", a.dataset.order === order);
      fillSelect($("mark-category"), data.categories);
      fillSelect($("mark-severity"), data.severities);
      if (order === "overlap") {
        $("idle-text").textContent = "Overlap specs come here when all their copies are finished.";
        $("verdict").hidden = true;
      }
    }
    if (data.message) notice(data.message, "info");
    renderRecent(data.recent || []);
    item = data.item;
    closeMark();
    $("login").hidden = true;
    $("idle").hidden = !!item;
    $("item").hidden = !item;
    $("remaining").textContent = item ? `${item.remaining} to review` : "queue empty";
    if (!item) return;
    $("pair").textContent = `${item.src_lang} → ${item.tgt_lang}`;
    $("ilang").textContent = `requests in ${item.instruction_lang}`;
    $("source").textContent = item.source || "";
    const flags = clear($("flags"));
    const turns = clear($("turns"));
    if (item.mode === "overlap") {
      $("by").textContent = `spec ${item.spec_id} · ${item.dialogues.length} copies, done independently`;
      const grid = el("div", {class: "copies"});
      item.dialogues.forEach((d, k) => {
        const col = el("div", {class: "copy", "data-dialogue": d.dialogue_id},
          el("div", {class: "copy-head"}, `copy ${k + 1} · by ${d.annotator}`, el("span", {class: "spacer"}),
             el("button", {type: "button", class: "primary", "data-pick": d.dialogue_id,
                           onclick: () => pick(d.dialogue_id)}, "keep this one")));
        for (const f of d.flags) col.appendChild(el("div", {class: "muted small"}, `flag: ${f.note || "(no note)"}`));
        renderDialogue(d, col);
        grid.appendChild(col);
      });
      turns.appendChild(grid);
      return;
    }
    $("by").textContent = `dialogue ${item.dialogue_id.slice(0, 8)} · spec ${item.spec_id} · by ${item.annotator} · ` +
      `${item.status}${item.status_reason ? " (" + item.status_reason + ")" : ""}${item.flagged ? " · FLAGGED" : ""}`;
    for (const f of item.flags) flags.appendChild(el("li", {}, `flag by ${f.annotator || "?"}: `, f.note || "(no note)"));
    renderDialogue(item, turns);
    const fixed = item.turns.some((t) => t.state === "active" && t.review_fix);
    $("accept-label").textContent = fixed ? "accept with my fixes" : "accept";
    $("note").value = "";
  }

  function renderRecent(list) {
    recent = list;
    const ul = clear($("recent-list"));
    $("recent").hidden = !list.length || order === "overlap";
    for (const v of list) {
      ul.appendChild(el("li", {"data-dialogue": v.dialogue_id},
        el("span", {class: `badge badge-${v.verdict}`}, v.verdict),
        ` dialogue ${v.dialogue_id.slice(0, 8)} · spec ${v.spec_id} · by ${v.annotator || "?"} · ${IT.when(v.at)} `,
        el("button", {type: "button", class: "link", "data-undo": v.dialogue_id,
                      onclick: () => undoVerdict(v.dialogue_id)}, "take back / change")));
    }
  }

  function undoVerdict(dialogueId) {
    const id = dialogueId || (recent[0] && recent[0].dialogue_id);
    if (!id) { notice("No verdict of yours to take back.", "warn"); return; }
    send("/api/review/undo", {dialogue_id: id});
  }

  async function load(full) {
    const r = await api("/api/review" + (order === "default" ? "" : `?order=${order}`));
    if (r.status === 401) { $("item").hidden = true; IT.loginNeeded($("login")); return; }
    if (r.status === 403 || r.status === 400) { notice(r.data.error, "error"); return; }
    if (r.status !== 200) { notice(r.data.error || "The server did not answer; trying again…", "error");
                            setTimeout(() => load(full), 2000); return; }
    render(r.data, full);
  }

  async function send(path, body) {
    if (busy) return;
    busy = true;
    const r = await api(path, {...body, order});
    busy = false;
    if (r.status === 200) { notice(null); render(r.data, false); if (r.data.message) notice(r.data.message, "info"); return; }
    notice(r.data.error || `error ${r.status}`, r.status === 409 ? "warn" : "error");
    if (r.status === 409) load(false);
  }

  function decide(verdict) {
    if (!item || item.mode !== "dialogue") return;
    if (verdict === "later") { send("/api/review/later", {key: item.key, dialogue_id: item.dialogue_id}); return; }
    send("/api/review/verdict", {dialogue_id: item.dialogue_id, verdict, note: $("note").value});
  }

  function pick(dialogueId) {
    if (!item || item.mode !== "overlap") return;
    send("/api/review/pick", {spec_id: item.spec_id, dialogue_id: dialogueId});
  }

  // -- marks ---------------------------------------------------------------------------------------
  function startMark(d, t, textNode) {
    const s = selectionIn(textNode);
    if (!s || !s.text.trim()) { notice("Select the wrong words in the answer first, then mark them.", "warn"); return; }
    pending = {dialogue_id: d.dialogue_id, turn_id: t.turn_id, start: s.start, end: s.end};
    $("mark-span").textContent = s.text;
    $("mark-note").value = "";
    $("markform").hidden = false;
    $("mark-category").focus();
  }

  function closeMark() { pending = null; $("markform").hidden = true; }

  // -- the judge's suggested marks: c confirm, k change (the mark form, the judge's choice filled in), d dismiss
  function decideSuggestion(d, t, g, decision) {
    if (decision !== "change") {
      send("/api/review/suggestion", {dialogue_id: d.dialogue_id, turn_id: t.turn_id, index: g.index, decision});
      return;
    }
    pending = {dialogue_id: d.dialogue_id, turn_id: t.turn_id, suggestion: g.index};
    $("mark-span").textContent = g.span;
    $("mark-category").value = g.category;
    $("mark-severity").value = g.severity;
    $("mark-note").value = "";
    $("markform").hidden = false;
    $("mark-category").focus();
  }

  /** The first open suggestion on screen: [dialogue, turn, suggestion]. */
  function firstOpenSuggestion() {
    for (const d of item ? (item.mode === "overlap" ? item.dialogues : [item]) : []) {
      for (const t of d.turns) {
        if (t.state !== "active") continue;
        const g = (t.suggestions || []).find((x) => !x.decision);
        if (g) return [d, t, g];
      }
    }
    return null;
  }

  function markSelectionAnywhere() {
    for (const node of document.querySelectorAll("#turns .turn[data-role=assistant]:not(.inactive)")) {
      const text = node.querySelector(".turn-text");
      const s = selectionIn(text);
      if (s) {
        const dnode = node.closest("[data-dialogue]");
        const d = dnode ? item.dialogues.find((x) => x.dialogue_id === dnode.dataset.dialogue) : item;
        startMark(d, {turn_id: Number(node.dataset.turn)}, text);
        return;
      }
    }
    notice("Select the wrong words in an answer first, then press m.", "warn");
  }

  $("markform").addEventListener("submit", (ev) => {
    ev.preventDefault();
    if (!pending) return;
    if (pending.suggestion !== undefined) {
      send("/api/review/suggestion", {dialogue_id: pending.dialogue_id, turn_id: pending.turn_id,
                                      index: pending.suggestion, decision: "change",
                                      category: $("mark-category").value, severity: $("mark-severity").value});
      return;
    }
    send("/api/review/mark", {...pending, category: $("mark-category").value, severity: $("mark-severity").value,
                              note: $("mark-note").value});
  });
  $("mark-cancel").addEventListener("click", closeMark);

  function unmark(id) { send("/api/review/unmark", {mark_id: id}); }

  // -- fixes ---------------------------------------------------------------------------------------
  function startFix(d, t, node) {
    if (node.querySelector(".fix-box")) return;
    const box = el("textarea", {class: "fix-box"});
    box.value = t.content;
    const bar = el("div", {class: "row"}, el("span", {class: "spacer"}),
      el("button", {type: "button", onclick: () => load(false)}, "cancel"),
      el("button", {type: "button", class: "primary", "data-tool": "save-fix",
                    onclick: () => send("/api/review/fix", {dialogue_id: d.dialogue_id, turn_id: t.turn_id,
                                                             text: box.value})}, "save fix"));
    node.appendChild(box);
    node.appendChild(bar);
    box.focus();
  }

  for (const btn of document.querySelectorAll("[data-verdict]")) {
    btn.addEventListener("click", () => decide(btn.dataset.verdict));
  }
  $("verdict").addEventListener("submit", (ev) => ev.preventDefault());
  document.addEventListener("keydown", (ev) => {
    if (ev.key === "Escape" && IT.typing(ev)) { ev.target.blur(); return; }
    if (ev.key === "Escape" && pending) { closeMark(); return; }
    if (IT.typing(ev) || ev.ctrlKey || ev.metaKey || ev.altKey) return;
    if (ev.key === "m" && item) { ev.preventDefault(); markSelectionAnywhere(); return; }
    const suggestionKey = {c: "confirm", k: "change", d: "dismiss"}[ev.key];
    if (suggestionKey && item) {
      ev.preventDefault();
      const open = firstOpenSuggestion();
      if (!open) { notice("No open suggestion of the judge on this dialogue.", "info"); return; }
      if (suggestionKey !== "dismiss" && open[2].start === null) {
        notice("The judge's span is not in the answer: d dismisses it.", "warn"); return;
      }
      decideSuggestion(open[0], open[1], open[2], suggestionKey);
      return;
    }
    if (order === "overlap") return;
    if (ev.key === "u") { ev.preventDefault(); undoVerdict(null); return; }
    // x rejects: r means "regenerate" on the annotator's page, so it does nothing here
    if (ev.key === "r" && item) { notice("r does nothing here: x rejects, u takes a verdict back.", "info"); return; }
    const verdict = {a: "accept", x: "reject", n: "later"}[ev.key];
    if (verdict && item) { ev.preventDefault(); decide(verdict); }
  });
  load(true);
})();
