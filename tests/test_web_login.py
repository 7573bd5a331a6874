"""The reviewers' web page behind identity, in real headless Chromium over real TLS: no
session -> the sign-in page; a mis token refused; a reviewer signs in with a token, decides
(recorded under the token's name), the cookie is HttpOnly, Secure and SameSite=Strict, a
POST without the CSRF token is refused, and signing out ends the session; audited."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from certs import make_pki
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from linkage.config import TlsConfig
from linkage.realtime.core import Realtime, RealtimeOptions
from linkage.review.evidence import Filters
from linkage.service.audit import AuditTrail, query_audit
from linkage.service.auth import TokenBook
from linkage.web.app import for_core, start
from tests.review_fixtures import *  # noqa: F403
from tests.review_fixtures import Generated

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")


@dataclass
class Site:
    core: Realtime
    url: str
    reviewer: str
    mis: str
    audit: AuditTrail
    book: TokenBook


@pytest.fixture
def site(rv_project: Generated, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    pki = make_pki(tmp_path_factory.mktemp("webpki"))
    core = Realtime.open(rv_project.project, options=RealtimeOptions(enrol_wait=1.0))
    book = TokenBook(core.register, allow_open=True)
    _, reviewer = book.issue("a.diallo (review)", "reviewer")
    _, mis = book.issue("cash transfer MIS", "mis")
    audit = AuditTrail(core.register)
    core.closers.append(audit.close)
    httpd, thread = start(for_core(core, tokens=book, audit=audit), "127.0.0.1", 0,
                          TlsConfig(cert=pki.server.cert, key=pki.server.key))
    try:
        yield Site(core, f"https://localhost:{httpd.server_address[1]}", reviewer, mis, audit,
                   book)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)
        core.close()


def _browser() -> webdriver.Chrome:
    if not (CHROMIUM and DRIVER):
        pytest.fail("Chromium and its driver are needed: run scripts/install_test_deps.sh")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--ignore-certificate-errors",  # the test CA is not the browser's
                "--disable-background-networking", "--window-size=1280,1200", "--lang=en"):
        opts.add_argument(arg)
    return webdriver.Chrome(service=Service(DRIVER), options=opts)


def _sign_in(driver: webdriver.Chrome, wait: WebDriverWait, token: str) -> None:
    box = driver.find_element(By.ID, "token")
    box.clear()
    box.send_keys(token)
    driver.find_element(By.ID, "login-button").click()
    wait.until(lambda d: d.find_elements(By.ID, "flash") or d.find_elements(By.ID, "signed-in"))


def test_sign_in_decide_sign_out(site: Site) -> None:
    core = site.core
    items, _, _ = core.review.list(Filters(kind="pair"), page_size=50)
    target = items[0]
    driver = _browser()
    try:
        wait = WebDriverWait(driver, 20)
        # No session: every page leads to the sign-in page.
        driver.get(f"{site.url}/item/{target.item_id}")
        wait.until(lambda d: d.find_elements(By.ID, "login-title"))
        assert "/login" in driver.current_url
        assert not driver.find_elements(By.ID, "queue")
        # A mis token is refused; a wrong one too.
        _sign_in(driver, wait, site.mis)
        assert "may not use the review page" in driver.find_element(By.ID, "flash").text
        assert not driver.get_cookies() or all(c["name"] != "linkage_session"
                                               for c in driver.get_cookies())
        _sign_in(driver, wait, site.reviewer + "x")
        assert "not valid" in driver.find_element(By.ID, "flash").text
        # The reviewer's token: back to the item asked for.
        _sign_in(driver, wait, site.reviewer)
        wait.until(lambda d: d.find_elements(By.ID, "item-title"))
        assert "a.diallo (review)" in driver.find_element(By.ID, "signed-in").text
        assert not driver.find_elements(By.ID, "reviewer")  # no name field to fill in
        cookie = next(c for c in driver.get_cookies() if c["name"] == "linkage_session")
        assert cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Strict"
        assert site.reviewer not in cookie["value"]
        # A POST without the CSRF token is refused, even from the page itself.
        status = driver.execute_async_script(
            "var done = arguments[0]; fetch('/item/" + target.item_id + "/decide', "
            "{method: 'POST', headers: {'Content-Type': 'application/x-www-form-urlencoded'},"
            " body: 'decision=not_same'}).then(function (r) { done(r.status); });")
        assert status == 403
        assert core._read(lambda cur: cur.execute(
            "SELECT count(*) FROM review_decisions WHERE item_id = ?",
            [target.item_id]).fetchall())[0][0] == 0
        # A decision: the reviewer is the token's holder.
        driver.find_element(By.CSS_SELECTOR, "button[value='same']").click()
        wait.until(lambda d: d.find_elements(By.ID, "flash"))
        assert target.item_id in driver.find_element(By.ID, "flash").text
        decided = core._read(lambda cur: cur.execute(
            "SELECT decision, reviewer FROM review_decisions WHERE item_id = ?",
            [target.item_id]).fetchall())
        assert decided == [("same", "a.diallo (review)")]
        # Sign out: the session is gone, pages lead to the sign-in page again.
        driver.find_element(By.ID, "logout").click()
        wait.until(lambda d: d.find_elements(By.ID, "login-title"))
        driver.get(site.url + "/")
        wait.until(lambda d: d.find_elements(By.ID, "login-title"))
        assert "/login" in driver.current_url
        # Revoking the token ends its sessions at their next request.
        _sign_in(driver, wait, site.reviewer)
        wait.until(lambda d: d.find_elements(By.ID, "queue"))
        site.book.revoke(next(r.token_id for r in site.book.tokens()
                              if r.name == "a.diallo (review)"))
        driver.get(site.url + "/")
        wait.until(lambda d: d.find_elements(By.ID, "login-title"))
    finally:
        driver.quit()
    site.audit.flush()
    rows = query_audit(core.register)
    seen = {(r[4], r[5]) for r in rows}
    assert {("web/Login", "PERMISSION_DENIED"), ("web/Login", "UNAUTHENTICATED"),
            ("web/Login", "OK"), ("web/GetReviewItem", "OK"), ("web/DecideReviewItem", "OK"),
            ("web/Post", "PERMISSION_DENIED"), ("web/Logout", "OK")} <= seen
    decide = next(r for r in rows if r[4] == "web/DecideReviewItem")
    assert decide[2].startswith("a.diallo (review) (")
