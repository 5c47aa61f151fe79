/* itcollect web: the annotator's actions that the server has not confirmed yet.
 *
 * Every action gets a key (X-Action-Key). When the server cannot be reached, the action waits
 * here, in this browser's localStorage (so a reload or a closed tab does not lose it), with its
 * key; the page sends it again every few seconds, in the order it was taken, until the server
 * answers. The server records the key in the same transaction as the action, so an action that
 * did arrive before the connection dropped is not applied twice. An action the server refuses
 * when it is back (the dialogue moved on meanwhile, ...) is reported as not saved and its text is
 * given back to the page (onRefused), never silently dropped.
 */
"use strict";

const OUTBOX = (() => {
  let items = [];
  let owner = null;          // the annotator whose actions these are (localStorage key)
  let timer = null;
  let running = false;

  function newKey() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    return Math.random().toString(36).slice(2) + Date.now().toString(36) + Math.random().toString(36).slice(2);
  }

  function storageKey() { return owner ? "itcollect-outbox:" + owner : null; }

  function save() {
    const k = storageKey();
    if (!k) return;
    try {
      if (items.length) localStorage.setItem(k, JSON.stringify(items));
      else localStorage.removeItem(k);
    } catch (err) { /* storage full or off: the items stay in this tab's memory */ }
  }

  /** Whose outbox this is; loads what an earlier tab of theirs left unsent. */
  function own(name) {
    if (owner === name) return;
    owner = name;
    const k = storageKey();
    let stored = [];
    try { stored = JSON.parse(localStorage.getItem(k) || "[]"); } catch (err) { stored = []; }
    const known = new Set(items.map((i) => i.key));
    items = items.concat((Array.isArray(stored) ? stored : []).filter((i) => i && i.key && !known.has(i.key)));
    save();
  }

  function add(path, body, key) {
    items.push({key: key || newKey(), path, body: body || {}, at: Date.now()});
    save();
  }

  function describe(item) {
    const name = item.path.replace("/api/", "");
    const text = item.body.text || item.body.note || item.body.reason || "";
    return text ? `${name} «${text.length > 60 ? text.slice(0, 57) + "…" : text}»` : name;
  }

  function text() {
    return IT.t("outbox.waiting", {n: items.length, list: items.map(describe).join("; ")});
  }

  /** Send the waiting actions in order. send(item) -> {status, data}; onSaved(item, r) for each
   *  confirmed one, onRefused(item, r) for one the server answered with an error; stops at the
   *  first that cannot reach the server, and tries again later. */
  async function flush(send, onSaved, onRefused, onWaiting) {
    if (running) return;  // one sender at a time: an action is never sent by two loops at once
    if (timer) { clearTimeout(timer); timer = null; }
    running = true;
    try { await sendAll(send, onSaved, onRefused, onWaiting); } finally { running = false; }
  }

  async function sendAll(send, onSaved, onRefused, onWaiting) {
    while (items.length) {
      const item = items[0];
      const r = await send(item);
      if (r.status === 0 || r.status === 502 || r.status === 503 || r.status === 504) {
        onWaiting();
        timer = setTimeout(() => flush(send, onSaved, onRefused, onWaiting), 2000);
        return;
      }
      if (r.status === 401) { onRefused(item, r); return; }  // kept: it is sent after the next login
      items.shift();
      save();
      if (r.status === 200) onSaved(item, r);
      else onRefused(item, r);
    }
  }

  return {newKey, own, add, flush, text, describe, get size() { return items.length; }};
})();
