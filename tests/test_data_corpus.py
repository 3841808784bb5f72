"""A corpus of small files, generated here, one per kind a user really has, each with its expected outcome.

Each case writes a file and states either the rows it must load (and what the first example must look like) or the
message it must be refused with (naming the row / field / value).
"""

from __future__ import annotations

import json

import pandas as pd
import pytest

from core.data import load_dataset_report
from core.datafiles import read_records
from core.errors import DataError

ALPACA = [
    {"instruction": "Add the numbers", "input": "2 and 3", "output": "5"},
    {"instruction": "Capital of France?", "input": "", "output": "Paris"},
]


def jsonl(rows):
    return "\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n"


def write(tmp_path, name, content):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return str(path)


# (case id, file name, content, expected format, expected usable rows, (row, role, text) of an expected message)
LOADS = [
    (
        "csv",
        "d.csv",
        "instruction,input,output\nAdd the numbers,2 and 3,5\nCapital of France?,,Paris\n",
        "alpaca",
        2,
        (0, "user", "Add the numbers\n\n2 and 3"),
    ),
    (
        "tsv",
        "d.tsv",
        "instruction\tinput\toutput\nAdd the numbers\t2 and 3\t5\nCapital?\t\tParis\n",
        "alpaca",
        2,
        (1, "assistant", "Paris"),
    ),
    ("json array", "d.json", json.dumps(ALPACA), "alpaca", 2, (1, "assistant", "Paris")),
    (
        "json object of columns",
        "d.json",
        json.dumps({"prompt": ["a?", "b?"], "completion": ["A", "B"]}),
        "prompt_completion",
        2,
        (1, "assistant", "B"),
    ),
    (
        "jsonl with empty lines",
        "d.jsonl",
        "\n" + jsonl(ALPACA).replace("\n", "\n\n"),
        "alpaca",
        2,
        (0, "assistant", "5"),
    ),
    ("upper-case extension", "D.JSONL", jsonl(ALPACA), "alpaca", 2, (0, "assistant", "5")),
    ("extension lies: jsonl named .csv", "d.csv", jsonl(ALPACA), "alpaca", 2, (0, "assistant", "5")),
    ("no extension", "data", "instruction,output\nSay hi,hi\n", "alpaca", 1, (0, "assistant", "hi")),
    (
        "utf-8 bom + crlf",
        "d.csv",
        "\ufeffinstruction,output\r\nSay hi,hi there\r\n",
        "alpaca",
        1,
        (0, "assistant", "hi there"),
    ),
    (
        "utf-16",
        "d.csv",
        "instruction,output\nSay hi,héllo\n".encode("utf-16"),
        "alpaca",
        1,
        (0, "assistant", "héllo"),
    ),
    (
        "headers with spaces and control chars",
        "d.csv",
        " Instruction\x07 , output \nSay hi,hi\n",
        "alpaca",
        1,
        (0, "user", "Say hi"),
    ),
    (
        "non-ascii headers mapped by hand",
        "d.csv",
        "指令,回答\n你好吗,我很好\n",
        "alpaca",
        1,
        (0, "assistant", "我很好"),
    ),
    (
        "quoted newlines and commas",
        "d.csv",
        'instruction,output\n"Line one\nline two","a, b"\n',
        "alpaca",
        1,
        (0, "user", "Line one\nline two"),
    ),
    (
        "numbers in text columns",
        "d.jsonl",
        jsonl([{"instruction": "2+2?", "output": 4}, {"instruction": 7, "output": 1.5}]),
        "alpaca",
        2,
        (1, "assistant", "1.5"),
    ),
    (
        "missing, extra and null fields",
        "d.jsonl",
        jsonl(
            [
                {"instruction": "a", "output": "b", "extra": [1]},
                {"instruction": "c"},
                {"instruction": None, "output": "x"},
                {"instruction": "d", "input": None, "output": "e"},
            ]
        ),
        "alpaca",
        2,
        (1, "assistant", "e"),
    ),
    (
        "null in the first 1000 rows, text later",
        "d.jsonl",
        jsonl(
            [{"instruction": f"q{i}", "input": None, "output": "a"} for i in range(1200)]
            + [{"instruction": "q", "input": "late text", "output": "a"}]
        ),
        "alpaca",
        1201,
        (1200, "user", "q\n\nlate text"),
    ),
    (
        "alpaca with system",
        "d.jsonl",
        jsonl([{"system": "Be brief.", "instruction": "Hi", "output": "Hello"}]),
        "alpaca",
        1,
        (0, "system", "Be brief."),
    ),
    (
        "prompt / completion",
        "d.jsonl",
        jsonl([{"prompt": "2+2=", "completion": "4"}]),
        "prompt_completion",
        1,
        (0, "assistant", "4"),
    ),
    (
        "chat messages",
        "d.jsonl",
        jsonl([{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}]),
        "messages",
        1,
        (0, "assistant", "hello"),
    ),
    (
        "messages as a JSON string in a CSV cell",
        "d.csv",
        'messages\n"[{""role"": ""user"", ""content"": ""hi""}, {""role"": ""assistant"", ""content"": ""yo""}]"\n',
        "messages",
        1,
        (0, "assistant", "yo"),
    ),
    (
        "sharegpt with other role names",
        "d.jsonl",
        jsonl(
            [
                {
                    "conversations": [
                        {"from": "system", "value": "Be kind."},
                        {"from": "human", "value": "hi"},
                        {"from": "gpt", "value": "hello"},
                        {"from": "user", "value": "bye"},
                        {"from": "bot", "value": "ciao"},
                    ]
                }
            ]
        ),
        "sharegpt",
        1,
        (0, "assistant", "ciao"),
    ),
    ("raw text", "d.jsonl", jsonl([{"text": "Once upon a time."}, {"text": "The end."}]), "text", 2, None),
    (
        "semicolon csv (european spreadsheet export)",
        "d.csv",
        "instruction;output\nSay hi;Hello, world\n",
        "alpaca",
        1,
        (0, "assistant", "Hello, world"),
    ),
    (
        "tsv keeps quotes",
        "d.tsv",
        'instruction\toutput\n"Hello" she said\tBonjour\n',
        "alpaca",
        1,
        (0, "user", '"Hello" she said'),
    ),
    (
        "duplicate header names",
        "d.csv",
        "instruction,output,output\nq1,the real answer,\n",
        "alpaca",
        1,
        (0, "assistant", "the real answer"),
    ),
    (
        "wrapped json {data: [...]}",
        "d.json",
        json.dumps({"data": ALPACA}),
        "alpaca",
        2,
        (1, "assistant", "Paris"),
    ),
    (
        "a 200,000-character answer",
        "d.csv",
        "instruction,output\nq," + "x" * 200_000 + "\n",
        "alpaca",
        1,
        None,
    ),
    (
        "conversations holding role/content",
        "d.jsonl",
        jsonl(
            [{"conversations": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}]
        ),
        "sharegpt",
        1,
        (0, "assistant", "yo"),
    ),
]


