"""The pages in a real browser: headless Chromium (Debian's chromium + chromium-driver)
driven by selenium, against ``nhance-batch serve`` running jobs on its embedded Ray.

Screenshots of each page are saved under the test's temporary folder.
"""

from __future__ import annotations

import io
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from tests.web.conftest import TOKEN

pytestmark = pytest.mark.slow

CHROMIUM = os.environ.get("NHANCE_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("NHANCE_CHROMEDRIVER", "/usr/bin/chromedriver")


def _browser(tmp_path: Path):
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not shutil.which(p)]
    if missing:
        message = (f"the browser test needs Debian's chromium and chromium-driver "
                   f"(apt-get install chromium chromium-driver); missing: {', '.join(missing)}")
        if os.environ.get("CI") or os.environ.get("NHANCE_REQUIRE_BROWSER"):
            pytest.fail(message)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                "--autoplay-policy=no-user-gesture-required", "--window-size=1280,1100",
                f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def _wait(driver, condition, timeout: float, what: str):
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.2).until(lambda d: condition(d))
    except Exception as exc:
        shot = Path(os.environ.get("PYTEST_CURRENT_TMP", "/tmp")) / "failure.png"
        driver.save_screenshot(str(shot))
        raise AssertionError(f"timed out waiting for {what}") from exc


def _pixels(png: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)


