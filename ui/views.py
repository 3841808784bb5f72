"""Pure formatters: engine objects in, text / tables / plotly figures out. No gradio import, no side effects.

The training charts are in ui.charts."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from core.config import TrainingConfig
from core.events import JobSnapshot
from core.modelspec import ModelSpec
from core.runs import RunSummary
from core.vram import VramEstimate

if TYPE_CHECKING:
    import pandas as pd
    import plotly.graph_objects as go

METHOD_LABELS = {"full": "Full", "lora": "LoRA", "lora8": "LoRA 8-bit", "qlora": "QLoRA"}


def _when(epoch_s: float) -> str:
    """Local date and time of an epoch timestamp, or "?" for one no clock can show (corrupt result.json)."""
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch_s))
    except (OverflowError, ValueError, OSError):
        return "?"


def fmt_count(n: int) -> str:
    """12_345_678 -> '12.35 M'; 1_234 -> '1,234'."""
    if n >= 1e9:
        return f"{n / 1e9:.2f} B"
    if n >= 1e6:
        return f"{n / 1e6:.2f} M"
    return f"{n:,}"


def fmt_duration(seconds: float | None) -> str:
    """Seconds as '1h 02m', '3m 05s' or '12s'; '?' when unknown."""
    if seconds is None:
        return "?"
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s}s"


def model_facts_markdown(spec: ModelSpec) -> str:
    """Markdown table of architecture, parameters, dtype, context, chat template and Linear modules."""
    groups = "<br>".join(
        f"`{g.name}` {g.out_features}x{g.in_features} x{g.count}" for g in spec.linear_groups
    )
    return (
        "| | |\n|---|---|\n"
        f"| Architecture | {spec.architecture} (`{spec.model_type}`) |\n"
        f"| Parameters | {fmt_count(spec.num_params)} ({spec.num_params:,}) |\n"
        f"| Stored dtype | {spec.dtype} |\n"
        f"| Context length | {spec.max_position_embeddings:,} tokens |\n"
        f"| Layers / hidden / vocab | {spec.num_hidden_layers} / {spec.hidden_size} / {spec.vocab_size:,} |\n"
        f"| Chat template | {'yes' if spec.has_chat_template else 'no (an Alpaca-style prompt is used)'} |\n"
        f"| Linear modules (N x D x count) | {groups} |\n"
    )


def lora_math_markdown(spec: ModelSpec | None, cfg: TrainingConfig, targets: tuple[str, ...]) -> str:
    """Live LoRA arithmetic: W' = W + (alpha/r) B A, r x (N + D) per matrix, share of the model."""
    head = (
        f"**W' = W + (α/r)·B·A** with r = {cfg.lora_r}, α = {cfg.lora_alpha}: scale α/r = "
        f"**{cfg.lora_scaling:.3g}**. B (N×r) starts at zero, so training starts from the unchanged model."
    )
    if spec is None:
        return head + "\n\nLoad a model in the Model tab to see trainable parameters."
    rows = ["| module | N x D | per matrix r·(N+D) | matrices | trainable |", "|---|---|---|---|---|"]
    total = 0
    for g in spec.linear_groups:
        if g.name not in targets:
            continue
        per = cfg.lora_r * (g.in_features + g.out_features)
        total += per * g.count
        rows.append(
            f"| `{g.name}` | {g.out_features}x{g.in_features} | {per:,} ({100 * per / (g.in_features * g.out_features):.2f}% of N·D) "
            f"| {g.count} | {per * g.count:,} |"
        )
    share = 100 * total / max(spec.num_params, 1)
    peft_share = 100 * total / max(spec.num_params + total, 1)
    return (
        head
        + "\n\n"
        + "\n".join(rows)
        + f"\n\n**Trainable: {total:,}** = {share:.3f}% of the base model's {spec.num_params:,} parameters "
        f"(peft's `print_trainable_parameters` counts the adapter in the total: {spec.num_params + total:,}, "
        f"{peft_share:.4f}%). Adapter file ≈ {total * 4 / 2**20:,.1f} MiB in fp32."
    )


