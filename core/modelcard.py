"""Model card (README.md) and loss-curve image for an export, from the run folder's real files.

Everything printed comes from the run: config.json (hyperparameters), result.json (status, steps, final loss,
trainable parameters), metrics.jsonl (the loss curve and the last evaluation losses) and the export's verification.
The loss curve is written as SVG by hand so that no plotting backend (kaleido, matplotlib) is needed.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

# Hyperparameters shown in the card's table, in this order (TrainingConfig field names).
CARD_FIELDS = (
    "lora_r",
    "lora_alpha",
    "lora_dropout",
    "lora_target_modules",
    "load_in_4bit",
    "bnb_4bit_quant_type",
    "bnb_4bit_use_double_quant",
    "bnb_4bit_compute_dtype",
    "load_in_8bit",
    "dtype",
    "learning_rate",
    "lr_scheduler_type",
    "warmup_steps",
    "optim",
    "num_train_epochs",
    "max_steps",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "max_length",
    "packing",
    "gradient_checkpointing",
    "completion_only_loss",
    "validation_split",
    "seed",
)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _metrics(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "metrics.jsonl"
    rows = []
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict):
                rows.append(row)
    return rows


def _count(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else "?"


def dataset_license(dataset_name: str) -> str:
    """The dataset's licence as far as the app can know it: the bundled sample's MIT licence, a hub dataset's page,
    or a reminder to check the terms of a user's own file."""
    name = dataset_name.strip()
    if "humaneval" in Path(name).name.lower() and Path(name).parent.name == "assets":
        return "MIT (OpenAI HumanEval, bundled sample; see assets/HUMANEVAL_LICENSE)"
    if name and not Path(name).expanduser().exists() and "/" in name:
        return f"see https://huggingface.co/datasets/{name}"
    return "a local file: check its terms before sharing this model"


