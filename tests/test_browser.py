"""The whole flow in a real browser (Playwright driving Debian's Chromium) on the embedded default, with private
sessions as on a shared Space: upload the sample, read the validation report, train 10 steps while the chart gains
points, export merged weights, download the zip and load the model from it; then a second browser (a new context,
so a new session key) sees none of it. Screenshots of every tab land in ``test-output/screenshots/``.

Skipped when Chromium or Playwright is missing; ``.ci/run`` installs both, so CI always runs it.
"""

from __future__ import annotations

import json
import re
import shutil
import time
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ASSETS, ROOT, running_app

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
SHOTS = ROOT / "test-output" / "screenshots"
TABS = ["1. Model", "2. Data", "3. GPU memory", "4. Train", "5. Export", "6. Runs", "7. Chat"]


@pytest.fixture(scope="module")
def server(tmp_path_factory, embedded_path):
    cwd = tmp_path_factory.mktemp("browser-app")
    with running_app(
        cwd, "--private-sessions", env={"LORA_STUDIO_SESSIONS_DIR": str(cwd / "sessions")}
    ) as url:
        yield url, cwd


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def _tab(page, name: str) -> None:
    page.get_by_role("tab", name=name).click()
    page.wait_for_timeout(600)


def _shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def _status(page, word: str):
    """The Train tab's bold status word (TRAINING, COMPLETED ...), visible only."""
    return page.locator("strong").filter(has_text=re.compile(f"^{word}$")).filter(visible=True)


def _chart_points(page) -> int:
    """Points in the loss trace of the Train tab's plotly chart (0 before the first log)."""
    return page.evaluate(
        """() => {
            const plots = [...document.querySelectorAll('.js-plotly-plot')].filter(p => p.offsetParent);
            let n = 0;
            for (const p of plots) for (const t of (p.data || [])) if ((t.name || '').startsWith('train loss')) n += t.x.length;
            return n;
        }"""
    )


def test_full_flow_and_a_second_browser_sees_nothing(server, browser, tmp_path):
    url, cwd = server
    context = browser.new_context(
        locale="en-US", accept_downloads=True, viewport={"width": 1400, "height": 1000}
    )
    page = context.new_page()
    page.goto(url)
    page.get_by_text("LlamaForCausalLM").filter(visible=True).first.wait_for(
        timeout=120_000
    )  # model facts loaded
    _shot(page, "1-model")

    # Data: upload the sample file, the report counts every row
    _tab(page, "2. Data")
    page.locator("input[type=file]").first.set_input_files(str(ASSETS / "humaneval_alpaca.jsonl"))
    page.get_by_role("button", name="Validate data").click()
    summary = page.get_by_text("Rows: read").first
    summary.wait_for(timeout=180_000)
    text = summary.inner_text()
    assert "read 164" in text and "usable 164" in text, text
    _shot(page, "2-data")

    _tab(page, "3. GPU memory")
    _shot(page, "3-gpu-memory")

    # Train 10 steps and watch the chart gain points
    _tab(page, "4. Train")
    for label, value in (("Max steps", "10"), ("Max length (tokens)", "256"), ("Batch size", "1")):
        box = page.get_by_label(label).first  # a slider's number box comes before its range input
        box.fill(value)
        box.press("Tab")
    page.wait_for_timeout(500)
    page.get_by_role("button", name="Start training").click()
    _status(page, "TRAINING").first.wait_for(timeout=180_000)
    counts = []
    deadline = time.time() + 900
    while time.time() < deadline:
        counts.append(_chart_points(page))
        if _status(page, "COMPLETED").count():
            break
        assert not _status(page, "FAILED").count(), page.inner_text("body")[:3000]
        page.wait_for_timeout(2000)
    page.wait_for_timeout(1500)
    counts.append(_chart_points(page))
    assert _status(page, "COMPLETED").count(), page.inner_text("body")[:3000]
    assert counts[-1] == 10 and len({c for c in counts if 0 < c < 10}) >= 2, counts  # it grew while training
    _shot(page, "4-train")

    # Export merged weights, download the zip, load the model from it
    _tab(page, "5. Export")
    page.get_by_role("button", name="Refresh").first.click()
    page.wait_for_timeout(1000)
    page.get_by_role("button", name="Export merged weights").click()
    page.get_by_text("Done.").filter(visible=True).first.wait_for(timeout=600_000)
    _shot(page, "5-export")
    with page.expect_download(timeout=120_000) as info:
        page.locator("a[download]").filter(visible=True).first.click()
    zip_path = tmp_path / "merged.zip"
    info.value.save_as(zip_path)
    with zipfile.ZipFile(zip_path) as zf:
        names = zf.namelist()
        assert zf.testzip() is None
        zf.extractall(tmp_path / "merged")
    assert {"config.json", "README.md", "verification.json"} <= {Path(n).name for n in names}, names
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = next(p.parent for p in (tmp_path / "merged").rglob("config.json"))
    model = AutoModelForCausalLM.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    ids = tokenizer("def add(a, b):", return_tensors="pt").input_ids
    assert model.generate(ids, max_new_tokens=4, do_sample=False).shape[1] == ids.shape[1] + 4

    _tab(page, "6. Runs")
    page.get_by_text("1 run(s)").filter(visible=True).first.wait_for(timeout=30_000)
    _shot(page, "6-runs")
    _tab(page, "7. Chat")
    _shot(page, "7-chat")

    # A second browser: a new session key, so no job, no runs, nothing to export or chat with
    other = browser.new_context(locale="en-US", viewport={"width": 1400, "height": 1000}).new_page()
    other.goto(url)
    other.get_by_text("LlamaForCausalLM").filter(visible=True).first.wait_for(timeout=120_000)
    _tab(other, "4. Train")
    other.get_by_text("No training has run in this session.").filter(visible=True).first.wait_for(
        timeout=30_000
    )
    assert not _status(other, "COMPLETED").count()
    _tab(other, "6. Runs")
    other.get_by_text("No runs yet").filter(visible=True).first.wait_for(timeout=30_000)
    _shot(other, "second-browser-runs")
    run_folders = list((cwd / "sessions").glob("*/runs/run-*"))
    assert len(run_folders) == 1
    assert run_folders[0].name not in other.inner_text("body")
    _tab(other, "5. Export")
    assert run_folders[0].name not in other.inner_text("body")

    # The same first browser after a reload: still its run (the key lives in the browser)
    page.reload()
    _tab(page, "4. Train")
    _status(page, "COMPLETED").first.wait_for(timeout=60_000)
    assert run_folders[0].name in page.inner_text("body")
    config = json.loads((run_folders[0] / "config.json").read_text())
    assert (config["max_steps"], config["max_length"], config["per_device_train_batch_size"]) == (10, 256, 1)
    context.close()

    # Chinese: a browser whose language is Chinese gets the Chinese UI, the textbook help included
    chinese = browser.new_context(locale="zh-CN", viewport={"width": 1400, "height": 1000}).new_page()
    chinese.goto(url)
    chinese.get_by_role("tab", name="4. 训练").click()
    chinese.get_by_text("LoRA 原理").filter(visible=True).first.click()
    chinese.get_by_text("全零初始化").filter(visible=True).first.wait_for(timeout=30_000)
    assert "开始训练" in chinese.inner_text("body")
    _shot(chinese, "zh-train")


