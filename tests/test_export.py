"""Exports on the embedded model: merged equals base+adapter, the adapter reloads, broken adapters are caught,
nothing is overwritten, the model card carries the run's real numbers, and a hub token never leaks."""

from __future__ import annotations

import json
import logging
import shutil
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from core.errors import ExportError
from core.events import COMPLETED
from core.export import export_adapter, export_merged
from tests.test_engine import run, small


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A finished 4-step LoRA run on the embedded model (lr high enough that B clearly moves)."""
    snap, folder = run(
        small(tmp_path_factory.mktemp("runs"), max_steps=4, learning_rate=2e-3, monitor_rows=2)
    )
    assert snap.status == COMPLETED, snap.message
    return folder


def copy_run(run_dir: Path, dest: Path) -> Path:
    target = dest / run_dir.name
    shutil.copytree(run_dir, target)
    return target


def test_merged_export_is_sharded_verified_and_documented(run_dir, tmp_path):
    out = tmp_path / "merged"
    result = export_merged(run_dir, out=out, dtype="float32", max_shard_size="200MB")
    assert result.mean_abs_diff_vs_reference is not None and result.tolerance is not None
    assert result.mean_abs_diff_vs_reference <= result.tolerance  # merged == base + adapter
    assert result.mean_abs_diff_vs_base > 10 * result.mean_abs_diff_vs_reference  # and differs from the base
    shards = sorted(out.glob("model-*.safetensors"))
    assert len(shards) >= 2 and (out / "model.safetensors.index.json").is_file()  # 540 MB in <= 200 MB files
    assert json.loads((out / "config.json").read_text())["use_cache"] is True
    assert json.loads((out / "generation_config.json").read_text()).get("use_cache", True) is True
    assert (out / "tokenizer.json").is_file() and (out / "chat_template.jinja").is_file()
    verification = json.loads((out / "verification.json").read_text())
    assert verification["checks"] and all(c["passed"] for c in verification["checks"])
    card = (out / "README.md").read_text()
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    last_loss = [m["loss"] for m in metrics if "loss" in m][-1]
    fixed = [m["eval_train_sample_loss"] for m in metrics if "eval_train_sample_loss" in m][-1]
    assert f"{last_loss:.4f}" in card and f"{fixed:.4f}" in card  # the run's real final losses
    assert "| `lora_r` | `8` |" in card and "| `learning_rate` | `0.002` |" in card
    assert "MIT" in card and "base_model: HuggingFaceTB/SmolLM2-135M-Instruct" in card
    assert "<polyline" in (out / "loss_curve.svg").read_text()
    with pytest.raises(ExportError, match="already exists"):  # never overwritten
        export_merged(run_dir, out=out, dtype="float32")


def test_adapter_export_reloads_and_reports_its_tensors(run_dir, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from core.model import embedded_model_path

    result = export_adapter(run_dir, out=tmp_path / "adapter")
    assert result.tensors == 30 * 7 * 2  # 30 layers x 7 modules x (A, B)
    assert f"{result.tensors} tensors" in result.summary()
    model = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(embedded_model_path()), result.path
    )
    assert sum(1 for n, _ in model.named_parameters() if "lora_B" in n) == 210
    checks = json.loads((Path(result.path) / "verification.json").read_text())["checks"]
    assert {c["name"] for c in checks} >= {"tensors", "every target module covered", "B moved from zero"}
    assert "PeftModel.from_pretrained" in (Path(result.path) / "README.md").read_text()


def test_corrupted_empty_or_partial_adapters_are_caught(run_dir, tmp_path):
    import torch
    from safetensors.torch import load_file, save_file

    broken = copy_run(run_dir, tmp_path / "a")
    weights = broken / "adapter" / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # truncated
    with pytest.raises(ExportError, match="cannot be read"):
        export_adapter(broken)
    assert not any(broken.glob("adapter-export*"))  # nothing published

    empty = copy_run(run_dir, tmp_path / "b")
    path = empty / "adapter" / "adapter_model.safetensors"
    tensors = load_file(str(path))
    save_file({k: (torch.zeros_like(v) if "lora_B" in k else v) for k, v in tensors.items()}, str(path))
    with pytest.raises(ExportError, match="all B are zero"):
        export_adapter(empty)

    partial = copy_run(run_dir, tmp_path / "c")
    path = partial / "adapter" / "adapter_model.safetensors"
    save_file({k: v for k, v in load_file(str(path)).items() if ".down_proj." not in k}, str(path))
    with pytest.raises(ExportError, match="missing \\['down_proj'\\]"):
        export_adapter(partial)


def test_adapter_refusals_name_the_missing_or_unreadable_file(run_dir, tmp_path):
    """Not "files present: adapter_config.json, adapter_model.safetensors" (which reads as if all is well): the
    file that is missing, pickled or unreadable, in the user's own folder, and what to do."""
    import torch
    from safetensors.torch import load_file

    pickled = copy_run(run_dir, tmp_path / "p")
    adapter = pickled / "adapter"
    torch.save(load_file(str(adapter / "adapter_model.safetensors")), adapter / "adapter_model.bin")
    (adapter / "adapter_model.safetensors").unlink()
    for export in (export_adapter, export_merged):
        with pytest.raises(ExportError) as caught:
            export(pickled)
        message = str(caught.value)
        assert f"{adapter} holds its weights only in adapter_model.bin, a pickle" in message, message
        assert "safe_serialization=True" in message and "files present" not in message
    (adapter / "adapter_model.bin").unlink()
    with pytest.raises(ExportError) as caught:
        export_adapter(pickled)
    assert (
        f"adapter_model.safetensors is missing from {adapter} (it has README.md, adapter_config.json"
        in str(caught.value)
    )
    assert not [
        p.name for p in pickled.iterdir() if ".partial-" in p.name or p.name.startswith("adapter-export")
    ]

    unreadable = copy_run(run_dir, tmp_path / "u")
    (unreadable / "adapter" / "adapter_config.json").write_text("{", encoding="utf-8")
    with pytest.raises(ExportError, match="adapter_config.json cannot be read \\(JSONDecodeError"):
        export_adapter(unreadable)


