/* itcollect web: the reviewer's page (the `session --review` queue): flagged and edited dialogues
 * with every turn, rejected and undone ones included; accept or reject with a note. */
"use strict";

(() => {
  const {el, clear, api} = IT;
  const $ = (id) => document.getElementById(id);
  let item = null;
  let busy = false;

  function notice(text, kind) {
    const box = $("notice");
    if (!text) { box.hidden = true; return; }
    box.textContent = text;
    box.className = "notice notice-" + (kind || "info");
    box.hidden = false;
  }

  function render(data, full) {
    $("who").textContent = `${data.reviewer} · ${data.role}`;
    if (full) clear($("nav-slot")).appendChild(IT.nav(data.role, "/review"));
    if (data.message) notice(data.message, "info");
    item = data.item;
    $("login").hidden = true;
    $("idle").hidden = !!item;
    $("item").hidden = !item;
    $("remaining").textContent = item ? `${item.remaining} to review` : "queue empty";
    if (!item) return;
    $("pair").textContent = `${item.src_lang} → ${item.tgt_lang}`;
    $("ilang").textContent = `requests in ${item.instruction_lang}`;
    $("by").textContent = `dialogue ${item.dialogue_id.slice(0, 8)} · spec ${item.spec_id} · by ${item.annotator} · ` +
      `${item.status}${item.status_reason ? " (" + item.status_reason + ")" : ""}${item.flagged ? " · FLAGGED" : ""}`;
    $("source").textContent = item.source || "";
    const flags = clear($("flags"));
    for (const f of item.flags) flags.appendChild(el("li", {}, `flag by ${f.annotator || "?"}: `, f.note || "(no note)"));
    const turns = clear($("turns"));
    for (const t of item.turns) {
      const user = t.role === "user";
      const inactive = t.state !== "active";
      const who = user ? `Request · ${t.type || "?"}` : t.author === "human" ? "Answer · edited by the annotator" : "Answer · model";
      const node = el("div", {class: `turn ${user ? "turn-user" : "turn-model"}${inactive ? " inactive" : ""}`,
                              "data-state": t.state},
        el("div", {class: "turn-head"}, who, inactive ? el("span", {class: "badge badge-" + t.state}, t.state) : null),
        el("div", {class: "turn-text"}, t.content));
      if (!user && t.original_content !== null && t.original_content !== undefined) {
        node.appendChild(el("div", {class: "original-shown"}, el("span", {class: "muted"}, "the model said: "),
                            el("span", {class: "turn-text"}, t.original_content)));
      }
      if (t.warnings && t.warnings.length) {
        node.appendChild(el("ul", {class: "warnings"}, ...t.warnings.map((w) => el("li", {}, "warning: ", w))));
      }
      turns.appendChild(node);
    }
    $("note").value = "";
  }

  async function load(full) {
    const r = await api("/api/review");
    if (r.status === 401) { $("item").hidden = true; IT.loginNeeded($("login")); return; }
    if (r.status === 403) { notice(r.data.error, "error"); return; }
    if (r.status !== 200) { notice(r.data.error || "The server did not answer; trying again…", "error");
                            setTimeout(() => load(full), 2000); return; }
    render(r.data, full);
  }

  async function decide(verdict) {
    if (!item || busy) return;
    busy = true;
    const path = verdict === "later" ? "/api/review/later" : "/api/review/verdict";
    const r = await api(path, {dialogue_id: item.dialogue_id, verdict, note: $("note").value});
    busy = false;
    if (r.status === 200) { notice(null); render(r.data, false); return; }
    notice(r.data.error || `error ${r.status}`, r.status === 409 ? "warn" : "error");
    if (r.status === 409) load(false);
  }

  for (const btn of document.querySelectorAll("[data-verdict]")) {
    btn.addEventListener("click", () => decide(btn.dataset.verdict));
  }
  $("verdict").addEventListener("submit", (ev) => ev.preventDefault());
  document.addEventListener("keydown", (ev) => {
    if (ev.key === "Escape" && IT.typing(ev)) { ev.target.blur(); return; }
    if (IT.typing(ev) || ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const verdict = {a: "accept", r: "reject", n: "later"}[ev.key];
    if (verdict && item) { ev.preventDefault(); decide(verdict); }
  });
  load(true);
})();
