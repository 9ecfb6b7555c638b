// What the agent and supervisor pages share: JSON calls to the API, the WebSocket that comes
// back by itself, the once-a-second ticker for "time in state", and the page header.

import { t, setLanguage, fmtDateTime, applyI18n } from "./i18n.js";

// ---- server clock ----
// "Time in state" counts from the server's `since`; a browser clock that is off by a minute
// would show nonsense, so the pages follow the server's clock (HTTP Date header, the live
// feed's "at").
let clockOffsetMs = 0;

export function serverNow() {
  return Date.now() + clockOffsetMs;
}

export function syncClock(serverIso) {
  const at = Date.parse(serverIso);
  if (!Number.isNaN(at)) clockOffsetMs = at - Date.now();
}

function syncClockFromHeader(headers) {
  const date = headers.get("Date");
  if (!date) return;
  const at = Date.parse(date);
  // the header has whole seconds: the true time is somewhere in the next second
  if (!Number.isNaN(at)) clockOffsetMs = at + 500 - Date.now();
}

// ---- HTTP ----

// Call the API. Resolves to {ok, status, data}; never throws. A 401 (no session, or it
// expired) sends the browser to the login page unless `allow401` is set.
export async function api(method, path, body, { allow401 = false } = {}) {
  const init = {
    method,
    credentials: "same-origin",
    headers: { Accept: "application/json" },
  };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    return { ok: false, status: 0, data: null };
  }
  syncClockFromHeader(response.headers);
  let data = null;
  const type = response.headers.get("Content-Type") || "";
  try {
    data = type.includes("json") ? await response.json() : await response.text();
  } catch {
    data = null;
  }
  if (response.status === 401 && !allow401) {
    location.assign("/");
  }
  return { ok: response.ok, status: response.status, data, headers: response.headers };
}

// The server's refusal in words: FastAPI's {"detail": "..."}, its validation list, or the
// compliance guard's {"detail": {"reasons": [{"message"}], "next_allowed_at"}}.
export function errorText(res) {
  if (res.status === 0) return t("error.network");
  const parts = [];
  const collect = (obj) => {
    if (obj === null || obj === undefined) return;
    if (typeof obj === "string") {
      if (obj.trim()) parts.push(obj.trim());
      return;
    }
    if (Array.isArray(obj)) {
      for (const item of obj) collect(item && typeof item === "object" && "msg" in item ? item.msg : item);
      return;
    }
    if (typeof obj === "object") {
      if ("detail" in obj) collect(obj.detail);
      if ("reason" in obj) collect(obj.reason);
      if ("message" in obj) collect(obj.message);
      if ("reasons" in obj) {
        for (const r of obj.reasons || []) collect(typeof r === "string" ? r : r.message || r.rule);
      }
      if ("error" in obj) collect(obj.error);
      if (obj.next_allowed_at) parts.push(t("error.next_allowed", { at: fmtDateTime(obj.next_allowed_at) }));
    }
  };
  if (typeof res.data === "string") {
    // an HTML error page is no message for a person
    if (!res.data.trimStart().startsWith("<")) collect(res.data);
  } else {
    collect(res.data);
  }
  if (parts.length) return [...new Set(parts)].join(" ");
  if (res.status === 403) return t("error.forbidden");
  return t("error.status", { status: res.status });
}

// ---- DOM ----

// el("td", {class: "num", text: "3"}, child, ...). `i18n` names a dictionary key (kept on the
// element so a language switch re-translates it); `on` maps events to handlers.
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key === "i18n") {
      node.dataset.i18n = value;
      node.textContent = t(value, attrs.i18nArgs);
      if (attrs.i18nArgs) node.dataset.i18nArgs = JSON.stringify(attrs.i18nArgs);
    } else if (key === "i18nArgs") continue;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key === "on") for (const [ev, fn] of Object.entries(value)) node.addEventListener(ev, fn);
    else if (value === true) node.setAttribute(key, "");
    else node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function $(selector, root = document) {
  return root.querySelector(selector);
}

export function show(node, visible) {
  node.hidden = !visible;
}

// A message line (e.g. #disposition-error): text and tone (error, ok, info), or cleared.
export function say(node, text, tone = "error") {
  node.textContent = text || "";
  node.dataset.tone = text ? tone : "";
  node.hidden = !text;
}

// ---- ticking ----

const tickHooks = [];

export function onTick(fn) {
  tickHooks.push(fn);
}

