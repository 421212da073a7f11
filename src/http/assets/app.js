// The Vigil dashboard: reads the JSON API under /api/v1/ and follows the events
// stream. It decides nothing itself: liveness, health and ages are the server's,
// computed at each read. Every value from the database is set with textContent.
"use strict";

const REFRESH_MS = 2000;       // agents and the platform header
const SLOW_REFRESH_MS = 10000; // charts, help requests, workflow runs
const MAX_FEED = 200;          // events kept in the feed
// The charts always shown; the metric picker adds one more.
const FIXED_CHARTS = [
  { name: "heartbeats", title: "heartbeat rate (per minute)" },
  { name: "cycle_duration_ms", title: "cycle time (ms)" },
  { name: "persistence_queue_depth", title: "writer queue depth" },
  { name: "persistence_flush_p99_ms", title: "commit latency p99 (ms)" },
];

const $ = (id) => document.getElementById(id);
const view = {
  service: null,
  selectedAgent: null,
  lastEventId: 0,
  operatorActions: false,
};

// el("td", {class: "num"}, "text", childNode): a DOM element, text children as text.
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value !== null && value !== undefined) node.setAttribute(name, String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.appendChild(typeof child === "string" || typeof child === "number" ? document.createTextNode(String(child)) : child);
  }
  return node;
}

function badge(text, kind) {
  return el("span", { class: `badge ${kind || text}` }, text);
}

async function getJson(path) {
  const response = await fetch(path, { headers: { Accept: "application/json" } });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error || `${path}: HTTP ${response.status}`);
  return body;
}

// 95 -> "1m 35s", 0.4 -> "0.4s".
function humanSecs(secs) {
  if (secs === null || secs === undefined) return "never";
  if (secs < 10) return `${secs.toFixed(1)}s`;
  if (secs < 120) return `${Math.round(secs)}s`;
  if (secs < 7200) return `${Math.floor(secs / 60)}m ${Math.round(secs % 60)}s`;
  if (secs < 172800) return `${Math.floor(secs / 3600)}h ${Math.floor((secs % 3600) / 60)}m`;
  return `${Math.floor(secs / 86400)}d`;
}

function clockOf(timestamp) {
  if (!timestamp) return "–";
  const date = new Date(timestamp);
  return date.toLocaleTimeString([], { hour12: false });
}

function dateTimeOf(timestamp) {
  if (!timestamp) return "–";
  const date = new Date(timestamp);
  return `${date.toLocaleDateString()} ${date.toLocaleTimeString([], { hour12: false })}`;
}

// ---- the platform header and the agents table ------------------------------------

async function loadService() {
  view.service = await getJson("/api/v1/service");
  $("database").textContent = view.service.database;
  $("database").title = view.service.database;
  $("version").textContent = `Vigil ${view.service.version}`;
  $("mode-note").hidden = view.service.mode !== "database";
  view.operatorActions = view.service.operator_actions;
  $("token-box").hidden = !view.operatorActions;
  for (const cell of document.querySelectorAll(".actions-col")) cell.hidden = !view.operatorActions;
}

function renderPlatform(status) {
  const platform = $("platform");
  platform.dataset.healthy = String(Boolean(status.healthy));
  const running = (status.platforms || []).filter((p) => p.status && p.status.verdict === "running");
  let verdict = "no platform running";
  if (status.healthy) verdict = "healthy";
  else if (status.platform_running) verdict = "degraded";
  $("verdict").textContent = verdict;
  $("platform-detail").textContent = running.length
    ? running.map((p) => `pid ${p.process.pid} on ${p.process.host}, up ${humanSecs((Date.now() - new Date(p.started_at)) / 1000)}`).join("; ")
    : "the database shows no running platform";
  const nodes = running.map((p) => p.node);
  $("node").textContent = view.service && view.service.node ? view.service.node : nodes.join(", ") || "–";
  $("node").title = $("node").textContent;
  const c = status.counts || {};
  $("agent-counts").textContent = `${c.running || 0} running · ${c.silent || 0} silent · ${c.not_running || 0} not running`;
  const writer = status.writer;
  $("writer").textContent = writer
    ? `${writer.queue_depth}/${writer.queue_capacity} · p99 ${Number(writer.flush_latency_p99_ms || 0).toFixed(1)} ms`
    : "–";
}

