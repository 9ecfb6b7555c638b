"""The pages in a real browser: Debian's headless Chromium against `dialer demo --web`.

An agent signs in, takes a simulated call and sees the right case, records a promise to pay and
finds it in the case history; a supervisor lowers a campaign's target abandonment rate and sees
the new target; the agent's browser is refused another agent's case; the zh-CN pages speak
Chinese. Screenshots go to /tmp/shots (DIALER_SHOTS_DIR) for a person to look at.

Skipped where /usr/bin/chromium or /usr/bin/chromedriver is missing (apt install chromium
chromium-driver); with DIALER_REQUIRE_SERVICES=1 that fails instead. Selenium never downloads a
browser here: both paths are given.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REQUIRE_SERVICES

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SHOTS = Path(os.environ.get("DIALER_SHOTS_DIR", "/tmp/shots"))
TENANT = "default"
AGENT = ("agent1", "agent1")  # username, agent id
SUPERVISOR = "supervisor"
PASSWORD = "browser-test-password"

pytestmark = pytest.mark.slow


def _need_browser() -> None:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if not missing:
        return
    reason = f"{' and '.join(missing)} not installed (apt install chromium chromium-driver)"
    if REQUIRE_SERVICES:
        pytest.fail(f"{reason} and DIALER_REQUIRE_SERVICES=1")
    pytest.skip(reason)


try:
    from selenium import webdriver
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.support.ui import Select, WebDriverWait
except ImportError:  # pragma: no cover - selenium is a dev dependency
    webdriver = None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Demo:
    url: str
    data_dir: Path
    process: subprocess.Popen[bytes]

    def db(self) -> sqlite3.Connection:
        return sqlite3.connect(self.data_dir / "dialer.db", timeout=10)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    _need_browser()
    if webdriver is None:
        pytest.fail("selenium is not installed (pip install -e .[dev])")
    data_dir = tmp_path_factory.mktemp("web-demo")
    port = _free_port()
    log = (data_dir / "demo.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dialer.cli",
            "demo",
            "--web",
            "--port",
            str(port),
            "--data-dir",
            str(data_dir),
            "--password",
            PASSWORD,
            # agent1 (the browser) and one simulated agent; rings and talk four times faster
            # than life, wrap-up still 15 s: enough for a person, short for the suite.
            "--agents",
            "2",
            "--time-scale",
            "4",
            "--quiet",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    try:
        while True:
            if process.poll() is not None:
                pytest.fail(
                    f"dialer demo --web exited with {process.returncode}: {_tail(data_dir)}"
                )
            try:
                with urllib.request.urlopen(url + "/", timeout=2) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"dialer demo --web did not serve / in 60 s: {_tail(data_dir)}")
            time.sleep(0.3)
        yield Demo(url, data_dir, process)
    finally:
        # Like an operator: the first signal stops dialling, the second hangs up the calls.
        process.terminate()
        try:
            process.wait(1)
        except subprocess.TimeoutExpired:
            process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _tail(data_dir: Path) -> str:
    try:
        return (data_dir / "demo.log").read_text(errors="replace")[-3000:]
    except OSError:
        return "(no log)"


@pytest.fixture(scope="module")
def browsers() -> Iterator[Callable[[], WebDriver]]:
    """Opens as many headless Chromiums as a test needs; all closed at the end."""
    opened: list[WebDriver] = []

    def open_browser() -> WebDriver:
        options = webdriver.ChromeOptions()
        options.binary_location = str(CHROMIUM)
        for arg in (
            "--headless=new",
            "--no-sandbox",
            "--disable-dev-shm-usage",
            "--window-size=1366,768",
            "--lang=en-US",
        ):
            options.add_argument(arg)
        driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
        driver.implicitly_wait(0)
        opened.append(driver)
        return driver

    yield open_browser
    for driver in opened:
        driver.quit()


def _shot(driver: WebDriver, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(SHOTS / f"{name}.png"))


def _wait(driver: WebDriver, condition: Callable[[WebDriver], Any], timeout: float = 20) -> Any:
    return WebDriverWait(driver, timeout, poll_frequency=0.2).until(condition)


def _text(driver: WebDriver, selector: str) -> str:
    return str(driver.find_element(By.CSS_SELECTOR, selector).text)


def _visible(driver: WebDriver, selector: str) -> bool:
    found = driver.find_elements(By.CSS_SELECTOR, selector)
    return bool(found) and found[0].is_displayed()


def _set_value(driver: WebDriver, element_id: str, value: str) -> None:
    """Date and date-time inputs take keys in the browser's locale order; set them directly."""
    driver.execute_script(
        "const e = document.getElementById(arguments[0]); e.value = arguments[1];"
        "e.dispatchEvent(new Event('input', {bubbles: true}));"
        "e.dispatchEvent(new Event('change', {bubbles: true}));",
        element_id,
        value,
    )


