"""Validation of a large upload: seconds and peak memory, each path in its own child process.

Generates a JSONL of alpaca rows (default 200 MB, the upload cap: about 600,000 rows of ~350 bytes, the issue's
300 MB / 917k-row file scaled down) from HumanEval text (assets/, MIT), then measures, each in a fresh process
(peak RSS from ``os.wait4``'s rusage, ru_maxrss):

- baseline: a plain ``json.loads`` loop over the lines (no checks, no tokenizing): the floor for reading the file;
- stream: ``core.validation.validate_config`` (what the Data tab's Validate button runs), with the embedded
  SmolLM2 tokenizer;
- cli: ``launch.py validate CONFIG.json --json`` as the CLI stands, on the first ``--cli-mb`` MB (the whole-file
  path held every row, Example and tokenized feature: 1.6 GB RSS for 31 MB in the issue).

    python bench/data_validate.py [--mb 200] [--cli-mb 20] [--max-length 512]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHILD = """
import json, os, sys, time
sys.path.insert(0, {root!r})
os.environ.setdefault("HF_HUB_OFFLINE", "1")
mode, path, max_length = sys.argv[1], sys.argv[2], int(sys.argv[3])
t0 = time.perf_counter()
if mode == "baseline":
    rows = 0
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                json.loads(line)
                rows += 1
    out = {{"rows": rows}}
else:
    from core.config import TrainingConfig
    from core.validation import validate_config
    cfg = TrainingConfig(dataset_name=path, max_length=max_length)
    report = validate_config(cfg)
    out = {{"rows": report.rows_read, "stages": report.stages, "dropped": report.dropped_count,
           "notes": report.notes_count, "issues_kept": len(report.dropped) + len(report.notes),
           "workers_peak_mib": round(report.worker_peak_rss_mib, 1)}}
out["seconds"] = time.perf_counter() - t0
from core.tokenpool import peak_rss_kib
out["main_peak_mib"] = round(peak_rss_kib() / 1024, 1)
print(json.dumps(out))
"""


def make_rows(path: Path, target_bytes: int, seed: int = 0) -> int:
    """Write alpaca JSONL rows of ~350 bytes cut from HumanEval's problems until ``target_bytes``; returns rows."""
    source = [
        json.loads(line) for line in (ROOT / "assets" / "humaneval_alpaca.jsonl").read_text().splitlines()
    ]
    text = "\n".join(t for r in source for t in (r["instruction"], r["output"]))
    rng = random.Random(seed)
    rows = written = 0
    with open(path, "w", encoding="utf-8") as fh:
        while written < target_bytes:
            si, ni = rng.randrange(len(text) - 200), rng.randint(80, 180)
            so, no = rng.randrange(len(text) - 200), rng.randint(80, 190)
            row = {"instruction": text[si : si + ni], "input": "", "output": text[so : so + no]}
            line = json.dumps(row) + "\n"
            fh.write(line)
            written += len(line.encode())
            rows += 1
    return rows


def run_child(args: list[str]) -> tuple[dict[str, object], float, float]:
    """Run ``args`` as a child process; returns (its last JSON line, wall seconds, peak RSS in MiB).

    The peak is the child's own VmHWM plus its workers' when it reports them, else ``os.wait4``'s ru_maxrss (the
    largest of the child and the processes it waited for). The JSON gets "cpu_s": user + system seconds of the
    child and every process it waited for (its workers): the figure that a CPU shared with others does not inflate.
    """
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(args, stdout=out, stderr=err, text=True, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage (ru_maxrss in KiB on Linux)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        text, errors = out.read(), err.read()
    lines = [line for line in text.splitlines() if line.startswith("{")]
    result = json.loads(lines[-1]) if lines and proc.returncode == 0 else {"error": (errors or text)[-600:]}
    result["cpu_s"] = round(usage.ru_utime + usage.ru_stime, 1)
    peak = usage.ru_maxrss / 1024
    if "main_peak_mib" in result:
        peak = float(result["main_peak_mib"]) + float(result.get("workers_peak_mib") or 0)  # type: ignore[arg-type]
    return result, wall, peak


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--mb", type=float, default=200.0, help="size of the generated JSONL, in MB (10^6 bytes)")
    p.add_argument(
        "--cli-mb", type=float, default=20.0, help="size of the file given to the CLI as it stands"
    )
    p.add_argument("--max-length", type=int, default=512)
    p.add_argument("--skip-cli", action="store_true")
    a = p.parse_args()
    child = [sys.executable, "-c", CHILD.format(root=str(ROOT))]
    with tempfile.TemporaryDirectory() as tmp:
        big = Path(tmp) / "rows.jsonl"
        rows = make_rows(big, int(a.mb * 1e6))
        mb = big.stat().st_size / 1e6
        print(f"file: {rows:,} alpaca rows, {mb:,.1f} MB; max_length {a.max_length}; cores {os.cpu_count()}")
        table = []
        base, base_s, base_rss = run_child([*child, "baseline", str(big), str(a.max_length)])
        table.append(("baseline: json.loads line loop", rows, mb, base_s, base_rss, base))
        stream, stream_s, stream_rss = run_child([*child, "stream", str(big), str(a.max_length)])
        table.append(
            ("stream: core.validation.validate_config (Data tab)", rows, mb, stream_s, stream_rss, stream)
        )
        if not a.skip_cli:
            small = Path(tmp) / "small.jsonl"
            small_rows = make_rows(small, int(a.cli_mb * 1e6))
            cfg = Path(tmp) / "config.json"
            cfg.write_text(json.dumps({"dataset_name": str(small), "max_length": a.max_length}))
            env_cli = [sys.executable, str(ROOT / "launch.py"), "validate", str(cfg), "--json"]
            cli, cli_s, cli_rss = run_child(env_cli)
            small_mb = small.stat().st_size / 1e6
            table.append(("cli: launch.py validate --json", small_rows, small_mb, cli_s, cli_rss, cli))
            sm, sm_s, sm_rss = run_child([*child, "stream", str(small), str(a.max_length)])
            table.append(("stream, same file as the cli", small_rows, small_mb, sm_s, sm_rss, sm))
    print("| path | rows | MB | seconds (wall) | CPU seconds | peak RSS MiB (all processes) | MB/s (wall) |")
    print("|---|---|---|---|---|---|---|")
    for name, n, size, secs, rss, res in table:
        flag = f" (failed: {res['error']})" if "error" in res else ""
        print(
            f"| {name}{flag} | {n:,} | {size:,.1f} | {secs:.1f} | {res['cpu_s']} | {rss:,.0f} | {size / secs:,.2f} |"
        )
    for name, *_, res in table:
        print(f"{name}: {json.dumps(res)}")
    print(f"stream / baseline time: {stream_s / base_s:.1f}x; stream peak RSS {stream_rss:,.0f} MiB")
    if not a.skip_cli and "error" not in cli:
        print(
            f"same {small_mb:.0f} MB file, cli as it stands / stream: {cli_s / sm_s:.2f}x wall, "
            f"{float(cli['cpu_s']) / float(sm['cpu_s']):.2f}x CPU, {cli_rss / sm_rss:.2f}x peak RSS"
        )
    print(f"load average while measuring (1, 5, 15 min): {os.getloadavg()}")
    ok = stream_s < 120 and stream_rss < 2048 and "error" not in stream
    print(f"target ({a.mb:g} MB validated in < 120 s and < 2 GiB): {'PASS' if ok else 'FAIL'}")


if __name__ == "__main__":
    main()
