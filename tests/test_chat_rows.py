"""Chat rows with tool calls, tool results and reasoning, through real chat templates in the embedded tokenizer.

Two templates are written into the embedded model's (real) tokenizer: one modelled on Qwen2.5's, which renders tool
schemas, tool calls and tool results; one modelled on Qwen3's, which also renders reasoning but drops it from every
answer before the last user message, so a conversation's prefix renders differently from the whole. SmolLM2's own
template renders none of these.
"""

from __future__ import annotations

import json

import pytest

from core.data import load_dataset_report
from core.formats import Example, alternation_problem, normalise_row
from core.model import load_tokenizer
from core.tokenization import render_example, tokenize_report

# Modelled on Qwen2.5-Instruct's template: tool schemas in a system turn, each call as <tool_call> JSON after the
# answer's text, tool results inside a user turn.
TOOLS_TEMPLATE = """
{%- if tools %}
    {{- '<|im_start|>system\\n' }}
    {%- if messages[0].role == 'system' %}{{- messages[0].content + '\\n\\n' }}{%- endif %}
    {{- '# Tools\\n<tools>' }}
    {%- for tool in tools %}{{- '\\n' + (tool | tojson) }}{%- endfor %}
    {{- '\\n</tools><|im_end|>\\n' }}
{%- elif messages[0].role == 'system' %}
    {{- '<|im_start|>system\\n' + messages[0].content + '<|im_end|>\\n' }}
{%- endif %}
{%- for message in messages %}
    {%- if message.role == 'user' or (message.role == 'system' and not loop.first) %}
        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}
    {%- elif message.role == 'assistant' %}
        {{- '<|im_start|>assistant' }}
        {%- if message.content %}{{- '\\n' + message.content }}{%- endif %}
        {%- for call in message.tool_calls or [] %}
            {{- '\\n<tool_call>\\n{"name": "' + call.function.name + '", "arguments": ' }}
            {{- call.function.arguments | tojson }}
            {{- '}\\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\\n' }}
    {%- elif message.role == 'tool' %}
        {{- '<|im_start|>user\\n<tool_response>\\n' + message.content + '\\n</tool_response><|im_end|>\\n' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}
"""

# Modelled on Qwen3's template: reasoning (reasoning_content, or a <think> part of the content) is rendered only for
# answers after the last user message, the last answer always gets a <think> block (empty when it has no reasoning),
# and earlier answers are rendered bare.
REASONING_TEMPLATE = """
{%- if messages[0].role == 'system' %}
    {{- '<|im_start|>system\\n' + messages[0].content + '<|im_end|>\\n' }}
{%- endif %}
{%- set ns = namespace(last_query=messages|length - 1) %}
{%- for message in messages %}
    {%- if message.role == 'user' %}{%- set ns.last_query = loop.index0 %}{%- endif %}
{%- endfor %}
{%- for message in messages %}
    {%- if message.role == 'user' or (message.role == 'system' and not loop.first) %}
        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}
    {%- elif message.role == 'assistant' %}
        {%- set content = message.content %}
        {%- set reasoning = '' %}
        {%- if message.reasoning_content is string %}
            {%- set reasoning = message.reasoning_content %}
        {%- elif '</think>' in content %}
            {%- set reasoning = content.split('</think>')[0].split('<think>')[-1].strip('\\n') %}
            {%- set content = content.split('</think>')[-1].lstrip('\\n') %}
        {%- endif %}
        {%- if loop.index0 > ns.last_query and (loop.last or reasoning) %}
            {{- '<|im_start|>assistant\\n<think>\\n' + reasoning.strip('\\n') + '\\n</think>\\n\\n' }}
            {{- content.lstrip('\\n') }}
        {%- else %}
            {{- '<|im_start|>assistant\\n' + content }}
        {%- endif %}
        {%- for call in message.tool_calls or [] %}
            {%- if content or not loop.first %}{{- '\\n' }}{%- endif %}
            {{- '<tool_call>\\n{"name": "' + call.function.name + '", "arguments": ' }}
            {{- call.function.arguments | tojson }}
            {{- '}\\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\\n' }}
    {%- elif message.role == 'tool' %}
        {{- '<|im_start|>user\\n<tool_response>\\n' + message.content + '\\n</tool_response><|im_end|>\\n' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}
"""

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current temperature in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
CALL = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
}
CALL_TEXT = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call><|im_end|>\n'