def estimate_frame(estimates: dict[str, VramEstimate]) -> pd.DataFrame:
    """Components (rows) x methods (columns), GiB with two decimals, plus a total row."""
    import pandas as pd

    components = list(next(iter(estimates.values())).components_gib)
    data: dict[str, list[Any]] = {"GiB": components + ["TOTAL (GiB)", "trainable parameters"]}
    for m, e in estimates.items():
        data[METHOD_LABELS[m]] = [round(e.components_gib[c], 2) for c in components] + [
            round(e.total_gib, 2),
            fmt_count(e.trainable_params),
        ]
    return pd.DataFrame(data)


def estimate_text(spec: ModelSpec, cfg: TrainingConfig, estimates: dict[str, VramEstimate]) -> str:
    """Plain-text estimate table for the CLI."""
    frame = estimate_frame(estimates)
    head = (
        f"{spec.model_name_or_path}: {fmt_count(spec.num_params)} params, max_length {cfg.max_length}, "
        f"batch {cfg.per_device_train_batch_size}, r {cfg.lora_r}, gradient checkpointing "
        f"{'auto' if cfg.gradient_checkpointing == 'auto' else 'on' if cfg.checkpointing_on else 'off'}"
    )
    return head + "\n" + frame.to_string(index=False)


def estimate_figure(estimates: dict[str, VramEstimate], gpu_gib: float | None) -> go.Figure:
    """Stacked bars of memory by component per method, with the GPU size as a line."""
    import plotly.graph_objects as go

    fig = go.Figure()
    methods = [METHOD_LABELS[m] for m in estimates]
    for comp in next(iter(estimates.values())).components_gib:
        fig.add_bar(name=comp, x=methods, y=[e.components_gib[comp] for e in estimates.values()])
    if gpu_gib:
        fig.add_hline(y=gpu_gib, line_dash="dash", line_color="red", annotation_text=f"GPU {gpu_gib:g} GiB")
    fig.update_layout(
        barmode="stack",
        yaxis_title="GiB",
        height=380,
        margin={"l": 40, "r": 20, "t": 30, "b": 40},
        legend={"orientation": "h", "y": -0.15},
    )
    return fig


def token_length_figure(lengths: list[int], max_length: int) -> go.Figure:
    """Histogram of rendered row lengths in tokens, with the max_length cut marked (rows past it are truncated)."""
    import plotly.graph_objects as go

    fig = go.Figure()
    fig.add_histogram(x=lengths, nbinsx=40, name="rows")
    over = sum(1 for n in lengths if n > max_length)
    fig.add_vline(
        x=max_length,
        line_dash="dash",
        line_color="red",
        annotation_text=f"max_length {max_length} ({over} rows longer)",
    )
    fig.update_layout(
        xaxis_title="tokens per row (chat template applied)",
        yaxis_title="rows",
        height=300,
        margin={"l": 40, "r": 20, "t": 30, "b": 40},
        showlegend=False,
    )
    return fig


def status_markdown(snap: JobSnapshot) -> str:
    """Status line with progress, ETA and latest loss."""
    if snap.status == "idle":
        return snap.message
    losses = [h["loss"] for h in snap.history if "loss" in h]
    parts = [f"**{snap.status.upper()}**"]
    if snap.max_steps:
        pct = 100 * snap.step / snap.max_steps
        parts.append(f"step {snap.step}/{snap.max_steps} ({pct:.0f}%)")
        parts.append(f"elapsed {fmt_duration(snap.elapsed_s)}")
        if snap.is_active:
            parts.append(f"ETA {fmt_duration(snap.eta_s)}")
    if losses:
        k = min(5, len(losses))
        parts.append(
            f"loss {losses[-1]:.4f} (mean of last {k}: {sum(losses[-k:]) / k:.4f}, first {k}: {sum(losses[:k]) / k:.4f})"
        )
    fixed = [h["eval_train_sample_loss"] for h in snap.history if "eval_train_sample_loss" in h]
    if fixed:
        parts.append(f"loss on fixed rows {fixed[0]:.4f} → {fixed[-1]:.4f}")
    seen = [h for h in snap.history if "num_input_tokens_seen" in h and h.get("elapsed_s")]
    if seen:
        from ui.charts import tokens_per_second

        rates = tokens_per_second(seen)
        if rates:  # the latest interval, as the chart shows it (not tokens since 0, wrong after a resume)
            parts.append(f"{rates[-1][1]:,.0f} tokens/s")
    info = snap.info
    peaks = [h["peak_reserved_gib"] for h in snap.history if "peak_reserved_gib" in h]
    if peaks and "estimate_gib" in info:
        parts.append(
            f"GPU memory peak {max(peaks):.1f} GiB (worst-case estimate {info['estimate_gib']:.1f} GiB)"
        )
    if "trainable_params" in info:
        parts.append(
            f"trainable {fmt_count(info['trainable_params'])} on {info.get('device')} ({info.get('dtype')})"
        )
    return " · ".join(parts) + f"\n\n{snap.message}\n\nRun folder: `{snap.run_dir}`"


