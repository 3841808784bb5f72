"""Demo limits cap a run's work, not only single fields (issue 15): rows trained, rows evaluated and checkpoints
are counted the way core.train runs them (checked against a real run), a run over any cap is refused with every
problem named at once before a run folder exists, and a queued run's wait comes from the work of the runs ahead."""

from __future__ import annotations

import json

import pytest

from core.config import TrainingConfig
from core.errors import ConfigError
from core.job import TrainingJob
from core.slot import TrainingSlot
from core.space import (
    EVAL_ROW_COST,
    DemoLimits,
    done_row_equivalents,
    limit_problems,
    limits_markdown,
    remaining_row_equivalents,
    run_work,
)
from tests.conftest import ASSETS, ROOT

SAMPLE = str(ASSETS / "humaneval_alpaca.jsonl")  # 164 rows
# The issue's bypass: every single field inside the old caps, 64x the work.
BYPASS = dict(
    max_steps=30,
    per_device_train_batch_size=4,
    gradient_accumulation_steps=64,
    monitor_rows=64,
    validation_split=0.3,
    save_steps=1,
)


def test_the_work_of_a_config_is_counted_from_every_field():
    work = run_work(TrainingConfig(**BYPASS), dataset_rows=2000)
    assert work is not None
    assert work.train_rows == 30 * 4 * 64 == 7680
    assert work.evaluations == 6  # one before the first step, then every ceil(30 / 5) = 6 steps
    assert work.eval_rows_each == 64 + 600 and work.eval_rows == 6 * 664
    assert work.checkpoints == 30
    default = run_work(TrainingConfig(max_steps=30))
    assert default is not None and (default.train_rows, default.eval_rows, default.checkpoints) == (60, 48, 1)
    assert default.row_equivalents == 60 + 48 * EVAL_ROW_COST
    # by epochs the work needs the dataset's size: 164 rows, 16 held out, 148 / (2 x 1) = 74 steps per epoch
    by_epochs = TrainingConfig(num_train_epochs=2, validation_split=0.1)
    assert run_work(by_epochs) is None
    work = run_work(by_epochs, dataset_rows=164)
    assert work is not None and work.steps == 148 and work.eval_rows_each == 8 + 16
    # work left and done add up at every step, and reach 0 / all at the end
    cfg = TrainingConfig(max_steps=7, monitor_rows=3)
    total = run_work(cfg)
    assert total is not None and total.evaluations == 5  # at steps 0, 2, 4, 6 and the last, 7
    for step in range(8):
        left, done = remaining_row_equivalents(cfg, step), done_row_equivalents(cfg, step)
        assert left is not None and done is not None and left + done == pytest.approx(total.row_equivalents)
    assert (
        remaining_row_equivalents(cfg, 7) == 0 and remaining_row_equivalents(cfg, 6) == 2 + 3 * EVAL_ROW_COST
    )
    # too few rows for a split: core.data.split_train_eval turns evaluation off, so does the count
    tiny = run_work(TrainingConfig(max_steps=4, monitor_rows=0, validation_split=0.5), dataset_rows=12)
    assert tiny is not None and tiny.evaluations == 0


def test_the_issues_bypass_is_refused_with_every_field_named_before_a_folder_exists(monkeypatch, tmp_path):
    monkeypatch.setenv("SPACE_ID", "someone/lora-studio")
    cfg = TrainingConfig(dataset_name=SAMPLE, output_dir=str(tmp_path), **BYPASS)
    with pytest.raises(ConfigError) as caught:
        TrainingJob(TrainingSlot()).start(cfg)
    problems = caught.value.problems
    assert list(tmp_path.iterdir()) == []
    assert len(problems) == 3, problems
    rows, evals, saves = problems
    assert rows.startswith(
        "max_steps x per_device_train_batch_size x gradient_accumulation_steps: 30 x 4 x 64"
    )
    assert "7,680 rows trained" in rows and "up to 120 per run" in rows
    assert "gradient_accumulation_steps (to 1 here)" in rows
    assert evals.startswith(
        "monitor_rows + validation_split: 6 evaluations x (64 fixed rows + 600 validation"
    )
    assert "3,984 rows evaluated" in evals and "up to 360 per run" in evals
    assert "monitor_rows 8 and validation_split 52" in evals
    assert saves.startswith("save_steps: 1 writes 30 checkpoints") and "at least 10" in saves
    # each suggestion, applied, is accepted
    fixed = TrainingConfig(
        **{
            **BYPASS,
            "gradient_accumulation_steps": 1,
            "monitor_rows": 8,
            "validation_split": 52,
            "save_steps": 10,
        }
    )
    assert limit_problems(fixed, DemoLimits()) == []


def test_caps_hold_at_their_edges_and_know_the_dataset_when_given():
    limits = DemoLimits()
    at_cap = TrainingConfig(max_steps=30, per_device_train_batch_size=4, save_steps=10)
    assert limit_problems(at_cap, limits) == []
    over = TrainingConfig(max_steps=30, per_device_train_batch_size=2, gradient_accumulation_steps=3)
    assert [p.split(":")[0] for p in limit_problems(over, limits)] == [
        "max_steps x per_device_train_batch_size x gradient_accumulation_steps"
    ]
    assert "save_steps" in limit_problems(TrainingConfig(max_steps=30, save_steps=9), limits)[0]
    # a fraction: 10% of the sample's 164 rows is 16 rows, within the cap; unknown rows count as 10% of 2,000
    tenth = TrainingConfig(max_steps=30, validation_split=0.1)
    assert limit_problems(tenth, limits, dataset_rows=164) == []
    unknown = limit_problems(tenth, limits)
    assert len(unknown) == 1 and "200 rows of up to 2,000" in unknown[0]
    assert limit_problems(TrainingConfig(**BYPASS), None) == []  # a local install has no limits


