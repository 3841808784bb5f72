"""The real app on localhost, driven over HTTP with gradio_client: load, validate, start, poll, stop, export."""

import time
from pathlib import Path

import pytest

from tests.conftest import ASSETS, running_app

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def app_url(tmp_path_factory, embedded_path):
    cwd = tmp_path_factory.mktemp("ui-cwd")
    with running_app(cwd) as url:
        yield url, cwd


def unchanged(output):
    """True for an output the poll skipped (``gr.skip()``: the page already shows it)."""
    return isinstance(output, dict) and output.get("__type__") == "update"


def poll_until(client, done, timeout_s=600):
    """Poll as a page does: the status comes every time, the chart and the log only when they changed (a Client
    keeps one session), so the last of each is kept."""
    figure = logs = None
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        status, new_figure, new_logs, *_ = client.predict(api_name="/poll")
        figure = figure if unchanged(new_figure) else new_figure
        logs = logs if unchanged(new_logs) else new_logs
        if done(status):
            return status, figure, logs
        time.sleep(1)
    raise AssertionError(f"timed out; last status: {status}")


def test_train_poll_reattach_and_export(app_url):
    from gradio_client import Client

    url, cwd = app_url
    client = Client(url, verbose=False)
    facts, targets, lr, preset = client.predict("HuggingFaceTB/SmolLM2-135M-Instruct", api_name="/load_model")
    assert "LlamaForCausalLM" in facts and "134.52 M" in facts and "q_proj" in facts
    assert lr == 5e-4 and "Suggested learning rate for this size: 0.0005" in facts
    summary, preview, lengths, example, report_csv, mapping = client.predict(
        dataset_name=str(ASSETS / "humaneval_messages.jsonl"),
        dataset_column_mapping="",
        max_length=512,
        api_name="/validate_data",
    )
    assert "format **messages**" in summary and "read **164**" in summary, summary
    preview = preview.get("value", preview)  # an update: the column widths follow the format
    assert mapping == "messages=messages" and len(preview["data"]) == 50
    trained = [t["token"] for t in example if t["class_or_confidence"] == "trained"]
    assert trained and trained[-1] in ("<|im_end|>", "\n")  # the end-of-turn token is a label
    assert Path(report_csv).read_text().startswith("row,status,reason")
    # the same file gives the same normalised rows in the UI and through the CLI's config path
    from core.config import TrainingConfig
    from core.train import load_report_for

    cli_rows = load_report_for(
        TrainingConfig(dataset_name=str(ASSETS / "humaneval_messages.jsonl"))
    ).preview()
    assert [list(map(str, r)) for r in preview["data"]] == [
        list(map(str, r)) for r in cli_rows.values.tolist()
    ]

    with pytest.raises(Exception, match="learning_rate"):
        client.predict(
            dataset_name=str(ASSETS / "humaneval_alpaca.jsonl"), learning_rate=5.0, api_name="/start"
        )

    started = client.predict(
        dataset_name=str(ASSETS / "humaneval_alpaca.jsonl"),
        max_steps=6,
        max_length=192,
        learning_rate=5e-4,
        api_name="/start",
    )
    assert "Started" in started
    with pytest.raises(Exception, match="already"):  # one job at a time
        client.predict(
            dataset_column_mapping="", dataset_name=str(ASSETS / "humaneval_alpaca.jsonl"), api_name="/start"
        )
    status, figure, logs = poll_until(client, lambda s: "COMPLETED" in s or "FAILED" in s)
    assert "COMPLETED" in status and "step 6/6" in status, status
    assert "trainable params: 2,442,240" in logs
    status_again, chart_again, logs_again, *_ = client.predict(api_name="/poll")  # nothing new: status only
    assert status_again == status and unchanged(chart_again) and unchanged(logs_again)
    # a new browser session (a refreshed page) sees the same finished job, with the whole chart, once
    again, figure = Client(url, verbose=False).predict(api_name="/poll")[:2]
    assert "train loss" in str(figure["plot"] if isinstance(figure, dict) else figure)
    run_dir = status.split("Run folder: `")[1].rstrip("`").strip()
    assert run_dir in again and (Path(run_dir) / "adapter" / "adapter_model.safetensors").is_file()

    message, download, folder = client.predict(run_dir, "auto", "5GB", api_name="/export_merged")
    assert "Verified" in message, message
    assert Path(download).name == "merged.zip" and Path(download).stat().st_size > 100e6
    assert (Path(run_dir) / "merged" / "model.safetensors").is_file()
    message, download, folder = client.predict(run_dir, api_name="/export_adapter")
    assert "PeftModel.from_pretrained" in message and Path(download).name == "adapter-export.zip"


def test_stop_ends_at_the_next_step_and_keeps_the_adapter(app_url):
    from gradio_client import Client

    client = Client(app_url[0], verbose=False)
    outside = str(Path.home() / "lora-studio-test-runs")
    with pytest.raises(Exception, match="output_dir.*must be a folder name inside the workspace"):
        client.predict(
            dataset_name=str(ASSETS / "humaneval_alpaca.jsonl"), output_dir=outside, api_name="/start"
        )
    assert not Path(outside).exists()
    client.predict(
        dataset_name=str(ASSETS / "humaneval_alpaca.jsonl"),
        max_steps=500,
        max_length=128,
        per_device_train_batch_size=1,
        output_dir="stop-test/runs",
        api_name="/start",
    )
    poll_until(client, lambda s: "TRAINING" in s and "step 0/" not in s)
    assert "Stopping" in client.predict(api_name="/stop")
    status, _, _ = poll_until(client, lambda s: "STOPPED" in s or "FAILED" in s or "COMPLETED" in s)
    assert "STOPPED" in status, status
    step = int(status.split("step ")[1].split("/")[0])
    assert 1 <= step < 500
    run_dir = status.split("Run folder: `")[1].rstrip("`").strip()
    assert (Path(run_dir) / "adapter" / "adapter_config.json").is_file()
    assert "Nothing is running" in client.predict(api_name="/stop")
    assert Path(run_dir).parent == app_url[1] / "stop-test" / "runs"
    message, download, folder = client.predict(run_dir, api_name="/export_adapter")
    assert "Done" in message and Path(download).read_bytes()[:2] == b"PK"
