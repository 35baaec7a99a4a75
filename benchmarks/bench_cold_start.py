"""Cold start: from ``streamlit run app.py`` to the first analysis shown in a real browser.

Starts the server as a user would (offline), opens the page in headless Chromium (Debian's
``chromium`` via Playwright) and waits until every Overview overlay of the default sample
photo has loaded. A second visitor then opens the page: the model comes from the cache.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import ROOT, machine, save  # noqa: E402
from tests.test_browser import CHROMIUM, CHROMIUM_ARGS, _free_port  # noqa: E402

OVERLAYS = '[data-testid="stTabs"] [data-testid="stImage"] img'


def _until_overlays(page, url: str, timeout_ms: int = 300_000) -> None:
    page.goto(url)
    page.wait_for_function(
        f"[...document.querySelectorAll('{OVERLAYS}')].filter(i => i.complete && "
        "i.naturalWidth > 0).length >= 16", timeout=timeout_ms)


def run() -> dict:
    from playwright.sync_api import sync_playwright

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = dict(os.environ, ATTNVIZ_OFFLINE="1", HF_HUB_OFFLINE="1")
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
         "--server.port", str(port), "--server.address", "127.0.0.1",
         "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.2)
            if time.perf_counter() - started > 120:
                raise RuntimeError("streamlit did not start within 120 s")
        server_up = time.perf_counter() - started
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            _until_overlays(page, url)
            first = time.perf_counter() - started
            second_page = browser.new_page(viewport={"width": 1400, "height": 900})
            t = time.perf_counter()
            _until_overlays(second_page, url)
            second = time.perf_counter() - t
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    return {"machine": machine(), "server_answering_s": round(server_up, 2),
            "first_analysis_shown_s": round(first, 2),
            "second_visitor_overlays_s": round(second, 2)}


def main() -> None:
    argparse.ArgumentParser(description=__doc__).parse_args()
    result = run()
    print(result)
    print(f"saved {save('cold-start-cpu', result)}")


if __name__ == "__main__":
    main()
