/* itcollect web: the lead's dashboard: everyone's progress and the pool against the plan. */
"use strict";

(() => {
  const {el, clear, api} = IT;
  const $ = (id) => document.getElementById(id);
  let navDone = false;

  function num(n) { return el("td", {class: "num"}, String(n ?? 0)); }

  function render(data) {
    $("who").textContent = `${data.lead} · lead`;
    if (!navDone) { clear($("nav-slot")).appendChild(IT.nav("lead", "/lead")); navDone = true; }
    const s = data.specs;
    $("totals").textContent = `specs: ${s.total} · done ${s.done} · skipped ${s.skipped} · in progress ` +
      `${s.in_progress} · pending ${s.pending}`;
    const people = clear($("people").tBodies[0]);
    for (const a of data.annotators) {
      people.appendChild(el("tr", {class: a.account === "revoked" ? "inactive" : ""},
        el("td", {}, a.name), el("td", {}, a.role || "–"), el("td", {}, a.account),
        num(a.dialogues), num(a.skipped), num(a.flagged), num(a.turns), num(a.edits),
        el("td", {class: "num"}, IT.seconds(a.median_seconds_per_dialogue)),
        el("td", {}, IT.when(a.last_seen)),
        el("td", {}, a.working_on ? `spec ${a.working_on}` : a.online ? "online" : "")));
    }
    if (!data.annotators.length) {
      people.appendChild(el("tr", {}, el("td", {colspan: "11", class: "muted"},
        "Nobody yet: itcollect annotators add NAME")));
    }
    const pool = clear($("pool").tBodies[0]);
    for (const p of data.pool) {
      const done = p.done + p.skipped + p.failed;
      const pct = p.planned ? Math.round((100 * done) / p.planned) : 0;
      const live = p.planned ? Math.round((100 * (p.leased + p.stalled)) / p.planned) : 0;
      const bar = el("div", {class: "bar", title: `${pct}% closed`},
        el("span", {class: "bar-done", style: null}), el("span", {class: "bar-live"}));
      bar.firstChild.style.width = pct + "%";
      bar.lastChild.style.width = live + "%";
      pool.appendChild(el("tr", {}, el("td", {}, p.pair), el("td", {}, p.instruction_lang), num(p.planned),
        num(p.pending), num(p.leased), num(p.stalled), num(p.done), num(p.skipped), num(p.failed),
        el("td", {class: "bar-col"}, bar, el("span", {class: "small muted"}, ` ${pct}%`))));
    }
    $("board").hidden = false;
  }

  async function load() {
    const r = await api("/api/lead");
    if (r.status === 401) { $("board").hidden = true; IT.loginNeeded($("login")); return; }
    if (r.status !== 200) {
      $("notice").textContent = r.data.error || "The server did not answer; trying again…";
      $("notice").className = "notice notice-error";
      $("notice").hidden = false;
      return;
    }
    $("notice").hidden = true;
    render(r.data);
  }

  load();
  setInterval(load, 15000);
})();
