"""Reading, detecting and tokenizing data with the embedded model's real tokenizer and chat template."""

import json

import pytest

from core.data import load_dataset_report
from core.errors import DataError
from core.formats import Example
from core.model import load_tokenizer
from core.tokenization import tokenize_example, tokenize_report
from tests.conftest import ASSETS


@pytest.fixture(scope="module")
def tokenizer(embedded_path):
    return load_tokenizer(embedded_path)


@pytest.mark.parametrize(
    "name,fmt",
    [
        ("humaneval_alpaca.jsonl", "alpaca"),
        ("humaneval_alpaca.csv", "alpaca"),
        ("humaneval_messages.jsonl", "messages"),
    ],
)
def test_samples_load_all_164_rows(name, fmt):
    report = load_dataset_report(str(ASSETS / name))
    assert report.dataset_format == fmt
    assert report.rows_read == 164 and len(report.conversations) == 164 and report.dropped == []
    assert list(report.preview().columns) == ["row", "system", "user", "assistant", "turns"]
    assert report.conversations[0][-1]["role"] == "assistant"


def test_alpaca_csv_and_jsonl_normalise_identically():
    a = load_dataset_report(str(ASSETS / "humaneval_alpaca.jsonl")).conversations
    b = load_dataset_report(str(ASSETS / "humaneval_alpaca.csv")).conversations
    assert a == b


def test_bad_rows_are_listed_by_number_not_fatal(tmp_path):
    path = tmp_path / "d.jsonl"
    rows = [
        {"instruction": "Say hi", "output": "hi"},
        {"instruction": "", "output": "x"},
        {"instruction": "Empty answer", "output": "  "},
        {"instruction": "Add", "input": "1+1", "output": "2"},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    report = load_dataset_report(str(path))
    assert len(report.conversations) == 2 and report.row_numbers == [1, 4]
    assert report.dropped == [(2, "instruction is empty"), (3, "output is empty")]
    assert report.conversations[1][0]["content"] == "Add\n\n1+1"


@pytest.mark.parametrize(
    "content,message",
    [
        ('{"instruction": "c", "output": \n', "line 1 is not valid JSON at column"),
        ('[{"instruction": "a"', "not valid JSON"),
        (
            '{"foo": "a", "bar": "b"}\n',
            "Cannot tell the format from the columns ['foo', 'bar']",
        ),
        ("", "has no rows"),
    ],
)
def test_unusable_files_say_what_is_wrong(tmp_path, content, message):
    path = tmp_path / ("d.json" if content.startswith("[") else "d.jsonl")
    path.write_text(content)
    with pytest.raises(DataError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_dataset_report(str(path))


def test_one_broken_jsonl_line_is_that_rows_problem_not_the_files(tmp_path):
    """A 200 MB upload with one bad line was refused whole; the line is now a dropped row, named."""
    path = tmp_path / "d.jsonl"
    good = json.dumps({"instruction": "a", "output": "b"})
    path.write_text(f'{good}\n{{"instruction": "c", "output": "tab\tinside"}}\n[1, 2]\n{good}\n')
    report = load_dataset_report(str(path))
    assert len(report.examples) == 2 and report.row_numbers == [1, 4]
    assert report.dropped == [
        (2, "line 2 is not valid JSON at column 36 (Invalid control character); fix or remove it"),
        (3, "line 3 is a JSON list, not an object; fix or remove it"),
    ]


def test_wrong_extension_and_missing_file(tmp_path):
    (tmp_path / "d.txt").write_text("hello")
    with pytest.raises(DataError, match="d.txt: cannot tell the file type of .txt"):
        load_dataset_report(str(tmp_path / "d.txt"))
    with pytest.raises(DataError, match="file not found"):
        load_dataset_report(str(tmp_path / "nope.jsonl"))


def test_messages_with_bad_roles_are_dropped_with_reason(tmp_path):
    path = tmp_path / "chat.jsonl"
    good = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
    bad = {"messages": [{"role": "narrator", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
    no_answer = {"messages": [{"role": "user", "content": "hi"}]}
    path.write_text("\n".join(json.dumps(r) for r in (good, bad, no_answer)))
    report = load_dataset_report(str(path))
    assert report.row_numbers == [1]
    assert report.dropped[0][0] == 2 and "role 'narrator'" in report.dropped[0][1]
    assert report.dropped[1] == (3, "no assistant message to learn from")


def test_labels_cover_the_answer_and_its_end_of_turn_token(tokenizer):
    assert tokenizer.pad_token_id == tokenizer.eos_token_id  # SmolLM2: pad == eos == <|im_end|>
    msgs = [
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": "And 3+3?"},
        {"role": "assistant", "content": "6"},
    ]
    ids, labels = tokenize_example(tokenizer, Example.from_messages(msgs), 512)
    assert len(ids) == len(labels)
    trained = tokenizer.decode([t for t, lab in zip(ids, labels) if lab != -100])
    assert trained.count("<|im_end|>") == 2 and "4" in trained and "6" in trained
    assert "What is 2+2?" not in trained and "<|im_start|>assistant" not in trained
    prompt_only = tokenizer.decode([t for t, lab in zip(ids, labels) if lab == -100])
    assert "What is 2+2?" in prompt_only and "And 3+3?" in prompt_only


def test_rows_whose_answer_is_truncated_away_are_dropped(tokenizer):
    report = load_dataset_report(str(ASSETS / "humaneval_alpaca.jsonl"))
    tok = tokenize_report(report, tokenizer, max_length=128)
    features, dropped = tok.features, tok.dropped
    assert len(features) + len(dropped) == 164 and dropped
    assert report.stages["after tokenizing"] == len(features) and report.stages["read"] == 164
    assert all("max_length=128" in why for _, why in dropped)
    assert all(any(lab != -100 for lab in f["labels"]) for f in features)
    assert all(len(f["input_ids"]) <= 128 for f in features)
    with pytest.raises(DataError, match="No row has answer tokens"):
        tokenize_report(report, tokenizer, max_length=16)


def test_csv_row_with_an_unquoted_comma_is_reported_not_shifted(tmp_path):
    path = tmp_path / "extra.csv"
    path.write_text('instruction,output\nSay hi,"Hello, world"\nAdd 2 and 3,The answer is 5, obviously\n')
    report = load_dataset_report(str(path))
    assert report.row_numbers == [1]
    assert report.conversations[0][1]["content"] == "Hello, world"
    assert report.dropped == [
        (2, "has 3 fields but the header has 2; put text that contains commas in double quotes")
    ]


def test_json_object_of_columns_and_bad_objects(tmp_path):
    path = tmp_path / "cols.json"
    path.write_text(json.dumps({"instruction": ["a", "b"], "output": ["1", "2"]}, indent=2))
    assert len(load_dataset_report(str(path)).conversations) == 2
    path.write_text(json.dumps({"data": {"instruction": "a"}}, indent=2))
    with pytest.raises(DataError, match="expected an array of row objects"):
        load_dataset_report(str(path))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="is a folder with no data files"):
        load_dataset_report(str(tmp_path / "empty"))


def test_openai_content_parts_and_assistant_first(tmp_path):
    path = tmp_path / "parts.jsonl"
    rows = [
        {
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "What is 2+2?"}]},
                {"role": "assistant", "content": "4"},
            ]
        },
        {
            "messages": [
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]},
                {"role": "assistant", "content": "a cat"},
            ]
        },
        {
            "messages": [
                {"role": "assistant", "content": "Hi!"},
                {"role": "user", "content": "hey"},
                {"role": "assistant", "content": "yes?"},
            ]
        },
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    report = load_dataset_report(str(path))
    assert report.conversations[0][0]["content"] == "What is 2+2?"
    assert report.dropped[0] == (2, "message 1 has a 'image_url' part; only text can be trained on")
    assert report.dropped[1][0] == 3 and "starts with an assistant turn" in report.dropped[1][1]


