// The live pages of two nodes on one PostgreSQL state, in headless
// Chromium: each names its node, its role and the leader with its epoch,
// in Chinese and, switched, in English; when the leader stops, the
// standby's page shows it leads, without a reload.
//
// Run by tests/integration/page.rs. Environment: FG_URL_A (the leader),
// FG_URL_B (the standby), ARTIFACTS, CHROMIUM. Asks the test "CMD
// stop-leader" on stdout and waits for "OK" on stdin. Prints
// "RESULT {json}" and exits 0, or "FAIL …" and 1.
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";

const A = process.env.FG_URL_A;
const B = process.env.FG_URL_B;
const ARTIFACTS = process.env.ARTIFACTS || "artifacts";
const LONG = 20000;
mkdirSync(ARTIFACTS, { recursive: true });
const log = (...a) => console.error("[browser]", ...a);
const replies = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
async function command(name) {
  console.log(`CMD ${name}`);
  const { value } = await replies.next();
  if (!value || !value.startsWith("OK")) throw new Error(`${name}: ${value}`);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"],
});
const context = await browser.newContext({ viewport: { width: 1600, height: 1000 }, locale: "zh-CN" });
const errors = [];
const open = async (url, name) => {
  const page = await context.newPage();
  page.on("pageerror", (e) => { log(name, "page error:", e.message); errors.push(e.message); });
  await page.goto(url + "/", { waitUntil: "domcontentloaded" });
  await page.waitForSelector("#banner[hidden]", { state: "attached", timeout: LONG });
  return page;
};
const nodeText = async (page, role) => {
  await page.waitForSelector(`#node[data-role="${role}"]`, { timeout: LONG });
  return (await page.locator("#node").textContent()).trim();
};
const result = {};
let a, b;

try {
  a = await open(A, "a");
  b = await open(B, "b");
  result.a_zh = await nodeText(a, "leader");
  result.b_zh = await nodeText(b, "standby");
  await b.screenshot({ path: join(ARTIFACTS, "cluster-01-standby.png") });
  // The English switch (remembered in the browser, so both pages follow on reload).
  await b.click("#lang");
  result.b_en = await nodeText(b, "standby");
  await b.click("#lang");
  // The leader stops (its lease given up): the standby's page, left open, shows it leads.
  await command("stop-leader");
  result.b_after_zh = await nodeText(b, "leader");
  await b.screenshot({ path: join(ARTIFACTS, "cluster-02-leader.png") });
  if (errors.length) throw new Error(`page errors: ${errors.join(" | ")}`);
  console.log(`RESULT ${JSON.stringify(result)}`);
  await browser.close();
  process.exit(0);
} catch (e) {
  console.log(`FAIL ${e.message.split("\n")[0]}`);
  log(e.stack);
  if (b) await b.screenshot({ path: join(ARTIFACTS, "cluster-failure.png") }).catch(() => {});
  await browser.close();
  process.exit(1);
}
