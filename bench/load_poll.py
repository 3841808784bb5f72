"""Load test on localhost: N simulated visitors poll the app while one run trains.

Starts ``launch.py`` on a free port (real HTTP, real gradio server), trains the embedded model for a few steps
through the public API (/start), and meanwhile runs N threads that each poll /poll as a browser's timer would (once
a second, plus as fast as answers come when --hammer is given). Prints the poll latency percentiles, the training
time, and the same training time with no visitors (the baseline, same process, run first) so the ratio shows what
the visitors cost. Goal (issue 7): training loses no steps and the 95th percentile poll answers in under 1 s.

    python bench/load_poll.py [--visitors 20] [--steps 8]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = str(ROOT / "assets" / "humaneval_alpaca.jsonl")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train_once(url: str, steps: int, out: str) -> tuple[float, str]:
    """Start a run through /start and wait for it to end; returns (seconds, final status text)."""
    from gradio_client import Client

    client = Client(url, verbose=False)
    t0 = time.time()
    client.predict(
        dataset_name=DATA,
        max_steps=steps,
        max_length=128,
        per_device_train_batch_size=2,
        monitor_rows=0,
        save_steps=0,
        output_dir=out,
        api_name="/start",
    )
    while True:
        status = client.predict(api_name="/poll")[0]
        if any(s in status for s in ("COMPLETED", "FAILED", "STOPPED")):
            return time.time() - t0, status
        time.sleep(1.0)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--visitors", type=int, default=20)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--interval", type=float, default=1.0, help="seconds between one visitor's polls")
    a = p.parse_args()
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    server = subprocess.Popen(
        [sys.executable, "launch.py", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        import urllib.request

        for _ in range(120):
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except OSError:
                time.sleep(1)
        out = f"/tmp/load-poll-{port}"
        alone_s, alone_status = train_once(url, a.steps, out)
        print(
            f"baseline: {a.steps} steps with no visitors in {alone_s:.1f} s ({alone_status.split(chr(10))[0][:80]})"
        )

        latencies: list[float] = []
        errors: list[str] = []
        done = threading.Event()

        def visitor() -> None:
            # A browser's timer: POST /gradio_api/call/poll with the points it has seen, read the answer (the
            # REST API a page uses; plain urllib so the simulated visitors cost little CPU themselves).
            import json
            import urllib.request

            seen = -1
            while not done.is_set():
                t0 = time.perf_counter()
                try:
                    req = urllib.request.Request(
                        f"{url}gradio_api/call/poll",
                        data=json.dumps({"data": [seen]}).encode(),
                        headers={"Content-Type": "application/json"},
                    )
                    event = json.load(urllib.request.urlopen(req, timeout=30))["event_id"]
                    body = urllib.request.urlopen(f"{url}gradio_api/call/poll/{event}", timeout=30).read()
                    line = next(x for x in body.decode().splitlines() if x.startswith("data:"))
                    outputs = json.loads(line[5:])
                    if not isinstance(outputs, list):
                        raise RuntimeError(f"poll answered {line[:80]}")
                    # gr.State is not returned over REST, so every poll asks for the chart: a worst case (a
                    # browser's state skips the chart when no point was added)
                    seen = int(outputs[-1]) if outputs[-1] is not None else -1
                    latencies.append(time.perf_counter() - t0)
                except Exception as exc:  # a refused or failed poll counts against the goal
                    errors.append(f"{type(exc).__name__}: {exc}"[:120])
                time.sleep(max(0.0, a.interval - (time.perf_counter() - t0)))

        threads = [threading.Thread(target=visitor, daemon=True) for _ in range(a.visitors)]
        for t in threads:
            t.start()
        import resource

        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        loaded_s, loaded_status = train_once(url, a.steps, out)
        done.set()
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        client_cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
        print(
            f"the {a.visitors} simulated visitors (urllib threads in this process) used {client_cpu:.0f} s of "
            f"CPU in {loaded_s:.0f} s on {os.cpu_count()} cores"
        )
        for t in threads:
            t.join(10)
        steps_done = int(loaded_status.split("step ")[1].split("/")[0]) if "step " in loaded_status else -1
        if errors:
            print("first errors:", errors[:3])
        lat = sorted(latencies) or [float("nan")]
        p50 = statistics.median(lat)
        p95 = lat[int(0.95 * (len(lat) - 1))]
        print(
            f"with {a.visitors} visitors polling every {a.interval:g} s: {steps_done}/{a.steps} steps in {loaded_s:.1f} s"
        )
        print("| visitors | polls | errors | p50 s | p95 s | max s | training s | training s alone | ratio |")
        print("|---|---|---|---|---|---|---|---|---|")
        print(
            f"| {a.visitors} | {len(lat)} | {len(errors)} | {p50:.3f} | {p95:.3f} | {lat[-1]:.3f} | {loaded_s:.1f} "
            f"| {alone_s:.1f} | {loaded_s / alone_s:.2f} |"
        )
        print(
            f"goal: no lost steps ({'met' if steps_done == a.steps else 'NOT met'}), p95 < 1 s "
            f"({'met' if p95 < 1.0 else 'NOT met'})"
        )
        if errors:
            print("first errors:", errors[:3])
    finally:
        server.terminate()
        server.wait(20)


if __name__ == "__main__":
    main()
