// The managers' pages: the case list with its filters, one case whole (timeline, debts,
// promises, payments, strategy and risk, notes), the tenant's strategies and message templates
// edited with every problem shown at its key and line, template previews, and the reports.
// Views by the address's hash: #cases, #case/ID, #strategies, #templates, #reports.

import { t, tOr, onLanguageChange, language, setLanguage, fmtDate, fmtDateTime, fmtMoney, fmtNumber } from "./i18n.js";
import { api, errorText, el, $, say, show, setupHeader } from "./common.js";
import { renderReports, setupReports } from "./manager-reports.js";
import { setupSend, segmentsChanged } from "./manager-send.js";

const PAGE = 50;
const state = {
  me: null,
  options: null,
  list: { params: null, offset: 0, data: null },
  case: { id: null, data: null },
  // The tenant's strategies as last read or checked: their titles name them everywhere.
  strategies: null,
  // The tenant's saved segments.
  segments: [],
  // The last template preview shown.
  preview: null,
  // The tenant's collectors with their load (a case is given by hand to an active one). Read
  // once, and again after a give or a new list: the loads are a count over every case.
  collectors: null,
};

function message(text, tone = "error") {
  say($("#mg-message"), text, tone);
}

// The field a refusal is about: the last name in its location (a list's item index is not).
function fieldOf(detail) {
  const names = Array.isArray(detail && detail.loc) ? detail.loc.filter((part) => typeof part === "string") : [];
  return names.length > 1 ? names[names.length - 1] : "";
}

// A refusal as the person can act on it: each field named in their language.
export function refusal(res) {
  const detail = res.data && res.data.detail;
  if (res.status === 422 && Array.isArray(detail)) {
    return detail
      .map((d) => {
        const field = fieldOf(d);
        const label = field ? tOr(`mg.field.${field}`, field) : "";
        const msg = String(d.msg || "");
        return label && !msg.startsWith(`${field}:`) ? `${label}: ${msg}` : msg;
      })
      .join(" ");
  }
  return errorText(res);
}

function money(amount, currency) {
  return currency ? fmtMoney(amount, currency) : `${fmtMoney(amount)} ${t("mg.mixed")}`;
}

function statusChip(status) {
  return el("span", { class: "mg-status", dataset: { status }, text: tOr(`mg.status.${status}`, status) });
}

function actorName(actor) {
  if (!actor) return t("mg.actor.system");
  const [kind, ...rest] = String(actor).split(":");
  const name = rest.join(":");
  if (kind === "system") return t("mg.actor.job", { job: name });
  return name || actor;
}

function strategyTitle(name) {
  const found = state.strategies && state.strategies.strategies && state.strategies.strategies[name];
  if (!found) return name;
  return language() === "zh-CN" && found.title_zh ? found.title_zh : found.title;
}

// ---- views ----

const VIEWS = ["cases", "case", "strategies", "templates", "reports"];

function route() {
  const hash = location.hash || "#cases";
  const oneCase = /^#case\/(\d+)$/.exec(hash);
  const view = oneCase ? "case" : VIEWS.find((v) => hash === `#${v}`) || "cases";
  for (const v of VIEWS) show($(`#view-${v}`), v === view);
  for (const tab of ["cases", "strategies", "templates", "reports"]) {
    $(`#tab-${tab}`).classList.toggle("active", tab === view || (tab === "cases" && view === "case"));
  }
  if (view === "case") openCase(Number(oneCase[1]));
  else if (view === "cases" && !state.list.data) runList(0);
  else if (view === "strategies") editors.strategies.open();
  else if (view === "templates") editors.templates.open();
  else if (view === "reports") setupReports();
}

// ---- the case list ----

async function loadOptions() {
  const res = await api("GET", "/api/manager/options");
  if (!res.ok) {
    message(refusal(res));
    return;
  }
  state.options = res.data;
  const fill = (select, values, key) => {
    for (const v of values) select.append(el("option", { value: v, ...(key ? { i18n: `${key}.${v}` } : { text: v }) }));
  };
  fill($("#f-status"), res.data.statuses, "mg.status");
  fill($("#f-collector"), res.data.collectors);
  fill($("#f-strategy"), res.data.strategies);
  fill($("#f-band"), res.data.bands, "mg.band");
  fill($("#f-sort"), res.data.sorts, "mg.sort");
  $("#f-strategy").disabled = res.data.strategies.length === 0;
  $("#f-band").disabled = res.data.bands.length === 0;
  for (const id of ["#st-save", "#tp-save"]) {
    $(id).hidden = !res.data.can_edit;
  }
  $("#segment-save-row").hidden = !res.data.can_edit;
  await loadSegments();
}

