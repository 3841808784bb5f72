"""Model card (README.md) and loss-curve image for an export, from the run folder's real files.

Everything printed comes from the run: config.json (hyperparameters), result.json (status, steps, final loss,
trainable parameters), metrics.jsonl (the loss curve and the last evaluation losses) and the export's verification.
The loss curve is written as SVG by hand so that no plotting backend (kaleido, matplotlib) is needed.

The card is a huggingface_hub ``ModelCard``: its YAML front matter (``ModelCardData``: base_model only for a hub id,
library_name, tags, licence when known) is written by the library, so every value is escaped as YAML requires. The
Markdown body never shows a local absolute path (a local file or folder is named by its base name) and escapes the
values it quotes, so a name with ``*``, ``|`` or ``<`` renders as written.
"""

from __future__ import annotations

import json
import os
import re
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


FORMAT_LINE = re.compile(r": (alpaca|prompt_completion|messages|sharegpt|text) format \(")
"""The data summary the worker logs when it reads the dataset (core.data.DatasetReport.summary), e.g.
"file.jsonl: alpaca format (read: 164, usable: 164); 0 dropped.": the format it detected or was told."""

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_FILE_SUFFIXES = (".csv", ".tsv", ".json", ".jsonl", ".parquet", ".xlsx", ".gz", ".zip", ".txt")
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>#|~&])")  # markup in running text; ( ) are safe once [ ] are escaped


def is_hub_id(name: str) -> bool:
    """Whether ``name`` is a Hugging Face hub id ("owner/name") rather than a local file or folder.

    A name that exists on this machine, is absolute, starts with "." or "~", or ends with a data file's extension
    is local; so is anything that is not of the form owner/name.
    """
    name = name.strip()
    if not name or name.startswith((".", "~", "/")) or os.path.isabs(name) or not _HUB_ID.match(name):
        return False
    if name.lower().endswith(_FILE_SUFFIXES):  # "assets/sample.jsonl" run from another folder: still a file
        return False
    return not Path(name).exists()


def shown_name(name: str) -> str:
    """``name`` as a card may print it: a hub id unchanged, a local path by its base name only (never the
    machine's absolute path, e.g. an upload under ~/.cache)."""
    name = name.strip()
    if is_hub_id(name):
        return name
    return Path(name.rstrip("/\\")).name or name


def _md(text: Any) -> str:
    """``text`` as literal Markdown text: every character CommonMark could read as markup backslash-escaped."""
    return _MD_SPECIAL.sub(r"\\\1", str(text)).replace("\n", " ")


def _code(text: Any) -> str:
    """``text`` as an inline code span that is safe inside a table cell (pipes escaped, backticks fenced)."""
    body = str(text).replace("\n", " ").replace("|", "\\|")
    fence = "``" if "`" in body else "`"
    pad = " " if body.startswith("`") or body.endswith("`") else ""
    return f"{fence}{pad}{body}{pad}{fence}"


def detected_format(run_dir: Path, cfg: dict[str, Any], result: dict[str, Any] | None = None) -> str:
    """The dataset format the run trained on: the configured one, else the one detected when it read the data.

    Looks at result.json's "dataset_format" (when a future run records it), then the data summary line the
    worker logged (FORMAT_LINE) in events.jsonl, then train.log.

    Returns:
        One of core.formats.FORMATS, or "auto" when the run recorded none (a run killed before reading its data).
    """
    chosen = str(cfg.get("dataset_format") or "auto")
    if chosen != "auto":
        return chosen
    recorded = (result or {}).get("dataset_format")
    if isinstance(recorded, str) and recorded and recorded != "auto":
        return recorded
    for name in ("events.jsonl", "train.log"):
        try:
            with (run_dir / name).open(encoding="utf-8", errors="replace") as lines:
                for line in lines:
                    found = FORMAT_LINE.search(line)
                    if found:
                        return found.group(1)
        except OSError:
            continue
    return "auto"


def base_license(base: str) -> str | None:
    """The base model's licence id when known: the offline catalogue's entry for a hub id, else the ``license``
    of a local folder's own README.md front matter; None when unknown."""
    if is_hub_id(base):
        from core.catalogue import catalogue_entry

        entry = catalogue_entry(base)
        return entry.license if entry is not None and entry.license else None
    readme = Path(base).expanduser() / "README.md"
    if not readme.is_file():
        return None
    from huggingface_hub import ModelCard

    try:
        found = ModelCard.load(readme).data.to_dict().get("license")
    except Exception:  # a README without (valid) front matter: no licence known
        return None
    return str(found) if isinstance(found, str) and found else None


def card_name(final: Path, run_dir: Path) -> str:
    """The name a card's title gives an export: the export folder's name, prefixed with the run's when the export
    lies inside its run folder (``run-20261130-043101/merged``), never a staging folder's ``.NAME.partial-*``."""
    final, run_dir = Path(final), Path(run_dir)
    return f"{run_dir.name}/{final.name}" if final.parent == run_dir else final.name


