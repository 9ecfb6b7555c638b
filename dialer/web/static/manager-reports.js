// The reports view of the managers' pages: a period's figures by campaign, team or collector,
// a bar chart of one figure and a line of the period's days, both drawn here as inline SVG,
// the agents' performance, and the same report as CSV.

import { t, tOr, language, fmtDate, fmtMoney, fmtNumber, fmtPercent, fmtDuration } from "./i18n.js";
import { api, errorText, el, $, say, show } from "./common.js";

const SVG = "http://www.w3.org/2000/svg";
// The figures of the table, in order, with how each is written.
const COLUMNS = [
  ["attempts", "count"],
  ["contacts", "count"],
  ["contact_rate", "rate"],
  ["right_party_contact_rate", "rate"],
  ["promises", "count"],
  ["promise_rate", "rate"],
  ["kept_promise_rate", "rate"],
  ["collected", "money"],
  ["recovery_rate", "rate"],
  ["abandon_rate", "rate"],
  ["talk_seconds", "duration"],
];
const AGENT_COLUMNS = [
  ["calls", "count"],
  ["talk_seconds", "duration"],
  ["promises", "count"],
  ["promised_amount", "money"],
  ["collected", "money"],
  ["qa_score", "score"],
];
const state = { ready: false, data: null };

