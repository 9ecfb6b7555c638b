// The QA pages: find calls by what was said, open one at the second the words were said and
// hear it from there, read both parties' transcript, the call's measures and its QA flags, mark
// each flag right or wrong, work through the flagged calls and watch each rule's precision.
// Views by the address's hash: #search, #call/ID?at=SECONDS, #queue.

import { t, tOr, onLanguageChange, fmtDateTime, fmtDuration, fmtNumber, fmtPercent } from "./i18n.js";
import { api, errorText, el, $, say, show, loadMe, setupHeader } from "./common.js";

const PAGE = 25;
const state = {
  me: null,
  search: { params: null, offset: 0, data: null },
  queue: { offset: 0, data: null, precision: null },
  call: { id: null, data: null, at: null },
};

// ---- small helpers ----

function seconds(value) {
  // m:ss (the player's own clock), tenths kept in the tooltip
  return fmtDuration(Math.floor(Number(value) || 0));
}

function withUnit(value, digits = 1) {
  if (value === null || value === undefined) return t("dash");
  return t("qa.unit.s", { n: fmtNumber(value, digits) });
}

function partyName(party) {
  return party ? tOr(`qa.party.${party}`, party) : t("qa.party.call");
}

function message(text, tone = "error") {
  say($("#qa-message"), text, tone);
}

// A refusal as the person can act on it: each field named in their language.
function refusal(res) {
  const detail = res.data && res.data.detail;
  if (res.status === 422 && Array.isArray(detail)) {
    return detail
      .map((d) => {
        const field = Array.isArray(d.loc) ? d.loc[d.loc.length - 1] : "";
        const label = field ? tOr(`qa.field.${field}`, field) : "";
        const msg = String(d.msg || "").replace(new RegExp(`^${field}: `), "");
        return label ? `${label}: ${msg}` : msg;
      })
      .join(" ");
  }
  return errorText(res);
}

function fieldOf(res) {
  const detail = res.data && res.data.detail;
  if (res.status !== 422 || !Array.isArray(detail) || !detail.length) return null;
  const loc = detail[0].loc || [];
  return loc[loc.length - 1] || null;
}

function scoreCell(call) {
  if (call.qa_score === null || call.qa_score === undefined) return el("span", { class: "muted", text: t("dash") });
  const level = call.qa_flags ? "bad" : "ok";
  return el("span", { class: "qa-score-chip", dataset: { level } }, fmtNumber(call.qa_score, 0),
    call.qa_flags ? el("span", { class: "qa-flag-count", text: ` ⚑ ${call.qa_flags}` }) : null);
}

// ---- views ----

function route() {
  const hash = location.hash || "#search";
  const call = /^#call\/(\d+)(?:\?at=([\d.]+))?$/.exec(hash);
  for (const id of ["view-search", "view-call", "view-queue"]) show($(`#${id}`), false);
  $("#tab-search").classList.toggle("active", !call && !hash.startsWith("#queue"));
  $("#tab-queue").classList.toggle("active", hash.startsWith("#queue"));
  if (call) {
    show($("#view-call"), true);
    openCall(Number(call[1]), call[2] === undefined ? null : Number(call[2]));
  } else if (hash.startsWith("#queue")) {
    show($("#view-queue"), true);
    pausePlayer();
    loadQueue();
  } else {
    show($("#view-search"), true);
    pausePlayer();
    $("#f-q").focus();
  }
}

function pausePlayer() {
  const player = $("#player");
  if (!player.paused) player.pause();
}

// ---- search ----

async function loadOptions() {
  const res = await api("GET", "/api/qa/options");
  if (!res.ok) {
    message(errorText(res));
    return;
  }
  const campaign = $("#f-campaign");
  for (const c of res.data.campaigns) campaign.append(el("option", { value: String(c.id), text: c.name }));
  const agents = $("#agent-list");
  for (const a of res.data.agents) agents.append(el("option", { value: a }));
  const outcome = $("#f-outcome");
  for (const o of res.data.outcomes) outcome.append(el("option", { value: o, i18n: `outcome.${o}` }));
  const party = $("#f-party");
  for (const p of res.data.parties) party.append(el("option", { value: p, i18n: `qa.party.${p}` }));
}

// A date input's day as the instant its local midnight is (the until day is included).
function dayStart(value, plusDays = 0) {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(value || "");
  if (!m) return null;
  return new Date(Number(m[1]), Number(m[2]) - 1, Number(m[3]) + plusDays).toISOString();
}

