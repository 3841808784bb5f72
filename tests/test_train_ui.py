"""The Train tab: ETA from steady-state steps, the progress bar, setup save / load / CLI, form restore, clamping.

Real objects throughout: transformers' own TrainerState / TrainingArguments / TrainerControl drive StudioCallback
(the clock is the only thing fed, so the times are exact, never measured), the real gradio app is built, and the
CLI command is parsed by launch.py's own parser.
"""

from __future__ import annotations

import threading

import pytest

from core.callbacks import StepClock, StudioCallback
from core.events import Progress


def _run_schedule(
    tmp_path, max_steps=20, eval_every=5, warmup_s=20.0, step_s=2.0, eval_s=6.0, start_eval_s=30.0
):
    """Drive StudioCallback through a run as transformers' Trainer calls it; returns [(step, eta, truth)].

    Schedule: on_train_begin at t=0, the start-of-run evaluation, a slow first step (warm-up), then steady steps
    with an evaluation after every ``eval_every``-th step and a checkpoint save after step 10. ``truth`` is the
    time the simulated run really had left at that step, less the save (not predicted).
    """
    from transformers import TrainerControl, TrainerState, TrainingArguments

    now = [0.0]
    events: list[object] = []
    cb = StudioCallback(events.append, threading.Event(), clock=lambda: now[0])
    args = TrainingArguments(
        output_dir=str(tmp_path),
        eval_strategy="steps",
        eval_steps=eval_every,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
    )
    state = TrainerState(max_steps=max_steps, eval_steps=eval_every)
    control = TrainerControl()
    cb.on_train_begin(args, state, control)
    now[0] += start_eval_s
    cb.on_evaluate(args, state, control)
    marks: list[tuple[int, float]] = []  # (step, time its Progress was published)
    for step in range(1, max_steps + 1):
        now[0] += warmup_s if step == 1 else step_s
        state.global_step = step
        cb.on_step_end(args, state, control)
        marks.append((step, now[0]))
        if step % eval_every == 0:
            now[0] += eval_s
            cb.on_evaluate(args, state, control)
        if step == 10:
            now[0] += 9.0  # a checkpoint save: not a step's time, and not predicted
            cb.on_save(args, state, control)
    end = now[0]
    progress = [e for e in events if isinstance(e, Progress) and e.step > 0]
    assert [p.step for p in progress] == list(range(1, max_steps + 1))
    saved_s = 9.0
    return [
        (p.step, p.eta_s, end - t - (saved_s if p.step <= 10 else 0.0), p.elapsed_s, t)
        for p, (_, t) in zip(progress, marks, strict=True)
    ]


def test_eta_leaves_out_warmup_and_evaluation_and_matches_the_time_left(tmp_path):
    rows = _run_schedule(tmp_path)
    by_step = {step: (eta, truth, elapsed, t) for step, eta, truth, elapsed, t in rows}
    # after step 1 only the first step's own time is known (20 s: an over-estimate, never 0 or None)
    assert by_step[1][0] == pytest.approx(19 * 20.0 + 4 * 0.0)
    # after step 4: steady steps of 2 s; no evaluation after a step measured yet
    eta4, truth4, elapsed4, _ = by_step[4]
    assert eta4 == pytest.approx(16 * 2.0)  # evaluations after a step: none measured yet, counted as 0 s
    # the old rule (elapsed / steps done * steps left) read 7x too long here: start evaluation + warm-up counted
    assert elapsed4 / 4 * 16 > 6 * eta4
    # from step 6 on, steps and evaluations are both measured: the ETA is the time the run really had left
    # (less the one checkpoint save, which is not predicted)
    for step in range(6, 21):
        eta, truth, _, _ = by_step[step]
        assert eta == pytest.approx(truth), step
    assert by_step[20][0] == pytest.approx(6.0)  # the last step's evaluation is still to run


def test_step_clock_uses_a_recent_window():
    clock = StepClock(0.0)
    t = 0.0
    for took in [50.0] + [1.0] * 30 + [3.0] * 20:  # warm-up, then the machine gets busier
        t += took
        clock.step_done(t)
    assert clock.seconds_per_step() == pytest.approx(3.0)
    assert clock.eta_s(10) == pytest.approx(30.0)
    assert StepClock(0.0).eta_s(10) is None  # no step ended yet


# ---- the progress bar ------------------------------------------------------------------------------------------