RUN_COLUMNS = [
    "run",
    "started",
    "status",
    "steps",
    "final loss",
    "method",
    "model",
    "r / alpha",
    "learning rate",
    "notes",
    "folder",
]


def runs_frame(runs: list[RunSummary]) -> pd.DataFrame:
    """The Runs table: one row per run (newest first as given), columns RUN_COLUMNS; "" where a value is unknown.

    started is local time (YYYY-mm-dd HH:MM:SS); final loss has 4 decimals; notes lists what could not be read
    (beyond the file an "unreadable: ..." status already names).
    """
    import pandas as pd

    def cell(value: Any, fmt: str = "{}") -> str:
        return "" if value is None else fmt.format(value)

    rows = [
        [
            r.name,
            _when(r.started_at),
            r.status,
            cell(r.steps),
            cell(r.final_loss, "{:.4f}"),
            METHOD_LABELS.get(r.method, r.method) if r.method else "",
            cell(r.model_name_or_path),
            f"{cell(r.lora_r, '{}')} / {cell(r.lora_alpha)}" if r.lora_r or r.lora_alpha else "",
            cell(r.learning_rate, "{:g}"),
            "; ".join(p for p in r.problems if p not in r.status),  # the status already names one
            r.path,
        ]
        for r in runs
    ]
    return pd.DataFrame(rows, columns=RUN_COLUMNS)


def run_markdown(run: RunSummary) -> str:
    """A few lines about one run under the Runs table: folder, status, steps, final loss and any problems."""
    loss = f", final loss {run.final_loss:.4f}" if run.final_loss is not None else ""
    steps = f" after {run.steps} steps" if run.steps is not None else ""
    text = f"**{run.name}**: {run.status}{steps}{loss}.\n\nFolder: `{run.path}`"
    if run.problems:
        text += "\n\nCould not read: " + "; ".join(run.problems)
    return text


def plan_lines(result: Any, cfg: TrainingConfig) -> list[str]:
    """Markdown lines for a core.plan.PlanResult: the chosen plan with what it changes, then the alternatives
    with their memory and relative step time."""
    lines = [result.reason]
    chosen = result.chosen
    if chosen is None:
        return lines
    changes = chosen.changes(cfg)
    lines.append("Changes to your settings: " + ("; ".join(changes) if changes else "none (already set)."))
    if len(result.plans) > 1:
        lines.append("Alternatives (memory, time per optimizer step relative to the chosen plan):")
        lines += [f"- {p.describe()}, {p.relative_time:.2f}x the time" for p in result.plans[1:]]
    return lines


