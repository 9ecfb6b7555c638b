"""The managers' pages in a real browser (Debian's headless Chromium) over the book of
tests/test_web_manager.py: a manager signs in and lands on the cases, filters them, opens one and
reads its timeline, adds a note; edits the strategies with a mistake, sees the problem at its
key and line, fixes it and saves; previews a template in Chinese; reads the day's report with
its chart; and the pages speak Chinese in zh-CN. Then a manager sends a text to a segment (dry
run, confirm, the progress bar to 100%, the counts) and gives a case to a collector by hand.
Screenshots go to /tmp/shots."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from compliance_guard.models import Flag, FlagScope
from compliance_guard.rules import load_preset
from compliance_guard.service import Guard, RuleBook
from compliance_guard.store_sql import SqlStore
from dialer.cases import assignment_service, segments
from dialer.cases.models import Actor
from dialer.cases.tenant_files import Kind, TenantFiles
from dialer.messaging.jobs import BatchJobs, Outbox
from dialer.messaging.models import Channel
from dialer.store import attempts as repo
from dialer.store import users
from dialer.store.db import open_store
from dialer.web.auth import Auth
from dialer.web.cases_api import cases_router
from dialer.web.manager import STATIC, manager_router
from tests.test_desk import T0
from tests.test_web_browser import (
    CHROMEDRIVER,
    CHROMIUM,
    SHOTS,
    _need_browser,
    _text,
    _visible,
    _wait,
)
from tests.test_web_manager import (
    BROKEN,
    MISTAKE,
    NUMBERS,
    PASSWORD,
    PAY,
    STRATEGIES,
    TEMPLATES,
    USERS,
    GatedProvider,
    Site,
    _calls,
    build_book,
)
from tests.test_web_qa_browser import Served

pytestmark = pytest.mark.slow

try:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.support.ui import Select
except ImportError:  # pragma: no cover - selenium is a dev dependency
    webdriver = None


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    _need_browser()
    if webdriver is None:
        pytest.skip("selenium is not installed")
    root = tmp_path_factory.mktemp("manager-browser")
    store = open_store(f"sqlite:///{root / 'dialer.db'}")
    cases = build_book(store, root)
    auth = Auth(store)
    guard = Guard(
        SqlStore(store.engine), RuleBook({"us-regf": load_preset("us-regf")}, default="us-regf")
    )
    files = TenantFiles(root / "tenants")
    sms = GatedProvider(root / "sms-out.jsonl")
    jobs = BatchJobs(
        store,
        guard,
        Outbox("bank", {Channel.SMS: sms}, PAY, source="messaging.toml"),
        clock=lambda: T0,
    )
    app = FastAPI()
    app.include_router(auth.router())
    app.include_router(cases_router(store, auth, lambda: T0))
    app.include_router(manager_router(store, auth, files, guard=guard, clock=lambda: T0, jobs=jobs))
    # The sign-in page, as dialer/web/app.py serves it.
    app.add_api_route("/", lambda: FileResponse(STATIC / "index.html"), include_in_schema=False)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    site = Site(store, app, auth, files, repo.ensure_tenant(store, "bank"), cases, sms, guard, jobs)
    _calls(site, answered=2, unanswered=1)
    for username in ("mei", "boss"):
        tenant, role, agent_id = USERS[username]
        users.add_user(store, tenant, username, PASSWORD, role, agent_id=agent_id)
    try:
        with Served(site) as running:  # type: ignore[arg-type]
            yield running
    finally:
        jobs.close()
        store.close()


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                "--window-size=1366,900", "--lang=en-US"):  # fmt: skip
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.implicitly_wait(0)
    yield driver
    driver.quit()


def _shot(driver: WebDriver, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path


def _now(driver: WebDriver, selector: str) -> str:
    found = driver.execute_script(
        "const e = document.querySelector(arguments[0]); return e ? e.textContent : '';", selector
    )
    return str(found)


def _listed(driver: WebDriver) -> list[str]:
    """The debtor ids of the listed cases, once the list is not busy."""
    _wait(driver, lambda d: d.find_element(By.ID, "cases").get_attribute("aria-busy") == "false")
    return [
        str(r.find_element(By.CSS_SELECTOR, "td:nth-child(2) .mono").text)
        for r in driver.find_elements(By.CSS_SELECTOR, "#cases tbody tr")
    ]


def _show_cases(driver: WebDriver) -> list[str]:
    # The click's handler marks the table busy before it asks the server.
    driver.find_element(By.ID, "btn-cases").click()
    return _listed(driver)


def _sign_in(driver: WebDriver, url: str, username: str = "mei") -> None:
    """A manager signs in and lands on the cases."""
    driver.get(url + "/")
    _wait(driver, lambda d: d.find_element(By.ID, "login-tenant"))
    # The page remembers the last tenant signed in to.
    driver.find_element(By.ID, "login-tenant").clear()
    driver.find_element(By.ID, "login-tenant").send_keys(USERS[username][0])
    driver.find_element(By.ID, "login-username").send_keys(username)
    driver.find_element(By.ID, "login-password").send_keys(PASSWORD)
    driver.find_element(By.ID, "login-submit").click()
    _wait(driver, lambda d: d.current_url.split("#")[0].rstrip("/").endswith("/manager"))
    # The header is set up once the page knows who signed in (with their saved language); a
    # language picked before that would be undone by it.
    _wait(driver, lambda d: d.find_element(By.ID, "user-name").text.strip() != "")


def _type_into_editor(driver: WebDriver, element_id: str, text: str) -> None:
    """Replace the editor's text as typing would (an input event follows)."""
    driver.execute_script(
        "const e = document.getElementById(arguments[0]); e.value = arguments[1];"
        "e.dispatchEvent(new Event('input', {bubbles: true}));",
        element_id,
        text,
    )


