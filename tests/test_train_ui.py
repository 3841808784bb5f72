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