def build_model_card(
    run_dir: Path, kind: str, verification: dict[str, Any], name: str
) -> tuple[Any, list[dict[str, Any]]]:
    """The export's model card (huggingface_hub ``ModelCard``) and the run's metrics rows.

    Args:
        run_dir: the run folder the export came from (config.json, result.json, metrics.jsonl, events.jsonl).
        kind: "merged" or "adapter".
        verification: the export's checks and measured numbers (shown in the card).
        name: the title's name for the export (card_name), never a staging folder.

    Raises:
        ValueError: ``kind`` is neither "merged" nor "adapter".
    """
    from huggingface_hub import ModelCard, ModelCardData

    if kind not in ("merged", "adapter"):
        raise ValueError(f"kind {kind!r} is not 'merged' or 'adapter'.")
    cfg = _read_json(run_dir / "config.json")
    result = _read_json(run_dir / "result.json")
    metrics = _metrics(run_dir)
    base = str(cfg.get("model_name_or_path", "unknown"))
    base_shown = shown_name(base)
    dataset = str(cfg.get("dataset_name", "") or "")
    data = ModelCardData(
        base_model=base if is_hub_id(base) else None,
        library_name="transformers" if kind == "merged" else "peft",
        pipeline_tag="text-generation",
        license=base_license(base),
        datasets=[dataset] if is_hub_id(dataset) else None,
        tags=["lora", "lora-studio"] + (["qlora"] if cfg.get("load_in_4bit") else []),
    )
    method = "QLoRA (4-bit NF4 base)" if cfg.get("load_in_4bit") else "LoRA on an 8-bit base"
    if not cfg.get("load_in_4bit") and not cfg.get("load_in_8bit"):
        method = "LoRA (16-bit base)"
    last: dict[str, float] = {}
    for row in metrics:
        for key in ("loss", "eval_validation_loss", "eval_train_sample_loss"):
            if key in row:
                last[key] = float(row[key])
    shown = dict(cfg)
    if not shown.get("lora_target_modules") and isinstance(result.get("target_modules"), list):
        shown["lora_target_modules"] = result["target_modules"]  # the family default the run resolved
    rows = "\n".join(
        f"| {_code(field)} | {_code(json.dumps(shown[field]))} |" for field in CARD_FIELDS if field in shown
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
        f"- {'passed' if c.get('passed') else 'FAILED'}: {_md(c.get('name'))} ({_md(c.get('detail', ''))})"
        for c in verification.get("checks", [])
    )
    load_base = base if is_hub_id(base) else f"PATH_TO/{base_shown}"
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
            f'base = AutoModelForCausalLM.from_pretrained({json.dumps(load_base)}, dtype="auto")\n'
            'model = PeftModel.from_pretrained(base, "PATH_OR_REPO")'
        )
    fmt = detected_format(run_dir, cfg, result)
    detected = str(cfg.get("dataset_format") or "auto") == "auto" and fmt != "auto"
    fmt_text = (
        f"{fmt} format, detected"
        if detected
        else ("format not recorded" if fmt == "auto" else f"{fmt} format")
    )
    alpha, r = cfg.get("lora_alpha", 0), cfg.get("lora_r", 1)
    scale = float(alpha or 0) / max(int(r or 1), 1)
    merged_line = (
        f"The adapter was merged into a {_md(verification.get('dtype', '16-bit'))} copy of the base "
        "(never into 4-bit weights)."
        if kind == "merged"
        else "Only the adapter is here; it needs the base model."
    )
    body = f"""# {_md(name)}: {"merged LoRA fine-tune of" if kind == "merged" else "LoRA adapter for"} {_md(base_shown)}

Fine-tuned with LoRA Studio: {method}, W' = W + (alpha/r)·B·A with r = {_md(r)}, alpha = {_md(alpha)}
(scale {scale:g}). {merged_line}

- Base model: {_code(base_shown)}
- Dataset: {_code(shown_name(dataset) or "unknown")} ({fmt_text}); licence: \
{_md(dataset_license(dataset))}
- Run: {_md(result.get("status", "unknown"))} after {_md(result.get("steps", "?"))} steps; trainable parameters \
{_count(result.get("trainable_params"))} of {_count(result.get("total_params"))}; device \
{_md(result.get("device", "?"))}

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
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}"), metrics


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def write_model_card(
    folder: Path, run_dir: Path, kind: str, verification: dict[str, Any], name: str | None = None
) -> Path:
    """Write ``folder/README.md`` (build_model_card) and ``folder/loss_curve.svg`` for an export of ``run_dir``.

    Args:
        folder: the export folder (its staging copy; written before it is published). The adapter folder's own
            README.md (peft's template) is replaced.
        run_dir: the run folder the export came from.
        kind: "merged" or "adapter".
        verification: the export's checks and measured numbers (shown in the card).
        name: the export's name for the title (card_name of the final folder); the folder's name when None.

    Returns:
        The README.md path.

    Raises:
        ValueError: ``kind`` is neither "merged" nor "adapter".
        OSError: the folder is not writable (each file is written under a temporary name, then renamed).
    """
    folder, run_dir = Path(folder), Path(run_dir)
    card, metrics = build_model_card(run_dir, kind, verification, name or folder.name)
    _write_text_atomic(folder / "loss_curve.svg", loss_curve_svg(metrics))
    path = folder / "README.md"
    _write_text_atomic(path, str(card))
    return path
