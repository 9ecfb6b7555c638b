"""The QA pages in a real browser (Debian's headless Chromium) over QA-checked simulated calls:
a QA user signs in, searches a threat phrase, opens the hit, and the player stands at the
second the words were said; they mark the flag right and see the rule's precision change; the
pages speak Chinese in zh-CN. Screenshots go to /tmp/shots (DIALER_SHOTS_DIR)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dialer.web.server import serving
from tests.test_web_browser import (
    CHROMEDRIVER,
    CHROMIUM,
    SHOTS,
    _need_browser,
    _text,
    _visible,
    _wait,
)
from tests.test_web_qa import PASSWORD, QaSite, build_site

pytestmark = pytest.mark.slow

try:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.support.ui import Select
except ImportError:  # pragma: no cover - selenium is a dev dependency
    webdriver = None


class Served:
    """The QA site's app on a real socket, on a loop of its own thread."""

    def __init__(self, site: QaSite) -> None:
        self.site = site
        self.url = ""
        self._ready = threading.Event()
        self._stop: tuple[asyncio.AbstractEventLoop, asyncio.Event] | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="qa-pages", daemon=True)

    def _run(self) -> None:
        async def main() -> None:
            stop = asyncio.Event()
            self._stop = (asyncio.get_running_loop(), stop)
            async with serving(self.site.app, "127.0.0.1", 0) as port:
                self.url = f"http://127.0.0.1:{port}"
                self._ready.set()
                await stop.wait()

        try:
            asyncio.run(main())
        except Exception as exc:  # reported to the test, which would otherwise wait
            self._error = exc
            self._ready.set()

    def __enter__(self) -> Served:
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None or not self.url:
            raise RuntimeError(f"the QA pages did not start: {self._error}")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stop is not None:
            loop, stop = self._stop
            loop.call_soon_threadsafe(stop.set)
        self._thread.join(10)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    _need_browser()
    if webdriver is None:
        pytest.skip("selenium is not installed")
    root = tmp_path_factory.mktemp("qa-browser")
    site = build_site(f"sqlite:///{root / 'dialer.db'}", root)
    try:
        with Served(site) as running:
            yield running
    finally:
        site.store.close()


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1366,768",
        "--lang=en-US",
        # the test hears nothing; the page's play() must not wait for a click
        "--autoplay-policy=no-user-gesture-required",
        "--mute-audio",
    ):
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


def _sign_in(driver: WebDriver, url: str, username: str) -> None:
    driver.get(url + "/")
    _wait(driver, lambda d: d.find_element(By.ID, "login-tenant"))
    tenant = driver.find_element(By.ID, "login-tenant")
    tenant.clear()
    tenant.send_keys("default")
    driver.find_element(By.ID, "login-username").send_keys(username)
    driver.find_element(By.ID, "login-password").send_keys(PASSWORD)
    driver.find_element(By.ID, "login-submit").click()
    _wait(driver, lambda d: d.current_url.split("#")[0].rstrip("/").endswith("/qa"))
    _wait(driver, lambda d: _text(d, "#user-name") != "")


