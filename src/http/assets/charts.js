// Hand-drawn SVG charts for the Vigil dashboard: a line chart of a bucketed series
// (/api/v1/series) and a state band of an agent's timeline. No library; every text is
// set with textContent, never parsed as markup.
"use strict";

// The SVG namespace, taken from an <svg> the HTML parser made (so no URL is written here).
const SVG_NS = document.getElementById("timeline-chart").namespaceURI;

function svgEl(tag, attrs, parent) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
  if (parent) parent.appendChild(node);
  return node;
}

function svgText(parent, x, y, text, attrs) {
  const node = svgEl("text", Object.assign({ x, y }, attrs || {}), parent);
  node.textContent = text;
  return node;
}

// 1234.5 -> "1.23k", 0.000123 -> "0.000123": short labels for axes and readouts.
function formatValue(value) {
  if (value === null || value === undefined || !Number.isFinite(value)) return "–";
  const abs = Math.abs(value);
  if (abs >= 1e9) return (value / 1e9).toFixed(2) + "G";
  if (abs >= 1e6) return (value / 1e6).toFixed(2) + "M";
  if (abs >= 1e4) return (value / 1e3).toFixed(1) + "k";
  if (abs >= 100) return value.toFixed(0);
  if (abs >= 1) return value.toFixed(2);
  if (abs === 0) return "0";
  return value.toPrecision(3);
}

function formatClock(date, withDate) {
  const pad = (n) => String(n).padStart(2, "0");
  const clock = `${pad(date.getHours())}:${pad(date.getMinutes())}`;
  return withDate ? `${date.getMonth() + 1}/${date.getDate()} ${clock}` : clock;
}

// Draws `series` (the JSON of /api/v1/series) into `svg`, sized by its box.
function drawLineChart(svg, series) {
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  const width = svg.clientWidth || 300;
  const height = svg.clientHeight || 110;
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  const pad = { left: 40, right: 6, top: 6, bottom: 16 };
  const plotW = width - pad.left - pad.right;
  const plotH = height - pad.top - pad.bottom;
  const points = series.points || [];
  const values = points.map((p) => p.value).filter((v) => v !== null && Number.isFinite(v));
  if (points.length === 0 || values.length === 0) {
    svgText(svg, width / 2, height / 2, "no samples in this window", { class: "empty", "text-anchor": "middle" });
    return;
  }
  let low = Math.min(0, ...values);
  let high = Math.max(...values);
  if (high === low) high = low + 1;
  high += (high - low) * 0.08;
  const start = new Date(points[0].t).getTime();
  const step = series.step_secs * 1000;
  const span = step * points.length;
  // Each bucket is drawn at its middle.
  const x = (i) => pad.left + ((i + 0.5) * step / span) * plotW;
  const y = (v) => pad.top + plotH - ((v - low) / (high - low)) * plotH;

  for (const fraction of [0, 0.5, 1]) {
    const value = low + (high - low) * fraction;
    const gy = y(value);
    svgEl("line", { x1: pad.left, x2: width - pad.right, y1: gy, y2: gy, class: "grid" }, svg);
    svgText(svg, pad.left - 4, gy + 3, formatValue(value), { class: "axis", "text-anchor": "end" });
  }
  const longWindow = span > 20 * 3600 * 1000;
  for (const fraction of [0, 0.5, 1]) {
    const at = new Date(start + span * fraction);
    const anchor = fraction === 0 ? "start" : fraction === 1 ? "end" : "middle";
    svgText(svg, pad.left + plotW * fraction, height - 3, formatClock(at, longWindow), { class: "axis", "text-anchor": anchor });
  }

  // Runs of consecutive non-empty buckets become one path each: a gap stays a gap.
  let runs = [];
  let current = [];
  points.forEach((p, i) => {
    if (p.value === null || !Number.isFinite(p.value)) {
      if (current.length) runs.push(current);
      current = [];
    } else {
      current.push([x(i), y(p.value)]);
    }
  });
  if (current.length) runs.push(current);
  for (const run of runs) {
    const line = run.map(([px, py], i) => `${i ? "L" : "M"}${px.toFixed(1)},${py.toFixed(1)}`).join("");
    if (run.length === 1) {
      svgEl("circle", { cx: run[0][0], cy: run[0][1], r: 2, fill: "currentColor", class: "line" }, svg);
      continue;
    }
    const base = y(Math.max(low, 0)).toFixed(1);
    const area = `${line}L${run[run.length - 1][0].toFixed(1)},${base}L${run[0][0].toFixed(1)},${base}Z`;
    svgEl("path", { d: area, class: "area" }, svg);
    svgEl("path", { d: line, class: "line" }, svg);
  }
}

// The colour of a lifecycle state in the timeline band.
const STATE_COLOURS = {
  active: "#3fb97f", initializing: "#6f8dbd", deploying: "#6f8dbd", monitoring: "#6f8dbd",
  optimizing: "#e0b341", standby: "#a58bd6", maintenance: "#e0b341", recovery: "#e08a41",
  error: "#e5534b", manual: "#c23b6e", shutdown: "#56616d",
};

// Draws an agent's state over [from, to] (ms) as coloured segments: `transitions` is
// the timeline's list, oldest first; the state before the first is its `from`.
function drawTimeline(svg, transitions, from, to) {
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  const width = svg.clientWidth || 600;
  const height = svg.clientHeight || 46;
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  const band = { top: 4, height: 22 };
  const x = (ms) => ((Math.min(Math.max(ms, from), to) - from) / (to - from)) * width;
  if (transitions.length === 0) {
    svgText(svg, width / 2, 18, "no transitions in this window", { class: "axis", "text-anchor": "middle" });
    return;
  }
  const segments = [];
  // Before its first transition from `initializing` the agent did not exist yet: that
  // stretch stays blank rather than painted as a state.
  let state = transitions[0].from === "initializing" ? null : transitions[0].from;
  let since = from;
  for (const t of transitions) {
    const at = new Date(t.at).getTime();
    segments.push([state, since, at]);
    state = t.to;
    since = at;
  }
  segments.push([state, since, to]);
  for (const [name, begin, end] of segments) {
    if (name === null) continue;
    const x0 = x(begin);
    const w = Math.max(x(end) - x0, 1);
    const rect = svgEl("rect", { x: x0, y: band.top, width: w, height: band.height, fill: STATE_COLOURS[name] || "#56616d" }, svg);
    svgEl("title", {}, rect).textContent = `${name}: ${new Date(begin).toLocaleTimeString()} – ${new Date(end).toLocaleTimeString()}`;
    if (w > 50) svgText(svg, x0 + 4, band.top + 15, name, { fill: "#0f1419", "font-size": 11 });
  }
  const longWindow = to - from > 20 * 3600 * 1000;
  svgText(svg, 0, height - 4, formatClock(new Date(from), longWindow), { class: "axis" });
  svgText(svg, width, height - 4, "now", { class: "axis", "text-anchor": "end" });
}
