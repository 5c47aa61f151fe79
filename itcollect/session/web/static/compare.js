/* itcollect web: a compare session's part of the annotator's page (session --web --compare A,B).
 * Every system's answer streams into its own column, labelled A, B, C...; while they wait for a
 * decision the page offers pick (a button per answer, keys 1-9), rank (A>B=C) and "none good".
 * The engine decides everything; this only shows the state and sends the choice. All server text is
 * set with textContent (IT.el). */
"use strict";

(() => {
  const {el, clear} = IT;
  const $ = (id) => document.getElementById(id);
  const C = IT.compare = {};
  let cols = {};   // label -> the column's text element, while the answers stream
  let act = null;  // the page's act(path, body)
  let answers = [];

  function box() { return $("candidates"); }

  function column(label, text, warnings, failed, pickable, n) {  // warnings: the sentences (warning_text)
    const body = el("div", {class: "turn-text"}, text || "");
    const col = el("div", {class: "candidate" + (failed ? " failed" : ""), "data-label": label},
      el("div", {class: "turn-head"}, el("strong", {}, label), failed ? el("span", {class: "muted"}, " · failed") : null),
      body);
    if (failed) body.textContent = failed;
    for (const w of warnings || []) col.appendChild(el("p", {class: "warn small"}, w));
    if (pickable) {
      const btn = el("button", {type: "button", class: "primary", "data-pick": label}, el("kbd", {}, String(n)),
                     ` pick ${label}`);
      btn.addEventListener("click", () => C.pick(label));
      col.appendChild(el("div", {class: "row"}, btn));
    }
    return [col, body];
  }

  /** The streaming answers: a column per label as its first piece arrives. */
  C.delta = (data) => {
    const b = box();
    b.hidden = false;
    $("live").hidden = true;
    if (!cols[data.label]) {
      const [col, body] = column(data.label, "", [], null, false, 0);
      col.classList.add("live");
      b.appendChild(col);
      cols[data.label] = body;
      [...b.children].sort((x, y) => x.dataset.label.localeCompare(y.dataset.label)).forEach((n) => b.appendChild(n));
    }
    cols[data.label].appendChild(document.createTextNode(data.text));
  };

  C.snapshot = (data) => {
    clear(box());
    cols = {};
    for (const [label, text] of Object.entries(data.texts || {}).sort()) C.delta({label, text});
  };

  /** The state's candidates (while they wait for a pick), with the decision's controls. */
  C.render = (state, actFn, allowed) => {
    act = actFn;
    const d = state.dialogue;
    const b = box();
    answers = (d && d.candidates) || [];
    if (state.streaming) return;  // the stream fills the columns
    cols = {};
    clear(b);
    const picking = allowed("pick");
    b.hidden = !answers.length;
    $("panel-pick").hidden = !picking;
    let n = 0;
    for (const a of answers) {
      n += 1;
      b.appendChild(column(a.label, a.content, a.warning_text || a.warnings, a.failed, picking && !a.failed, n)[0]);
    }
  };

  C.pick = async (label) => {
    const a = answers.find((x) => x.label === label);
    if (!a || a.failed || !act) return;
    let reason = $("pick-reason").value.trim();
    if (a.warnings && a.warnings.length && !reason) {
      IT.notice(`Answer ${label} has warnings: write the reason you pick it anyway, then pick it again.`, "warn");
      $("pick-reason").focus();
      return;
    }
    await act("/api/pick", {label, reason: reason || null});
  };

  /** Keys 1-9: the answer of that number (1 = A). */
  C.pickNumber = (n) => {
    const a = answers[n - 1];
    if (a) C.pick(a.label);
  };

  function wire() {
    $("panel-pick").addEventListener("submit", (ev) => ev.preventDefault());
    $("rank-send").addEventListener("click", () => {
      const order = $("rank-order").value.trim();
      if (order && act) act("/api/rank", {order, reason: $("pick-reason").value.trim() || null});
    });
    $("none-send").addEventListener("click", () => {
      const reason = $("pick-reason").value.trim();
      if (!reason) { IT.notice("Say what is wrong with every answer (the reason), then press none good.", "warn"); return; }
      if (act) act("/api/none", {reason});
    });
  }

  wire();
})();
