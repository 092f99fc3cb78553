// `floodguard demo` in storm time, watched in Debian's headless Chromium
// through playwright-core.
//
// Run by tests/integration/demo.rs (cargo test), which starts the demo and
// reads this script's stdout: "RESULT {json}" at the end (exit 0), or
// "FAIL …" (exit 1). The script watches the live page as the storm runs and
// records, in the page's own storm clock (#clock's data-now, ms) and in
// wall time, when
//   - RAIN_SITE's card first shows level Ⅰ (3 h ≥ 100 mm),
//   - SILENT_SITE's card goes offline,
// and that the materials panel lists the depots and an alert names its
// nearest depot.
//
// Environment: FG_URL, ARTIFACTS (screenshots), CHROMIUM, RAIN_SITE,
// SILENT_SITE, WATCH_MS (how long at most).
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

const URL = process.env.FG_URL;
const ARTIFACTS = process.env.ARTIFACTS || "artifacts";
const RAIN_SITE = process.env.RAIN_SITE || "CD-YL-01";
const SILENT_SITE = process.env.SILENT_SITE || "BH-YL-01";
const WATCH_MS = Number(process.env.WATCH_MS || 330000);
mkdirSync(ARTIFACTS, { recursive: true });
const log = (...a) => console.error("[browser]", ...a);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: [
    "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
  ],
});
const page = await browser.newPage({ viewport: { width: 1920, height: 1400 }, locale: "zh-CN" });
const shot = (name) => page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });
page.on("pageerror", (e) => log("page error:", e.message));
const result = { levels: [] };

try {
  await page.goto(URL + "/", { waitUntil: "domcontentloaded" });
  await page.waitForSelector(`.site[data-site="${RAIN_SITE}"]`, { timeout: 20000 });
  await page.waitForSelector("#clock[data-now]", { timeout: 20000 });
  // The storm clock is shown as such.
  await page.waitForFunction(() => document.getElementById("clock-mode").textContent.includes("暴雨时间"), null, { timeout: 20000 });
  result.clock_mode = (await page.locator("#clock-mode").textContent()).trim();
  // The materials panel: the sample district's three depots.
  await page.waitForSelector("#materials .depot", { timeout: 20000 });
  result.depots = await page.locator("#materials .depot").count();
  await shot("01-start");

  const started = Date.now();
  let last = "";
  while (Date.now() - started < WATCH_MS) {
    const s = await page.evaluate(([rain, silent]) => {
      const card = (id) => document.querySelector(`.site[data-site="${id}"]`);
      const r = card(rain), q = card(silent);
      return {
        storm: Number(document.getElementById("clock").dataset.now),
        level: r ? r.dataset.level : "",
        offline: q ? q.classList.contains("offline") : false,
        supply: document.querySelectorAll(".alert .supply").length,
      };
    }, [RAIN_SITE, SILENT_SITE]);
    const wall = Date.now();
    if (s.level !== last) {
      result.levels.push({ level: s.level, storm: s.storm, wall });
      log(`${RAIN_SITE} → ${s.level || "normal"} at storm ${new Date(s.storm).toISOString()}`);
      last = s.level;
    }
    if (s.level === "I" && !result.rain_i) {
      result.rain_i = { storm: s.storm, wall };
      await shot("02-rain-red");
    }
    if (s.offline && !result.offline) {
      result.offline = { storm: s.storm, wall };
      log(`${SILENT_SITE} offline at storm ${new Date(s.storm).toISOString()}`);
      await shot("03-gauge-offline");
    }
    if (s.supply > 0 && !result.supply) {
      result.supply = (await page.locator(".alert .supply").first().textContent()).trim();
      await shot("04-alert-supply");
    }
    if (result.rain_i && result.offline && result.supply) break;
    await page.waitForTimeout(200);
  }
  if (!result.rain_i) throw new Error(`${RAIN_SITE} never reached Ⅰ`);
  if (!result.offline) throw new Error(`${SILENT_SITE} never went offline`);
  if (!result.supply) throw new Error("no alert named its nearest depot");
  console.log(`RESULT ${JSON.stringify(result)}`);
  await browser.close();
  process.exit(0);
} catch (e) {
  console.log(`FAIL ${e.message.split("\n")[0]}`);
  log(e.stack);
  await shot("failure").catch(() => {});
  await browser.close();
  process.exit(1);
}
