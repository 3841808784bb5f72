"""Training charts and the runs list, on synthetic histories and real run folders (fast; no training, no mocks)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from core.config import TrainingConfig
from core.events import JobSnapshot
from core.runs import list_runs, read_metrics_tolerant, read_run
from ui.charts import EMPTY_LOSS_TITLE, SMOOTHING, moving_average, tokens_per_second, training_figure
from ui.views import status_markdown

# Two evaluations (before the first step, after step 2) interleaved with training logs, as the Trainer logs them:
# an eval row repeats the token count, and its elapsed_s includes the evaluation time.
HISTORY = (
    {"step": 0, "eval_train_sample_loss": 3.0, "num_input_tokens_seen": 0, "elapsed_s": 2.0},
    {
        "step": 1,
        "loss": 4.0,
        "learning_rate": 1e-4,
        "grad_norm": 1.5,
        "num_input_tokens_seen": 100,
        "elapsed_s": 3.0,
    },
    {
        "step": 2,
        "loss": 2.0,
        "learning_rate": 2e-4,
        "grad_norm": 0.5,
        "num_input_tokens_seen": 300,
        "elapsed_s": 5.0,
    },
    {"step": 2, "eval_train_sample_loss": 2.5, "num_input_tokens_seen": 300, "elapsed_s": 9.0},
    {"step": 2, "eval_validation_loss": 2.6, "num_input_tokens_seen": 300, "elapsed_s": 10.0},
    {
        "step": 3,
        "loss": 3.0,
        "learning_rate": 1e-4,
        "grad_norm": 0.7,
        "num_input_tokens_seen": 600,
        "elapsed_s": 11.0,
    },
)


def traces(fig):
    return {t.name: t for t in fig.data}


def notes(fig):
    """The "nothing here" sentences by the subplot they sit in (not subplot titles, not the estimate label)."""
    found = {}
    for a in fig.layout.annotations:
        if a.font.color != "grey":  # subplot titles and the estimate label are not notes
            continue
        for n in range(1, 6):
            xd = fig.layout[f"xaxis{n if n > 1 else ''}"].domain
            yd = fig.layout[f"yaxis{n if n > 1 else ''}"].domain
            if xd[0] <= a.x <= xd[1] and yd[0] <= a.y <= yd[1]:
                found[f"x{n if n > 1 else ''}"] = a.text
    return found


def with_gpu(history, peaks):
    return tuple({**row, "peak_reserved_gib": p} for row, p in zip(history, peaks))


# ------------------------------------------------------------------------------------------------- arithmetic
def test_moving_average_is_trailing_and_averages_what_is_there():
    assert moving_average([1, 2, 3, 4, 5, 6], 3) == [1, 1.5, 2, 3, 4, 5]
    assert moving_average([2.0, 4.0], 1) == [2.0, 4.0]
    assert moving_average([], 5) == []
    with pytest.raises(ValueError, match="window"):
        moving_average([1.0], 0)


def test_tokens_per_second_uses_deltas_and_leaves_out_evaluation_time():
    # step 1: 100 tokens in 3.0 - 2.0 s (the first eval's 2 s are not training); step 2: 200 tokens in 2 s;
    # step 3: 300 tokens in 11 - 10 s (the 5 s of evaluation after step 2 are not training either)
    assert tokens_per_second(HISTORY) == [(1.0, 100.0), (2.0, 100.0), (3.0, 300.0)]
    # the first log is the reference (a resumed run's token count carries over while its clock restarts: a rate
    # from zero would read 50,000 tokens/s here); rows without the keys are ignored
    rows = [
        {"step": 21, "num_input_tokens_seen": 50_000, "elapsed_s": 1.0},
        {"step": 22, "loss": 1.0},
        {"step": 23, "num_input_tokens_seen": 50_300, "elapsed_s": 4.0},
    ]
    assert tokens_per_second(rows) == [(23.0, 100.0)]
    assert tokens_per_second([]) == []


# ----------------------------------------------------------------------------------------------------- charts
def test_training_figure_draws_every_panel_from_the_history():
    history = with_gpu(HISTORY, [0.0, 1.2, 1.5, 1.5, 1.5, 1.6])
    fig = training_figure(history, estimate_gib=2.0, device="cuda")
    by_name = traces(fig)
    train = by_name["train loss (each batch)"]
    assert list(train.x) == [1, 2, 3] and list(train.y) == [4.0, 2.0, 3.0] and train.xaxis == "x"
    smooth = by_name[f"moving average (last {SMOOTHING} logs)"]
    assert list(smooth.y) == [4.0, 3.0, 3.0]  # 4, mean(4, 2), mean(4, 2, 3)
    fixed, validation = by_name["loss on fixed training rows"], by_name["validation loss"]
    assert list(fixed.x) == [0, 2] and list(fixed.y) == [3.0, 2.5] and fixed.xaxis == "x"
    assert list(validation.y) == [2.6] and validation.xaxis == "x"
    lr = by_name["learning rate"]
    assert list(lr.y) == [1e-4, 2e-4, 1e-4] and lr.xaxis == "x2"
    assert list(by_name["gradient norm"].y) == [1.5, 0.5, 0.7] and by_name["gradient norm"].xaxis == "x3"
    tps = by_name["tokens/s"]
    assert list(tps.x) == [1, 2, 3] and list(tps.y) == [100.0, 100.0, 300.0] and tps.xaxis == "x4"
    mem = by_name["measured peak reserved"]
    assert list(mem.y) == [0.0, 1.2, 1.5, 1.5, 1.5, 1.6] and mem.yaxis == "y5"
    (line,) = fig.layout.shapes
    assert (line.y0, line.y1, line.yref, line.xref) == (2.0, 2.0, "y5", "x5 domain")
    assert any(a.text == "estimate 2.0 GiB" for a in fig.layout.annotations)
    assert notes(fig) == {}  # every panel has data: no "nothing here" sentence
    assert fig.layout.title.text is None
    json.loads(fig.to_json())  # a valid plotly figure, as gr.Plot sends it


def test_cpu_run_says_no_gpu_memory_but_keeps_the_estimate_line():
    fig = training_figure(HISTORY, estimate_gib=1.25, device="cpu")
    assert "measured peak reserved" not in traces(fig)
    assert notes(fig) == {"x5": "CPU run: no GPU memory measured"}
    (line,) = fig.layout.shapes
    assert line.y0 == 1.25 and line.yref == "y5"
    assert "no GPU memory measured" in notes(training_figure(HISTORY))["x5"]  # device and estimate unknown
    assert training_figure(HISTORY).layout.shapes == ()


def test_empty_history_explains_every_empty_panel():
    fig = training_figure((), estimate_gib=None, device="cuda")
    assert len(fig.data) == 0 and fig.layout.title.text == EMPTY_LOSS_TITLE
    assert notes(fig) == {
        "x2": "no learning rate logged yet",
        "x3": "no gradient norm logged yet",
        "x4": "no token counts logged yet",
        "x5": "no GPU memory measured yet",
    }


def test_status_line_keeps_progress_and_time():
    snap = JobSnapshot(
        status="training", run_dir="/r", step=3, max_steps=10, elapsed_s=65, eta_s=130, history=HISTORY
    )
    text = status_markdown(snap)
    assert "step 3/10 (30%)" in text and "elapsed 1m 05s" in text and "ETA 2m 10s" in text


# -------------------------------------------------------------------------------------------------- runs list
def make_run(base: Path, name: str, config=None, result=None, metrics=None) -> Path:
    """A run folder as TrainingJob writes it; str values are written verbatim (to make corrupt files)."""
    folder = base / name
    folder.mkdir(parents=True)
    for fname, data in (("config.json", config), ("result.json", result)):
        if data is not None:
            (folder / fname).write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    if metrics is not None:
        text = metrics if isinstance(metrics, str) else "".join(json.dumps(r) + "\n" for r in metrics)
        (folder / "metrics.jsonl").write_text(text, encoding="utf-8")
    return folder


@pytest.fixture
def runs_folder(tmp_path: Path) -> Path:
    base = tmp_path / "runs"
    qlora = TrainingConfig(load_in_4bit=True, lora_r=8, lora_alpha=16, learning_rate=2e-4).to_dict()
    lora = TrainingConfig(lora_r=4, lora_alpha=8, learning_rate=5e-4).to_dict()
    make_run(
        base,
        "run-20240101-100000",
        config=qlora,
        result={"status": "completed", "steps": 6, "final_loss": 1.5, "estimate_gib": 3.5, "device": "cuda"},
        metrics=with_gpu(HISTORY, [1, 2, 2, 2, 2, 3]),
    )
    make_run(
        base,
        "run-20240102-100000",
        config=lora,
        result={"status": "failed", "steps": 2, "final_loss": None, "message": "Training failed: boom"},
        metrics=HISTORY[:3],
    )
    # killed mid-run: no result.json, and the last metrics line was torn by the crash
    make_run(base, "run-20240103-100000", config=lora, metrics=json.dumps(HISTORY[1]) + '\n{"step": 2, "lo')
    make_run(base, "run-20240104-100000", config="{not json", result={"status": "completed", "steps": 1})
    make_run(base, "run-20240105-100000", config=lora, result="[1, 2]")
    make_run(base, ".run-20240106-100000.partial-x", config=lora)  # a staging folder, not a run
    (base / "notes").mkdir()  # an unrelated folder
    (base / "README.txt").write_text("not a run")
    for path in base.rglob("*"):  # written long ago: nothing is training them now
        os.utime(path, (1_700_000_000, 1_700_000_000))
    return base


def test_list_runs_reads_every_run_newest_first(runs_folder: Path):
    runs = list_runs(runs_folder)
    assert [r.name for r in runs] == [f"run-2024010{d}-100000" for d in (5, 4, 3, 2, 1)]
    by_day = {int(r.name[11]): r for r in runs}

    done = by_day[1]
    assert (done.status, done.steps, done.final_loss) == ("completed", 6, 1.5)
    assert (done.method, done.lora_r, done.lora_alpha, done.learning_rate) == ("qlora", 8, 16, 2e-4)
    assert done.model_name_or_path == TrainingConfig().model_name_or_path
    assert (done.estimate_gib, done.device, done.problems) == (3.5, "cuda", ())
    assert done.started_at == time.mktime((2024, 1, 1, 10, 0, 0, 0, 0, -1))

    failed = by_day[2]
    assert (failed.status, failed.steps, failed.final_loss, failed.method) == ("failed", 2, None, "lora")

    interrupted = by_day[3]
    assert (interrupted.status, interrupted.steps, interrupted.final_loss) == ("interrupted", 1, 4.0)
    (problem,) = interrupted.problems
    assert problem.startswith("metrics.jsonl: 1 unreadable line skipped (line 2:")

    bad_config = by_day[4]
    assert bad_config.status.startswith("unreadable: config.json: Expecting property name")
    assert bad_config.method is None and bad_config.steps == 1  # what is readable is still shown

    bad_result = by_day[5]
    assert bad_result.status == "unreadable: result.json: not a JSON object (list)"
    assert bad_result.method == "lora"


def test_a_run_written_just_now_by_another_process_is_not_called_interrupted(runs_folder: Path):
    from core.runs import RUNNING_ELSEWHERE, read_run

    run = runs_folder / "run-20990101-000000"
    run.mkdir()
    (run / "metrics.jsonl").write_text('{"step": 1, "loss": 2.0}\n')  # a CLI run's first log, seconds ago
    assert read_run(run).status == RUNNING_ELSEWHERE


def test_the_live_run_is_not_interrupted_and_result_json_wins(runs_folder: Path):
    live = runs_folder / "run-20240103-100000"
    statuses = {r.name: r.status for r in list_runs(runs_folder, str(live), "training")}
    assert statuses["run-20240103-100000"] == "training"
    assert read_run(runs_folder / "run-20240101-100000", "training").status == "completed"


def test_list_runs_survives_missing_folders_and_files(tmp_path: Path):
    assert list_runs(tmp_path / "nowhere") == []
    base = tmp_path / "runs"
    make_run(base, "run-20240101-000000")  # killed before config.json was written
    (run,) = list_runs(base)
    assert (run.status, run.steps, run.method, run.problems) == (
        "interrupted",
        None,
        None,
        ("config.json missing",),
    )
    started = time.mktime((2024, 1, 1, 0, 0, 0, 0, 0, -1))
    make_run(base, "custom", result={"status": "stopped", "steps": "x", "started_at": started + 60})
    assert [(r.name, r.status, r.steps) for r in list_runs(base)] == [
        ("custom", "stopped", None),
        ("run-20240101-000000", "interrupted", None),
    ]


def test_read_metrics_tolerant(tmp_path: Path):
    assert read_metrics_tolerant(tmp_path) == ([], [])
    (tmp_path / "metrics.jsonl").write_text('{"step": 1}\n\n[1]\nnope\n{"step": 2}\n')
    rows, problems = read_metrics_tolerant(tmp_path)
    assert rows == [{"step": 1}, {"step": 2}]
    assert problems == ["metrics.jsonl: 2 unreadable lines skipped (line 3: not a JSON object)"]
