// The supervisor's live console: one card per campaign (figures, two charts of the day,
// controls), every logged-in agent with time in state, and listen / whisper / barge.
// /ws/supervisor pushes the whole picture each second; cards and rows are built once and then
// only updated, so a control being edited or a button being clicked is never replaced.

import {
  t,
  tOr,
  setText,
  onLanguageChange,
  fmtPercent,
  fmtNumber,
  fmtDuration,
  fmtTime,
} from "./i18n.js";
import {
  api,
  errorText,
  el,
  $,
  show,
  say,
  startTicker,
  tick,
  LiveSocket,
  showConnection,
  loadMe,
  setupHeader,
  syncClock,
} from "./common.js";

const DIAL_MODES = ["preview", "progressive", "ratio", "vicidial-adapt", "predictive"];
const STATES = ["ready", "reserved", "on_call", "wrap_up", "paused"];
const SPY_MODES = ["listen", "whisper", "barge"];
const PHONE_KEY = "dialer.supervisorPhone";
const SVG_NS = "http://www.w3.org/2000/svg";
// An edited control follows the live figures again once they show the new value, or after this.
const HOLD_MS = 20000;

let lastLive = null;
const cards = new Map(); // campaign id -> {node, ids, edits}

// ---- small helpers ----

function cid(id, part) {
  return `campaign-${id}-${part}`;
}

function safeId(text) {
  return String(text).replace(/[^A-Za-z0-9_-]/g, "_");
}

function message(text, tone = "error") {
  const node = $("#sup-message");
  say(node, text, tone);
  if (text && tone !== "error") {
    setTimeout(() => {
      if (node.textContent === text) say(node, "");
    }, 6000);
  }
}

// Abandonment against the target: well under it, close to it, over it.
function abandonLevel(rate, target) {
  if (typeof rate !== "number" || typeof target !== "number" || target <= 0) return "";
  if (rate > target) return "bad";
  if (rate > target * 0.8) return "warn";
  return "ok";
}

function percentOf(fraction) {
  // 0.03 -> "3", 0.025 -> "2.5" (for the input, in plain digits)
  return String(Math.round(fraction * 10000) / 100);
}

// ---- campaign cards ----

function figure(id, part, labelKey, extraClass = "") {
  return el(
    "div",
    { class: `fig ${extraClass}` },
    el("span", { class: "fig-label", i18n: labelKey }),
    el("span", { class: "fig-value", id: cid(id, part), text: t("dash") }),
  );
}

function chartBox(id, part, titleKey) {
  const svg = document.createElementNS(SVG_NS, "svg");
  svg.id = cid(id, part);
  svg.setAttribute("class", "chart");
  svg.setAttribute("role", "img");
  return el(
    "figure",
    { class: "chart-box" },
    el("figcaption", { i18n: titleKey }),
    svg,
  );
}

