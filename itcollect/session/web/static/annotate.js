/* itcollect web: the annotator's page. It renders what GET /api/state returns (the engine's view
 * of the dialogue) and sends each action to the server, which commits it through the same session
 * engine as the terminal before answering. All server text is set with textContent (common.js). */
"use strict";

(() => {
  const {el, clear, api, notice} = IT;
  const $ = (id) => document.getElementById(id);
  let langs = {};          // language code -> name, as the server names them
  let guideLangs = [];     // the languages the guide is written in (the server's list)

  let S = null;            // the last state the server sent
  let busy = false;        // an action is on its way
  let unreachable = false; // the server did not answer the last try (outbox.js)
  let stream = null;       // the EventSource of the answer being streamed
  let panel = null;        // the open form: edit | reason | skip | flag
  let reasonFor = "accept";
  let waitTimer = null;
  let chosenType = null;   // a type the annotator picked for the next request
  let paused = false;
  let lastActivity = Date.now();
  let leaseS = 1800;
  let dialogueId = null;
  const guide = {lang: null, topic: null, pinned: false, cache: {}};

  // -- loading and rendering --------------------------------------------------------------------
  async function load(first) {
    const r = await api("/api/state" + (first ? "?load=1" : ""));
    if (r.status === 401) return showLogin();
    if (r.status === 403 && r.data.home) { location.replace(r.data.home); return; }  // not an annotator
    if (r.status !== 200) {
      notice(r.data.error || "The server did not answer; trying again…", "error");
      setTimeout(() => load(first), 2000);
      return;
    }
    render(r.data, true);
    OUTBOX.own(r.data.annotator);
    if (OUTBOX.size) { notice(OUTBOX.text(), "warn"); flushOutbox(); }
  }

  function showLogin() {
    $("dialogue").hidden = true;
    $("idle").hidden = true;
    IT.loginNeeded($("login"));
  }

  function langName(code) { return langs[code] || code; }

  /** Whether the server allows the action now (the engine's rules, sent with every state). */
  function allowed(action) { return !!(S && S.actions && S.actions.includes(action)); }

  function paramsText(p) {
    const parts = [];
    for (const [key, value] of Object.entries(p)) {
      if (key === "type" || value === null || value === undefined) continue;
      parts.push(`${key}=${Array.isArray(value) ? value.join(", ") : value}`);
    }
    return parts.join(", ");
  }

  function render(state, full) {
    S = state;
    $("who").textContent = `${state.annotator} · ${state.role}`;
    if (state.progress) $("progress").textContent = state.progress.line;
    if (full) clear($("nav-slot")).appendChild(IT.nav(state.role, "/"));
    if (state.skip_reasons) fillSkipReasons(state.skip_reasons);
    if (state.types) fillTypes(state.types);
    if (state.lease_s) leaseS = state.lease_s;
    if (state.languages) langs = state.languages;
    if (state.guide_langs) guideLangs = state.guide_langs;
    if (state.message) notice(state.message, state.control ? "control" : "info");
    if (state.request_warnings && state.request_warnings.length) {
      notice((state.request_warning_text || state.request_warnings).join("\n"), "warn");
    }
    $("login").hidden = true;
    $("paused").hidden = !paused;
    const d = state.dialogue;
    if (!d) {
      $("dialogue").hidden = true;
      const idle = $("idle");
      clear(idle).appendChild(el("h2", {}, IT.t(state.waiting ? "waiting.title" : "idle.title")));
      idle.appendChild(el("p", {}, state.idle || "No dialogue is open."));
      idle.hidden = paused;
      // specs only leased by others for now: look again after retry_s (the engine's waiting)
      if (state.waiting && !paused) {
        clearTimeout(waitTimer);
        waitTimer = setTimeout(() => load(false), Math.max(500, state.waiting.retry_s * 1000));
      }
      return;
    }
    $("idle").hidden = true;
    $("dialogue").hidden = paused;
    if (d.id !== dialogueId) {  // a new dialogue: the guide follows its instruction language and plan again
      dialogueId = d.id; chosenType = null; guide.pinned = false; guide.lang = null; closePanel();
    }

    const target = d.target_lang && d.target_lang !== d.tgt_lang ? ` (now → ${d.target_lang})` : "";
    $("pair").textContent = `${d.src_lang} → ${d.tgt_lang}${target}`;
    $("ilang").textContent = `requests in ${langName(d.instruction_lang)}`;
    $("dlg").textContent = `dialogue ${d.id.slice(0, 8)} · spec ${d.spec_id}`;
    const src = $("source");
    src.textContent = d.source;
    src.setAttribute("lang", d.src_lang);
    const ref = $("reference");
    ref.hidden = !d.reference;
    ref.textContent = d.reference ? `reference: ${d.reference}` : "";

    const at = d.state === "ask" ? d.turn : d.turn - 1;
    const plan = clear($("plan"));
    d.plan.forEach((p, k) => {
      const extra = paramsText(p);
      plan.appendChild(el("li", {class: k < at ? "done" : k === at ? "current" : ""},
        el("span", {class: "type-name"}, p.type), extra ? el("span", {class: "params"}, ` (${extra})`) : null));
    });
    if (at >= d.plan.length) {
      plan.appendChild(el("li", {class: "current extra"}, el("span", {class: "type-name"}, d.type),
                          el("span", {class: "params"}, " (beyond the plan)")));
    }

    renderConversation(d);
    IT.compare.render(state, act, allowed);
    const streaming = state.streaming;
    $("live").hidden = !streaming;
    if (streaming && !stream) openStream();
    if (!streaming && stream) { stream.close(); stream = null; }

    const failed = allowed("retry") && state.answer_error;
    $("panel-error").hidden = !failed;
    if (failed) $("error-text").textContent = `The model could not answer: ${state.answer_error}`;

    // the request box
    const asking = allowed("request");
    $("panel-ask").hidden = !asking || panel !== null;
    const type = chosenType || d.type;
    $("ask-type").textContent = type;
    $("ask-lang").textContent = langName(d.instruction_lang);
    $("type-select").value = type;
    const box = $("request");
    box.setAttribute("lang", d.instruction_lang);
    box.placeholder = d.suggestion ? `e.g. ${d.suggestion}` : "";
    $("use-suggestion").hidden = !d.suggestion;

    renderActions();
    showGuide(null, type);
    if (asking && panel === null && !paused) box.focus();
    else if (panel === null && document.activeElement && document.activeElement !== document.body &&
             IT.typing({target: document.activeElement})) document.activeElement.blur();
  }

  function renderConversation(d) {
    const conv = clear($("conversation"));
    d.turns.forEach((t, k) => {
      const pending = d.state === "decide" && k === d.turns.length - 1;
      const user = t.role === "user";
      const who = user ? `You · ${t.type || "?"}`
        : t.author === "human" ? "Model · edited by you" : "Model";
      const node = el("div", {class: `turn ${user ? "turn-user" : "turn-model"}${pending ? " pending" : ""}`,
                              "data-turn": t.turn_id, "data-role": t.role},
        el("div", {class: "turn-head"}, who, pending ? el("span", {class: "badge"}, "waiting for your decision") : null),
        el("div", {class: "turn-text", lang: user ? d.instruction_lang : null}, t.content));
      if (!user && t.original_content !== null && t.original_content !== undefined) {
        node.appendChild(el("details", {class: "original"}, el("summary", {}, "the model's answer"),
                            el("div", {class: "turn-text"}, t.original_content)));
      }
      if (t.warnings && t.warnings.length) {
        const sentences = t.warning_text || t.warnings;
        node.appendChild(el("ul", {class: "warnings"},
          ...t.warnings.map((w, i) => el("li", {"data-code": w.split(":")[0], title: w}, sentences[i] || w))));
      }
      conv.appendChild(node);
    });
  }

  /** The buttons as the server's allowed actions say: retry takes regenerate's place when it is
   *  allowed, stop shows only while it is. */
  function renderActions() {
    for (const btn of document.querySelectorAll("#actions button[data-action]")) {
      const action = btn.dataset.action;
      const show = action === "retry" ? allowed("retry") : action === "regenerate" ? !allowed("retry")
        : action === "stop" ? allowed("stop") : true;
      btn.hidden = !show;
      btn.disabled = busy || !allowed(action);
    }
  }

  function fillSkipReasons(reasons) {
    const sel = $("skip-reason");
    if (sel.options.length) return;
    for (const r of reasons) sel.appendChild(el("option", {value: r}, r));
  }

  function fillTypes(types) {
    const sel = $("type-select");
    if (sel.options.length) return;
    for (const t of types) sel.appendChild(el("option", {value: t.id, title: t.description}, t.id));
    const topic = $("guide-topic");
    if (!topic.options.length) {
      for (const t of types) topic.appendChild(el("option", {value: "type:" + t.id}, t.id));
    }
  }

  // -- the streamed answer -----------------------------------------------------------------------
  function openStream() {
    if (stream) stream.close();
    const live = $("live-text");
    live.textContent = "";
    $("live-status").textContent = "answering…";
    $("live").hidden = false;
    const es = new EventSource("/api/stream?tab=" + encodeURIComponent(IT.tab));
    stream = es;
    es.addEventListener("snapshot", (e) => {
      const data = JSON.parse(e.data);
      if (data.texts && Object.keys(data.texts).length) IT.compare.snapshot(data);
      live.textContent = data.text;
      $("live-status").textContent = "answering…";
    });
    es.addEventListener("delta", (e) => {
      const data = JSON.parse(e.data);
      if (data.label) { IT.compare.delta(data); return; }  // a compare session: each answer in its column
      live.appendChild(document.createTextNode(data.text));
    });
    es.addEventListener("reset", () => {
      live.textContent = "";
      $("live-status").textContent = "the connection to the model was lost; asking again…";
    });
    es.addEventListener("end", (e) => {
      es.close();
      if (stream === es) stream = null;
      const data = JSON.parse(e.data);
      if (data.stopped) notice(data.error, "info");
      load(false);
    });
    es.onerror = () => {
      if (es.readyState === EventSource.CLOSED) {
        if (stream === es) stream = null;
        setTimeout(() => load(false), 1000);
      } else {
        $("live-status").textContent = "connection lost; reconnecting… (the answer is kept on the server)";
      }
    };
  }

  // -- actions -------------------------------------------------------------------------------------
  /** Send an action with its key (outbox.js): answered, or kept to be sent again when the server
   *  cannot be reached (then ``queued``), also while earlier actions still wait. */
  async function act(path, body) {
    if (OUTBOX.size) {  // earlier actions wait for the server: this one waits behind them, in order
      OUTBOX.add(path, body);
      closePanel();
      notice(OUTBOX.text(), "warn");
      return {status: 0, queued: true, data: {}};
    }
    if (busy) return null;
    busy = true;
    for (const b of document.querySelectorAll("#actions button")) b.disabled = true;
    const version = S && S.dialogue ? S.dialogue.version : null;
    const key = OUTBOX.newKey();
    const r = await api(path, Object.assign({version}, body || {}), {"X-Action-Key": key});
    busy = false;
    if (r.status === 0) {
      unreachable = true;
      OUTBOX.add(path, body, key);
      closePanel();
      notice(OUTBOX.text(), "warn");
      if (S) renderActions();
      flushOutbox();
      return {status: 0, queued: true, data: {}};
    }
    if (r.status === 200) {
      notice(null);
      closePanel();
      await shown(r.data);
      return r;
    }
    if (r.status === 401) { showLogin(); return r; }
    if (r.status === 409 && r.data.code === "early_finish") { askReason("finish", r.data); renderActions(); return r; }
    notice(r.data.error || `error ${r.status}`, r.status === 409 ? "warn" : "error");
    if (r.status === 409 && ["stale", "lease_lost"].includes(r.data.code)) await load(false);
    else if (S) renderActions();
    return r;
  }

  async function shown(data) {
    if (data.paused) { paused = true; render(data, false); return; }
    if (data.finished || data.skipped) { notice(data.message, "info"); await load(false); return; }
    render(data, false);
  }

  /** Send what waits in the outbox, each with its key and the dialogue's version as the server last
   *  said it (the actions were taken in this order on that dialogue). */
  function flushOutbox() {
    OUTBOX.flush(
      async (item) => {
        if (unreachable) {  // a restarted server knows the dialogue again once the page has asked for it
          const st = await api("/api/state");
          if (st.status !== 200) return st;
          unreachable = false;
          render(st.data, false);
        }
        return api(item.path, Object.assign({version: S && S.dialogue ? S.dialogue.version : null}, item.body),
                   {"X-Action-Key": item.key});
      },
      async (item, r) => {
        await shown(r.data);
        if (!OUTBOX.size) notice(IT.t("outbox.saved", {what: OUTBOX.describe(item)}) +
                                 (r.data.message ? " " + r.data.message : ""), "info");
      },
      async (item, r) => {
        if (r.status === 401) { showLogin(); return; }
        await load(false);
        giveBack(item);
        notice(IT.t("outbox.refused", {what: OUTBOX.describe(item), error: r.data.error || "error " + r.status}),
               "error");
      },
      () => { unreachable = true; notice(OUTBOX.text(), "warn"); });
  }

  /** The text of an action the server refused, back where it was typed. */
  function giveBack(item) {
    const b = item.body || {};
    if (item.path === "/api/request" && b.text) $("request").value = b.text;
    else if (item.path === "/api/edit" && b.text && pendingTurn()) { openPanel("edit"); $("edit-text").value = b.text; }
    else if (item.path === "/api/flag" && b.note) { openPanel("flag"); $("flag-note").value = b.note; }
    else if (item.path === "/api/skip" && b.note) { openPanel("skip"); $("skip-note").value = b.note; }
    else if ((item.path === "/api/accept" || item.path === "/api/finish") && b.reason) {
      reasonFor = item.path === "/api/finish" ? "finish" : "accept"; openPanel("reason"); $("reason-text").value = b.reason;
    }
  }

  /** The reason box: for accepting an answer with warnings, or (early: {done, planned} from the
   *  engine's early_finish refusal) for finishing before the planned turns, with the count. */
  function askReason(what, early) {
    reasonFor = what;
    $("reason-label").textContent = early ? IT.t("early.label", early) : IT.t("reason.label");
    $("reason-submit").textContent = early ? IT.t("early.submit") : IT.t("reason.submit");
    $("panel-reason").dataset.early = early ? "1" : "";
    $("reason-text").value = "";
    openPanel("reason");
  }

  function pendingTurn() {
    const d = S && S.dialogue;
    if (!d || !d.turns.length) return null;
    const last = d.turns[d.turns.length - 1];
    return last.role === "assistant" ? last : null;
  }

  function openPanel(name) {
    closePanel();
    panel = name;
    $("panel-ask").hidden = true;
    const form = $("panel-" + name);
    form.hidden = false;
    const first = form.querySelector("textarea, input, select");
    if (first) first.focus({preventScroll: true});
    // the whole form, with the warnings above it, clear of the sticky action bar (style.css's scroll-padding)
    const warnings = document.querySelector("#conversation .turn.pending .warnings");
    (name === "reason" && warnings ? warnings : form).scrollIntoView({block: "nearest"});
    form.scrollIntoView({block: "nearest"});
  }

  function closePanel() {
    if (panel) $("panel-" + panel).hidden = true;
    panel = null;
    if (S && S.dialogue && allowed("request") && !paused) $("panel-ask").hidden = false;
  }

  async function run(action) {
    const d = S && S.dialogue;
    if (!d) return;
    lastActivity = Date.now();
    const turn = pendingTurn();
    switch (action) {
      case "accept":
        if (d.accept_needs_reason) askReason("accept", null);
        else await act("/api/accept", {});
        break;
      case "edit":
        if (!turn && d.state !== "allbad") return;  // allbad: no answer was good, the person writes it
        $("edit-text").value = turn ? turn.content : "";
        openPanel("edit");
        break;
      case "regenerate": await act("/api/regenerate", {}); break;
      case "retry": await act("/api/retry", {}); break;
      case "stop": await act("/api/stop", {}); break;
      case "undo": {
        const r = await act("/api/undo", {});
        // the taken-back request is back in the box, to correct and send again
        if (r && r.status === 200 && r.data.undone_request) $("request").value = r.data.undone_request;
        break;
      }
      case "finish":
        if (d.accept_needs_reason) askReason("finish", null);
        else await act("/api/finish", {});
        break;
      case "skip": $("skip-note").value = ""; openPanel("skip"); break;
      case "flag": $("flag-note").value = ""; openPanel("flag"); break;
      case "guidelines": {
        const type = chosenType || d.type;
        guide.pinned = false;
        showGuide(null, type, true);
        $("guide").scrollIntoView({block: "start", behavior: "smooth"});
        $("guide-body").focus({preventScroll: true});
        api("/api/guidelines/seen", {type});
        break;
      }
      case "pause": await act("/api/pause", {}); break;
      default: break;
    }
  }

  // -- the guidelines ------------------------------------------------------------------------------
  async function sections(lang) {
    if (!guide.cache[lang]) {
      const r = await api("/api/guidelines?lang=" + lang);
      if (r.status !== 200) return null;
      const map = {};
      for (const s of r.data.sections) map[s.key] = s.html;
      guide.cache[lang] = map;
    }
    return guide.cache[lang];
  }

  async function showGuide(lang, type, force) {
    const d = S && S.dialogue;
    lang = lang || guide.lang || (d ? d.instruction_lang : "en");
    if (!guideLangs.includes(lang)) lang = guideLangs[0];  // a guide in every instruction language, else the first
    type = type || chosenType || (d ? d.type : "translate");
    const topic = guide.pinned && guide.topic ? guide.topic : "type:" + type;
    if (lang === guide.lang && topic === guide.topic && !force) return;
    guide.lang = lang;
    guide.topic = topic;
    for (const b of document.querySelectorAll(".guide .tabs button")) {
      b.classList.toggle("active", b.dataset.lang === lang);
      b.setAttribute("aria-selected", b.dataset.lang === lang ? "true" : "false");
    }
    const map = await sections(lang);
    if (!map) return;
    const sel = $("guide-topic");
    if (![...sel.options].some((o) => o.value.startsWith("general:"))) {
      for (const key of Object.keys(map)) {
        if (key.startsWith("general:")) sel.appendChild(el("option", {value: key}, key.slice(8)));
      }
    }
    sel.value = topic;
    const body = clear($("guide-body"));
    const parts = [map[topic] || ""];
    if (topic.startsWith("type:") && map["general:judging"]) parts.push(map["general:judging"]);
    body.appendChild(IT.guideHtml(parts.join("")));
    body.setAttribute("lang", lang);
  }

  // -- wiring --------------------------------------------------------------------------------------
  function wire() {
    $("panel-ask").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const text = $("request").value;
      if (!text.trim()) { notice("Write a request first.", "warn"); return; }
      const d = S.dialogue;
      const body = {text};
      if (chosenType && chosenType !== d.type) body.type = chosenType;
      const r = await act("/api/request", body);
      if (r && (r.status === 200 || r.queued)) { $("request").value = ""; chosenType = null; }
    });
    $("request").addEventListener("keydown", (ev) => {
      if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) {
        ev.preventDefault();
        $("panel-ask").requestSubmit();
      } else if (ev.key === "Escape") {
        ev.target.blur();
      }
    });
    $("use-suggestion").addEventListener("click", () => {
      const d = S && S.dialogue;
      if (d && d.suggestion) { $("request").value = d.suggestion; $("request").focus(); }
    });
    $("type-select").addEventListener("change", (ev) => {
      chosenType = ev.target.value;
      $("ask-type").textContent = chosenType;
      guide.pinned = false;
      showGuide(null, chosenType, true);
    });
    $("panel-edit").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      await act("/api/edit", {text: $("edit-text").value});
    });
    $("edit-text").addEventListener("keydown", (ev) => {
      if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) { ev.preventDefault(); $("panel-edit").requestSubmit(); }
    });
    $("panel-reason").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const reason = $("reason-text").value.trim();
      if (!reason) { notice(IT.t("reason.needed"), "warn"); return; }
      await act(reasonFor === "finish" ? "/api/finish" : "/api/accept", {reason});
    });
    $("panel-skip").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      await act("/api/skip", {reason: $("skip-reason").value, note: $("skip-note").value});
    });
    $("panel-flag").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      await act("/api/flag", {note: $("flag-note").value});
    });
    for (const btn of document.querySelectorAll("[data-cancel]")) btn.addEventListener("click", () => closePanel());
    for (const btn of document.querySelectorAll("#actions button[data-action]")) {
      btn.addEventListener("click", () => run(btn.dataset.action));
    }
    for (const btn of document.querySelectorAll(".guide .tabs button")) {
      btn.addEventListener("click", () => showGuide(btn.dataset.lang, null, true));
    }
    $("guide-topic").addEventListener("change", (ev) => {
      guide.pinned = true;
      guide.topic = ev.target.value;
      showGuide(null, null, true);
    });
    $("continue").addEventListener("click", () => { paused = false; $("paused").hidden = true; load(true); });

    document.addEventListener("keydown", (ev) => {
      lastActivity = Date.now();
      if (ev.key === "Escape") {
        if (panel) { ev.preventDefault(); closePanel(); return; }
        if (allowed("stop")) { ev.preventDefault(); run("stop"); }
        return;
      }
      if (IT.typing(ev) || ev.ctrlKey || ev.metaKey || ev.altKey || ev.isComposing) return;
      if (!S || !S.dialogue || paused || panel) return;
      if (/^[1-9]$/.test(ev.key) && allowed("pick")) { ev.preventDefault(); IT.compare.pickNumber(+ev.key); return; }
      const action = {a: "accept", e: "edit", r: allowed("retry") ? "retry" : "regenerate", u: "undo", f: "finish",
                      s: "skip", "!": "flag", g: "guidelines", q: "pause"}[ev.key];
      if (!action) return;
      const btn = document.querySelector(`#actions button[data-action="${action}"]`);
      if (!btn || btn.hidden || btn.disabled) return;
      ev.preventDefault();
      run(action);
    });
    document.addEventListener("input", () => { lastActivity = Date.now(); });
    window.addEventListener("pagehide", () => IT.sayGoodbye());
    // the page's ping: the tab is open; while the annotator works, the lease is renewed
    setInterval(() => {
      if (paused || !S || !S.dialogue) return;
      const leaseMs = leaseS * 1000;
      api("/api/renew", {active: Date.now() - lastActivity < leaseMs / 2});
    }, 60000);
  }

  wire();
  load(true);
})();