async function loadSegments(chosen) {
  const res = await api("GET", "/api/manager/segments");
  if (!res.ok) return;
  state.segments = res.data;
  const select = $("#f-segment");
  const keep = chosen ?? select.value;
  select.replaceChildren(
    el("option", { value: "", i18n: "mg.none" }),
    ...res.data.map((seg) => el("option", { value: seg.name, title: seg.description || undefined, text: seg.name })),
  );
  select.value = keep;
  segmentsChanged(keep);
}

// The list's filters in a segment's keys (dialer/cases/segments.py); a chosen segment's own
// filter underneath, the form's on top.
function segmentFilter() {
  const form = $("#cases-form").elements;
  const base = (state.segments || []).find((seg) => seg.name === form.segment.value);
  const f = { ...(base ? base.filter : {}) };
  const number = (name) => (form[name].value.trim() === "" ? undefined : Number(form[name].value));
  const set = (key, value) => {
    if (value !== undefined && value !== "") f[key] = value;
  };
  if (form.status.value) f.status = [form.status.value];
  set("days_past_due_min", number("dpd_min"));
  set("days_past_due_max", number("dpd_max"));
  set("balance_min", number("balance_min"));
  set("balance_max", number("balance_max"));
  if (form.collector.value === "-") {
    delete f.collector;
    f.unassigned = true;
  } else if (form.collector.value) {
    delete f.unassigned;
    f.collector = [form.collector.value];
  }
  if (form.band.value) f.risk_band = [form.band.value];
  if (form.strategy.value) f.strategy = [form.strategy.value];
  return f;
}

async function saveSegment() {
  const status = $("#segment-status");
  const input = $("#segment-name");
  const name = input.value.trim();
  if (!name) {
    say(status, t("mg.seg.need_name"));
    input.focus();
    return;
  }
  const filter = segmentFilter();
  $("#segment-save").disabled = true;
  const res = await api("POST", "/api/manager/segments", { name, filter });
  $("#segment-save").disabled = false;
  if (!res.ok) {
    say(status, refusal(res));
    return;
  }
  const note = $("#f-q").value.trim() ? ` ${t("mg.seg.no_text")}` : "";
  say(status, t("mg.seg.saved", { name: res.data.name }) + note, "ok");
  input.value = "";
  await loadSegments(res.data.name);
}

function listParams() {
  const form = $("#cases-form");
  const params = new URLSearchParams();
  for (const name of ["q", "segment", "status", "dpd_min", "dpd_max", "balance_min", "balance_max", "collector", "strategy", "band", "sort"]) {
    const value = form.elements[name].value.trim();
    if (value) params.set(name, value);
  }
  return params;
}

async function runList(offset = 0) {
  const error = $("#cases-error");
  for (const input of document.querySelectorAll("#cases-form [aria-invalid]")) input.removeAttribute("aria-invalid");
  const params = new URLSearchParams(state.list.params || listParams());
  params.set("limit", String(PAGE));
  params.set("offset", String(offset));
  say(error, "");
  state.collectors = null; // the loads are read again with the next case opened
  $("#btn-cases").disabled = true;
  $("#cases").setAttribute("aria-busy", "true");
  const res = await api("GET", `/api/manager/cases?${params}`);
  $("#btn-cases").disabled = false;
  $("#cases").setAttribute("aria-busy", "false");
  if (!res.ok) {
    say(error, refusal(res));
    const detail = res.data && res.data.detail;
    const field = Array.isArray(detail) && detail[0] ? fieldOf(detail[0]) : null;
    const input = field && $(`#cases-form [name="${field}"]`);
    if (input) {
      input.setAttribute("aria-invalid", "true");
      input.focus();
    }
    return;
  }
  state.list.offset = offset;
  state.list.data = res.data;
  renderList();
}

