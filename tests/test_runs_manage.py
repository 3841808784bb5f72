"""Runs tab management on real run folders: title and note (run_meta.json), the exports listed with a run (a real
adapter export), deletion with its refusals (live, queued, another process, an export being written, paths
outside the runs folder, symlinks), the hidden rename that keeps a half-deleted run out of the list, the table's
layout, and every runtime text in Chinese. No mocks: real processes for liveness, real gradio for the tab."""

from __future__ import annotations

import ast
import json
import os
import string
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.config import TrainingConfig
from core.liveness import record_process
from core.run_admin import (
    META_FILE,
    RunAdminError,
    delete_run,
    list_exports,
    read_meta,
    remove_stale_deletions,
    resolve_run,
    save_meta,
)
from core.runs import list_runs
from tests.conftest import ROOT
from ui.i18n import use_lang
from ui.tabs import runs_tab
from ui.zh_runs import ZH

OLD = 1_700_000_000  # a time long ago: nothing is writing these folders now


def make_run(base: Path, name: str, config=None, result=None, metrics=()) -> Path:
    """A run folder as TrainingJob writes it (config.json, result.json, metrics.jsonl), its files dated long ago."""
    folder = base / name
    folder.mkdir(parents=True)
    if config is not None:
        (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    if result is not None:
        (folder / "result.json").write_text(json.dumps(result), encoding="utf-8")
    if metrics:
        (folder / "metrics.jsonl").write_text(
            "".join(json.dumps(r) + "\n" for r in metrics), encoding="utf-8"
        )
    for path in [folder, *folder.rglob("*")]:
        os.utime(path, (OLD, OLD))
    return folder


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    base = tmp_path / "runs"
    cfg = TrainingConfig(lora_r=8, lora_alpha=16, learning_rate=2e-4).to_dict()
    done = {"status": "completed", "steps": 6, "final_loss": 1.5}
    make_run(base, "run-20240101-100000", cfg, done, [{"step": 1, "loss": 2.0}, {"step": 6, "loss": 1.5}])
    make_run(base, "run-20240102-100000", cfg, {"status": "failed", "steps": 2})
    make_run(base, "run-20240103-100000", cfg, metrics=[{"step": 1, "loss": 3.0}])  # killed: interrupted
    return base


@pytest.fixture
def sleeper():
    """A live process (for process.json records) that ends when the test does."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield proc
    proc.kill()
    proc.wait()


def names(base: Path) -> list[str]:
    return [r.name for r in list_runs(base)]


# ---------------------------------------------------------------------------------------------- title and note
def test_title_and_note_are_stored_atomically_and_shown_in_the_table_and_details(runs: Path):
    run = runs / "run-20240101-100000"
    meta = save_meta(runs, str(run), "  Baseline   r=8  ", "first try\r\nlr 2e-4, 6 steps")
    assert (meta.title, meta.note) == ("Baseline r=8", "first try\nlr 2e-4, 6 steps")
    stored = json.loads((run / META_FILE).read_text())
    assert stored["title"] == "Baseline r=8" and stored["note"] == meta.note
    assert not [p for p in run.iterdir() if p.name.startswith(f".{META_FILE}")]  # no temporary file left
    assert run.name in names(runs)  # the folder keeps its name: configs, exports and resumes refer to it

    frame, caption = runs_tab.runs_table(str(runs), None, "idle")
    row = frame[frame["Folder"] == run.name].iloc[0]
    assert (row["Title"], row["Note"], row["Status"], row["Steps"], row["Final loss"]) == (
        "Baseline r=8",
        "first try…",
        "completed",
        "6",
        "1.5000",
    )
    assert (row["Method"], row["r / α"], row["LR"], row["Exports"]) == ("LoRA", "8/16", "0.0002", "0")
    assert row["Model"] == "SmolLM2-135M-Instruct" and row["Started"] == "2024-01-01 10:00"
    assert "3 run(s)" in caption
    other = frame[frame["Folder"] == "run-20240102-100000"].iloc[0]
    assert other["Title"] == "" and other["Note"] == ""

    _, details = runs_tab.run_view(str(run))
    assert "Baseline r\\=8 (`run-20240101-100000`)" in details and "> lr 2e\\-4, 6 steps" in details
    assert "No exports yet" in details


def test_bad_titles_and_notes_are_refused_with_the_reason_and_nothing_written(runs: Path):
    run = runs / "run-20240101-100000"
    with pytest.raises(RunAdminError, match="one line"):
        save_meta(runs, run.name, "two\nlines", "")
    with pytest.raises(RunAdminError, match="81 characters; at most 80"):
        save_meta(runs, run.name, "x" * 81, "")
    with pytest.raises(RunAdminError, match="2001 characters; at most 2000"):
        save_meta(runs, run.name, "ok", "n" * 2001)
    with pytest.raises(RunAdminError, match="control character"):
        save_meta(runs, run.name, "ok", "bell\x07")
    assert not (run / META_FILE).exists()
    status, details = runs_tab.save(runs, run.name, "two\nlines", "")
    assert status.startswith("**Not saved.**") and "remove the line break" in status


def test_a_corrupt_meta_file_never_hides_the_run(runs: Path):
    run = runs / "run-20240102-100000"
    (run / META_FILE).write_text("{torn")
    assert read_meta(run)[0].title == "" and read_meta(run)[1].startswith("run_meta.json:")
    frame, _ = runs_tab.runs_table(str(runs), None, "idle")
    row = frame[frame["Folder"] == run.name].iloc[0]
    assert row["Title"] == "" and row["Note"] == "!"  # the details say what could not be read
    assert "Could not read: run_meta.json" in runs_tab.run_view(str(run))[1]
    bad = make_run(runs, "run-20240104-100000", result={"status": "completed"})
    (bad / "config.json").write_text("{not json")
    frame, _ = runs_tab.runs_table(str(runs), None, "idle")
    assert (
        frame[frame["Folder"] == bad.name].iloc[0]["Status"] == "unreadable: config.json"
    )  # short; reason below
    assert "unreadable: config.json: Expecting property name" in runs_tab.run_view(str(bad))[1]


# ---------------------------------------------------------------------------------------------- exports
@pytest.fixture(scope="module")
def exported_run(tmp_path_factory, tiny_llama) -> Path:
    """A run folder holding a real LoRA adapter of the tiny Llama (B moved from zero), exported with the real
    core.export.export_adapter (verified, zipped) twice: adapter-export/ and adapter-export-2/."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from core.export import export_adapter

    base = tmp_path_factory.mktemp("exports") / "runs"
    cfg = TrainingConfig(model_name_or_path=str(tiny_llama), lora_r=4, lora_alpha=8).to_dict()
    run = make_run(base, "run-20240201-100000", cfg, {"status": "completed", "steps": 3, "final_loss": 2.0})
    torch.manual_seed(0)
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(tiny_llama),
        LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]),
    )
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.05)
    model.save_pretrained(run / "adapter")
    export_adapter(run)
    export_adapter(run)
    return run


