"""Validate a dataset in one streaming pass: memory is a constant plus the report, whatever the file's size.

The Data tab and ``launch.py validate`` run this; training still loads every row (core.data, core.tokenization).
Rows are read one at a time (core.readers), the format is settled on the first ``SAMPLE_ROWS`` rows
(core.data.settle_format, as for a whole file), then each row is normalised and checked, and every
``BATCH_ROWS`` usable rows are rendered through the model's chat template and tokenized together by the fast
tokenizer for their lengths and trained-on token counts (the same rendering and rules as
``core.tokenization.tokenize_report``). What is kept: counts per stage, dropped counts per reason, the first
``MAX_ISSUES`` issues (every issue goes to a CSV on disk), token-length and supervised-token histograms, the first
``PREVIEW_ROWS`` rows with each cell cut to ``PREVIEW_CHARS`` characters, and the first kept row's tokens.
"""

from __future__ import annotations

import shutil
import tempfile
import weakref
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import chain, islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.data import PREVIEW_ROWS, preview_row, settle_format
from core.datafiles import DEFAULT_MAX_BYTES, ROW_ERROR, _Rows, require_dataset
from core.errors import DataError
from core.formats import Example, alternation_problem, normalise_row
from core.issues import NORMALISE, TOKENIZE, IssueSpool, OddRows, merge_issues
from core.readers import open_records
from core.tokenization import ensure_chat_template, tokenize_example
from core.tokenpool import BatchRunner, Measured

if TYPE_CHECKING:
    import pandas as pd
    from transformers import PreTrainedTokenizerBase

    from core.config import TrainingConfig

SAMPLE_ROWS = 1000  # rows the format and mapping are settled on (core.formats.detect_format looks at no more)
BATCH_ROWS = 1000  # usable rows rendered and tokenized together
MAX_ISSUES = 1000  # dropped rows and notes each kept in memory (the CSV lists every one)
MAX_REASONS = 200  # distinct drop reasons counted by name; the rest are counted together
OTHER_REASONS = "(other reasons)"
EXACT_LENGTHS = (
    16_384  # token lengths counted exactly up to here (or 2 x max_length); longer ones in 1,024 bins
)


@dataclass
class ValidationReport:
    """What one validation pass found, bounded in size whatever the file's.

    Attributes:
        source / kind / dataset_format / mapping: as in core.data.DatasetReport.
        columns: the columns seen (up to 10,000 names).
        rows_read: data rows in the file.
        stages: ordered {stage: row count}: read, usable, after tokenizing, truncated.
        dropped / notes: the first MAX_ISSUES (row, reason) of each, by row.
        dropped_count / notes_count: how many there are in all.
        reasons: {drop reason (row-independent part): count}, most common first.
        preview: the first PREVIEW_ROWS usable rows (``core.data.preview_row``, cells cut to PREVIEW_CHARS).
        length_counts: {tokens per rendered row before truncation: rows}; exact up to EXACT_LENGTHS (or twice
            max_length), longer lengths rounded down to a multiple of 1,024.
        supervised_counts: {trained-on tokens per kept row: rows}.
        max_length: the cut the rows were checked against, in tokens.
        first_feature: {"input_ids", "labels"} of the first kept row, truncated to max_length (None when none).
        worker_peak_rss_mib: the summed peak RSS of the worker processes (0 when none ran), in MiB.
        issues_csv: every dropped or noted row as CSV (row, status, reason), in a temporary folder removed with
            the report; ``write_issues_csv`` copies it.
    """

    source: str
    kind: str
    dataset_format: str
    mapping: dict[str, str]
    columns: list[str]
    rows_read: int = 0
    stages: dict[str, int] = field(default_factory=dict)
    dropped: list[tuple[int, str]] = field(default_factory=list)
    notes: list[tuple[int, str]] = field(default_factory=list)
    dropped_count: int = 0
    notes_count: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    preview: list[dict[str, Any]] = field(default_factory=list)
    length_counts: dict[int, int] = field(default_factory=dict)
    supervised_counts: dict[int, int] = field(default_factory=dict)
    max_length: int = 0
    first_feature: dict[str, list[int]] | None = None
    issues_csv: Path | None = None
    worker_peak_rss_mib: float = 0.0

    def dropped_by_reason(self) -> dict[str, int]:
        """{reason (row-independent part): count}, most common first."""
        return dict(self.reasons)

    @property
    def supervised_total(self) -> int:
        """Trained-on tokens over every kept row."""
        return sum(n * c for n, c in self.supervised_counts.items())

    @property
    def supervised_median(self) -> int:
        """Median trained-on tokens per kept row (the lower median; 0 when no row is kept)."""
        return _median(self.supervised_counts)

    @property
    def rows_over_max_length(self) -> int:
        """Rows whose rendered length exceeds max_length (kept truncated, or dropped when no answer is left)."""
        return sum(c for n, c in self.length_counts.items() if n > self.max_length)

    def preview_frame(self) -> pd.DataFrame:
        """The preview rows as a table: row, system, user, assistant, turns (or row, text)."""
        import pandas as pd

        return pd.DataFrame(self.preview)

    def summary(self) -> str:
        """One paragraph: format, counts per stage, and the first few dropped rows."""
        stages = ", ".join(f"{k}: {v}" for k, v in self.stages.items())
        text = f"{self.source}: {self.dataset_format} format ({stages}); {self.dropped_count} dropped."
        for row, reason in self.dropped[:5]:
            text += f"\n  row {row}: {reason}"
        if self.dropped_count > 5:
            text += f"\n  ... and {self.dropped_count - 5} more."
        return text

    def as_dict(self) -> dict[str, Any]:
        """The figures ``launch.py validate --json`` prints (without the report CSV's path)."""
        return {
            "source": self.source,
            "dataset_format": self.dataset_format,
            "mapping": self.mapping,
            "stages": self.stages,
            "dropped_by_reason": self.dropped_by_reason(),
            "dropped": self.dropped_count,
            "notes": self.notes_count,
            "supervised_tokens_total": self.supervised_total,
        }

    def write_issues_csv(self, path: Path) -> Path:
        """Copy every dropped or noted row (row, status, reason) to ``path`` via a temporary file; returns it."""
        if self.issues_csv is None:
            raise DataError("This report has no row issues file.")
        tmp = path.with_name(f".{path.name}.partial")
        shutil.copyfile(self.issues_csv, tmp)
        tmp.replace(path)
        return path