function renderList() {
  const data = state.list.data;
  const body = $("#cases tbody");
  body.replaceChildren();
  if (!data) return;
  for (const c of data.cases) {
    const href = `#case/${c.id}`;
    body.append(
      el("tr", { class: "mg-row", dataset: { case: String(c.id) },
        on: { click: (e) => { if (!e.target.closest("a")) location.hash = href; } } },
        el("td", { class: "num" }, el("a", { href, text: `#${c.id}` })),
        el("td", {}, el("span", { class: "strong", text: c.debtor_name }), " ", el("span", { class: "muted mono", text: c.debtor_external_id })),
        el("td", {}, statusChip(c.status)),
        el("td", { class: "num", text: t("mg.unit.days", { n: fmtNumber(c.days_past_due) }) }),
        el("td", { class: "num", text: money(c.balance, c.currency) }),
        el("td", { text: c.agent_id || t("mg.unassigned") }),
        el("td", { text: c.strategy ? strategyTitle(c.strategy) : t("dash") }),
        el("td", {}, c.band ? el("span", { class: "mg-band", dataset: { band: c.band }, i18n: `mg.band.${c.band}` }) : t("dash")),
        el("td", { class: "nowrap", text: fmtDateTime(c.status_changed_at) }),
      ),
    );
  }
  show($("#cases-empty"), data.cases.length === 0);
  const from = state.list.offset + 1;
  const to = state.list.offset + data.cases.length;
  $("#cases-range").textContent = data.cases.length ? t("mg.range", { from, to }) : "";
  $("#cases-prev").disabled = state.list.offset === 0;
  $("#cases-next").disabled = !data.more;
}

// ---- one case ----

async function openCase(id) {
  if (state.case.id !== id) {
    state.case = { id, data: null };
    $("#h-case").textContent = t("mg.case.title", { id, name: "" });
    for (const sel of ["#timeline", "#debts tbody", "#promises tbody", "#payments tbody", "#notes", "#case-facts", "#case-strategy"]) {
      $(sel).replaceChildren();
    }
    $("#case-status").replaceChildren();
    say($("#note-error"), "");
    say($("#give-error"), "");
    $("#give-why").value = "";
    $("#give-keep").checked = true;
  }
  const [res, strategy, collectors] = await Promise.all([
    api("GET", `/api/cases/${id}`),
    api("GET", `/api/manager/cases/${id}/strategy`),
    state.collectors ? { ok: true, data: state.collectors } : api("GET", "/api/manager/collectors"),
  ]);
  if (state.case.id !== id) return; // another case was opened meanwhile
  if (!res.ok) {
    message(refusal(res));
    return;
  }
  message("");
  state.case.data = res.data;
  state.case.strategy = strategy.ok ? strategy.data : null;
  state.collectors = collectors.ok ? collectors.data : null;
  renderCase();
}

// ---- the case's collector, given by hand ----

function collectorLabel(c) {
  const name = c.name && c.name !== c.agent_id ? `${c.name} (${c.agent_id})` : c.agent_id;
  const load = t("mg.give.load", { open: fmtNumber(c.open_cases), capacity: fmtNumber(c.capacity) });
  return [name, c.team, load].filter(Boolean).join(" · ");
}

function renderCollector(c) {
  const who = (state.collectors || []).find((x) => x.agent_id === c.agent_id);
  $("#case-collector").replaceChildren(
    el("span", { class: "strong", text: c.agent_id ? (who ? collectorLabel(who) : c.agent_id) : t("mg.give.queue") }),
    c.agent_kept ? el("span", { id: "case-kept", class: "mg-kept", i18n: "mg.give.kept" }) : "",
  );
  const given = state.case.given;
  if (given) say($("#give-error"), t(given.key, { who: given.who || t("mg.give.queue") }), "ok");
  const form = $("#give-form");
  show(form, Boolean(state.options && state.options.can_edit && state.collectors));
  if (form.hidden) return;
  const select = $("#give-agent");
  const before = select.value;
  select.replaceChildren(
    el("option", { value: "", text: t("mg.give.queue") }),
    ...state.collectors.filter((x) => x.active).map((x) => el("option", { value: x.agent_id, text: collectorLabel(x) })),
  );
  const values = [...select.options].map((o) => o.value);
  select.value = values.includes(before) && before ? before : values.includes(c.agent_id || "") ? c.agent_id || "" : "";
}

async function giveCase(event) {
  event.preventDefault();
  const error = $("#give-error");
  const why = $("#give-why").value.trim();
  if (!why) {
    say(error, t("mg.ov.need_why"));
    $("#give-why").focus();
    return;
  }
  const body = { agent_id: $("#give-agent").value || null, why, keep: $("#give-keep").checked };
  $("#give-set").disabled = true;
  const res = await api("POST", `/api/manager/cases/${state.case.id}/collector`, body);
  $("#give-set").disabled = false;
  if (!res.ok) {
    say(error, refusal(res));
    return;
  }
  // Kept as a key, so a language switch says it again in the new language.
  state.case.given = { key: res.data.kept ? "mg.give.done_kept" : "mg.give.done", who: res.data.agent_id };
  $("#give-why").value = "";
  state.collectors = null; // a load changed
  await openCase(state.case.id);
}

function facts(pairs) {
  return pairs.flatMap(([key, value]) => [el("dt", { i18n: key }), el("dd", {}, value)]);
}

