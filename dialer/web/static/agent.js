// The agent desktop: state and its controls, the screen pop of the call in progress, the
// disposition form. The server pushes state changes and pops over /ws/agent; every button is a
// JSON POST whose answer (or the next push) redraws the page.

import {
  t,
  tOr,
  setText,
  onLanguageChange,
  fmtMoney,
  fmtDate,
  fmtDateTime,
  fmtNumber,
} from "./i18n.js";
import {
  api,
  errorText,
  el,
  $,
  show,
  say,
  tick,
  onTick,
  startTicker,
  LiveSocket,
  showConnection,
  loadMe,
  setupHeader,
} from "./common.js";

const ON_A_CALL = ["reserved", "on_call"];
const DISPOSITION_FIELDS = {
  promise_to_pay: "#promise-fields",
  partial_payment: "#payment-fields",
  callback: "#callback-fields",
};

let me = null;
let status = null; // the last AgentStatus
let wrapUntil = null; // browser-clock ms when wrap-up ends
let currentCase = null; // the ScreenPop on screen
let endedAttempts = new Set(); // attempts the server said ended
let socket = null;
let takenOver = false;
const requestedCases = new Set(); // attempts whose case was fetched after a state change

// ---- state ----

function render() {
  if (!status) return;
  const state = status.state || "logged_out";
  const loggedIn = state !== "logged_out";
  const badge = $("#state");
  badge.dataset.state = state;
  setText(badge, `state.${state}`);
  const since = $("#state-time");
  if (loggedIn && status.since) since.dataset.since = status.since;
  else {
    delete since.dataset.since;
    since.textContent = "";
  }
  const reason = $("#state-reason");
  if (state === "paused" && status.pause_reason) {
    reason.textContent = tOr(`reason.${status.pause_reason}`, status.pause_reason);
    reason.dataset.reason = status.pause_reason;
    show(reason, true);
  } else {
    show(reason, false);
  }
  if (state === "wrap_up" && typeof status.wrap_up_left_s === "number") {
    wrapUntil = Date.now() + status.wrap_up_left_s * 1000;
  } else {
    wrapUntil = null;
  }
  renderWrapLeft();

  show($("#agent-controls"), loggedIn && !takenOver);
  show($("#dialer-login"), !loggedIn && !takenOver);
  $("#btn-ready").disabled =
    !["paused", "wrap_up"].includes(state) || (state === "paused" && status.phone_up === false);
  $("#btn-pause").disabled = !loggedIn || (state === "paused" && $("#pause-reason").value === status.pause_reason);
  $("#btn-logout").disabled = !["ready", "paused", "wrap_up"].includes(state);

  show($("#phone-box"), loggedIn);
  const phoneUp = status.phone_up !== false;
  show($("#phone-status"), phoneUp);
  show($("#btn-redial-phone"), !phoneUp);

  const onCall = ON_A_CALL.includes(state);
  $("#btn-hangup").disabled = !onCall || takenOver;
  show($("#btn-transfer"), Boolean(status && status.can_transfer));
  $("#btn-transfer").disabled = !status || status.state !== "on_call" || takenOver;

  if (
    status.attempt_id &&
    (!currentCase || currentCase.attempt_id !== status.attempt_id) &&
    !requestedCases.has(status.attempt_id)
  ) {
    // a pop missed while the socket was down (or before the page loaded)
    requestedCases.add(status.attempt_id);
    loadCase(status.attempt_id);
  }
  renderCallBadge();
  renderIdle();
  tick();
}

function renderWrapLeft() {
  const node = $("#wrap-left");
  if (wrapUntil === null) {
    show(node, false);
    return;
  }
  const left = Math.max(0, Math.ceil((wrapUntil - Date.now()) / 1000));
  node.textContent = t("agent.wrap_left", { s: left });
  show(node, true);
}

function renderIdle() {
  const state = status ? status.state : "logged_out";
  const idle = $("#idle");
  if (currentCase || takenOver) {
    show(idle, false);
    return;
  }
  const key =
    state === "logged_out" ? "agent.logged_out_hint" : state === "paused" ? "agent.paused_hint" : "agent.waiting";
  setText($("#idle-text"), key);
  const campaign = $("#idle-campaign");
  if (status && status.campaign && state !== "logged_out") {
    setText(campaign, "agent.campaign_is", { campaign: status.campaign });
    show(campaign, true);
  } else {
    show(campaign, false);
  }
  // the login form says it already when logged out
  show(idle, state !== "logged_out");
  // A preview campaign: the agent looks at the next case and presses dial.
  const previewing = state === "ready" && status && status.dial_mode === "preview";
  show($("#preview-box"), previewing);
  if (!previewing) {
    show($("#preview-case"), false);
    show($("#preview-empty"), false);
  }
}

