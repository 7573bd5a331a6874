"""The reviewers' web page, driven in a real headless Chromium (Debian's, through Selenium).

``.ci/run`` installs ``chromium`` and ``chromium-driver`` (``scripts/install_test_deps.sh``).
With ``LINKAGE_SCREENSHOTS=<dir>`` the test also saves its screenshots there (the ones
under ``docs/screenshots/`` were taken so).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from linkage.realtime.core import Realtime, RealtimeOptions
from linkage.review.evidence import Filters
from linkage.web.app import for_core, start
from tests.review_fixtures import *  # noqa: F403
from tests.review_fixtures import Generated

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")


def _browser(lang: str) -> webdriver.Chrome:
    if not (CHROMIUM and DRIVER):
        pytest.fail("Chromium and its driver are needed: run scripts/install_test_deps.sh "
                    "(.ci/run does)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,1500", f"--lang={lang}"):
        opts.add_argument(arg)
    opts.add_experimental_option("prefs", {"intl.accept_languages": lang})
    return webdriver.Chrome(service=Service(DRIVER), options=opts)


@dataclass
class Site:
    core: Realtime
    url: str
    g: Generated


@pytest.fixture
def site(rv_project: Generated) -> Iterator[Site]:
    core = Realtime.open(rv_project.project, options=RealtimeOptions(enrol_wait=1.0))
    httpd, thread = start(for_core(core), "127.0.0.1", 0)
    try:
        yield Site(core, f"http://127.0.0.1:{httpd.server_address[1]}", rv_project)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)
        core.close()


def _shot(driver: webdriver.Chrome, name: str) -> None:
    where = os.environ.get("LINKAGE_SCREENSHOTS")
    if where:
        Path(where).mkdir(parents=True, exist_ok=True)
        height = driver.execute_script("return document.body.scrollHeight")
        driver.set_window_size(1280, min(max(height + 40, 800), 6000))
        driver.save_screenshot(str(Path(where) / f"{name}.png"))
        driver.set_window_size(1280, 1500)


def _person(core: Realtime, uid: str) -> str | None:
    rows = core._read(lambda cur: cur.execute(
        "SELECT person_id FROM person_records WHERE uid = ?", [uid]).fetchall())
    return rows[0][0] if rows else None


def test_a_reviewer_decides_in_the_browser(site: Site) -> None:
    core = site.core
    items, _, _ = core.review.list(Filters(kind="pair"), page_size=500)
    target = next(i for i in items if _person(core, i.uid_a) != _person(core, i.uid_b))
    other = next(i for i in items if i.item_id != target.item_id
                 and _person(core, i.uid_a) != _person(core, i.uid_b))
    driver = _browser("fr-FR")
    try:
        wait = WebDriverWait(driver, 20)
        driver.get(site.url + "/")
        # The language follows the browser: French, with a switch to English.
        assert driver.find_element(By.CSS_SELECTOR, "html").get_attribute("lang") == "fr"
        assert "File de revue" in driver.title
        driver.find_element(By.ID, "lang-en").click()
        wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "html").get_attribute("lang")
                   == "en")
        assert driver.title == "Review queue"
        rows = driver.find_elements(By.CSS_SELECTOR, "#queue tr.item-row")
        _, _, n_open = core.review.list(Filters(), page_size=1)
        assert len(rows) == min(50, n_open) > 0  # the first page
        # Filter: persons only.
        driver.find_element(By.CSS_SELECTOR, "#f-kind option[value='person']").click()
        driver.find_element(By.CSS_SELECTOR, "#filters button").click()
        wait.until(lambda d: "kind=person" in d.current_url)
        kinds = {r.find_elements(By.TAG_NAME, "td")[2].text
                 for r in driver.find_elements(By.CSS_SELECTOR, "#queue tr.item-row")}
        assert kinds == {"person"}
        driver.get(site.url + "/")
        _shot(driver, "queue")
        # An item needs a reviewer's name first.
        driver.get(f"{site.url}/item/{target.item_id}")
        assert driver.find_elements(By.ID, "who-first")
        box = driver.find_element(By.ID, "reviewer")
        box.send_keys("Awa Traoré")
        box.submit()
        wait.until(lambda d: d.find_elements(By.ID, "item-title"))
        page = driver.find_element(By.TAG_NAME, "main").text
        assert target.uid_a in page and target.uid_b in page
        steps = driver.find_elements(By.CSS_SELECTOR, "table.waterfall tr.step")
        # One step per comparison, and the batch's ambiguity when it re-weighed the pair.
        extra = sum("ambiguity" in st.text for st in steps)
        assert extra <= 1 and len(steps) == len(core.index.comparisons) + extra
        assert float(driver.find_element(By.ID, "probability").text) == pytest.approx(
            target.match_probability, abs=1e-3)
        _shot(driver, "item")
        # The keyboard: S is "same person"; the next item follows, with a notice.
        driver.find_element(By.TAG_NAME, "body").send_keys("s")
        wait.until(lambda d: d.find_elements(By.ID, "flash"))
        assert target.item_id in driver.find_element(By.ID, "flash").text
        pa, pb = _person(core, target.uid_a), _person(core, target.uid_b)
        assert pa == pb is not None  # at once
        assert core.index.person_of(target.uid_b) == pa  # and Resolve sees it
        views = core._read(lambda cur: cur.execute(
            "SELECT viewer, surface FROM review_views WHERE item_id = ?",
            [target.item_id]).fetchall())
        assert ("Awa Traoré", "web") in views
        # A button with a comment: not the same person.
        driver.get(f"{site.url}/item/{other.item_id}")
        driver.find_element(By.ID, "comment").send_keys("twins, same household")
        driver.find_element(By.CSS_SELECTOR, "button[value='not_same']").click()
        wait.until(lambda d: d.find_elements(By.ID, "flash"))
        decision = core._read(lambda cur: cur.execute(
            "SELECT decision, reviewer, comment FROM review_decisions WHERE item_id = ?",
            [other.item_id]).fetchall())
        assert decision == [("not_same", "Awa Traoré", "twins, same household")]
        # The run report, its charts drawn by the inlined Vega libraries.
        driver.get(site.url + "/report")
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".chart svg")) >= 8)
        assert "chart error" not in driver.find_element(By.TAG_NAME, "body").text
        _shot(driver, "report")
        # A person's history shows the review's events.
        driver.get(f"{site.url}/person/{pa}")
        assert "review" in driver.find_element(By.TAG_NAME, "main").text
    finally:
        driver.quit()
    # The next full run keeps both decisions and reopens neither.
    info = core.start_run()
    deadline = time.monotonic() + 300
    while core.get_run(info.run_id).state == "running" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert core.get_run(info.run_id).state == "published", core.get_run(info.run_id).error
    assert _person(core, target.uid_a) == _person(core, target.uid_b)
    assert _person(core, other.uid_a) != _person(core, other.uid_b)
    open_items = core.review.list(Filters(status="open"), page_size=500)[0]
    assert not {target.item_id, other.item_id} & {i.item_id for i in open_items}
