// Small hand-drawn SVG charts: a site's recent series with the plan's
// thresholds as coloured bands (no library: the page runs on closed networks).
"use strict";
window.FG = window.FG || {};

(function () {
  const NS = "http://www.w3.org/2000/svg";
  const ORDER = ["IV", "III", "II", "I"];
  const COLOUR = { IV: "#1f6fe0", III: "#f2c200", II: "#f57c00", I: "#e53935" };

  function el(name, attrs) {
    const e = document.createElementNS(NS, name);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    return e;
  }

  // Draws `series` (the JSON of /api/v1/sites/{id}/series) into `svg`,
  // spanning `sinceMs` … `nowMs`.
  function draw(svg, series, sinceMs, nowMs) {
    const W = 300, H = 64, PAD = 2;
    svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
    svg.setAttribute("preserveAspectRatio", "none");
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    const pts = (series.points || []).map((p) => [Date.parse(p.ts), p.value]);
    const th = series.thresholds || {};
    const levels = ORDER.filter((l) => th[l] !== undefined);
    const below = series.direction === "below";
    // The value range: the points, plus the first two thresholds so the
    // chart always shows where danger begins.
    const vals = pts.map((p) => p[1]).concat(levels.slice(0, 2).map((l) => th[l]));
    if (!vals.length) return;
    let lo = Math.min(...vals), hi = Math.max(...vals);
    if (hi - lo < 1e-9) { hi += 1; lo -= 1; }
    const span = hi - lo;
    lo -= span * 0.08; hi += span * 0.08;
    const x = (t) => ((t - sinceMs) / Math.max(1, nowMs - sinceMs)) * W;
    const y = (v) => H - PAD - ((v - lo) / (hi - lo)) * (H - 2 * PAD);
    // Bands: each level from its threshold to the next (upwards for
    // "above", downwards for "below").
    levels.forEach((l, i) => {
      const from = th[l];
      const next = i + 1 < levels.length ? th[levels[i + 1]] : below ? -Infinity : Infinity;
      const a = Math.max(lo, Math.min(hi, from)), b = Math.max(lo, Math.min(hi, next));
      const top = Math.min(y(a), y(b)), h = Math.abs(y(a) - y(b));
      if (h > 0.5) {
        svg.appendChild(el("rect", { x: 0, y: top, width: W, height: h, fill: COLOUR[l], "fill-opacity": 0.22, class: `band band-${l}` }));
      }
      if (from > lo && from < hi) {
        svg.appendChild(el("line", { x1: 0, x2: W, y1: y(from), y2: y(from), stroke: COLOUR[l], "stroke-width": 1, "stroke-dasharray": "4 3" }));
      }
    });
    if (pts.length) {
      const d = pts.map((p, i) => `${i ? "L" : "M"}${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join(" ");
      svg.appendChild(el("path", { d, class: "line" }));
      const last = pts[pts.length - 1];
      svg.appendChild(el("circle", { cx: x(last[0]), cy: y(last[1]), r: 2.5, fill: "#fff" }));
    }
  }

  window.FG.chart = { draw };
})();