async function previewNext(event) {
  const res = await api("GET", "/api/agent/preview");
  if (!res.ok) {
    message(errorText(res));
    return;
  }
  const found = res.data.case;
  show($("#preview-empty"), !found);
  show($("#preview-case"), Boolean(found));
  if (!found) return;
  $("#preview-name").textContent = found.debtor.name;
  $("#preview-phone").textContent = found.phone;
  $("#preview-external-id").textContent = found.debtor.external_id;
  $("#preview-accounts tbody").replaceChildren(
    ...found.accounts.map((a) =>
      el(
        "tr",
        { "data-debt-id": String(a.debt_id) },
        el("td", { class: "mono" }, a.reference),
        el("td", { class: "num" }, fmtMoney(a.balance, a.currency)),
        el("td", { class: "num" }, a.days_past_due === null ? "—" : fmtNumber(a.days_past_due, 0)),
      ),
    ),
  );
  $("#btn-preview-dial").focus();
  void event;
}

async function previewDial(event) {
  const button = event.currentTarget;
  button.disabled = true;
  const res = await api("POST", "/api/agent/preview/dial");
  button.disabled = false;
  if (!res.ok) {
    message(errorText(res));
    return;
  }
  show($("#preview-case"), false);
  message(t("preview.dialling"), "ok");
}

function renderCallBadge() {
  const badge = $("#call-status");
  if (!currentCase) return;
  const live =
    status &&
    ON_A_CALL.includes(status.state) &&
    status.attempt_id === currentCase.attempt_id &&
    !endedAttempts.has(currentCase.attempt_id);
  badge.dataset.live = live ? "1" : "0";
  setText(badge, live ? "agent.call_live" : "agent.call_ended");
}

async function refreshStatus() {
  const res = await api("GET", "/api/agent/status");
  if (res.ok && res.data) {
    status = res.data;
    render();
  } else if (res.status !== 401) {
    message(errorText(res));
  }
}

function message(text, tone = "error") {
  say($("#agent-message"), text, tone);
  if (text && tone !== "error") {
    const shown = text;
    setTimeout(() => {
      if ($("#agent-message").textContent === shown) say($("#agent-message"), "");
    }, 4000);
  }
}

// A button that POSTs: disabled while in flight; the answer redraws (an AgentStatus) or the
// server's reason is shown.
async function act(button, path, body, okText) {
  button.disabled = true;
  const res = await api("POST", path, body);
  button.disabled = false;
  if (!res.ok) {
    message(errorText(res));
    if (status) render();
    return res;
  }
  message(okText || "", "ok");
  if (res.data && typeof res.data === "object" && "state" in res.data) {
    status = res.data;
    render();
  } else {
    await refreshStatus();
  }
  return res;
}

// ---- the case (screen pop) ----

async function loadCase(attemptId) {
  const res = await api("GET", `/api/cases/by-attempt/${encodeURIComponent(attemptId)}`);
  if (!res.ok) {
    message(errorText(res));
    return null;
  }
  showCase(res.data);
  return res.data;
}

function showCase(pop, { fresh = true } = {}) {
  const known = fresh || !currentCase ? null : new Set(currentCase.history.map(historyKey));
  const newCall = !currentCase || currentCase.attempt_id !== pop.attempt_id;
  currentCase = normaliseCase(pop);
  renderCase(known);
  if (newCall) {
    resetDisposition();
    $(".case-main").scrollTop = 0;
    const box = $("#case");
    box.classList.remove("flash");
    void box.offsetWidth; // restart the animation
    box.classList.add("flash");
  }
  renderCallBadge();
  renderIdle();
}

function normaliseCase(pop) {
  return {
    ...pop,
    debtor: pop.debtor || {},
    accounts: pop.accounts || [],
    history: pop.history || [],
    promises: pop.promises || [],
    compliance_notes: pop.compliance_notes || [],
  };
}