function searchParams() {
  const form = $("#search-form");
  const q = $("#f-q").value.trim();
  const params = new URLSearchParams({ q });
  for (const name of ["campaign_id", "agent", "outcome", "party", "flagged"]) {
    const value = form.elements[name].value.trim();
    if (value && !(name === "flagged" && value === "any")) params.set(name, value);
  }
  const since = dayStart($("#f-since").value);
  const until = dayStart($("#f-until").value, 1);
  if (since) params.set("since", since);
  if (until) params.set("until", until);
  return params;
}

async function runSearch(offset = 0) {
  const error = $("#search-error");
  for (const input of document.querySelectorAll("#search-form [aria-invalid]")) input.removeAttribute("aria-invalid");
  const params = state.search.params;
  if (!params.get("q")) {
    say(error, t("qa.search.need_words"));
    $("#f-q").setAttribute("aria-invalid", "true");
    $("#f-q").focus();
    return;
  }
  params.set("limit", String(PAGE));
  params.set("offset", String(offset));
  say(error, "");
  $("#btn-search").disabled = true;
  $("#hits").setAttribute("aria-busy", "true");
  const res = await api("GET", `/api/qa/search?${params}`);
  $("#btn-search").disabled = false;
  $("#hits").setAttribute("aria-busy", "false");
  if (!res.ok) {
    say(error, refusal(res));
    const field = fieldOf(res);
    const input = field && $(`#search-form [name="${field}"]`);
    if (input) {
      input.setAttribute("aria-invalid", "true");
      input.focus();
    }
    return;
  }
  state.search.offset = offset;
  state.search.data = res.data;
  renderHits();
}

function snippetNode(hit) {
  const node = el("span", { class: "qa-snippet" });
  let at = 0;
  for (const [start, end] of hit.marks) {
    if (start > at) node.append(hit.snippet.slice(at, start));
    node.append(el("mark", { text: hit.snippet.slice(start, end) }));
    at = end;
  }
  node.append(hit.snippet.slice(at));
  return node;
}

function renderHits() {
  const data = state.search.data;
  const body = $("#hits tbody");
  body.replaceChildren();
  if (!data) return;
  for (const hit of data.hits) {
    const href = `#call/${hit.call_id}?at=${hit.second}`;
    const row = el(
      "tr",
      { class: "qa-hit", dataset: { call: String(hit.call_id), second: String(hit.second) },
        on: { click: (e) => { if (!e.target.closest("a")) location.hash = href; } } },
      el("td", { class: "num" }, el("a", { href, class: "qa-open", text: `#${hit.call_id}` })),
      el("td", { class: "nowrap", text: fmtDateTime(hit.dialed_at) }),
      el("td", { text: hit.campaign }),
      el("td", { text: hit.agent_id || t("dash") }),
      el("td", {}, el("span", { class: `qa-party party-${hit.party}`, text: partyName(hit.party) })),
      el("td", { class: "num mono", title: withUnit(hit.second, 2), text: seconds(hit.second) }),
      el("td", {}, snippetNode(hit)),
      el("td", { class: "num" }, scoreCell(hit)),
    );
    body.append(row);
  }
  const empty = $("#hits-empty");
  empty.dataset.i18n = "qa.search.none";
  empty.textContent = t("qa.search.none");
  show(empty, data.hits.length === 0);
  const from = state.search.offset + 1;
  const to = state.search.offset + data.hits.length;
  $("#hits-range").textContent = data.hits.length ? t("qa.range", { from, to }) : "";
  $("#hits-prev").disabled = state.search.offset === 0;
  $("#hits-next").disabled = !data.more;
}

// ---- one call ----

async function openCall(id, at) {
  const same = state.call.id === id && state.call.data;
  state.call.at = at;
  if (!same) {
    state.call.id = id;
    state.call.data = null;
    $("#h-call").textContent = t("qa.call", { id });
    $("#lines").replaceChildren();
    $("#flags").replaceChildren();
    $("#measures").replaceChildren();
    $("#call-facts").replaceChildren();
    $("#call-score").replaceChildren();
    say($("#flag-error"), "");
    // Nothing of the call shown before may play while this one loads.
    const player = $("#player");
    player.pause();
    player.removeAttribute("src");
    player.load();
    const res = await api("GET", `/api/qa/calls/${id}`);
    if (state.call.id !== id) return; // another call was opened meanwhile
    if (!res.ok) {
      message(refusal(res));
      return;
    }
    message("");
    state.call.data = res.data;
    renderCall();
    loadAudio(res.data.call);
  }
  if (at !== null) seekTo(at);
  else if (same) highlightLine();
}