function buildCard(c) {
  const id = c.id;
  const modeSelect = el(
    "select",
    { id: cid(id, "dial-mode") },
    DIAL_MODES.map((m) => el("option", { value: m, i18n: `mode.${m}` })),
  );
  const target = el("input", {
    id: cid(id, "target"),
    type: "number",
    min: "0",
    max: "100",
    step: "0.1",
    inputmode: "decimal",
    class: "short",
  });
  const ratio = el("input", {
    id: cid(id, "max-ratio"),
    type: "number",
    min: "1",
    step: "0.1",
    inputmode: "decimal",
    class: "short",
  });
  const result = el("span", { id: cid(id, "result"), class: "message", role: "status", hidden: true });
  const card = el(
    "article",
    { class: "panel campaign", id: `campaign-${id}`, dataset: { campaignId: id } },
    el(
      "header",
      { class: "campaign-head" },
      el("h3", { id: cid(id, "name"), text: c.name }),
      el("span", { id: cid(id, "status"), class: "status-badge" }),
      el("span", { class: "muted", id: cid(id, "mode") }),
      el("span", { class: "spacer" }),
      el("span", { id: cid(id, "agents"), class: "chips" }),
    ),
    el(
      "div",
      { class: "campaign-body" },
      el(
        "div",
        { class: "figures" },
        figure(id, "abandon-today", "fig.abandon_today", "big"),
        figure(id, "abandon-24h", "fig.abandon_24h", "big"),
        figure(id, "abandon-30d", "fig.abandon_30d", "big"),
        figure(id, "target-value", "fig.target", "big"),
        figure(id, "occupancy", "fig.occupancy"),
        figure(id, "answer-rate", "fig.answer_rate"),
        figure(id, "dials-per-min", "fig.dials_per_min"),
        figure(id, "max-ratio-value", "fig.max_ratio"),
        figure(id, "ringing", "fig.ringing"),
        figure(id, "waiting", "fig.waiting"),
        figure(id, "connected", "fig.connected"),
        figure(id, "mean-talk", "fig.mean_talk"),
        figure(id, "mean-wrap", "fig.mean_wrap"),
      ),
      el(
        "div",
        { class: "charts" },
        chartBox(id, "chart-abandon", "chart.abandon"),
        chartBox(id, "chart-occupancy", "chart.occupancy"),
      ),
    ),
    el(
      "form",
      { class: "campaign-controls", id: cid(id, "controls"), novalidate: true },
      el(
        "span",
        { class: "btn-group" },
        el("button", { type: "button", class: "btn go", id: cid(id, "start"), i18n: "ctl.start" }),
        el("button", { type: "button", class: "btn warn", id: cid(id, "pause"), i18n: "ctl.pause" }),
        el("button", { type: "button", class: "btn danger", id: cid(id, "stop"), i18n: "ctl.stop" }),
      ),
      el("label", { class: "inline" }, el("span", { i18n: "ctl.dial_mode" }), modeSelect),
      el("label", { class: "inline" }, el("span", { i18n: "ctl.target" }), target),
      el("label", { class: "inline" }, el("span", { i18n: "ctl.max_ratio" }), ratio),
      el("button", { type: "submit", class: "btn primary", id: cid(id, "apply"), i18n: "ctl.apply" }),
      result,
    ),
  );
  const state = { node: card, edits: {}, live: c };
  for (const [field, input] of [
    ["dial_mode", modeSelect],
    ["target", target],
    ["ratio", ratio],
  ]) {
    input.addEventListener("input", () => {
      state.edits[field] = { until: Infinity };
    });
    input.addEventListener("change", () => {
      state.edits[field] = state.edits[field] || { until: Infinity };
    });
  }
  card.querySelector(`#${cid(id, "start")}`).addEventListener("click", (e) =>
    sendControls(state, { status: "running" }, e.currentTarget),
  );
  card.querySelector(`#${cid(id, "pause")}`).addEventListener("click", (e) =>
    sendControls(state, { status: "paused" }, e.currentTarget),
  );
  card.querySelector(`#${cid(id, "stop")}`).addEventListener("click", (e) => {
    if (!window.confirm(t("sup.confirm_stop", { name: state.live.name }))) return;
    sendControls(state, { status: "stopped" }, e.currentTarget);
  });
  card.querySelector("form").addEventListener("submit", (e) => {
    e.preventDefault();
    applySettings(state);
  });
  return state;
}

function setFig(id, part, text, level) {
  const node = document.getElementById(cid(id, part));
  if (!node) return;
  node.textContent = text;
  if (level !== undefined) node.dataset.level = level;
}