def test_progress_bar_shows_steps_eta_and_final_state():
    from core.events import JobSnapshot
    from ui.i18n import use_lang
    from ui.tabs.train_progress import progress_for, progress_html

    assert progress_html(0, 0, None, "idle") == ""
    running = progress_html(3, 20, 130.0, "training", 24.0)
    assert '<progress value="3" max="20"' in running
    assert "Step 3 of 20 (15%)" in running and "about 2m 10s left" in running and "24s elapsed" in running
    assert "estimating the time left" in progress_html(1, 20, None, "training")
    loading = progress_html(0, 0, None, "loading")
    assert "<progress style" in loading and "value=" not in loading  # indeterminate while loading
    assert "Loading data and model" in loading
    done = progress_html(20, 20, 0.0, "completed")
    assert 'value="20" max="20"' in done and "Done" in done and "#16a34a" in done
    assert "Failed at step 7" in progress_html(7, 20, None, "failed") and "#dc2626" in progress_html(
        7, 20, None, "failed"
    )
    assert 'value="20"' in progress_html(25, 20, None, "training")  # never past the end
    assert "Stopping after this step" in progress_html(4, 20, 30.0, "stopping")  # no ETA for steps not run
    snap = JobSnapshot(status="training", step=5, max_steps=10, eta_s=50.0, elapsed_s=60.0)
    assert progress_for(snap) == progress_html(5, 10, 50.0, "training", 60.0)
    with use_lang("zh"):
        zh = progress_html(3, 20, 130.0, "training")
    assert "第 3 步，共 20 步" in zh and "剩余时间约 2 分 10 秒" in zh


# ---- the setup as a file: download, load, CLI ------------------------------------------------------------------


@pytest.fixture(scope="module")
def app():
    from ui.app import build_app

    return build_app()


def _values(updates):
    """The values a list of gr.update dicts sets (KeyError on a skip: a test wants every field set)."""
    return [u["value"] for u in updates]


def _custom_config():
    from core.config import TrainingConfig
    from tests.conftest import ASSETS

    return TrainingConfig(
        dataset_name=str(ASSETS / "humaneval_alpaca.jsonl"),
        dataset_column_mapping=(("instruction", "prompt"), ("output", "canonical_solution")),
        lora_r=512,  # beyond the slider's 256, within the config's 1024: the slider widens
        lora_alpha=64,
        lora_dropout=0.1,
        lora_target_modules=("q_proj", "v_proj"),
        load_in_4bit=True,
        learning_rate=1e-4,
        max_steps=20,
        per_device_train_batch_size=2,
        gradient_accumulation_steps=4,
        max_length=512,
        seed=7,
        gradient_checkpointing=True,
        lr_scheduler_type="cosine",
        warmup_steps=3,
        validation_split=0.1,
    )


def test_setup_round_trips_through_json_the_form_and_the_cli(app, tmp_path):
    import json
    import shlex
    import subprocess

    from core.config import TrainingConfig
    from launch import build_parser
    from ui.tabs import train_setup

    form = app.form
    cfg = _custom_config()
    path = train_setup.write_setup(cfg, tmp_path)
    assert json.loads(path.read_text())["lora_r"] == 512
    *updates, loaded, message = train_setup.load_setup(form, str(path))
    assert "Loaded" in message and loaded == cfg.to_dict()
    assert form.to_config(*_values(updates)) == cfg
    r_update = updates[form.names.index("lora_r")]
    assert r_update["maximum"] == 512  # widened, not clamped to 256
    targets = updates[form.names.index("lora_target_modules")]
    assert {"q_proj", "v_proj"} <= set(targets["choices"]) and "o_proj" in targets["choices"]  # the model's
    # the command line parses with launch.py's own parser, and the shell lines really write this config
    command = train_setup.cli_command()
    args = build_parser().parse_args(shlex.split(command)[2:])
    assert args.command == "train" and args.config == train_setup.SETUP_FILE
    subprocess.run(["bash", "-c", train_setup.cli_script(cfg).rsplit("\n", 2)[0]], cwd=tmp_path, check=True)
    assert TrainingConfig.from_json_file(tmp_path / train_setup.SETUP_FILE) == cfg
    assert train_setup.cli_script(cfg).rstrip().endswith(command)