function renderCase() {
  const c = state.case.data;
  if (!c) return;
  $("#h-case").textContent = t("mg.case.title", { id: c.id, name: c.debtor_name });
  $("#case-status").replaceChildren(statusChip(c.status));
  const balances = Object.entries(c.balance).map(([cur, amount]) => fmtMoney(amount, cur)).join(" + ") || t("dash");
  $("#case-facts").replaceChildren(
    ...facts([
      ["mg.col.debtor_id", c.debtor_external_id],
      ["mg.col.balance", balances],
      ["mg.col.collector", c.agent_id ? (c.agent_kept ? `${c.agent_id} · ${t("mg.give.kept")}` : c.agent_id) : t("mg.unassigned")],
      ["mg.col.changed", fmtDateTime(c.status_changed_at)],
      ["mg.col.opened", fmtDateTime(c.created_at)],
    ]),
  );
  renderCollector(c);
  renderStrategy();
  renderTimeline(c);
  const debts = $("#debts tbody");
  debts.replaceChildren(
    ...c.debts.map((d) =>
      el("tr", {},
        el("td", { class: "mono", text: d.external_id }),
        el("td", { class: "num", text: fmtMoney(d.principal, d.currency) }),
        el("td", { class: "num strong", text: fmtMoney(d.balance, d.currency) }),
        el("td", { class: "num", text: t("mg.unit.days", { n: fmtNumber(d.days_past_due) }) }),
        el("td", { text: tOr(`mg.debt.${d.status}`, d.status) }),
      ),
    ),
  );
  $("#promises tbody").replaceChildren(
    ...c.promises.map((p) =>
      el("tr", { dataset: { status: p.status } },
        el("td", { class: "num", text: fmtMoney(p.amount, p.currency) }),
        el("td", { class: "nowrap", text: fmtDate(p.due_date) }),
        el("td", {}, el("span", { class: "mg-promise", dataset: { status: p.status }, text: tOr(`mg.promise.${p.status}`, p.status) })),
        el("td", { text: actorName(p.created_by) }),
      ),
    ),
  );
  show($("#promises-empty"), c.promises.length === 0);
  $("#payments tbody").replaceChildren(
    ...c.payments.map((p) =>
      el("tr", {},
        el("td", { class: "nowrap", text: fmtDate(p.paid_on) }),
        el("td", { class: "num strong", text: fmtMoney(p.amount, p.currency) }),
        el("td", { class: "mono", text: p.payment_id }),
        el("td", { text: tOr(`mg.source.${p.source}`, p.source) }),
      ),
    ),
  );
  show($("#payments-empty"), c.payments.length === 0);
  $("#notes").replaceChildren(
    ...c.notes.map((n) =>
      el("li", { class: "mg-note" },
        el("div", { class: "muted" }, `${actorName(n.author)} · ${fmtDateTime(n.created_at)}`),
        el("div", { class: "mg-note-body", text: n.body }),
      ),
    ),
  );
}

// The case's strategy, step, reasons and risk score term by term, when the runs gave them.
function renderStrategy() {
  const box = $("#case-strategy");
  box.replaceChildren();
  const s = state.case.strategy;
  if (!s || (!s.strategy && !s.score)) {
    box.append(el("p", { class: "empty-box", i18n: "mg.case.no_strategy" }));
    box.append(overrideForm(s));
    return;
  }
  if (s.strategy) {
    const where = s.finished ? t("mg.case.finished") : s.step === null ? "" : t("mg.case.step", { n: s.step + 1 });
    box.append(
      el("p", { class: "mg-strategy-name" },
        el("span", { class: "strong", text: strategyTitle(s.strategy) }), " ",
        el("span", { class: "muted mono", text: s.strategy }),
        where ? el("span", { class: "muted", text: ` · ${where}` }) : null,
        s.queued_campaign ? el("span", { class: "muted", text: ` · ${t("mg.case.queued", { campaign: s.queued_campaign })}` }) : null,
      ),
    );
    if (s.override) {
      box.append(el("p", { class: "mg-override", text: t("mg.case.override", { who: actorName(s.override.by), why: s.override.why || "" }) }));
    }
    if (s.reasons.length) box.append(el("ul", { class: "mg-reasons" }, ...s.reasons.map((r) => el("li", { text: r }))));
  }
  if (s.score) {
    const score = s.score;
    box.append(
      el("p", { class: "mg-score" },
        el("span", { i18n: "mg.case.risk" }), " ",
        el("span", { class: "strong", text: fmtNumber(score.value, 3) }), " ",
        score.band ? el("span", { class: "mg-band", dataset: { band: score.band }, i18n: `mg.band.${score.band}` }) : null,
        score.scored_at ? el("span", { class: "muted", text: ` · ${fmtDateTime(score.scored_at)}` }) : null,
      ),
    );
    if (score.terms.length) {
      box.append(
        el("table", { class: "grid mg-terms" },
          el("thead", {}, el("tr", {}, el("th", { i18n: "mg.case.term" }), el("th", { class: "num", i18n: "mg.case.points" }))),
          el("tbody", {}, ...score.terms.map((term) =>
            el("tr", {}, el("td", { text: term.reason || term.feature }), el("td", { class: "num mono", text: fmtNumber(term.points, 3) })))),
        ),
      );
    }
  }
  box.append(overrideForm(s));
}

