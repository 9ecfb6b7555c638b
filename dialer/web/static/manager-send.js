// A message batch to a saved segment, from the case list: pick the segment and a template, see
// the dry run's figures (how many would go now, wait, be refused, be skipped), confirm, then
// watch the batch's progress bar until it is done and read its final counts. The batch itself
// runs on the server (dialer/messaging/jobs.py); this page only polls it, so closing the page
// does not stop it, and opening it again picks up a batch still on its way.

import { t, tOr, onLanguageChange, fmtNumber, fmtDateTime } from "./i18n.js";
import { api, el, $, say, show } from "./common.js";

const POLL_MS = 400;
const state = {
  setup: null, // GET /api/manager/batches
  dry: null, // the last dry run, for the chosen segment and template
  job: null, // the batch being watched
  joined: false, // ... which was already on its way when started again
  timer: null,
  segments: () => [],
  refusal: (res) => String(res.status),
};

// The figures of a dry run or a finished batch: [key, value] pairs, each with its unit.
function figures(box, pairs) {
  box.replaceChildren(
    ...pairs.flatMap(([key, n]) => [
      el("dt", { i18n: key }),
      el("dd", { dataset: { figure: key.split(".").pop(), zero: String(n === 0) }, text: t("mg.send.n_messages", { n: fmtNumber(n) }) }),
    ]),
  );
}

function chosen() {
  const form = $("#send-form").elements;
  return { segment: form.segment.value, template: form.template.value, language: form.language.value || null };
}

function fillSegments(preferred) {
  const select = $("#send-segment");
  const names = state.segments().map((seg) => seg.name);
  select.replaceChildren(...names.map((n) => el("option", { value: n, text: n })));
  if (names.includes(preferred)) select.value = preferred;
}

function fillTemplates() {
  const select = $("#send-template");
  const before = select.value;
  const templates = (state.setup && state.setup.templates) || [];
  select.replaceChildren(
    ...templates.map((tpl) =>
      el("option", {
        value: tpl.name,
        disabled: !tpl.provider,
        text: tpl.provider
          ? `${tpl.name} (${tOr(`mg.channel.${tpl.channel}`, tpl.channel)})`
          : `${tpl.name} (${t("mg.send.no_provider", { channel: tOr(`mg.channel.${tpl.channel}`, tpl.channel) })})`,
      }),
    ),
  );
  const usable = templates.filter((tpl) => tpl.provider).map((tpl) => tpl.name);
  select.value = usable.includes(before) ? before : usable[0] || "";
}

// Open the panel: what may be sent, and a batch of the tenant still on its way, if any.
async function open(preferredSegment) {
  const panel = $("#send-panel");
  show(panel, true);
  $("#send-open").setAttribute("aria-expanded", "true");
  fillSegments(preferredSegment);
  const res = await api("GET", "/api/manager/batches");
  if (!res.ok) {
    say($("#send-error"), state.refusal(res));
    return;
  }
  state.setup = res.data;
  fillTemplates();
  renderOff();
  const running = res.data.jobs.find((job) => !job.done);
  if (running && !state.job) watch(running);
  panel.scrollIntoView({ block: "nearest" });
}

function close() {
  show($("#send-panel"), false);
  $("#send-open").setAttribute("aria-expanded", "false");
}

function renderOff() {
  const s = state.setup;
  const off = s && !s.on;
  say($("#send-off"), off ? t("mg.send.off", { why: s.why_off || "" }) : "", "info");
  const noSegment = state.segments().length === 0;
  if (!off && noSegment) say($("#send-off"), t("mg.send.no_segments"), "info");
  for (const node of $("#send-form").querySelectorAll("select, button")) node.disabled = Boolean(off) || noSegment;
}

function forget() {
  state.dry = null;
  show($("#send-dry"), false);
}

async function dryRun(event) {
  event.preventDefault();
  const error = $("#send-error");
  const body = chosen();
  if (!body.segment || !body.template) {
    say(error, t("mg.send.pick"));
    return;
  }
  forget();
  say(error, "");
  // A finished batch makes way for the next one's figures; one on its way stays in sight.
  if (state.job && state.job.done) {
    state.job = null;
    state.joined = false;
    show($("#send-job"), false);
  }
  $("#send-check").disabled = true;
  $("#send-check").setAttribute("aria-busy", "true");
  const res = await api("POST", "/api/manager/batches", { ...body, dry_run: true });
  $("#send-check").disabled = false;
  $("#send-check").setAttribute("aria-busy", "false");
  if (!res.ok) {
    say(error, state.refusal(res));
    return;
  }
  state.dry = { ...res.data.dry_run, asked: body };
  renderDry();
}

