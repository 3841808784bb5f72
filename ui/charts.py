"""Training charts: a run's metric history (JobSnapshot.history or metrics.jsonl rows) in, one plotly figure out.

Pure functions, no gradio import; plotly is imported inside the figure function so ``ui.views`` stays light.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ui.i18n import tr

if TYPE_CHECKING:
    import plotly.graph_objects as go

History = Sequence[Mapping[str, Any]]

SMOOTHING = 5  # logged points in the trailing moving average of the per-batch loss
EVAL_SERIES = {
    "eval_train_sample_loss": "loss on fixed training rows",
    "eval_validation_loss": "validation loss",
}
EMPTY_LOSS_TITLE = "The loss appears here once training logs its first step"
# (row, col) of each panel in the 3 x 2 grid; the loss spans the whole first row.
PANELS = {"loss": (1, 1), "lr": (2, 1), "grad": (2, 2), "tokens": (3, 1), "memory": (3, 2)}
PANEL_TITLES = ("Loss", "Learning rate", "Gradient norm", "Tokens per second", "GPU memory (GiB)")


def moving_average(values: Sequence[float], window: int = SMOOTHING) -> list[float]:
    """Trailing simple moving average: point i is the mean of values[max(0, i - window + 1) : i + 1].

    The first ``window - 1`` points average the points available so far (no padding, no lag-free centring), so the
    curve starts at the first value and never uses a future point. ``window`` counts logged points, not optimizer
    steps (they differ when ``logging_steps`` > 1).

    Raises:
        ValueError: ``window`` < 1.
    """
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    out: list[float] = []
    total = 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def tokens_per_second(history: History) -> list[tuple[float, float]]:
    """Training throughput per logging interval: (step, tokens/s) from consecutive ``num_input_tokens_seen`` and
    ``elapsed_s`` values (non-padding input tokens; seconds since training began).

    The rate at a log is (tokens now - tokens at the previous log) / (elapsed now - elapsed at the previous log),
    starting at the first log (a resumed run's token count carries over from its checkpoint while its clock
    restarts, so a rate from zero would be wrong). A log whose token count did not grow (an evaluation) emits no point but moves the
    reference time, so evaluation time is not counted as training time. Rows missing either key are ignored;
    intervals with no time passed are skipped.
    """
    points: list[tuple[float, float]] = []
    prev_tokens, prev_s = -1.0, -1.0
    for row in history:
        if "num_input_tokens_seen" not in row or "elapsed_s" not in row:
            continue
        tokens, now_s, step = (
            _finite(row["num_input_tokens_seen"]),
            _finite(row["elapsed_s"]),
            _finite(row.get("step", 0)),
        )
        if tokens is None or now_s is None or step is None:
            continue
        if prev_s >= 0 and tokens > prev_tokens and now_s > prev_s:
            points.append((step, (tokens - prev_tokens) / (now_s - prev_s)))
        prev_tokens, prev_s = tokens, now_s
    return points


def _finite(value: object) -> float | None:
    """``value`` as a finite float, or None (null, text, NaN or inf in an edited metrics.jsonl)."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def series(history: History, key: str) -> tuple[list[float], list[float]]:
    """(steps, values) of every row whose ``key`` (and step) is a finite number, in history order."""
    rows = [(_finite(h.get("step", 0)), _finite(h[key])) for h in history if key in h]
    kept = [(s, v) for s, v in rows if s is not None and v is not None]
    return [s for s, _ in kept], [v for _, v in kept]


def _note(fig: go.Figure, panel: str, text: str) -> None:
    """Grey text in the middle of an empty panel, so a blank chart says why it is blank."""
    row, col = PANELS[panel]
    sub = fig.get_subplot(row, col)
    # the middle of this panel in paper coordinates (axis-domain references are not honoured by every plotly.js)
    (x0, x1), (y0, y1) = sub.xaxis.domain, sub.yaxis.domain
    fig.add_annotation(
        text=text,
        x=(x0 + x1) / 2,
        y=(y0 + y1) / 2,
        xref="paper",
        yref="paper",
        showarrow=False,
        font={"color": "grey"},
    )