function today() {
  const d = new Date();
  return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, "0")}-${String(d.getDate()).padStart(2, "0")}`;
}

function write(value, how, currency) {
  if (value === null || value === undefined) return t("dash");
  if (how === "rate") return fmtPercent(value, 1);
  if (how === "money") return fmtMoney(value, currency);
  if (how === "duration") return fmtDuration(value);
  if (how === "score") return fmtNumber(value, 1);
  return fmtNumber(value, 0);
}

function params() {
  return new URLSearchParams({
    day: $("#rp-day").value || today(),
    period: $("#rp-period").value,
    by: $("#rp-by").value,
  });
}

export function setupReports() {
  if (state.ready) return;
  state.ready = true;
  $("#rp-day").value = today();
  const figure = $("#rp-figure");
  for (const [key, how] of COLUMNS) {
    if (how !== "duration") figure.append(el("option", { value: key, i18n: `mg.fig.${key}` }));
  }
  figure.value = "contact_rate";
  $("#report-form").addEventListener("submit", (event) => {
    event.preventDefault();
    load();
  });
  figure.addEventListener("change", renderReports);
  load();
}

async function load() {
  const error = $("#rp-error");
  const query = params();
  $("#rp-go").disabled = true;
  const res = await api("GET", `/api/manager/reports?${query}`);
  $("#rp-go").disabled = false;
  if (!res.ok) {
    state.data = null;
    say(error, errorText(res));
    renderReports();
    return;
  }
  say(error, "");
  state.data = res.data;
  const csv = $("#rp-csv");
  csv.href = `/api/manager/reports.csv?${query}`;
  csv.hidden = false;
  renderReports();
}

function headerCell(key) {
  const definition = state.data && state.data.definitions ? state.data.definitions[key] : "";
  return el("th", { scope: "col", class: "num", title: definition || undefined, i18n: `mg.fig.${key}` });
}

export function renderReports() {
  const data = state.data;
  const table = $("#rp-table");
  const chart = $("#rp-chart");
  chart.replaceChildren();
  table.tHead.replaceChildren();
  table.tBodies[0].replaceChildren();
  for (const old of table.querySelectorAll("tfoot")) old.remove();
  for (const old of document.querySelectorAll("#view-reports .mg-extra")) old.remove();
  if (!data) {
    show($("#rp-empty"), false);
    return;
  }
  const currency = data.currency;
  table.tHead.append(el("tr", {}, el("th", { scope: "col", i18n: `mg.rp.by.${data.by}` }), ...COLUMNS.map(([key]) => headerCell(key))));
  for (const row of data.rows) {
    table.tBodies[0].append(
      el("tr", { dataset: { key: String(row.key) } },
        el("td", { class: "strong", text: row.label || row.key }),
        ...COLUMNS.map(([key, how]) => el("td", { class: "num", dataset: { figure: key }, text: write(row[key], how, currency) })),
      ),
    );
  }
  table.append(
    el("tfoot", {}, el("tr", {}, el("th", { i18n: "mg.rp.total" }),
      ...COLUMNS.map(([key, how]) => el("td", { class: "num strong", dataset: { figure: key }, text: write(data.totals[key], how, currency) })))),
  );
  show($("#rp-empty"), data.rows.length === 0);
  const figure = $("#rp-figure").value;
  const how = (COLUMNS.find(([k]) => k === figure) || [figure, "count"])[1];
  const title = el("p", { class: "mg-chart-title" },
    t("mg.rp.period_of", { from: fmtDate(data.start), to: fmtDate(data.end) }), " · ", tOr(`mg.fig.${figure}`, figure));
  chart.append(title, barChart(data.rows.map((r) => [r.label || String(r.key), r[figure]]), how, currency));
  if (data.days && data.days.length > 1) {
    chart.append(el("p", { class: "mg-chart-title", i18n: "mg.rp.by_day" }), lineChart(data.days));
  }
  const panel = table.parentElement;
  if (data.agents && data.agents.length) {
    panel.append(
      el("h3", { class: "section-title mg-extra", i18n: "mg.rp.agents" }),
      el("table", { class: "grid mg-extra", id: "rp-agents" },
        el("thead", {}, el("tr", {}, el("th", { i18n: "mg.col.collector" }),
          ...AGENT_COLUMNS.map(([key]) => el("th", { class: "num", i18n: `mg.fig.${key}` })))),
        el("tbody", {}, ...data.agents.map((a) => el("tr", {}, el("td", { class: "strong", text: a.agent_id }),
          ...AGENT_COLUMNS.map(([key, kind]) => el("td", { class: "num", text: write(a[key], kind, currency) }))))),
      ),
    );
  }
  for (const note of data.notes || []) panel.append(el("p", { class: "hint mg-extra", text: note }));
}

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

// Horizontal bars, one per row, the figure written at each bar's end.
function barChart(pairs, how, currency) {
  const values = pairs.map(([, v]) => (v === null || v === undefined ? null : Number(v)));
  const top = Math.max(how === "rate" ? 0.0001 : 1, ...values.filter((v) => v !== null));
  const rowH = 24;
  const labelW = 160;
  const width = 640;
  const height = Math.max(rowH, pairs.length * rowH) + 8;
  const box = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "mg-bars", role: "img", "aria-label": t("mg.rp.chart") });
  pairs.forEach(([label, _], i) => {
    const v = values[i];
    const y = 4 + i * rowH;
    box.append(svg("text", { x: labelW - 8, y: y + 15, "text-anchor": "end", class: "mg-bar-label" }, label));
    const w = v === null ? 0 : Math.max(1, ((width - labelW - 90) * v) / top);
    box.append(svg("rect", { x: labelW, y: y + 3, width: w, height: rowH - 8, rx: 2, class: "mg-bar", "data-label": label }));
    box.append(svg("text", { x: labelW + w + 6, y: y + 15, class: "mg-bar-value" }, write(v, how, currency)));
  });
  return box;
}

// The period's days: attempts and contacts as two lines.
function lineChart(days) {
  const width = 640;
  const height = 160;
  const pad = { l: 44, r: 12, t: 10, b: 24 };
  const top = Math.max(1, ...days.map((d) => Number(d.attempts) || 0));
  const x = (i) => pad.l + ((width - pad.l - pad.r) * i) / Math.max(1, days.length - 1);
  const y = (v) => height - pad.b - ((height - pad.t - pad.b) * v) / top;
  const box = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "mg-lines", role: "img", "aria-label": t("mg.rp.by_day") });
  box.append(svg("line", { x1: pad.l, y1: y(0), x2: width - pad.r, y2: y(0), class: "mg-axis" }));
  box.append(svg("text", { x: pad.l - 6, y: y(top) + 4, "text-anchor": "end", class: "mg-bar-label" }, fmtNumber(top)));
  box.append(svg("text", { x: pad.l - 6, y: y(0) + 4, "text-anchor": "end", class: "mg-bar-label" }, "0"));
  for (const [key, cls] of [["attempts", "mg-line-a"], ["contacts", "mg-line-b"]]) {
    const points = days.map((d, i) => `${x(i).toFixed(1)},${y(Number(d[key]) || 0).toFixed(1)}`).join(" ");
    box.append(svg("polyline", { points, class: cls, fill: "none" }));
  }
  // A day of the period as "May 4" / "5月4日" (the period's year is in the title).
  const short = new Intl.DateTimeFormat(language(), { month: "short", day: "numeric" });
  const dayOf = (iso) => {
    const [yy, mm, dd] = String(iso).split("-").map(Number);
    return short.format(new Date(yy, mm - 1, dd));
  };
  days.forEach((d, i) => {
    const last = i === days.length - 1;
    if (days.length <= 8 || i % Math.ceil(days.length / 8) === 0 || last) {
      const anchor = i === 0 ? "start" : last ? "end" : "middle";
      box.append(svg("text", { x: x(i), y: height - 6, "text-anchor": anchor, class: "mg-bar-label" }, dayOf(d.date)));
    }
  });
  const legend = el("p", { class: "mg-legend" },
    el("span", { class: "mg-key mg-line-a" }), t("mg.fig.attempts"), " ",
    el("span", { class: "mg-key mg-line-b" }), t("mg.fig.contacts"));
  return el("div", {}, box, legend);
}