def test_validation_split_fraction_count_and_tiny_datasets():
    from core.data import split_train_eval

    train, held, note = split_train_eval(100, 0.1, seed=1)
    assert len(held) == 10 and len(train) == 90 and not set(train) & set(held)
    assert split_train_eval(100, 0.1, seed=1) == (train, held, note)  # seeded
    assert split_train_eval(100, 0.1, seed=2)[1] != held
    assert len(split_train_eval(100, 7, seed=1)[1]) == 7  # a count
    train, held, note = split_train_eval(8, 0.2, seed=1)
    assert held == [] and "Evaluation turned off" in note


def test_template_that_refuses_system_turns_is_reported_with_the_fix(tmp_path, embedded_path):
    """A Gemma-style template raises on a system role: the row is dropped with the fix; folding keeps it."""
    tokenizer = load_tokenizer(embedded_path)
    tokenizer.chat_template = (
        "{% for m in messages %}{% if m['role'] == 'system' %}"
        "{{ raise_exception('System role not supported') }}{% endif %}"
        "<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    path = tmp_path / "sys.jsonl"
    rows = [
        {"system": "Be brief.", "instruction": "Hi", "output": "Hello"},
        {"instruction": "Bye", "output": "Ciao"},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    report = load_dataset_report(str(path))
    tok = tokenize_report(report, tokenizer, 128)
    assert tok.row_numbers == [2]
    assert tok.dropped[0][0] == 1 and "System role not supported" in tok.dropped[0][1]
    assert "fold system message" in tok.dropped[0][1]
    folded = load_dataset_report(str(path), fold_system_message=True)
    assert tokenize_report(folded, tokenizer, 128).row_numbers == [1, 2]
    # answers only by default; the switch trains on every token of the rendered chat
    whole = tokenize_report(
        load_dataset_report(str(path), fold_system_message=True), tokenizer, 128, completion_only_loss=False
    )
    answers = tokenize_report(load_dataset_report(str(path), fold_system_message=True), tokenizer, 128)
    assert all(lab != -100 for lab in whole.features[0]["labels"])
    assert answers.supervised[0] < whole.supervised[0] == len(whole.features[0]["input_ids"])