// Elements with data-since (ISO instant) show the time since then; data-until (epoch ms, the
// browser's clock) the seconds left.
export function tick(root = document) {
  const now = serverNow();
  for (const node of root.querySelectorAll("[data-since]")) {
    const since = Date.parse(node.dataset.since);
    node.textContent = Number.isNaN(since) ? t("dash") : formatElapsed((now - since) / 1000);
  }
  for (const fn of tickHooks) fn();
}

function formatElapsed(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, "0");
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${ss}` : `${m}:${ss}`;
}

export function startTicker() {
  tick();
  setInterval(() => tick(), 1000);
}

// ---- WebSocket that reconnects ----

export class LiveSocket {
  // onMessage(msg), onOpen(isReconnect), onStatus("live" | "connecting" | "retry" | "stopped", s)
  constructor(path, { onMessage, onOpen, onStatus }) {
    this.path = path;
    this.onMessage = onMessage;
    this.onOpen = onOpen || (() => {});
    this.onStatus = onStatus || (() => {});
    this.failures = 0;
    this.opened = 0;
    this.stopped = false;
    this.ws = null;
    this.timer = null;
  }

  url() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    return `${scheme}//${location.host}${this.path}`;
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.ws) {
      this.ws.onclose = null;
      this.ws.close();
    }
    this.onStatus("stopped");
  }

  connect() {
    this.onStatus("connecting");
    let ws;
    try {
      ws = new WebSocket(this.url());
    } catch {
      this.retry();
      return;
    }
    this.ws = ws;
    ws.onopen = () => {
      this.failures = 0;
      this.opened += 1;
      this.onStatus("live");
      this.onOpen(this.opened > 1);
    };
    ws.onmessage = (event) => {
      let msg;
      try {
        msg = JSON.parse(event.data);
      } catch {
        return;
      }
      this.onMessage(msg);
    };
    ws.onclose = () => {
      this.ws = null;
      if (!this.stopped) this.retry();
    };
  }

  retry() {
    // 0.5 s, 1 s, 2 s … up to 15 s, with some jitter so a restarted server is not hit by every
    // browser in the same instant
    const base = Math.min(15000, 500 * 2 ** this.failures);
    const delay = Math.round(base * (0.75 + Math.random() * 0.5));
    this.failures += 1;
    let left = Math.ceil(delay / 1000);
    this.onStatus("retry", left);
    const countdown = setInterval(() => {
      left -= 1;
      if (left > 0 && !this.stopped) this.onStatus("retry", left);
      else clearInterval(countdown);
    }, 1000);
    // a socket refused because the session ended: this sends the browser to the login page
    if (this.failures >= 2) api("GET", "/api/me");
    this.timer = setTimeout(() => {
      clearInterval(countdown);
      if (!this.stopped) this.connect();
    }, delay);
  }
}

// The connection badge (#conn-status) for LiveSocket's onStatus.
export function showConnection(node, status, seconds) {
  node.dataset.status = status;
  if (status === "live") node.textContent = t("conn.live");
  else if (status === "connecting") node.textContent = t("conn.connecting");
  else if (status === "retry") node.textContent = t("conn.retry", { s: seconds });
  else node.textContent = t("conn.stopped");
}

// ---- header: user, language, sign out ----

// Load the signed-in user; wrong role for this page: go to the right one.
export async function loadMe(wantAgent) {
  const res = await api("GET", "/api/me");
  if (!res.ok) return null;
  const me = res.data.user || res.data;
  const isAgent = me.role === "agent";
  if (wantAgent && !isAgent) {
    location.replace("/supervisor");
    return null;
  }
  if (!wantAgent && isAgent) {
    location.replace("/agent");
    return null;
  }
  if (me.language) setLanguage(me.language);
  else applyI18n(document);
  return me;
}

export function setupHeader(me, onError) {
  const name = $("#user-name");
  if (name) name.textContent = me.display_name || me.username || "";
  const tenant = $("#user-tenant");
  if (tenant) tenant.textContent = me.tenant || "";
  const select = $("#lang-select");
  if (select) {
    select.value = document.documentElement.lang;
    select.addEventListener("change", async () => {
      const lang = select.value;
      setLanguage(lang);
      const res = await api("POST", "/api/me/language", { language: lang });
      if (!res.ok && onError) onError(errorText(res));
    });
  }
  const signout = $("#btn-signout");
  if (signout) {
    signout.addEventListener("click", async () => {
      await api("POST", "/api/logout", undefined, { allow401: true });
      location.assign("/");
    });
  }
}