def test_a_runs_exports_are_listed_with_it_and_go_with_it(exported_run: Path):
    exports = list_exports(exported_run)
    assert [Path(e.path).name for e in exports] == ["adapter-export", "adapter-export-2"]
    first = exports[0]
    assert first.kind == "adapter" and first.verified and first.size_bytes > 10_000
    assert first.zip_path == str(exported_run / "adapter-export.zip") and Path(first.zip_path).is_file()

    base = exported_run.parent
    frame, _ = runs_tab.runs_table(str(base), None, "idle")
    assert frame.iloc[0]["Exports"] == "2"
    _, details = runs_tab.run_view(str(exported_run))
    assert "Exports (2):" in details and f"`{exported_run / 'adapter-export'}`" in details
    assert "verified" in details and f"zip: `{exported_run / 'adapter-export.zip'}`" in details

    shown, question, status = runs_tab.ask_delete(base, exported_run.name, None, "idle")
    assert shown["visible"] is True and "and 2 export(s)" in question and "cannot be undone" in question
    panel, status, selected, manage, chart, details = runs_tab.confirm_delete(
        base, exported_run.name, None, "idle"
    )
    assert status.startswith(f"Deleted `{exported_run.name}`") and "2 export(s) with it" in status
    assert (panel["visible"], selected, manage["visible"], chart) == (False, "", False, None)
    assert not exported_run.exists() and list(base.iterdir()) == []