function loadAudio(call) {
  const player = $("#player");
  const note = $("#player-note");
  if (!call.audio) {
    player.removeAttribute("src");
    player.load();
    show(player, false);
    note.dataset.i18n = "qa.audio.none";
    note.textContent = t("qa.audio.none");
    return;
  }
  show(player, true);
  note.textContent = "";
  delete note.dataset.i18n;
  player.src = `/api/qa/calls/${call.call_id}/audio`;
  player.onerror = () => {
    note.dataset.i18n = "qa.audio.error";
    note.textContent = t("qa.audio.error");
  };
}

// Play from `second`: at once if the player knows the file's length, else once it does.
function seekTo(second, play = true) {
  const player = $("#player");
  if (!player.getAttribute("src")) return;
  const go = () => {
    player.currentTime = second;
    if (play) player.play().catch(() => {});
    highlightLine(second);
  };
  if (player.readyState >= 1) go();
  else player.addEventListener("loadedmetadata", go, { once: true });
}

function factItem(label, value) {
  return [el("dt", { i18n: label }), el("dd", {}, value)];
}

function renderCall() {
  const data = state.call.data;
  if (!data) return;
  const call = data.call;
  $("#h-call").textContent = t("qa.call", { id: call.call_id });
  $("#call-facts").replaceChildren(
    ...factItem("qa.col.campaign", call.campaign),
    ...factItem("qa.col.agent", call.agent_id || t("dash")),
    ...factItem("qa.col.dialed", fmtDateTime(call.dialed_at)),
    ...factItem("qa.filter.outcome", call.outcome ? tOr(`outcome.${call.outcome}`, call.outcome) : t("dash")),
    ...factItem("qa.talk_time", call.talk_s === null ? t("dash") : withUnit(call.talk_s, 0)),
  );
  const score = $("#call-score");
  score.replaceChildren(
    el("span", { class: "qa-score-label", i18n: "qa.col.score" }),
    el("span", { class: "qa-score-value", dataset: { level: call.qa_flags ? "bad" : "ok" },
      text: call.qa_score === null ? t("dash") : fmtNumber(call.qa_score, 0) }),
    el("span", { class: "muted", text: call.qa_score === null ? "" : t("qa.score_of") }),
  );
  renderLines();
  renderFlags();
  renderMeasures();
}

function renderLines() {
  const data = state.call.data;
  const list = $("#lines");
  list.replaceChildren();
  for (const line of data.lines) {
    list.append(
      el(
        "li",
        { class: `qa-line party-${line.party}`, dataset: { start: String(line.start_s), end: String(line.end_s) },
          tabindex: "0", role: "button",
          on: {
            click: () => seekTo(line.start_s),
            keydown: (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); seekTo(line.start_s); } },
          } },
        el("span", { class: "qa-time mono", title: withUnit(line.start_s, 2), text: seconds(line.start_s) }),
        el("span", { class: `qa-party party-${line.party}`, text: partyName(line.party) }),
        el("span", { class: "qa-text", text: line.text }),
      ),
    );
  }
  show($("#lines-empty"), data.lines.length === 0);
  const engines = data.engines.map((e) => `${partyName(e.party)}: ${e.engine}`).join("; ");
  $("#engines").textContent = engines ? t("qa.engines", { engines }) : "";
  highlightLine(state.call.at);
}

// The line being heard (or the one at `second`) stands out and is kept in view.
function highlightLine(second) {
  const player = $("#player");
  const now = second ?? player.currentTime;
  let current = null;
  for (const li of document.querySelectorAll("#lines .qa-line")) {
    const on = Number(li.dataset.start) <= now + 0.05 && now < Number(li.dataset.end) + 0.05;
    li.classList.toggle("playing", on);
    if (on && !current) current = li;
  }
  if (current && second !== undefined) current.scrollIntoView({ block: "nearest" });
}

function precisionText(p) {
  if (!p) return "";
  const share = p.precision === null ? t("dash") : fmtPercent(p.precision, 0);
  return t("qa.rule_precision", { share, right: p.right, wrong: p.wrong, open: p.unreviewed });
}

