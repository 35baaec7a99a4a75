"""The real thing: ``streamlit run app.py`` on localhost, driven by headless Chromium.

Chromium is Debian's (``apt-get install chromium chromium-driver``), driven by Playwright for
Python; Playwright's own browser download is not used. The test uploads a photo through the
upload widget as a user would, waits for the overlays, checks them, downloads the ZIP bundle
and saves a screenshot to ``artifacts/browser/app.png``. With ``ATTNVIZ_UPDATE_SCREENSHOT=1``
(or when it is missing) the screenshot is also copied to ``assets/screenshot.png`` for the
README.
"""

from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTIFACT = ROOT / "artifacts" / "browser" / "app.png"
README_SHOT = ROOT / "assets" / "screenshot.png"
SHOT_LIMIT = 400 * 1024
VIEWPORT = {"width": 1400, "height": 900}
START_TIMEOUT_S = 60


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    """The app as a server on a free localhost port; always terminated afterwards."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium chromium-driver")
    pytest.importorskip("playwright.sync_api")
    port = _free_port()
    env = dict(os.environ, ATTNVIZ_OFFLINE="1", HF_HUB_OFFLINE="1")
    log = ROOT / "artifacts" / "browser" / "server.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
             "--server.port", str(port), "--server.address", "127.0.0.1",
             "--browser.gatherUsageStats", "false"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + START_TIMEOUT_S
            while True:
                if proc.poll() is not None:
                    pytest.fail(f"streamlit exited with {proc.returncode}; see {log}")
                try:
                    with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                        if r.status == 200:
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    pytest.fail(f"streamlit did not answer within {START_TIMEOUT_S} s; see {log}")
                time.sleep(0.5)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def _wait_until_idle(page, timeout_ms: int = 90_000) -> None:
    """Streamlit shows its status widget while the script runs."""
    page.wait_for_timeout(300)
    page.locator('[data-testid="stStatusWidget"]').wait_for(state="hidden", timeout=timeout_ms)


def _loaded_images(page, selector: str) -> list[int]:
    """naturalWidth of every image under ``selector`` that finished loading."""
    return page.eval_on_selector_all(
        selector, "els => els.filter(e => e.complete).map(e => e.naturalWidth)")


def _save_screenshot(page) -> None:
    ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACT))
    if ARTIFACT.stat().st_size > SHOT_LIMIT:  # a palette PNG of a UI is a fraction the size
        from PIL import Image

        Image.open(ARTIFACT).convert("RGB").quantize(256).save(ARTIFACT, optimize=True)
    if os.environ.get("ATTNVIZ_UPDATE_SCREENSHOT") == "1" or not README_SHOT.exists():
        shutil.copyfile(ARTIFACT, README_SHOT)


def test_upload_a_photo_and_see_the_overlays(server, browser, samples):
    started = time.monotonic()
    page = browser.new_page(viewport=VIEWPORT, accept_downloads=True)
    page.goto(server)
    page.get_by_text("Upload one or several photos").wait_for(timeout=90_000)
    _wait_until_idle(page)

    upload = page.locator('[data-testid="stMain"] [data-testid="stFileUploader"] '
                          'input[type="file"]')
    upload.set_input_files(str(samples["chelsea"]))
    page.get_by_text("chelsea.jpg · 451×300 · upload").wait_for(timeout=90_000)
    _wait_until_idle(page)

    top1 = page.locator('[data-testid="stProgress"]').first.inner_text()
    assert top1.startswith("1.") and "cat" in top1.lower(), top1

    overlays = '[data-testid="stTabs"] [data-testid="stImage"] img'
    page.wait_for_function(
        f"document.querySelectorAll('{overlays}').length >= 16", timeout=60_000)
    page.wait_for_function(
        f"[...document.querySelectorAll('{overlays}')].every(i => i.complete)", timeout=30_000)
    widths = _loaded_images(page, overlays)
    assert len(widths) >= 16 and all(w > 0 for w in widths), widths
    captions = page.locator('[data-testid="stTabs"] [data-testid="stImageCaption"]')
    assert captions.first.inner_text().startswith("blocks.0.0.bn1 · energy")

    with page.expect_download(timeout=60_000) as download:
        page.get_by_role("button", name="ZIP bundle of the whole analysis").click()
    bundle = zipfile.ZipFile(io.BytesIO(Path(download.value.path()).read_bytes()))
    assert "manifest.json" in bundle.namelist()
    assert "chelsea/maps.npz" in bundle.namelist()

    page.mouse.move(0, 0)  # no hover effects in the picture
    _save_screenshot(page)
    assert ARTIFACT.stat().st_size < SHOT_LIMIT
    assert time.monotonic() - started < 120


def test_a_corrupt_upload_shows_its_error_and_the_page_keeps_working(
        server, browser, samples, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"this is a text file pretending to be a photo\n" * 20)
    page = browser.new_page(viewport=VIEWPORT)
    page.goto(server)
    page.get_by_text("Upload one or several photos").wait_for(timeout=90_000)
    _wait_until_idle(page)
    upload = page.locator('[data-testid="stMain"] [data-testid="stFileUploader"] '
                          'input[type="file"]')

    upload.set_input_files(str(broken))
    alert = page.locator('[data-testid="stAlert"]', has_text="broken.jpg")
    alert.first.wait_for(timeout=90_000)
    assert "not an image" in alert.first.inner_text()
    assert page.locator("text=Traceback").count() == 0

    # The same session goes on: a good photo next to the bad one is analysed as usual.
    upload.set_input_files([str(broken), str(samples["coffee"])])
    page.get_by_text("coffee.jpg · 600×400 · upload").wait_for(timeout=90_000)
    _wait_until_idle(page)
    overlays = '[data-testid="stTabs"] [data-testid="stImage"] img'
    page.wait_for_function(
        f"document.querySelectorAll('{overlays}').length >= 16", timeout=60_000)
    assert "espresso" in page.locator('[data-testid="stProgress"]').first.inner_text()
