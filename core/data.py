"""Load a dataset into normalised Examples with a row-level report (tokenizing them is core.tokenization).

Reading is core.datafiles, formats and column mapping core.formats. Row numbers in every message are 1-based data
rows (a CSV header, JSON brackets and blank JSONL lines are not rows).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.datafiles import DEFAULT_MAX_BYTES, ROW_ERROR, duplicate_columns, read_records
from core.errors import DataError
from core.formats import (
    FIELDS,
    FORMATS,
    REQUIRED,
    Example,
    alternation_problem,
    check_mapping,
    detect_format,
    normalise_row,
    odd_rows,
    propose_mapping,
)

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

Message = dict[str, str]
PREVIEW_ROWS = 50  # rows shown in the Data tab's preview
PREVIEW_CHARS = 500  # characters of each preview cell sent to the browser


@dataclass
class DatasetReport:
    """A loaded dataset and what happened to each row.

    Attributes:
        source: file name or hub id.
        kind: file kind read ("csv", "jsonl", "hub", ...).
        dataset_format: one of core.formats.FORMATS.
        mapping: {canonical field: column} used.
        columns: every column seen.
        rows_read: data rows in the file.
        examples: usable rows, normalised.
        row_numbers: the 1-based file row of each example.
        dropped: (row, reason) for each row left out, at any stage.
        notes: (row, note) for rows kept but altered or worth a look (truncated, roles not alternating).
        stages: ordered {stage: row count} (read, usable after normalising, usable after tokenizing ...).
    """

    source: str
    kind: str
    dataset_format: str
    mapping: dict[str, str]
    columns: list[str]
    rows_read: int
    examples: list[Example]
    row_numbers: list[int]
    dropped: list[tuple[int, str]] = field(default_factory=list)
    notes: list[tuple[int, str]] = field(default_factory=list)
    stages: dict[str, int] = field(default_factory=dict)

    @property
    def conversations(self) -> list[list[Message]]:
        """The usable chat rows as lists of {role, content} (empty lists for raw-text rows)."""
        return [e.as_messages() for e in self.examples]

    def dropped_by_reason(self) -> dict[str, int]:
        """{reason (row-independent part): count}, most common first."""
        counts: dict[str, int] = {}
        for _, reason in self.dropped:
            key = reason.split(";")[0]
            counts[key] = counts.get(key, 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: -kv[1]))

    def summary(self) -> str:
        """One paragraph: format, counts per stage, and the first few dropped rows."""
        stages = ", ".join(f"{k}: {v}" for k, v in self.stages.items())
        text = f"{self.source}: {self.dataset_format} format ({stages}); {len(self.dropped)} dropped."
        for row, reason in self.dropped[:5]:
            text += f"\n  row {row}: {reason}"
        if len(self.dropped) > 5:
            text += f"\n  ... and {len(self.dropped) - 5} more."
        return text

    def issues_frame(self) -> pd.DataFrame:
        """Every dropped or noted row: row, status (dropped / kept), reason; sorted by row (for the CSV download)."""
        import pandas as pd

        rows = [(r, "dropped", why) for r, why in self.dropped] + [(r, "kept", why) for r, why in self.notes]
        return pd.DataFrame(sorted(rows), columns=["row", "status", "reason"])

    def preview(self, limit: int = PREVIEW_ROWS) -> pd.DataFrame:
        """The first ``limit`` normalised rows (``preview_row``: each cell cut to PREVIEW_CHARS characters)."""
        import pandas as pd

        return pd.DataFrame(
            [preview_row(e, n, self.dataset_format) for e, n in zip(self.examples[:limit], self.row_numbers)]
        )


def truncate_cell(text: str, limit: int = PREVIEW_CHARS) -> str:
    """``text`` cut to ``limit`` characters for display, saying so and how long it was when it is cut.

    Args:
        text: a cell's text.
        limit: characters kept.

    Returns:
        ``text`` itself when it fits, else its first ``limit`` characters followed by
        `` … [truncated: N characters]`` (N = the full length), so a 5 MB cell never reaches the browser.
    """
    if len(text) <= limit:
        return text
    return f"{text[:limit]} … [truncated: {len(text):,} characters]"


def preview_row(example: Example, row: int, dataset_format: str) -> dict[str, Any]:
    """One preview row: {row, text} for raw text, else {row, system, user, assistant, turns} with the turns of a
    role joined by ``---``; every text cell cut by ``truncate_cell``."""

    def join(role: str) -> str:  # tool calls and their results show in the assistant column
        roles = ("assistant", "tool") if role == "assistant" else (role,)
        return truncate_cell("\n---\n".join(c for r, c in example.shown_messages() if r in roles))

    if dataset_format == "text":
        return {"row": row, "text": truncate_cell(example.text or "")}
    return {
        "row": row,
        "system": join("system"),
        "user": join("user"),
        "assistant": join("assistant"),
        "turns": len(example.messages),
    }


def parse_mapping(mapping: dict[str, str] | tuple[tuple[str, str], ...] | None) -> dict[str, str]:
    """A mapping given as a dict or as (field, column) pairs, with empty columns removed."""
    pairs = mapping.items() if isinstance(mapping, dict) else (mapping or ())
    return {str(k).strip(): str(v).strip() for k, v in pairs if str(v).strip()}


def load_dataset_report(
    source: str,
    dataset_format: str = "auto",
    mapping: Any = None,
    *,
    split: str = "train",
    config_name: str | None = None,
    fold_system_message: bool = False,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> DatasetReport:
    """Read ``source``, settle format and mapping, and normalise every row; unusable rows are listed, not fatal.

    Args:
        source: file path or hub dataset id.
        dataset_format: "auto" or one of FORMATS.
        mapping: {canonical field: column}; fields left out are proposed from the column names.
        split / config_name: hub datasets only.
        fold_system_message: prepend a leading system turn to the first user turn (templates without a system role).
        max_bytes: refuse larger files with a message.

    Raises:
        DataError: unreadable file, no format fits, a bad mapping, raw text for an instruction format, or zero usable
            rows (with the first reasons).
    """
    records, kind = read_records(source, split=split, config_name=config_name, max_bytes=max_bytes)
    name = Path(source).name if Path(source).exists() else source
    if not records:
        raise DataError(f"{name}: the file has no rows.")
    columns = list(dict.fromkeys(k for r in records if ROW_ERROR not in r for k in r))
    if not columns:  # every row failed to split into fields
        reasons = "; ".join(f"row {i}: {r[ROW_ERROR]}" for i, r in enumerate(records[:3], start=1))
        raise DataError(f"No usable rows in {name}: {reasons}.")
    fmt, used = settle_format(name, records, columns, dataset_format, mapping)
    odd = odd_rows(records, fmt, used)
    examples, numbers, dropped, notes = [], [], [], []
    for i, rec in enumerate(records, start=1):
        try:
            ex = normalise_row(rec, fmt, used, fold_system_message)
        except ValueError as exc:
            dropped.append((i, f"{exc}; {odd[i]}" if i in odd else str(exc)))
            continue
        examples.append(ex)
        numbers.append(i)
        if i in odd:
            notes.append((i, odd[i]))
        if ex.messages and (why := alternation_problem(ex)):
            notes.append((i, why))
    report = DatasetReport(
        name,
        kind,
        fmt,
        used,
        columns,
        len(records),
        examples,
        numbers,
        dropped,
        notes,
        {"read": len(records), "usable": len(examples)},
    )
    if not examples:
        raise DataError(f"No usable rows. {report.summary()}")
    return report


def settle_format(
    name: str, records: list[dict[str, Any]], columns: list[str], dataset_format: str, mapping: Any
) -> tuple[str, dict[str, str]]:
    """The format and the {field: column} mapping to read ``records`` with (the user's mapping wins).

    Args:
        name: file name for messages.
        records: the rows (or the first ~1000 of a stream; detection looks at no more), as ``read_records`` gives.
        columns: every column seen.
        dataset_format: "auto" or one of FORMATS.
        mapping: the user's {field: column} (dict or pairs); fields left out are proposed from the column names.

    Raises:
        DataError: unknown format, no format fits, a bad mapping (every problem named), raw text for an instruction
            format or the reverse, or a repeated header the mapping does not settle.
    """
    user_map = parse_mapping(mapping)
    if dataset_format == "auto":
        fmt, proposed = detect_format(records) if not user_map else _format_for_mapping(records, user_map)
    elif dataset_format in FORMATS:
        fmt, proposed = dataset_format, propose_mapping(columns, dataset_format)
    else:
        raise DataError(f"dataset_format {dataset_format!r} is not one of auto, {', '.join(FORMATS)}.")
    # the user's mapping wins; a proposed field whose column the user gave to another field is dropped
    used = {**{f: c for f, c in proposed.items() if c not in user_map.values()}, **user_map}
    problems = check_mapping(columns, fmt, used)
    if problems:
        raise DataError(_explain_mapping(name, fmt, columns, records, problems))
    _refuse_duplicate_columns(name, records, used, user_map)
    return fmt, used


def _refuse_duplicate_columns(
    name: str, records: list[dict[str, Any]], used: dict[str, str], user_map: dict[str, str]
) -> None:
    """Refuse a header that names a used column twice, unless the user's mapping says which one they mean.

    A repeated column that no field uses, or whose other copies are empty throughout, is let through.

    Raises:
        DataError: names the repeated header, its column numbers and the mapping that picks each one.
    """
    for header, group in duplicate_columns(records).items():
        keys = [k for _, k in group]
        fields = [f for f, c in used.items() if c in keys]
        if not fields or any(user_map.get(f) in keys for f in fields):
            continue
        field_name = fields[0]
        filled = {k: sum(r.get(k) is not None for r in records if ROW_ERROR not in r) for k in keys}
        if all(filled[k] == 0 for k in keys if k != used[field_name]):
            continue  # the column in use is the only one with any data: nothing to choose between
        # suggest first the column with the most filled cells (the empty one is usually the mistake)
        best = max(keys, key=lambda k: filled[k])
        times = {2: "twice", 3: "three times"}.get(len(group), f"{len(group)} times")
        numbers = [str(n) for n, _ in group]
        where = ", ".join(numbers[:-1]) + " and " + numbers[-1]
        others = ", ".join(f"{field_name}={k}" for k in keys if k != best)
        raise DataError(
            f"{name}: the header names {header!r} {times} (columns {where}); rename one in the file, or map the "
            f"one you mean: {field_name}={best} (or {others}); "
            + ", ".join(f"{k} has {filled[k]} filled cells" for k in keys)
            + "."
        )


def _format_for_mapping(
    records: list[dict[str, Any]], user_map: dict[str, str]
) -> tuple[str, dict[str, str]]:
    """The first format whose fields include every mapped field and whose required fields are then covered."""
    columns = list(dict.fromkeys(k for r in records[:1000] if ROW_ERROR not in r for k in r))
    for fmt in FORMATS:
        if set(user_map) <= set(FIELDS[fmt]):
            proposed = propose_mapping(columns, fmt)
            if all({**proposed, **user_map}.get(f) for f in REQUIRED[fmt]):
                return fmt, proposed
    return detect_format(records)


def _explain_mapping(
    name: str, fmt: str, columns: list[str], records: list[dict[str, Any]], problems: list[str]
) -> str:
    try:
        found, _ = detect_format(records)
    except DataError:
        found = None
    if fmt != "text" and found == "text":
        return (
            f"{name} holds raw text (columns {columns}), not instruction / answer pairs, so {fmt} cannot be "
            "used: there is no answer to learn. Choose format 'text' for continued pre-training, or a file with "
            "instruction and output columns."
        )
    if fmt == "text" and found not in (None, "text"):
        return (
            f"{name} looks like {found} data (columns {columns}). Raw-text training would also learn the "
            f"prompts and ignore the turn structure; choose format {found!r}, or map one column to 'text' if you "
            "really want continued pre-training on it."
        )
    return f"{name}: cannot use it as {fmt}: " + "; ".join(problems) + "."


def split_train_eval(n: int, validation_split: float, seed: int) -> tuple[list[int], list[int], str]:
    """Seeded shuffle of ``n`` row indices into train / eval. ``validation_split`` < 1 is a fraction, >= 1 a count.

    Returns:
        (train indices, eval indices, note). Evaluation is off (empty eval list) with a note when fewer than 10 rows
        would remain for training or fewer than 2 for evaluation.
    """
    import random

    if validation_split <= 0:
        return list(range(n)), [], ""
    n_eval = int(validation_split) if validation_split >= 1 else round(n * validation_split)
    if n_eval < 2 or n - n_eval < 10:
        return (
            list(range(n)),
            [],
            (
                f"Evaluation turned off: {n} rows are too few for a validation split of "
                f"{validation_split:g} (needs >= 2 evaluation rows and >= 10 training rows)."
            ),
        )
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return sorted(order[n_eval:]), sorted(order[:n_eval]), f"{n - n_eval} training rows, {n_eval} held out."
