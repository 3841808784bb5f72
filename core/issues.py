"""Row issues of a streamed validation: spooled to disk as they are found, merged with the odd-row notes at the end.

A validation pass finds issues in row order (each batch's sorted before it is spooled) but can name the rows that
carry a field of another format only once every row has been counted (``core.formats.odd_rows`` compares a field's
presence with the whole file). ``OddRows`` keeps, per candidate column, the compact list of rows that hold it
(4 bytes a row); ``merge_issues`` then yields every issue in the order ``DatasetReport.issues_frame`` gives.
"""

from __future__ import annotations

import csv
import heapq
from array import array
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from core.formats import FORMATS, REQUIRED, SYNONYMS, propose_mapping

Issue = tuple[int, str, str]  # (1-based row, "dropped" or "kept", reason)
NORMALISE, TOKENIZE = "normalise", "tokenize"  # the stage an issue was found at


class IssueSpool:
    """Issues written to a CSV file as they come: (row, status, reason, stage), rows ascending.

    Args:
        path: the spool file (created, overwritten).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh: IO[str] | None = open(path, "w", newline="", encoding="utf-8")
        self._writer = csv.writer(self._fh)

    def write(self, issues: list[tuple[int, str, str, str]]) -> None:
        """Append one batch of issues (sorted here by row, status, reason)."""
        self._writer.writerows(sorted(issues))

    def close(self) -> None:
        """Flush and close the file (reading it back starts afterwards)."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def read(self) -> Iterator[tuple[int, str, str, str]]:
        """Every spooled issue, in the order written."""
        self.close()
        with open(self.path, newline="", encoding="utf-8") as fh:
            for row, status, reason, stage in csv.reader(fh):
                yield int(row), status, reason, stage


class OddRows:
    """Which rows carry a field of another format that most rows do not carry (``core.formats.odd_rows``), counted
    while rows stream past.

    Args:
        dataset_format: the format the file is read as.
        mapping: {canonical field: column} in use.
    """

    def __init__(self, dataset_format: str, mapping: dict[str, str]) -> None:
        self.dataset_format = dataset_format
        self.used = set(mapping.values())
        names = {
            alias for fmt in FORMATS if fmt != dataset_format for f in REQUIRED[fmt] for alias in SYNONYMS[f]
        }
        self._names = frozenset(names)
        self.columns: dict[str, bool] = {}  # every column seen (first-seen order) -> may it be foreign?
        self.present: dict[str, array[int]] = {}  # candidate column -> rows holding the key
        self.held: dict[str, array[int]] = {}  # candidate column -> rows holding a non-null value
        self.rows = 0  # rows that split into fields
        self.max_columns = 10_000  # a file with a new key on every row: stop listing names past this

    def add(self, row: int, record: dict[str, Any]) -> None:
        """Count one record (not a ROW_ERROR placeholder) at 1-based ``row``."""
        self.rows += 1
        columns = self.columns
        for key in record:
            candidate = columns.get(key)
            if candidate is None:
                candidate = key.lower().strip() in self._names and key not in self.used
                if len(columns) < self.max_columns or candidate:
                    columns[key] = candidate
            if candidate:
                self.present.setdefault(key, array("I")).append(row)
                if record[key] is not None:
                    self.held.setdefault(key, array("I")).append(row)

    def foreign(self) -> dict[str, str]:
        """{column: the format it belongs to} for the columns of other formats, judged on every column seen."""
        columns = list(self.columns)
        out: dict[str, str] = {}
        for fmt in FORMATS:
            if fmt == self.dataset_format:
                continue
            for f, col in propose_mapping(columns, fmt).items():
                if f in REQUIRED[fmt] and col not in self.used:
                    out.setdefault(col, fmt)
        return out

    def notes(self) -> Iterator[tuple[int, str]]:
        """(row, why it is odd) for every odd row, ascending; one reason per row (the first foreign column's)."""
        streams = [self._column_notes(k, col, fmt) for k, (col, fmt) in enumerate(self.foreign().items())]
        last = 0
        for row, _, why in heapq.merge(*streams):
            if row != last:
                yield row, why
                last = row

    def _column_notes(self, order: int, col: str, fmt: str) -> Iterator[tuple[int, int, str]]:
        present = self.present.get(col, array("I"))
        held = self.held.get(col, array("I"))
        minority_key = len(present) * 2 <= self.rows
        minority_value = len(held) * 2 <= self.rows
        j = 0
        for row in present:
            while j < len(held) and held[j] < row:
                j += 1
            has_value = j < len(held) and held[j] == row
            if minority_key or (has_value and minority_value):
                shown = "a value" if has_value else "null"
                yield (
                    row,
                    order,
                    f"has a {col!r} field ({shown}) of the {fmt} format that most rows do not have; read as "
                    f"{self.dataset_format} like the other rows, that field is ignored",
                )


def merge_issues(
    spooled: Iterator[tuple[int, str, str, str]], odd: Iterator[tuple[int, str]]
) -> Iterator[Issue]:
    """Every issue in (row, status, reason) order: an odd row dropped while normalising gets the odd reason
    appended to its drop reason, any other odd row a "kept" note (as ``core.data.load_dataset_report`` does).

    Args:
        spooled: (row, status, reason, stage) ascending by row, as ``IssueSpool.read`` gives.
        odd: (row, why) ascending by row, as ``OddRows.notes`` gives.
    """
    pending_odd = next(odd, None)
    group: list[tuple[int, str, str, str]] = []

    def flush(group: list[tuple[int, str, str, str]]) -> Iterator[Issue]:
        nonlocal pending_odd
        row = group[0][0]
        while pending_odd is not None and pending_odd[0] < row:  # odd rows with no other issue
            yield pending_odd[0], "kept", pending_odd[1]
            pending_odd = next(odd, None)
        out = [(r, status, reason) for r, status, reason, _ in group]
        if pending_odd is not None and pending_odd[0] == row:
            why = pending_odd[1]
            at = next((k for k, g in enumerate(group) if g[3] == NORMALISE and g[1] == "dropped"), None)
            if at is None:
                out.append((row, "kept", why))
            else:
                out[at] = (row, "dropped", f"{out[at][2]}; {why}")
            pending_odd = next(odd, None)
        yield from sorted(out)

    for issue in spooled:
        if group and issue[0] != group[0][0]:
            yield from flush(group)
            group = []
        group.append(issue)
    if group:
        yield from flush(group)
    while pending_odd is not None:
        yield pending_odd[0], "kept", pending_odd[1]
        pending_odd = next(odd, None)
