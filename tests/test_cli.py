"""CLI contract: exit code 2 with every problem listed; estimate prints JSON from the config alone."""

import json
import subprocess
import sys

from tests.conftest import ROOT


def run_cli(*args, cwd=ROOT):
    return subprocess.run(
        [sys.executable, "launch.py", *args], cwd=cwd, capture_output=True, text=True, timeout=600
    )


def test_train_with_bad_config_exits_2_listing_every_problem(tmp_path):
    cfg = tmp_path / "bad.json"
    cfg.write_text(json.dumps({"lora_r": -1, "learning_rate": "fast", "colour": "blue", "max_length": 2}))
    out = run_cli("train", str(cfg), "--json")
    assert out.returncode == 2
    for needle in ("colour: unknown key", "learning_rate: 'fast' is not a number"):
        assert needle in out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1])["status"] == "invalid"
    cfg.write_text(json.dumps({"lora_r": -1, "max_length": 2}))
    out = run_cli("train", str(cfg))
    assert out.returncode == 2 and "lora_r: -1" in out.stderr and "max_length: 2" in out.stderr


def test_missing_config_file_and_bad_arguments_exit_2(tmp_path):
    assert run_cli("train", str(tmp_path / "none.json")).returncode == 2
    assert run_cli("export", str(tmp_path)).returncode == 2  # neither --merged nor --adapter
    out = run_cli("estimate", "--model", "x/y", "--gpu-gib", "-3")
    assert out.returncode == 2 and "--gpu-gib: -3.0 must be a size in GiB" in out.stderr
    assert run_cli("estimate", "--model", "x/y", "--gpu-gib", "inf").returncode == 2


def test_export_of_a_folder_without_adapter_fails_cleanly(tmp_path):
    out = run_cli("export", str(tmp_path), "--adapter")
    assert out.returncode == 1 and "not a run folder" in out.stderr


def test_estimate_json_from_a_local_folder(tiny_llama):
    out = run_cli("estimate", "--model", str(tiny_llama), "--gpu-gib", "16", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout.strip().splitlines()[-1])
    assert data["recommendation"] == "lora"
    lora = data["estimates"]["lora"]
    # 2 layers x r=8 x [(64+64) q + (64+32) k + (64+32) v + (64+64) o + 3 x (64+128) mlp]
    assert lora["trainable_params"] == 2 * 8 * (128 + 96 + 96 + 128 + 3 * 192)
    assert lora["total_gib"] == sum(lora["components_gib"].values())
    text = run_cli("estimate", "--model", str(tiny_llama), "--gpu-gib", "16")
    assert "Plan for 16 GiB: LoRA (16-bit base)" in text.stdout and "logits / loss" in text.stdout


def test_validate_reports_stages_and_writes_the_row_csv(tmp_path, embedded_path):
    data = tmp_path / "d.csv"
    data.write_text("instruction,output\nSay hi,hello\nAdd 2 and 3,The answer is 5, obviously\n,empty\n")
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"dataset_name": str(data), "max_length": 128}))
    out = run_cli("validate", str(cfg), "--report", str(tmp_path / "rows.csv"), "--json")
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["stages"]["read"] == 3 and summary["stages"]["usable"] == 1
    assert summary["stages"]["after tokenizing"] == 1 and summary["dropped"] == 2
    rows = (tmp_path / "rows.csv").read_text().splitlines()
    assert rows[0] == "row,status,reason" and rows[1].startswith("2,dropped,has 3 fields")
    assert rows[2] == "3,dropped,instruction is empty"