function updateCard(state, c) {
  state.live = c;
  const id = c.id;
  $(`#${cid(id, "name")}`, state.node).textContent = c.name;
  const status = $(`#${cid(id, "status")}`, state.node);
  status.dataset.status = c.status || "";
  status.textContent = tOr(`campaign.${c.status}`, c.status || "");
  $(`#${cid(id, "mode")}`, state.node).textContent = t("fig.dial_mode_is", {
    mode: tOr(`mode.${c.dial_mode}`, c.dial_mode || t("dash")),
  });

  const target = c.target_abandon_rate;
  for (const [part, key] of [
    ["abandon-today", "abandon_rate_today"],
    ["abandon-24h", "abandon_rate_24h"],
    ["abandon-30d", "abandon_rate_30d"],
  ]) {
    setFig(id, part, fmtPercent(c[key], 2), abandonLevel(c[key], target));
  }
  setFig(id, "target-value", fmtPercent(target, 2));
  setFig(id, "occupancy", fmtPercent(c.occupancy, 1));
  setFig(id, "answer-rate", fmtPercent(c.live_answer_rate, 1));
  setFig(id, "dials-per-min", fmtNumber(c.dials_per_min, 1));
  setFig(id, "max-ratio-value", fmtNumber(c.max_dial_ratio, 1));
  setFig(id, "ringing", fmtNumber(c.ringing));
  setFig(id, "waiting", fmtNumber(c.waiting), c.waiting > 0 ? "warn" : "");
  setFig(id, "connected", fmtNumber(c.connected));
  setFig(id, "mean-talk", fmtDuration(c.mean_talk_s));
  setFig(id, "mean-wrap", fmtDuration(c.mean_wrap_up_s));

  const chips = $(`#${cid(id, "agents")}`, state.node);
  chips.replaceChildren(...stateChips(c.agents_by_state || {}));

  const s = c.status;
  $(`#${cid(id, "start")}`, state.node).disabled = s === "running" || s === "active";
  $(`#${cid(id, "pause")}`, state.node).disabled = s === "paused" || s === "stopped" || s === "finished";
  $(`#${cid(id, "stop")}`, state.node).disabled = s === "stopped" || s === "finished";

  syncControl(state, "dial_mode", $(`#${cid(id, "dial-mode")}`, state.node), c.dial_mode, (a, b) => a === b);
  syncControl(
    state,
    "target",
    $(`#${cid(id, "target")}`, state.node),
    typeof target === "number" ? percentOf(target) : "",
    (a, b) => Math.abs(Number(a) - Number(b)) < 1e-9,
  );
  syncControl(
    state,
    "ratio",
    $(`#${cid(id, "max-ratio")}`, state.node),
    typeof c.max_dial_ratio === "number" ? String(c.max_dial_ratio) : "",
    (a, b) => Math.abs(Number(a) - Number(b)) < 1e-9,
  );

  const series = c.series || [];
  drawChart($(`#${cid(id, "chart-abandon")}`, state.node), series, "abandon_rate", {
    target,
    title: t("chart.abandon"),
  });
  drawChart($(`#${cid(id, "chart-occupancy")}`, state.node), series, "occupancy", {
    fixedMax: 1,
    title: t("chart.occupancy"),
  });
}

// Put the live value in a control unless the supervisor is editing it (or just sent a value
// the pacing tick has not applied yet).
function syncControl(state, field, input, value, same) {
  if (input.tagName === "SELECT" && value && !input.querySelector(`option[value="${CSS.escape(value)}"]`)) {
    input.append(el("option", { value, text: value }));
  }
  const edit = state.edits[field];
  if (edit) {
    const settled = edit.sent !== undefined && same(value, edit.sent);
    if (settled || Date.now() > edit.until) delete state.edits[field];
    else return;
  }
  if (document.activeElement === input) return;
  if (input.value !== value) input.value = value;
}

function stateChips(byState) {
  return STATES.filter((s) => byState[s]).map((s) =>
    el(
      "span",
      { class: "chip", dataset: { state: s }, title: t(`state.${s}`) },
      el("span", { class: "chip-label", text: t(`state.${s}`) }),
      el("span", { class: "chip-count", text: fmtNumber(byState[s]) }),
    ),
  );
}

// ---- controls ----