function historyKey(h) {
  return `${h.at}|${h.kind}|${h.outcome}|${h.note ?? ""}`;
}

// One currency for the whole case when all accounts agree (history entries carry no currency).
function caseCurrency() {
  const currencies = new Set(currentCase.accounts.map((a) => a.currency).filter(Boolean));
  return currencies.size === 1 ? [...currencies][0] : null;
}

// The case's collection strategy, its step (counted from 1 for people) and risk band, in a row
// added after the campaign's.
function renderStrategy(s) {
  if (!$("#pop-strategy")) {
    $("#pop-campaign").parentElement.after(
      el("div", {}, el("dt", { i18n: "pop.strategy" }), el("dd", { id: "pop-strategy" })),
    );
  }
  const band = s && s.risk_band ? t(`pop.band.${s.risk_band}`) : t("dash");
  $("#pop-strategy").textContent =
    s && s.name ? t("pop.strategy_value", { name: s.name, step: (s.step ?? 0) + 1, band }) : t("dash");
}

function renderCase(knownHistory = null) {
  const pop = currentCase;
  show($("#case"), true);
  $("#pop-debtor-name").textContent = pop.debtor.name || t("dash");
  $("#pop-external-id").textContent = pop.debtor.external_id || t("dash");
  $("#pop-phone").textContent = pop.phone || t("dash");
  $("#pop-campaign").textContent = pop.campaign || t("dash");
  $("#pop-attempt").textContent = pop.attempt_id ?? t("dash");
  renderStrategy(pop.strategy);

  // accounts
  const accounts = $("#pop-accounts tbody");
  accounts.replaceChildren(
    ...pop.accounts.map((a) =>
      el(
        "tr",
        { dataset: { debtId: a.debt_id } },
        el("td", { class: "mono", text: a.reference }),
        el("td", { class: "num strong", text: fmtMoney(a.balance, a.currency) }),
        el("td", { class: `num ${a.days_past_due > 90 ? "late" : ""}`, text: fmtNumber(a.days_past_due) }),
        el("td", { text: tOr(`debt.${a.status}`, a.status || "") }),
      ),
    ),
  );
  if (!pop.accounts.length) {
    accounts.append(el("tr", {}, el("td", { colspan: 4, class: "empty", i18n: "pop.no_accounts" })));
  }
  const foot = $("#pop-accounts tfoot");
  const currency = caseCurrency();
  if (pop.accounts.length > 1 && currency) {
    const total = pop.accounts.reduce((sum, a) => sum + Number(a.balance || 0), 0);
    foot.replaceChildren(
      el(
        "tr",
        {},
        el("th", { scope: "row", i18n: "pop.total" }),
        el("td", { class: "num strong", text: fmtMoney(total, currency) }),
        el("td", { colspan: 2 }),
      ),
    );
  } else {
    foot.replaceChildren();
  }

  // compliance notes: what the agent must not miss
  const notes = $("#pop-compliance");
  notes.replaceChildren(...pop.compliance_notes.map((n) => el("li", { text: n })));
  $(".compliance").classList.toggle("quiet", !pop.compliance_notes.length);
  if (!pop.compliance_notes.length) notes.append(el("li", { class: "empty", i18n: "none" }));

  // promises to pay
  const promises = $("#pop-promises tbody");
  promises.replaceChildren(
    ...pop.promises.map((p) =>
      el(
        "tr",
        {},
        el("td", { class: "num strong", text: fmtMoney(p.amount, p.currency) }),
        el("td", { text: fmtDate(p.due) }),
        el("td", { class: "mono", text: p.debt_reference || t("dash") }),
        el("td", { text: p.agent_id || t("dash") }),
      ),
    ),
  );
  if (!pop.promises.length) {
    promises.append(el("tr", {}, el("td", { colspan: 4, class: "empty", i18n: "pop.no_promises" })));
  }

  renderHistory(knownHistory);

  $("#pop-script").textContent = pop.script || "";
  $("#promise-currency").textContent = currency || "";
  $("#payment-currency").textContent = currency || "";
}

