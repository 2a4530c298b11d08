#!/usr/bin/env python3
"""Console test: crsd's web console in headless chromium, driven by selenium through
chromium-driver. Signs in (a wrong key is refused first, in the page), creates an instance and
waits until the list says running, takes a backup and sees it listed, gets its download link
and fetches the RDB through it, resizes the instance, resets its password, restores the backup
(a key written after it has its old value again), opens the charts (uPlot draws the memory
chart from GetMonitorData), then deletes the instance. Also checks what the server sends with the page
(Content-Security-Policy, types) and that the browser holds no cookie and logged no policy
violation.

Environment: CRSD_URL (http://127.0.0.1:PORT), CRSD_SECRET_ID, CRSD_SECRET_KEY, CRSD_CHROMIUM,
CRSD_CHROMEDRIVER, CRSD_ARTIFACTS (a folder for screenshots), CRSD_CONSOLE_LIMIT_SECS, and
optionally CRSD_CONSOLE_RESULT (a file that receives {"passed": N, "failed": M}).
"""

import json
import os
import socket
import sys
import time
import traceback
import urllib.request

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

URL = os.environ["CRSD_URL"]
SECRET_ID = os.environ["CRSD_SECRET_ID"]
SECRET_KEY = os.environ["CRSD_SECRET_KEY"]
ARTIFACTS = os.environ["CRSD_ARTIFACTS"]
RESULT_FILE = os.environ.get("CRSD_CONSOLE_RESULT")
DOCS_LOAD_SECS = int(os.environ.get("CRSD_CONSOLE_DOCS_LOAD_SECS", "0"))
DEADLINE = time.time() + int(os.environ.get("CRSD_CONSOLE_LIMIT_SECS", "240")) + DOCS_LOAD_SECS
PASSWORD = "Console-2024-pass"
NEW_PASSWORD = "Console-2024-new"

passed = 0
failed = 0


def check(name, ok, detail=""):
    global passed, failed
    if ok:
        passed += 1
        print("ok   console: %s" % name, flush=True)
    else:
        failed += 1
        print("FAIL console: %s%s" % (name, (": " + str(detail)[:600]) if detail else ""),
              flush=True)
    return ok


def left(limit):
    """Seconds a wait may take: `limit`, within what is left of the whole walk."""
    return max(1, min(limit, DEADLINE - time.time()))


def shot(driver, name):
    driver.save_screenshot(os.path.join(ARTIFACTS, name + ".png"))


def until(driver, what, fn, limit=30):
    """Waits until fn(driver) is truthy; its value, or None (a failed check) at the limit."""
    def safe(d):
        try:
            return fn(d)
        except StaleElementReferenceException:
            return None
    try:
        found = WebDriverWait(driver, left(limit), poll_frequency=0.2).until(safe)
        check(what, True)
        return found
    except TimeoutException:
        message = driver.find_elements(By.ID, "message")
        text = message[0].text if message and message[0].is_displayed() else ""
        check(what, False, "timed out" + (("; the page says: " + text) if text else ""))
        return None


def visible(driver, css):
    found = driver.find_elements(By.CSS_SELECTOR, css)
    return found[0] if found and found[0].is_displayed() else None


def redis(address, password, *commands):
    """The first line of redis's reply to each inline command, after AUTH."""
    host, port = address.rsplit(":", 1)
    replies = []
    with socket.create_connection((host, int(port)), timeout=5) as s:
        f = s.makefile("rb")
        for cmd in ("AUTH " + password,) + commands:
            s.sendall(cmd.encode() + b"\r\n")
            line = f.readline().rstrip(b"\r\n")
            if line.startswith(b"$") and int(line[1:]) >= 0:
                line = f.readline().rstrip(b"\r\n")
            replies.append(line)
    return replies[1:]


def traffic(address, password, secs):
    """Writes and reads at a rate that rises and falls, with misses, for `secs` seconds."""
    import math
    host, port = address.rsplit(":", 1)
    end = time.time() + secs
    n = 0
    with socket.create_connection((host, int(port)), timeout=5) as s:
        f = s.makefile("rb")
        s.sendall(("AUTH %s\r\n" % password).encode())
        f.readline()
        while time.time() < end:
            batch = int(50 + 40 * math.sin(time.time() / 20))
            cmds = []
            for _ in range(batch):
                n += 1
                cmds += ["SET key:%d %s" % (n % 5000, "x" * 200), "GET key:%d" % (n % 7000)]
            s.sendall(("\r\n".join(cmds) + "\r\n").encode())
            for _ in cmds:
                line = f.readline()
                if line.startswith(b"$") and int(line[1:]) >= 0:
                    f.readline()
            time.sleep(0.1)


