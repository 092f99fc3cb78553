// The live page: /api/v1/sites, /alerts, /notifications and the SSE stream
// /api/v1/events. Chinese by default; the English switch is remembered.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const store = {
    get: (k) => { try { return localStorage.getItem(k) || ""; } catch (e) { return ""; } },
    set: (k, v) => { try { v ? localStorage.setItem(k, v) : localStorage.removeItem(k); } catch (e) { /* private mode */ } },
  };
  const ORDER = { I: 4, II: 3, III: 2, IV: 1 };
  const SYMBOL = { IV: "Ⅳ", III: "Ⅲ", II: "Ⅱ", I: "Ⅰ" };

  const TEXT = {
    zh: {
      title: "防汛实时监测", hq: "防汛指挥部", district: "全区", sites: "监测点", alerts: "当前告警",
      map: "区域示意图", notifications: "通知记录", disconnected: "连接中断，正在重连…", materials: "防汛物资", drills: "演练记录",
      operator_name: "值班员姓名", token: "操作令牌（API token）", note: "备注", cancel: "取消", submit: "提交",
      lang: "English", normal: "正常", offline: "离线",
      level: (l) => `${SYMBOL[l]}级 ${{ IV: "蓝色", III: "黄色", II: "橙色", I: "红色" }[l]}`,
      eta: (min, l) => (min < 1 ? `预计 1 分钟内达到${SYMBOL[l]}级` : `预计 ${min} 分钟后达到${SYMBOL[l]}级`),
      kind: { waterlogging: "积水点", rain_gauge: "雨量站", river: "河道水位", pump_station: "泵站", manhole: "检查井" },
      state: { pending: "新告警", firing: "告警中", acked: "已确认", disposed: "已处置", resolved: "已解除" },
      event: {
        firing: "触发", escalated: "升级", deescalated: "降级", acked: "确认", disposed: "处置完成",
        resolved: "解除", notified: "已通知", repeated: "重复提醒", escalation: "逐级上报", offline: "离线", held: "不另行通知", silenced: "静默", inhibited: "抑制",
        call: "电话通知",
        material_issued: "物资领用", material_returned: "物资归还",
      },
      intent: { firing: "告警", escalated: "升级", deescalated: "降级", resolved: "解除", repeat: "重复提醒", escalation: "逐级上报", call: "电话通知" },
      result: {
        delivered: "已送达", answered: "已接听", sent: "已发出", waiting: "待回执", queued: "待发送", sending: "发送中",
        held: "限额等待", unknown: "未知", failed: "失败", busy: "占线", no_answer: "未接听", unreachable: "无法接通",
        merged: "并入汇总", rerouted: "转其他渠道",
      },
      delivery: "送达",
      ack: "确认", dispose: "处置完成", ack_title: "确认告警", dispose_title: "处置完成",
      dispose_note: "处置情况（必填）", need_note: "请填写处置情况", need_name: "请填写值班员姓名",
      need_token: "请输入操作令牌", bad_token: "令牌无效，请重新输入", failed: "操作失败：",
      no_alerts: "暂无告警", no_notes: "暂无通知", operator: (n) => (n ? `值班员：${n}` : "设置值班员"),
      threshold: "阈值", seen: "更新于", by: "", value_at: "当前值", to: "→", channel: { sms: "短信", email: "邮件", webhook: "机器人", wecom: "企业微信", dingtalk: "钉钉", voice: "电话" },
      points: (n) => `${n} 个点`,
      protocol: { mqtt: "MQTT", sl651: "SL 651 遥测", http: "HTTP 推送", modbus: "Modbus" }, source: "来源",
      qc: { suspect: "可疑", bad: "异常" },
      qc_test: { range: "超出量程", spike: "突变，待下一读数确认", rate: "变化过快，待确认", flatline: "数值长时间不变" },
      fault: "疑似传感器故障",
      read_title: "查看令牌", read_hint: "本页数据需要查看令牌（向系统管理员索取），输入一次即可。",
      read_token: "查看令牌（read token）", bad_read_token: "令牌无效，请重新输入",
      node: (c) => (c.role === "leader"
        ? `本节点 ${c.node}（主用，任期 ${c.epoch}）`
        : `本节点 ${c.node}（备用）· ${c.leader ? `主用 ${c.leader}，任期 ${c.epoch}` : "暂无主用节点"}`)
        + (c.problem ? " · 状态库不可达" : ""),
    },
    en: {
      title: "Flood Live Monitor", hq: "Flood Control HQ", district: "District", sites: "Sites", alerts: "Active alerts",
      map: "Schematic map", notifications: "Notifications", disconnected: "Connection lost — reconnecting…", materials: "Flood materials", drills: "Drills",
      operator_name: "Operator name", token: "API token", note: "Note", cancel: "Cancel", submit: "Submit",
      lang: "中文", normal: "Normal", offline: "Offline",
      level: (l) => `Level ${l} ${{ IV: "blue", III: "yellow", II: "orange", I: "red" }[l]}`,
      eta: (min, l) => (min < 1 ? `Level ${l} within a minute` : `Level ${l} in ~${min} min`),
      kind: { waterlogging: "Waterlogging", rain_gauge: "Rain gauge", river: "River level", pump_station: "Pump station", manhole: "Manhole" },
      state: { pending: "New", firing: "Firing", acked: "Acked", disposed: "Disposed", resolved: "Resolved" },
      event: {
        firing: "fired", escalated: "escalated", deescalated: "de-escalated", acked: "acked", disposed: "disposed",
        resolved: "resolved", notified: "notified", repeated: "repeated", escalation: "escalated to next tier", offline: "offline", held: "held", silenced: "silenced", inhibited: "inhibited",
        call: "phone call",
        material_issued: "materials issued", material_returned: "materials returned",
      },
      intent: { firing: "alert", escalated: "escalated", deescalated: "de-escalated", resolved: "resolved", repeat: "repeat", escalation: "escalation", call: "call" },
      result: {
        delivered: "delivered", answered: "answered", sent: "sent", waiting: "awaiting receipt", queued: "queued", sending: "sending",
        held: "held by budget", unknown: "unknown", failed: "failed", busy: "busy", no_answer: "not answered", unreachable: "unreachable",
        merged: "in a digest", rerouted: "rerouted",
      },
      delivery: "Reached",
      ack: "Ack", dispose: "Disposed", ack_title: "Acknowledge alert", dispose_title: "Disposal done",
      dispose_note: "What was done (required)", need_note: "Say what was done", need_name: "Enter the operator's name",
      need_token: "Enter the API token", bad_token: "Wrong token, enter it again", failed: "Failed: ",
      no_alerts: "No active alerts", no_notes: "No notifications yet", operator: (n) => (n ? `Operator: ${n}` : "Set operator"),
      threshold: "threshold", seen: "seen", by: "", value_at: "value", to: "→", channel: { sms: "SMS", email: "e-mail", webhook: "robot", wecom: "WeCom", dingtalk: "DingTalk", voice: "call" },
      points: (n) => `${n} points`,
      protocol: { mqtt: "MQTT", sl651: "SL 651 RTU", http: "HTTP push", modbus: "Modbus" }, source: "via",
      qc: { suspect: "suspect", bad: "bad" },
      qc_test: { range: "out of range", spike: "spike, awaiting the next reading", rate: "too fast, awaiting confirmation", flatline: "stuck value" },
      fault: "suspected sensor fault",
      read_title: "Read token", read_hint: "This page's data needs the read token (ask the administrator); enter it once.",
      read_token: "Read token", bad_read_token: "Wrong token, enter it again",
      node: (c) => (c.role === "leader"
        ? `Node ${c.node} (leader, epoch ${c.epoch})`
        : `Node ${c.node} (standby) · ${c.leader ? `leader ${c.leader}, epoch ${c.epoch}` : "no leader"}`)
        + (c.problem ? " · state database unreachable" : ""),
    },
  };

  const params = new URLSearchParams(location.search);
  let lang = params.get("lang") || store.get("fg.lang") || "zh";
  if (!TEXT[lang]) lang = "zh";
  const T = () => TEXT[lang];

  const state = { cluster: null, view: null, alerts: [], notes: [], outbox: [], seen: {}, charts: {}, connected: false, materials: null, drills: null };
  const records = window.FG.records;

  // ── texts ────────────────────────────────────────────────────────────
  const levelText = (l) => (l ? T().level(l) : T().normal);
  const areaName = (a) => (lang === "en" && a.name_en ? a.name_en : a.name);
  const siteName = (s) => (lang === "en" && s.name_en ? s.name_en : s.name);
  const symbol = (l, short) => (l ? (short ? SYMBOL[l] : `${SYMBOL[l]}`) : short ? "" : "");
  const mapText = { levelText, areaName, siteName, symbol };
  const time = (rfc) => {
    if (!rfc) return "";
    const today = state.view && state.view.now ? state.view.now.slice(0, 10) : "";
    return rfc.slice(0, 10) === today ? rfc.slice(11, 19) : `${rfc.slice(5, 10)} ${rfc.slice(11, 16)}`;
  };
  const fmt = (v) => (typeof v === "number" ? (Math.abs(v) >= 100 ? v.toFixed(0) : +v.toFixed(2)) + "" : v === true ? "1" : v === false ? "0" : "–");
  const h = (tag, attrs, ...kids) => {
    const e = document.createElement(tag);
    for (const k in attrs || {}) {
      if (k === "class") e.className = attrs[k];
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), attrs[k]);
      else if (attrs[k] !== undefined && attrs[k] !== null) e.setAttribute(k, attrs[k]);
    }
    for (const c of kids.flat()) if (c !== null && c !== undefined) e.append(c.nodeType ? c : String(c));
    return e;
  };
  const lvlClass = (l) => `lvl-${l || "none"}`;
  const badge = (l) => h("span", { class: `badge level-text ${lvlClass(l)}` }, levelText(l));

  function applyTexts() {
    document.documentElement.lang = lang === "en" ? "en" : "zh-CN";
    document.title = T().title;
    document.querySelectorAll("[data-i18n]").forEach((e) => { e.textContent = T()[e.dataset.i18n]; });
    $("lang").textContent = T().lang;
    $("operator").textContent = T().operator(store.get("fg.operator"));
    renderAll();
  }

  // ── rendering ────────────────────────────────────────────────────────
  function setArea(e, area, level) {
    e.className = e.className.replace(/\blvl-\S+/g, "").trim() + " " + lvlClass(level);
    e.dataset.level = level || "";
    e.querySelector(".level-text").textContent = levelText(level);
  }

  function renderAreas() {
    const v = state.view;
    if (!v) return;
    $("district-name").textContent = areaName(v.district);
    setArea($("district"), v.district, v.district.level);
    const box = $("streets");
    box.textContent = "";
    for (const st of v.streets) {
      const n = v.sites.filter((s) => s.street === st.id && s.level).length;
      box.append(h("div", { class: `area street ${lvlClass(st.level)}`, "data-street": st.id, "data-level": st.level || "" },
        h("span", { class: "area-name" }, areaName(st)),
        h("span", { class: "level-text" }, levelText(st.level)),
        h("span", { class: "area-count" }, n ? `${n} / ${v.sites.filter((s) => s.street === st.id).length}` : "")));
    }
  }

  function siteCard(s) {
    const primary = s.primary && s.values[s.primary];
    const dir = s.trend ? s.trend.direction : "";
    const arrow = { rising: "↑", falling: "↓", steady: "→" }[dir] || "";
    let eta = "";
    if (s.eta && !s.offline) eta = T().eta(Math.round(s.eta.seconds / 60), s.eta.level);
    const card = h("div", { class: `site ${s.offline ? "offline" : lvlClass(s.level)}`, "data-site": s.id, "data-level": s.level || "" },
      h("div", { class: "row" }, h("span", { class: "name", title: s.id }, siteName(s)), h("span", { class: "kind" }, T().kind[s.kind] || s.kind)),
      h("div", { class: "row" },
        h("span", {}, h("span", { class: `value${primary && primary.qc ? ` qc-${primary.qc.flag}` : ""}`, "data-qc": primary && primary.qc ? primary.qc.flag : "" }, primary ? fmt(primary.value) : "–"), h("span", { class: "unit" }, primary ? primary.unit || "" : ""),
          h("span", { class: `trend ${dir}`, title: s.trend ? `${s.trend.per_hour.toFixed(2)}/h` : "" }, arrow ? ` ${arrow}` : "")),
        s.offline ? h("span", { class: "offline-label" }, T().offline) : badge(s.level)),
      // Quality control held the value back (suspect) or refused it (bad).
      primary && primary.qc ? h("div", { class: `qc-label qc-${primary.qc.flag}` },
        `${T().qc[primary.qc.flag] || primary.qc.flag}：${T().qc_test[primary.qc.test] || primary.qc.test}`) : null,
      (s.faults || []).length ? h("div", { class: "fault-label" },
        `${T().fault}：${s.faults.map((f) => `${f.metric} ${T().qc_test[f.test] || f.test}`).join("、")}`) : null,
      h("div", { class: "eta" }, eta),
      h("div", { class: "seen" }, s.last_seen ? `${T().seen} ${time(s.last_seen)}` : ""),
      s.source ? h("div", { class: "source", title: `${s.source.from} · ${time(s.source.at)}` },
        `${T().source} ${T().protocol[s.source.protocol] || s.source.protocol} · ${s.source.from}`) : null);
    const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    svg.setAttribute("class", "chart");
    card.append(svg);
    const c = state.charts[s.id];
    if (c && c.series) drawChart(svg, c.series);
    return card;
  }

  function renderSites() {
    const v = state.view;
    if (!v) return;
    const box = $("sites");
    box.textContent = "";
    for (const st of v.streets) {
      const list = h("div", { class: "site-list" }, v.sites.filter((s) => s.street === st.id).map(siteCard));
      box.append(h("div", { class: "street-group", "data-street": st.id },
        h("h3", {}, areaName(st), badge(st.level)), list));
    }
  }

  function renderMap() {
    if (state.view) window.FG.map.draw($("map"), state.view, mapText);
  }

  function alertTitle(a) {
    const name = a.site_name || a.site;
    const site = state.view && state.view.sites.find((s) => s.id === a.site);
    const shown = lang === "en" && site && site.name_en ? site.name_en : name;
    return a.kind === "offline" ? `${shown} · ${T().offline}` : `${shown} · ${a.rule_name || a.rule}`;
  }

  function renderAlerts() {
    const box = $("alerts");
    box.textContent = "";
    const list = state.alerts.slice().sort((a, b) =>
      (ORDER[b.level || b.peak_level] || 0) - (ORDER[a.level || a.peak_level] || 0) || b.started_at.localeCompare(a.started_at));
    $("alert-count").textContent = list.length;
    if (!list.length) box.append(h("div", { class: "empty" }, T().no_alerts));
    for (const a of list) {
      const value = a.value !== null && a.value !== undefined
        ? `${T().value_at} ${fmt(a.value)} ${a.unit || ""}${a.threshold !== null && a.threshold !== undefined ? ` (${T().threshold} ${fmt(a.threshold)})` : ""}` : "";
      const canAck = a.state === "pending" || a.state === "firing";
      const canDispose = !a.disposed_at;
      box.append(h("div", { class: `alert ${lvlClass(a.level || a.peak_level)}`, "data-alert-id": a.id, "data-state": a.state, "data-site": a.site },
        h("div", { class: "head" }, badge(a.level || a.peak_level), h("span", { class: "what" }, alertTitle(a)),
          h("span", { class: "state" }, T().state[a.state] || a.state)),
        h("div", { class: "detail" }, value),
        records.supplyLine(a, lang, h),
        h("ol", { class: "timeline" }, (a.timeline || []).slice(-6).map((e) => h("li", {},
          `${time(e.ts)} ${T().event[e.event] || e.event}${e.level ? " " + SYMBOL[e.level] : ""}${e.by ? " · " + e.by : ""}${e.note ? " · " + e.note : ""}`))),
        deliveries(a),
        h("div", { class: "actions" },
          canAck ? h("button", { type: "button", class: "ack primary", onclick: () => openAct(a, "ack") }, T().ack) : null,
          canDispose ? h("button", { type: "button", class: "dispose", onclick: () => openAct(a, "dispose") }, T().dispose) : null)));
    }
  }

  // What became of an alert's messages (from the outbox, with the token):
  // who, by what, and whether it reached them.
  function result(m) {
    if (m.state === "merged" || m.state === "rerouted") return m.state;
    if (m.receipt && m.receipt !== "waiting") return m.receipt;
    if (m.receipt === "waiting") return "waiting";
    if (m.state === "queued" && m.held) return "held";
    return m.state;
  }

  function deliveries(a) {
    const ms = state.outbox.filter((m) => (m.alert_ids || []).includes(a.id)).slice(0, 8);
    if (!ms.length) return null;
    return h("div", { class: "deliveries", "data-deliveries": a.id }, `${T().delivery}：`,
      ms.map((m) => {
        const r = result(m);
        return h("span", { class: `result-${r}` }, `${m.to}·${T().channel[m.channel] || m.channel} ${T().result[r] || r}  `);
      }));
  }

  function renderNotes() {
    const box = $("notifications");
    box.textContent = "";
    if (!state.notes.length && !state.outbox.length) {
      box.append(h("div", { class: "empty" }, T().no_notes));
      return;
    }
    const ul = h("ul", { class: "notes" });
    for (const n of state.notes.slice(0, 12)) {
      const what = (n.intents || []).map((i) => `${T().intent[i.kind] || i.kind} ${i.site}${i.level ? " " + SYMBOL[i.level] : ""}`).join("，");
      const who = [...new Set((n.intents || []).flatMap((i) => i.recipients || []))].join("、");
      const sends = state.outbox.filter((m) => m.notification === n.id);
      ul.append(h("li", { "data-notification": n.id },
        h("span", { class: "when" }, time(n.created_at)), h("b", {}, n.team), ` ${what} ${T().to} ${who}`,
        sends.length ? h("div", {}, sends.slice(0, 6).map((m) => h("span", { class: `state-${m.state}` },
          `${T().channel[m.channel] || m.channel}·${m.to}: ${m.state}  `))) : null));
    }
    box.append(ul);
  }

  function renderRecords() {
    records.renderMaterials($("materials"), state.materials, lang, h, time);
    records.renderDrills($("drills"), state.drills, lang, h, time);
  }

  // Which node of a cluster this page talks to; nothing on a single node.
  function renderNode() {
    const e = $("node");
    const c = state.cluster;
    e.dataset.backend = c ? c.backend : "";
    if (!c || c.backend !== "postgres") {
      e.hidden = true;
      e.textContent = "";
      return;
    }
    e.hidden = false;
    e.dataset.role = c.role;
    e.textContent = T().node(c);
  }

  function renderAll() {
    renderNode();
    renderAreas();
    renderSites();
    renderMap();
    renderAlerts();
    renderNotes();
    renderRecords();
  }

  // ── charts ───────────────────────────────────────────────────────────
  const CHART_SPAN_MS = 3 * 3600 * 1000;
  function drawChart(svg, series) {
    const now = records.now();
    window.FG.chart.draw(svg, series, now - CHART_SPAN_MS, now);
  }

  async function loadChart(id) {
    const c = (state.charts[id] = state.charts[id] || {});
    if (c.loading) return;
    c.loading = true;
    try {
      const r = await fetch(`/api/v1/sites/${encodeURIComponent(id)}/series?since=3h`);
      if (r.status === 401) needReadToken();
      if (r.ok) {
        c.series = await r.json();
        c.at = Date.now();
        const svg = document.querySelector(`.site[data-site="${CSS.escape(id)}"] svg.chart`);
        if (svg) drawChart(svg, c.series);
      }
    } catch (e) { /* offline: next round */ } finally { c.loading = false; }
  }

  // A site's chart is reloaded when its value changed, at most every 10 s,
  // and every minute anyway.
  function refreshCharts(force) {
    if (!state.view) return;
    for (const s of state.view.sites) {
      const c = state.charts[s.id];
      const changed = state.seen[s.id] !== s.last_seen;
      if (force || !c || (changed && Date.now() - (c.at || 0) > 10000) || Date.now() - (c.at || 0) > 60000) {
        state.seen[s.id] = s.last_seen;
        loadChart(s.id);
      }
    }
  }

  // ── the read token ───────────────────────────────────────────────────
  // When the server has http.read_token, every read answers 401 without it:
  // the page asks once and keeps it in a cookie (sent with every request of
  // this origin, the event stream too, which cannot send a header).
  const READ_COOKIE = "fg_read";
  const hasReadCookie = () => document.cookie.split(";").some((c) => c.trim().startsWith(READ_COOKIE + "="));
  function setReadCookie(token) {
    const secure = location.protocol === "https:" ? "; Secure" : "";
    document.cookie = `${READ_COOKIE}=${encodeURIComponent(token)}; path=/; max-age=31536000; SameSite=Strict${secure}`;
  }
  let askingRead = false;
  function needReadToken() {
    if (askingRead) return;
    askingRead = true;
    $("read-token").value = "";
    $("read-error").textContent = hasReadCookie() ? T().bad_read_token : "";
    $("read-dialog").showModal();
    $("read-token").focus();
  }
  function submitRead(ev) {
    ev.preventDefault();
    const t = $("read-token").value.trim();
    if (!t) return;
    setReadCookie(t);
    $("read-dialog").close();
    askingRead = false;
    refreshAll();
    connect();
  }

  // ── data ─────────────────────────────────────────────────────────────
  async function getJSON(path, headers) {
    const r = await fetch(path, { headers: headers || {} });
    if (r.status === 401 && !(headers && headers.Authorization)) needReadToken();
    if (!r.ok) throw new Error(`${path}: ${r.status}`);
    return r.json();
  }

  function applySites(view) {
    state.view = view;
    renderAreas();
    renderSites();
    renderMap();
    refreshCharts(false);
  }

  async function loadAlerts() {
    try {
      state.alerts = (await getJSON("/api/v1/alerts?state=active")).alerts || [];
      renderAlerts();
    } catch (e) { /* shown by the banner */ }
  }

  async function loadNotes() {
    try {
      state.notes = (await getJSON("/api/v1/notifications?limit=30")).notifications || [];
    } catch (e) { /* alerting may be off */ }
    const token = store.get("fg.token");
    if (token) {
      try {
        state.outbox = (await getJSON("/api/v1/outbox?limit=60", { Authorization: `Bearer ${token}` })).messages || [];
      } catch (e) { state.outbox = []; }
    }
    renderNotes();
    renderAlerts();
  }

  async function loadRecords() {
    records.loadClock();
    try { state.materials = await getJSON("/api/v1/materials"); } catch (e) { /* alerting may be off */ }
    try { state.drills = await getJSON("/api/v1/drills"); } catch (e) { /* alerting may be off */ }
    renderRecords();
  }

  async function loadCluster() {
    try { state.cluster = await getJSON("/api/v1/cluster"); } catch (e) { /* shown by the banner */ }
    renderNode();
  }

  let alertTimer = null;
  function alertsChanged() {
    clearTimeout(alertTimer);
    alertTimer = setTimeout(() => { loadAlerts(); loadNotes(); loadRecords(); }, 100);
  }

  async function refreshAll() {
    try { applySites(await getJSON("/api/v1/sites")); } catch (e) { /* retried on reconnect */ }
    loadAlerts();
    loadNotes();
    loadRecords();
    loadCluster();
  }

  // ── live updates ─────────────────────────────────────────────────────
  let source = null;
  let lastEvent = Date.now();
  function setConnected(ok) {
    state.connected = ok;
    $("banner").hidden = ok;
    document.body.classList.toggle("disconnected", !ok);
  }

  function connect() {
    if (source) source.close();
    source = new EventSource("/api/v1/events");
    lastEvent = Date.now();
    source.onopen = () => { lastEvent = Date.now(); setConnected(true); refreshAll(); };
    source.onerror = () => {
      setConnected(false);
      // The browser retries by itself unless the stream was refused (a
      // missing read token among the reasons: a read tells).
      if (source.readyState === EventSource.CLOSED) {
        if (!askingRead) getJSON("/api/v1/sites").catch(() => {});
        setTimeout(() => { if (!askingRead) connect(); }, 2000);
      }
    };
    const on = (name, f) => source.addEventListener(name, (e) => {
      lastEvent = Date.now();
      if (!state.connected) setConnected(true);
      f(e.data ? JSON.parse(e.data) : {});
    });
    on("sites", applySites);
    on("level", (c) => {
      if (!state.view) return;
      if (c.scope === "street") {
        const st = state.view.streets.find((s) => s.id === c.id);
        if (st) { st.level = c.to; renderAreas(); renderMap(); }
      } else if (c.scope === "district") {
        state.view.district.level = c.to;
        renderAreas();
      }
      // Site levels (the max over rules) come with the next snapshot.
    });
    on("alert", alertsChanged);
    on("resync", refreshAll);
    on("ping", () => {});
  }

  // A stream that went quiet past the server's keep-alive is reopened.
  setInterval(() => {
    if (source && source.readyState === EventSource.OPEN && Date.now() - lastEvent > 45000) connect();
  }, 5000);

  // ── acknowledge / dispose ────────────────────────────────────────────
  let acting = null;
  function openAct(a, what) {
    acting = { alert: a, what };
    $("act-title").textContent = what === "ack" ? T().ack_title : T().dispose_title;
    $("act-alert").textContent = `#${a.id} ${levelText(a.level || a.peak_level)} · ${alertTitle(a)}`;
    $("act-by").value = store.get("fg.operator");
    $("act-token").value = "";
    $("act-token-row").hidden = !!store.get("fg.token");
    $("act-note").value = "";
    $("act-note-label").textContent = what === "dispose" ? T().dispose_note : T().note;
    $("act-error").textContent = "";
    $("act").showModal();
    (store.get("fg.operator") ? (store.get("fg.token") ? $("act-note") : $("act-token")) : $("act-by")).focus();
  }

  async function submitAct(ev) {
    ev.preventDefault();
    if (!acting) return;
    const by = $("act-by").value.trim();
    const note = $("act-note").value.trim();
    const typed = $("act-token").value.trim();
    if (typed) store.set("fg.token", typed);
    const token = store.get("fg.token");
    if (!by) { $("act-error").textContent = T().need_name; return; }
    if (!token) { $("act-token-row").hidden = false; $("act-error").textContent = T().need_token; return; }
    if (acting.what === "dispose" && !note) { $("act-error").textContent = T().need_note; return; }
    store.set("fg.operator", by);
    $("operator").textContent = T().operator(by);
    const body = { by };
    if (note) body.note = note;
    try {
      const r = await fetch(`/api/v1/alerts/${acting.alert.id}/${acting.what}`, {
        method: "POST",
        headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}` },
        body: JSON.stringify(body),
      });
      if (r.status === 401) {
        store.set("fg.token", "");
        $("act-token-row").hidden = false;
        $("act-error").textContent = T().bad_token;
        return;
      }
      if (!r.ok) {
        const e = await r.json().catch(() => ({}));
        $("act-error").textContent = T().failed + (e.error || r.status);
        return;
      }
      $("act").close();
      acting = null;
      alertsChanged();
    } catch (e) {
      $("act-error").textContent = T().failed + e.message;
    }
  }

  // ── start ────────────────────────────────────────────────────────────
  $("act-form").addEventListener("submit", submitAct);
  $("read-form").addEventListener("submit", submitRead);
  $("read-dialog").addEventListener("cancel", (e) => e.preventDefault());
  $("act-cancel").addEventListener("click", () => { $("act").close(); acting = null; });
  $("lang").addEventListener("click", () => {
    lang = lang === "zh" ? "en" : "zh";
    store.set("fg.lang", lang);
    applyTexts();
  });
  $("operator").addEventListener("click", () => {
    const name = window.prompt(T().operator_name, store.get("fg.operator"));
    if (name !== null) { store.set("fg.operator", name.trim()); $("operator").textContent = T().operator(name.trim()); }
  });
  // The daemon's clock: in the demo, storm time (a storm hour a minute).
  setInterval(() => {
    if (!state.view || !state.view.timezone) return;
    const now = records.now();
    $("clock").dataset.now = String(Math.round(now));
    $("clock-mode").textContent = records.clockLabel(lang);
    try {
      $("clock").textContent = new Intl.DateTimeFormat("zh-CN", {
        timeZone: state.view.timezone, hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false,
      }).format(new Date(now));
    } catch (e) { $("clock").textContent = new Date(now).toTimeString().slice(0, 8); }
  }, 500);
  // A takeover shows within seconds.
  setInterval(() => { if (state.connected) loadCluster(); }, 3000);
  setInterval(() => { if (state.connected) { loadNotes(); loadRecords(); refreshCharts(false); } }, 15000);
  setConnected(false);
  applyTexts();
  refreshAll();
  connect();
})();