def test_a_manager_works_cases_fixes_a_strategy_and_previews_a_template(
    served: Served, browser: WebDriver
) -> None:
    site: Site = served.site  # type: ignore[assignment]
    _sign_in(browser, served.url)
    _wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#cases tbody tr")) == 5)
    assert _listed(browser) == ["D3", "D2", "D5", "D1", "D4"]
    _shot(browser, "manager-cases-en")

    # Filters: by name, then by collector and days past due.
    browser.find_element(By.ID, "f-q").send_keys("王")
    assert _show_cases(browser) == ["D2"]
    browser.find_element(By.ID, "btn-clear").click()
    _wait(browser, lambda d: _listed(d) == ["D3", "D2", "D5", "D1", "D4"])
    Select(browser.find_element(By.ID, "f-collector")).select_by_value("a1")
    browser.find_element(By.ID, "f-dpd-max").send_keys("150")
    assert _show_cases(browser) == ["D2"]
    _shot(browser, "manager-cases-filtered-en")
    # Those filters saved as a segment, then the list by the segment alone.
    browser.find_element(By.ID, "segment-name").send_keys("a1 early")
    browser.find_element(By.ID, "segment-save").click()
    _wait(browser, lambda d: "a1 early" in _now(d, "#segment-status"))
    browser.find_element(By.ID, "btn-clear").click()
    _wait(browser, lambda d: _listed(d) == ["D3", "D2", "D5", "D1", "D4"])
    Select(browser.find_element(By.ID, "f-segment")).select_by_value("a1 early")
    assert _show_cases(browser) == ["D2"]
    _shot(browser, "manager-cases-segment-en")

    # The case: its timeline (calls, assignment), its debts; a note added shows at once.
    browser.find_element(By.CSS_SELECTOR, f'#cases tr[data-case="{site.cases["D2"]}"]').click()
    _wait(browser, lambda d: _visible(d, "#view-case") and _visible(d, "#timeline .mg-tl"))
    assert "王芳" in _text(browser, "#h-case")
    kinds = [
        e.get_attribute("data-kind")
        for e in browser.find_elements(By.CSS_SELECTOR, "#timeline .mg-tl")
    ]
    assert kinds.count("call") == 3 and "assignment" in kinds
    calls = [
        e.text
        for e in browser.find_elements(
            By.CSS_SELECTOR, '#timeline .mg-tl[data-kind="call"] .mg-tl-text'
        )
    ]
    assert calls == ["No answer", "Answered · talked 60 s", "Answered · talked 60 s"]
    assert _text(browser, "#debts tbody tr td:first-child") == "B1"
    assert "firm_reminder" in _text(browser, "#case-strategy")
    assert "days past due 95 >= 60" in _text(browser, "#case-strategy .mg-reasons")
    browser.find_element(By.ID, "note-body").send_keys("Asked for a call back after payday")
    browser.find_element(By.ID, "note-add").click()
    _wait(browser, lambda d: "Asked for a call back" in _now(d, "#notes"))
    assert "Asked for a call back" in _now(browser, '#timeline .mg-tl[data-kind="note"]')
    # Put on the legal strategy by hand, with the reason; the page says so.
    Select(browser.find_element(By.ID, "ov-strategy")).select_by_value("legal")
    browser.find_element(By.ID, "ov-why").send_keys("lawyer asked for it")
    browser.find_element(By.ID, "ov-set").click()
    _wait(browser, lambda d: "lawyer asked for it" in _now(d, "#case-strategy .mg-override"))
    assert "Set by hand by mei" in _text(browser, "#case-strategy .mg-override")
    assert "legal" in _text(browser, "#case-strategy .mg-strategy-name")
    _shot(browser, "manager-case-en")

    # The strategies: a wait of 0 days is shown at its key and line; not saved; fixed, saved.
    browser.find_element(By.ID, "tab-strategies").click()
    _wait(
        browser, lambda d: "[strategies." in d.find_element(By.ID, "st-text").get_attribute("value")
    )
    _type_into_editor(browser, "st-text", BROKEN)
    line = 1 + BROKEN.splitlines().index(MISTAKE)
    problem_at = '#st-problems .mg-problem[data-tone="problem"]'
    _wait(browser, lambda d: _visible(d, problem_at))
    problem = browser.find_element(By.CSS_SELECTOR, problem_at)
    assert problem.get_attribute("data-key") == "strategies.gentle.steps[1].days"
    assert problem.get_attribute("data-line") == str(line)
    assert f"line {line}" in problem.text and "greater than or equal to 1" in problem.text
    mark = browser.find_element(By.CSS_SELECTOR, "#st-gutter .mg-mark.problem")
    assert mark.get_attribute("data-line") == str(line)
    browser.find_element(By.ID, "st-save").click()
    _wait(browser, lambda d: "Not saved" in _now(d, "#st-status"))
    assert not site.files.path("bank", Kind.STRATEGIES).exists()
    # The problem takes the manager to its line.
    browser.find_element(By.CSS_SELECTOR, problem_at).click()
    selected = browser.execute_script(
        "const e = document.getElementById('st-text');"
        "return e.value.slice(e.selectionStart, e.selectionEnd);"
    )
    assert selected == MISTAKE
    _shot(browser, "manager-strategy-mistake-en")
    _type_into_editor(browser, "st-text", STRATEGIES)
    _wait(browser, lambda d: not d.find_elements(By.CSS_SELECTOR, problem_at))
    browser.find_element(By.ID, "st-save").click()
    _wait(browser, lambda d: "Saved (version" in _now(d, "#st-status"))
    assert sorted(site.files.strategies("bank").strategies) == ["firm", "gentle"]
    # Saved; the step naming a template the tenant does not have yet stays flagged.
    (warning,) = browser.find_elements(
        By.CSS_SELECTOR, '#st-problems .mg-problem[data-tone="warning"]'
    )
    assert warning.get_attribute("data-key") == "strategies.gentle.steps[0].template"
    assert "Gentle" in _now(browser, '#st-summary .mg-flow[data-strategy="gentle"] summary')
    _shot(browser, "manager-strategy-saved-en")

    # The tenant's template, previewed unsaved in Chinese for a made-up debtor and for 王芳
    # with the guard's answer, then saved.
    browser.find_element(By.ID, "tab-templates").click()
    _wait(
        browser, lambda d: "[templates." in d.find_element(By.ID, "tp-text").get_attribute("value")
    )
    _type_into_editor(browser, "tp-text", TEMPLATES)
    _wait(
        browser,
        lambda d: (
            [
                o.get_attribute("value")
                for o in d.find_elements(By.CSS_SELECTOR, "#pv-template option")
            ]
            == ["nudge"]
        ),
    )
    Select(browser.find_element(By.ID, "pv-language")).select_by_value("zh-CN")
    browser.find_element(By.ID, "pv-go").click()
    _wait(browser, lambda d: _visible(d, "#pv-out"))
    assert _text(browser, "#pv-body").startswith("【温馨提示】张伟您好，您的欠款1,250.00元")
    browser.find_element(By.ID, "pv-case").send_keys(str(site.cases["D2"]))
    browser.find_element(By.ID, "pv-go").click()
    _wait(browser, lambda d: "王芳您好" in _now(d, "#pv-body"))
    assert browser.find_element(By.ID, "pv-guard").get_attribute("data-allowed") == "true"
    browser.find_element(By.ID, "tp-save").click()
    _wait(browser, lambda d: "Saved (version" in _now(d, "#tp-status"))
    assert "nudge" in site.files.templates("bank")
    _shot(browser, "manager-template-preview-en")

    # The day's report: a row per campaign, a bar per row.
    browser.get(served.url + "/manager#reports")
    _wait(browser, lambda d: _visible(d, "#rp-day"))
    browser.execute_script(f"document.getElementById('rp-day').value = '{T0.date().isoformat()}'")
    browser.find_element(By.ID, "rp-go").click()
    _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#rp-table tbody tr[data-key]"))
    assert _text(browser, '#rp-table tbody tr td[data-figure="attempts"]') == "3"
    assert len(browser.find_elements(By.CSS_SELECTOR, "#rp-chart svg.mg-bars rect")) == 1
    assert browser.find_element(By.ID, "rp-csv").get_attribute("href").endswith("by=campaign")
    _shot(browser, "manager-report-en")
    # The week: a line per figure over its seven days.
    Select(browser.find_element(By.ID, "rp-period")).select_by_value("week")
    browser.find_element(By.ID, "rp-go").click()
    _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#rp-chart svg.mg-lines"))
    assert len(browser.find_elements(By.CSS_SELECTOR, "#rp-chart svg.mg-lines polyline")) == 2
    _shot(browser, "manager-report-week-en")

    # In Chinese: the same pages.
    Select(browser.find_element(By.ID, "lang-select")).select_by_value("zh-CN")
    _wait(browser, lambda d: _text(d, "#tab-cases") == "案件")
    assert _text(browser, "#rp-go") == "查询"
    _shot(browser, "manager-report-zh")
    browser.find_element(By.ID, "tab-cases").click()
    _wait(browser, lambda d: _visible(d, "#view-cases"))
    assert "逾期天数" in _text(browser, "#cases thead")
    _shot(browser, "manager-cases-zh")
    browser.get(served.url + f"/manager#case/{site.cases['D1']}")
    _wait(browser, lambda d: _visible(d, "#timeline .mg-tl"))
    assert "承诺还款" in _text(browser, "#case-status")
    assert "承诺于" in _now(browser, '#timeline .mg-tl[data-kind="promise"]')
    _shot(browser, "manager-case-zh")
    browser.find_element(By.ID, "tab-strategies").click()
    _wait(browser, lambda d: _visible(d, "#st-summary .mg-flow"))
    assert "温和" in _now(browser, '#st-summary .mg-flow[data-strategy="gentle"] summary')
    _shot(browser, "manager-strategies-zh")
    browser.find_element(By.ID, "tab-templates").click()
    _wait(browser, lambda d: _visible(d, "#pv-go"))
    assert _text(browser, "#h-preview") == "预览"
    _shot(browser, "manager-templates-zh")


