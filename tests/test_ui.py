"""The web UI in headless Chromium (Debian's chromium and chromium-driver, driven by Selenium).

The page must list what was pushed, show hostile label values as text
without running them, and delete a group (its @base64 push path, so a value
with "/" works) or all of them (wipe) with its buttons.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import urllib.parse
import urllib.request

import pytest
import requests

from tests.servers import require_peer, start_pushgw

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                  "--no-first-run", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--window-size=1280,1000")
HOSTILE = "/var/<script>window.__pwned = 1</script>"
HOSTILE_2 = '"><img src=x onerror="window.__pwned = 2">'
PREFIX = "/gw"  # the page and its buttons must work under a route prefix


def b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.fixture
def browser(tmp_path):
    chromium = require_peer("chromium", shutil.which("chromium") or "/usr/bin/chromium")
    driver_path = require_peer("chromedriver", shutil.which("chromedriver") or "/usr/bin/chromedriver",
                               apt_package="chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'profile'}")
    service = Service(executable_path=driver_path, log_output=str(tmp_path / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=options)  # stops its own processes on quit()
    driver.set_page_load_timeout(15)
    yield driver
    driver.quit()


@pytest.fixture
def gw():
    server = start_pushgw("--web.enable-admin-api", f"--web.route-prefix={PREFIX}")
    yield server
    server.close()


def api_jobs(base: str) -> list[dict[str, str]]:
    with urllib.request.urlopen(base + "/api/v1/metrics", timeout=5) as r:
        return [g["labels"] for g in json.load(r)["data"]]


def push_groups(base: str) -> None:
    hostile = f"{base}/metrics/job/web/path@base64/{b64(HOSTILE)}/note@base64/{b64(HOSTILE_2)}"
    assert requests.put(hostile, data=b"# HELP cleaned_bytes Bytes <b>cleaned</b>.\n"
                                      b"# TYPE cleaned_bytes gauge\ncleaned_bytes 1024\n").status_code == 200
    assert requests.put(f"{base}/metrics/job/batch/instance/host-1",
                        data=b"# TYPE done counter\ndone_total 3\n").status_code == 200
    assert requests.put(f"{base}/metrics/job/backup", data=b"backup_ok 1\n",
                        headers={"Pushgateway-TTL": "10m"}).status_code == 200


def test_page_lists_groups_deletes_one_and_wipes(browser, gw, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    base = gw.url + PREFIX
    push_groups(base)
    browser.get(base + "/")
    wait = WebDriverWait(browser, 10)
    groups = browser.find_elements(By.CSS_SELECTOR, "section.group")
    assert len(groups) == 3
    assert browser.find_element(By.ID, "group-count").text == "3 groups"
    text = browser.find_element(By.TAG_NAME, "main").text
    assert f'path="{HOSTILE}"' in text and f'note="{HOSTILE_2}"' in text  # shown as text
    assert 'job="batch"' in text and 'instance="host-1"' in text
    assert browser.execute_script("return window.__pwned") is None  # and never run
    assert browser.execute_script("return document.scripts.length") == 1
    assert not browser.find_elements(By.CSS_SELECTOR, "main img")
    backup = next(g for g in groups if 'job="backup"' in g.text)
    assert "TTL\n10m0s" in backup.text
    assert re.search(r"Expires\nin (10m0s|9m\d+s) \(at 20", backup.text)
    assert "Last push" in backup.text and "Last failure\nnever" in backup.text

    web = next(g for g in groups if 'job="web"' in g.text)
    web.find_element(By.CSS_SELECTOR, "details.metrics > summary").click()
    web.find_element(By.CSS_SELECTOR, "details.family summary").click()
    assert "cleaned_bytes" in web.text and "1024" in web.text and "Bytes <b>cleaned</b>." in web.text

    screenshot = tmp_path / "ui.png"
    assert browser.save_screenshot(str(screenshot))
    data = screenshot.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 5000
    if os.environ.get("PUSHGW_UI_SCREENSHOT"):  # keep a copy to look at
        shutil.copy(screenshot, os.environ["PUSHGW_UI_SCREENSHOT"])

    web.find_element(By.CSS_SELECTOR, "button.delete").click()
    wait.until(EC.alert_is_present()).accept()
    wait.until(EC.staleness_of(web))
    assert len(browser.find_elements(By.CSS_SELECTOR, "section.group")) == 2
    assert browser.find_element(By.ID, "group-count").text == "2 groups"
    assert "Deleted group" in browser.find_element(By.ID, "action-status").text
    assert {g["job"] for g in api_jobs(base)} == {"batch", "backup"}

    browser.find_element(By.CSS_SELECTOR, "button.wipe").click()
    wait.until(EC.alert_is_present()).accept()
    wait.until(lambda d: not d.find_elements(By.CSS_SELECTOR, "section.group"))
    assert browser.find_element(By.ID, "no-groups").is_displayed()
    assert api_jobs(base) == []
    assert browser.execute_script("return window.__pwned") is None


def test_page_without_admin_api_has_no_wipe_button_and_escapes(make_pushgw):
    server = make_pushgw()
    requests.put(f"{server.url}/metrics/job/j/x@base64/{b64(HOSTILE)}", data=b"m 1\n")
    for path in ("/", "/status"):
        r = requests.get(server.url + path)
        assert r.status_code == 200 and r.headers["Content-Type"] == "text/html; charset=utf-8"
        assert "script-src 'nonce-" in r.headers["Content-Security-Policy"]
        assert 'class="wipe"' not in r.text and 'class="delete"' in r.text
        assert "<script>window" not in r.text and "&lt;script&gt;window.__pwned = 1&lt;/script&gt;" in r.text
        assert f'data-path="metrics/job@base64/{b64("j")}/x@base64/{b64(HOSTILE)}"' in r.text
    assert requests.get(server.url + "/static/nope").status_code == 404
    assert requests.get(server.url + "/nope").status_code == 404


def test_buttons_work_behind_basic_auth_and_follow_roles(browser, tmp_path):
    """Logged in through the address (user:password@), the page's requests reuse the
    browser's credentials; a read-only user's delete is refused with the reason shown."""
    import bcrypt
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    hashed = {u: bcrypt.hashpw(p.encode(), bcrypt.gensalt(4)).decode()
              for u, p in (("admin", "admin-pw"), ("viewer", "viewer-pw"))}
    config = tmp_path / "web.yml"
    config.write_text(f"basic_auth_users:\n  admin: {hashed['admin']}\n  viewer: {hashed['viewer']}\n"
                      "pushgw_authorization:\n  viewer: read\n")
    admin = ("admin", "admin-pw")
    token = base64.b64encode(b"admin:admin-pw").decode()
    server = start_pushgw(f"--web.config.file={config}", ready_headers={"Authorization": f"Basic {token}"})
    try:
        for job in ("one", "two"):
            assert requests.put(f"{server.url}/metrics/job/{job}", data=b"a 1\n", auth=admin).status_code == 200
        wait = WebDriverWait(browser, 10)
        for user, password, left in (("viewer", "viewer-pw", 2), ("admin", "admin-pw", 1)):
            browser.get(server.url.replace("http://", f"http://{user}:{password}@") + "/")
            assert len(browser.find_elements(By.CSS_SELECTOR, "section.group")) == 2
            browser.find_element(By.CSS_SELECTOR, "button.delete").click()
            wait.until(EC.alert_is_present()).accept()
            status = browser.find_element(By.ID, "action-status")
            wait.until(lambda d: status.text)
            assert len(browser.find_elements(By.CSS_SELECTOR, "section.group")) == left
            if user == "viewer":
                assert "failed: 403" in status.text and "needs the push role" in status.text
        assert "Deleted group" in status.text
        jobs = requests.get(server.url + "/api/v1/metrics", auth=admin).json()["data"]
        assert len(jobs) == 1
    finally:
        server.close()


def test_filter_page_sort_mark_stale_and_delete_the_filtered_set(browser, gw):
    """With more groups than fit a page: filter by selector, page, sort by last push,
    mark the stale ones, then delete every matching group (all pages) after a confirmation."""
    import time

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import Select, WebDriverWait

    base = gw.url + PREFIX
    with requests.Session() as session:
        for i in range(25):
            assert session.put(f"{base}/metrics/job/batch/instance/worker-{i:02}", data=b"a 1\n").status_code == 200
        time.sleep(1.2)  # the batch groups are now over 1s old; the web groups are not
        for i in range(10):
            assert session.put(f"{base}/metrics/job/web/instance/web-{i}", data=b"a 1\n").status_code == 200
    wait = WebDriverWait(browser, 10)

    def instances() -> list[str]:  # read in one script: no element can go stale between reads
        names = browser.execute_script(
            "return Array.from(document.querySelectorAll('section.group'), s => s.dataset.name)")
        return [re.search(r'instance="([^"]*)"', n).group(1) for n in names]

    def summary() -> str:
        return browser.execute_script("var c = document.getElementById('counts'); return c ? c.innerText : ''")

    browser.get(base + "/?limit=10")
    assert len(instances()) == 10 and "of 35 groups (35 in total)" in summary()
    form = browser.find_element(By.ID, "filter")
    form.find_element(By.NAME, "match[]").send_keys('{job="batch",instance=~"worker-.*"}')
    Select(form.find_element(By.NAME, "sort")).select_by_value("oldest")
    form.find_element(By.NAME, "stale").send_keys("1s")
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait.until(lambda d: "matching" in summary())
    assert "Showing 1–10 of 25 matching groups (35 in total); 25 stale" in summary()
    assert instances() == [f"worker-{i:02}" for i in range(10)]  # oldest push first
    assert len(browser.find_elements(By.CSS_SELECTOR, "section.group.stale .stale-mark")) == 10
    assert "sort=oldest" in browser.current_url and "stale=1s" in browser.current_url  # shareable

    seen = instances()
    for _ in range(2):
        browser.find_element(By.CSS_SELECTOR, "a[rel=next]").click()
        wait.until(lambda d: instances()[:1] != seen[-10:][:1])
        seen += instances()
    assert seen == [f"worker-{i:02}" for i in range(25)]
    assert "Showing 21–25 of 25" in summary() and not browser.find_elements(By.CSS_SELECTOR, "a[rel=next]")

    form = browser.find_element(By.ID, "filter")
    Select(form.find_element(By.NAME, "sort")).select_by_value("newest")
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait.until(lambda d: instances()[:1] == ["worker-24"])
    assert instances() == [f"worker-{i:02}" for i in range(24, 14, -1)]

    browser.find_element(By.CSS_SELECTOR, "button.delete-matching").click()
    alert = wait.until(EC.alert_is_present())
    assert "25 matching groups" in alert.text
    alert.dismiss()  # nothing happens
    assert len(api_jobs(base)) == 35
    button = browser.find_element(By.CSS_SELECTOR, "button.delete-matching")
    assert button.text == "Delete the 25 matching groups"
    button.click()
    wait.until(EC.alert_is_present()).accept()
    status = browser.find_element(By.ID, "action-status")
    wait.until(lambda d: "Deleted" in status.text)
    assert "Deleted 25 groups matching" in status.text
    assert {g["job"] for g in api_jobs(base)} == {"web"} and len(api_jobs(base)) == 10
    assert not browser.find_elements(By.CSS_SELECTOR, "section.group")
    assert browser.find_element(By.ID, "group-count").text == "10 groups"
    assert "of 0 matching groups (10 in total)" in summary()

    browser.get(base + "/?match[]=" + urllib.parse.quote('{job="web"'))  # a broken selector: 400, nothing listed
    assert "unclosed '{'" in browser.find_element(By.ID, "query-error").text
    assert not browser.find_elements(By.CSS_SELECTOR, "section.group, button.delete-matching")
