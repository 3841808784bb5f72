"""Validation speed: read + normalise + tokenize 100,000 alpaca rows (~200 tokens each) with the embedded tokenizer.

Prints rows/s for the engine's batched path (core.tokenization.tokenize_report) and, on the first ``--baseline-rows`` rows,
for a per-row baseline (core.tokenization.tokenize_example called once per row, the straightforward loop), and their ratio.
Rows are HumanEval problems (assets/, MIT) repeated to the requested count.

    python bench/data_validate.py [--rows 100000] [--baseline-rows 10000]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from core.data import load_dataset_report  # noqa: E402
from core.model import embedded_model_path, load_tokenizer  # noqa: E402
from core.tokenization import tokenize_example, tokenize_report  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--baseline-rows", type=int, default=10_000)
    p.add_argument("--max-length", type=int, default=512)
    a = p.parse_args()
    source = [
        json.loads(line) for line in (ROOT / "assets" / "humaneval_alpaca.jsonl").read_text().splitlines()
    ]
    tokenizer = load_tokenizer(str(embedded_model_path()))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rows.jsonl"
        with open(path, "w", encoding="utf-8") as fh:
            for i in range(a.rows):
                fh.write(json.dumps(source[i % len(source)]) + "\n")
        t0 = time.perf_counter()
        report = load_dataset_report(str(path))
        t_read = time.perf_counter() - t0
        tokenized = tokenize_report(report, tokenizer, a.max_length)
        t_total = time.perf_counter() - t0
        mean_tokens = sum(tokenized.lengths) / len(tokenized.lengths)

        n = min(a.baseline_rows, len(report.examples))
        t1 = time.perf_counter()
        for ex in report.examples[:n]:
            tokenize_example(tokenizer, ex, a.max_length)
        t_base = time.perf_counter() - t1
        sub = load_dataset_report(str(path))
        sub.examples, sub.row_numbers = sub.examples[:n], sub.row_numbers[:n]
        t2 = time.perf_counter()
        tokenize_report(sub, tokenizer, a.max_length)
        t_ours_n = time.perf_counter() - t2

    print(
        f"rows: {a.rows:,}, mean {mean_tokens:.0f} tokens/row, max_length {a.max_length}, cores {os.cpu_count()}"
    )
    print("| path | rows | seconds | rows/s |")
    print("|---|---|---|---|")
    print(f"| engine: read + normalise | {a.rows:,} | {t_read:.1f} | {a.rows / t_read:,.0f} |")
    print(
        f"| engine: read + normalise + tokenize (full validation) | {a.rows:,} | {t_total:.1f} | {a.rows / t_total:,.0f} |"
    )
    print(f"| baseline: tokenize_example per row | {n:,} | {t_base:.1f} | {n / t_base:,.0f} |")
    print(f"| engine: tokenize_report batched | {n:,} | {t_ours_n:.1f} | {n / t_ours_n:,.0f} |")
    print(f"ratio engine / baseline (tokenizing, rows/s): {t_base / t_ours_n:.2f}")
    print(
        f"target: 100,000 rows validated in < 60 s -> {'PASS' if t_total * 100_000 / a.rows < 60 else 'FAIL'}"
    )


if __name__ == "__main__":
    main()