# ---------------------------------------------------------------------------------------------- deleting
def test_delete_asks_first_and_cancel_keeps_everything(runs: Path):
    run = runs / "run-20240102-100000"
    shown, question, status = runs_tab.ask_delete(runs, run.name, None, "idle")
    assert shown["visible"] is True and question.startswith(f"**Really delete `{run.name}`?")
    assert run.is_dir()  # asking deletes nothing
    hidden, status = runs_tab.cancel_delete()
    assert hidden["visible"] is False and status == "Nothing was deleted." and run.is_dir()
    done = delete_run(runs, str(run))
    assert done.name == run.name and done.size_bytes > 0 and not run.exists()
    assert names(runs) == ["run-20240103-100000", "run-20240101-100000"]


def test_a_run_in_use_is_never_deleted(runs: Path, sleeper):
    live = runs / "run-20240103-100000"
    for status in ("training", "queued", "loading", "stopping", "saving"):
        with pytest.raises(RunAdminError, match=f"is {status}; stop it in the Train tab"):
            delete_run(runs, live.name, str(live), status)
    shown, _, status = runs_tab.ask_delete(runs, live.name, str(live), "queued")
    assert shown["visible"] is False and status.startswith("**Cannot delete.**") and "is queued" in status

    record_process(live, "worker", sleeper.pid)  # trained by a CLI or another app: its process is alive
    with pytest.raises(RunAdminError, match="training in another process"):
        delete_run(runs, live.name, None, "idle")
    # the confirmation was shown before the run started: the second click checks again
    panel, status, *rest = runs_tab.confirm_delete(runs, live.name, None, "idle")
    assert status.startswith("**Not deleted.**") and live.is_dir()

    writer = runs / "run-20240101-100000"  # an export of it is being written by a live process
    staging = writer / f".merged.partial-{sleeper.pid}-abcd"
    staging.mkdir()
    with pytest.raises(RunAdminError, match="export of run-20240101-100000 is being written"):
        delete_run(runs, writer.name)
    staging.rmdir()

    # the live job resumes from a run: that run stays until the job ends
    resuming = make_run(runs, "run-20240104-100000", {"resume_from_checkpoint": str(writer / "checkpoints")})
    with pytest.raises(RunAdminError, match="resumes from run-20240101-100000"):
        delete_run(runs, writer.name, str(resuming), "training")
    delete_run(runs, writer.name, str(resuming), "completed")  # ended: allowed
    assert not writer.exists()

    sleeper.kill()
    sleeper.wait()
    delete_run(runs, live.name, None, "idle")  # its process ended: interrupted, deletable
    assert not live.exists()


def test_only_runs_directly_inside_the_runs_folder_can_be_deleted(runs: Path, tmp_path: Path):
    outside = make_run(tmp_path / "elsewhere", "run-20240101-100000", {}, {"status": "completed"})
    (runs / "run-link").symlink_to(outside, target_is_directory=True)
    (runs / "notes").mkdir()
    (runs / "notes" / "mine.txt").write_text("keep")
    cases = {
        str(outside): "is not a run of the runs folder",
        "../elsewhere/run-20240101-100000": "is not a run of the runs folder",
        str(runs / ".." / "elsewhere" / "run-20240101-100000"): "is not a run of the runs folder",
        "run-link": "symbolic link",
        str(runs / "run-link"): "symbolic link",
        "notes": "is not a run folder",
        ".": "is not a run folder name",
        "": "Pick a run in the table first",
        "run-29990101-000000": "does not exist",
    }
    for folder, why in cases.items():
        with pytest.raises(RunAdminError, match=why):
            delete_run(runs, folder)
    link_to_runs = (
        tmp_path / "runs-link"
    )  # the runs folder itself reached through a link (/tmp -> /private/tmp)
    link_to_runs.symlink_to(runs, target_is_directory=True)
    assert resolve_run(runs, str(link_to_runs / "run-20240101-100000")) == runs / "run-20240101-100000"
    link_to_other = tmp_path / "other-link"  # a link to another folder holding a run of the same name
    link_to_other.symlink_to(outside.parent, target_is_directory=True)
    with pytest.raises(RunAdminError, match="is not a run of the runs folder"):
        delete_run(runs, str(link_to_other / "run-20240101-100000"))
    assert (outside / "result.json").is_file() and (runs / "notes" / "mine.txt").read_text() == "keep"
    assert len(names(runs)) == 3
    assert resolve_run(runs, str(runs / "run-20240101-100000")) == (runs / "run-20240101-100000").resolve()