def test_upload_follow_compare_in_a_browser(serve, web_clips, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    os.environ["PYTEST_CURRENT_TMP"] = str(tmp_path)
    server = serve(executor="ray")
    driver = _browser(tmp_path)
    shots = tmp_path / "screenshots"
    shots.mkdir()
    try:
        driver.get(f"{server.url}/?token={TOKEN}")
        assert driver.current_url.rstrip("/") == server.url  # the token left the address bar
        _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#jobs tbody tr.empty"), 20,
              "the job list")
        driver.find_element(By.ID, "files").send_keys(str(web_clips["browser"]))
        driver.find_element(By.NAME, "chunk_frames").send_keys("16")
        strength = driver.find_element(By.NAME, "strength")
        strength.clear()
        strength.send_keys("0.8")
        _wait(driver, lambda d: "browser.mp4" in d.find_element(By.ID, "chosen").text, 10,
              "the chosen file listed")
        driver.save_screenshot(str(shots / "1-jobs.png"))
        driver.find_element(By.ID, "submit").click()
        _wait(driver, lambda d: "/jobs/" in d.current_url, 60, "the job page")

        driver.execute_script("window.__sameDocument = 'still here';")
        _wait(driver, lambda d: d.find_element(By.ID, "state").text in ("running", "done"), 120,
              "the job to start")
        driver.save_screenshot(str(shots / "2a-job-live.png"))
        _wait(driver, lambda d: d.find_element(By.ID, "state").text in ("done", "failed"), 400,
              "the job to finish")
        assert driver.find_element(By.ID, "state").text == "done"
        # the form's phone-footage settings reached the job
        settings = driver.execute_script(
            "return fetch('/api/jobs/' + location.pathname.split('/').pop())"
            ".then(r => r.json()).then(d => d.settings);")
        assert (settings["strength"], settings["hdr"], settings["strict"]) == (0.8, "keep", False)
        # reached without a reload: the same document, updated by its events stream
        assert driver.execute_script("return window.__sameDocument") == "still here"
        rows = driver.find_elements(By.CSS_SELECTOR, "#videos tbody tr")
        assert len(rows) == 1 and "3/3 chunks" in rows[0].text
        driver.save_screenshot(str(shots / "2-job.png"))

        # back on the list, the job shows as done
        job_url = driver.current_url
        driver.get(server.url + "/")
        _wait(driver, lambda d: "done" in d.find_element(By.ID, "jobs").text, 20, "the list")
        driver.save_screenshot(str(shots / "3-jobs-done.png"))
        driver.get(job_url)
        _wait(driver, lambda d: d.find_elements(By.LINK_TEXT, "Compare"), 20, "Compare link")
        driver.find_element(By.LINK_TEXT, "Compare").click()

        ready = "return [before.readyState, after.readyState, before.videoWidth, after.videoWidth]"
        _wait(driver, lambda d: (lambda r: r[0] >= 3 and r[1] >= 3)(d.execute_script(
            "const before = document.getElementById('before'), after = "
            "document.getElementById('after');" + ready)), 60, "both videos to load")
        widths = driver.execute_script(
            "return [document.getElementById('before').videoWidth, "
            "document.getElementById('after').videoWidth]")
        assert widths[0] > 0 and widths[1] > 0
        assert driver.execute_script("return document.getElementById('before').muted") is True
        driver.save_screenshot(str(shots / "4-compare.png"))

        driver.find_element(By.ID, "play").click()
        time.sleep(2.0)
        before_t, after_t, paused = driver.execute_script(
            "const b = document.getElementById('before'), a = document.getElementById('after');"
            "return [b.currentTime, a.currentTime, a.paused];")
        assert not paused
        assert before_t > 1.0 and after_t > 1.0, (before_t, after_t)  # both advance
        assert abs(before_t - after_t) <= 1 / 12, (before_t, after_t)  # within one frame
        driver.save_screenshot(str(shots / "5-playing.png"))
        driver.find_element(By.ID, "play").click()  # pause: a fixed frame to compare
        time.sleep(0.5)

        stage = driver.find_element(By.ID, "stage")
        at_middle = _pixels(stage.screenshot_as_png)
        stage.click()  # focus the stage (the click also puts the divider under the pointer)
        stage_left = driver.execute_script(
            "return document.getElementById('divider').style.left")
        for _ in range(20):
            stage.send_keys(Keys.ARROW_LEFT)
        moved_left = driver.execute_script(
            "return document.getElementById('divider').style.left")
        assert float(moved_left.rstrip("%")) < float(stage_left.rstrip("%"))
        time.sleep(0.3)
        at_left = _pixels(stage.screenshot_as_png)
        # what is shown changed: more of the picture is now the enhanced side
        assert np.abs(at_left - at_middle).mean() > 1.0
        driver.save_screenshot(str(shots / "6-swiped.png"))

        driver.find_element(By.CSS_SELECTOR, "button[data-mode=side]").click()
        time.sleep(0.3)
        driver.save_screenshot(str(shots / "7-side-by-side.png"))
        driver.find_element(By.ID, "still").click()
        try:
            _wait(driver, lambda d: d.execute_script(
                "return document.getElementById('still-before').naturalWidth > 0 && "
                "document.getElementById('still-after').naturalWidth > 0"), 120, "the stills")
        except AssertionError:
            urls = driver.execute_script(
                "return [document.getElementById('still-before').src, "
                "document.getElementById('still-after').src]")
            with server.client() as client:
                answers = [(u, client.get(u.replace(server.url, "")).status_code) for u in urls]
            raise AssertionError(f"stills did not load in the page; the API answers {answers}")
        driver.execute_script("const z = document.getElementById('zoom'); z.value = 4;"
                              "z.dispatchEvent(new Event('input'));")
        time.sleep(0.3)
        driver.save_screenshot(str(shots / "8-still.png"))
        zoomed = driver.execute_script(
            "const img = document.getElementById('still-after'), box = img.parentElement;"
            "return [img.getBoundingClientRect().width, box.getBoundingClientRect().width]")
        assert zoomed[0] > 3.5 * zoomed[1]
        driver.execute_script("document.querySelector('.card.two').scrollIntoView()")
        time.sleep(0.3)
        driver.save_screenshot(str(shots / "9-metrics-flicker.png"))
        assert driver.find_elements(By.CSS_SELECTOR, "#flicker-plot polyline.after")
    finally:
        driver.quit()
    print(f"screenshots in {shots}")
