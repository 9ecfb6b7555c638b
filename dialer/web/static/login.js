// The sign-in page: tenant, username, password → POST /api/login → the page of one's role.

import { t, applyI18n, setLanguage, language } from "./i18n.js";
import { api, errorText, say, $ } from "./common.js";

const TENANT_KEY = "dialer.tenant";

function pageFor(role) {
  if (role === "agent") return "/agent";
  // A manager's day starts at the cases; the live console is a tab away.
  if (role === "manager") return "/manager";
  if (["supervisor", "admin"].includes(role)) return "/supervisor";
  if (role === "qa") return "/qa";
  return null;
}

function go(user) {
  const page = pageFor(user.role);
  if (page) {
    location.replace(page);
    return true;
  }
  say($("#login-error"), t("login.unknown_role", { role: user.role }));
  return false;
}

async function submit(event) {
  event.preventDefault();
  const error = $("#login-error");
  const button = $("#login-submit");
  const tenant = $("#login-tenant").value.trim();
  const username = $("#login-username").value.trim();
  const password = $("#login-password").value;
  if (!tenant || !username || !password) {
    say(error, t("login.missing"));
    (!tenant ? $("#login-tenant") : !username ? $("#login-username") : $("#login-password")).focus();
    return;
  }
  say(error, "");
  button.disabled = true;
  button.textContent = t("login.busy");
  const res = await api("POST", "/api/login", { tenant, username, password }, { allow401: true });
  button.disabled = false;
  button.textContent = t("login.submit");
  if (res.ok) {
    try {
      localStorage.setItem(TENANT_KEY, tenant);
    } catch {
      // not remembered; harmless
    }
    const user = (res.data && (res.data.user || res.data)) || {};
    if (user.language) setLanguage(user.language);
    go(user);
    return;
  }
  if (res.status === 401) {
    say(error, t("login.bad_credentials"));
  } else if (res.status === 429) {
    const wait = Number.parseInt(res.headers?.get("Retry-After") || "", 10);
    say(error, Number.isFinite(wait) && wait > 0 ? t("login.throttled", { s: wait }) : t("login.throttled_later"));
  } else {
    say(error, errorText(res));
  }
  $("#login-password").value = "";
  $("#login-password").focus();
}

async function init() {
  applyI18n(document);
  const select = $("#lang-select");
  select.value = language();
  select.addEventListener("change", () => setLanguage(select.value));
  let tenant = "";
  try {
    tenant = localStorage.getItem(TENANT_KEY) || "";
  } catch {
    // no storage
  }
  $("#login-tenant").value = tenant;
  (tenant ? $("#login-username") : $("#login-tenant")).focus();
  $("#login-form").addEventListener("submit", submit);
  // already signed in (another tab, a reload): straight to the page
  const me = await api("GET", "/api/me", undefined, { allow401: true });
  if (me.ok && me.data) go(me.data.user || me.data);
}

init();