def head_checks():
    """What the server sends with the console, before any browser."""
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None
    opener = urllib.request.build_opener(NoRedirect)
    try:
        opener.open(URL + "/console", timeout=5)
        check("/console redirects to /console/", False, "no redirect")
    except urllib.error.HTTPError as e:
        check("/console redirects to /console/", e.code in (301, 308)
              and e.headers.get("Location") == "/console/", "%s %s" % (e.code, e.headers))
    with urllib.request.urlopen(URL + "/console/", timeout=5) as r:
        csp = r.headers.get("Content-Security-Policy", "")
        check("the page is HTML under a strict Content-Security-Policy",
              r.headers.get("Content-Type", "").startswith("text/html")
              and "script-src 'self'" in csp and "default-src 'none'" in csp
              and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp, csp)
    with urllib.request.urlopen(URL + "/console/app.js", timeout=5) as r:
        check("app.js is served as JavaScript",
              r.headers.get("Content-Type", "").startswith("text/javascript"))
    try:
        urllib.request.urlopen(URL + "/console/nothing.js", timeout=5)
        check("an unknown console file is 404", False)
    except urllib.error.HTTPError as e:
        check("an unknown console file is 404", e.code == 404, e.code)


def browser():
    opts = webdriver.ChromeOptions()
    opts.binary_location = os.environ["CRSD_CHROMIUM"]
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,1400", "--no-first-run", "--disable-extensions",
                "--no-proxy-server"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(executable_path=os.environ["CRSD_CHROMEDRIVER"]),
                            options=opts)


def sign_in(d, key):
    d.find_element(By.ID, "secret-id").clear()
    d.find_element(By.ID, "secret-id").send_keys(SECRET_ID)
    d.find_element(By.ID, "secret-key").clear()
    d.find_element(By.ID, "secret-key").send_keys(key)
    d.find_element(By.CSS_SELECTOR, "#signin-form button[type=submit]").click()


# The page re-renders its tables as answers come: rows are read and clicked in one script,
# never through an element found earlier.
def cells_of(d, iid):
    """The texts of the instance's row, or None when it is not listed."""
    return d.execute_script(
        "const r = document.querySelector('#instance-table tr[data-id=\"' + arguments[0] + "
        "'\"]'); return r ? Array.from(r.cells, (c) => c.textContent) : null;", iid)


def click(d, css):
    """Clicks the first element matching css; False when there is none."""
    return d.execute_script(
        "const e = document.querySelector(arguments[0]); if (e) e.click(); return !!e;", css)


