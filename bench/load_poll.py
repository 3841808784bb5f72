"""What visitors cost: the same training run with no pollers and with N pollers, each side in a fresh app process.

One invocation measures both sides. Each side starts ``launch.py`` on a free port in its own empty workspace (real
HTTP, real gradio server), trains the embedded model a few steps through the public API (/start) and waits for the
run's ``result.json`` on disk (so the baseline has no poller at all, not even this script), then stops the server.
The polled side first starts N visitor processes, each polling ``/poll`` once a second over plain HTTP the way the
REST API documents it (``POST /gradio_api/call/poll``, then read the event stream). A visitor keeps one
``session_hash`` like a browser tab does (its first poll is a fresh page: the full state; the next ones carry only
what changed); ``--fresh`` drops it, so every poll is a new page and gets everything (the worst case).

Training time is read from the run's own ``metrics.jsonl`` (``elapsed_s`` of the last step, seconds since the
trainer's first step), so model loading is not in the ratio; the wall time from /start to ``result.json`` is
printed too. Goal (issue 15): ratio <= 1.2 with 20 pollers on 2 cores, p95 poll latency <= 0.5 s, answers of a few
KB.

    python bench/load_poll.py [--visitors 20] [--steps 10] [--max-length 512] [--batch 4] [--fresh] [--tag after]

Prints a table and writes ``bench/results/2026-11-30-load-poll-<tag>.json``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DATA = str(ROOT / "assets" / "humaneval_alpaca.jsonl")
RESULTS = Path(__file__).resolve().parent / "results"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def poll_once(url: str, session_hash: str | None) -> tuple[float, int, list[Any]]:
    """One poll as the REST API documents it: POST /gradio_api/call/poll, then GET the event stream.

    Returns:
        (seconds for both requests, bytes of the event stream's answer, the decoded outputs).

    Raises:
        RuntimeError: the stream held no completed answer (an error event).
    """
    t0 = time.perf_counter()
    body: dict[str, Any] = {"data": []}
    if session_hash is not None:
        body["session_hash"] = session_hash
    req = urllib.request.Request(
        f"{url}gradio_api/call/poll",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as answer:
        event = json.load(answer)["event_id"]
    with urllib.request.urlopen(f"{url}gradio_api/call/poll/{event}", timeout=30) as answer:
        raw = answer.read()
    seconds = time.perf_counter() - t0
    text = raw.decode()
    if "event: complete" not in text:
        raise RuntimeError(f"poll answered {text[:120]!r}")
    line = next(x for x in text.splitlines() if x.startswith("data:"))
    return seconds, len(raw), json.loads(line[5:])


def visitor(url: str, interval_s: float, fresh: bool, stop: Any, out: Any) -> None:
    """One simulated visitor (its own process): poll every interval_s until ``stop`` is set; put its samples on ``out``."""
    session_hash = None if fresh else uuid.uuid4().hex[:11]
    samples: list[tuple[float, float, int]] = []  # (wall time, latency s, answer bytes)
    errors: list[str] = []
    while not stop.is_set():
        t0 = time.perf_counter()
        try:
            seconds, size, _ = poll_once(url, session_hash)
            samples.append((time.time(), seconds, size))
        except Exception as exc:  # a refused or failed poll counts against the goal
            errors.append(f"{type(exc).__name__}: {exc}"[:160])
        time.sleep(max(0.0, interval_s - (time.perf_counter() - t0)))
    out.put({"samples": samples, "errors": errors, "cpu_s": time.process_time()})


def start_server(workspace: Path) -> tuple[subprocess.Popen[bytes], str]:
    """``launch.py --port P`` in ``workspace`` (its log in workspace/server.log); returns once the page answers."""
    port = free_port()
    log = open(workspace / "server.log", "wb")  # noqa: SIM115  # closed with the process by the caller
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "launch.py"), "--port", str(port)],
        cwd=workspace,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/"
    for _ in range(240):
        if proc.poll() is not None:
            raise RuntimeError((workspace / "server.log").read_text()[-2000:])
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return proc, url
        except OSError:
            time.sleep(0.5)
    raise RuntimeError("the app did not answer in 120 s")


def train(url: str, workspace: Path, steps: int, max_length: int, batch: int) -> dict[str, Any]:
    """Start a run through /start, wait for its result.json (on disk: no poll); returns its timings and outcome."""
    from gradio_client import Client

    client = Client(url, verbose=False)
    t0 = time.time()
    client.predict(
        dataset_name=DATA,
        max_steps=steps,
        max_length=max_length,
        per_device_train_batch_size=batch,
        monitor_rows=0,
        save_steps=0,
        output_dir="runs",
        api_name="/start",
    )
    deadline = t0 + 3600
    while time.time() < deadline:
        results = list((workspace / "runs").glob("run-*/result.json"))
        if results:
            break
        time.sleep(0.5)
    else:
        raise RuntimeError("no result.json within an hour")
    wall_s = time.time() - t0
    run_dir = results[0].parent
    result = json.loads(results[0].read_text())
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x.strip()]
    timed = [r for r in rows if "elapsed_s" in r and "loss" in r]
    return {
        "status": result.get("status"),
        "steps": result.get("steps"),
        "train_s": timed[-1]["elapsed_s"] if timed else float("nan"),
        "wall_s": wall_s,
        "started": t0,
    }


def side(
    visitors: int, steps: int, max_length: int, batch: int, interval_s: float, fresh: bool
) -> dict[str, Any]:
    """One side of the comparison in a fresh app process: N visitors (0 for the baseline) while one run trains."""
    with tempfile.TemporaryDirectory(prefix="load-poll-") as tmp:
        workspace = Path(tmp)
        proc, url = start_server(workspace)
        ctx = mp.get_context("spawn")
        stop, out = ctx.Event(), ctx.Queue()
        procs = [
            ctx.Process(target=visitor, args=(url, interval_s, fresh, stop, out)) for _ in range(visitors)
        ]
        try:
            for p in procs:
                p.start()
            run = train(url, workspace, steps, max_length, batch)
            stop.set()
            reports = [out.get(timeout=60) for _ in procs]
        finally:
            stop.set()
            for p in procs:
                p.join(30)
            proc.terminate()
            proc.wait(30)
    # only the polls answered while the run trained (visitors start a little earlier, during the model's load)
    samples = [s for r in reports for s in r["samples"] if s[0] >= run["started"]]
    latencies = sorted(s[1] for s in samples)
    sizes = [s[2] for s in samples]
    run.update(
        visitors=visitors,
        polls=len(samples),
        errors=sum(len(r["errors"]) for r in reports),
        first_errors=[e for r in reports for e in r["errors"]][:3],
        visitors_cpu_s=sum(r["cpu_s"] for r in reports),
    )
    if latencies:
        run.update(
            p50_s=statistics.median(latencies),
            p95_s=latencies[int(0.95 * (len(latencies) - 1))],
            max_s=latencies[-1],
            bytes_median=int(statistics.median(sizes)),
            bytes_max=max(sizes),
            bytes_total=sum(sizes),
        )
    return run


def main() -> None:
    """Parse the arguments, measure both sides, print the table and write the JSON."""
    p = argparse.ArgumentParser()
    p.add_argument("--visitors", type=int, default=20)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--max-length", type=int, default=512)
    p.add_argument("--batch", type=int, default=4, help="per_device_train_batch_size")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between one visitor's polls")
    p.add_argument(
        "--fresh", action="store_true", help="no session_hash: every poll is a new page (worst case)"
    )
    p.add_argument("--tag", default="run", help="the JSON is bench/results/2026-11-30-load-poll-<tag>.json")
    a = p.parse_args()
    alone = side(0, a.steps, a.max_length, a.batch, a.interval, a.fresh)
    print(
        f"alone: {alone['steps']}/{a.steps} steps, training {alone['train_s']:.1f} s (wall {alone['wall_s']:.1f} s)"
    )
    polled = side(a.visitors, a.steps, a.max_length, a.batch, a.interval, a.fresh)
    ratio = polled["train_s"] / alone["train_s"]
    kind = "fresh page each poll" if a.fresh else "one session each"
    print(f"\n{a.visitors} visitors ({kind}) polling every {a.interval:g} s, {os.cpu_count()} cores:")
    print(
        "| visitors | polls | errors | p50 s | p95 s | max s | answer bytes (median / max) | training s alone "
        "| training s polled | ratio | wall s alone / polled |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    print(
        f"| {a.visitors} | {polled['polls']} | {polled['errors']} | {polled.get('p50_s', float('nan')):.3f} "
        f"| {polled.get('p95_s', float('nan')):.3f} | {polled.get('max_s', float('nan')):.3f} "
        f"| {polled.get('bytes_median', 0):,} / {polled.get('bytes_max', 0):,} | {alone['train_s']:.1f} "
        f"| {polled['train_s']:.1f} | **{ratio:.2f}** | {alone['wall_s']:.0f} / {polled['wall_s']:.0f} |"
    )
    print(
        f"visitors' own CPU: {polled['visitors_cpu_s']:.0f} s. Goal: ratio <= 1.2 "
        f"({'met' if ratio <= 1.2 else 'NOT met'}), p95 <= 0.5 s "
        f"({'met' if polled.get('p95_s', 9) <= 0.5 else 'NOT met'}), no lost steps "
        f"({'met' if polled['steps'] == alone['steps'] == a.steps else 'NOT met'})"
    )
    if polled["first_errors"]:
        print("first errors:", polled["first_errors"])
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"2026-11-30-load-poll-{a.tag}.json"
    args = {"visitors": a.visitors, "steps": a.steps, "max_length": a.max_length, "batch": a.batch}
    args.update(interval_s=a.interval, fresh=a.fresh, cpu_count=os.cpu_count())
    path.write_text(json.dumps({"args": args, "alone": alone, "polled": polled, "ratio": ratio}, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