def user(text):
    return {"role": "user", "content": text}


def assistant(text, **extra):
    return {"role": "assistant", "content": text, **extra}


def tool(text):
    return {"role": "tool", "tool_call_id": "call_1", "content": text}


# The issue's rows: a call beside text (the call was dropped), and content null + call + a tool turn (was "empty").
CALL_WITH_TEXT = [user("Weather in Paris?"), assistant("Let me check.", tool_calls=[CALL])]
CALL_ONLY = [
    user("Weather in Paris?"),
    assistant(None, tool_calls=[CALL]),
    tool("18 C"),
    assistant("It is 18 C."),
]
PLAIN = [user("What is 2+2?"), assistant("4")]


@pytest.fixture(scope="module")
def smollm2(embedded_path):
    """The embedded tokenizer with its own template, which renders no tool calls and no reasoning."""
    return load_tokenizer(embedded_path)


@pytest.fixture(scope="module")
def tools_tok(embedded_path):
    tok = load_tokenizer(embedded_path)
    tok.chat_template = TOOLS_TEMPLATE
    return tok


@pytest.fixture(scope="module")
def reasoning_tok(embedded_path):
    tok = load_tokenizer(embedded_path)
    tok.chat_template = REASONING_TEMPLATE
    return tok


def write_rows(tmp_path, rows, name="chat.jsonl"):
    path = tmp_path / name
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return str(path)


def trained_runs(tokenizer, feature):
    """The trained-on tokens of one feature, decoded run by run (one run per answer)."""
    runs, current = [], []
    for tok, lab in zip(feature["input_ids"], feature["labels"]):
        if lab != -100:
            current.append(tok)
        elif current:
            runs.append(tokenizer.decode(current))
            current = []
    if current:
        runs.append(tokenizer.decode(current))
    return runs


def test_tool_calls_are_rendered_and_trained_under_a_template_that_supports_them(tmp_path, tools_tok):
    rows = [{"messages": CALL_WITH_TEXT}, {"messages": CALL_ONLY, "tools": [WEATHER_TOOL]}]
    report = load_dataset_report(write_rows(tmp_path, rows))
    assert report.dropped == [] and report.mapping == {"messages": "messages", "tools": "tools"}
    tok = tokenize_report(report, tools_tok, max_length=512)
    assert tok.row_numbers == [1, 2] and tok.dropped == []
    # the call is inside the labelled span, after the answer's text; the prompt is not
    assert trained_runs(tools_tok, tok.features[0]) == ["Let me check.\n" + CALL_TEXT]
    # content null + call: the call is the answer; the tool's result is context, the final answer a target
    assert trained_runs(tools_tok, tok.features[1]) == [CALL_TEXT, "It is 18 C.<|im_end|>\n"]
    full = tools_tok.decode(tok.features[1]["input_ids"])
    assert (
        '"name": "get_weather", "description": "Current temperature in a city"' in full
    )  # the schema is shown
    assert "<tool_response>\n18 C\n</tool_response>" in full
    labelled = "".join(trained_runs(tools_tok, tok.features[1]))
    assert "18 C\n</tool_response>" not in labelled and "Current temperature" not in labelled