def training_figure(
    history: History, estimate_gib: float | None = None, device: str | None = None
) -> go.Figure:
    """Five panels of a training run: loss, learning rate, gradient norm, tokens/s and GPU memory.

    Args:
        history: one dict per Trainer log, oldest first, with "step" and any of loss, learning_rate, grad_norm,
            num_input_tokens_seen, elapsed_s (seconds), peak_reserved_gib (GiB, GPU runs only),
            eval_validation_loss, eval_train_sample_loss (JobSnapshot.history or metrics.jsonl rows).
        estimate_gib: the VRAM estimate for the run's settings (GiB), drawn as a dashed horizontal line.
        device: "cuda" or "cpu" when known; only used to explain an empty memory panel.

    Returns:
        A plotly figure. The loss panel shows the per-batch loss, its trailing moving average over the last
        SMOOTHING logged points (see moving_average), and the evaluation losses (validation, fixed training rows).
        Panels without data carry a sentence saying so.
    """
    from plotly.subplots import make_subplots

    fig = make_subplots(
        rows=3,
        cols=2,
        specs=[[{"colspan": 2}, None], [{}, {}], [{}, {}]],
        subplot_titles=[tr(t) for t in PANEL_TITLES],
        vertical_spacing=0.1,
        horizontal_spacing=0.1,
        row_heights=[0.44, 0.28, 0.28],
    )
    steps, losses = series(history, "loss")
    if steps:
        fig.add_scatter(
            x=steps,
            y=losses,
            mode="lines+markers",
            name=tr("train loss (each batch)"),
            opacity=0.45,
            row=1,
            col=1,
        )
        fig.add_scatter(
            x=steps,
            y=moving_average(losses),
            mode="lines",
            name=tr("moving average (last {n} logs)").format(n=SMOOTHING),
            line={"width": 3},
            row=1,
            col=1,
        )
    for key, label in EVAL_SERIES.items():
        eval_steps, eval_losses = series(history, key)
        if eval_steps:
            fig.add_scatter(
                x=eval_steps,
                y=eval_losses,
                mode="lines+markers",
                name=tr(label),
                line={"width": 3, "dash": "dot"},
                row=1,
                col=1,
            )
    for panel, key, name in (
        ("lr", "learning_rate", "learning rate"),
        ("grad", "grad_norm", "gradient norm"),
    ):
        xs, ys = series(history, key)
        row, col = PANELS[panel]
        if xs:
            fig.add_scatter(
                x=xs, y=ys, mode="lines+markers", name=tr(name), showlegend=False, row=row, col=col
            )
        else:
            _note(fig, panel, tr(f"no {name} logged yet"))
    rates = tokens_per_second(history)
    if rates:
        fig.add_scatter(
            x=[s for s, _ in rates],
            y=[r for _, r in rates],
            mode="lines+markers",
            name="tokens/s",
            showlegend=False,
            row=3,
            col=1,
        )
    else:
        _note(fig, "tokens", tr("no token counts logged yet"))
    _memory_panel(fig, history, estimate_gib, device)

    fig.update_xaxes(rangemode="tozero")
    fig.update_yaxes(rangemode="tozero")
    fig.update_xaxes(title_text=tr("optimizer step"), row=3)
    fig.update_yaxes(exponentformat="e", row=2, col=1)
    fig.update_layout(
        height=820,
        margin={"l": 50, "r": 20, "t": 60, "b": 40},
        legend={"orientation": "h", "y": 1.06, "x": 0},
        title=None if steps or any(series(history, k)[0] for k in EVAL_SERIES) else tr(EMPTY_LOSS_TITLE),
        uirevision="training",  # keep the user's zoom and hidden series across the 1 s refreshes
    )
    return fig


def _memory_panel(fig: go.Figure, history: History, estimate_gib: float | None, device: str | None) -> None:
    """Measured peak reserved GPU memory per log beside the estimate line, or a sentence when nothing was measured."""
    xs, peaks = series(history, "peak_reserved_gib")
    if xs:
        fig.add_scatter(
            x=xs,
            y=peaks,
            mode="lines+markers",
            name=tr("measured peak reserved"),
            showlegend=False,
            row=3,
            col=2,
        )
    else:
        why = (
            "CPU run: no GPU memory measured"
            if device == "cpu"
            else "no GPU memory measured yet"
            if device == "cuda"
            else "no GPU memory measured (CPU run, or no step logged yet)"
        )
        _note(fig, "memory", tr(why))
    if estimate_gib is not None:
        fig.add_hline(
            y=estimate_gib,
            line_dash="dash",
            line_color="red",
            annotation_text=tr("estimate {gib} GiB").format(gib=f"{estimate_gib:.1f}"),
            annotation_position="bottom right",
            row=3,
            col=2,
            exclude_empty_subplots=False,  # CPU runs: the estimate is drawn beside the "nothing measured" note
        )