def walk(d):
    d.get(URL + "/console")
    check("the console opens at /console (redirected)",
          d.current_url.endswith("/console/") and d.title == "crsd console", d.current_url)

    # A wrong key: the page shows the API's refusal and stays at the sign-in form.
    sign_in(d, "not-the-key")
    msg = until(d, "a wrong key is refused in the page",
                lambda d: visible(d, "#message") and "AuthFailure" in d.find_element(
                    By.ID, "message").text and d.find_element(By.ID, "message").text)
    if msg:
        check("a wrong key is refused with AuthFailure.SignatureFailure",
              "AuthFailure.SignatureFailure" in msg and visible(d, "#signin") is not None, msg)

    sign_in(d, SECRET_KEY)
    if not until(d, "signed in: the instance list shows", lambda d: visible(d, "#instances")):
        return
    check("signed in: the key field is emptied and the SecretId shown",
          d.find_element(By.ID, "secret-key").get_attribute("value") == ""
          and d.find_element(By.ID, "who").text == SECRET_ID)
    shot(d, "01-signed-in")

    # Create a standard instance with one replica.
    d.find_element(By.ID, "create").click()
    form = until(d, "the create dialog opens", lambda d: visible(d, "#create-dialog"))
    if not form:
        return
    until(d, "the sizes are offered", lambda d: d.find_elements(
        By.CSS_SELECTOR, "#create-form select[name=mem] option"))
    form.find_element(By.NAME, "name").send_keys("console-test")
    Select(form.find_element(By.NAME, "mem")).select_by_index(0)
    form.find_element(By.NAME, "password").send_keys(PASSWORD)
    shot(d, "02-create")
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    iid = until(d, "the new instance is listed", lambda d: d.execute_script(
        "const r = document.querySelector('#instance-table tbody tr'); "
        "return r ? r.dataset.id : null;"), 30)
    if not iid:
        return
    running = until(d, "%s reaches running" % iid,
                    lambda d: (cells_of(d, iid) or [""] * 3)[2] == "running", 120)
    if not running:
        shot(d, "02-not-running")
        return
    cells = cells_of(d, iid)
    check("the list shows name, id, running, an address and the size",
          cells[0] == "console-test" and cells[1] == iid and cells[2] == "running"
          and ":" in cells[4] and cells[5].endswith("B"), cells)
    until(d, "the creation's progress line says running", lambda d: any(
        iid in li.text and "running" in li.text
        for li in d.find_elements(By.CSS_SELECTOR, "#task-list li")))
    shot(d, "02-running")

    # Open it; back it up; the backup is listed with a download link that serves the RDB.
    address = cells[4]
    check("redis: a key written before the backup",
          redis(address, PASSWORD, "SET console-key before") == [b"+OK"])
    click(d, '#instance-table tr[data-id="%s"]' % iid)
    until(d, "the instance's panel opens", lambda d: visible(d, "#detail"))
    d.find_element(By.ID, "backup").click()
    done = until(d, "the backup's task succeeds", lambda d: any(
        ("Back up " + iid) in li.text and "done" in li.text
        for li in d.find_elements(By.CSS_SELECTOR, "#task-list li")), 60)
    if not done:
        return
    d.find_element(By.CSS_SELECTOR, '#tabs button[data-tab="backups"]').click()
    backups = until(d, "the backup is listed", lambda d: [r.text for r in d.find_elements(
        By.CSS_SELECTOR, "#backup-table tbody tr")])
    if not backups:
        return
    check("one backup, manual, ready", len(backups) == 1 and "manual" in backups[0]
          and "ready" in backups[0], backups)
    click(d, "#backup-table tbody tr button.download")
    link = until(d, "a download link is shown", lambda d: d.find_elements(
        By.CSS_SELECTOR, "#downloads a"))
    if link:
        href = link[0].get_attribute("href")
        with urllib.request.urlopen(href, timeout=10) as r:
            head = r.read(5)
        check("the download link serves the RDB file", head == b"REDIS", head)
    shot(d, "03-backups")
    check("redis: the key changed after the backup",
          redis(address, PASSWORD, "SET console-key after") == [b"+OK"])

    # Resize to 2 GB, reset the password, restore the backup with the new password: each
    # followed to its end in the progress list.
    def progress_done(label):
        def ended(d):
            for li in d.find_elements(By.CSS_SELECTOR, "#task-list li"):
                if label in li.text:
                    state = li.find_element(By.CLASS_NAME, "state").get_attribute("class")
                    if "failed" in state.split():
                        raise AssertionError("the page says: " + li.text)
                    return "done" in state.split()
            return False
        return ended

    d.find_element(By.ID, "resize").click()
    dialog = until(d, "the resize dialog opens", lambda d: visible(d, "#resize-dialog"))
    if not dialog:
        return
    Select(dialog.find_element(By.NAME, "mem")).select_by_value("2048")
    dialog.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    until(d, "the resize ends", progress_done("Resize " + iid), 60)
    until(d, "the list shows 2 GB", lambda d: (cells_of(d, iid) or [""] * 6)[5] == "2 GB")

    d.find_element(By.ID, "reset-password").click()
    dialog = until(d, "the password dialog opens", lambda d: visible(d, "#password-dialog"))
    if not dialog:
        return
    dialog.find_element(By.NAME, "password").send_keys(NEW_PASSWORD)
    dialog.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    until(d, "the password reset ends", progress_done("Reset the password of " + iid), 60)

    d.find_element(By.CSS_SELECTOR, '#tabs button[data-tab="backups"]').click()
    restore = until(d, "the backup offers a restore", lambda d: d.find_elements(
        By.CSS_SELECTOR, "#backup-table tbody tr button.restore"))
    if not restore:
        return
    click(d, "#backup-table tbody tr button.restore")
    dialog = until(d, "the restore dialog opens", lambda d: visible(d, "#restore-dialog"))
    if not dialog:
        return
    dialog.find_element(By.NAME, "password").send_keys(NEW_PASSWORD)
    dialog.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    until(d, "the restore ends", progress_done("Restore " + iid), 60)
    got = redis(address, NEW_PASSWORD, "GET console-key")
    check("redis: after the restore the key has its backed-up value (new password)",
          got == [b"before"], got)
    shot(d, "03-restored")

    # For the documentation's picture: some minutes of traffic first.
    if DOCS_LOAD_SECS:
        traffic(address, NEW_PASSWORD, DOCS_LOAD_SECS)

    # The charts: uPlot draws from GetMonitorData once the sampler (every second) has points.
    d.find_element(By.CSS_SELECTOR, '#tabs button[data-tab="charts"]').click()

    def drawn(d):
        d.find_element(By.ID, "charts-refresh").click()
        time.sleep(1)
        charts = d.find_elements(By.CSS_SELECTOR, "#charts .chart")
        mem = d.find_elements(By.CSS_SELECTOR, '#charts .chart[data-metric="MemUsed"]')
        return len(charts) == 4 and mem and mem[0].find_elements(
            By.CSS_SELECTOR, ".uplot canvas") and "no data" not in mem[0].text \
            and int(mem[0].get_attribute("data-points")) >= 3 \
            and [c.find_element(By.CSS_SELECTOR, ".u-title").text for c in charts]
    # Three points of 5 s each: the sampler runs every second, the chart asks Period 5.
    titles = until(d, "the memory chart is drawn with 3 points or more", drawn, 60)
    if titles:
        check("four charts: memory, ops/s, connections, hit ratio",
              titles == ["Memory used (MB)", "Operations per second", "Connections",
                         "Hit ratio (%)"], titles)
    shot(d, "04-charts")

    # The slow log tab answers (empty or not).
    d.find_element(By.CSS_SELECTOR, '#tabs button[data-tab="slowlog"]').click()
    until(d, "the slow log tab shows its table or says it is empty",
          lambda d: visible(d, "#no-slowlog") or d.find_elements(
              By.CSS_SELECTOR, "#slowlog-table tbody tr"))

    # Nothing of the key left in the browser beyond this page's memory.
    check("the browser holds no cookie", d.get_cookies() == [], d.get_cookies())
    stored = d.execute_script("return JSON.stringify(Object.keys(sessionStorage)) + "
                              "JSON.stringify(Object.keys(localStorage))")
    check("nothing in sessionStorage or localStorage (not asked to keep signed in)",
          stored == "[][]", stored)

    # Delete: isolate, then clean up; the instance leaves the list.
    d.find_element(By.ID, "delete").click()
    confirm = until(d, "the delete confirmation opens", lambda d: visible(d, "#confirm-dialog"))
    if confirm:
        confirm.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        until(d, "the instance is deleted and leaves the list",
              lambda d: cells_of(d, iid) is None and any(
                  ("Delete " + iid) in li.text and "done" in li.text
                  for li in d.find_elements(By.CSS_SELECTOR, "#task-list li")), 60)
        shot(d, "05-deleted")

    logs = d.get_log("browser")
    violations = [e["message"] for e in logs if "Content Security Policy" in e["message"]
                  or "Refused to" in e["message"]]
    check("no Content-Security-Policy violation in the browser's log", not violations,
          violations)
    errors = [e["message"] for e in logs if e["level"] == "SEVERE"
              and "not-the-key" not in e["message"] and "401" not in e["message"]]
    check("no script error in the browser's log", not errors, errors)


def main():
    head_checks()
    d = browser()
    try:
        walk(d)
    except Exception:
        shot(d, "99-exception")
        raise
    finally:
        d.quit()


if __name__ == "__main__":
    try:
        main()
    except Exception:
        traceback.print_exc()
        check("the walk ran to its end without an exception", False)
    finally:
        if RESULT_FILE:
            with open(RESULT_FILE, "w") as f:
                json.dump({"passed": passed, "failed": failed}, f)
    print("console_test: %d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed else 0)