def test_the_caps_are_stated_in_the_banner_and_the_readme():
    limits = DemoLimits()
    banner = limits_markdown(limits)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for text in (banner, readme):
        assert f"{limits.max_train_rows:,} rows trained" in text
        assert f"{limits.max_eval_rows:,} rows evaluated" in text
        assert f"{limits.max_checkpoints} checkpoints" in text


@pytest.mark.slow
def test_evaluations_and_checkpoints_counted_match_a_real_run(tiny_llama, tmp_path):
    cfg = TrainingConfig(
        model_name_or_path=str(tiny_llama),
        dataset_name=SAMPLE,
        max_length=128,
        max_steps=7,
        per_device_train_batch_size=1,
        gradient_accumulation_steps=2,
        monitor_rows=2,
        validation_split=4,
        save_steps=3,
        num_processes=1,
        output_dir=str(tmp_path),
    )
    work = run_work(cfg, dataset_rows=164)
    assert work is not None and (work.evaluations, work.checkpoints) == (5, 3)  # at steps 0, 2, 4, 6 and 7
    job = TrainingJob(TrainingSlot())
    run_dir = job.start(cfg)
    assert job.wait(600).status == "completed", job.snapshot().message
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert sum("eval_train_sample_loss" in r for r in rows) == work.evaluations
    assert sum("eval_validation_loss" in r for r in rows) == work.evaluations
    saved = sorted(p.name for p in (run_dir / "checkpoints").iterdir() if p.name.startswith("checkpoint-"))
    assert saved == ["checkpoint-3", "checkpoint-6", "checkpoint-7"] and len(saved) == work.checkpoints


class _Run:
    """A waiter sized by a real config's work, at a given step (what core/job.py's TrainingJob reports)."""

    def __init__(self, cfg: TrainingConfig, step: int = 0, eta_s: float | None = None) -> None:
        self.cfg, self.step, self.eta_s = cfg, step, eta_s

    def remaining_estimate_s(self) -> float | None:
        return self.eta_s

    def remaining_work_rows(self) -> float | None:
        return remaining_row_equivalents(self.cfg.to_dict(), self.step)


def test_a_queued_runs_wait_comes_from_the_work_ahead():
    slot = TrainingSlot()
    normal = TrainingConfig(max_steps=30, monitor_rows=0)  # 60 rows
    heavy = TrainingConfig(max_steps=30, gradient_accumulation_steps=64, monitor_rows=0)  # 3,840 rows
    # the old estimate trusted a per-step figure: both runs "30 steps", the heavy one said "under a minute"
    running, ahead, mine = _Run(heavy, step=10, eta_s=40.0), _Run(normal, eta_s=None), _Run(normal)
    for waiter in (running, ahead, mine):
        slot.join(waiter)
    assert slot.wait_estimate_s(mine) is None  # nothing measured yet and the queued run cannot tell
    slot.record_speed(rows=120, seconds=360)  # 3 s per row, as measured on a 2-core CPU
    assert slot.seconds_per_row == 3.0
    wait = slot.wait_estimate_s(mine)
    assert wait == pytest.approx((20 * 2 * 64 + 30 * 2) * 3.0)  # 20 heavy steps left, then 30 normal ones
    assert wait > 3600  # hours, not "under a minute"
    running.step = 30
    assert slot.wait_estimate_s(mine) == pytest.approx(60 * 3.0)
    # a waiter without remaining_work_rows (the Waiter protocol's required part only) falls back to its own ETA
    slot.leave(running)
    slot.leave(ahead)

    class _EtaOnly:
        def remaining_estimate_s(self) -> float | None:
            return 42.0

    other = TrainingSlot()
    first, second = _EtaOnly(), _Run(normal)
    other.join(first)
    other.join(second)
    other.record_speed(rows=1, seconds=1)
    assert other.wait_estimate_s(second) == 42.0
    other.record_speed(rows=0, seconds=5)  # nonsense is ignored
    assert other.seconds_per_row == 1.0


def test_the_demo_banner_is_shown_and_translated(monkeypatch):
    from gradio.i18n import I18nData

    from ui.app import build_app

    monkeypatch.setenv("SPACE_ID", "someone/lora-studio")
    demo = build_app()
    zh = demo.i18n_table.translations["zh-CN"]
    banners = [
        b.value
        for b in demo.blocks.values()
        if isinstance(getattr(b, "value", None), I18nData)
        and "rows evaluated" in demo.i18n_table.translations["en"][b.value.key]
    ]
    assert len(banners) == 1 and "360" in zh[banners[0].key] and "120" in zh[banners[0].key]


def test_with_the_datasets_size_the_suggested_validation_split_is_a_share_the_slider_accepts():
    """The UI's slider takes 0-0.3 of the rows; a suggested count (52) was refused by it (breaker D8)."""
    import re

    cfg = TrainingConfig(
        dataset_name=str(ASSETS / "humaneval_alpaca.jsonl"),
        max_steps=30,
        monitor_rows=16,
        validation_split=0.3,
    )
    (problem,) = limit_problems(cfg, DemoLimits(), dataset_rows=164)
    share = float(re.search(r"e\.g\. validation_split ([\d.]+) \(", problem).group(1))
    assert 0 < share <= 0.3
    assert limit_problems(cfg.replace(validation_split=share), DemoLimits(), dataset_rows=164) == []
