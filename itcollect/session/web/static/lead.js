/* itcollect web: the lead's dashboard: everyone's progress and the pool against the plan. */
"use strict";

(() => {
  const {el, clear, api} = IT;
  const $ = (id) => document.getElementById(id);
  let navDone = false;
  let csrf = "";
  let drilled = null;   // the annotator whose dialogues are shown

  function num(n) { return el("td", {class: "num"}, String(n ?? 0)); }

  function render(data) {
    $("who").textContent = `${data.lead} · lead`;
    csrf = data.csrf || csrf;
    if (!navDone) { clear($("nav-slot")).appendChild(IT.nav("lead", "/lead")); navDone = true; }
    const s = data.specs;
    $("totals").textContent = `specs: ${s.total} · done ${s.done} · skipped ${s.skipped} · in progress ` +
      `${s.in_progress} · pending ${s.pending}`;
    const people = clear($("people").tBodies[0]);
    for (const a of data.annotators) {
      people.appendChild(el("tr", {class: a.account === "revoked" ? "inactive" : ""},
        el("td", {}, el("button", {type: "button", class: "link", "data-drill": a.name,
                                   title: "their dialogues", onclick: () => drill(a.name)}, a.name)),
        el("td", {}, a.role || "–"), el("td", {}, a.account),
        num(a.dialogues), num(a.skipped), num(a.flagged), num(a.turns), num(a.edits),
        el("td", {class: "num"}, IT.seconds(a.median_seconds_per_dialogue)),
        el("td", {}, IT.when(a.last_seen)),
        el("td", {}, a.working_on ? `spec ${a.working_on}` : a.online ? "online" : "")));
    }
    if (!data.annotators.length) {
      people.appendChild(el("tr", {}, el("td", {colspan: "11", class: "muted"},
        "Nobody yet: itcollect annotators add NAME")));
    }
    const pct = (x) => el("td", {class: "num"}, x === null || x === undefined ? "–" : `${Math.round(100 * x)}%`);
    const fixed = (x, d) => el("td", {class: "num"}, x === null || x === undefined ? "–" : x.toFixed(d));
    const quality = clear($("quality").tBodies[0]);
    for (const [name, q] of Object.entries(data.quality || {})) {
      quality.appendChild(el("tr", {"data-name": name}, el("td", {}, name), num(q.dialogues), num(q.turns),
        el("td", {class: "num"}, IT.seconds(q.median_active_s)), fixed(q.s_per_word, 2),
        pct(q.accepted_unchanged_share), fixed(q.edit_size, 2), pct(q.skip_rate), pct(q.flag_rate),
        el("td", {class: "num" + (q.fast_accepts ? " warn" : "")}, String(q.fast_accepts)), num(q.control_items),
        pct(q.control_catch_rate), num(q.overlap_specs), fixed(q.agreement_chrf, 1),
        el("td", {}, `${q.review.accepted} / ${q.review.rejected} / ${q.review.fixed}`),
        el("td", {class: "num"}, `${q.returns ?? 0} / ${q.fixes ?? 0}`)));
    }
    const agreement = clear($("agreement").tBodies[0]);
    const ag = data.agreement || {by_pair: [], pairs: 0};
    for (const p of ag.pairs ? [...ag.by_pair, {...ag, annotators: ["all pairs"]}] : []) {
      agreement.appendChild(el("tr", {}, el("td", {}, p.annotators.join(" & ")), num(p.specs),
        fixed(p.first_turn_chrf, 1), fixed(p.revision_chrf, 1), pct(p.decision_agreement),
        fixed(p.judge_score_diff, 2)));
    }
    if (!ag.pairs) {
      agreement.appendChild(el("tr", {}, el("td", {colspan: "6", class: "muted"},
        "No overlap specs compared yet ([session] overlap_share)")));
    }
    const pool = clear($("pool").tBodies[0]);
    for (const p of data.pool) {
      // done against planned; skipped and failed apart (they leave the pool short of its plan)
      const share = (n) => (p.planned ? (100 * n) / p.planned : 0);
      const pct = Math.round(100 * p.progress);
      const bar = el("div", {class: "bar", title: `${pct}% done`},
        el("span", {class: "bar-done"}), el("span", {class: "bar-skipped"}), el("span", {class: "bar-failed"}),
        el("span", {class: "bar-live"}));
      const widths = [p.done, p.skipped, p.failed, p.leased + p.stalled];
      [...bar.children].forEach((seg, k) => { seg.style.width = share(widths[k]) + "%"; });
      const said = [`${pct}% done`];
      if (p.to_replan) said.push(`short of the plan: ${p.to_replan} to re-plan`);
      pool.appendChild(el("tr", {class: p.to_replan ? "short" : ""}, el("td", {}, p.pair), el("td", {}, p.instruction_lang),
        num(p.planned), num(p.pending), num(p.leased), num(p.stalled), num(p.done), num(p.skipped), num(p.failed),
        el("td", {class: "bar-col"}, bar, el("span", {class: "small" + (p.to_replan ? " warn" : " muted"),
                                                      "data-progress": ""}, ` ${said.join(" · ")}`))));
    }
    const pairs = $("drill-pair");
    for (const p of data.pool) {
      if (![...pairs.options].some((o) => o.value === p.pair)) pairs.appendChild(el("option", {value: p.pair}, p.pair));
    }
    renderLeases(data.leases || []);
    $("board").hidden = false;
  }

  // -- per annotator: their dialogues, filtered by pair and by the day of their last change
  async function drill(name) {
    drilled = name;
    const q = new URLSearchParams({annotator: name});
    for (const [key, id] of [["pair", "drill-pair"], ["since", "drill-since"], ["until", "drill-until"]]) {
      if ($(id).value) q.set(key, $(id).value);
    }
    const r = await api("/api/lead/dialogues?" + q.toString());
    if (r.status !== 200) { IT.notice(r.data.error || `error ${r.status}`, "error"); return; }
    $("drill-name").textContent = name;
    const body = clear($("drill-table").tBodies[0]);
    for (const d of r.data.dialogues) {
      body.appendChild(el("tr", {"data-dialogue": d.id}, el("td", {}, d.id.slice(0, 8)), num(d.spec_id),
        el("td", {}, d.pair), el("td", {}, d.status + (d.status_reason ? ` (${d.status_reason})` : "")),
        el("td", {}, d.review_status || "–"),
        el("td", {class: "num"}, d.judge_score === null || d.judge_score === undefined ? "–" : String(d.judge_score)),
        num(d.answers), el("td", {}, d.flagged ? "flagged" : ""), el("td", {}, IT.when(d.updated_at))));
    }
    if (!r.data.dialogues.length) {
      body.appendChild(el("tr", {}, el("td", {colspan: "9", class: "muted"}, "No dialogues for these filters.")));
    }
    $("drill-count").textContent = `${r.data.dialogues.length} dialogues`;
    $("drill").hidden = false;
  }

  $("drill-filters").addEventListener("submit", (ev) => { ev.preventDefault(); if (drilled) drill(drilled); });
  $("drill-close").addEventListener("click", () => { drilled = null; $("drill").hidden = true; });

  // -- the current filtered export as a zip (the same files as `export --format all`)
  $("export-zip").addEventListener("click", async () => {
    const btn = $("export-zip");
    btn.disabled = true;
    IT.notice("Writing the export…", "info");
    try {
      const response = await fetch("/api/lead/export", {method: "POST", credentials: "same-origin",
        headers: {"X-CSRF-Token": csrf, "Content-Type": "application/json"}, body: "{}"});
      if (response.status !== 200) {
        let message = response.statusText;
        try { message = (await response.json()).error || message; } catch (err) { /* not JSON */ }
        IT.notice(message, "error");
        return;
      }
      const blob = await response.blob();
      const link = el("a", {href: URL.createObjectURL(blob), download: "itcollect-export.zip", hidden: ""});
      document.body.appendChild(link);
      link.click();
      link.remove();
      IT.notice(`Downloaded the export (${Math.round(blob.size / 1024)} KB).`, "info");
    } catch (err) {
      IT.notice("The server did not answer; try again.", "error");
    } finally {
      btn.disabled = false;
    }
  });

  function renderLeases(leases) {
    const body = clear($("leases").tBodies[0]);
    for (const l of leases) {
      const runsOut = new Date(l.expires_at * 1000);
      body.appendChild(el("tr", {"data-spec": l.spec_id, "data-copy": l.copy, class: l.live ? "" : "inactive"},
        num(l.spec_id), num(l.copy), el("td", {}, l.pair), el("td", {}, l.human ? l.holder : `${l.holder} (simulate)`),
        el("td", {}, IT.when(l.acquired_at)), el("td", {}, l.live ? runsOut.toLocaleTimeString() : "run out"),
        num(l.turns),
        el("td", {}, el("button", {type: "button", class: "release", onclick: () => release(l)}, "release"))));
    }
    if (!leases.length) body.appendChild(el("tr", {}, el("td", {colspan: "8", class: "muted"}, "No lease is held.")));
  }

  async function release(l) {
    const r = await api("/api/lead/release", {spec_id: l.spec_id, copy: l.copy});
    if (r.status === 200) IT.notice(`Spec ${l.spec_id} (copy ${l.copy}) went back to the pool; ${l.holder} moves on.`,
                                    "info");
    else IT.notice(r.data.error || `error ${r.status}`, r.status === 404 ? "warn" : "error");
    await load();
  }

  async function load() {
    const r = await api("/api/lead");
    if (r.status === 401) { $("board").hidden = true; IT.loginNeeded($("login")); return; }
    if (r.status !== 200) {
      IT.notice(r.data.error || "The server did not answer; trying again…", "error");
      return;
    }
    IT.notice(null);
    render(r.data);
  }

  load();
  setInterval(load, 15000);
})();