def test_a_half_deleted_run_is_never_listed_and_its_leftover_is_removed(runs: Path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    leftover = make_run(
        runs, f".deleting-run-20240105-100000-{dead.pid}-0123abcd", {}, {"status": "completed"}
    )
    mine = make_run(
        runs, f".deleting-run-20240106-100000-{os.getpid()}-4567abcd", {}, {"status": "completed"}
    )
    assert names(runs) == ["run-20240103-100000", "run-20240102-100000", "run-20240101-100000"]
    frame, _ = runs_tab.runs_table(str(runs), None, "idle")  # listing finishes a crashed process's deletion
    assert len(frame) == 3 and not leftover.exists() and mine.is_dir()  # a live process's is its own
    assert remove_stale_deletions(runs) == []


def test_deletion_renames_to_a_hidden_name_first(runs: Path):
    """Between the rename and the end of rmtree, only a hidden .deleting-* folder exists: watch for it from a
    second process while a large run is deleted."""
    big = runs / "run-20240101-100000"
    for n in range(3000):
        (big / f"f{n}").write_bytes(b"\0" * 1000)
    seen = runs / "seen.txt"
    watcher = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import os, sys, time\n"
            "base, out = sys.argv[1], sys.argv[2]\n"
            "names = set()\n"
            "end = time.time() + 20\n"
            "while time.time() < end and os.path.isdir(os.path.join(base, 'run-20240101-100000')):\n"
            "    time.sleep(0.001)\n"
            "while time.time() < end:\n"
            "    names.update(n for n in os.listdir(base) if n.startswith('.deleting-'))\n"
            "    if names and not any(n.startswith('.deleting-') for n in os.listdir(base)): break\n"
            "open(out, 'w').write('\\n'.join(sorted(names)))\n",
            str(runs),
            str(seen),
        ]
    )
    time.sleep(0.5)
    delete_run(runs, big.name)
    watcher.wait(30)
    assert not big.exists() and names(runs) == ["run-20240103-100000", "run-20240102-100000"]
    assert not [p for p in runs.iterdir() if p.name.startswith(".deleting-")]
    hidden = seen.read_text().split()
    assert hidden and all(n.startswith(f".deleting-{big.name}-{os.getpid()}-") for n in hidden)


# ---------------------------------------------------------------------------------------------- the tab in gradio
def test_the_tab_builds_and_wires_in_real_gradio(runs: Path):
    import gradio as gr

    with gr.Blocks() as demo:
        out_dir = gr.Textbox(str(runs))
        r = runs_tab.render()
        runs_tab.wire(r, out_dir, lambda request, typed: Path(typed), lambda request: (None, "idle"))
    assert {
        "manage",
        "selected",
        "title",
        "note",
        "save",
        "delete",
        "confirm",
        "confirm_delete",
        "cancel",
    } <= r.keys()
    assert r["table"].column_widths == runs_tab.COLUMN_WIDTHS and len(runs_tab.COLUMN_WIDTHS) == len(
        runs_tab.RUN_HEADERS
    )
    assert sum(float(w.rstrip("%")) for w in runs_tab.COLUMN_WIDTHS) == 100
    assert r["manage"].visible is False and r["confirm"].visible is False  # shown once a run is selected
    fns = {getattr(d.fn, "__name__", "") for d in demo.fns.values()}
    assert {"refresh", "on_select", "on_save", "on_ask", "on_confirm", "cancel_delete"} <= fns

    figure, details, selected, title, note, manage, confirm, status = runs_tab.pick(
        runs, "run-20240101-100000"
    )
    assert selected == "run-20240101-100000" and manage["visible"] is True and confirm["visible"] is False
    assert figure is not None and "completed after 6 steps" in details
    *_, manage, _, _ = runs_tab.pick(runs, "../../etc")
    assert manage["visible"] is False