async function sendControls(state, body, button) {
  const result = $(`#${cid(state.live.id, "result")}`, state.node);
  say(result, t("ctl.sending"), "info");
  if (button) button.disabled = true;
  const res = await api("POST", `/api/campaigns/${encodeURIComponent(state.live.id)}/controls`, body);
  if (button) button.disabled = false;
  if (!res.ok) {
    say(result, errorText(res));
    return false;
  }
  const text = res.data && typeof res.data === "object" && typeof res.data.message === "string" ? res.data.message : t("ctl.accepted");
  say(result, text, "ok");
  return true;
}

async function applySettings(state) {
  const id = state.live.id;
  const result = $(`#${cid(id, "result")}`, state.node);
  const modeInput = $(`#${cid(id, "dial-mode")}`, state.node);
  const targetInput = $(`#${cid(id, "target")}`, state.node);
  const ratioInput = $(`#${cid(id, "max-ratio")}`, state.node);
  const body = {};
  const sent = {};
  if (modeInput.value && modeInput.value !== state.live.dial_mode) {
    body.dial_mode = modeInput.value;
    sent.dial_mode = modeInput.value;
  }
  const pct = Number(targetInput.value);
  if (targetInput.value.trim() === "" || !Number.isFinite(pct) || pct < 0 || pct > 100) {
    say(result, t("ctl.bad_target"));
    targetInput.focus();
    return;
  }
  const fraction = Math.round(pct * 100) / 10000;
  if (typeof state.live.target_abandon_rate !== "number" || Math.abs(fraction - state.live.target_abandon_rate) > 1e-9) {
    body.target_abandon_rate = fraction;
    sent.target = percentOf(fraction);
  }
  const ratio = Number(ratioInput.value);
  if (ratioInput.value.trim() === "" || !Number.isFinite(ratio) || ratio < 1) {
    say(result, t("ctl.bad_ratio"));
    ratioInput.focus();
    return;
  }
  if (typeof state.live.max_dial_ratio !== "number" || Math.abs(ratio - state.live.max_dial_ratio) > 1e-9) {
    body.max_dial_ratio = ratio;
    sent.ratio = String(ratio);
  }
  if (!Object.keys(body).length) {
    say(result, t("ctl.nothing"), "info");
    return;
  }
  const ok = await sendControls(state, body, $(`#${cid(id, "apply")}`, state.node));
  if (ok) {
    for (const [field, value] of Object.entries(sent)) {
      state.edits[field] = { sent: value, until: Date.now() + HOLD_MS };
    }
  }
}

// ---- charts (inline SVG) ----

