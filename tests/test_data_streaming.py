"""Validation streams: the report stays the same size for 4x the rows, a 5 MB cell never reaches the browser whole,
and the streamed report equals the whole-file path (core.data + core.tokenization) row for row.

Real files, the embedded SmolLM2 tokenizer, real gradio components; nothing mocked.
"""

from __future__ import annotations

import csv
import gzip
import json
import pickle
import random
from pathlib import Path

import pandas as pd
import pytest

from core.data import PREVIEW_CHARS, PREVIEW_ROWS, load_dataset_report
from core.datafiles import read_records
from core.errors import DataError
from core.textrows import CHUNK_BYTES
from core.tokenization import tokenize_report
from core.validation import MAX_ISSUES, validate_dataset

ASSETS = Path(__file__).resolve().parents[1] / "assets"
HUMANEVAL = [json.loads(line) for line in (ASSETS / "humaneval_alpaca.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def tokenizer(embedded_path):
    from core.model import load_tokenizer

    return load_tokenizer(embedded_path)


def alpaca_rows(n: int, seed: int = 0) -> list[dict]:
    """``n`` HumanEval alpaca rows; every other one has an empty output (dropped), a few a stray field."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        row = dict(rng.choice(HUMANEVAL))
        if i % 2:
            row["output"] = ""
        if i % 97 == 5:
            row["messages"] = None  # a field of the chat format that most rows do not have
        rows.append(row)
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def report_bytes(report) -> int:
    """The report's size as pickled (what a UI session would hold), without the CSV on disk."""
    return len(pickle.dumps(report))


def test_report_size_does_not_grow_with_rows(tmp_path, tokenizer):
    n = 2_500
    small = validate_dataset(write_jsonl(tmp_path / "n.jsonl", alpaca_rows(n)), tokenizer, 2048)
    large = validate_dataset(write_jsonl(tmp_path / "4n.jsonl", alpaca_rows(4 * n)), tokenizer, 2048)
    assert (small.rows_read, large.rows_read) == (n, 4 * n)
    assert (small.dropped_count, large.dropped_count) == (n // 2, 2 * n)  # every empty output counted ...
    assert (
        len(small.dropped) == len(large.dropped) == MAX_ISSUES
    )  # ... but only the first ones kept in memory
    assert len(small.preview) == len(large.preview) == PREVIEW_ROWS
    assert large.notes_count > small.notes_count and len(large.notes) <= MAX_ISSUES
    assert report_bytes(large) <= 1.1 * report_bytes(small), (report_bytes(small), report_bytes(large))
    # every issue is still in the CSV, which lives on disk
    with open(large.issues_csv, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["row", "status", "reason"]
    assert len(rows) - 1 == large.dropped_count + large.notes_count


def test_a_5_mb_cell_is_cut_before_the_browser(tmp_path, tokenizer):
    import gradio as gr

    huge = "word " * 1_048_576  # 5 MiB of answer
    rows = [{"instruction": "Say it.", "output": huge}, *HUMANEVAL[:3]]
    report = validate_dataset(write_jsonl(tmp_path / "huge.jsonl", rows), tokenizer, 512)
    cell = report.preview[0]["assistant"]
    assert len(cell) < PREVIEW_CHARS + 60 and cell.startswith("word word")
    assert f"[truncated: {len(huge):,} characters]" in cell
    assert report.stages["truncated"] == 1 and report.notes[0][1].startswith("truncated from ")
    # what the Data tab's table sends: gradio's own serialisation of the preview frame
    payload = gr.Dataframe().postprocess(report.preview_frame())
    assert len(json.dumps(payload.model_dump())) < 20_000
    # the whole-file report's preview is cut the same way (the UI and the CLI show the same rows)
    assert load_dataset_report(str(tmp_path / "huge.jsonl")).preview()["assistant"][0] == cell


def same_as_whole_file(source: str, tokenizer, max_length: int, **kwargs) -> None:
    """validate_dataset gives what load_dataset_report + tokenize_report give, issue for issue."""
    old = load_dataset_report(source)
    tokenized = tokenize_report(old, tokenizer, max_length)
    new = validate_dataset(source, tokenizer, max_length, **kwargs)
    assert new.stages == old.stages
    assert (new.dropped, new.notes) == (old.dropped[:MAX_ISSUES], old.notes[:MAX_ISSUES])
    assert (new.dropped_count, new.notes_count) == (len(old.dropped), len(old.notes))
    assert sorted(n for n, c in new.length_counts.items() for _ in range(c)) == sorted(tokenized.lengths)
    assert new.supervised_total == sum(tokenized.supervised)
    assert new.first_feature == {k: tokenized.features[0][k] for k in ("input_ids", "labels")}
    assert new.preview_frame().values.tolist() == old.preview().values.tolist()
    written = pd.read_csv(new.issues_csv, keep_default_na=False).astype(str).values.tolist()
    assert written == old.issues_frame().astype(str).values.tolist()


@pytest.mark.parametrize("kind", ["jsonl", "json", "csv", "parquet", "jsonl.gz"])
def test_streamed_report_equals_the_whole_file_report(tmp_path, tokenizer, kind):
    rows = [{k: v for k, v in r.items() if k != "messages"} for r in alpaca_rows(300, seed=3)]
    rows[7]["messages"] = None  # one odd row: noted by number
    path = tmp_path / f"d.{kind}"
    if kind == "json":
        path.write_text(json.dumps(rows, indent=1), encoding="utf-8")
    elif kind == "csv":
        pd.DataFrame(rows).to_csv(path, index=False)
    elif kind == "parquet":
        pd.DataFrame(rows).to_parquet(path)
    elif kind == "jsonl.gz":
        path.write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in rows).encode()))
    else:
        write_jsonl(path, rows)
    same_as_whole_file(str(path), tokenizer, 200)


def test_worker_processes_give_the_same_report(tmp_path, tokenizer):
    rows = alpaca_rows(18_000, seed=5)  # 9,000 usable rows: 9 batches, past the point the workers start
    source = write_jsonl(tmp_path / "big.jsonl", rows)
    alone = validate_dataset(source, tokenizer, 256, workers=1)
    pooled = validate_dataset(source, tokenizer, 256, workers=2)
    assert pooled.worker_peak_rss_mib > 0 and alone.worker_peak_rss_mib == 0
    for name in ("stages", "dropped", "notes", "dropped_count", "notes_count", "reasons", "length_counts"):
        assert getattr(pooled, name) == getattr(alone, name), name
    assert Path(pooled.issues_csv).read_bytes() == Path(alone.issues_csv).read_bytes()


def test_json_array_errors_past_the_first_window_name_the_line(tmp_path):
    rows = [{"instruction": f"q{i}\n" * 3, "output": "a" * 200} for i in range(12_000)]  # ~3 MB, 3 windows
    text = json.dumps(rows, indent=2)
    cut = text.index('"output"', 2 * CHUNK_BYTES)
    broken = text[:cut] + '"output" "missing colon"' + text[cut + len('"output":') :]
    with pytest.raises(json.JSONDecodeError) as expected:
        json.loads(broken)
    path = tmp_path / "broken.json"
    path.write_text(broken, encoding="utf-8")
    with pytest.raises(DataError) as info:
        read_records(str(path))
    want = f"not valid JSON ({expected.value.msg} at line {expected.value.lineno}, column {expected.value.colno})"
    assert want in str(info.value)
    path.write_text(text, encoding="utf-8")
    records, kind = read_records(str(path))
    assert (
        kind == "json" and len(records) == len(rows) and records[-1]["instruction"] == rows[-1]["instruction"]
    )


def test_crlf_split_across_read_chunks_is_one_line_end(tmp_path):
    header = "instruction,output\r\n"
    body = "x" * (
        CHUNK_BYTES - 1 - len(',"a') - len(header)
    )  # the quoted CRLF straddles the first read's end
    content = header + body + ',"a\r\nb"\r\nq2,a2\r\n'
    path = tmp_path / "crlf.csv"
    path.write_bytes(content.encode())
    assert content.encode().index(b"\r\n", len(header)) == CHUNK_BYTES - 1
    records, _ = read_records(str(path))
    assert records == [{"instruction": body, "output": "a\nb"}, {"instruction": "q2", "output": "a2"}]


def test_data_tab_validate_sends_cut_cells_and_a_histogram(tmp_path, embedded_path):
    import gradio as gr

    from core.workspace import Workspace
    from ui.tabs import data_tab

    ws = Workspace(tmp_path / "ws", private=True, key="k")
    ws.uploads_dir.mkdir(parents=True)
    huge = "token " * 900_000  # 5.4 MB in one cell
    rows = [{"instruction": "Repeat.", "output": huge}, *HUMANEVAL[:60], {"instruction": "", "output": "x"}]
    source = write_jsonl(ws.uploads_dir / "big-cell.jsonl", rows)
    form = {"dataset_name": source, "dataset_format": "auto", "max_length": 512, "completion_only_loss": True}
    summary, preview, figure, example, csv_path, mapping = data_tab.validate(form, ws, lambda *a, **k: None)
    preview = preview["value"]  # an update: the preview's column widths follow the format
    assert "read **62**" in summary and "1 × instruction is empty" in summary, summary
    assert "- row 62: instruction is empty" in summary and mapping.startswith("instruction=instruction")
    assert len(preview) == PREVIEW_ROWS and preview["assistant"].str.len().max() < PREVIEW_CHARS + 60
    shipped = json.dumps(gr.Dataframe().postprocess(preview).model_dump())
    assert len(shipped) < 200_000 and f"[truncated: {len(huge):,} characters]" in shipped
    bars = figure.data[0]
    assert sum(bars.y) == 61 and "(1 rows longer)" in figure.layout.annotations[0].text  # rows tokenized
    assert (
        any(cls == "trained" for _, cls in example) and len(example) == 512
    )  # the huge row, cut at max_length
    lines = Path(csv_path).read_text().splitlines()
    assert lines[0] == "row,status,reason" and "62,dropped,instruction is empty" in lines
    assert Path(csv_path).is_relative_to(ws.downloads_dir)


def test_start_counts_usable_rows_streamed_and_stops_when_it_knows_enough(tmp_path):
    """Start checks there is data to train on without loading the file into the app (the worker does that)."""
    from core.config import TrainingConfig
    from core.errors import DataError
    from core.validation import count_usable_rows

    good = [{"instruction": f"q{i}", "output": f"a{i}"} for i in range(5)]
    bad = [{"instruction": "q", "output": ""}, {"instruction": "", "output": "a"}]
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in [*bad, *good]) + "\n")
    cfg = TrainingConfig(dataset_name=str(path))
    assert count_usable_rows(cfg) == 5
    assert count_usable_rows(cfg, stop_after=1) == 1
    assert count_usable_rows(cfg, stop_after=3) == 3
    empty = tmp_path / "empty_answers.jsonl"
    empty.write_text("\n".join(json.dumps(r) for r in bad) + "\n")
    with pytest.raises(DataError, match="output is empty"):
        count_usable_rows(TrainingConfig(dataset_name=str(empty)))


def test_start_without_a_dataset_says_to_choose_one():
    """After a page reload the Data tab is empty; Start said ': is a folder with no data files'."""
    from core.config import TrainingConfig
    from core.errors import DataError
    from core.validation import count_usable_rows

    with pytest.raises(DataError, match="No dataset chosen: upload a file or pick a sample in the Data tab"):
        count_usable_rows(TrainingConfig(dataset_name=""))