# ---------------------------------------------------------------------------------------------- Chinese
def templates(path: Path) -> set[str]:
    """Every literal first argument of tr(...) and RunAdminError(...) in ``path``."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("tr", "RunAdminError")
        ):
            if node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                found.add(node.args[0].value)
    return found


def fields(text: str) -> set[str]:
    return {
        f"{name}{'!' + conv if conv else ''}" for _, name, _, conv in string.Formatter().parse(text) if name
    }


def test_every_runtime_text_and_label_has_chinese_with_the_same_placeholders():
    needed = templates(ROOT / "ui" / "tabs" / "runs_tab.py") | templates(ROOT / "core" / "run_admin.py")
    needed |= templates(ROOT / "ui" / "tabs" / "runs_views.py")
    needed |= {runs_tab.PICK_HINT, *runs_tab.RUN_HEADERS, *runs_tab.STATUS_WORDS}
    assert len(needed) > 60
    missing = sorted(t for t in needed if t not in ZH)
    assert not missing, missing
    for en, zh in ZH.items():
        assert fields(en) == fields(zh), en
    from ui.i18n import runtime_table

    clashes = {en: runtime_table()[en] for en, zh in ZH.items() if runtime_table()[en] != zh}
    assert not clashes, clashes  # another area's table gives one of these keys another Chinese
    import gradio as gr

    with gr.Blocks():
        r = runs_tab.render()
    static = [getattr(c, a, None) for c in r.values() for a in ("label", "info")]
    static += [c.value for c in r.values() if isinstance(c, gr.Button | gr.Markdown)]
    assert [t for t in static if isinstance(t, str) and t.strip() and t not in ZH] == []


def test_the_table_and_messages_follow_the_pages_language(runs: Path, sleeper):
    live = runs / "run-20240103-100000"
    record_process(live, "worker", sleeper.pid)
    with use_lang("zh"):
        frame, caption = runs_tab.runs_table(str(runs), None, "idle")
        assert list(frame.columns)[:4] == ["文件夹", "标题", "开始时间", "状态"] and "最新的在前" in caption
        assert set(frame["状态"]) == {"已完成", "失败", "运行中（另一个进程）"}
        _, _, status = runs_tab.ask_delete(runs, live.name, None, "idle")
        assert status.startswith("**无法删除。**") and "另一个进程" in status
        _, _, status = runs_tab.ask_delete(runs, live.name, str(live), "training")
        assert "“训练中”" in status
    with use_lang("en"):
        assert runs_tab.runs_table(str(runs), None, "idle")[0].columns[0] == "Folder"


# ---------------------------------------------------------------------------------------------- layout in a browser
BROKEN_WORDS_JS = """(columns) => {
  // every visible header and cell: words (split at spaces) whose text lies on more than one line. Model names may
  // break after a hyphen (their parts are checked instead); every other column's words must stay whole.
  const headers = Array.from(document.querySelectorAll('[role=columnheader], th')).filter(c => c.offsetParent);
  const names = headers.map(h => h.innerText.trim()).filter(t => t);
  const broken = [];
  const cells = Array.from(document.querySelectorAll('[role=gridcell], [role=columnheader]')).filter(c => c.offsetParent);
  for (const c of cells) {
    const col = Number(c.getAttribute('aria-colindex') || 0) - 1;
    const split = c.getAttribute('role') === 'gridcell' && columns.includes(col) ? /[^\\s-]+-?/g : /\\S+/g;
    const walker = document.createTreeWalker(c, NodeFilter.SHOW_TEXT);
    let node;
    while ((node = walker.nextNode())) {
      let m;
      while ((m = split.exec(node.textContent))) {
        const range = document.createRange();
        range.setStart(node, m.index);
        range.setEnd(node, m.index + m[0].length);
        const tops = new Set(Array.from(range.getClientRects()).filter(r => r.width > 0).map(r => Math.round(r.top)));
        if (tops.size > 1) broken.push(m[0]);
      }
    }
  }
  return {names, broken};
}"""


@pytest.mark.slow
def test_at_1400_px_no_word_breaks_and_rename_and_delete_work_in_a_browser(tmp_path: Path):
    """The user's report: headers broke inside words and the folder was cut. Then the whole flow by clicks: select a
    row, give it a title, Delete run... -> Delete. Real Chromium, real Gradio, real folders."""
    import shutil
    import socket

    import gradio as gr

    sync_api = pytest.importorskip("playwright.sync_api")
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).exists():
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    base = tmp_path / "runs"
    qlora = TrainingConfig(
        load_in_4bit=True, lora_r=64, lora_alpha=128, model_name_or_path="Qwen/Qwen2.5-Coder-14B-Instruct"
    ).to_dict()
    make_run(
        base, "run-20240101-100000", qlora, {"status": "completed", "steps": 12000, "final_loss": 0.1234}
    )
    make_run(
        base, "run-20240102-100000-1", TrainingConfig(load_in_8bit=True).to_dict(), metrics=[{"step": 1}]
    )
    make_run(base, "run-20240103-100000", TrainingConfig().to_dict(), {"status": "interrupted", "steps": 2})
    save_meta(base, "run-20240101-100000", "Qwen coder baseline, r=64", "first try with a long note " * 3)
    with gr.Blocks() as demo:
        out_dir = gr.Textbox(str(base), visible=False)
        r = runs_tab.render()
        loaded = demo.load(lambda: None)
        runs_tab.wire(
            r, out_dir, lambda request, typed: Path(typed), lambda request: (None, "idle"), (loaded.then,)
        )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo.launch(server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"http://127.0.0.1:{port}/")
            page.locator("[role=gridcell]", has_text="run-20240102-100000-1").first.wait_for(timeout=60_000)
            model_column = runs_tab.RUN_HEADERS.index("Model")
            found = page.evaluate(BROKEN_WORDS_JS, [model_column])

            page.locator("[role=gridcell]", has_text="run-20240103-100000").first.click()
            page.get_by_label("Title").fill("renamed in the browser")
            page.get_by_role("button", name="Save title and note").click()
            page.get_by_text("Saved the title and note of").wait_for(timeout=30_000)
            page.locator("[role=gridcell]", has_text="renamed in the browser").first.wait_for(timeout=30_000)
            page.get_by_role("button", name="Delete run...").click()
            page.get_by_text("Really delete").wait_for(timeout=30_000)
            assert (base / "run-20240103-100000").is_dir()  # only asked so far
            page.get_by_role("button", name="Delete", exact=True).click()
            page.get_by_text("Deleted run-20240103-100000").wait_for(timeout=30_000)
            browser.close()
    finally:
        demo.close()
    assert found["names"][: len(runs_tab.RUN_HEADERS)] == runs_tab.RUN_HEADERS
    assert found["broken"] == []
    assert read_meta(base / "run-20240101-100000")[0].title == "Qwen coder baseline, r=64"
    assert not (base / "run-20240103-100000").exists() and len(names(base)) == 2


def test_details_follow_the_language_and_the_live_jobs_status(runs: Path):
    live = runs / "run-20240103-100000"
    save_meta(runs, live.name, "Live one", "")
    text = runs_tab.details_markdown(runs, live.name, str(live), "training")
    assert text.startswith("Live one (`run-20240103-100000`): training")
    with use_lang("zh"):
        text = runs_tab.details_markdown(runs, live.name, str(live), "training")
        assert ": 训练中" in text and "文件夹：" in text and "还没有导出" in text
        assert runs_tab.details_markdown(runs, "", None, "") == ZH[runs_tab.PICK_HINT]
    assert "does not exist" in runs_tab.details_markdown(runs, "run-29990101-000000")


# ---------------------------------------------------------------------------------------------- titles as typed
def rendered(markdown: str) -> tuple[str, list]:
    """(HTML, inline tokens) of ``markdown`` as markdown-it-py (CommonMark, tables on) renders it."""
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark").enable("table").enable("strikethrough")
    return md.render(markdown), md.parse(markdown)


def shown_text(tokens: list) -> str:
    """The text a reader sees (escapes and entities resolved), line breaks as newlines."""
    out = []
    for token in tokens:
        for child in token.children or []:
            out.append("\n" if child.type in ("hardbreak", "softbreak") else child.content)
        if token.type == "paragraph_close":
            out.append("\n\n")
    return "".join(out)


def test_titles_and_notes_show_literally_never_as_markup(runs: Path):
    """The tester's title created a real <img>, ** became bold and the note's line breaks collapsed."""
    run = runs / "run-20240101-100000"
    title = "<img src=x onerror=alert(1)>|pipes| **b** [l](javascript:alert(2))"
    note = "line one **not bold**\n    four spaces <b>x</b>\n1. not a list\n# not a heading\n~~kept~~ `tick` \\ back"
    save_meta(runs, run.name, title, note)
    for details in (runs_tab.run_view(str(run))[1], runs_tab.details_markdown(runs, run.name)):
        html, tokens = rendered(details)
        for markup in (
            "<img",
            "<strong",
            "<em",
            "<a ",
            "<b>",
            "<table",
            "<h1",
            "<ol",
            "<pre",
            "<s>",
        ):
            assert markup not in html, (markup, html)
        assert (
            html.count("<code>") == 3
        )  # only the app's own: folder name, model, path; never the note's `tick`
        text = shown_text(tokens)
        assert f"{title} ({run.name})" in text  # exactly as typed (the folder name stays code, shown plainly)
        assert "line one **not bold**\n\u00a0\u00a0\u00a0\u00a0four spaces <b>x</b>\n1. not a list\n" in text
        assert "# not a heading\n~~kept~~ `tick` \\ back" in text  # every line break kept
    status, details = runs_tab.save(runs, run.name, title, note)
    assert "<img" not in rendered(status)[0] and title in shown_text(rendered(status)[1])
    _, question, _ = runs_tab.ask_delete(runs, run.name, None, "idle")
    assert "<img" not in rendered(question)[0] and title in shown_text(rendered(question)[1])


# ---------------------------------------------------------------------------------------------- runs in use
def adapter_run(base: Path, name: str, tiny_llama: Path) -> Path:
    """A completed run of the tiny Llama holding a real LoRA adapter (r 4, alpha 8, B moved from zero)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    cfg = TrainingConfig(model_name_or_path=str(tiny_llama), lora_r=4, lora_alpha=8).to_dict()
    run = make_run(base, name, cfg, {"status": "completed", "steps": 3, "final_loss": 2.0})
    torch.manual_seed(0)
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(tiny_llama),
        LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]),
    )
    with torch.no_grad():
        for param_name, param in model.named_parameters():
            if "lora_B" in param_name:
                param.normal_(0, 0.05)
    model.save_pretrained(run / "adapter")
    return run