function outcomeText(h) {
  const kind = h.kind === "disposition" ? "code" : "outcome";
  let text = tOr(`${kind}.${h.outcome}`, h.outcome || t("dash"));
  const currency = caseCurrency();
  if (h.promise_amount && h.promise_date) {
    text += ` · ${t("pop.promise_detail", { amount: fmtMoney(h.promise_amount, currency), date: fmtDate(h.promise_date) })}`;
  } else if (h.promise_amount) {
    text += ` · ${fmtMoney(h.promise_amount, currency)}`;
  }
  if (h.payment_amount) {
    text += ` · ${t("pop.payment_detail", { amount: fmtMoney(h.payment_amount, currency) })}`;
  }
  return text;
}

function renderHistory(known) {
  const body = $("#history tbody");
  const rows = [...currentCase.history].sort((a, b) => String(b.at).localeCompare(String(a.at)));
  body.replaceChildren(
    ...rows.map((h) => {
      const isNew = known !== null && !known.has(historyKey(h));
      return el(
        "tr",
        { class: isNew ? "new" : undefined, dataset: { kind: h.kind, outcome: h.outcome || "" } },
        el("td", { class: "nowrap", text: fmtDateTime(h.at) }),
        el(
          "td",
          {},
          el("span", { class: `kind kind-${h.kind}`, text: t(`kind.${h.kind}`) }),
          " ",
          el("span", { class: "outcome", text: outcomeText(h) }),
        ),
        el("td", { text: h.agent_id || t("dash") }),
        el("td", { class: "note", text: h.note || "" }),
      );
    }),
  );
  if (!rows.length) body.append(el("tr", {}, el("td", { colspan: 4, class: "empty", i18n: "pop.no_history" })));
}

// ---- disposition ----

