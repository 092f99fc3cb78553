// The live page in Debian's headless Chromium, driven by playwright-core.
//
// Run by tests/integration/page.rs (cargo test), which starts Mosquitto and
// floodguard and answers this script's requests on stdin:
//   stdout "CMD publish"  → the test publishes readings that raise CD-JS-01 to Ⅲ,
//                           answers "OK <epoch ms of the last publish>"
//   stdout "CMD spike"    → the test publishes 5 cm then a 300 cm spike at CD-JS-02,
//                           answers "OK" (quality control holds the spike back)
//   stdout "CMD stop"     → the test stops floodguard (SIGTERM), answers "OK"
//   stdout "CMD start"    → the test starts it again, answers "OK" once connected
//   stdout "RESULT {json}" at the end; exit 0 on success, 1 with "FAIL …".
//
// Environment: FG_URL (http://127.0.0.1:PORT), FG_TOKEN, ARTIFACTS (a
// directory for screenshots), CHROMIUM (default /usr/bin/chromium).
import { chromium } from "playwright-core";
import { createInterface } from "node:readline";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

const URL = process.env.FG_URL;
const TOKEN = process.env.FG_TOKEN;
const ARTIFACTS = process.env.ARTIFACTS || "artifacts";
const SITE = "CD-JS-01";
const STREET = "chengdong";
const YELLOW = "rgb(242, 194, 0)";
const LONG = 20000; // generous: the machine is shared

mkdirSync(ARTIFACTS, { recursive: true });
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
async function command(name) {
  console.log(`CMD ${name}`);
  const { value, done } = await lines.next();
  if (done || !value.startsWith("OK")) throw new Error(`${name}: the test answered ${value}`);
  return value.slice(2).trim();
}
const log = (...a) => console.error("[browser]", ...a);

async function text(page, selector) {
  return (await page.locator(selector).first().textContent()).trim();
}

async function background(page, selector) {
  return page.locator(selector).first().evaluate((e) => getComputedStyle(e).backgroundColor);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: [
    "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
  ],
});
const page = await browser.newPage({ viewport: { width: 1920, height: 1080 }, locale: "zh-CN" });
const shot = (name) => page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });
page.on("console", (m) => log("console:", m.type(), m.text()));
page.on("pageerror", (e) => log("page error:", e.message));
const result = {};