function renderDry() {
  const d = state.dry;
  if (!d) return;
  $("#send-key").textContent = d.batch_key;
  figures($("#send-figures"), [
    ["mg.send.debtors", d.debtors],
    ["mg.send.go_now", d.go_now],
    ["mg.send.wait", d.wait],
    ["mg.send.refused", d.refused],
    ["mg.send.skipped", d.skipped],
    ["mg.send.already", d.already],
  ]);
  // The debtors' count is of people, the rest of messages.
  $("#send-figures dd[data-figure='debtors']").textContent = t("mg.send.n_debtors", { n: fmtNumber(d.debtors) });
  const reasons = Object.entries(d.skipped_by_reason || {}).map(([why, n]) => `${why}: ${fmtNumber(n)}`);
  $("#send-previews").replaceChildren(
    reasons.length ? el("p", { class: "muted", text: t("mg.send.skipped_why", { list: reasons.join("; ") }) }) : "",
    ...d.previews.map((p) =>
      el("div", { class: "mg-preview", dataset: { allowed: String(p.allowed) } },
        el("p", { class: "muted", text: `${p.recipient} · ${t(`lang.${p.language}`)}` }),
        p.subject ? el("p", { class: "mg-preview-subject", text: p.subject }) : "",
        el("pre", { class: "mg-preview-body", text: p.body }),
        el("p", { class: "mg-guard", dataset: { allowed: String(p.allowed) },
          text: p.allowed ? t("mg.tp.guard_ok") : t("mg.tp.guard_no", { why: p.reasons.join("; "), at: p.next_allowed_at ? fmtDateTime(p.next_allowed_at) : t("dash") }) }),
      ),
    ),
  );
  const go = $("#send-go");
  go.textContent = t("mg.send.go", { n: fmtNumber(d.go_now + d.wait + d.refused) });
  // Nothing to put to the guard (all skipped, or an earlier start planned them all) is still
  // worth a start: it sends what an earlier start left due.
  go.disabled = false;
  show($("#send-dry"), true);
}

async function start() {
  const d = state.dry;
  if (!d) return;
  const error = $("#send-error");
  $("#send-go").disabled = true;
  const res = await api("POST", "/api/manager/batches", { ...d.asked, dry_run: false });
  if (!res.ok) {
    $("#send-go").disabled = false;
    say(error, state.refusal(res));
    return;
  }
  say(error, "");
  forget();
  watch(res.data.job, res.data.joined);
}

// `joined`: the start found the same batch already on its way (the page says so).
function watch(job, joined = false) {
  clearTimeout(state.timer);
  state.joined = joined;
  state.job = job;
  renderJob();
  if (!job.done) state.timer = setTimeout(poll, POLL_MS);
}

async function poll() {
  const job = state.job;
  if (!job) return;
  const res = await api("GET", `/api/manager/batches/${job.id}`);
  if (state.job !== job) return; // another batch is watched now
  if (!res.ok) {
    say($("#send-error"), state.refusal(res));
    state.timer = setTimeout(poll, POLL_MS * 5);
    return;
  }
  watch(res.data, state.joined);
}

function renderJob() {
  const job = state.job;
  if (!job) return;
  show($("#send-job"), true);
  const box = $("#send-job");
  box.dataset.state = job.state;
  $("#send-state").textContent = t(`mg.send.state.${job.state}`, { key: job.batch_key });
  const bar = $("#send-bar");
  bar.setAttribute("aria-valuenow", String(job.percent));
  bar.dataset.state = job.state;
  $("#send-bar .mg-progress-fill").style.width = `${job.percent}%`;
  $("#send-progress").textContent = t("mg.send.progress_text", {
    done: fmtNumber(job.processed),
    of: fmtNumber(job.planned),
    percent: job.percent,
  });
  const result = $("#send-result");
  // What became of the messages shows chunk by chunk while the batch runs, not only at the end.
  const shown = job.done || job.processed > 0;
  show(result, shown);
  if (shown) {
    figures(result, [
      ["mg.send.sent", job.sent],
      ["mg.send.scheduled", job.scheduled],
      ["mg.send.refused_now", job.refused],
      ["mg.send.failed", job.failed],
      ["mg.send.unknown", job.unknown],
      ["mg.send.skipped", job.skipped],
      ["mg.send.already", job.already],
    ]);
  }
  if (job.error) say($("#send-error"), job.error);
  else if (state.joined) say($("#send-error"), t("mg.send.joined"), "info");
}

// `segments`: the saved segments as the case list has them; `current`: the one chosen there.
export function setupSend({ segments, current, refusal }) {
  state.segments = segments;
  state.refusal = refusal;
  $("#send-open").addEventListener("click", () => open(current()));
  $("#send-close").addEventListener("click", close);
  $("#send-form").addEventListener("submit", dryRun);
  $("#send-form").addEventListener("change", forget);
  $("#send-go").addEventListener("click", start);
  onLanguageChange(() => {
    fillTemplates();
    renderOff();
    renderDry();
    renderJob();
  });
}

// The segments changed (one was saved): the panel's list follows.
export function segmentsChanged(current) {
  if (!$("#send-panel").hidden) {
    fillSegments(current);
    renderOff();
  }
}