@pytest.mark.parametrize("case,name,content,fmt,rows,expect", LOADS, ids=[c[0] for c in LOADS])
def test_file_loads(tmp_path, case, name, content, fmt, rows, expect):
    mapping = {"instruction": "指令", "output": "回答"} if "non-ascii" in case else None
    report = load_dataset_report(write(tmp_path, name, content), mapping=mapping)
    assert report.dataset_format == fmt
    assert len(report.examples) == rows, report.summary()
    if expect is not None:
        index, role, text = expect
        assert (role, text) in report.examples[index].messages
    elif fmt == "text":
        assert report.examples[0].text == "Once upon a time."


def test_parquet_chat_parts_are_plain_text(tmp_path):
    rows = [
        {
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "p1"}]},
                {"role": "assistant", "content": [{"type": "text", "text": "a1"}]},
            ]
        }
    ]
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "chat.parquet")
    report = load_dataset_report(str(tmp_path / "chat.parquet"))
    assert report.examples[0].messages == (("user", "p1"), ("assistant", "a1"))


def test_parquet_and_xlsx(tmp_path):
    frame = pd.DataFrame(ALPACA)
    frame.to_parquet(tmp_path / "d.parquet")
    frame.to_excel(tmp_path / "d.xlsx", index=False)
    (tmp_path / "d.parquet").rename(tmp_path / "lying.json")  # content wins over the extension
    for name in ("lying.json", "d.xlsx"):
        report = load_dataset_report(str(tmp_path / name))
        assert report.dataset_format == "alpaca" and len(report.examples) == 2
        assert ("assistant", "Paris") in report.examples[1].messages


