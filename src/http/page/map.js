// The schematic map: sites placed from their lat/lon on an inline SVG (no
// tiles), streets drawn as the padded convex hull of their sites, everything
// coloured by level with the level written in each dot.
"use strict";
window.FG = window.FG || {};

(function () {
  const NS = "http://www.w3.org/2000/svg";
  const W = 600, H = 360, PAD = 46;

  function el(name, attrs, text) {
    const e = document.createElementNS(NS, name);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    return e;
  }

  // Andrew's monotone chain; points as [x, y].
  function hull(points) {
    const p = points.slice().sort((a, b) => a[0] - b[0] || a[1] - b[1]);
    if (p.length < 3) return p;
    const cross = (o, a, b) => (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0]);
    const lower = [], upper = [];
    for (const q of p) {
      while (lower.length >= 2 && cross(lower[lower.length - 2], lower[lower.length - 1], q) <= 0) lower.pop();
      lower.push(q);
    }
    for (const q of p.slice().reverse()) {
      while (upper.length >= 2 && cross(upper[upper.length - 2], upper[upper.length - 1], q) <= 0) upper.pop();
      upper.push(q);
    }
    return lower.slice(0, -1).concat(upper.slice(0, -1));
  }

  // Pushes each hull vertex `by` away from the centroid, so a street's
  // outline surrounds its sites (and one or two sites still get a shape).
  function pad(points, by) {
    const cx = points.reduce((s, p) => s + p[0], 0) / points.length;
    const cy = points.reduce((s, p) => s + p[1], 0) / points.length;
    if (points.length < 3) {
      // A circle-ish octagon around one or two points.
      const out = [];
      for (const p of points) for (let k = 0; k < 8; k++) {
        const a = (k * Math.PI) / 4;
        out.push([p[0] + by * Math.cos(a), p[1] + by * Math.sin(a)]);
      }
      return hull(out);
    }
    return points.map((p) => {
      const dx = p[0] - cx, dy = p[1] - cy, d = Math.hypot(dx, dy) || 1;
      return [p[0] + (dx / d) * by, p[1] + (dy / d) * by];
    });
  }

  // Projection of every site (equirectangular, lon scaled by cos(lat)).
  function projector(sites) {
    const lats = sites.map((s) => s.location.lat), lons = sites.map((s) => s.location.lon);
    const lat0 = (Math.min(...lats) + Math.max(...lats)) / 2;
    const k = Math.cos((lat0 * Math.PI) / 180);
    const xs = lons.map((l) => l * k), ys = lats;
    const minX = Math.min(...xs), maxX = Math.max(...xs), minY = Math.min(...ys), maxY = Math.max(...ys);
    const scale = Math.min((W - 2 * PAD) / Math.max(maxX - minX, 1e-6), (H - 2 * PAD) / Math.max(maxY - minY, 1e-6));
    const ox = (W - (maxX - minX) * scale) / 2, oy = (H - (maxY - minY) * scale) / 2;
    return (s) => [ox + (s.location.lon * k - minX) * scale, H - (oy + (s.location.lat - minY) * scale)];
  }

  // view: /api/v1/sites; t: the page's texts (level symbol, street name).
  function draw(svg, view, t) {
    svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    const sites = view.sites.filter((s) => s.location);
    if (!sites.length) return;
    const at = projector(sites);
    const streetLevel = {};
    for (const st of view.streets) streetLevel[st.id] = st;
    const byStreet = {};
    for (const s of sites) (byStreet[s.street] = byStreet[s.street] || []).push(at(s));
    for (const id of Object.keys(byStreet)) {
      const st = streetLevel[id] || { id, name: id, level: null };
      const shape = pad(hull(byStreet[id]), 24);
      const g = el("g", { class: `street lvl-${st.level || "none"}`, "data-street": id });
      g.appendChild(el("polygon", { class: "street-shape", points: shape.map((p) => p.map((v) => v.toFixed(1)).join(",")).join(" ") }));
      const top = Math.min(...shape.map((p) => p[1]));
      const cx = shape.reduce((s, p) => s + p[0], 0) / shape.length;
      g.appendChild(el("text", { class: "street-label", x: cx.toFixed(1), y: Math.max(14, top - 4).toFixed(1) }, `${t.areaName(st)} ${t.symbol(st.level)}`));
      svg.appendChild(g);
    }
    for (const s of sites) {
      const [x, y] = at(s);
      const cls = s.offline ? "offline" : `lvl-${s.level || "none"}`;
      const g = el("g", { class: `map-site ${cls}`, "data-site": s.id });
      g.appendChild(el("title", {}, `${t.siteName(s)} · ${t.levelText(s.level)}`));
      g.appendChild(el("circle", { class: "dot", cx: x.toFixed(1), cy: y.toFixed(1), r: 11 }));
      g.appendChild(el("text", { class: "dot-text", x: x.toFixed(1), y: y.toFixed(1) }, s.offline ? "×" : t.symbol(s.level, true)));
      g.appendChild(el("text", { class: "site-label", x: x.toFixed(1), y: (y + 22).toFixed(1) }, s.id));
      svg.appendChild(g);
    }
  }

  window.FG.map = { draw, hull };
})();