def test_tool_call_rows_are_refused_naming_tool_calls_when_the_template_cannot_render_them(tmp_path, smollm2):
    rows = [{"messages": PLAIN}, {"messages": CALL_WITH_TEXT}, {"messages": CALL_ONLY}]
    report = load_dataset_report(write_rows(tmp_path, rows))
    assert report.dropped == [] and len(report.examples) == 3  # content null is not "empty": nothing lost yet
    tok = tokenize_report(report, smollm2, max_length=512)
    assert tok.row_numbers == [1]
    assert [row for row, _ in report.dropped] == [2, 3]
    for _, why in report.dropped:
        assert (
            why.startswith("message 2 (assistant) has tool calls (get_weather)") and "does not render" in why
        )
        assert "empty" not in why
    assert "row 3: message 2 (assistant) has tool calls (get_weather)" in report.summary()
    issues = report.issues_frame()
    assert list(issues["row"]) == [2, 3] and all("tool calls" in r for r in issues["reason"])


def test_tool_turns_and_schemas_alone_are_refused_by_a_template_without_tools(tmp_path, smollm2):
    rows = [
        {"messages": [user("Weather?"), assistant("I will look."), tool("18 C"), assistant("18 C.")]},
        {"messages": PLAIN, "tools": [WEATHER_TOOL]},
    ]
    report = load_dataset_report(write_rows(tmp_path, rows))
    with pytest.raises(Exception, match="No row has answer tokens"):
        tokenize_report(report, smollm2, max_length=512)
    reasons = dict(report.dropped)
    assert reasons[1].startswith("message 3 is a tool result") and "tool calls" in reasons[1]
    assert reasons[2].startswith("the row offers tools (get_weather)") and "tool schemas" in reasons[2]


def test_sharegpt_function_call_and_observation_turns_are_tool_calls(tmp_path, tools_tok):
    turns = [
        {"from": "human", "value": "Weather in Paris?"},
        {
            "from": "function_call",
            "value": json.dumps({"name": "get_weather", "arguments": {"city": "Paris"}}),
        },
        {"from": "observation", "value": "18 C"},
        {"from": "gpt", "value": "It is 18 C."},
    ]
    report = load_dataset_report(
        write_rows(tmp_path, [{"conversations": turns, "tools": json.dumps([WEATHER_TOOL])}])
    )
    assert report.dataset_format == "sharegpt" and report.notes == []
    assert [r for r, _ in report.examples[0].messages] == ["user", "assistant", "tool", "assistant"]
    tok = tokenize_report(report, tools_tok, max_length=512)
    assert trained_runs(tools_tok, tok.features[0]) == [CALL_TEXT, "It is 18 C.<|im_end|>\n"]


@pytest.mark.parametrize(
    "message,reason",
    [
        (
            assistant(None, tool_calls=[{"function": {"name": "get_weather", "arguments": "{city: Paris}"}}]),
            "message 2 (assistant) tool call 1 (get_weather): arguments are not valid JSON",
        ),
        (
            assistant(None, tool_calls=[{"function": {"arguments": "{}"}}]),
            "message 2 (assistant) tool call 1 has no function name",
        ),
        (
            assistant(None, tool_calls=[{"function": {"name": "f", "arguments": "[1, 2]"}}]),
            "message 2 (assistant) tool call 1 (f): arguments must be a JSON object",
        ),
        (assistant(None, tool_calls=[]), "message 2 (assistant) is empty"),
        (assistant("4", reasoning_content="x", tool_calls=None), None),
        ({"role": "tool", "content": "  "}, "message 2 (tool) is empty"),
        (
            {"role": "user", "content": "hi", "reasoning_content": "hm"},
            "message 2 (user) has reasoning_content",
        ),
    ],
)
def test_bad_tool_calls_and_misplaced_parts_are_named_when_read(tmp_path, message, reason):
    rows = [{"messages": [user("q"), message, assistant("a")]}, {"messages": PLAIN}]
    report = load_dataset_report(write_rows(tmp_path, rows))
    if reason is None:
        assert report.dropped == []
    else:
        assert report.dropped[0][0] == 1 and report.dropped[0][1].startswith(reason), report.dropped


