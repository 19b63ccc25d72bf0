// The key-management page. One script, no build step, no dependency.
//
// Rules this file keeps (tests/admin_ui.rs and scripts/ui-test/test.mjs check them):
// - Everything from the API reaches the page through textContent or form
//   values, never as HTML. The CSP requires Trusted Types with no policy,
//   so the browser would refuse HTML built from strings anyway.
// - The pasted API key lives in `session.key` only: never in localStorage,
//   sessionStorage, cookies or IndexedDB. Sign-out and leaving the page
//   forget it.
// - A key the API issues is put in one DOM node (#secret-value) and in no
//   variable beyond the function that shows it; dismissing it or leaving
//   the page empties that node.
// - Requests go to this origin only, relative to the page (`../keys`).
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const PAGE_SIZE = 20;

  /** What /ui/config.json says; see `UiConfig` in src/manage/ui.rs. */
  let config = null;
  /** The signed-in state: the pasted key (api-key mode) and the list's position. */
  const session = { key: null, signedIn: false, cursors: [null], page: 0, next: null };

  // ---- talking to the API ----

  class ApiError extends Error {
    constructor(status, problem) {
      super((problem && problem.detail) || `The server answered ${status}.`);
      this.status = status;
      this.problem = problem;
    }
  }

  /** Calls the management API, beside this page. */
  async function api(method, path, body) {
    const headers = { Accept: "application/json" };
    let url = "../" + path;
    if (config.sign_in === "api-key") {
      if (!session.key) throw new ApiError(401, { detail: "Sign in first." });
      const send = config.send_key;
      if (send.header) headers[send.header] = session.key;
      else if (send.bearer) headers.Authorization = "Bearer " + session.key;
      else url += (url.includes("?") ? "&" : "?") + encodeURIComponent(send.query) + "=" + encodeURIComponent(session.key);
    }
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const init = {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      // The pasted key is the credential; cookies only in session mode.
      credentials: config.sign_in === "session" ? "same-origin" : "omit",
      cache: "no-store",
      redirect: "error",
      referrerPolicy: "no-referrer",
    };
    let res = await fetch(url, init);
    // Over the key's quota: the layer refused the call before it did
    // anything, so it is safe to send again, after the wait it asks for.
    for (let retries = 2; res.status === 429 && retries > 0; retries--) {
      const wait = Number(res.headers.get("Retry-After"));
      if (!(wait > 0 && wait <= 10)) break;
      await new Promise((resolve) => setTimeout(resolve, wait * 1000));
      res = await fetch(url, init);
    }
    let data = null;
    try {
      data = await res.json();
    } catch {
      data = null;
    }
    if (!res.ok) throw new ApiError(res.status, data);
    return data;
  }

  // ---- small DOM helpers: text only ----

  function el(tag, text, className) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (className) node.className = className;
    return node;
  }

  function show(node, visible) {
    node.hidden = !visible;
  }

  function when(value) {
    if (!value) return "never";
    // RFC 3339 from the API, shown in UTC to the minute.
    const d = new Date(value);
    if (Number.isNaN(d.getTime())) return String(value);
    return d.toISOString().slice(0, 16).replace("T", " ") + " UTC";
  }

  // ---- errors ----

  function showError(err) {
    const problem = err instanceof ApiError ? err.problem : null;
    $("error-text").textContent = err instanceof ApiError ? err.message : "The request failed: " + err.message;
    const list = $("error-fields");
    list.replaceChildren();
    if (problem && Array.isArray(problem.errors)) {
      for (const e of problem.errors) list.append(el("li", `${e.field}: ${e.message}`));
    }
    show($("error"), true);
    if (err instanceof ApiError && err.status === 401) signOut(true);
  }

  function clearError() {
    show($("error"), false);
    $("error-text").textContent = "";
    $("error-fields").replaceChildren();
  }

  // ---- the key shown once ----

  /** Shows a key the API just issued. `created.key` is removed from `created`. */
  function showSecret(title, created) {
    const secret = $("secret-value");
    secret.textContent = created.key;
    delete created.key;
    $("secret-title").textContent = title;
    $("secret-copied").textContent = "";
    show($("secret"), true);
    $("secret-copy").focus();
  }

  function hideSecret() {
    $("secret-value").textContent = "";
    $("secret-copied").textContent = "";
    show($("secret"), false);
    const selection = window.getSelection();
    if (selection) selection.removeAllRanges();
  }

  async function copySecret() {
    const node = $("secret-value");
    try {
      await navigator.clipboard.writeText(node.textContent);
      $("secret-copied").textContent = "Copied to the clipboard.";
    } catch {
      // No Clipboard API (or no permission): select it for Ctrl+C / ⌘C.
      const range = document.createRange();
      range.selectNodeContents(node);
      const selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      $("secret-copied").textContent = "Selected: press Ctrl+C (⌘C on a Mac) to copy.";
    }
  }

  // ---- signing in and out ----

  async function signIn(event) {
    event.preventDefault();
    clearError();
    const input = $("sign-in-key");
    session.key = input.value.trim();
    // The key now lives in `session.key` only.
    input.value = "";
    try {
      await openApp();
    } catch (err) {
      session.key = null;
      showError(err);
    }
  }

  async function openApp() {
    session.cursors = [null];
    session.page = 0;
    await loadKeys();
    session.signedIn = true;
    show($("sign-in"), false);
    show($("session-needed"), false);
    show($("app"), true);
    show($("sign-out"), config.sign_in === "api-key");
    const who = $("signed-in");
    who.textContent = config.sign_in === "api-key" ? "Signed in with an API key" : "Signed in with your session";
    show(who, true);
  }

  /** Forgets the key, the list and any key on show. */
  function signOut(refused) {
    session.key = null;
    session.signedIn = false;
    hideSecret();
    for (const d of document.querySelectorAll("dialog")) if (d.open) d.close();
    $("key-rows").replaceChildren();
    $("usage-rows").replaceChildren();
    show($("app"), false);
    show($("sign-out"), false);
    show($("signed-in"), false);
    if (config.sign_in === "api-key") {
      show($("sign-in"), true);
      if (!refused) clearError();
    } else {
      show($("session-needed"), true);
    }
  }

  // ---- the list ----

  function statusOf(key) {
    if (key.status === "active" && key.expires_at) {
      const left = (new Date(key.expires_at).getTime() - Date.now()) / 1000;
      if (left <= config.expiry_warning_seconds) return "expiring";
    }
    return key.status;
  }

  async function loadKeys() {
    const form = $("filter-form");
    const params = new URLSearchParams({ limit: String(PAGE_SIZE) });
    for (const name of ["status", "environment"]) {
      const value = form.elements[name].value;
      if (value) params.set(name, value);
    }
    const cursor = session.cursors[session.page];
    if (cursor) params.set("cursor", cursor);
    const list = await api("GET", "keys?" + params.toString());
    session.next = list.next_cursor;
    renderKeys(list.keys);
  }

  function renderKeys(keys) {
    const rows = keys.map((key) => {
      const tr = el("tr");
      tr.dataset.id = key.id;
      const status = statusOf(key);
      const statusCell = el("td");
      statusCell.append(el("span", status, "status status-" + status));
      tr.append(
        el("td", key.name, "name"),
        cell(el("code", key.prefix)),
        el("td", key.owner),
        el("td", key.scopes.length ? key.scopes.join(" ") : "none"),
        statusCell,
        el("td", when(key.created_at)),
        el("td", key.superseded_by && key.expires_at ? when(key.expires_at) + " (grace)" : when(key.expires_at)),
        el("td", key.last_used_at ? when(key.last_used_at) : "not yet"),
        el("td", key.rate_limit || "default"),
        actions(key),
      );
      return tr;
    });
    $("key-rows").replaceChildren(...rows);
    show($("keys-empty"), keys.length === 0);
    $("page-number").textContent = `page ${session.page + 1}`;
    $("page-prev").disabled = session.page === 0;
    $("page-first").disabled = session.page === 0;
    $("page-next").disabled = !session.next;
  }

  function cell(child) {
    const td = el("td");
    td.append(child);
    return td;
  }

  function actions(key) {
    const td = el("td", null, "actions-cell");
    const gone = key.status === "revoked";
    const usage = el("button", "Usage", "quiet small");
    usage.type = "button";
    usage.disabled = gone;
    usage.addEventListener("click", () => openUsage(key));
    const rotate = el("button", "Rotate", "quiet small");
    rotate.type = "button";
    rotate.disabled = key.status !== "active" || Boolean(key.superseded_by);
    rotate.addEventListener("click", () => openRotate(key));
    const revoke = el("button", "Revoke", "danger small");
    revoke.type = "button";
    revoke.disabled = gone;
    revoke.addEventListener("click", () => openRevoke(key));
    td.append(usage, rotate, revoke);
    return td;
  }

  async function turnPage(to) {
    const before = session.page;
    if (to === "next") {
      if (!session.next) return;
      session.cursors[before + 1] = session.next;
      session.page = before + 1;
    } else if (to === "prev") {
      session.page = Math.max(0, before - 1);
    } else {
      session.page = 0;
    }
    session.cursors.length = session.page + 1;
    try {
      clearError();
      await loadKeys();
    } catch (err) {
      session.page = before;
      showError(err);
    }
  }

  async function refresh() {
    session.cursors = [null];
    session.page = 0;
    await loadKeys();
  }

  // ---- create ----

  async function createKey(event) {
    event.preventDefault();
    clearError();
    const f = event.target.elements;
    const body = {
      owner: f.owner.value.trim(),
      name: f.name.value,
      scopes: f.scopes.value.split(/[\s,]+/).filter(Boolean),
    };
    if (f.environment.value) body.environment = f.environment.value;
    if (f.expires_days.value) body.expires_in_seconds = Math.round(Number(f.expires_days.value) * 86400);
    if (f.rate_limit.value.trim()) body.rate_limit = f.rate_limit.value.trim();
    try {
      const created = await api("POST", "keys", body);
      showSecret(`Your new key: ${created.name}`, created);
      f.name.value = "";
      await refresh();
    } catch (err) {
      showError(err);
    }
  }

  // ---- revoke, with a confirmation ----

  let revoking = null;

  function openRevoke(key) {
    revoking = key.id;
    $("revoke-name").textContent = key.name;
    $("revoke-prefix").textContent = key.prefix;
    $("revoke-dialog").showModal();
    $("revoke-cancel").focus();
  }

  async function confirmRevoke() {
    const id = revoking;
    revoking = null;
    $("revoke-dialog").close();
    if (!id) return;
    clearError();
    try {
      await api("DELETE", "keys/" + encodeURIComponent(id));
      await loadKeys();
    } catch (err) {
      showError(err);
    }
  }

  // ---- rotate, with a grace period ----

  let rotating = null;

  function openRotate(key) {
    rotating = key.id;
    $("rotate-name").textContent = key.name;
    $("rotate-prefix").textContent = key.prefix;
    $("rotate-dialog").showModal();
    $("rotate-hours").focus();
  }

  async function confirmRotate() {
    const id = rotating;
    const hours = Number($("rotate-hours").value || "0");
    rotating = null;
    $("rotate-dialog").close();
    if (!id) return;
    clearError();
    try {
      const grace = Math.max(0, Math.round(hours * 3600));
      const created = await api("POST", "keys/" + encodeURIComponent(id) + "/rotate", { grace_seconds: grace });
      showSecret(`The new key for ${created.name}`, created);
      await refresh();
    } catch (err) {
      showError(err);
    }
  }

  // ---- usage ----

  async function openUsage(key) {
    clearError();
    try {
      const usage = await api("GET", "keys/" + encodeURIComponent(key.id) + "/usage");
      $("usage-name").textContent = key.name;
      $("usage-since").textContent = when(usage.since);
      const most = Math.max(1, ...usage.buckets.map((b) => b.requests));
      let total = 0;
      const rows = usage.buckets.map((b) => {
        total += b.requests;
        const meter = el("meter");
        meter.min = 0;
        meter.max = most;
        meter.value = b.requests;
        return elRow(when(b.bucket), String(b.requests), meter);
      });
      if (rows.length === 0) rows.push(elRow("no requests in this period", "", null));
      $("usage-rows").replaceChildren(...rows);
      $("usage-total").textContent = `${total} request${total === 1 ? "" : "s"}`;
      $("usage-dialog").showModal();
    } catch (err) {
      showError(err);
    }
  }

  function elRow(hour, count, meter) {
    const tr = el("tr");
    tr.append(el("td", hour), el("td", count), meter ? cell(meter) : el("td"));
    return tr;
  }

  // ---- start ----

  async function start() {
    const res = await fetch("config.json", { cache: "no-store", credentials: "omit" });
    config = await res.json();
    $("sign-in-key").placeholder = `${config.key_prefix}_live_…`;
    $("sign-in-form").addEventListener("submit", signIn);
    $("sign-out").addEventListener("click", () => signOut(false));
    $("error-dismiss").addEventListener("click", clearError);
    $("secret-copy").addEventListener("click", copySecret);
    $("secret-dismiss").addEventListener("click", hideSecret);
    $("create-form").addEventListener("submit", createKey);
    $("filter-form").addEventListener("submit", (event) => {
      event.preventDefault();
      clearError();
      refresh().catch(showError);
    });
    for (const name of ["status", "environment"]) {
      $("filter-form").elements[name].addEventListener("change", () => {
        clearError();
        refresh().catch(showError);
      });
    }
    $("page-next").addEventListener("click", () => turnPage("next"));
    $("page-prev").addEventListener("click", () => turnPage("prev"));
    $("page-first").addEventListener("click", () => turnPage("first"));
    $("revoke-confirm").addEventListener("click", confirmRevoke);
    $("revoke-cancel").addEventListener("click", () => {
      revoking = null;
      $("revoke-dialog").close();
    });
    $("rotate-confirm").addEventListener("click", confirmRotate);
    $("rotate-cancel").addEventListener("click", () => {
      rotating = null;
      $("rotate-dialog").close();
    });
    $("usage-close").addEventListener("click", () => $("usage-dialog").close());
    // Leaving the page (navigation, reload, closing the tab) forgets the
    // key on show and the signed-in key.
    window.addEventListener("pagehide", () => signOut(false));

    if (config.sign_in === "session") {
      try {
        await openApp();
      } catch (err) {
        if (err instanceof ApiError && err.status === 401) signOut(false);
        else showError(err);
      }
    } else {
      show($("sign-in"), true);
      $("sign-in-key").focus();
    }
  }

  start().catch((err) => {
    $("error-text").textContent = "The page could not start: " + err.message;
    show($("error"), true);
  });
})();