def test_memory_is_checked_before_loading(embedded_path):
    from core.export_verify import check_memory

    with pytest.raises(ExportError, match="Not enough free RAM"):
        check_memory(embedded_path, 10**6, "cpu")  # a million bytes per parameter
    check_memory(embedded_path, 2, "cpu")  # a 16-bit copy of 135M parameters fits


class _StandIn(BaseHTTPRequestHandler):
    """A local stand-in for the hub: records each request's Authorization header and refuses it."""

    seen: list[str] = []

    def _refuse(self) -> None:
        _StandIn.seen.append(self.headers.get("Authorization", ""))
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        body = json.dumps({"error": "Invalid username or password."}).encode()
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = _refuse

    def log_message(self, *args) -> None:
        pass


def test_hub_push_keeps_the_token_out_of_messages_and_logs(run_dir, tmp_path, caplog, monkeypatch):
    import huggingface_hub.constants

    from core.hub import push_export

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # the suite runs offline

    token = "hf_FAKEtoken1234567890abcdef"
    export = export_adapter(run_dir, out=tmp_path / "to-push")
    server = HTTPServer(("127.0.0.1", 0), _StandIn)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with caplog.at_level(logging.DEBUG), pytest.raises(ExportError) as err:
            push_export(export.path, "someone/tuned", token, endpoint=endpoint)
    finally:
        server.shutdown()
    assert f"Bearer {token}" in _StandIn.seen  # the token reached the (stand-in) hub, in the header only
    assert token not in str(err.value) and "someone/tuned" in str(err.value)
    assert token not in caplog.text
    with pytest.raises(ExportError, match="not a verified export"):
        push_export(tmp_path, "someone/tuned", token, endpoint=endpoint)
    with pytest.raises(ExportError, match="must look like user/name") as bad:
        push_export(export.path, "../etc", token, endpoint=endpoint)
    assert token not in str(bad.value)


def test_a_dead_exports_staging_is_removed_and_a_live_ones_kept(tmp_path):
    """kill -9 mid-export left a 517 MB ``.merged.partial-*`` and a ``.merged.zip-partial`` forever (breaker D4);
    staging folders carry their writer's pid, and the next export next to them removes the dead ones."""
    import os
    import stat
    import subprocess
    import sys

    from core.runs import staging_dir

    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    dead_dir = tmp_path / f".merged.partial-{ended.pid}-abcd"
    dead_dir.mkdir()
    (dead_dir / "model.safetensors").write_bytes(b"\0" * 1000)
    dead_zip = tmp_path / f".merged.zip-partial-{ended.pid}"
    dead_zip.write_bytes(b"PK")
    live = tmp_path / f".adapter.partial-{os.getpid()}-efgh"
    live.mkdir()
    old_style = tmp_path / ".merged.partial-p81wlsxb"  # no pid: whose it is cannot be told, so it stays
    old_style.mkdir()
    user_file = tmp_path / "notes.partial-123.txt"
    user_file.write_text("mine")

    tmp = staging_dir(tmp_path / "merged-2")
    assert not dead_dir.exists() and not dead_zip.exists()
    assert live.is_dir() and old_style.is_dir() and user_file.read_text() == "mine"
    assert tmp.name.startswith(f".merged-2.partial-{os.getpid()}-")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(tmp.stat().st_mode) == 0o777 & ~umask  # not mkdtemp's 0700 (breaker D16)