try {
  // 1. The page, connected, every site normal.
  await page.goto(URL + "/", { waitUntil: "domcontentloaded" });
  await page.waitForSelector(`.site[data-site="${SITE}"]`, { timeout: LONG });
  await page.waitForSelector("#banner[hidden]", { state: "attached", timeout: LONG });
  if ((await text(page, "#district .level-text")) !== "正常") throw new Error("district not 正常 at start");
  if ((await page.locator(".site").count()) < 15) throw new Error("fewer than 15 site cards");
  if ((await page.locator("#map .map-site").count()) < 15) throw new Error("map dots missing");
  if ((await page.locator("#map .street-shape").count()) !== 3) throw new Error("three street outlines expected");
  // A single node on SQLite: the page names no node (no cluster to speak of).
  await page.waitForSelector('#node[data-backend="sqlite"]', { state: "attached", timeout: LONG });
  result.node_shown = await page.locator("#node").isVisible();
  if (result.node_shown) throw new Error(`a single node shows a node line: ${await text(page, "#node")}`);
  await shot("01-normal");
  await page.evaluate(() => { window.__noReload = true; });

  // 2. Readings push the site to Ⅲ: site and street turn yellow, with the
  // level written out, and the alert shows, within 2 s, without reload.
  const publishedAt = Number(await command("publish"));
  const siteSel = `.site[data-site="${SITE}"].lvl-III`;
  const streetSel = `#streets .area[data-street="${STREET}"].lvl-III`;
  const alertSel = `.alert[data-site="${SITE}"]`;
  await page.waitForSelector(siteSel, { timeout: LONG });
  const yellowAt = Date.now();
  await page.waitForSelector(streetSel, { timeout: LONG });
  await page.waitForSelector(alertSel, { timeout: LONG });
  const alertAt = Date.now();
  result.publish_to_yellow_ms = yellowAt - publishedAt;
  result.publish_to_alert_ms = alertAt - publishedAt;
  log(`yellow after ${result.publish_to_yellow_ms} ms, alert after ${result.publish_to_alert_ms} ms`);
  if (result.publish_to_yellow_ms > 2000) throw new Error(`site yellow after ${result.publish_to_yellow_ms} ms (> 2 s)`);
  if (result.publish_to_alert_ms > 2000) throw new Error(`alert shown after ${result.publish_to_alert_ms} ms (> 2 s)`);
  if (!(await page.evaluate(() => window.__noReload))) throw new Error("the page reloaded");
  const siteText = await text(page, `${siteSel} .badge`);
  const streetText = await text(page, `${streetSel} .level-text`);
  if (siteText !== "Ⅲ级 黄色") throw new Error(`site level text ${siteText}`);
  if (streetText !== "Ⅲ级 黄色") throw new Error(`street level text ${streetText}`);
  for (const [what, sel] of [["site badge", `${siteSel} .badge`], ["street block", streetSel]]) {
    const bg = await background(page, sel);
    if (bg !== YELLOW) throw new Error(`${what} background ${bg}, not yellow`);
  }
  if ((await text(page, "#district .level-text")) !== "Ⅲ级 黄色") throw new Error("district not Ⅲ");
  // Where the readings came from: protocol and topic, on the card.
  await page.waitForSelector(`${siteSel} .source`, { timeout: LONG });
  const source = await text(page, `${siteSel} .source`);
  if (source !== `来源 MQTT · flood/${SITE}/telemetry`) throw new Error(`site source ${source}`);
  await page.waitForSelector(`#map .map-site.lvl-III[data-site="${SITE}"]`, { timeout: LONG });
  await shot("02-yellow");

  // 2b. A spike quality control holds back is shown as suspect, not as a level.
  await command("spike");
  const spiked = `.site[data-site="CD-JS-02"]`;
  await page.waitForSelector(`${spiked} .value.qc-suspect`, { timeout: LONG });
  const qcLabel = await text(page, `${spiked} .qc-label`);
  if (qcLabel !== "可疑：突变，待下一读数确认") throw new Error(`qc label ${qcLabel}`);
  if ((await text(page, `${spiked} .value`)) !== "300") throw new Error("the suspect value is shown");
  if ((await page.locator(`${spiked}.lvl-none`).count()) !== 1) throw new Error("a spike raised a level");
  await shot("02b-suspect");

  // 3. Ack through the UI: the token and the operator's name are asked for.
  const alertId = Number(await page.locator(alertSel).first().getAttribute("data-alert-id"));
  result.alert_id = alertId;
  await page.click(`${alertSel} button.ack`);
  await page.waitForSelector("#act[open]");
  if (await page.locator("#act-token-row").isHidden()) throw new Error("no token asked the first time");
  await page.fill("#act-by", "王值班");
  await page.fill("#act-token", TOKEN);
  await page.fill("#act-note", "已通知抢险一队");
  await shot("03-ack-dialog");
  await page.click("#act-submit");
  await page.waitForSelector(`.alert[data-alert-id="${alertId}"][data-state="acked"]`, { timeout: LONG });
  if ((await page.evaluate(() => localStorage.getItem("fg.token"))) !== TOKEN) throw new Error("token not remembered");
  const timeline = await text(page, `.alert[data-alert-id="${alertId}"] .timeline`);
  if (!timeline.includes("王值班")) throw new Error(`timeline without the operator: ${timeline}`);
  await page.waitForSelector("#notifications li", { timeout: LONG });
  // Who was told, by what, and whether it reached them (the outbox, now
  // that the page has the token).
  await page.waitForSelector(`.alert[data-alert-id="${alertId}"] .deliveries`, { timeout: LONG });
  const reached = await text(page, `.alert[data-alert-id="${alertId}"] .deliveries`);
  if (!reached.startsWith("送达：") || !reached.includes("·短信")) throw new Error(`deliveries on the alert: ${reached}`);
  result.deliveries = reached;
  await shot("04-acked");

  // 4. The English switch changes the texts, and is remembered.
  await page.click("#lang");
  if ((await text(page, "h1")) !== "Flood Live Monitor") throw new Error("title not in English");
  if ((await text(page, `${siteSel} .badge`)) !== "Level III yellow") throw new Error("level not in English");
  await page.reload({ waitUntil: "domcontentloaded" });
  await page.waitForSelector(`.site[data-site="${SITE}"].lvl-III`, { timeout: LONG });
  if ((await text(page, "h1")) !== "Flood Live Monitor") throw new Error("English not remembered");
  await shot("05-english");
  await page.click("#lang");
  if ((await text(page, "h1")) !== "防汛实时监测") throw new Error("back to Chinese failed");

  // 5. The daemon stops: the banner shows; it is back: the banner goes.
  await page.waitForSelector("#banner[hidden]", { state: "attached", timeout: LONG });
  await command("stop");
  await page.waitForSelector("#banner:not([hidden])", { timeout: LONG });
  if ((await text(page, "#banner")) !== "连接中断，正在重连…") throw new Error("banner text");
  await shot("06-disconnected");
  await command("start");
  await page.waitForSelector("#banner[hidden]", { state: "attached", timeout: 30000 });
  await page.waitForSelector(`.site[data-site="${SITE}"].lvl-III`, { timeout: LONG });
  await shot("07-reconnected");

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