function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function drawChart(node, series, key, { target, fixedMax, title }) {
  const width = Math.max(160, Math.round(node.getBoundingClientRect().width) || 300);
  const height = 96;
  const pad = { left: 38, right: 8, top: 8, bottom: 16 };
  node.setAttribute("viewBox", `0 0 ${width} ${height}`);
  node.setAttribute("width", width);
  node.setAttribute("height", height);
  const parts = [];
  const points = series
    .map((p) => ({ t: Date.parse(p.t), v: p[key] }))
    .filter((p) => !Number.isNaN(p.t) && typeof p.v === "number" && Number.isFinite(p.v))
    .sort((a, b) => a.t - b.t);
  const innerW = width - pad.left - pad.right;
  const innerH = height - pad.top - pad.bottom;
  if (!points.length) {
    parts.push(svg("text", { x: width / 2, y: height / 2, class: "chart-empty", "text-anchor": "middle" }, t("chart.no_data")));
    node.replaceChildren(...parts);
    node.setAttribute("aria-label", `${title}: ${t("chart.no_data")}`);
    return;
  }
  const t0 = points[0].t;
  const t1 = Math.max(points[points.length - 1].t, t0 + 60 * 60 * 1000);
  const peak = Math.max(...points.map((p) => p.v));
  let ymax = fixedMax ?? Math.max(0.01, peak * 1.15, typeof target === "number" ? target * 1.6 : 0);
  if (fixedMax && peak > fixedMax) ymax = peak;
  const x = (ms) => pad.left + ((ms - t0) / (t1 - t0)) * innerW;
  const y = (v) => pad.top + innerH - (Math.min(v, ymax) / ymax) * innerH;

  for (const frac of [0, 0.5, 1]) {
    const gy = y(ymax * frac);
    parts.push(svg("line", { x1: pad.left, x2: width - pad.right, y1: gy, y2: gy, class: "grid-line" }));
    parts.push(
      svg("text", { x: pad.left - 4, y: gy + 3, class: "axis", "text-anchor": "end" }, fmtPercent(ymax * frac, ymax < 0.1 ? 1 : 0)),
    );
  }
  parts.push(svg("text", { x: pad.left, y: height - 3, class: "axis" }, fmtTime(new Date(t0))));
  parts.push(svg("text", { x: width - pad.right, y: height - 3, class: "axis", "text-anchor": "end" }, fmtTime(new Date(t1))));

  const line = points.map((p, i) => `${i ? "L" : "M"}${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`).join("");
  const base = y(0).toFixed(1);
  const area = `${line}L${x(points[points.length - 1].t).toFixed(1)},${base}L${x(t0).toFixed(1)},${base}Z`;
  parts.push(svg("path", { d: area, class: `area area-${key}` }));
  parts.push(svg("path", { d: line, class: `line line-${key}` }));

  if (typeof target === "number") {
    const ty = y(target);
    parts.push(svg("line", { x1: pad.left, x2: width - pad.right, y1: ty, y2: ty, class: "target-line" }));
    parts.push(
      svg("text", { x: width - pad.right - 2, y: ty - 3, class: "axis target-label", "text-anchor": "end" }, `${t("chart.target_line")} ${fmtPercent(target, 2)}`),
    );
  }
  const last = points[points.length - 1];
  parts.push(svg("circle", { cx: x(last.t), cy: y(last.v), r: 2.5, class: `dot line-${key}` }));
  node.replaceChildren(...parts);
  node.setAttribute("aria-label", `${title}: ${fmtPercent(last.v, 2)}`);
}

// ---- agents ----

function agentRow(a) {
  const key = safeId(a.agent_id);
  const buttons = SPY_MODES.map((mode) =>
    el("button", {
      type: "button",
      class: `btn small spy-${mode}`,
      id: `spy-${mode}-${key}`,
      dataset: { mode },
      i18n: `spy.${mode}`,
      on: { click: () => spy(a.agent_id, mode) },
    }),
  );
  return el(
    "tr",
    { id: `agent-row-${key}`, dataset: { agentId: a.agent_id } },
    el("td", { class: "mono" , text: a.agent_id }),
    el("td", { class: "agent-name" }),
    el("td", { class: "agent-campaign" }),
    el("td", {}, el("span", { class: "state-badge small" })),
    el("td", { class: "num mono agent-since" }),
    el("td", { class: "agent-reason" }),
    el("td", { class: "num mono agent-attempt" }),
    el("td", { class: "actions" }, ...buttons),
  );
}