def loss_curve_svg(metrics: list[dict[str, Any]], width: int = 640, height: int = 320) -> str:
    """An SVG line chart of training loss per step (and evaluation losses as dots). Empty chart text if none."""
    train = [(float(r["step"]), float(r["loss"])) for r in metrics if "loss" in r and "step" in r]
    evals = [
        (float(r["step"]), float(r[k]))
        for r in metrics
        for k in ("eval_validation_loss", "eval_train_sample_loss")
        if k in r and "step" in r
    ]
    points = train + evals
    pad = 48
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif">'
    )
    if not points:
        return head + f'<text x="{pad}" y="{height // 2}">no loss was logged</text></svg>'
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y0, y1 = min(ys), max(ys) if max(ys) > min(ys) else min(ys) + 1

    def sx(x: float) -> float:
        return pad + (x - x0) / (x1 - x0) * (width - 2 * pad)

    def sy(y: float) -> float:
        return height - pad - (y - y0) / (y1 - y0) * (height - 2 * pad)

    line = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in train)
    dots = "".join(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3" fill="#d62728"/>' for x, y in evals)
    axes = (
        f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" stroke="#444"/>'
        f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{height - pad}" stroke="#444"/>'
        f'<text x="{width / 2}" y="{height - 12}" text-anchor="middle">step</text>'
        f'<text x="8" y="{pad - 12}">loss</text>'
        f'<text x="{pad - 4}" y="{sy(y1) + 4:.1f}" text-anchor="end" font-size="11">{y1:.3g}</text>'
        f'<text x="{pad - 4}" y="{sy(y0) + 4:.1f}" text-anchor="end" font-size="11">{y0:.3g}</text>'
        f'<text x="{sx(x1):.1f}" y="{height - pad + 16}" text-anchor="middle" font-size="11">{x1:g}</text>'
    )
    legend = (
        f'<text x="{pad}" y="20" font-size="12" fill="#1f77b4">training loss</text>'
        f'<text x="{pad + 120}" y="20" font-size="12" fill="#d62728">evaluation loss</text>'
    )
    poly = f'<polyline fill="none" stroke="#1f77b4" stroke-width="1.5" points="{line}"/>' if train else ""
    return head + axes + legend + poly + dots + "</svg>"


def write_model_card(folder: Path, run_dir: Path, kind: str, verification: dict[str, Any]) -> Path:
    """Write ``folder/README.md`` and ``folder/loss_curve.svg`` for an export of ``run_dir``.

    Args:
        folder: the export folder (its staging copy; written before it is published).
        run_dir: the run folder the export came from.
        kind: "merged" or "adapter".
        verification: the export's checks and measured numbers (shown in the card).

    Returns:
        The README.md path.
    """
    cfg = _read_json(run_dir / "config.json")
    result = _read_json(run_dir / "result.json")
    metrics = _metrics(run_dir)
    (folder / "loss_curve.svg").write_text(loss_curve_svg(metrics), encoding="utf-8")
    base = str(cfg.get("model_name_or_path", "unknown"))
    method = "QLoRA (4-bit NF4 base)" if cfg.get("load_in_4bit") else "LoRA on an 8-bit base"
    if not cfg.get("load_in_4bit") and not cfg.get("load_in_8bit"):
        method = "LoRA (16-bit base)"
    last: dict[str, float] = {}
    for row in metrics:
        for key in ("loss", "eval_validation_loss", "eval_train_sample_loss"):
            if key in row:
                last[key] = float(row[key])
    rows = "\n".join(
        f"| `{name}` | {html.escape(json.dumps(cfg[name]))} |" for name in CARD_FIELDS if name in cfg
    )
    losses = "\n".join(
        f"| {label} | {last[key]:.4f} |"
        for key, label in (
            ("loss", "training loss (last logged step)"),
            ("eval_validation_loss", "validation loss (last evaluation)"),
            ("eval_train_sample_loss", "loss on fixed training rows (last evaluation)"),
        )
        if key in last
    )
    checks = "\n".join(
        f"- {'passed' if c.get('passed') else 'FAILED'}: {c.get('name')} ({c.get('detail', '')})"
        for c in verification.get("checks", [])
    )
    if kind == "merged":
        load = (
            "from transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
            'model = AutoModelForCausalLM.from_pretrained("PATH_OR_REPO", dtype="auto")\n'
            'tokenizer = AutoTokenizer.from_pretrained("PATH_OR_REPO")\n'
            'messages = [{"role": "user", "content": "Hello"}]\n'
            "inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors='pt', "
            "return_dict=True)\n"
            "print(tokenizer.decode(model.generate(**inputs, max_new_tokens=64)[0]))"
        )
    else:
        load = (
            "from peft import PeftModel\nfrom transformers import AutoModelForCausalLM\n\n"
            f'base = AutoModelForCausalLM.from_pretrained("{base}", dtype="auto")\n'
            'model = PeftModel.from_pretrained(base, "PATH_OR_REPO")'
        )
    front = (
        "---\n"
        f"base_model: {base}\n"
        f"library_name: {'transformers' if kind == 'merged' else 'peft'}\n"
        "tags:\n- lora\n- lora-studio\n" + ("- qlora\n" if cfg.get("load_in_4bit") else "") + "---\n"
    )
    body = f"""# {folder.name}: {"merged" if kind == "merged" else "LoRA adapter for"} {base}

Fine-tuned with LoRA Studio: {method}, W' = W + (alpha/r)·B·A with r = {cfg.get("lora_r")}, alpha =
{cfg.get("lora_alpha")} (scale {float(cfg.get("lora_alpha", 0)) / max(int(cfg.get("lora_r", 1)), 1):g}).
{"The adapter was merged into a " + str(verification.get("dtype", "16-bit")) + " copy of the base (never into 4-bit weights)." if kind == "merged" else "Only the adapter is here; it needs the base model."}

- Base model: `{base}`
- Dataset: `{cfg.get("dataset_name", "unknown")}` (format {cfg.get("dataset_format", "auto")}); licence: {dataset_license(str(cfg.get("dataset_name", "")))}
- Run: {result.get("status", "unknown")} after {result.get("steps", "?")} steps; trainable parameters
  {_count(result.get("trainable_params"))} of {_count(result.get("total_params"))}; device {result.get("device", "?")}

## Hyperparameters

| field | value |
|---|---|
{rows}

## Final losses

| measure | value |
|---|---|
{losses or "| (none logged) | |"}

![loss curve](loss_curve.svg)

## Verification

{checks or "- (none recorded)"}

## How to load

```python
{load}
```
"""
    path = folder / "README.md"
    path.write_text(front + body, encoding="utf-8")
    return path