def test_a_multi_turn_row_without_reasoning_trains_under_a_template_that_rewrites_earlier_turns(
    tmp_path, reasoning_tok
):
    msgs = [user("What is 2+2?"), assistant("4"), user("And 3+3?"), assistant("6")]
    # the template renders the first answer bare once a user turn follows, with an empty <think> block when last
    alone = reasoning_tok.apply_chat_template(msgs[:2], tokenize=False)
    whole = reasoning_tok.apply_chat_template(msgs, tokenize=False)
    assert not whole.startswith(alone)
    report = load_dataset_report(write_rows(tmp_path, [{"messages": msgs}]))
    tok = tokenize_report(report, reasoning_tok, max_length=512)
    assert tok.row_numbers == [1] and tok.dropped == []
    assert trained_runs(reasoning_tok, tok.features[0]) == [
        "4<|im_end|>\n",
        "<think>\n\n</think>\n\n6<|im_end|>\n",
    ]
    assert reasoning_tok.decode(tok.features[0]["input_ids"]) == whole


def test_reasoning_is_trained_exactly_where_the_template_keeps_it_and_refused_where_it_drops_it(
    tmp_path, reasoning_tok, smollm2
):
    last = [user("2+2?"), assistant("4"), user("3+3?"), assistant("6", reasoning_content="Three and three.")]
    inline_last = [user("3+3?"), assistant("<think>Three and three.</think>6")]
    early = [user("2+2?"), assistant("4", reasoning_content="Two twos."), user("3+3?"), assistant("6")]
    early_inline = [user("2+2?"), assistant("<think>Two twos.</think>\n4"), user("3+3?"), assistant("6")]
    rows = [{"messages": m} for m in (last, inline_last, early, early_inline)]
    report = load_dataset_report(write_rows(tmp_path, rows))
    assert report.dropped == []
    tok = tokenize_report(report, reasoning_tok, max_length=512)
    assert tok.row_numbers == [1, 2]
    assert trained_runs(reasoning_tok, tok.features[0]) == [
        "4<|im_end|>\n",
        "<think>\nThree and three.\n</think>\n\n6<|im_end|>\n",
    ]
    assert trained_runs(reasoning_tok, tok.features[1]) == [
        "<think>\nThree and three.\n</think>\n\n6<|im_end|>\n"
    ]
    reasons = dict(tok.dropped)
    assert reasons[3].startswith(
        "message 2 (assistant): this model's chat template leaves out its reasoning (reasoning_content) once "
        "later turns follow"
    )
    assert reasons[4].startswith(
        "message 2 (assistant): this model's chat template leaves out its reasoning (the <think> part of its text)"
        " once later turns follow"
    )
    # a template that renders no reasoning at all refuses reasoning_content rather than dropping it
    report = load_dataset_report(write_rows(tmp_path, [{"messages": PLAIN}, {"messages": last}]))
    tokenize_report(report, smollm2, max_length=512)
    assert report.dropped[0][0] == 2 and "has reasoning" in report.dropped[0][1]
    assert "does not render reasoning" in report.dropped[0][1]


def test_a_tool_loop_with_reasoning_is_masked_answer_by_answer(reasoning_tok):
    loop = [
        user("Weather in Paris, then say thanks?"),
        assistant(None, tool_calls=[CALL], reasoning_content="I need the tool."),
        tool("18 C"),
        assistant("It is 18 C."),
        user("Thanks!"),
        assistant("You are welcome."),
    ]
    example = normalise_row({"messages": loop}, "messages", {"messages": "messages"})
    with pytest.raises(
        ValueError, match=r"message 2 \(assistant\).*reasoning \(reasoning_content\) once later"
    ):
        render_example(reasoning_tok, example)
    # without the reasoning, each answer of the loop (call, answer after the tool, last answer) is labelled exactly
    plain_loop = [{k: v for k, v in m.items() if k != "reasoning_content"} for m in example.as_messages()]
    text, spans = render_example(reasoning_tok, Example.from_messages(plain_loop))
    assert [text[s:e] for s, e in spans] == [
        CALL_TEXT,
        "It is 18 C.<|im_end|>\n",
        "<think>\n\n</think>\n\nYou are welcome.<|im_end|>\n",
    ]


