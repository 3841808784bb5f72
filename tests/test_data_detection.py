"""Format and column detection that one odd row cannot derail (issue 15): real files written here, read through the
same entry point the Data tab and ``launch.py validate`` use (``core.train.load_report_for`` ->
``core.data.load_dataset_report``)."""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import tarfile
import zipfile

import pandas as pd
import pytest

from core.config import TrainingConfig
from core.data import load_dataset_report
from core.errors import DataError
from core.train import load_report_for

ALPACA = [{"instruction": f"Say {i}", "input": "", "output": f"{i}"} for i in range(10)]


def jsonl(rows):
    return ("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n").encode("utf-8")


def report_for(path, mapping=()):
    cfg = TrainingConfig(dataset_name=str(path), dataset_column_mapping=tuple(mapping))
    return load_report_for(cfg)


def test_one_row_with_a_stray_messages_null_does_not_make_the_file_chat(tmp_path):
    rows = [dict(r) for r in ALPACA]
    rows[6]["messages"] = None
    path = tmp_path / "alpaca.jsonl"
    path.write_bytes(jsonl(rows))
    report = report_for(path)
    assert report.dataset_format == "alpaca"
    assert len(report.examples) == 10 and report.dropped == []
    assert [r for r, _ in report.notes] == [7]
    assert "'messages'" in report.notes[0][1] and "alpaca" in report.notes[0][1]
    assert (report.issues_frame()["row"] == 7).any()
    # the same stray field on a row that is unusable anyway: dropped with both reasons
    rows[3] = {"instruction": "", "output": "x", "messages": None}
    path.write_bytes(jsonl(rows))
    report = report_for(path)
    assert report.dataset_format == "alpaca" and len(report.examples) == 9
    reasons = dict(report.dropped)
    assert list(reasons) == [4] and "instruction is empty" in reasons[4] and "'messages'" in reasons[4]
    assert {r for r, _ in report.notes} == {7}
    # a real chat file with one alpaca-looking row is still chat
    chat = [
        {"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]}
        for i in range(9)
    ] + [{"instruction": "x", "output": "y", "messages": None}]
    path.write_bytes(jsonl(chat))
    report = load_dataset_report(str(path))
    assert report.dataset_format == "messages" and len(report.examples) == 9
    assert [r for r, _ in report.dropped] == [10]


def test_a_header_naming_a_column_twice_is_named_and_can_be_mapped(tmp_path):
    path = tmp_path / "dup.csv"
    path.write_text(
        "instruction,output,output\n" + "".join(f"Say {i},,{i}\n" for i in range(5)), encoding="utf-8"
    )
    with pytest.raises(DataError) as err:
        report_for(path)
    msg = str(err.value)
    assert "the header names 'output' twice (columns 2 and 3)" in msg
    assert "rename one in the file, or map the one you mean: output=output.1" in msg
    report = report_for(path, [("output", "output.1")])
    assert len(report.examples) == 5 and report.dropped == []
    assert report.conversations[2][-1]["content"] == "2"
    # mapping the first one is the user's choice, and then its empty cells are the reason
    with pytest.raises(DataError, match="output is empty"):
        report_for(path, [("output", "output")])
    # both copies filled: refused until a mapping picks one; a copy that is empty throughout is no choice
    both = tmp_path / "both.tsv"
    both.write_text("question\tanswer\tanswer\nq\ta\tb\nq2\t\tc\n", encoding="utf-8")
    with pytest.raises(
        DataError, match=r"'answer' twice \(columns 2 and 3\).*output=answer\.1 \(or output=answer\)"
    ):
        load_dataset_report(str(both))
    assert (
        load_dataset_report(str(both), mapping={"output": "answer.1"}).conversations[1][-1]["content"] == "c"
    )
    # a repeated column no field uses does not stop the file
    other = tmp_path / "notes.csv"
    other.write_text("instruction,output,note,note\nq,a,x,y\n", encoding="utf-8")
    assert len(load_dataset_report(str(other)).examples) == 1


@pytest.mark.parametrize(
    "invisible", ["\u200b", "\ufeff", "\u200b\u200c\u200d", " \u2060\u00a0\u3000", "\u00ad\u2028"]
)
def test_answers_of_invisible_characters_are_empty(tmp_path, invisible):
    rows = [dict(r) for r in ALPACA]
    rows[2]["output"] = invisible
    rows[5]["instruction"] = invisible
    path = tmp_path / "inv.jsonl"
    path.write_bytes(jsonl(rows))
    report = report_for(path)
    reasons = dict(report.dropped)
    assert sorted(reasons) == [3, 6] and len(report.examples) == 8
    assert reasons[3].startswith("output is empty") and reasons[6].startswith("instruction is empty")
    assert all("invisible" in r for r in reasons.values())
    assert report.dropped_by_reason() == {reasons[3]: 1, reasons[6]: 1}
    chat = [
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": a}]}
        for a in ("hello", invisible)
    ]
    path.write_bytes(jsonl(chat))
    report = load_dataset_report(str(path))
    assert dict(report.dropped) == {
        2: "message 2 (assistant) is empty (it holds only invisible characters such as zero-width spaces)"
    }
    text = tmp_path / "text.jsonl"
    text.write_bytes(jsonl([{"text": "a document"}, {"text": invisible}]))
    assert [r for r, _ in load_dataset_report(str(text)).dropped] == [2]


def test_invisible_input_and_system_are_left_out_and_visible_text_kept(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_bytes(
        jsonl(
            [{"system": "\u200b", "instruction": "Hi\u200b there", "input": "\ufeff", "output": "Yes\u200b"}]
        )
    )
    report = load_dataset_report(str(path))
    assert report.conversations == [
        [{"role": "user", "content": "Hi\u200b there"}, {"role": "assistant", "content": "Yes\u200b"}]
    ]


def _zip(members):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def _parquet():
    buf = io.BytesIO()
    pd.DataFrame(ALPACA).to_parquet(buf)
    return buf.getvalue()


@pytest.mark.parametrize(
    "name,make",
    [
        ("d.jsonl.gz", lambda: gzip.compress(jsonl(ALPACA))),
        ("d.csv.gz", lambda: gzip.compress(pd.DataFrame(ALPACA).to_csv(index=False).encode())),
        ("d.json.gz", lambda: gzip.compress(json.dumps(ALPACA).encode())),
        ("d.parquet.gz", lambda: gzip.compress(_parquet())),
        ("upload.gz", lambda: gzip.compress(jsonl(ALPACA))),  # no inner suffix: content decides
        ("d.jsonl", lambda: gzip.compress(jsonl(ALPACA))),  # gzip behind a plain extension: the bytes decide
        ("d.zip", lambda: _zip({"data/train.jsonl": jsonl(ALPACA), "__MACOSX/._train.jsonl": b"x"})),
        ("d.zip", lambda: _zip({"train.csv": pd.DataFrame(ALPACA).to_csv(index=False), "README.txt": "hi"})),
        ("d.zip", lambda: _zip({"train.parquet": _parquet()})),
        ("d.zip", lambda: _zip({"train.jsonl.gz": gzip.compress(jsonl(ALPACA))})),
        ("d.xlsx", lambda: _zip({"train.jsonl": jsonl(ALPACA)})),  # a zip named .xlsx
    ],
)
def test_gzip_and_one_file_zip_are_read(tmp_path, name, make):
    path = tmp_path / name
    path.write_bytes(make())
    report = report_for(path)
    assert report.dataset_format == "alpaca" and len(report.examples) == 10 and report.dropped == []
    assert report.conversations[4][-1]["content"] == "4"


def _tar(gz):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz" if gz else "w") as t:
        data = jsonl(ALPACA)
        info = tarfile.TarInfo("train.jsonl")
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.mark.parametrize(
    "name,make,message",
    [
        (
            "d.zip",
            lambda: _zip({"a.jsonl": jsonl(ALPACA), "b.csv": "x,y\n"}),
            "holds 2 data files (a.jsonl, b.csv)",
        ),
        (
            "d.zip",
            lambda: _zip({"notes.txt": "hi", "img.png": b"\x89PNG"}),
            "holds no data file (notes.txt, img.png)",
        ),
        ("d.zip", lambda: _zip({}), "holds no data file (nothing)"),
        ("d.jsonl.bz2", lambda: bz2.compress(jsonl(ALPACA)), "bzip2"),
        ("d.jsonl", lambda: bz2.compress(jsonl(ALPACA)), "bzip2"),
        ("d.jsonl.xz", lambda: lzma.compress(jsonl(ALPACA)), "xz"),
        ("d.jsonl.zst", lambda: b"\x28\xb5\x2f\xfd" + b"\x00" * 32, "zstandard"),
        ("d.tar", lambda: _tar(False), "tar archive"),
        ("d.tar.gz", lambda: _tar(True), "tar archive (.tar) inside gzip"),
        ("d.jsonl.gz", lambda: gzip.compress(jsonl(ALPACA))[:20], "cannot be decompressed"),
    ],
)
def test_other_compression_and_ambiguous_zips_are_refused_by_name(tmp_path, name, make, message):
    path = tmp_path / name
    path.write_bytes(make())
    with pytest.raises(DataError) as err:
        report_for(path)
    assert message in str(err.value)
    assert "UTF-8" not in str(err.value) and "Excel" not in str(err.value)


def test_decompressed_size_is_limited(tmp_path):
    path = tmp_path / "big.jsonl.gz"
    path.write_bytes(gzip.compress(jsonl(ALPACA * 200)))
    with pytest.raises(DataError, match="once decompressed"):
        load_dataset_report(str(path), max_bytes=10_000)
    path = tmp_path / "big.zip"
    path.write_bytes(_zip({"t.jsonl": jsonl(ALPACA * 200)}))
    with pytest.raises(DataError, match="once unzipped"):
        load_dataset_report(str(path), max_bytes=10_000)


def test_a_real_xlsx_still_reads(tmp_path):
    path = tmp_path / "d.xlsx"
    pd.DataFrame(ALPACA).to_excel(path, index=False)
    assert len(load_dataset_report(str(path)).examples) == 10