def test_every_file_in_an_export_zip_is_readable(run_dir, tmp_path):
    """The user test unzipped adapter_model.safetensors as 0600 (the trainer's mode) next to 0644 files: every
    entry is 0644 (folders 0755) in the zip's Unix mode bits, whatever the mode on disk."""
    import stat
    import zipfile

    from core.export_files import zip_export

    weights = run_dir / "adapter" / "adapter_model.safetensors"
    assert stat.S_IMODE(weights.stat().st_mode) == 0o600  # what the trainer writes: the case to fix
    result = export_adapter(run_dir, out=tmp_path / "shared")
    with zipfile.ZipFile(result.zip_path) as zf:
        modes = {i.filename: i.external_attr >> 16 for i in zf.infolist()}
        assert zf.testzip() is None
        assert zf.read("adapter_model.safetensors") == weights.read_bytes()
    assert "adapter_model.safetensors" in modes and "README.md" in modes
    assert {name: oct(mode) for name, mode in modes.items() if mode != stat.S_IFREG | 0o644} == {}

    nested = tmp_path / "nested"
    shutil.copytree(result.path, nested)
    (nested / "extra").mkdir(mode=0o700)
    (nested / "extra" / "notes.txt").write_text("x")
    (nested / "extra" / "notes.txt").chmod(0o600)
    zip_path, why = zip_export(nested)
    assert why == ""
    with zipfile.ZipFile(zip_path) as zf:
        infos = {i.filename: i for i in zf.infolist()}
    assert infos["extra/"].is_dir() and infos["extra/"].external_attr >> 16 == stat.S_IFDIR | 0o755
    assert infos["extra/notes.txt"].external_attr >> 16 == stat.S_IFREG | 0o644


def test_export_tab_lists_runs_newest_first_with_status_and_steps(run_dir, tmp_path):
    """The dropdown says what each run is ("name · completed · 4 steps"), in the page's language, newest start
    first (not the folder's modification time, which every export changes)."""
    import os

    from ui.i18n import use_lang
    from ui.tabs.export_tab import list_runs

    base = (tmp_path / "runs").resolve()
    new = Path(shutil.copytree(run_dir, base / run_dir.name))
    old = Path(shutil.copytree(run_dir, base / "run-20200101-000000"))
    result = json.loads((old / "result.json").read_text())
    result.update(status="stopped", steps=1, started_at=result["started_at"] - 3600)
    (old / "result.json").write_text(json.dumps(result))
    (base / "notes").mkdir()  # not a run: not listed
    os.utime(old)  # touched last
    assert list_runs(str(base)) == [
        (f"{new.name} · completed · 4 steps", str(new)),
        ("run-20200101-000000 · stopped · 1 step", str(old)),
    ]
    with use_lang("zh"):
        assert list_runs(str(base)) == [
            (f"{new.name} · 已完成 · 4 步", str(new)),
            ("run-20200101-000000 · 已停止 · 1 步", str(old)),
        ]


def test_export_tab_speaks_the_pages_language_and_signals_each_new_export(run_dir, tmp_path):
    import gradio as gr

    from ui.i18n import use_lang
    from ui.tabs.export_tab import do_export, memory_line, with_exported

    def quiet(*_a, **_k) -> None:
        return None

    copy = copy_run(run_dir, tmp_path)
    with use_lang("zh"):
        summary, download, folder, exported = with_exported(
            do_export(str(copy), merged=False, progress=quiet)
        )
        assert summary.startswith("**完成。** 适配器已保存到 ") and "个张量" in summary, summary
        assert "请查看文件夹中的 `verification.json`" in summary and "Zip：`" in summary
        assert exported == folder and (Path(folder) / "adapter_model.safetensors").is_file() and download
        failed = with_exported(do_export(str(tmp_path / "missing"), merged=False, progress=quiet))
        assert failed[0].startswith("**导出失败。** ") and failed[2] == ""
        assert failed[3] == gr.skip()  # the "exported" state keeps its value: no refresh after a failure
        line = memory_line(str(run_dir), "auto")
        assert line.startswith("合并导出需要约 ") and "GiB 内存；当前可用：" in line and "基座模型" in line
    second = with_exported(do_export(str(copy), merged=False, progress=quiet))
    assert second[0].startswith("**Done.** Adapter saved to ") and second[3] == second[2] != exported
    assert memory_line(str(run_dir), "auto").startswith("Merged export needs about ")