function agentRow(agent) {
  const row = el("tr", {
    "data-agent": agent.agent_id,
    "data-state": agent.recorded_state || "unknown",
    "data-liveness": agent.liveness,
  });
  if (agent.agent_id === view.selectedAgent) row.classList.add("selected");
  // A recorded state is only the present while the agent runs.
  const state = agent.recorded_state || "unknown";
  const stateCell = agent.liveness === "not_running"
    ? el("td", { title: "what the row last recorded; nothing runs it now" }, el("span", { class: "muted" }, `(${state})`))
    : el("td", {}, badge(state));
  const age = agent.heartbeat_age_secs;
  const interval = agent.heartbeat_interval_secs;
  const late = age !== null && age !== undefined && age > interval;
  const health = agent.health === null || agent.health === undefined
    ? el("td", { class: "num muted" }, "–")
    : el("td", { class: "num" },
      el("span", { class: "health-bar" }, el("i", { style: `width:${Math.max(0, Math.min(100, agent.health))}%` })),
      agent.health.toFixed(0));
  row.append(
    el("td", { class: "mono" }, agent.agent_id),
    stateCell,
    el("td", {}, badge(agent.liveness.replace("_", " "), agent.liveness)),
    el("td", { class: "mono clip owner", title: agent.owner || agent.node || "" }, agent.owner || agent.node || "–"),
    el("td", { class: `num age${late ? " late" : ""}` }, `${humanSecs(age)} / ${humanSecs(interval)}`),
    health,
    el("td", { class: "num", title: "restarts / failures in the last 24 h" },
      `${agent.restarts ?? 0}`, el("span", { class: "muted" }, ` / ${agent.failures ?? 0}`)),
  );
  if (view.operatorActions) row.append(el("td", { class: "row-actions actions-col" }, ...actionButtons(agent.agent_id)));
  row.addEventListener("click", () => selectAgent(agent.agent_id));
  return row;
}

async function refreshAgents() {
  const agents = await getJson("/api/v1/agents?since=24h");
  renderPlatform(agents);
  const body = $("agents").tBodies[0];
  const rows = (agents.agents || []).map(agentRow);
  if (rows.length === 0) {
    rows.push(el("tr", {}, el("td", { colspan: 8, class: "muted" }, "no agents registered")));
  }
  body.replaceChildren(...rows);
}

// ---- operator actions (only when the service has a token) -------------------------

function actionButtons(agentId) {
  const token = $("token").value.trim();
  // A symbol each, so the column stays narrow; the title and label say the action.
  const symbols = { restart: "↻", stop: "■", fix: "✓" };
  return Object.entries(symbols).map(([action, symbol]) => {
    const label = `${action} ${agentId}`;
    const button = el("button", { type: "button", "data-action": action, title: label, "aria-label": label }, symbol);
    button.disabled = token === "";
    button.addEventListener("click", (event) => {
      event.stopPropagation();
      operate(agentId, action, button);
    });
    return button;
  });
}

async function operate(agentId, action, button) {
  const token = $("token").value.trim();
  const note = $("action-result");
  button.disabled = true;
  note.hidden = false;
  note.textContent = `${action} ${agentId}: waiting for the platform…`;
  try {
    const response = await fetch(`/api/v1/agents/${encodeURIComponent(agentId)}/${action}`, {
      method: "POST",
      headers: { Authorization: `Bearer ${token}` },
    });
    const body = await response.json().catch(() => ({}));
    note.textContent = response.ok
      ? `${action} ${agentId}: ${typeof body.outcome === "string" ? body.outcome : JSON.stringify(body.outcome)}`
      : `${action} ${agentId} refused: ${body.error || response.status}`;
  } catch (error) {
    note.textContent = `${action} ${agentId} failed: ${error.message}`;
  } finally {
    button.disabled = false;
    refreshAgents().catch(() => {});
  }
}

// ---- one agent's state timeline ----------------------------------------------------

function selectAgent(agentId) {
  view.selectedAgent = agentId;
  for (const row of $("agents").tBodies[0].rows) {
    row.classList.toggle("selected", row.dataset.agent === agentId);
  }
  $("timeline").hidden = false;
  $("timeline-agent").textContent = agentId;
  refreshTimeline().catch(showError);
}

async function refreshTimeline() {
  const agentId = view.selectedAgent;
  if (!agentId) return;
  const window = $("window").value;
  const timeline = await getJson(`/api/v1/agents/${encodeURIComponent(agentId)}/timeline?since=${window}&limit=500`);
  if (agentId !== view.selectedAgent) return;
  const to = Date.now();
  const from = to - timeline.since_secs * 1000;
  $("timeline-window").textContent = `${timeline.transitions.length} transition(s) in the last ${$("window").selectedOptions[0].textContent}`;
  drawTimeline($("timeline-chart"), timeline.transitions, from, to);
  const items = timeline.transitions.slice().reverse().map((t) => el("li", { "data-event-id": t.event_id },
    el("span", { class: "mono muted" }, `${clockOf(t.at)} `),
    badge(t.from), " → ", badge(t.to),
    el("span", { class: "muted" }, ` ${t.trigger}${t.cause && t.cause.kind ? ` · ${t.cause.kind}` : ""}`),
    t.failure ? el("span", { class: "badge error" }, "failure") : null));
  $("timeline-list").replaceChildren(...items);
}

