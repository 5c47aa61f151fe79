/* itcollect web: helpers shared by the annotator, review and lead pages.
 *
 * Every piece of text that comes from the server (sources, requests, model answers, notes, names)
 * goes into the page as a text node (textContent / createTextNode), never as HTML, so a source
 * sentence containing <script> or <img onerror=...> shows those characters and runs nothing.
 * The one exception is the guidelines, which the server renders to safe HTML (guideHtml), parsed
 * into an inert document, not assigned: this file never assigns innerHTML.
 */
"use strict";

const IT = (() => {
  const tab = Math.random().toString(36).slice(2) + Date.now().toString(36);
  let csrf = "";
  /* The page's language (en | zh): the server writes it into <html lang> from the account's choice
   * ([web] language, else the browser's); every string comes from the one catalog (catalog.js,
   * generated from itcollect/session/catalog.py). */
  const lang = document.documentElement.lang === "zh" ? "zh" : "en";

  /** t("key", {n: 3}): the catalog's message in the page's language (English when it lacks one). */
  function t(key, values) {
    const entry = (typeof IT_CATALOG !== "undefined" && IT_CATALOG[key]) || null;
    let text = entry ? (entry[lang] || entry.en) : key;
    for (const [k, v] of Object.entries(values || {})) text = text.split("{" + k + "}").join(String(v));
    return text;
  }

  /** Put the catalog's text into every element with data-t (its text) / data-t-placeholder /
   *  data-t-title under root. */
  function translate(root) {
    for (const node of (root || document).querySelectorAll("[data-t]")) node.textContent = t(node.dataset.t);
    for (const node of (root || document).querySelectorAll("[data-t-placeholder]")) {
      node.setAttribute("placeholder", t(node.dataset.tPlaceholder));
    }
    for (const node of (root || document).querySelectorAll("[data-t-title]")) {
      node.setAttribute("title", t(node.dataset.tTitle));
    }
  }

  /** el("div", {class: "x", title: "y"}, "text", childNode, ...): an element with text children. */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("on") && typeof value === "function") node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === undefined || child === null || child === false) continue;
      node.appendChild(typeof child === "string" || typeof child === "number"
        ? document.createTextNode(String(child)) : child);
    }
    return node;
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
    return node;
  }

  function setCsrf(token) { if (token) csrf = token; }

  /** GET (no body) or POST (JSON body, extra headers) to the API: {status, data} (data: the JSON, or
   *  {error}); status 0 when the server could not be reached (nothing was saved, as far as the page knows). */
  async function api(path, body, headers) {
    const options = {method: body === undefined ? "GET" : "POST", credentials: "same-origin",
                     headers: Object.assign({"X-Tab": tab, "X-Lang": lang}, headers || {})};
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.headers["X-CSRF-Token"] = csrf;
      options.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, options);
    } catch (err) {
      return {status: 0, data: {error: t("net.down")}};
    }
    let data = {};
    try { data = await response.json(); } catch (err) { data = {error: response.statusText || "no answer"}; }
    if (data && data.csrf) setCsrf(data.csrf);
    return {status: response.status, data};
  }

  /** The page's last words when it closes: the server counts the tab as gone (sendBeacon cannot set
   *  headers, so the CSRF token travels in the body). */
  function sayGoodbye() {
    if (!csrf || !navigator.sendBeacon) return;
    const blob = new Blob([JSON.stringify({csrf, tab})], {type: "text/plain"});
    navigator.sendBeacon("/api/away", blob);
  }

  function seconds(s) {
    if (s === null || s === undefined) return "–";
    s = Math.round(s);
    return s >= 60 ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s` : `${s}s`;
  }

  function when(iso) {
    if (!iso) return t("time.never");
    const d = new Date(iso);
    if (isNaN(d)) return iso;
    const ago = (Date.now() - d.getTime()) / 1000;
    if (ago < 90) return t("time.just_now");
    if (ago < 3600) return t("time.min_ago", {n: Math.round(ago / 60)});
    if (ago < 86400) return t("time.h_ago", {n: Math.round(ago / 3600)});
    return d.toLocaleDateString();
  }

  /** True when a key press belongs to a text field (shortcuts must not fire while typing). */
  function typing(event) {
    const t = event.target;
    if (!t || t === document.body) return false;
    const tag = (t.tagName || "").toLowerCase();
    return tag === "textarea" || tag === "select" || t.isContentEditable ||
      (tag === "input" && !["button", "checkbox", "radio", "submit"].includes((t.type || "").toLowerCase()));
  }

  /** Show a message in the page's #notice box (kind: info | warn | error | control), or hide it. */
  function notice(text, kind) {
    const box = document.getElementById("notice");
    if (!text) { box.hidden = true; clear(box); return; }
    clear(box).appendChild(document.createTextNode(text));
    box.className = "notice notice-" + (kind || "info");
    box.hidden = false;
  }

  /** The guidelines' HTML as the server rendered it (markdown-it with raw HTML and images off,
   *  links checked: itcollect/session/web/guide.py), as nodes in a div.md. It is parsed into an
   *  inert document (no script runs, nothing loads) and its nodes imported. */
  function guideHtml(html) {
    const doc = new DOMParser().parseFromString(`<!doctype html><body><div class="md">${html}</div>`, "text/html");
    return document.importNode(doc.body.firstElementChild, true);
  }

  function nav(role, here) {
    const links = [["/", t("nav.annotate")], ["/returned", t("nav.returned")]];
    if (role === "reviewer" || role === "lead") links.push(["/review", t("nav.review")]);
    if (role === "lead") links.push(["/lead", t("nav.team")]);
    const box = el("nav", {class: "nav"});
    for (const [href, label] of links) {
      box.appendChild(href === here ? el("span", {class: "here"}, label) : el("a", {href}, label));
    }
    // the other language, one click: stored on the account, so every page and device follows
    const other = lang === "zh" ? "en" : "zh";
    box.appendChild(el("button", {class: "link", type: "button", id: "ui-lang", lang: other,
                                  "aria-label": t("nav.language"), onclick: async () => {
      const r = await api("/api/language", {lang: other});
      if (r.status === 200) location.reload();
      else notice(r.data.error || `error ${r.status}`, "error");
    }}, other === "zh" ? "中文" : "English"));
    box.appendChild(el("button", {class: "link", type: "button", onclick: async () => {
      await api("/api/logout", {});
      location.reload();
    }}, t("nav.logout")));
    return box;
  }

  function loginNeeded(container) {
    clear(container).appendChild(el("div", {class: "card login-needed"},
      el("h2", {}, t("login.title")),
      el("p", {}, t("login.body", {cmd: "itcollect annotators add NAME"}))));
    container.hidden = false;
  }

  translate(document);

  return {tab, lang, t, translate, el, clear, api, setCsrf, sayGoodbye, seconds, when, typing, notice, guideHtml, nav, loginNeeded,
          get csrf() { return csrf; }};
})();