def test_a_run_being_exported_or_open_in_chat_in_this_process_is_never_deleted(tmp_path: Path, tiny_llama):
    """A real adapter export runs in a thread while the run is deleted from the Runs tab: refused, naming the
    export; the export finishes and its card names the run's real base and r. Chat's use is refused the same way."""
    import threading

    from core import run_admin
    from core.export import export_merged
    from core.model import MODEL_LOAD_LOCK

    base = tmp_path / "runs"
    exported_run = adapter_run(base, "run-20240201-100000", tiny_llama)
    outcome: dict = {}

    def export() -> None:
        try:
            outcome["result"] = export_merged(exported_run, dtype="float32")
        except Exception as exc:  # reported to the test below
            outcome["error"] = exc

    with MODEL_LOAD_LOCK:  # the export registers its use, then waits for the model lock: it is under way
        worker = threading.Thread(target=export)
        worker.start()
        deadline = time.time() + 30
        while not run_admin.users_of(exported_run) and time.time() < deadline:
            time.sleep(0.01)
        assert run_admin.users_of(exported_run) == [run_admin.BEING_EXPORTED]
        with pytest.raises(RunAdminError, match="is being exported right now"):
            delete_run(base, exported_run.name)
        panel, status, *_ = runs_tab.confirm_delete(base, exported_run.name, None, "idle")
        assert status.startswith("**Not deleted.**") and "being exported" in status
        with use_lang("zh"):
            _, _, status = runs_tab.ask_delete(base, exported_run.name, None, "idle")
            assert "正在导出" in status and "being exported" not in status
    worker.join(300)
    assert "error" not in outcome, outcome.get("error")
    merged = Path(outcome["result"].path)
    assert merged.parent == exported_run and (merged / "verification.json").is_file()
    card = (merged / "README.md").read_text(encoding="utf-8")
    assert "fine-tune of unknown" not in card and f"merged LoRA fine-tune of {tiny_llama.name}" in card
    assert "r = 4, alpha = 8" in card
    assert run_admin.users_of(exported_run) == []

    # Chat answering with the run (a real answer, paused between two streamed pieces): refused too
    from core import chat

    answer = chat.stream_side_by_side(str(exported_run), "adapter", "Hello", temperature=0, max_new_tokens=8)
    assert next(answer) == ("", "")  # the models are loaded: the answer is under way
    assert run_admin.users_of(exported_run) == [run_admin.OPEN_IN_CHAT]
    with pytest.raises(RunAdminError, match="is open in Chat right now"):
        delete_run(base, exported_run.name)
    with use_lang("zh"):
        _, _, status = runs_tab.ask_delete(base, exported_run.name, None, "idle")
        assert "正在对话页中使用" in status
    answer.close()  # the answer ends (Stop, or the page closed): the run is free again
    assert chat.free_models()
    assert run_admin.users_of(exported_run) == [] and exported_run.is_dir()
    delete_run(base, exported_run.name)
    assert not exported_run.exists() and list(base.iterdir()) == []