def _search(driver: WebDriver, query: str) -> list[Any]:
    box = driver.find_element(By.ID, "f-q")
    box.clear()
    box.send_keys(query)
    driver.find_element(By.ID, "btn-search").click()
    # the table is busy from the click until this search's hits are in
    _wait(
        driver,
        lambda d: (
            _now(d, "#hits") is not None
            and d.execute_script("return document.getElementById('hits').getAttribute('aria-busy')")
            == "false"
        ),
    )
    return list(_wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#hits tbody tr")))


def _now(driver: WebDriver, selector: str) -> str:
    """The element's text as it is now (the page re-renders the flags after a verdict)."""
    found = driver.execute_script(
        "const e = document.querySelector(arguments[0]); return e ? e.textContent : '';", selector
    )
    return str(found)


def _player(driver: WebDriver) -> dict[str, Any]:
    found: dict[str, Any] = driver.execute_script(
        "const p = document.getElementById('player');"
        "return {ready: p.readyState, at: p.currentTime, paused: p.paused, src: p.currentSrc};"
    )
    return found


def test_a_qa_user_finds_a_threat_hears_it_at_its_second_and_judges_the_flag(
    served: Served, browser: WebDriver
) -> None:
    threat = served.site.calls["threat"]
    _sign_in(browser, served.url, "qa")
    rows = _search(browser, '"have you arrested"')
    assert len(rows) == 1
    row = rows[0]
    assert row.get_attribute("data-call") == str(threat.attempt_id)
    second = float(row.get_attribute("data-second") or "nan")
    marked = [m.text.lower() for m in row.find_elements(By.CSS_SELECTOR, "mark")]
    assert marked == ["have you arrested"]
    _shot(browser, "qa-search-en")

    row.click()
    _wait(browser, lambda d: _visible(d, "#view-call") and _visible(d, "#flags .qa-flag"))
    # The player loads the archived recording and stands at the hit's second (it plays on,
    # so allow the second or two the page took to be looked at).
    _wait(browser, lambda d: _player(d)["ready"] >= 1 and _player(d)["at"] >= second - 0.05)
    state = _player(browser)
    assert second - 0.05 <= state["at"] <= second + 3.0, (state, second)
    assert state["src"].endswith(f"/api/qa/calls/{threat.attempt_id}/audio")
    # The line being heard is the threat, highlighted in the transcript.
    _wait(browser, lambda d: "arrested" in _text(d, "#lines .qa-line.playing"))

    flag = browser.find_element(By.CSS_SELECTOR, '#flags .qa-flag[data-kind="forbidden"]')
    before = flag.find_element(By.CSS_SELECTOR, ".qa-precision").text
    assert "Rule precision" in before and "1 not reviewed" in before, before
    flag.find_element(By.CSS_SELECTOR, 'button[data-verdict="right"]').click()
    _wait(
        browser, lambda d: "100%" in _now(d, '#flags .qa-flag[data-kind="forbidden"] .qa-precision')
    )
    flag = browser.find_element(By.CSS_SELECTOR, '#flags .qa-flag[data-kind="forbidden"]')
    assert flag.get_attribute("data-verdict") == "right"
    assert "Judged right by qa" in flag.find_element(By.CSS_SELECTOR, ".qa-verdict").text
    after = flag.find_element(By.CSS_SELECTOR, ".qa-precision").text
    assert "1 right" in after and "0 not reviewed" in after, after
    _shot(browser, "qa-call-en")

    # The flagged calls: the rule's precision is there too.
    browser.find_element(By.ID, "tab-queue").click()
    _wait(browser, lambda d: _visible(d, "#queue tbody tr"))
    first = browser.find_elements(By.CSS_SELECTOR, "#queue tbody tr")[0]
    assert first.get_attribute("data-call") == str(threat.attempt_id)
    rule = flag.get_attribute("data-kind")
    assert rule == "forbidden"
    cells = browser.find_elements(By.CSS_SELECTOR, "#precision tbody tr .qa-precision-value")
    assert "100%" in [c.text for c in cells]
    _shot(browser, "qa-queue-en")

    # In Chinese: the same pages, the same call, found by two characters.
    Select(browser.find_element(By.ID, "lang-select")).select_by_value("zh-CN")
    _wait(browser, lambda d: _text(d, "#tab-queue") == "待复核通话")
    _shot(browser, "qa-queue-zh")
    browser.find_element(By.ID, "tab-search").click()
    rows = _search(browser, "还款")
    assert {r.get_attribute("data-call") for r in rows} == {
        str(served.site.calls["chinese"].attempt_id)
    }
    assert all(m.text == "还款" for m in browser.find_elements(By.CSS_SELECTOR, "#hits mark"))
    assert _text(browser, "#btn-search") == "搜索"
    _shot(browser, "qa-search-zh")
    rows[0].click()
    chinese = served.site.calls["chinese"].attempt_id
    _wait(browser, lambda d: _visible(d, "#lines .qa-line") and _player(d)["ready"] >= 1)
    assert _player(browser)["src"].endswith(f"/api/qa/calls/{chinese}/audio")
    assert "还款" in _text(browser, "#lines .qa-line.playing")
    assert _text(browser, "#h-transcript") == "通话转写"
    _shot(browser, "qa-call-zh")