function verdictText(flag) {
  if (!flag.verdict) return t("qa.verdict.none");
  return t(`qa.verdict.${flag.verdict}_by`, { who: flag.reviewed_by || "?", at: fmtDateTime(flag.reviewed_at) });
}

function renderFlags() {
  const data = state.call.data;
  const list = $("#flags");
  list.replaceChildren();
  const byRule = Object.fromEntries((data.precision || []).map((p) => [p.rule, p]));
  for (const flag of data.flags) {
    const right = el("button", { type: "button", class: "btn small", "aria-pressed": String(flag.verdict === "right"),
      dataset: { verdict: "right" }, i18n: "qa.verdict.right", on: { click: () => mark(flag, "right") } });
    const wrong = el("button", { type: "button", class: "btn small", "aria-pressed": String(flag.verdict === "wrong"),
      dataset: { verdict: "wrong" }, i18n: "qa.verdict.wrong", on: { click: () => mark(flag, "wrong") } });
    list.append(
      el(
        "li",
        { class: "qa-flag", dataset: { flag: String(flag.id), kind: flag.kind, verdict: flag.verdict || "" } },
        el("div", { class: "qa-flag-head" },
          el("button", { type: "button", class: "btn small qa-time mono", title: withUnit(flag.second, 2),
            text: seconds(flag.second), on: { click: () => seekTo(flag.second) } }),
          el("span", { class: `qa-kind kind-${flag.kind}`, text: tOr(`qa.kind.${flag.kind}`, flag.kind) }),
          el("span", { class: "qa-rule mono", text: flag.rule }),
          el("span", { class: "muted", text: partyName(flag.party) }),
          el("span", { class: "spacer" }),
          el("span", { class: "muted", title: t("qa.match_hint"), text: t("qa.match", { n: fmtNumber(flag.score, 0) }) }),
        ),
        el("p", { class: "qa-flag-snippet", text: flag.snippet }),
        el("div", { class: "qa-flag-foot" },
          el("span", { class: "btn-group" }, right, wrong),
          el("span", { class: "qa-verdict muted", text: verdictText(flag) }),
        ),
        el("p", { class: "qa-precision hint", dataset: { rule: flag.rule }, text: precisionText(byRule[flag.rule]) }),
      ),
    );
  }
  show($("#flags-empty"), data.flags.length === 0);
}

async function mark(flag, verdict) {
  const call = state.call.data.call;
  const error = $("#flag-error");
  say(error, "");
  for (const b of document.querySelectorAll(`[data-flag="${flag.id}"] button[data-verdict]`)) b.disabled = true;
  const res = await api("POST", `/api/qa/calls/${call.call_id}/flags/${flag.id}/verdict`, { verdict });
  for (const b of document.querySelectorAll(`[data-flag="${flag.id}"] button[data-verdict]`)) b.disabled = false;
  if (!res.ok) {
    say(error, refusal(res));
    return;
  }
  const data = state.call.data;
  data.flags = data.flags.map((f) => (f.id === flag.id ? res.data.flag : f));
  if (res.data.precision) {
    data.precision = [...(data.precision || []).filter((p) => p.rule !== res.data.precision.rule), res.data.precision];
  }
  // The standing flags (not judged wrong) are what the score column counts.
  call.qa_flags = data.flags.filter((f) => f.verdict !== "wrong").length;
  renderCall();
}

function renderMeasures() {
  const m = state.call.data.measures;
  const box = $("#measures");
  box.replaceChildren();
  if (!m) {
    box.append(el("dd", { class: "muted", i18n: "qa.measures.none" }));
    return;
  }
  const at = (s) => (s === null || s === undefined ? "" : ` ${t("qa.at", { at: seconds(s) })}`);
  const rows = [
    ["qa.m.duration", withUnit(m.duration_s, 0)],
    ...Object.entries(m.talk_s).map(([party, s]) => [`qa.m.talk_${party}`, withUnit(s, 1)]),
    ["qa.m.silence", m.silence_ratio === null ? t("dash") : fmtPercent(m.silence_ratio, 0)],
    ["qa.m.longest_silence", withUnit(m.longest_silence_s, 1) + at(m.longest_silence_at_s)],
    ["qa.m.overtalk", withUnit(m.overtalk_s, 1) + at(m.longest_overtalk_at_s)],
  ];
  for (const [key, value] of rows) box.append(el("dt", { i18n: key }), el("dd", { text: value }));
  box.append(el("dt", { i18n: "qa.m.raised" }));
  const raised = el("dd");
  if (!m.raised_voice.length) raised.append(m.source === "audio" ? t("none") : t("dash"));
  for (const r of m.raised_voice) {
    raised.append(el("button", { type: "button", class: "btn small mono", text: `${seconds(r.start_s)} ${partyName(r.party)}`,
      on: { click: () => seekTo(r.start_s) } }), " ");
  }
  box.append(raised);
  box.append(el("dt", { i18n: "qa.m.source" }), el("dd", { class: "muted", i18n: `qa.m.source_${m.source}` }));
}