// ---- the live events feed -----------------------------------------------------------

function eventSummary(event) {
  const data = event.event_data || {};
  if (event.event_type === "state_transition" && data.from && data.to) {
    const cause = data.cause && data.cause.kind ? ` (${data.cause.kind})` : "";
    return `${data.agent_id}: ${data.from} → ${data.to}${cause}`;
  }
  const text = JSON.stringify(data);
  return text.length > 160 ? `${text.slice(0, 160)}…` : text;
}

function addEvent(event, fresh) {
  const feed = $("events");
  if (feed.querySelector(`li[data-event-id="${event.id}"]`)) return;
  const severity = event.severity || "info";
  const item = el("li", { "data-event-id": event.id, "data-event-type": event.event_type, title: JSON.stringify(event.event_data) },
    el("span", { class: "time" }, clockOf(event.timestamp)),
    el("span", {}, badge(severity)),
    el("span", { class: "what" }, el("span", { class: "type" }, event.event_type), el("span", { class: "data" }, eventSummary(event))));
  if (fresh) item.classList.add("fresh");
  feed.insertBefore(item, feed.firstChild);
  while (feed.children.length > MAX_FEED) feed.removeChild(feed.lastChild);
  view.lastEventId = Math.max(view.lastEventId, event.id);
}

function setConnection(live, text) {
  const badgeNode = $("connection");
  badgeNode.textContent = text;
  badgeNode.className = live ? "live" : "off";
}

async function followEvents() {
  // Recent events first (oldest first, so the newest ends on top), then the stream
  // from the last of them: nothing falls between the two.
  const recent = await getJson("/api/v1/events?limit=50").catch(() => ({ events: [] }));
  for (const event of recent.events) addEvent(event, false);
  const source = new EventSource(`/api/v1/events/stream?after=${view.lastEventId}`);
  source.onopen = () => setConnection(true, "live");
  source.onerror = () => setConnection(false, "reconnecting");
  source.addEventListener("event", (message) => {
    setConnection(true, "live");
    const event = JSON.parse(message.data);
    addEvent(event, true);
    if (event.event_type === "state_transition") {
      refreshAgents().catch(showError);
      if (event.event_data && event.event_data.agent_id === view.selectedAgent) refreshTimeline().catch(showError);
    }
  });
}

// ---- charts -------------------------------------------------------------------------

function chartBox(key, title) {
  let box = document.querySelector(`.chart[data-chart="${CSS.escape(key)}"]`);
  if (!box) {
    box = el("div", { class: "chart", "data-chart": key },
      el("div", { class: "chart-title" }, el("span", { class: "name" }, title), el("span", { class: "last" }, "")),
      document.createElementNS(SVG_NS, "svg"));
    $("chart-grid").appendChild(box);
  }
  box.querySelector(".name").textContent = title;
  return box;
}

async function drawChart(key, title, name, agent) {
  const window = $("window").value;
  const agentQuery = agent ? `&agent=${encodeURIComponent(agent)}` : "";
  const series = await getJson(`/api/v1/series?name=${encodeURIComponent(name)}&since=${window}${agentQuery}`);
  const box = chartBox(key, title + (agent ? ` · ${agent}` : ""));
  const last = series.points.slice().reverse().find((p) => p.value !== null);
  box.querySelector(".last").textContent = last ? formatValue(last.value) : "–";
  drawLineChart(box.querySelector("svg"), series);
}

async function refreshMetricNames() {
  const names = await getJson(`/api/v1/series/names?since=${$("window").value}`);
  const select = $("metric-name");
  const chosen = select.value || "cycles_per_second";
  const options = names.series.filter((s) => !FIXED_CHARTS.some((c) => c.name === s.name) || s.name === chosen);
  select.replaceChildren(...options.map((s) => el("option", { value: s.name }, s.samples === null ? s.name : `${s.name} (${s.samples})`)));
  if (options.some((s) => s.name === chosen)) select.value = chosen;
  const agents = (names.series.find((s) => s.name === select.value) || { agents: [] }).agents;
  const agentSelect = $("metric-agent");
  const agentChosen = agentSelect.value;
  agentSelect.replaceChildren(el("option", { value: "" }, "all"), ...agents.map((a) => el("option", { value: a }, a)));
  if (agents.includes(agentChosen)) agentSelect.value = agentChosen;
}

