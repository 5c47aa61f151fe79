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

  /** GET (no body) or POST (JSON body) to the API: {status, data} (data: the JSON, or {error}). */
  async function api(path, body) {
    const options = {method: body === undefined ? "GET" : "POST", credentials: "same-origin",
                     headers: {"X-Tab": tab}};
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.headers["X-CSRF-Token"] = csrf;
      options.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, options);
    } catch (err) {
      return {status: 0, data: {error: "The server cannot be reached (network or server down). Nothing is lost: " +
                                       "the page tries again."}};
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
    if (!iso) return "never";
    const d = new Date(iso);
    if (isNaN(d)) return iso;
    const ago = (Date.now() - d.getTime()) / 1000;
    if (ago < 90) return "just now";
    if (ago < 3600) return `${Math.round(ago / 60)} min ago`;
    if (ago < 86400) return `${Math.round(ago / 3600)} h ago`;
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
    const links = [["/", "Annotate"]];
    if (role === "reviewer" || role === "lead") links.push(["/review", "Review"]);
    if (role === "lead") links.push(["/lead", "Team"]);
    const box = el("nav", {class: "nav"});
    for (const [href, label] of links) {
      box.appendChild(href === here ? el("span", {class: "here"}, label) : el("a", {href}, label));
    }
    box.appendChild(el("button", {class: "link", type: "button", onclick: async () => {
      await api("/api/logout", {});
      location.reload();
    }}, "Log out"));
    return box;
  }

  function loginNeeded(container) {
    clear(container).appendChild(el("div", {class: "card login-needed"},
      el("h2", {}, "Please log in"),
      el("p", {}, "Open the login link your coordinator sent you. It was made with ",
         el("code", {}, "itcollect annotators add NAME"), "; if you lost it, ask for a new one.")));
    container.hidden = false;
  }

  return {tab, el, clear, api, setCsrf, sayGoodbye, seconds, when, typing, notice, guideHtml, nav, loginNeeded,
          get csrf() { return csrf; }};
})();