def validate_config(
    cfg: TrainingConfig,
    tokenizer: PreTrainedTokenizerBase | None = None,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    progress: Callable[[int], None] | None = None,
) -> ValidationReport:
    """``validate_dataset`` for a config's data settings, with its model's tokenizer unless one is given.

    Raises:
        DataError: as ``validate_dataset``. ModelError: the model's tokenizer cannot be loaded.
    """
    require_dataset(cfg.dataset_name)  # before the tokenizer loads: a config without data says so at once
    if tokenizer is None:
        from core.model import load_tokenizer, resolve_model_path

        tokenizer = load_tokenizer(resolve_model_path(cfg.model_name_or_path))
    return validate_dataset(
        cfg.dataset_name,
        tokenizer,
        cfg.max_length,
        cfg.dataset_format,
        cfg.dataset_column_mapping,
        completion_only_loss=cfg.completion_only_loss,
        split=cfg.dataset_split,
        config_name=cfg.dataset_config or None,
        fold_system_message=cfg.fold_system_message,
        max_bytes=max_bytes,
        progress=progress,
    )


def validate_dataset(
    source: str,
    tokenizer: PreTrainedTokenizerBase,
    max_length: int,
    dataset_format: str = "auto",
    mapping: Any = None,
    *,
    completion_only_loss: bool = True,
    split: str = "train",
    config_name: str | None = None,
    fold_system_message: bool = False,
    max_bytes: int = DEFAULT_MAX_BYTES,
    progress: Callable[[int], None] | None = None,
    workers: int | None = None,
) -> ValidationReport:
    """Read, normalise and tokenize every row of ``source`` in one streaming pass.

    The same checks as ``core.data.load_dataset_report`` followed by ``core.tokenization.tokenize_report``, with the
    same row numbers and reasons, but no row is kept once counted: memory stays near constant (measured in
    bench/data_validate.py, bench/RESULTS.md).

    Args:
        source: file path or hub dataset id.
        tokenizer: the model's tokenizer (its chat template renders chat rows).
        max_length: tokens per row kept for training; longer rows are truncated, rows with no answer left dropped.
        dataset_format / mapping / split / config_name / fold_system_message / max_bytes: as load_dataset_report.
        completion_only_loss: count only the answers' tokens as trained on (else the whole row).
        progress: called with the number of rows read so far after each batch.
        workers: processes that render and tokenize a large file (core.tokenpool.BatchRunner; default one per
            CPU core, 1 keeps it in this process).

    Raises:
        DataError: unreadable file, no format fits, a bad mapping, zero usable rows, or no row with answer tokens
            within max_length (each with the first reasons).
    """
    source = require_dataset(source)  # "" would read the current folder
    stream = open_records(source, split=split, config_name=config_name, max_bytes=max_bytes)
    name = Path(source).name if Path(source).exists() else source
    sample = _Rows(islice(stream.rows, SAMPLE_ROWS))
    if not sample:
        raise DataError(f"{name}: the file has no rows.")
    sample.duplicates = stream.duplicates
    columns = list(dict.fromkeys(k for r in sample if ROW_ERROR not in r for k in r))
    if not columns:  # every row failed to split into fields
        reasons = "; ".join(f"row {i}: {r[ROW_ERROR]}" for i, r in enumerate(sample[:3], start=1))
        raise DataError(f"No usable rows in {name}: {reasons}.")
    fmt, used = settle_format(name, sample, columns, dataset_format, mapping)
    ensure_chat_template(tokenizer)
    report = ValidationReport(name, stream.kind, fmt, used, columns, max_length=max_length)
    folder = tempfile.mkdtemp(prefix="lora-studio-validate-")
    weakref.finalize(report, shutil.rmtree, folder, True)
    run = _Pass(report, tokenizer, IssueSpool(Path(folder) / "spool.csv"))
    runner = BatchRunner(tokenizer, completion_only_loss, max_length, workers)
    odd = OddRows(fmt, used)
    batch: list[tuple[int, Example]] = []
    issues: list[tuple[int, str, str, str]] = []
    row = 0
    try:
        for row, rec in enumerate(chain(sample, stream.rows), start=1):
            if ROW_ERROR not in rec:
                odd.add(row, rec)
            try:
                ex = normalise_row(rec, fmt, used, fold_system_message)
            except ValueError as exc:
                issues.append((row, "dropped", str(exc), NORMALISE))
                continue
            batch.append((row, ex))
            if ex.messages and (why := alternation_problem(ex)):
                issues.append((row, "kept", why, NORMALISE))
            if len(batch) >= BATCH_ROWS:
                run.submit(runner, batch, issues)
                batch, issues = [], []
                if progress is not None:
                    progress(row)
        run.submit(runner, batch, issues)
        for done, measured in runner.drain():
            run.count(done, measured)
    finally:
        runner.close()
    del sample
    report.rows_read = row
    report.columns = list(odd.columns)
    report.worker_peak_rss_mib = sum(runner.worker_peak_kib.values()) / 1024
    return run.finish(odd, Path(folder) / f"{Path(name).stem or 'data'}-report.csv", completion_only_loss)