def test_tool_rounds_alternate_and_the_preview_text_shows_calls():
    ex = Example.from_messages(
        [
            user("Weather?"),
            assistant(
                "", tool_calls=[{"type": "function", "function": {"name": "f", "arguments": {"a": 1}}}]
            ),
            tool("18 C"),
            assistant("18 C."),
            user("Thanks"),
            assistant("Welcome", reasoning_content="polite"),
        ]
    )
    assert alternation_problem(ex) is None
    assert ex.shown_messages()[1] == ("assistant", '-> f({"a": 1})')
    assert ex.shown_messages()[2] == ("tool", "<- 18 C")
    assert ex.shown_messages()[5] == ("assistant", "<think>polite</think>\nWelcome")
    stray = Example.from_messages([user("Weather?"), assistant("Sunny."), tool("18 C"), assistant("Yes.")])
    assert alternation_problem(stray) == "turn 3 is a tool result but the turn before it makes no tool call"


def test_the_data_tabs_validation_shows_tool_rows_and_names_refusals(tmp_path, tools_tok, smollm2):
    """What the Data tab runs (core.validation): the preview shows the call and its result, the first row's label
    mask covers the call; with a template without tools the report names the tool calls by row."""
    from core.validation import validate_dataset

    path = write_rows(tmp_path, [{"messages": CALL_ONLY, "tools": [WEATHER_TOOL]}, {"messages": PLAIN}])
    report = validate_dataset(path, tools_tok, 512)
    assert report.dropped == [] and report.stages["after tokenizing"] == 2
    assert (
        report.preview[0]["assistant"] == '-> get_weather({"city": "Paris"})\n---\n<- 18 C\n---\nIt is 18 C.'
    )
    assert report.preview[0]["user"] == "Weather in Paris?" and report.preview[0]["turns"] == 4
    assert trained_runs(tools_tok, report.first_feature) == [CALL_TEXT, "It is 18 C.<|im_end|>\n"]
    refused = validate_dataset(path, smollm2, 512)
    assert refused.stages["after tokenizing"] == 1
    assert refused.dropped[0][0] == 1 and refused.dropped[0][1].startswith(
        "message 2 (assistant) has tool calls"
    )
    assert "row 1: message 2 (assistant) has tool calls (get_weather)" in refused.summary()