def test_an_export_whose_run_folder_is_deleted_fails_and_never_recreates_it(tmp_path: Path, tiny_llama):
    """Another process deletes the run (outside this process's registry) while its export waits, and while it
    writes: the export fails saying the run folder was deleted, and no folder of the run's name comes back."""
    import shutil
    import threading

    from core.errors import ExportError
    from core.export import export_adapter, export_merged
    from core.model import MODEL_LOAD_LOCK

    base = tmp_path / "runs"
    run = adapter_run(base, "run-20240301-100000", tiny_llama)
    spare = tmp_path / "spare"
    shutil.copytree(run, spare)

    def delete_elsewhere() -> None:  # what another process's delete_run does: rename, then remove
        doomed = base / f".deleting-{run.name}-1-0123abcd"
        os.rename(run, doomed)
        shutil.rmtree(doomed)

    # 1. deleted while the export waits for the model lock (before it read anything)
    outcome: dict = {}
    with MODEL_LOAD_LOCK:
        worker = threading.Thread(target=lambda: outcome.update(error=_raised(export_merged, run, "float32")))
        worker.start()
        wait_until_exporting(run)
        delete_elsewhere()
    worker.join(120)
    assert isinstance(outcome["error"], ExportError), outcome
    assert "was deleted while it was being exported" in str(outcome["error"])
    assert not run.exists() and list(base.iterdir()) == []

    # the same through the Export tab, in Chinese: "Export failed", the run folder deleted, nothing re-created
    from ui.tabs.export_tab import do_export

    shutil.copytree(spare, run)

    def export_in_zh() -> None:
        with use_lang("zh"):
            outcome["tab"] = do_export(str(run), True, "float32", progress=lambda *_a, **_k: None)

    with MODEL_LOAD_LOCK:
        worker = threading.Thread(target=export_in_zh)
        worker.start()
        wait_until_exporting(run)
        delete_elsewhere()
    worker.join(120)
    summary, download, folder = outcome["tab"]
    assert summary.startswith("**导出失败。** 运行文件夹 ") and "在导出过程中被删除" in summary, summary
    assert (download, folder) == (None, "") and list(base.iterdir()) == []

    # 2. deleted mid-way, once the export's staging folder exists inside the run folder
    for export in (export_adapter, export_merged):
        shutil.copytree(spare, run)
        seen: dict = {}

        def watch(seen: dict = seen) -> None:
            end = time.time() + 60
            while time.time() < end and run.is_dir():
                if any(p.name.startswith(".") and ".partial-" in p.name for p in run.iterdir()):
                    delete_elsewhere()
                    seen["deleted"] = True
                    return
                time.sleep(0.0005)

        watcher = threading.Thread(target=watch)
        watcher.start()
        error = _raised(export, run, "float32") if export is export_merged else _raised(export, run)
        watcher.join(60)
        assert seen.get("deleted"), "the watcher never saw the staging folder"
        assert isinstance(error, ExportError), error
        assert "was deleted while it was being exported" in str(error) and run.name in str(error)
        left = [str(p.relative_to(base)) for p in base.rglob("*")]
        assert not run.exists() and left == [], (export.__name__, left)


def wait_until_exporting(run: Path) -> None:
    """Return once an export of ``run`` has registered (core.run_admin.in_use) and taken its look at the folder."""
    from core import run_admin

    deadline = time.time() + 30
    while run_admin.BEING_EXPORTED not in run_admin.users_of(run) and time.time() < deadline:
        time.sleep(0.005)
    time.sleep(0.2)  # it is now waiting for the model lock the test holds


def _raised(fn, *args):
    """The exception ``fn(*args)`` raised (the export's keyword dtype passed for export_merged), or its result."""
    try:
        if len(args) == 2:
            return fn(args[0], dtype=args[1])
        return fn(*args)
    except Exception as exc:
        return exc