function updateAgents(agents, campaignsById) {
  const body = $("#agents-table tbody");
  const seen = new Set();
  let restarted = false;
  const sorted = [...agents].sort((a, b) => String(a.agent_id).localeCompare(String(b.agent_id), undefined, { numeric: true }));
  let previous = null;
  const counts = {};
  for (const a of sorted) {
    seen.add(String(a.agent_id));
    counts[a.state] = (counts[a.state] || 0) + 1;
    let row = body.querySelector(`tr[data-agent-id="${CSS.escape(String(a.agent_id))}"]`);
    if (!row) row = agentRow(a);
    // keep the order without re-inserting rows that are already in place
    const wanted = previous ? previous.nextSibling : body.firstChild;
    if (row !== wanted) body.insertBefore(row, wanted);
    previous = row;
    row.dataset.state = a.state;
    row.querySelector(".agent-name").textContent = a.name || "";
    const campaign = campaignsById.get(String(a.campaign));
    row.querySelector(".agent-campaign").textContent = campaign ? campaign.name : a.campaign ?? t("dash");
    const badge = row.querySelector(".state-badge");
    badge.dataset.state = a.state;
    badge.textContent = tOr(`state.${a.state}`, a.state);
    const since = row.querySelector(".agent-since");
    if (a.since && since.dataset.since !== a.since) {
      since.dataset.since = a.since;
      restarted = true;
    }
    row.querySelector(".agent-reason").textContent = a.pause_reason ? tOr(`reason.${a.pause_reason}`, a.pause_reason) : "";
    row.querySelector(".agent-attempt").textContent = a.attempt_id ?? "";
    for (const b of row.querySelectorAll(".actions button")) {
      b.disabled = a.state === "logged_out";
      b.setAttribute("aria-label", `${t(`spy.${b.dataset.mode}`)}: ${a.name || a.agent_id}`);
    }
  }
  for (const row of [...body.rows]) {
    if (!seen.has(row.dataset.agentId)) row.remove();
  }
  if (restarted) tick(body); // a new state's time shows at once, not at the next second's tick
  show($("#no-agents"), !sorted.length);
  $("#agents-summary").replaceChildren(...stateChips(counts));
}

async function spy(agentId, mode) {
  const input = $("#supervisor-phone");
  const phone = input.value.trim();
  if (!phone) {
    message(t("sup.need_phone"));
    input.focus();
    return;
  }
  const res = await api("POST", "/api/spy", { agent_id: agentId, mode, phone });
  if (!res.ok) {
    message(errorText(res));
    return;
  }
  const agent = lastLive?.agents?.find((a) => a.agent_id === agentId);
  message(t("sup.spy_started", { mode: t(`spy.${mode}_verb`), agent: agent?.name || agentId }), "ok");
}

// ---- the live feed ----

function renderLive(live) {
  lastLive = live;
  if (live.at) {
    syncClock(live.at);
    setText($("#last-update"), "sup.updated", { time: fmtTime(live.at, true) });
  }
  const campaigns = live.campaigns || [];
  const byId = new Map(campaigns.map((c) => [String(c.id), c]));
  const box = $("#campaigns");
  for (const [id, state] of cards) {
    if (!byId.has(id)) {
      state.node.remove();
      cards.delete(id);
    }
  }
  for (const c of campaigns) {
    let state = cards.get(String(c.id));
    if (!state) {
      state = buildCard(c);
      cards.set(String(c.id), state);
      box.append(state.node);
    }
    updateCard(state, c);
  }
  show($("#no-campaigns"), !campaigns.length);
  if (live.agents) updateAgents(live.agents, byId);
}

async function init() {
  const me = await loadMe(false);
  if (!me) return;
  setupHeader(me, (text) => message(text));
  const phone = $("#supervisor-phone");
  try {
    phone.value = localStorage.getItem(PHONE_KEY) || "";
  } catch {
    // no storage: typed each time
  }
  phone.addEventListener("change", () => {
    try {
      localStorage.setItem(PHONE_KEY, phone.value.trim());
    } catch {
      // not remembered
    }
  });
  onLanguageChange(() => {
    if (lastLive) renderLive(lastLive);
    showConnection($("#conn-status"), $("#conn-status").dataset.status);
  });
  window.addEventListener("resize", () => lastLive && renderLive(lastLive));
  // the figures before the first push
  const first = await api("GET", "/api/campaigns");
  if (first.ok && first.data && !lastLive) {
    const campaigns = Array.isArray(first.data) ? first.data : first.data.campaigns;
    if (Array.isArray(campaigns)) renderLive({ ...(Array.isArray(first.data) ? {} : first.data), campaigns });
  }
  startTicker();
  new LiveSocket("/ws/supervisor", {
    onMessage: (msg) => {
      if (msg.type === "live") renderLive(msg);
    },
    onStatus: (s, n) => showConnection($("#conn-status"), s, n),
  }).start();
}

init();