// ---- the queue ----

async function loadQueue(offset = state.queue.offset) {
  const only = $("#only-flagged").checked;
  const [queue, precision] = await Promise.all([
    api("GET", `/api/qa/queue?limit=${PAGE}&offset=${offset}&only_flagged=${only}`),
    api("GET", "/api/qa/precision"),
  ]);
  if (!queue.ok || !precision.ok) {
    message(refusal(queue.ok ? precision : queue));
    return;
  }
  state.queue.offset = offset;
  state.queue.data = queue.data;
  state.queue.precision = precision.data;
  renderQueue();
}

function renderQueue() {
  const data = state.queue.data;
  if (!data) return;
  const body = $("#queue tbody");
  body.replaceChildren();
  for (const call of data.calls) {
    const href = `#call/${call.call_id}`;
    body.append(
      el("tr", { class: "qa-hit", dataset: { call: String(call.call_id), open: String(call.unreviewed) },
        on: { click: (e) => { if (!e.target.closest("a")) location.hash = href; } } },
        el("td", { class: "num" }, el("a", { href, text: `#${call.call_id}` })),
        el("td", { class: "nowrap", text: fmtDateTime(call.dialed_at) }),
        el("td", { text: call.campaign }),
        el("td", { text: call.agent_id || t("dash") }),
        el("td", { class: "num" }, scoreCell(call)),
        el("td", { class: "num", text: fmtNumber(call.qa_flags, 0) }),
        el("td", { class: "num" + (call.unreviewed ? " strong" : ""), text: fmtNumber(call.unreviewed, 0) }),
      ),
    );
  }
  show($("#queue-empty"), data.calls.length === 0);
  const from = state.queue.offset + 1;
  const to = state.queue.offset + data.calls.length;
  $("#queue-range").textContent = data.calls.length ? t("qa.range", { from, to }) : "";
  $("#queue-prev").disabled = state.queue.offset === 0;
  $("#queue-next").disabled = !data.more;
  const table = $("#precision tbody");
  table.replaceChildren();
  for (const p of state.queue.precision) {
    table.append(
      el("tr", { dataset: { rule: p.rule } },
        el("td", { class: "mono", text: p.rule }),
        el("td", { class: "num", text: fmtNumber(p.right, 0) }),
        el("td", { class: "num", text: fmtNumber(p.wrong, 0) }),
        el("td", { class: "num", text: fmtNumber(p.unreviewed, 0) }),
        el("td", { class: "num strong qa-precision-value", text: p.precision === null ? t("dash") : fmtPercent(p.precision, 0) }),
      ),
    );
  }
  show($("#precision-empty"), state.queue.precision.length === 0);
}

// ---- start ----

async function init() {
  const me = await loadMe(false);
  if (!me) return;
  state.me = me;
  setupHeader(me, (text) => message(text));
  show($("#nav-live"), ["supervisor", "manager", "admin"].includes(me.role));
  await loadOptions();
  $("#search-form").addEventListener("submit", (event) => {
    event.preventDefault();
    state.search.params = searchParams();
    runSearch(0);
  });
  $("#hits-prev").addEventListener("click", () => runSearch(Math.max(0, state.search.offset - PAGE)));
  $("#hits-next").addEventListener("click", () => runSearch(state.search.offset + PAGE));
  $("#queue-prev").addEventListener("click", () => loadQueue(Math.max(0, state.queue.offset - PAGE)));
  $("#queue-next").addEventListener("click", () => loadQueue(state.queue.offset + PAGE));
  $("#only-flagged").addEventListener("change", () => loadQueue(0));
  $("#player").addEventListener("timeupdate", () => highlightLine());
  window.addEventListener("hashchange", route);
  onLanguageChange(() => {
    renderHits();
    renderCall();
    renderQueue();
  });
  route();
}

init();