def _figure(driver: WebDriver, box: str, name: str) -> str:
    return _now(driver, f'{box} dd[data-figure="{name}"]')


def _send(driver: WebDriver, template: str) -> None:
    """Dry run of `template` to the segment "late", then confirmed."""
    Select(driver.find_element(By.ID, "send-segment")).select_by_value("late")
    Select(driver.find_element(By.ID, "send-template")).select_by_value(template)
    driver.find_element(By.ID, "send-check").click()
    _wait(driver, lambda d: _visible(d, "#send-dry") and _visible(d, "#send-go"))


def _bar_full(driver: WebDriver) -> bool:
    bar = driver.find_element(By.ID, "send-bar")
    return bar.get_attribute("aria-valuenow") == "100" and _visible(driver, "#send-result")


def test_a_manager_sends_a_text_to_a_segment_and_gives_a_case_by_hand(
    served: Served, browser: WebDriver
) -> None:
    site: Site = served.site  # type: ignore[assignment]
    assert site.guard is not None and site.sms is not None
    segments.save_segment(
        site.store, site.tenant_id, "late", {"days_past_due_min": 40}, Actor.user("mei"), T0
    )
    # D5 replied STOP: the guard refuses texts to that number.
    site.guard.set_flag("bank", Flag.OPT_OUT_SMS, FlagScope.PHONE, NUMBERS["D5"], T0)
    assignment_service.save_collector(
        site.store, site.tenant_id, "a7", T0, name="Zhou Min", team="desk", capacity=40
    )
    _sign_in(browser, served.url)
    Select(browser.find_element(By.ID, "lang-select")).select_by_value("en")
    _wait(browser, lambda d: _text(d, "#tab-cases") == "Cases")

    # The segment, a template, the dry run's figures; nothing sent yet.
    _wait(browser, lambda d: _visible(d, "#send-open"))  # a manager's, once the options came
    browser.find_element(By.ID, "send-open").click()
    _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#send-template option"))
    assert not _visible(browser, "#send-off")
    _send(browser, "reminder_gentle")
    assert _figure(browser, "#send-figures", "debtors") == "4 debtors"
    assert _figure(browser, "#send-figures", "go_now") == "3 msg"
    assert _figure(browser, "#send-figures", "refused") == "1 msg"
    assert "https://pay.example.com/d/D" in _now(browser, "#send-previews .mg-preview-body")
    assert _text(browser, "#send-go") == "Send the batch (4 messages to the guard)"
    assert site.sms.sent() == []
    _shot(browser, "manager-send-dry-en")
    # Confirmed: the bar reaches 100% and the counts show.
    browser.find_element(By.ID, "send-go").click()
    _wait(browser, _bar_full)
    assert _figure(browser, "#send-result", "sent") == "3 msg"
    assert _figure(browser, "#send-result", "refused_now") == "1 msg"
    assert "done" in _text(browser, "#send-state")
    assert "4 of 4 messages handled (100%)" in _text(browser, "#send-progress")
    assert len(site.sms.sent()) == 3
    _shot(browser, "manager-send-done-en")

    # In Chinese: the same batch again sends nothing twice; then another template, to 100%.
    Select(browser.find_element(By.ID, "lang-select")).select_by_value("zh-CN")
    _wait(browser, lambda d: "已完成" in _text(d, "#send-state"))
    assert _figure(browser, "#send-result", "sent") == "3 条"
    _send(browser, "reminder_gentle")
    assert _figure(browser, "#send-figures", "already") == "4 条"
    assert _figure(browser, "#send-figures", "go_now") == "0 条"
    _send(browser, "reminder_firm")
    assert _figure(browser, "#send-figures", "debtors") == "4 人"
    _shot(browser, "manager-send-dry-zh")
    browser.find_element(By.ID, "send-go").click()
    _wait(browser, lambda d: _bar_full(d) and "reminder_firm" in _text(d, "#send-state"))
    assert "已完成" in _text(browser, "#send-state")
    assert "（100%）" in _text(browser, "#send-progress")
    _shot(browser, "manager-send-done-zh")
    assert len([m for m in site.sms.sent() if m["to"] == NUMBERS["D5"]]) == 0

    # A case given by hand to a collector (with their load), kept there.
    Select(browser.find_element(By.ID, "lang-select")).select_by_value("en")
    browser.get(served.url + f"/manager#case/{site.cases['D4']}")
    _wait(browser, lambda d: _visible(d, "#give-form") and "Tom Baker" in _text(d, "#h-case"))
    assert _text(browser, "#case-collector") == "Nobody (the team's queue)"
    options = [o.text for o in browser.find_elements(By.CSS_SELECTOR, "#give-agent option")]
    assert "Zhou Min (a7) · desk · 0/40 open cases" in options
    Select(browser.find_element(By.ID, "give-agent")).select_by_value("a7")
    browser.find_element(By.ID, "give-why").send_keys("knows the family")
    assert browser.find_element(By.ID, "give-keep").is_selected()
    browser.find_element(By.ID, "give-set").click()
    _wait(browser, lambda d: _visible(d, "#case-kept"))
    assert _text(browser, "#case-collector").startswith("Zhou Min (a7) · desk · 1/40")
    assert _text(browser, "#case-kept") == "kept by hand"
    assert "knows the family" in _now(browser, '#timeline .mg-tl[data-kind="assignment"]')
    _shot(browser, "manager-case-give-en")
    Select(browser.find_element(By.ID, "lang-select")).select_by_value("zh-CN")
    _wait(browser, lambda d: _text(d, "#case-kept") == "人工固定")
    _shot(browser, "manager-case-give-zh")

    # A manager of a tenant the messaging file is not set up for is told why sending is off.
    browser.delete_all_cookies()
    _sign_in(browser, served.url, "boss")
    Select(browser.find_element(By.ID, "lang-select")).select_by_value("en")
    _wait(browser, lambda d: _visible(d, "#send-open"))
    browser.find_element(By.ID, "send-open").click()
    _wait(browser, lambda d: _visible(d, "#send-off"))
    assert "off: messaging.toml sends for tenant 'bank' only" in _text(browser, "#send-off")
    assert not browser.find_element(By.ID, "send-check").is_enabled()
    _shot(browser, "manager-send-off-en")