def test_bad_setup_files_change_nothing_and_name_the_field(app, tmp_path):
    import json

    from ui.tabs import train_setup

    form = app.form
    cases = {
        "broken.json": ("{not json", "broken.json: not valid JSON"),
        "unknown.json": (json.dumps({"lora_rank": 8}), "lora_rank: unknown key"),
        "range.json": (
            json.dumps({"lora_r": 5000, "lora_dropout": 2}),
            "lora_r: 5000 must be between 1 and 1024",
        ),
        "list.json": (json.dumps([1, 2]), "config must be a JSON object"),
        "choice.json": (json.dumps({"dtype": "int8"}), "dtype"),
    }
    for name, (text, expected) in cases.items():
        path = tmp_path / name
        path.write_text(text)
        *updates, loaded, message = train_setup.load_setup(form, str(path))
        assert all("value" not in u for u in updates) and loaded is None, name  # nothing half-applied
        assert "not loaded" in message and expected in message, (name, message)
        assert str(tmp_path) not in message  # the upload's temporary folder means nothing to the user
    *_, message = train_setup.load_setup(form, str(tmp_path / "range.json"))
    assert "lora_dropout" in message  # every problem at once


def test_download_handler_runs_through_gradio_and_serves_the_file(app):
    """The real button's event, run by gradio itself (preprocess, handler, postprocess of the gr.File)."""
    import asyncio
    import json

    from gradio.state_holder import SessionState

    from core.config import TrainingConfig

    form = app.form
    fn = next(f for f in app.fns.values() if f.name == "on_download")
    values = {name: comp.value for name, comp in form.components.items()}
    values.update({"lora_r": 16, "max_steps": 20, "dataset_name": "assets/humaneval_alpaca.jsonl"})
    out = asyncio.run(app.process_api(fn, [values[n] for n in form.names], SessionState(app)))
    file, script, message = out["data"]
    served = json.loads(open(file["path"]).read())
    assert TrainingConfig.from_dict(served) == form.to_config(*[values[n] for n in form.names])
    assert served["lora_r"] == 16 and "python launch.py train lora-studio-setup.json" in script


# ---- restoring the form after a reload -------------------------------------------------------------------------


def test_restore_form_fills_every_field_from_the_running_job(app):
    from core.events import JobSnapshot
    from ui.tabs import train_setup

    form = app.form
    cfg = _custom_config().replace(resume_from_checkpoint="")
    snap = JobSnapshot(status="training", step=3, max_steps=20, info={"config": cfg.to_dict()})
    assert form.to_config(*_values(train_setup.restore_form(form, snap))) == cfg
    # nothing to restore: the form is left as it is
    for source in (JobSnapshot(), None):
        assert all("value" not in u for u in train_setup.restore_form(form, source))


# ---- a value typed outside a slider's range ----------------------------------------------------------------------


def test_an_out_of_range_r_reaches_the_live_formula_instead_of_failing(app):
    """gradio's Slider refused r=300 in preprocess, so the formula's .change failed and the page's clamped value
    (sent next) was dropped with it; now the formula shows what the box holds, then the clamped value."""
    import asyncio

    from gradio.state_holder import SessionState

    fn = next(f for f in app.fns.values() if f.name == "lora_math")
    state = SessionState(app)
    for r in (300, 256, 0.0):
        out = asyncio.run(app.process_api(fn, [None, r, 16, []], state))
        assert f"r = {max(1, int(r))}," in out["data"][0], r
    # the config still judges the value and names the field (the API's Start path)
    with pytest.raises(Exception, match="lora_r: 5000"):
        app.form.to_config(*[5000 if n == "lora_r" else c.value for n, c in app.form.components.items()])


def test_every_runtime_text_of_the_train_tab_has_chinese_with_the_same_placeholders():
    import ast
    import string
    from pathlib import Path

    from ui.zh_train import ZH

    root = Path(__file__).resolve().parents[1]
    modules = ["ui/forms.py", "ui/tabs/train_tab.py", "ui/tabs/train_progress.py", "ui/tabs/train_setup.py"]
    templates = [
        node.args[0].value
        for module in modules
        for node in ast.walk(ast.parse((root / module).read_text()))
        if isinstance(node, ast.Call)
        and getattr(node.func, "id", None) == "tr"
        and node.args
        and isinstance(node.args[0], ast.Constant)
    ]
    assert len(templates) >= 20

    def fields(text):
        return sorted(f for _, f, _, _ in string.Formatter().parse(text) if f)

    for text in templates:
        assert text in ZH, text
    for en, zh in ZH.items():
        assert fields(en) == fields(zh), en


def test_the_log_box_follows_new_lines_in_the_page(app):
    """The log's .change runs the follow script in the page (no server call); the script finds the log box."""
    from ui.tabs.train_progress import FOLLOW_LOG_JS, LOG_CLASS

    logs = next(c for c in app.blocks.values() if LOG_CLASS in (getattr(c, "elem_classes", None) or []))
    deps = [d for d in app.config["dependencies"] if [logs._id, "change"] in [list(t) for t in d["targets"]]]
    assert any(d["js"] == FOLLOW_LOG_JS and not d["backend_fn"] for d in deps)
    assert f".{LOG_CLASS} textarea" in FOLLOW_LOG_JS