def test_every_text_the_export_tab_computes_has_chinese():
    """Every tr() template of ui/tabs/export_tab.py has a Chinese entry with the same placeholders."""
    import ast
    import string

    from core.export import ExportResult
    from core.export_source import interrupted_note
    from ui.i18n import runtime_table, use_lang
    from ui.tabs.export_tab import result_text
    from ui.zh_export import ZH

    source = (Path(__file__).resolve().parents[1] / "ui" / "tabs" / "export_tab.py").read_text()
    templates = [
        node.args[0].value
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Call)
        and getattr(node.func, "id", "") == "tr"
        and node.args
        and isinstance(node.args[0], ast.Constant)
    ]
    assert len(templates) > 20
    assert [t for t in templates if t not in runtime_table()] == []

    def fields(text: str) -> list[str]:
        return sorted(
            f"{name}:{spec}" for _, name, spec, _ in string.Formatter().parse(text) if name is not None
        )

    assert {en: fields(en) for en in ZH} == {en: fields(cn) for en, cn in ZH.items()}
    for status in ("interrupted", "failed"):
        note = interrupted_note(Path("checkpoint-4"), 4, status)
        result = ExportResult("adapter", "/x/adapter-export", "", None, 0.5, None, None, 2**20, 10, note)
        assert result_text(result) == result.summary()  # English: the engine's own words
        with use_lang("zh"):
            assert result_text(result).startswith("运行在第 4 步") and "checkpoint-4" in result_text(result)


def absolute_paths(value) -> list[str]:
    """Every string in a JSON value that is an absolute path (or holds one after a space or a quote)."""
    if isinstance(value, dict):
        return [p for v in [*value.keys(), *value.values()] for p in absolute_paths(v)]
    if isinstance(value, list):
        return [p for v in value for p in absolute_paths(v)]
    if isinstance(value, str):
        return [w for w in value.replace("'", " ").replace('"', " ").split() if w.startswith(("/", "~"))]
    return []


@pytest.mark.parametrize("kind", ["adapter", "merged"])
def test_exports_carry_no_local_paths_and_name_the_hub_base(run_dir, tmp_path, kind):
    """The tester found adapter_config.json naming /root/.cache/lora-studio/models/SmolLM2-135M-Instruct-bf16
    and verification.json holding absolute paths: read every JSON file and the card from the export's zip."""
    import zipfile

    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from core.model import embedded_model_path, studio_home

    run = copy_run(run_dir, tmp_path)
    hub_id = json.loads((run / "config.json").read_text())["model_name_or_path"]
    assert hub_id == "HuggingFaceTB/SmolLM2-135M-Instruct"
    result = export_adapter(run) if kind == "adapter" else export_merged(run, dtype="float32")
    assert result.zip_path
    unpacked = tmp_path / "unzipped"
    with zipfile.ZipFile(result.zip_path) as zf:
        zf.extractall(unpacked)
        names = zf.namelist()
    assert "verification.json" in names and "README.md" in names
    locals_ = (str(tmp_path), str(run), str(studio_home()), str(embedded_model_path()), str(Path.home()))
    for name in names:
        if name.endswith(".json") and not name.startswith(("tokenizer", "vocab")):  # tokens are not paths
            data = json.loads((unpacked / name).read_text(encoding="utf-8"))
            assert absolute_paths(data) == [], (name, absolute_paths(data))
        if name.endswith((".json", ".md", ".jinja", ".txt")):
            text = (unpacked / name).read_text(encoding="utf-8")
            assert not [p for p in locals_ if p in text], name
    verification = json.loads((unpacked / "verification.json").read_text())
    assert verification["run_dir"] == run.name
    if kind == "merged":
        assert verification["path"] == Path(result.path).name and verification["base"] == hub_id
        return
    adapter_cfg = json.loads((unpacked / "adapter_config.json").read_text())
    assert adapter_cfg["base_model_name_or_path"] == hub_id
    named = [c for c in verification["checks"] if c["name"] == "base model named without local paths"]
    assert named and named[0]["passed"] and hub_id in named[0]["detail"]
    # the export still loads with the base given explicitly (the packaged local copy of that hub model)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(embedded_model_path()), unpacked)
    assert sum(1 for n, _ in model.named_parameters() if "lora_B" in n) == 210
    assert model.peft_config["default"].base_model_name_or_path == hub_id
