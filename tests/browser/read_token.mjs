// The live page of a daemon with http.read_token, in headless Chromium:
// the page asks once for the token, then shows the sites and follows the
// event stream; after a reload it does not ask again (the cookie). No
// Content-Security-Policy violation on the way.
//
// Run by tests/integration/page.rs. Environment: FG_URL, FG_READ_TOKEN,
// ARTIFACTS, CHROMIUM. Prints "RESULT {json}" and exits 0, or "FAIL …" and 1.
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

const URL = process.env.FG_URL;
const READ = process.env.FG_READ_TOKEN;
const ARTIFACTS = process.env.ARTIFACTS || "artifacts";
const LONG = 20000;
mkdirSync(ARTIFACTS, { recursive: true });
const log = (...a) => console.error("[browser]", ...a);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"],
});
const page = await browser.newPage({ viewport: { width: 1600, height: 1000 }, locale: "zh-CN" });
const shot = (name) => page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });
const violations = [];
page.on("console", (m) => {
  log("console:", m.type(), m.text());
  if (/Content Security Policy|Refused to/i.test(m.text())) violations.push(m.text());
});
page.on("pageerror", (e) => { log("page error:", e.message); violations.push(e.message); });
const result = {};

try {
  // 1. No token yet: the dialog asks for it, and no site is shown.
  await page.goto(URL + "/", { waitUntil: "domcontentloaded" });
  await page.waitForSelector("#read-dialog[open]", { timeout: LONG });
  if ((await page.locator(".site").count()) !== 0) throw new Error("sites shown without the read token");
  await shot("read-01-asked");
  // 2. A wrong token: asked again, with the reason.
  await page.fill("#read-token", "not-the-token");
  await page.click("#read-submit");
  await page.waitForSelector("#read-dialog[open]", { timeout: LONG });
  await page.waitForFunction(() => document.getElementById("read-error").textContent.length > 0, null, { timeout: LONG });
  result.wrong_token_error = (await page.locator("#read-error").textContent()).trim();
  // 3. The right one: the sites, the live stream (the banner hides).
  await page.fill("#read-token", READ);
  await page.click("#read-submit");
  await page.waitForSelector(".site[data-site=\"CD-JS-01\"]", { timeout: LONG });
  await page.waitForSelector("#banner[hidden]", { state: "attached", timeout: LONG });
  if (await page.locator("#read-dialog[open]").count()) throw new Error("still asking after the right token");
  result.sites = await page.locator(".site").count();
  await shot("read-02-shown");
  // 4. A reload does not ask again.
  await page.reload({ waitUntil: "domcontentloaded" });
  await page.waitForSelector(".site[data-site=\"CD-JS-01\"]", { timeout: LONG });
  await page.waitForSelector("#banner[hidden]", { state: "attached", timeout: LONG });
  result.asked_after_reload = (await page.locator("#read-dialog[open]").count()) > 0;
  if (result.asked_after_reload) throw new Error("asked again after a reload");
  // 5. The answers carry the security headers.
  const resp = await page.goto(URL + "/", { waitUntil: "domcontentloaded" });
  result.csp = resp.headers()["content-security-policy"] || "";
  result.frame = resp.headers()["x-frame-options"] || "";
  await page.waitForSelector(".site[data-site=\"CD-JS-01\"]", { timeout: LONG });
  if (violations.length) throw new Error(`CSP violations or page errors: ${violations.join(" | ")}`);
  console.log(`RESULT ${JSON.stringify(result)}`);
  await browser.close();
  process.exit(0);
} catch (e) {
  console.log(`FAIL ${e.message.split("\n")[0]}`);
  log(e.stack);
  await shot("read-failure").catch(() => {});
  await browser.close();
  process.exit(1);
}