// A manager puts the case on a strategy by hand (or hands it back to the nightly choice).
function overrideForm(s) {
  if (!state.options || !state.options.can_edit || !state.strategies) return "";
  const names = Object.keys(state.strategies.strategies);
  const select = el("select", { id: "ov-strategy", name: "strategy", "aria-label": t("mg.ov.strategy") },
    ...names.map((n) => el("option", { value: n, text: strategyTitle(n) })));
  if (s && s.strategy && names.includes(s.strategy)) select.value = s.strategy;
  const why = el("input", { id: "ov-why", name: "why", maxlength: "500", placeholder: t("mg.ov.why"), "aria-label": t("mg.ov.why") });
  const error = el("p", { id: "ov-error", class: "message", role: "alert", hidden: true });
  const send = async (strategy) => {
    const reason = why.value.trim();
    if (!reason) {
      say(error, t("mg.ov.need_why"));
      why.focus();
      return;
    }
    const res = await api("POST", `/api/manager/cases/${state.case.id}/strategy`, strategy ? { strategy, why: reason } : { why: reason });
    if (!res.ok) {
      say(error, refusal(res));
      return;
    }
    state.case.strategy = res.data;
    await openCase(state.case.id);
  };
  return el("div", { class: "mg-override-form" },
    el("span", { class: "muted", i18n: "mg.ov.title" }), select, why,
    el("button", { id: "ov-set", type: "button", class: "btn small", i18n: "mg.ov.set", on: { click: () => send(select.value) } }),
    s && s.override ? el("button", { id: "ov-clear", type: "button", class: "btn small", i18n: "mg.ov.clear", on: { click: () => send(null) } }) : null,
    error);
}

function timelineText(entry) {
  const d = entry.data || {};
  switch (entry.kind) {
    case "call": {
      const outcome = d.outcome ? tOr(`outcome.${d.outcome}`, d.outcome) : tOr(`mg.attempt.${d.status}`, d.status || "");
      const parts = [t("mg.tl.call", { outcome })];
      if (d.disposition) parts.push(tOr(`code.${d.disposition}`, d.disposition));
      if (d.talk_s !== null && d.talk_s !== undefined) parts.push(t("mg.tl.talk", { s: fmtNumber(d.talk_s, 0) }));
      if (d.note) parts.push(`“${d.note}”`);
      return parts.join(" · ");
    }
    case "note":
      return d.body || entry.summary;
    case "payment":
      return t("mg.tl.payment", { amount: fmtMoney(d.amount, d.currency), day: fmtDate(d.paid_on), id: d.payment_id });
    case "promise":
      return t("mg.tl.promise", { amount: fmtMoney(d.amount, d.currency), day: fmtDate(d.due_date) });
    case "promise_resolved":
      return t("mg.tl.promise_resolved", { amount: fmtMoney(d.amount, d.currency), status: tOr(`mg.promise.${d.status}`, d.status) });
    case "status":
      return t("mg.tl.status", { from: tOr(`mg.status.${d.from}`, d.from || t("dash")), to: tOr(`mg.status.${d.to}`, d.to || t("dash")), why: d.reason || "" });
    case "assignment":
      if (kindOf(entry) === "strategy") {
        return t("mg.tl.assignment", { from: d.from ? strategyTitle(d.from) : t("dash"), to: d.to ? strategyTitle(d.to) : t("dash"), why: d.reason || "" });
      }
      return t("mg.tl.assignment", { from: d.from || t("mg.unassigned"), to: d.to || t("mg.unassigned"), why: d.reason || "" });
    default:
      return entry.summary;
  }
}

// History rows other than status come as "assignment"; a strategy's change says so itself.
function kindOf(entry) {
  if (entry.kind === "assignment" && /^(strategy|override):/.test(entry.summary || "")) return "strategy";
  return entry.kind;
}