class _Pass:
    """The counting half of a validation pass: the report's bounded accumulators and the issue spool."""

    def __init__(
        self, report: ValidationReport, tokenizer: PreTrainedTokenizerBase, spool: IssueSpool
    ) -> None:
        self.report, self.tokenizer, self.spool = report, tokenizer, spool
        self.usable = self.kept = self.truncated = 0
        self.lengths: Counter[int] = Counter()
        self.supervised: Counter[int] = Counter()
        self.exact = max(EXACT_LENGTHS, 2 * report.max_length)
        self.first: tuple[int, Example] | None = None
        self.token_drops: list[tuple[int, str]] = []  # the first few, for the "no answer tokens" message
        self.issues: deque[list[tuple[int, str, str, str]]] = deque()  # per batch in flight, in order

    def submit(
        self, runner: BatchRunner, batch: list[tuple[int, Example]], issues: list[tuple[int, str, str, str]]
    ) -> None:
        """Hand a batch of usable rows (and the issues found so far since the last batch) to the runner, and count
        the batches it has finished."""
        report = self.report
        self.usable += len(batch)
        for row, ex in batch[: PREVIEW_ROWS - len(report.preview)]:
            report.preview.append(preview_row(ex, row, report.dataset_format))
        self.issues.append(issues)
        for done, measured in runner.submit(batch):
            self.count(done, measured)

    def count(self, batch: list[tuple[int, Example]], measured: list[Measured]) -> None:
        """Count one measured batch (in submission order) and spool its issues."""
        max_length = self.report.max_length
        issues = self.issues.popleft()
        examples = dict(batch)
        for row, n, n_sup, error in measured:
            if error is None:
                self.lengths[n if n <= self.exact else n - n % 1024] += 1
            if error is not None or n_sup == 0:
                why = error or f"the answer starts after max_length={max_length} tokens; raise max_length"
                issues.append((row, "dropped", why, TOKENIZE))
                if len(self.token_drops) < 3:
                    self.token_drops.append((row, why))
                continue
            self.kept += 1
            self.supervised[n_sup] += 1
            if self.first is None:
                self.first = (row, examples[row])
            if n > max_length:
                self.truncated += 1
                issues.append((row, "kept", f"truncated from {n} to {max_length} tokens", TOKENIZE))
        self.spool.write(issues)

    def finish(self, odd: OddRows, csv_path: Path, completion_only_loss: bool) -> ValidationReport:
        """Merge the spooled issues with the odd rows into the CSV and the bounded lists; check the totals.

        Raises:
            DataError: no usable row, or no row with answer tokens within max_length.
        """
        import csv

        report = self.report
        report.stages = {"read": report.rows_read, "usable": self.usable}
        reasons: Counter[str] = Counter()
        with open(csv_path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["row", "status", "reason"])
            for row, status, reason in merge_issues(self.spool.read(), odd.notes()):
                writer.writerow([row, status, reason])
                if status == "dropped":
                    report.dropped_count += 1
                    if len(report.dropped) < MAX_ISSUES:
                        report.dropped.append((row, reason))
                    key = reason.split(";")[0]
                    reasons[key if key in reasons or len(reasons) < MAX_REASONS else OTHER_REASONS] += 1
                else:
                    report.notes_count += 1
                    if len(report.notes) < MAX_ISSUES:
                        report.notes.append((row, reason))
        self.spool.path.unlink(missing_ok=True)
        report.issues_csv = csv_path
        report.reasons = dict(sorted(reasons.items(), key=lambda kv: -kv[1]))
        report.length_counts = dict(sorted(self.lengths.items()))
        report.supervised_counts = dict(sorted(self.supervised.items()))
        if not self.usable:
            raise DataError(f"No usable rows. {report.summary()}")
        report.stages["after tokenizing"] = self.kept
        report.stages["truncated"] = self.truncated
        if self.first is None:
            raise DataError(
                "No row has answer tokens within max_length. "
                + "; ".join(f"row {r}: {why}" for r, why in self.token_drops)
            )
        ids, labels = tokenize_example(self.tokenizer, self.first[1], report.max_length, completion_only_loss)
        report.first_feature = {"input_ids": ids, "labels": labels}
        return report