def plan_text(spec: ModelSpec, cfg: TrainingConfig, result: Any, report: dict[str, Any]) -> str:
    """Plain text of ``launch.py estimate`` / ``plan``: the estimate table of the settings as given, each method's
    fit, the plan, and the per-GPU line for several GPUs."""
    from core.plan import is_moe
    from core.vram import estimate_all

    if is_moe(spec):
        return f"{spec.model_name_or_path}: not estimated. {result.reason}"
    estimates = estimate_all(spec, cfg)
    out = [estimate_text(spec, cfg, estimates), ""]
    out.append(
        "Your settings: "
        + ", ".join(f"{METHOD_LABELS[m]} {e['status']}" for m, e in report["estimates"].items())
    )
    from core.plan import METHOD_LABELS as PLAN_LABELS

    out.append(f"Plan for {result.gpu_gib:g} GiB: {PLAN_LABELS.get(result.method, 'nothing fits')}")
    out += plan_lines(result, cfg)
    out.append(f"Merged export afterwards: about {report['merged_export_ram_gib']:.1f} GiB of RAM.")
    per_gpu = report.get("per_gpu")
    if per_gpu:
        out.append(
            f"{per_gpu['method'].upper()} over {per_gpu['num_processes']} GPUs: {per_gpu['total_gib']:.1f} GiB "
            f"per GPU. {per_gpu['reason']}"
        )
    return "\n".join(out)


FIT_MARKS = {"fits": "fits", "tight": "tight", "does not fit": "no", "not planned": "MoE: not planned"}


def fits_frame(rows: list[Any]) -> pd.DataFrame:
    """core.fits.FitRow list as a table: model, family, size, one column per method (status and GiB), and the
    fastest plan over all methods."""
    import pandas as pd

    def cell(c: Any) -> str:
        mark = FIT_MARKS.get(c.status, c.status)
        if c.status == "not planned":
            return mark
        if c.status == "fits":  # its fastest plan: checkpointing and micro-batch split
            how = c.plan.rsplit(":", 1)[0].replace("checkpointing ", "ckpt ").replace(" accumulation", "")
            return f"fits {c.total_gib:.1f} GiB ({how.replace('micro-batch ', '')})"
        return f"{mark} (leanest {c.total_gib:.1f} GiB)"

    return pd.DataFrame(
        {
            "model": [r.hub_id for r in rows],
            "family": [r.family for r in rows],
            "B params": [round(r.params_b, 2) for r in rows],
            **{METHOD_LABELS[m]: [cell(r.cells[m]) for r in rows] for m in ("lora", "lora8", "qlora")},
            "fastest plan": [r.best for r in rows],
        }
    )


def fits_figure(rows: list[Any], gpu_gib: float) -> go.Figure:
    """Estimated memory of each method's plan (or leanest try) against model size, with the GPU and its 90%
    budget as lines: what is under the budget line fits."""
    import plotly.graph_objects as go

    fig = go.Figure()
    symbols = {"fits": "circle", "tight": "diamond", "does not fit": "x"}
    for method in ("lora", "lora8", "qlora"):
        shown = [r for r in rows if r.cells[method].status in symbols]
        fig.add_trace(
            go.Scatter(
                x=[r.params_b for r in shown],
                y=[r.cells[method].total_gib for r in shown],
                mode="markers",
                name=METHOD_LABELS[method],
                marker={"symbol": [symbols[r.cells[method].status] for r in shown], "size": 10},
                text=[f"{r.hub_id}: {r.cells[method].status}" for r in shown],
                hovertemplate="%{text}<br>%{y:.1f} GiB<extra></extra>",
            )
        )
    fig.add_hline(y=gpu_gib, line_dash="dash", line_color="red", annotation_text=f"GPU {gpu_gib:g} GiB")
    fig.add_hline(y=gpu_gib * 0.9, line_dash="dot", line_color="orange", annotation_text="90% budget")
    import math

    values = [
        r.cells[m].total_gib for r in rows for m in ("lora", "lora8", "qlora") if r.cells[m].total_gib > 0
    ]
    low, high = min([*values, gpu_gib]), max([*values, gpu_gib])
    fig.update_layout(
        xaxis={"title": "parameters (billions)", "type": "log"},
        yaxis={
            "title": "estimated peak GiB",
            "type": "log",
            "range": [math.log10(low * 0.8), math.log10(high * 1.25)],  # log axes take log10 bounds
        },
        height=420,
        margin={"t": 30},
        legend={"orientation": "h"},
    )
    return fig