@pytest.mark.slow
def test_a_run_trains_on_tool_call_rows(tmp_path, tiny_llama):
    """The headless train command on tool-call rows, with a model whose tokenizer's template renders tools: every
    row is kept, and the supervised tokens are the calls and answers (counted the same way as validation)."""
    import shutil
    import subprocess
    import sys

    from tests.conftest import ROOT

    model = tmp_path / "model"
    shutil.copytree(tiny_llama, model)
    tok = load_tokenizer(str(model))
    tok.chat_template = TOOLS_TEMPLATE
    tok.save_pretrained(model)
    rows = [{"messages": CALL_ONLY, "tools": [WEATHER_TOOL]} for _ in range(6)] + [
        {"messages": CALL_WITH_TEXT} for _ in range(4)
    ]
    data = write_rows(tmp_path, rows, "tools.jsonl")
    expected = tokenize_report(load_dataset_report(data), load_tokenizer(str(model)), 256)
    assert len(expected.features) == 10
    cfg = tmp_path / "c.json"
    settings = {"model_name_or_path": str(model), "dataset_name": data, "dtype": "float32", "max_length": 256}
    settings |= {"max_steps": 2, "monitor_rows": 0, "save_steps": 0, "output_dir": str(tmp_path / "runs")}
    cfg.write_text(json.dumps(settings))
    out = subprocess.run(
        [sys.executable, "launch.py", "train", str(cfg), "--json"], cwd=ROOT, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["status"] == "completed" and result["steps"] == 2
    assert f"Supervised tokens: {sum(expected.supervised):,}." in out.stderr


# A template that marks what to train on with {% generation %} (as transformers' return_assistant_tokens_mask
# reads): each answer and its end-of-turn token, but not the newline after it.
GENERATION_TEMPLATE = """
{%- for message in messages %}
    {%- if message.role == 'assistant' %}
        {{- '<|im_start|>assistant\\n' }}
        {%- generation %}{{- message.content + '<|im_end|>' }}{%- endgeneration %}
        {{- '\\n' }}
    {%- else %}
        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}
"""


def test_a_templates_generation_marks_decide_the_labels(tmp_path, embedded_path):
    tok = load_tokenizer(embedded_path)
    tok.chat_template = GENERATION_TEMPLATE
    msgs = [user("What is 2+2?"), assistant("4"), user("And 3+3?"), assistant("6")]
    marked = tok.apply_chat_template(msgs, return_dict=True, return_assistant_tokens_mask=True)
    report = load_dataset_report(write_rows(tmp_path, [{"messages": msgs}]))
    feature = tokenize_report(report, tok, max_length=512).features[0]
    assert feature["input_ids"] == marked["input_ids"]
    assert [lab != -100 for lab in feature["labels"]] == [bool(m) for m in marked["assistant_masks"]]
    assert trained_runs(tok, feature) == [
        "4<|im_end|>",
        "6<|im_end|>",
    ]  # the newline after each is not marked


# Modelled on DeepSeek-R1's template: the <think> part of every answer is cut (the last one's too), and the
# generation prompt opens a <think> block that the rendered answers do not have.
R1_TEMPLATE = """
{%- for message in messages %}
    {%- if message.role == 'assistant' %}
        {%- set content = message.content %}
        {%- if '</think>' in content %}{%- set content = content.split('</think>')[-1] %}{%- endif %}
        {{- '<|im_start|>assistant\\n' + content + '<|im_end|>\\n' }}
    {%- else %}
        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n<think>\\n' }}{%- endif %}
"""


def test_a_generation_prompt_that_opens_a_think_block_still_masks_each_answer(tmp_path, embedded_path):
    tok = load_tokenizer(embedded_path)
    tok.chat_template = R1_TEMPLATE
    plain = [user("What is 2+2?"), assistant("4"), user("And 3+3?"), assistant("6")]
    thought = [user("What is 2+2?"), assistant("<think>\nTwo twos.\n</think>\n\n4")]
    report = load_dataset_report(write_rows(tmp_path, [{"messages": plain}, {"messages": thought}]))
    tok_data = tokenize_report(report, tok, max_length=512)
    assert tok_data.row_numbers == [1]
    assert trained_runs(tok, tok_data.features[0]) == ["4<|im_end|>\n", "6<|im_end|>\n"]
    assert report.dropped == [
        (
            2,
            "message 2 (assistant): this model's chat template leaves out its reasoning (the <think> part of its "
            "text); the row is left out rather than trained without it. Remove that part, or choose a model whose "
            "chat template renders it",
        )
    ]


def test_hub_style_rows_with_every_key_null_read_as_plain_chat(tmp_path, smollm2):
    """A hub dataset's struct column gives every turn every key, null where unused; nothing is invented from them."""
    keys = {
        "tool_calls": None,
        "reasoning_content": None,
        "tool_call_id": None,
        "name": None,
        "function_call": None,
    }
    msgs = [{**m, **keys} for m in PLAIN]
    report = load_dataset_report(write_rows(tmp_path, [{"messages": msgs, "tools": None}]))
    assert report.examples[0] == Example(messages=(("user", "What is 2+2?"), ("assistant", "4")))
    assert trained_runs(smollm2, tokenize_report(report, smollm2, 512).features[0]) == ["4<|im_end|>\n"]