def _median(counts: dict[int, int]) -> int:
    """The lower median of values given as {value: count} (0 when empty)."""
    total = sum(counts.values())
    if not total:
        return 0
    seen = 0
    for value in sorted(counts):
        seen += counts[value]
        if seen > total // 2:
            return value
    return 0


def count_usable_rows(cfg: TrainingConfig, stop_after: int | None = None) -> int:
    """Usable rows of a config's dataset (read and normalised, not tokenized), streamed: memory stays flat, and
    the count stops at ``stop_after`` rows when given (Start only needs to know there is one, or that a demo's
    cap is passed).

    Returns:
        The number of usable rows, at most ``stop_after``.

    Raises:
        DataError: unreadable file, no format fits, a bad mapping, or zero usable rows (with the first reasons,
            as core.data.load_dataset_report gives them).
    """
    source = require_dataset(cfg.dataset_name)  # e.g. Start after a page reload emptied the Data tab
    stream = open_records(source, split=cfg.dataset_split, config_name=cfg.dataset_config or None)
    name = Path(source).name if Path(source).exists() else source
    sample = _Rows(islice(stream.rows, SAMPLE_ROWS))
    columns = list(dict.fromkeys(k for r in sample if ROW_ERROR not in r for k in r))
    usable = 0
    if columns:
        sample.duplicates = stream.duplicates
        fmt, used = settle_format(name, sample, columns, cfg.dataset_format, cfg.dataset_column_mapping)
        for rec in chain(sample, stream.rows):
            try:
                normalise_row(rec, fmt, used, cfg.fold_system_message)
            except ValueError:
                continue
            usable += 1
            if stop_after is not None and usable >= stop_after:
                break
    if usable == 0:  # the whole-file report names the reasons (and raises them)
        from core.train import load_report_for

        load_report_for(cfg)
        raise DataError(f"No usable rows in {name}.")
    return usable