async function refreshCharts() {
  // The boxes first, in a fixed order, whichever answer comes back first.
  for (const c of FIXED_CHARTS) chartBox(c.name, c.title);
  chartBox("picked", $("metric-name").value || "metric");
  await refreshMetricNames().catch(showError);
  const agent = $("metric-agent").value;
  const jobs = FIXED_CHARTS.map((c) => drawChart(c.name, c.title, c.name, c.name === "heartbeats" ? view.selectedAgent : null));
  const picked = $("metric-name").value;
  if (picked) jobs.push(drawChart("picked", picked, picked, agent || null));
  await Promise.all(jobs.map((job) => job.catch(showError)));
}

// ---- help requests and workflow runs ------------------------------------------------

async function refreshHelp() {
  const help = await getJson("/api/v1/help?limit=10");
  const rows = help.requests.map((r) => el("tr", {},
    el("td", { class: "mono" }, clockOf(r.created_at)),
    el("td", { class: "clip", title: r.query }, r.query),
    el("td", {}, badge(r.status || "unknown")),
    el("td", { class: "clip", title: r.response ? r.response.response : "" }, r.response ? r.response.response : el("span", { class: "muted" }, "not answered yet")),
    el("td", { class: "num" }, r.response && r.response.took_secs !== null ? humanSecs(r.response.took_secs) : "–")));
  if (rows.length === 0) rows.push(el("tr", {}, el("td", { colspan: 5, class: "muted" }, "no help requests")));
  $("help").tBodies[0].replaceChildren(...rows);
}

async function refreshWorkflows() {
  const workflows = await getJson("/api/v1/workflows?limit=10");
  const rows = workflows.runs.map((run) => el("tr", { title: run.error || "" },
    el("td", { class: "mono clip" }, run.run_id),
    el("td", {}, run.graph),
    el("td", {}, badge(run.status, run.status === "running" ? "running-wf" : run.status)),
    el("td", { class: "num" }, run.step),
    el("td", { class: "mono" }, run.next_node || "–"),
    el("td", { class: "mono" }, dateTimeOf(run.updated_at))));
  if (rows.length === 0) rows.push(el("tr", {}, el("td", { colspan: 6, class: "muted" }, "no workflow runs")));
  $("workflows").tBodies[0].replaceChildren(...rows);
}

async function refreshAlerts() {
  const alerts = await getJson("/api/v1/alerts?limit=10");
  if (alerts.webhooks) {
    const delivered = alerts.webhooks.reduce((sum, w) => sum + w.delivered, 0);
    $("alerter").textContent = `${alerts.webhooks.length} webhook(s), ${delivered} delivered` +
      (alerts.leading ? " · this node alerts" : " · another node alerts");
  }
  const rows = alerts.deliveries.map((d) => el("tr", { title: d.error || "" },
    el("td", { class: "mono" }, dateTimeOf(d.attempted_at)),
    el("td", {}, d.webhook_name),
    el("td", { class: "mono clip", title: d.incident_key }, d.incident_key),
    el("td", {}, badge(d.status)),
    el("td", { class: "num" }, d.attempt),
    el("td", {}, badge(d.outcome)),
    el("td", { class: "clip" }, d.http_status !== null ? String(d.http_status) : (d.error || "–"))));
  if (rows.length === 0) rows.push(el("tr", {}, el("td", { colspan: 7, class: "muted" }, "no alerts delivered")));
  $("alerts").tBodies[0].replaceChildren(...rows);
}

// ---- wiring -------------------------------------------------------------------------

function showError(error) {
  console.warn("vigil dashboard:", error.message || error);
}

function every(ms, task) {
  const run = () => task().catch(showError);
  run();
  return setInterval(run, ms);
}

async function main() {
  await loadService().catch(showError);
  $("timeline-close").addEventListener("click", () => {
    view.selectedAgent = null;
    $("timeline").hidden = true;
    refreshAgents().catch(showError);
    refreshCharts().catch(showError);
  });
  $("window").addEventListener("change", () => {
    refreshCharts().catch(showError);
    refreshTimeline().catch(showError);
  });
  $("metric-name").addEventListener("change", () => {
    $("metric-agent").value = "";
    refreshCharts().catch(showError);
  });
  $("metric-agent").addEventListener("change", () => refreshCharts().catch(showError));
  $("token").addEventListener("input", () => {
    const empty = $("token").value.trim() === "";
    for (const button of document.querySelectorAll("#agents button[data-action]")) button.disabled = empty;
  });
  every(REFRESH_MS, refreshAgents);
  every(SLOW_REFRESH_MS, refreshCharts);
  every(SLOW_REFRESH_MS, refreshHelp);
  every(SLOW_REFRESH_MS, refreshWorkflows);
  every(SLOW_REFRESH_MS, refreshAlerts);
  followEvents().catch((error) => {
    setConnection(false, "offline");
    showError(error);
  });
}

main();
