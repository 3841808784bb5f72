"""Issue 15, round two: output that cannot crash, config edge cases, refusals that name the real reason."""

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

EMOJI_NAME = "greet_\u2047_\U0001f642.jsonl"


def run_cli(*args: str, encoding: str | None = None) -> subprocess.CompletedProcess:
    """Run ``launch.py`` with ``PYTHONIOENCODING=encoding`` (bytes decoded back with that encoding)."""
    env = dict(os.environ)
    if encoding:
        env["PYTHONIOENCODING"] = encoding
    out = subprocess.run(
        [sys.executable, "launch.py", *args], cwd=ROOT, capture_output=True, timeout=600, env=env
    )
    codec = encoding or "utf-8"
    return subprocess.CompletedProcess(
        out.args, out.returncode, out.stdout.decode(codec), out.stderr.decode(codec)
    )


def _chat_file(folder, name: str = EMOJI_NAME):
    rows = [
        {"messages": [{"role": "user", "content": "Say hi \U0001f642"}, {"role": "assistant", "content": "hi"}]},
        {"messages": [{"role": "user", "content": "Add 2 and 3"}, {"role": "assistant", "content": "5"}]},
        {"messages": [{"role": "\U0001f916", "content": "beep"}, {"role": "assistant", "content": "boop"}]},
    ]
    path = folder / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.mark.parametrize("encoding", ["gbk", "ascii"])
def test_validate_survives_a_console_that_cannot_encode_the_file_name(tmp_path, embedded_path, encoding):
    data = _chat_file(tmp_path)
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"dataset_name": str(data), "max_length": 128}), encoding="utf-8")
    out = run_cli("validate", str(cfg), encoding=encoding)
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr and "UnicodeEncodeError" not in out.stderr
    assert "greet_\\u2047_\\U0001f642.jsonl" in out.stdout  # escaped, not dropped
    # argparse's own errors go through the same safe stream
    bad = run_cli("validate", str(cfg), "--no-such-\u2047-flag", encoding=encoding)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "\\u2047" in bad.stderr
