"""Pure formatters: engine objects in, text / tables / plotly figures out. No gradio import, no side effects.

The training charts are in ui.charts."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from core.config import TrainingConfig
from core.events import JobSnapshot
from core.modelspec import ModelSpec
from core.vram import VramEstimate
from ui.i18n import tr, tr_text

if TYPE_CHECKING:
    import pandas as pd
    import plotly.graph_objects as go

METHOD_LABELS = {"full": "Full", "lora": "LoRA", "lora8": "LoRA 8-bit", "qlora": "QLoRA"}


def method_label(method: str) -> str:
    """A method's display name in the page's language ("LoRA 8-bit" -> "LoRA 8 位"); unknown names unchanged."""
    return tr(METHOD_LABELS.get(method, method))


def fmt_count(n: int) -> str:
    """12_345_678 -> '12.35 M'; 1_234 -> '1,234'."""
    if n >= 1e9:
        return f"{n / 1e9:.2f} B"
    if n >= 1e6:
        return f"{n / 1e6:.2f} M"
    return f"{n:,}"


def fmt_duration(seconds: float | None) -> str:
    """Seconds as '1h 02m', '3m 05s' or '12s' ('1 小时 02 分' ... on a Chinese page); '?' when unknown."""
    if seconds is None:
        return "?"
    s = int(round(seconds))
    if s >= 3600:
        return tr("{h}h {m}m").format(h=s // 3600, m=f"{s % 3600 // 60:02d}")
    if s >= 60:
        return tr("{m}m {s}s").format(m=s // 60, s=f"{s % 60:02d}")
    return tr("{s}s").format(s=s)


def model_facts_markdown(spec: ModelSpec) -> str:
    """Markdown table of architecture, parameters, dtype, context, chat template and Linear modules."""
    groups = "<br>".join(
        f"`{g.name}` {g.out_features}x{g.in_features} x{g.count}" for g in spec.linear_groups
    )
    template = tr("yes") if spec.has_chat_template else tr("no (an Alpaca-style prompt is used)")
    return (
        f"| {tr('Model')} | {spec.model_name_or_path} |\n|---|---|\n"
        f"| {tr('Architecture')} | {spec.architecture} (`{spec.model_type}`) |\n"
        f"| {tr('Parameters')} | {fmt_count(spec.num_params)} ({spec.num_params:,}) |\n"
        f"| {tr('Stored dtype')} | {spec.dtype} |\n"
        f"| {tr('Context length')} | {tr('{n} tokens').format(n=f'{spec.max_position_embeddings:,}')} |\n"
        f"| {tr('Layers / hidden / vocab')} | {spec.num_hidden_layers} / {spec.hidden_size} / {spec.vocab_size:,} |\n"
        f"| {tr('Chat template')} | {template} |\n"
        f"| {tr('Linear modules (N x D x count)')} | {groups} |\n"
    )


def lora_math_markdown(spec: ModelSpec | None, cfg: TrainingConfig, targets: tuple[str, ...]) -> str:
    """Live LoRA arithmetic: W' = W + (alpha/r) B A, r x (N + D) per matrix, share of the model."""
    head = tr(
        "**W' = W + (α/r)·B·A** with r = {r}, α = {alpha}: scale α/r = **{scale}**. B (N×r) starts at zero, "
        "so training starts from the unchanged model."
    ).format(r=cfg.lora_r, alpha=cfg.lora_alpha, scale=f"{cfg.lora_scaling:.3g}")
    if spec is None:
        return head + "\n\n" + tr("Load a model in the Model tab to see trainable parameters.")
    header = [tr("module"), "N x D", tr("per matrix r·(N+D)"), tr("matrices"), tr("trainable")]
    rows = ["| " + " | ".join(header) + " |", "|---|---|---|---|---|"]
    total = 0
    for g in spec.linear_groups:
        if g.name not in targets:
            continue
        per = cfg.lora_r * (g.in_features + g.out_features)
        total += per * g.count
        rows.append(
            f"| `{g.name}` | {g.out_features}x{g.in_features} | {per:,} "
            + tr("({share}% of N·D)").format(share=f"{100 * per / (g.in_features * g.out_features):.2f}")
            + f" | {g.count} | {per * g.count:,} |"
        )
    share = 100 * total / max(spec.num_params, 1)
    peft_share = 100 * total / max(spec.num_params + total, 1)
    return (
        head
        + "\n\n"
        + "\n".join(rows)
        + "\n\n"
        + tr(
            "**Trainable: {total}** = {share}% of the base model's {params} parameters (peft's "
            "`print_trainable_parameters` counts the adapter in the total: {with_adapter}, {peft_share}%). "
            "Adapter file ≈ {mib} MiB in fp32."
        ).format(
            total=f"{total:,}",
            share=f"{share:.3f}",
            params=f"{spec.num_params:,}",
            with_adapter=f"{spec.num_params + total:,}",
            peft_share=f"{peft_share:.4f}",
            mib=f"{total * 4 / 2**20:,.1f}",
        )
    )