function todayIso() {
  const d = new Date();
  return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, "0")}-${String(d.getDate()).padStart(2, "0")}`;
}

function localInputNow() {
  const d = new Date(Date.now() + 5 * 60 * 1000);
  return `${todayIso()}T${String(d.getHours()).padStart(2, "0")}:${String(d.getMinutes()).padStart(2, "0")}`;
}

function showDispositionFields() {
  const code = $("#disposition-code").value;
  for (const [c, sel] of Object.entries(DISPOSITION_FIELDS)) show($(sel), code === c);
  $("#promise-date").min = todayIso();
  $("#callback-at").min = localInputNow();
}

function resetDisposition() {
  $("#disposition-form").reset();
  showDispositionFields();
  say($("#disposition-error"), "");
  say($("#disposition-result"), "");
}

function positiveAmount(input) {
  const raw = input.value.trim();
  const n = Number(raw);
  return raw && Number.isFinite(n) && n > 0 ? raw : null;
}

function fail(text, focus) {
  say($("#disposition-error"), text);
  if (focus) focus.focus();
  return null;
}

function buildDisposition() {
  const code = $("#disposition-code").value;
  if (!code) return fail(t("disp.need_code"), $("#disposition-code"));
  const body = { attempt_id: currentCase.attempt_id, code };
  if (code === "promise_to_pay") {
    const amount = positiveAmount($("#promise-amount"));
    if (!amount) return fail(t("disp.need_amount"), $("#promise-amount"));
    const date = $("#promise-date").value;
    if (!date) return fail(t("disp.need_date"), $("#promise-date"));
    if (date < todayIso()) return fail(t("disp.date_past"), $("#promise-date"));
    body.promise_amount = amount;
    body.promise_date = date;
  } else if (code === "partial_payment") {
    const amount = positiveAmount($("#payment-amount"));
    if (!amount) return fail(t("disp.need_amount"), $("#payment-amount"));
    body.payment_amount = amount;
  } else if (code === "callback") {
    const value = $("#callback-at").value;
    const at = value ? new Date(value) : null;
    if (!at || Number.isNaN(at.getTime())) return fail(t("disp.need_callback"), $("#callback-at"));
    // the browser's local wall time, sent as an instant
    body.callback_at = at.toISOString();
    body.callback_same_agent = $("#callback-same-agent").checked;
  }
  const note = $("#disposition-note").value.trim();
  if (note) body.note = note;
  return body;
}

async function saveDisposition(event) {
  event.preventDefault();
  say($("#disposition-result"), "");
  if (!currentCase) {
    say($("#disposition-error"), t("disp.no_case"));
    return;
  }
  const body = buildDisposition();
  if (!body) return;
  say($("#disposition-error"), "");
  const button = $("#save-disposition");
  button.disabled = true;
  setText(button, "disp.saving");
  const res = await api("POST", "/api/dispositions", body);
  button.disabled = false;
  setText(button, "disp.save");
  if (!res.ok) {
    say($("#disposition-error"), errorText(res));
    return;
  }
  const attemptId = currentCase.attempt_id;
  $("#disposition-form").reset();
  showDispositionFields();
  say($("#disposition-result"), t("disp.saved"), "ok");
  const fresh = await api("GET", `/api/cases/by-attempt/${encodeURIComponent(attemptId)}`);
  if (fresh.ok && currentCase && currentCase.attempt_id === attemptId) {
    showCase(fresh.data, { fresh: false });
  } else if (!fresh.ok) {
    message(errorText(fresh));
  }
}

// ---- the push channel ----

function onMessage(msg) {
  if (msg.type === "state") {
    const { type, ...rest } = msg;
    status = rest;
    render();
  } else if (msg.type === "pop" && msg.case) {
    showCase(msg.case);
  } else if (msg.type === "call_ended") {
    endedAttempts.add(msg.attempt_id);
    if (endedAttempts.size > 50) endedAttempts = new Set([...endedAttempts].slice(-20));
    renderCallBadge();
  } else if (msg.type === "taken_over") {
    takenOver = true;
    socket.stop();
    show($("#taken-over"), true);
    for (const b of document.querySelectorAll("#agent-controls button, .call-controls button, #save-disposition, #btn-redial-phone")) {
      b.disabled = true;
    }
    render();
  }
}

async function onOpen(isReconnect) {
  // pushes sent while the socket was down are lost: read the state again
  if (isReconnect) await refreshStatus();
}

// ---- start ----

function wire() {
  $("#btn-ready").addEventListener("click", (e) => act(e.currentTarget, "/api/agent/ready"));
  $("#btn-pause").addEventListener("click", (e) =>
    act(e.currentTarget, "/api/agent/pause", { reason: $("#pause-reason").value }),
  );
  $("#pause-reason").addEventListener("change", () => status && render());
  $("#btn-logout").addEventListener("click", (e) => act(e.currentTarget, "/api/agent/logout"));
  $("#btn-hangup").addEventListener("click", (e) => act(e.currentTarget, "/api/agent/hangup"));
  $("#btn-transfer").addEventListener("click", (e) =>
    act(e.currentTarget, "/api/agent/transfer", undefined, t("agent.transferred")),
  );
  $("#btn-preview-next").addEventListener("click", previewNext);
  $("#btn-preview-dial").addEventListener("click", previewDial);
  $("#btn-redial-phone").addEventListener("click", (e) =>
    act(e.currentTarget, "/api/agent/redial-phone", undefined, t("agent.phone_redialling")),
  );
  $("#btn-reload").addEventListener("click", () => location.reload());
  $("#dialer-login-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const phone = $("#dialer-login-phone").value.trim();
    const button = $("#dialer-login-submit");
    button.disabled = true;
    const res = await api("POST", "/api/agent/login", phone ? { phone } : {});
    button.disabled = false;
    if (!res.ok) {
      say($("#dialer-login-error"), errorText(res));
      return;
    }
    say($("#dialer-login-error"), "");
    if (res.data && "state" in res.data) {
      status = res.data;
      render();
    } else {
      await refreshStatus();
    }
  });
  $("#disposition-code").addEventListener("change", () => {
    say($("#disposition-error"), "");
    say($("#disposition-result"), "");
    showDispositionFields();
  });
  $("#disposition-form").addEventListener("submit", saveDisposition);
  onTick(renderWrapLeft);
  onLanguageChange(() => {
    if (status) render();
    if (currentCase) renderCase();
    if (socket) showConnection($("#conn-status"), $("#conn-status").dataset.status);
  });
}

async function init() {
  me = await loadMe(true);
  if (!me) return;
  setupHeader(me, (text) => message(text));
  $("#agent-id").textContent = me.agent_id ? `#${me.agent_id}` : "";
  wire();
  showDispositionFields();
  await refreshStatus();
  startTicker();
  socket = new LiveSocket("/ws/agent", {
    onMessage,
    onOpen,
    onStatus: (s, n) => showConnection($("#conn-status"), s, n),
  });
  socket.start();
}

init();