def test_saved_dataset_folder_loads_through_datasets(tmp_path):
    folder = tmp_path / "my_dataset"
    folder.mkdir()
    (folder / "train.jsonl").write_text(jsonl(ALPACA))
    report = load_dataset_report(str(folder))
    assert report.kind == "folder" and len(report.examples) == 2


# (case id, file name, content, kwargs, message the DataError must contain)
REFUSALS = [
    (
        "unquoted comma shifts columns",
        "d.csv",
        "instruction,output\nSay hi,Hello, world\n",
        {},
        "row 1: has 3 fields but the header has 2",
    ),
    (
        "raw text chosen for instruction tuning",
        "d.jsonl",
        jsonl([{"text": "Once upon a time."}]),
        {"dataset_format": "alpaca"},
        "holds raw text",
    ),
    (
        "instruction file chosen as raw text",
        "d.jsonl",
        jsonl(ALPACA),
        {"dataset_format": "text"},
        "looks like alpaca data",
    ),
    (
        "mapping names a missing column",
        "d.jsonl",
        jsonl(ALPACA),
        {"mapping": {"output": "answer"}},
        "column 'answer' (for output) is not in the file",
    ),
    (
        "unknown format",
        "d.jsonl",
        jsonl([{"foo": 1, "bar": 2}]),
        {},
        "Cannot tell the format from the columns",
    ),
    ("zero usable rows", "d.jsonl", jsonl([{"instruction": "a", "output": ""}]), {}, "No usable rows"),
    ("binary file", "d.csv", bytes(range(256)) * 4, {}, "not UTF-8 or UTF-16"),
    ("too large for the limit", "d.jsonl", jsonl(ALPACA * 50), {"max_bytes": 1000}, "over the 0 MiB limit"),
    ("json array of strings", "d.json", json.dumps(["a", "b"]), {}, "element 1 of the array is a str"),
    ("only bad json lines", "d.jsonl", '{"instruction": \n[1]\n', {}, "line 1 is not valid JSON at column"),
    (
        "sharegpt with an unknown role",
        "d.jsonl",
        jsonl([{"conversations": [{"from": "narrator", "value": "x"}, {"from": "gpt", "value": "y"}]}]),
        {},
        "row 1: message 1 has role 'narrator'",
    ),
]


@pytest.mark.parametrize("case,name,content,kwargs,message", REFUSALS, ids=[c[0] for c in REFUSALS])
def test_file_is_refused_with_a_reason(tmp_path, case, name, content, kwargs, message):
    with pytest.raises(DataError) as info:
        load_dataset_report(write(tmp_path, name, content), **kwargs)
    assert message in str(info.value)


def test_mixed_types_become_text_without_arrow_errors(tmp_path):
    rows = [{"instruction": "q", "output": v} for v in (1, 2.5, True, "text", None, [1, 2], {"a": 1})]
    records, kind = read_records(write(tmp_path, "d.jsonl", jsonl(rows)))
    assert kind == "jsonl" and [r["output"] for r in records][:5] == ["1", "2.5", "true", "text", None]
    report = load_dataset_report(write(tmp_path, "d2.jsonl", jsonl(rows)))
    assert len(report.examples) == 6 and report.dropped == [(5, "output is empty")]
    assert ("assistant", '{"a": 1}') in report.examples[-1].messages


def test_non_alternating_roles_are_kept_with_a_note(tmp_path):
    rows = [
        {
            "messages": [
                {"role": "user", "content": "a"},
                {"role": "user", "content": "b"},
                {"role": "assistant", "content": "c"},
            ]
        }
    ]
    report = load_dataset_report(write(tmp_path, "d.jsonl", jsonl(rows)))
    assert report.notes == [(1, "roles do not alternate: turn 2 is user, expected assistant")]
    assert list(report.issues_frame().itertuples(index=False, name=None)) == [
        (1, "kept", "roles do not alternate: turn 2 is user, expected assistant")
    ]


def test_fold_system_message(tmp_path):
    rows = [{"system": "Be brief.", "instruction": "Hi", "output": "Hello"}]
    report = load_dataset_report(write(tmp_path, "d.jsonl", jsonl(rows)), fold_system_message=True)
    assert report.examples[0].messages[0] == ("user", "Be brief.\n\nHi")