def _fetch(driver: WebDriver, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """A request from the page itself (its cookie, its origin): status and JSON body."""
    result = driver.execute_async_script(
        "const [method, path, body, done] = arguments;"
        "const init = {method, credentials: 'same-origin', headers: {}};"
        "if (body !== null) { init.body = JSON.stringify(body);"
        "  init.headers['Content-Type'] = 'application/json'; }"
        "fetch(path, init).then(async r => done([r.status, await r.text()]))"
        "  .catch(e => done([0, String(e)]));",
        method,
        path,
        body,
    )
    status, text = result
    try:
        return int(status), json.loads(text) if text else None
    except json.JSONDecodeError:
        return int(status), text


def _sign_in(driver: WebDriver, demo: Demo, username: str, page: str) -> None:
    driver.get(demo.url + "/")
    _wait(driver, lambda d: d.find_element(By.ID, "login-tenant"))
    tenant = driver.find_element(By.ID, "login-tenant")
    tenant.clear()
    tenant.send_keys(TENANT)
    driver.find_element(By.ID, "login-username").send_keys(username)
    driver.find_element(By.ID, "login-password").send_keys(PASSWORD)
    driver.find_element(By.ID, "login-submit").click()
    try:
        _wait(driver, lambda d: d.current_url.rstrip("/").endswith(page))
    except TimeoutException:
        _shot(driver, f"sign-in-{username}-failed")
        raise AssertionError(
            f"{username} not on {page}: {_text(driver, '#login-error')!r}"
        ) from None
    # The header is set up once the page knows who signed in (with their saved language); a
    # language picked before that would be undone by it.
    _wait(driver, lambda d: _text(d, "#user-name") != "")


@dataclass
class OnCall:
    driver: WebDriver
    attempt_id: int


@pytest.fixture(scope="module")
def agent_on_call(demo: Demo, browsers: Callable[[], WebDriver]) -> OnCall:
    """The agent signed in, logged in to the dialer, Ready, and popped with a call."""
    driver = browsers()
    _sign_in(driver, demo, AGENT[0], "/agent")
    _wait(driver, lambda d: _visible(d, "#dialer-login") or _visible(d, "#agent-controls"))
    _shot(driver, "agent-signed-in")
    if _visible(driver, "#dialer-login"):
        driver.find_element(By.ID, "dialer-login-submit").click()
        _wait(driver, lambda d: _visible(d, "#agent-controls"))
    _wait(driver, lambda d: d.find_element(By.ID, "btn-ready").is_enabled() or _state(d) == "ready")
    if _state(driver) != "ready":
        driver.find_element(By.ID, "btn-ready").click()
    _wait(driver, lambda d: _state(d) in ("ready", "reserved", "on_call"))
    try:
        _wait(driver, lambda d: _text(d, "#pop-debtor-name") != "", timeout=90)
    except TimeoutException:
        _shot(driver, "agent-no-pop")
        raise AssertionError(f"no screen pop in 90 s; state {_state(driver)}") from None
    _shot(driver, "agent-pop")
    return OnCall(driver, int(_text(driver, "#pop-attempt")))


def _state(driver: WebDriver) -> str:
    return str(driver.find_element(By.ID, "state").get_attribute("data-state"))


def test_simulated_call_pops_the_right_case(demo: Demo, agent_on_call: OnCall) -> None:
    driver = agent_on_call.driver
    with demo.db() as db:
        row = db.execute(
            "SELECT d.full_name, d.external_id, a.agent_id FROM call_attempts a"
            " JOIN debtors d ON d.id = a.debtor_id WHERE a.id = ?",
            (agent_on_call.attempt_id,),
        ).fetchone()
    assert row is not None, f"attempt {agent_on_call.attempt_id} not in the store"
    name, external_id, agent_id = row
    assert agent_id == AGENT[1]
    assert _text(driver, "#pop-debtor-name") == name
    assert _text(driver, "#pop-external-id") == external_id
    rows = driver.find_elements(By.CSS_SELECTOR, "#pop-accounts tbody tr[data-debt-id]")
    assert rows, "the pop shows no account"
    assert _text(driver, "#pop-phone")
    assert _text(driver, "#pop-script")


def test_promise_to_pay_shows_in_the_history(agent_on_call: OnCall) -> None:
    driver = agent_on_call.driver
    due = (date.today() + timedelta(days=7)).isoformat()
    Select(driver.find_element(By.ID, "disposition-code")).select_by_value("promise_to_pay")
    _wait(driver, lambda d: _visible(d, "#promise-amount"))
    driver.find_element(By.ID, "promise-amount").send_keys("42.50")
    _set_value(driver, "promise-date", due)
    driver.find_element(By.ID, "disposition-note").send_keys("pays on Friday (browser test)")
    driver.find_element(By.ID, "save-disposition").click()
    try:
        _wait(
            driver,
            lambda d: _visible(d, "#disposition-result") or _visible(d, "#disposition-error"),
        )
        assert not _visible(driver, "#disposition-error"), _text(driver, "#disposition-error")
        entry = '#history tbody tr[data-kind="disposition"][data-outcome="promise_to_pay"]'
        _wait(
            driver,
            lambda d: any(
                "browser test" in r.text for r in d.find_elements(By.CSS_SELECTOR, entry)
            ),
        )
    finally:
        driver.execute_script("document.querySelector('.case-main').scrollTop = 1e6")
        _shot(driver, "agent-promise-saved")
    row = next(r for r in driver.find_elements(By.CSS_SELECTOR, entry) if "browser test" in r.text)
    assert "42.50" in row.text
    promises = _text(driver, "#pop-promises")
    assert "42.50" in promises


def test_agent_cannot_open_another_agents_case(demo: Demo, agent_on_call: OnCall) -> None:
    deadline = time.monotonic() + 60
    other = None
    while other is None and time.monotonic() < deadline:
        with demo.db() as db:
            found = db.execute(
                "SELECT id FROM call_attempts WHERE agent_id IS NOT NULL AND agent_id != ?"
                " ORDER BY id DESC LIMIT 1",
                (AGENT[1],),
            ).fetchone()
        other = found[0] if found else None
        if other is None:
            time.sleep(0.5)
    assert other is not None, "no call of another agent in the demo within 60 s"
    status, _ = _fetch(agent_on_call.driver, "GET", f"/api/cases/by-attempt/{other}")
    assert status == 403
    status, own = _fetch(
        agent_on_call.driver, "GET", f"/api/cases/by-attempt/{agent_on_call.attempt_id}"
    )
    assert status == 200
    assert own["attempt_id"] == agent_on_call.attempt_id


def test_supervisor_lowers_the_target_abandonment(
    demo: Demo, browsers: Callable[[], WebDriver]
) -> None:
    driver = browsers()
    _sign_in(driver, demo, SUPERVISOR, "/supervisor")
    _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#campaigns article.campaign"))
    card = driver.find_element(By.CSS_SELECTOR, "#campaigns article.campaign")
    cid = card.get_attribute("data-campaign-id")
    _wait(driver, lambda d: _text(d, f"#campaign-{cid}-target-value") not in ("", "—"))
    target = driver.find_element(By.ID, f"campaign-{cid}-target")
    before = float(target.get_attribute("value"))
    lowered = round(max(0.5, before - 1.0), 1)
    assert lowered < before
    target.clear()
    target.send_keys(str(lowered))
    driver.find_element(By.ID, f"campaign-{cid}-apply").click()
    result = f"#campaign-{cid}-result"
    _wait(
        driver,
        lambda d: (
            d.find_element(By.CSS_SELECTOR, result).get_attribute("data-tone") in ("ok", "error")
        ),
    )
    assert driver.find_element(By.CSS_SELECTOR, result).get_attribute("data-tone") == "ok", _text(
        driver, result
    )
    shown = f"{lowered:g}%"
    try:
        _wait(driver, lambda d: _text(d, f"#campaign-{cid}-target-value") == shown, timeout=30)
    finally:
        _shot(driver, "supervisor-target-lowered")
    assert (
        float(driver.find_element(By.ID, f"campaign-{cid}-target").get_attribute("value"))
        == lowered
    )
    assert driver.find_elements(By.CSS_SELECTOR, "#agents-table tbody tr[data-agent-id]")


def test_zh_cn_pages_speak_chinese(
    demo: Demo, agent_on_call: OnCall, browsers: Callable[[], WebDriver]
) -> None:
    driver = agent_on_call.driver
    Select(driver.find_element(By.ID, "lang-select")).select_by_value("zh-CN")
    _wait(driver, lambda d: d.find_element(By.TAG_NAME, "html").get_attribute("lang") == "zh-CN")
    # the choice is the user's, stored by the server: a reload keeps it
    time.sleep(0.5)
    driver.refresh()
    _wait(driver, lambda d: d.find_element(By.TAG_NAME, "html").get_attribute("lang") == "zh-CN")
    _wait(
        driver,
        lambda d: _text(d, "#state") in ("未签入", "就绪", "接入中", "通话中", "话后处理", "暂停"),
    )
    assert _text(driver, "#btn-signout") == "退出系统"
    assert _text(driver, "#h-disposition") == "通话小结"
    _shot(driver, "agent-zh-CN")
    status, me = _fetch(driver, "GET", "/api/me")
    assert status == 200 and me["language"] == "zh-CN"

    sup = browsers()
    _sign_in(sup, demo, SUPERVISOR, "/supervisor")
    Select(sup.find_element(By.ID, "lang-select")).select_by_value("zh-CN")
    _wait(sup, lambda d: _text(d, "#h-agents span[data-i18n]") == "坐席")
    _wait(sup, lambda d: "今日呼损率" in _text(d, "#campaigns"))
    _wait(sup, lambda d: d.find_elements(By.CSS_SELECTOR, "#agents-table tbody tr[data-agent-id]"))
    # Each agent's time in state shows (an agent the feed gives no state time yet stays blank).
    _wait(
        sup,
        lambda d: all(
            c.text for c in d.find_elements(By.CSS_SELECTOR, "#agents-table .agent-since")
        ),
    )
    _shot(sup, "supervisor-zh-CN")
    for d in (driver, sup):
        Select(d.find_element(By.ID, "lang-select")).select_by_value("en")


def test_the_demos_manager_and_qa_reviewer_reach_their_pages(
    demo: Demo, browsers: Callable[[], WebDriver]
) -> None:
    # The demo's own portfolio: the manager sees its cases, the reviewer the QA search.
    manager = browsers()
    _sign_in(manager, demo, "manager", "/manager")
    _wait(manager, lambda d: d.find_elements(By.CSS_SELECTOR, "#cases tbody tr"))
    _shot(manager, "demo-manager")
    # Texts and e-mails from the demo's pages go to an outbox file in its folder.
    status, batches = _fetch(manager, "GET", "/api/manager/batches")
    assert status == 200 and batches["on"] is True, batches
    reviewer = browsers()
    _sign_in(reviewer, demo, "qa", "/qa")
    status, _ = _fetch(reviewer, "GET", "/api/manager/cases")
    assert status == 403  # a reviewer reads calls, not the collection book
