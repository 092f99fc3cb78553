// The command center's records on the live page: flood materials (depots,
// what they hold now, the latest issues and returns), the drills on record,
// the nearest depots for an alert's plan card, and the demo's storm clock.
// Reads /api/v1/materials, /api/v1/drills and /api/v1/clock.
"use strict";
window.FG = window.FG || {};

(function () {
  const TEXT = {
    zh: {
      materials: "防汛物资", drills: "演练记录", keeper: "保管", value: (w) => `物资总值 ${w} 万元`,
      none_materials: "未配置防汛物资", none_drills: "暂无演练记录",
      kind: { issue: "领用", return: "归还" }, reach: (a, n) => `送达 ${a}/${n}`,
      supply: "物资", storm: (x) => `暴雨时间 ×${x}`,
    },
    en: {
      materials: "Flood materials", drills: "Drills", keeper: "keeper", value: (w) => `Worth ¥${w} × 10k`,
      none_materials: "No materials configured", none_drills: "No drills on record",
      kind: { issue: "issued", return: "returned" }, reach: (a, n) => `${a}/${n} accepted`,
      supply: "Materials", storm: (x) => `storm time ×${x}`,
    },
  };
  const num = (v) => (Math.round(v * 100) / 100).toString();

  // The clock the daemon judges by; in the demo, storm time.
  const clock = { speed: 1, epochMs: 0 };
  async function loadClock() {
    try {
      const r = await fetch("/api/v1/clock");
      if (!r.ok) return;
      const c = await r.json();
      clock.speed = c.speed || 1;
      clock.epochMs = c.epoch_ms || Date.parse(c.epoch) || 0;
    } catch (e) { /* the wall clock, then */ }
  }
  // Milliseconds since the epoch on the daemon's clock.
  function now() {
    const wall = Date.now();
    return clock.speed === 1 ? wall : clock.epochMs + (wall - clock.epochMs) * clock.speed;
  }

  function itemName(data, id, lang) {
    const it = (data.items || []).find((i) => i.id === id);
    if (!it) return { name: id, unit: "" };
    return { name: lang === "en" && it.name_en ? it.name_en : it.name, unit: it.unit };
  }

  // The materials panel: each depot, its keeper, what it holds; the latest moves.
  function renderMaterials(box, data, lang, h, time) {
    const t = TEXT[lang] || TEXT.zh;
    box.textContent = "";
    if (!data || !(data.depots || []).length) {
      box.append(h("div", { class: "empty" }, t.none_materials));
      return;
    }
    box.append(h("div", { class: "materials-value" }, t.value(num(data.value / 10000))));
    for (const d of data.depots) {
      const name = lang === "en" && d.name_en ? d.name_en : d.name;
      box.append(h("div", { class: "depot", "data-depot": d.id },
        h("div", { class: "depot-head" }, h("b", {}, name), h("span", { class: "keeper" }, `${t.keeper} ${d.keeper} ${d.phone}`)),
        h("div", { class: "stock" }, d.stock.map((s) => {
          const it = itemName(data, s.item, lang);
          return h("span", { class: "stock-item", "data-item": s.item, "data-quantity": s.quantity }, `${it.name} ${num(s.quantity)}${it.unit}`);
        }))));
    }
    const moves = (data.movements || []).slice(0, 5);
    if (moves.length) {
      box.append(h("ul", { class: "moves" }, moves.map((m) => {
        const it = itemName(data, m.item, lang);
        const depot = data.depots.find((d) => d.id === m.depot);
        return h("li", { "data-movement": m.id },
          h("span", { class: "when" }, time(m.ts)),
          `${t.kind[m.kind] || m.kind} ${it.name} ${num(m.quantity)}${it.unit} · ${depot ? depot.name : m.depot} · ${m.by}${m.alert_id ? ` · #${m.alert_id}` : ""}`);
      })));
    }
  }

  function renderDrills(box, data, lang, h, time) {
    const t = TEXT[lang] || TEXT.zh;
    box.textContent = "";
    const list = (data && data.drills) || [];
    if (!list.length) {
      box.append(h("div", { class: "empty" }, t.none_drills));
      return;
    }
    box.append(h("ul", { class: "drills" }, list.slice(0, 8).map((d) =>
      h("li", { "data-drill": d.id, class: d.accepted === d.sent ? "drill-ok" : "drill-partial" },
        h("span", { class: "when" }, time(d.ts)), h("b", {}, d.team_name), ` ${t.reach(d.accepted, d.sent)}`))));
  }

  // An alert's nearest depots: "物资：城东防汛物资仓库（王保管 138…）编织袋 200条…".
  function supplyLine(a, lang, h) {
    if (!a.supply || !a.supply.length) return null;
    const t = TEXT[lang] || TEXT.zh;
    return h("div", { class: "supply" }, `${t.supply}：`, a.supply.map((s, i) =>
      h("span", { class: "supply-depot", "data-depot": s.depot },
        `${i ? "；" : ""}${s.name}（${s.keeper} ${s.phone}，${num(s.distance_km)} km）`,
        s.items.map((x) => `${x.name} ${num(x.quantity)}${x.unit}`).join("、"))));
  }

  function clockLabel(lang) {
    const t = TEXT[lang] || TEXT.zh;
    return clock.speed === 1 ? "" : t.storm(num(clock.speed));
  }

  window.FG.records = { loadClock, now, clock, renderMaterials, renderDrills, supplyLine, clockLabel };
})();