def test_gpu_planner_applies_its_plan_and_what_fits_loads_a_model(server, browser):
    """A 7B from the offline catalogue on a 16 GB card: the plan is QLoRA, one click sets it in the Train tab;
    the catalogue table loads a clicked model into the Model tab."""
    url, _ = server
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(url)
    page.get_by_text("LlamaForCausalLM").first.wait_for(timeout=120_000)  # the embedded model's facts
    path = page.get_by_label("Hub id or local model folder")
    path.fill("meta-llama/Llama-2-7b-hf")  # offline (HF_HUB_OFFLINE=1): built from the catalogue
    page.get_by_role("button", name="Load model info").click()
    page.get_by_text("6.74 B").first.wait_for(timeout=60_000)
    _tab(page, "4. Train")
    box = page.get_by_label("Batch size").first
    box.fill("4")
    box.press("Tab")
    _tab(page, "3. GPU memory")
    gpu = page.get_by_label("GPU", exact=True)
    gpu.click()
    page.get_by_role("option", name="NVIDIA T4 (16 GB)").click()
    page.get_by_role("button", name="Estimate", exact=True).click()
    plan = page.get_by_text("Fastest plan that fits: QLoRA").first
    plan.wait_for(timeout=60_000)
    assert page.get_by_text("Your settings on NVIDIA T4 (16 GB)").first.is_visible()
    page.get_by_role("button", name="Apply this plan to the Train tab").click()
    applied = page.get_by_text("Applied to the Train tab").first
    applied.wait_for(timeout=30_000)
    assert "load_in_4bit: false -> true" in applied.inner_text()
    _shot(page, "3-gpu-plan-applied")
    _tab(page, "4. Train")
    assert page.get_by_label("QLoRA (4-bit base)").is_checked()
    _tab(page, "3. GPU memory")
    # the tab now estimates the applied settings: they fit
    page.get_by_text(re.compile(r"Your settings on NVIDIA T4 \(16 GB\).*: QLoRA fits")).first.wait_for(
        timeout=30_000
    )
    page.get_by_text("What fits on my GPU: every catalogue model").click()
    page.get_by_role("button", name="Show what fits").click()
    page.get_by_text(re.compile(r"models fit 15 GiB")).first.wait_for(timeout=120_000)
    page.get_by_text("Qwen/Qwen2.5-0.5B-Instruct", exact=True).first.click()
    page.get_by_text("Loaded Qwen/Qwen2.5-0.5B-Instruct in the Model tab").first.wait_for(timeout=60_000)
    _shot(page, "3-gpu-what-fits")
    _tab(page, "1. Model")
    assert page.get_by_label("Hub id or local model folder").input_value() == "Qwen/Qwen2.5-0.5B-Instruct"
    page.get_by_text("Qwen2ForCausalLM").first.wait_for(timeout=60_000)
    page.close()
