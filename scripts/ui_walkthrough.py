"""Drive the running app in a real headless Chromium like a user, saving a screenshot at each stage.

Usage: python scripts/ui_walkthrough.py URL OUT_DIR [--steps 20]
Needs Playwright for Python and a Chromium (CHROMIUM env var, default /usr/bin/chromium). Used to check the UI
by eye before an issue is closed; the HTTP-level UI test in tests/test_ui.py is what CI runs.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("out")
    p.add_argument("--steps", type=int, default=20)
    a = p.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=os.environ.get("CHROMIUM", "/usr/bin/chromium"), args=ARGS
        )
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(a.url)
        page.get_by_text("Suggested learning rate").wait_for(timeout=120_000)
        page.screenshot(path=out / "1-model.png", full_page=True)

        page.get_by_role("tab", name="2. Data").click()
        page.get_by_label("...or use a sample dataset").click()
        page.get_by_role("option", name="HumanEval, chat messages JSONL (164 rows, MIT)").click()
        page.get_by_text("Supervised tokens per kept row").wait_for(timeout=120_000)
        time.sleep(2)
        page.screenshot(path=out / "2-data.png", full_page=True)

        page.get_by_role("tab", name="3. GPU memory").click()
        page.get_by_role("button", name="Estimate").click()
        time.sleep(3)
        page.screenshot(path=out / "3-gpu.png", full_page=True)

        page.get_by_role("tab", name="4. Train").click()
        steps = page.get_by_label("Max steps")
        steps.fill(str(a.steps))
        steps.press("Tab")
        page.get_by_role("button", name="Start training").click()
        t0 = time.time()
        shot = 0
        while time.time() - t0 < 900:
            time.sleep(10)
            text = page.locator("body").inner_text()
            if shot < 2 and "TRAINING" in text:
                page.screenshot(path=out / f"4-train-{shot}.png", full_page=True)
                shot += 1
            if "COMPLETED" in text or "FAILED" in text or "STOPPED" in text:
                break
        print(f"training finished after {time.time() - t0:.0f}s")
        page.screenshot(path=out / "5-train-done.png", full_page=True)

        page.get_by_role("tab", name="5. Export").click()
        time.sleep(2)
        page.get_by_role("button", name="Export merged weights").click()
        page.get_by_text("Verified on a probe prompt").wait_for(timeout=600_000)
        time.sleep(2)
        page.screenshot(path=out / "6-export.png", full_page=True)
        browser.close()


if __name__ == "__main__":
    main()