function renderTimeline(c) {
  const list = $("#timeline");
  // newest first: what happened last is what a manager looks for
  const entries = [...c.timeline].reverse();
  list.replaceChildren(
    ...entries.map((e) =>
      el("li", { class: "mg-tl", dataset: { kind: e.kind, ref: e.ref } },
        el("span", { class: "mg-tl-at nowrap muted", text: fmtDateTime(e.at) }),
        el("span", { class: "mg-tl-kind", dataset: { kind: kindOf(e) }, text: tOr(`mg.kind.${kindOf(e)}`, e.kind) }),
        el("span", { class: "mg-tl-text", text: timelineText(e) }),
        el("span", { class: "mg-tl-who muted", text: e.actor ? actorName(e.actor) : "" }),
      ),
    ),
  );
  show($("#timeline-empty"), entries.length === 0);
}

async function addNote(event) {
  event.preventDefault();
  const box = $("#note-body");
  const error = $("#note-error");
  const body = box.value.trim();
  if (!body) {
    say(error, t("mg.note.empty"));
    box.focus();
    return;
  }
  $("#note-add").disabled = true;
  const res = await api("POST", `/api/cases/${state.case.id}/notes`, { body });
  $("#note-add").disabled = false;
  if (!res.ok) {
    say(error, refusal(res));
    return;
  }
  say(error, "");
  box.value = "";
  await openCase(state.case.id);
}

// ---- the editors (strategies, templates) ----

class Editor {
  constructor(kind, prefix) {
    this.kind = kind;
    this.prefix = prefix;
    this.doc = null;
    this.checked = null;
    this.timer = null;
    this.seq = 0;
    this.text = $(`#${prefix}-text`);
    this.gutter = $(`#${prefix}-gutter`);
    this.text.addEventListener("input", () => {
      this.renderGutter();
      clearTimeout(this.timer);
      this.timer = setTimeout(() => this.check(), 700);
    });
    this.text.addEventListener("scroll", () => {
      this.gutter.scrollTop = this.text.scrollTop;
    });
    $(`#${prefix}-check`).addEventListener("click", () => this.check(true));
    $(`#${prefix}-save`).addEventListener("click", () => this.save());
    $(`#${prefix}-reload`).addEventListener("click", () => this.load());
  }

  async open() {
    if (!this.doc) await this.load();
  }

  async load() {
    const res = await api("GET", `/api/manager/files/${this.kind}`);
    if (!res.ok) {
      this.status(refusal(res));
      return;
    }
    this.doc = res.data;
    this.text.value = res.data.text;
    this.status("");
    this.show(res.data);
  }

  status(text, tone = "error") {
    say($(`#${this.prefix}-status`), text, tone);
  }

  source() {
    const d = this.doc;
    if (!d) return "";
    return d.source === "shipped" ? t("mg.file.shipped") : t("mg.file.saved", { at: fmtDateTime(d.saved_at) });
  }

  show(checked) {
    this.checked = checked;
    $(`#${this.prefix}-source`).textContent = this.source();
    this.renderGutter();
    const list = $(`#${this.prefix}-problems`);
    const items = [
      ...checked.problems.map((p) => ({ ...p, tone: "problem" })),
      ...checked.warnings.map((p) => ({ ...p, tone: "warning" })),
    ];
    list.replaceChildren(
      ...items.map((p) =>
        el("li", { class: "mg-problem", dataset: { tone: p.tone, key: p.key, line: p.line ? String(p.line) : "" },
          tabindex: "0", role: "button", on: { click: () => this.goTo(p.line), keydown: (e) => { if (e.key === "Enter") this.goTo(p.line); } } },
          el("span", { class: "mg-problem-where mono" }, p.line ? t("mg.file.line", { n: p.line }) : ""),
          el("span", { class: "mg-problem-key mono", text: p.key }),
          el("span", { class: "mg-problem-msg", text: p.message }),
        ),
      ),
    );
    if (checked.problems.length) this.status(t("mg.file.problems", { n: checked.problems.length }));
    else if (checked.warnings.length) this.status(t("mg.file.warnings", { n: checked.warnings.length }), "info");
    this.afterCheck(checked);
  }

  afterCheck() {}

  renderGutter() {
    const lines = this.text.value.split("\n").length;
    const marks = new Map();
    for (const p of (this.checked && this.checked.problems) || []) if (p.line) marks.set(p.line, ["problem", `${p.key}: ${p.message}`]);
    for (const p of (this.checked && this.checked.warnings) || []) if (p.line && !marks.has(p.line)) marks.set(p.line, ["warning", `${p.key}: ${p.message}`]);
    const nodes = [];
    for (let n = 1; n <= lines; n++) {
      const mark = marks.get(n);
      nodes.push(mark ? el("span", { class: `mg-mark ${mark[0]}`, title: mark[1], dataset: { line: String(n) }, text: `${n}` }) : `${n}`, "\n");
    }
    this.gutter.replaceChildren(...nodes);
    this.gutter.scrollTop = this.text.scrollTop;
  }