def estimate_frame(estimates: dict[str, VramEstimate]) -> pd.DataFrame:
    """Components (rows) x methods (columns), GiB with two decimals, plus a total row."""
    import pandas as pd

    components = list(next(iter(estimates.values())).components_gib)
    data: dict[str, list[Any]] = {
        "GiB": [tr(c) for c in components] + [tr("TOTAL (GiB)"), tr("trainable parameters")]
    }
    for m, e in estimates.items():
        data[method_label(m)] = [round(e.components_gib[c], 2) for c in components] + [
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
    methods = [method_label(m) for m in estimates]
    for comp in next(iter(estimates.values())).components_gib:
        fig.add_bar(name=tr(comp), x=methods, y=[e.components_gib[comp] for e in estimates.values()])
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


STATUS_WORDS = {
    "queued": "QUEUED",
    "loading": "LOADING",
    "training": "TRAINING",
    "stopping": "STOPPING",
    "saving": "SAVING",
    "completed": "COMPLETED",
    "stopped": "STOPPED",
    "failed": "FAILED",
    "interrupted": "INTERRUPTED",
}


def status_word(status: str) -> str:
    """A job or run status as the page shows it: "training" -> "TRAINING" / "训练中"."""
    return tr(STATUS_WORDS.get(status, status.upper()))


def status_markdown(snap: JobSnapshot) -> str:
    """Status line with progress, ETA and latest loss, in the page's language (``ui.i18n.tr``)."""
    if snap.status == "idle":
        return tr_text(snap.message)
    losses = [h["loss"] for h in snap.history if "loss" in h]
    parts = [f"**{status_word(snap.status)}**"]
    if snap.max_steps:
        pct = 100 * snap.step / snap.max_steps
        parts.append(
            tr("step {step}/{max_steps} ({pct}%)").format(
                step=snap.step, max_steps=snap.max_steps, pct=f"{pct:.0f}"
            )
        )
        parts.append(tr("elapsed {time}").format(time=fmt_duration(snap.elapsed_s)))
        if snap.status == "training":  # loading, stopping, saving: no rate to go by
            parts.append(tr("ETA {time}").format(time=fmt_duration(snap.eta_s)))
    if losses:
        k = min(5, len(losses))
        parts.append(
            tr("loss {last} (mean of last {k}: {mean_last}, first {k}: {mean_first})").format(
                last=f"{losses[-1]:.4f}",
                k=k,
                mean_last=f"{sum(losses[-k:]) / k:.4f}",
                mean_first=f"{sum(losses[:k]) / k:.4f}",
            )
        )
    fixed = [h["eval_train_sample_loss"] for h in snap.history if "eval_train_sample_loss" in h]
    if fixed:
        parts.append(
            tr("loss on fixed rows {first} → {last}").format(first=f"{fixed[0]:.4f}", last=f"{fixed[-1]:.4f}")
        )
    seen = [h for h in snap.history if "num_input_tokens_seen" in h and h.get("elapsed_s")]
    if seen:
        from ui.charts import tokens_per_second

        rates = tokens_per_second(seen)
        if rates:  # the latest interval, as the chart shows it (not tokens since 0, wrong after a resume)
            parts.append(tr("{rate} tokens/s").format(rate=f"{rates[-1][1]:,.0f}"))
    info = snap.info
    peaks = [h["peak_reserved_gib"] for h in snap.history if "peak_reserved_gib" in h]
    if peaks and "estimate_gib" in info:
        parts.append(
            tr("GPU memory peak {peak} GiB (worst-case estimate {estimate} GiB)").format(
                peak=f"{max(peaks):.1f}", estimate=f"{info['estimate_gib']:.1f}"
            )
        )
    if "trainable_params" in info:
        parts.append(
            tr("trainable {count} on {device} ({dtype})").format(
                count=fmt_count(info["trainable_params"]), device=info.get("device"), dtype=info.get("dtype")
            )
        )
    folder = tr("Run folder: {folder}").format(folder=f"`{snap.run_dir}`")
    return " · ".join(parts) + f"\n\n{tr_text(snap.message)}\n\n{folder}"


def plan_lines(result: Any, cfg: TrainingConfig) -> list[str]:
    """Markdown lines for a core.plan.PlanResult: the chosen plan with what it changes, then the alternatives
    with their memory and relative step time."""
    lines = [tr_text(result.reason)]
    chosen = result.chosen
    if chosen is None:
        return lines
    changes = [tr_text(c) for c in chosen.changes(cfg)]
    lines.append(
        tr("Changes to your settings: ") + ("; ".join(changes) if changes else tr("none (already set)."))
    )
    if len(result.plans) > 1:
        lines.append(tr("Alternatives (memory, time per optimizer step relative to the chosen plan):"))
        lines += [
            "- "
            + tr("{plan}, {ratio}x the time").format(
                plan=tr_text(p.describe()), ratio=f"{p.relative_time:.2f}"
            )
            for p in result.plans[1:]
        ]
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
        mark = tr(FIT_MARKS.get(c.status, c.status))
        if c.status == "not planned":
            return mark
        if c.status == "fits":  # its fastest plan: checkpointing and micro-batch split
            how = c.plan.rsplit(":", 1)[0].replace("checkpointing ", "ckpt ").replace(" accumulation", "")
            return tr("fits {gib} GiB ({how})").format(
                gib=f"{c.total_gib:.1f}", how=how.replace("micro-batch ", "")
            )
        return tr("{mark} (leanest {gib} GiB)").format(mark=mark, gib=f"{c.total_gib:.1f}")

    return pd.DataFrame(
        {
            tr("model"): [r.hub_id for r in rows],
            tr("family"): [r.family for r in rows],
            tr("B params"): [round(r.params_b, 2) for r in rows],
            **{method_label(m): [cell(r.cells[m]) for r in rows] for m in ("lora", "lora8", "qlora")},
            tr("fastest plan"): [tr_text(r.best) for r in rows],
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
                name=method_label(method),
                marker={"symbol": [symbols[r.cells[method].status] for r in shown], "size": 10},
                text=[f"{r.hub_id}: {r.cells[method].status}" for r in shown],
                hovertemplate="%{text}<br>%{y:.1f} GiB<extra></extra>",
            )
        )
    fig.add_hline(y=gpu_gib, line_dash="dash", line_color="red", annotation_text=f"GPU {gpu_gib:g} GiB")
    fig.add_hline(y=gpu_gib * 0.9, line_dash="dot", line_color="orange", annotation_text=tr("90% budget"))
    import math

    values = [
        r.cells[m].total_gib for r in rows for m in ("lora", "lora8", "qlora") if r.cells[m].total_gib > 0
    ]
    low, high = min([*values, gpu_gib]), max([*values, gpu_gib])
    fig.update_layout(
        xaxis={"title": tr("parameters (billions)"), "type": "log"},
        yaxis={
            "title": tr("estimated peak GiB"),
            "type": "log",
            "range": [math.log10(low * 0.8), math.log10(high * 1.25)],  # log axes take log10 bounds
        },
        height=420,
        margin={"t": 30},
        legend={"orientation": "h"},
    )
    return fig
