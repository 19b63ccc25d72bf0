// The key-management page in a real browser (headless chromium, driven by
// playwright-core): sign in with the admin key, create a key and see it
// once, find it listed, rotate it, read usage, revoke it with a
// confirmation, page through the list; and on the way, try to break it:
// a key name that is HTML, CSP violations, requests leaving 127.0.0.1,
// keys left in the DOM or in browser storage.
//
// Run by scripts/ui-test.sh, which starts the quickstart and passes:
//   UI_BASE        http://127.0.0.1:<port>
//   UI_ADMIN_KEY   the admin key the quickstart printed
//   UI_CHROMIUM    the chromium binary
//   UI_SCREENSHOT  where to write the screenshot (optional)
// Exits non-zero on the first failure.
import { strict as assert } from "node:assert";
import { chromium } from "playwright-core";

const base = process.env.UI_BASE;
const adminKey = process.env.UI_ADMIN_KEY;
const screenshot = process.env.UI_SCREENSHOT;
const page_url = `${base}/admin/ui/`;
const KEY_FORMAT = /^demo_live_[A-Za-z0-9]{32,}$/;
const XSS_NAME = "<img src=x onerror=alert(1)>";

/** fetch, waiting out 429s: the quickstart's keys have a quota of 5/s. */
async function call(url, init) {
  for (;;) {
    const res = await fetch(url, init);
    if (res.status !== 429) return res;
    await new Promise((r) => setTimeout(r, 1000 * Number(res.headers.get("retry-after") || 1)));
  }
}

const browser = await chromium.launch({
  executablePath: process.env.UI_CHROMIUM,
  headless: true,
  // Root in a container has no user namespaces for chromium's sandbox.
  args: process.getuid && process.getuid() === 0 ? ["--no-sandbox"] : [],
});

const failures = [];
const offOrigin = [];
const pageErrors = [];
const consoleErrors = [];
const dialogs = [];

let step = "start";
function log(text) {
  step = text;
  console.log(`ui-test: ${text}`);
}