  goTo(line) {
    if (!line) return;
    const lines = this.text.value.split("\n");
    const start = lines.slice(0, line - 1).reduce((n, l) => n + l.length + 1, 0);
    this.text.focus();
    this.text.setSelectionRange(start, start + lines[line - 1].length);
    const height = parseFloat(getComputedStyle(this.text).lineHeight) || 18;
    this.text.scrollTop = Math.max(0, (line - 4) * height);
  }

  async check(told = false) {
    const seq = ++this.seq;
    const res = await api("POST", `/api/manager/files/${this.kind}/check`, { text: this.text.value });
    if (seq !== this.seq) return; // a newer check is on its way
    if (!res.ok) {
      this.status(refusal(res));
      return;
    }
    this.status("");
    this.show(res.data);
    if (told && res.data.ok && !res.data.warnings.length) this.status(t("mg.file.ok"), "ok");
  }

  async save() {
    if (!this.doc) return;
    clearTimeout(this.timer);
    this.seq++;
    const button = $(`#${this.prefix}-save`);
    button.disabled = true;
    const res = await api("PUT", `/api/manager/files/${this.kind}`, { text: this.text.value, base_version: this.doc.version });
    button.disabled = false;
    if (res.status === 422 && res.data && res.data.problems) {
      this.show({ problems: res.data.problems, warnings: [] });
      this.status(t("mg.file.not_saved", { n: res.data.problems.length }));
      return;
    }
    if (!res.ok) {
      this.status(refusal(res));
      return;
    }
    this.doc = res.data;
    this.show(res.data);
    this.status(t("mg.file.saved_now", { version: res.data.version.slice(0, 8) }), "ok");
  }
}

class StrategyEditor extends Editor {
  afterCheck(checked) {
    // The saved file's names the rest of the pages (a check of unsaved text is not it).
    if (checked.strategies && checked.version) state.strategies = checked.strategies;
    renderStrategySummary(checked.strategies || null);
  }
}

class TemplateEditor extends Editor {
  afterCheck(checked) {
    const names = (checked.templates || []).map((tpl) => tpl.name);
    const select = $("#pv-template");
    const before = select.value;
    if (!checked.templates) return;
    select.replaceChildren(...checked.templates.map((tpl) => el("option", { value: tpl.name, text: `${tpl.name} (${tOr(`mg.channel.${tpl.channel}`, tpl.channel)})` })));
    if (names.includes(before)) select.value = before;
    const holders = Object.keys(checked.placeholders || {}).map((p) => `{${p}}`).join(" ");
    $("#tp-hint").textContent = t("mg.tp.hint", { placeholders: holders });
  }
}

function stepText(step) {
  switch (step.kind) {
    case "call":
      return t("mg.step.call", { campaign: step.campaign });
    case "sms":
    case "email":
      return t(`mg.step.${step.kind}`, { template: step.template });
    case "wait":
      return t("mg.step.wait", { n: step.days });
    case "condition":
      return t("mg.step.condition", { check: tOr(`mg.check.${step.check}`, step.check), then: step.then, else: step.else });
    case "escalate":
      return step.to ? t("mg.step.escalate_to", { to: strategyTitle(step.to) }) : t("mg.step.escalate_status", { status: tOr(`mg.status.${step.status}`, step.status) });
    default:
      return step.kind;
  }
}

function renderStrategySummary(strategies) {
  const box = $("#st-summary");
  box.replaceChildren();
  if (!strategies) {
    box.append(el("p", { class: "empty-box", i18n: "mg.st.fix_first" }));
    return;
  }
  const rules = strategies.selection || [];
  box.append(el("h4", { class: "mg-sub", i18n: "mg.st.selection" }));
  box.append(
    el("ol", { class: "mg-rules" },
      ...rules.map((r) => el("li", {}, el("span", { class: "strong", text: strategyTitle(r.strategy) }), " ",
        el("span", { class: "muted mono", text: Object.entries(r.when || {}).filter(([, v]) => v !== null).map(([k, v]) => `${k}=${Array.isArray(v) ? v.join("|") : v}`).join(", ") }))),
      el("li", { class: "muted" }, t("mg.st.default", { name: strategyTitle(strategies.default) })),
    ),
  );
  for (const [name, s] of Object.entries(strategies.strategies)) {
    box.append(
      el("details", { class: "mg-flow", dataset: { strategy: name } },
        el("summary", {}, el("span", { class: "strong", text: language() === "zh-CN" && s.title_zh ? s.title_zh : s.title }), " ",
          el("span", { class: "muted mono", text: name }), " ", el("span", { class: "muted", text: t("mg.st.steps", { n: s.steps.length }) })),
        el("ol", { class: "mg-steps" }, ...s.steps.map((step) => el("li", { dataset: { kind: step.kind } },
          el("span", { class: "mg-step-kind", text: tOr(`mg.kind.${step.kind}`, step.kind) }), " ", stepText(step)))),
      ),
    );
  }
}