@pytest.mark.slow
def test_in_a_real_browser_the_formula_follows_a_clamp_and_the_log_follows_its_end():
    """Chromium on a small app made of the Train tab's own parts: r typed past the slider's maximum then left at
    once shows the clamped value in the formula; the log box follows its end, not while the user has scrolled
    up, then again. (gradio's plain Slider loses the clamp only when the clamp's .change arrives while the one for
    300 is pending, a race: the deterministic check is the gradio-run test above.)"""
    import shutil
    import socket
    import time
    from pathlib import Path

    import gradio as gr

    from ui.forms import config_slider
    from ui.tabs.train_progress import FOLLOW_LOG_JS, LOG_CLASS

    sync_api = pytest.importorskip("playwright.sync_api")
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).exists():
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    lines: list[str] = []

    def slow_formula(name):
        def formula(v):
            time.sleep(0.5)  # a live handler that takes a moment, as the estimate does on a busy CPU
            return f"{name} = {int(v)}"

        return formula

    with gr.Blocks() as demo:
        ours = config_slider(1, 256, value=8, step=1, label="ours")
        ours_out = gr.Markdown(elem_id="ours-out")
        ours.change(slow_formula("r"), ours, ours_out)
        logs = gr.Textbox(lines=5, max_lines=5, interactive=False, elem_classes=[LOG_CLASS])
        logs.change(None, None, None, js=FOLLOW_LOG_JS, queue=False)

        def tick():
            lines.append(f"line {len(lines)}")
            return "\n".join(lines)

        gr.Timer(0.3).tick(tick, None, logs)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo.launch(server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{port}/")
            box = page.get_by_label("number input for ours")
            box.fill("300")
            box.blur()  # at once: the clamp's .change arrives while the one for 300 is pending
            assert box.input_value() == "256"
            page.wait_for_function("document.querySelector('#ours-out').innerText.includes('r = 256')")
            log = page.locator(f".{LOG_CLASS} textarea")
            at_end = "b => b.scrollHeight - b.scrollTop - b.clientHeight < 8"
            page.wait_for_function(
                f"document.querySelector('.{LOG_CLASS} textarea').value.includes('line 20')"
            )
            assert log.evaluate(at_end)
            log.hover()
            page.mouse.wheel(0, -5000)
            page.wait_for_function(
                f"document.querySelector('.{LOG_CLASS} textarea').value.includes('line 35')"
            )
            assert log.evaluate("b => b.scrollTop") == 0  # the user reads above: not pulled down
            page.mouse.wheel(0, 100000)
            page.wait_for_function(
                f"document.querySelector('.{LOG_CLASS} textarea').value.includes('line 50')"
            )
            page.wait_for_timeout(500)
            assert log.evaluate(at_end)
            browser.close()
    finally:
        demo.close()


def test_load_setup_runs_through_gradios_upload_event(app):
    """The real upload event (the file as the page sends it, every form component's update postprocessed)."""
    import asyncio
    import json
    import shutil
    import uuid
    from pathlib import Path

    from gradio.state_holder import SessionState
    from gradio.utils import get_upload_folder

    folder = Path(get_upload_folder()) / f"test-setup-{uuid.uuid4().hex}"
    folder.mkdir(parents=True)
    try:
        path = folder / "mine.json"
        path.write_text(json.dumps({"lora_r": 300, "max_steps": 20, "lora_target_modules": ["q_proj"]}))
        fn = next(f for f in app.fns.values() if f.name == "on_upload")
        payload = {"path": str(path), "orig_name": "mine.json", "meta": {"_type": "gradio.FileData"}}
        state = SessionState(app)
        data = asyncio.run(app.process_api(fn, [payload], state))["data"]
    finally:
        shutil.rmtree(folder)
    names = app.form.names
    assert len(data) == len(names) + 2
    assert data[names.index("lora_r")]["value"] == 300 and data[names.index("lora_r")]["maximum"] == 300
    assert data[names.index("max_steps")]["value"] == 20
    assert data[names.index("lora_target_modules")]["value"] == ["q_proj"]
    assert state[fn.outputs[-2]._id]["lora_r"] == 300  # the gr.State the app chains restore_form on
    assert "Loaded **mine.json**" in data[-1]