try {
  const context = await browser.newContext({
    viewport: { width: 1360, height: 900 },
    deviceScaleFactor: 1,
    permissions: ["clipboard-read", "clipboard-write"],
  });
  context.on("request", (req) => {
    const url = new URL(req.url());
    if (url.protocol !== "data:" && url.hostname !== "127.0.0.1") offOrigin.push(req.url());
  });
  const page = await context.newPage();
  page.on("pageerror", (err) => pageErrors.push(String(err)));
  page.on("console", (msg) => {
    if (msg.type() === "error") consoleErrors.push(msg.text());
  });
  page.on("dialog", async (d) => {
    dialogs.push(d.message());
    await d.dismiss();
  });
  // Every CSP violation the page meets, on every load, reported to this
  // script by a listener added before the page's own script runs.
  const violations = [];
  await page.exposeFunction("__reportViolation", (v) => violations.push(v));
  await page.addInitScript(() => {
    document.addEventListener("securitypolicyviolation", (e) => {
      window.__reportViolation(`${e.violatedDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber}`);
    });
  });

  // The text of the whole document, markup and form values included.
  const everything = () =>
    page.evaluate(() => {
      const values = [...document.querySelectorAll("input, textarea")].map((i) => i.value);
      return document.documentElement.outerHTML + "\n" + values.join("\n");
    });
  const rowOf = (name) => page.locator("#key-rows tr").filter({ has: page.locator("td.name", { hasText: name }) });
  const statusOf = async (name) => (await rowOf(name).first().locator(".status").textContent()).trim();

  log("open the page");
  const response = await page.goto(page_url);
  assert.equal(response.status(), 200);
  assert.match(response.headers()["content-security-policy"], /default-src 'none'/);
  await page.locator("#sign-in").waitFor();

  log("a wrong key is refused and nothing opens");
  await page.fill("#sign-in-key", "demo_live_not-a-real-key");
  await page.click("#sign-in-form button[type=submit]");
  await page.locator("#error").waitFor();
  assert.equal(await page.locator("#app").isVisible(), false);

  log("sign in with the admin key");
  await page.fill("#sign-in-key", adminKey);
  await page.click("#sign-in-form button[type=submit]");
  await page.locator("#app").waitFor();
  assert.equal(await page.inputValue("#sign-in-key"), "", "the key input is emptied");
  assert.ok(!(await everything()).includes(adminKey), "the admin key is not in the DOM");
  // The two demo keys of the quickstart.
  assert.equal(await statusOf("quickstart admin"), "active");

  log("create a key: its plaintext is shown once");
  await page.fill("#create-form [name=owner]", "user:alice");
  await page.fill("#create-form [name=name]", "CI deploys");
  await page.fill("#create-form [name=scopes]", "read, write");
  await page.fill("#create-form [name=expires_days]", "90");
  await page.fill("#create-form [name=rate_limit]", "10/s");
  await page.click("#create-form button[type=submit]");
  await page.locator("#secret").waitFor();
  const created = (await page.textContent("#secret-value")).trim();
  assert.match(created, KEY_FORMAT);
  const html = await everything();
  assert.equal(html.split(created).length - 1, 1, "the key is in the DOM exactly once");

  log("copy it with the Clipboard API");
  await page.click("#secret-copy");
  await page.locator("#secret-copied", { hasText: "Copied" }).waitFor();
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), created);
  // Clear the clipboard again: the key should not outlive the test there either.
  await page.evaluate(() => navigator.clipboard.writeText(""));

  log("the key shown works");
  const notes = await call(`${base}/notes`, { headers: { "X-API-Key": created } });
  assert.equal(notes.status, 200);

  log("dismiss: the key is gone from the DOM and the page's globals");
  await page.click("#secret-dismiss");
  await page.locator("#secret").waitFor({ state: "hidden" });
  assert.equal(await page.textContent("#secret-value"), "");
  assert.ok(!(await everything()).includes(created), "the created key is not in the DOM");
  const inGlobals = await page.evaluate(
    (key) => Object.keys(window).filter((k) => { try { return String(window[k]).includes(key); } catch { return false; } }),
    created,
  );
  assert.deepEqual(inGlobals, []);

  log("the key is listed as active, with its settings");
  const row = rowOf("CI deploys").first();
  assert.equal(await statusOf("CI deploys"), "active");
  const prefix = (await row.locator("code").textContent()).trim();
  assert.ok(created.startsWith(prefix), `${created} starts with ${prefix}`);
  assert.equal((await row.locator("td").nth(3).textContent()).trim(), "read write");
  assert.equal((await row.locator("td").nth(8).textContent()).trim(), "10/s");

  log("a name that is HTML is shown as text");
  await page.fill("#create-form [name=name]", XSS_NAME);
  await page.fill("#create-form [name=rate_limit]", "");
  await page.click("#create-form button[type=submit]");
  await page.locator("#secret").waitFor();
  assert.equal(await page.textContent("#secret-title"), `Your new key: ${XSS_NAME}`);
  await page.click("#secret-dismiss");
  assert.equal((await rowOf("onerror").first().locator("td.name").textContent()), XSS_NAME);
  assert.equal(await page.locator("main img").count(), 0, "no <img> was made from the name");

  log("usage of the key");
  for (let i = 0; i < 3; i++) await call(`${base}/notes`, { headers: { "X-API-Key": created } });
  await row.getByRole("button", { name: "Usage" }).click();
  await page.locator("#usage-dialog").waitFor();
  assert.equal(await page.textContent("#usage-name"), "CI deploys");
  assert.match(await page.textContent("#usage-total"), /^\d+ requests?$/);
  await page.click("#usage-close");

  log("rotate with a grace period: the new key is shown once");
  await row.getByRole("button", { name: "Rotate" }).click();
  await page.locator("#rotate-dialog").waitFor();
  await page.fill("#rotate-hours", "1");
  await page.click("#rotate-confirm");
  await page.locator("#secret").waitFor();
  const rotated = (await page.textContent("#secret-value")).trim();
  assert.match(rotated, KEY_FORMAT);
  assert.notEqual(rotated, created);
  await page.click("#secret-dismiss");
  assert.ok(!(await everything()).includes(rotated), "the rotated key is not in the DOM");
  const statuses = await rowOf("CI deploys").locator(".status").allTextContents();
  assert.deepEqual(statuses.map((s) => s.trim()).sort(), ["active", "superseded"]);
  // The old key works during the grace period, the new one too.
  for (const key of [created, rotated]) {
    assert.equal((await call(`${base}/notes`, { headers: { "X-API-Key": key } })).status, 200);
  }

  log("revoke asks first: cancel keeps the key");
  const fresh = rowOf("CI deploys").filter({ has: page.locator(".status-active") });
  await fresh.getByRole("button", { name: "Revoke" }).click();
  await page.locator("#revoke-dialog").waitFor();
  assert.equal(await page.textContent("#revoke-name"), "CI deploys");
  await page.click("#revoke-cancel");
  assert.equal((await fresh.locator(".status").textContent()).trim(), "active");
  assert.equal((await call(`${base}/notes`, { headers: { "X-API-Key": rotated } })).status, 200);

  log("revoke, confirmed: listed as revoked, and refused");
  await fresh.getByRole("button", { name: "Revoke" }).click();
  await page.click("#revoke-confirm");
  await page.locator("#key-rows .status-revoked").first().waitFor();
  assert.equal(await rowOf("CI deploys").locator(".status-revoked").count(), 1);
  assert.equal((await call(`${base}/notes`, { headers: { "X-API-Key": rotated } })).status, 401);
  const statusesAre = async (want) => {
    const now = () => page.evaluate(() => [...document.querySelectorAll("#key-rows .status")].map((s) => s.textContent).join(" "));
    await page
      .waitForFunction((want) => [...document.querySelectorAll("#key-rows .status")].map((s) => s.textContent).join(" ") === want, want, { timeout: 10000 })
      .catch(async () => assert.fail(`statuses: ${await now()}, wanted ${want}`));
  };
  await page.selectOption("#filter-form [name=status]", "revoked");
  await statusesAre("revoked");
  await page.selectOption("#filter-form [name=status]", "active");
  // Newest first: the rotated key's successor is revoked, then the
  // rotated key in its grace period, the key made before it, and the
  // quickstart's three (read-only, admin, metered).
  await statusesAre("active superseded active active active");
  await page.selectOption("#filter-form [name=status]", "");
  await statusesAre("revoked active superseded active active active");

  if (screenshot) {
    log(`screenshot ${screenshot}`);
    await page.screenshot({ path: screenshot, fullPage: true });
  }

  log("page through the list with the API's cursor");
  for (let i = 0; i < 21; i++) {
    const res = await call(`${base}/admin/keys`, {
      method: "POST",
      headers: { "X-API-Key": adminKey, "Content-Type": "application/json" },
      body: JSON.stringify({ owner: "user:bulk", name: `bulk ${String(i).padStart(2, "0")}`, scopes: [] }),
    });
    assert.equal(res.status, 201);
  }
  await page.click("#filter-form button[type=submit]");
  await rowOf("bulk 20").waitFor();
  assert.equal(await page.locator("#key-rows tr").count(), 20);
  assert.equal(await page.locator("#page-next").isEnabled(), true);
  await page.click("#page-next");
  await rowOf("CI deploys").first().waitFor();
  assert.equal(await page.textContent("#page-number"), "page 2");
  assert.equal(await rowOf("bulk 20").count(), 0);
  await page.click("#page-prev");
  await rowOf("bulk 20").waitFor();

  log("a key on show is gone after a reload, and so is the sign-in");
  await page.fill("#create-form [name=name]", "left on screen");
  await page.click("#create-form button[type=submit]");
  await page.locator("#secret").waitFor();
  const left = (await page.textContent("#secret-value")).trim();
  await page.reload();
  await page.locator("#sign-in").waitFor();
  assert.equal(await page.locator("#app").isVisible(), false);
  assert.ok(!(await everything()).includes(left));

  log("nothing was kept in browser storage");
  const stored = await page.evaluate(async () => ({
    local: localStorage.length,
    session: sessionStorage.length,
    cookie: document.cookie,
    idb: (await indexedDB.databases()).length,
  }));
  assert.deepEqual(stored, { local: 0, session: 0, cookie: "", idb: 0 });
  const cookies = await context.cookies();
  assert.deepEqual(cookies, []);

  log("no CSP violation, no script error, no alert, nothing off 127.0.0.1");
  assert.deepEqual(violations, []);
  assert.deepEqual(pageErrors, []);
  assert.deepEqual(dialogs, []);
  assert.deepEqual(offOrigin, []);
  // The errors the console may show: the wrong key's 401 at the start,
  // and 429s, which the page waits out (the quickstart's admin key has a
  // quota of 5 per second).
  const unexpected = consoleErrors.filter((t) => !/status of (401|429)/.test(t));
  assert.equal(await page.locator("#error").isVisible(), false);
  assert.deepEqual(unexpected, []);
  assert.ok(consoleErrors.every((t) => !/Content Security Policy|Trusted Type/i.test(t)));

  log("the CSP watch itself works: an inline style and an HTML string are refused and reported");
  await page.evaluate(() => {
    document.body.setAttribute("style", "background: red");
    try {
      document.body.insertAdjacentHTML("beforeend", "<b id=injected>x</b>");
    } catch {
      // Trusted Types: refused, as it should be.
    }
  });
  await page.waitForTimeout(200);
  assert.equal(await page.locator("#injected").count(), 0);
  assert.ok(violations.some((v) => v.startsWith("style-src-attr")), JSON.stringify(violations));
  assert.ok(violations.some((v) => v.startsWith("require-trusted-types-for")), JSON.stringify(violations));
} catch (err) {
  failures.push(`${step}: ${err.stack || err}`);
} finally {
  await browser.close();
}

if (failures.length) {
  for (const f of failures) console.error(`ui-test: FAILED at ${f}`);
  if (pageErrors.length) console.error("page errors:", pageErrors);
  if (consoleErrors.length) console.error("console errors:", consoleErrors);
  if (offOrigin.length) console.error("requests off 127.0.0.1:", offOrigin);
  process.exit(1);
}
console.log("ui-test: all checks passed");