const editors = {
  strategies: new StrategyEditor("strategies", "st"),
  templates: new TemplateEditor("templates", "tp"),
};

// ---- template preview ----

async function preview(event) {
  event.preventDefault();
  const error = $("#pv-error");
  const template = $("#pv-template").value;
  if (!template) {
    say(error, t("mg.tp.no_template"));
    return;
  }
  const body = { text: editors.templates.text.value, template, language: $("#pv-language").value };
  const caseId = $("#pv-case").value.trim();
  if (caseId) body.case_id = Number(caseId);
  $("#pv-go").disabled = true;
  const res = await api("POST", "/api/manager/templates/preview", body);
  $("#pv-go").disabled = false;
  if (!res.ok) {
    state.preview = null;
    show($("#pv-out"), false);
    if (res.status === 422 && res.data && res.data.problems) editors.templates.show({ problems: res.data.problems, warnings: [] });
    say(error, refusal(res));
    return;
  }
  say(error, "");
  state.preview = res.data;
  renderPreview();
}

function renderPreview() {
  const p = state.preview;
  if (!p) return;
  $("#pv-meta").textContent = t("mg.tp.meta", {
    channel: tOr(`mg.channel.${p.channel}`, p.channel),
    language: t(`lang.${p.language}`),
    n: p.length,
    who: p.debtor ? p.debtor.name : t("mg.tp.sample_name"),
  });
  show($("#pv-subject"), Boolean(p.subject));
  $("#pv-subject").textContent = p.subject || "";
  $("#pv-body").textContent = p.body;
  const guard = $("#pv-guard");
  if (p.guard) {
    guard.dataset.allowed = String(p.guard.allowed);
    guard.textContent = p.guard.allowed
      ? t("mg.tp.guard_ok")
      : t("mg.tp.guard_no", { why: p.guard.reasons.join("; "), at: p.guard.next_allowed_at ? fmtDateTime(p.guard.next_allowed_at) : t("dash") });
  } else {
    delete guard.dataset.allowed;
    guard.textContent = "";
  }
  show($("#pv-out"), true);
}

// ---- start ----

async function init() {
  const res = await api("GET", "/api/me");
  if (!res.ok) return;
  const me = res.data.user || res.data;
  if (!["manager", "admin", "supervisor"].includes(me.role)) {
    location.replace(me.role === "agent" ? "/agent" : me.role === "qa" ? "/qa" : "/");
    return;
  }
  state.me = me;
  if (me.language) setLanguage(me.language);
  setupHeader(me, (text) => message(text));
  await loadOptions();
  $("#cases-form").addEventListener("submit", (event) => {
    event.preventDefault();
    state.list.params = listParams();
    runList(0);
  });
  $("#btn-clear").addEventListener("click", () => {
    $("#cases-form").reset();
    state.list.params = listParams();
    runList(0);
  });
  $("#cases-prev").addEventListener("click", () => runList(Math.max(0, state.list.offset - PAGE)));
  $("#cases-next").addEventListener("click", () => runList(state.list.offset + PAGE));
  $("#note-form").addEventListener("submit", addNote);
  $("#segment-save").addEventListener("click", saveSegment);
  $("#give-form").addEventListener("submit", giveCase);
  setupSend({ segments: () => state.segments, current: () => $("#f-segment").value, refusal });
  $("#preview-form").addEventListener("submit", preview);
  $("#pv-language").value = language();
  window.addEventListener("hashchange", route);
  onLanguageChange(() => {
    renderList();
    renderCase();
    if (editors.strategies.checked) editors.strategies.show(editors.strategies.checked);
    if (editors.templates.checked) editors.templates.show(editors.templates.checked);
    renderReports();
    renderPreview();
  });
  // The strategies' titles name them in the list and on the case page.
  const st = await api("GET", "/api/manager/files/strategies");
  if (st.ok && st.data.strategies) state.strategies = st.data.strategies;
  route();
}

init();
