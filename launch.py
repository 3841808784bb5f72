"""LoRA Studio entry point.

    python launch.py [--host 127.0.0.1] [--port 7860] [--share] [--auth USER:PASSWORD]   open the UI
    python launch.py validate CONFIG.json [--report CSV] [--json]      check the data before training
    python launch.py train CONFIG.json [--json]                        train headless
        [--num-processes N] [--distributed-strategy auto|ddp|fsdp] [--accelerate-config FILE]  over N processes
    python launch.py export RUN_DIR (--merged | --adapter) [--out DIR] export a run
    python launch.py estimate --model ID_OR_PATH --gpu-gib N [--dtype D] [--optim O] [--num-processes N] [--json]
    python launch.py plan --model ID_OR_PATH --gpu-gib N [--config CONFIG.json] --out PLAN.json   a config that fits

Exit codes: 0 success, 1 the run / export failed, 2 bad arguments or config (every problem listed).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import signal
import sys
from pathlib import Path
from typing import Any

# A Hugging Face Space routes traffic to 0.0.0.0:7860 inside its container; everywhere else stay on loopback.
UI_DEFAULT_HOST = "0.0.0.0" if os.environ.get("SPACE_ID") else "127.0.0.1"
UI_DEFAULT_PORT = 7860


def _json(obj: Any) -> str:
    """Strict JSON (NaN / inf become null, which every JSON parser accepts)."""

    def clean(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return v

    return json.dumps(clean(obj), allow_nan=False)


def _fail(message: str, code: int, as_json: bool = False) -> int:
    print(message, file=sys.stderr)
    if as_json:
        print(_json({"status": "failed" if code == 1 else "invalid", "error": message}))
    return code


def cmd_train(args: argparse.Namespace) -> int:
    from core.config import TrainingConfig
    from core.errors import ConfigError, StudioError
    from core.job import TrainingJob

    overrides = {
        "num_processes": args.num_processes,
        "distributed_strategy": args.distributed_strategy,
        "accelerate_config_file": args.accelerate_config,
    }
    try:
        cfg = TrainingConfig.from_json_file(args.config)
        changes = {k: v for k, v in overrides.items() if v is not None}
        cfg = cfg.replace(**changes) if changes else cfg
    except ConfigError as exc:
        return _fail(str(exc), 2, args.json)
    job = TrainingJob()
    try:
        run_dir = job.start(cfg)
    except ConfigError as exc:
        return _fail(str(exc), 2, args.json)
    except StudioError as exc:  # a full disk, a busy machine: one line, no traceback
        return _fail(str(exc), 1, args.json)
    print(f"Run folder: {run_dir}", file=sys.stderr)
    seen = 0
    # With --json, stdout carries only the final JSON line: the Trainer's own log prints go to stderr.
    with contextlib.redirect_stdout(sys.stderr if args.json else sys.stdout):
        try:
            while True:
                # read "done" before the snapshot: a job that ends between the two would otherwise leave a
                # snapshot from before its terminal state (seen in CI under load: "completed" run, exit 1)
                done = not job.is_running()
                snap = job.wait(timeout_s=1.0)
                new = snap.log_total - seen
                for line in snap.logs[len(snap.logs) - min(new, len(snap.logs)) :] if new else ():
                    print(line, file=sys.stderr)
                seen = snap.log_total
                if done:
                    break
        except KeyboardInterrupt:
            print("Stopping after the current step (Ctrl-C again to abort)...", file=sys.stderr)
            job.stop()
            snap = job.wait()
    losses = [h["loss"] for h in snap.history if "loss" in h]
    monitor = [h["eval_train_sample_loss"] for h in snap.history if "eval_train_sample_loss" in h]
    result: dict[str, Any] = {
        "run_dir": snap.run_dir,
        "status": snap.status,
        "steps": snap.step,
        "final_loss": snap.info.get("final_loss"),
        "first_loss": losses[0] if losses else None,
        "monitor_loss_start": monitor[0] if monitor else None,
        "monitor_loss_end": monitor[-1] if monitor else None,
        "message": snap.message,
        "trainable_params": snap.info.get("trainable_params"),
        "total_params": snap.info.get("total_params"),
    }
    if args.json:
        print(_json(result))
    else:
        print(snap.message)
    return 0 if snap.status in ("completed", "stopped") else 1


def cmd_train_worker(args: argparse.Namespace) -> int:
    from core.worker import run_worker

    return run_worker(Path(args.run_dir))


def cmd_validate(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from core.config import TrainingConfig
    from core.errors import ConfigError, StudioError
    from core.validation import validate_config

    try:
        cfg = TrainingConfig.from_json_file(args.config)
    except ConfigError as exc:
        return _fail(str(exc), 2, args.json)
    # one streaming pass (core.validation): memory stays flat whatever the file's size; rows counted on stderr
    with tqdm(desc="Validating", unit=" rows", file=sys.stderr, ascii=True, mininterval=1.0) as bar:

        def progress(rows: int) -> None:
            bar.update(rows - bar.n)

        try:
            report = validate_config(cfg, progress=progress)
        except StudioError as exc:
            bar.close()
            return _fail(str(exc), 1, args.json)
        progress(report.rows_read)  # the last batch is counted when the pass ends
    if args.report:
        report.write_issues_csv(Path(args.report))
    summary = {**report.as_dict(), "report_csv": args.report}
    if args.json:
        print(_json(summary))
    else:
        print(report.summary())
        for why, n in summary["dropped_by_reason"].items():
            print(f"  {n} x {why}")
        if args.report:
            print(f"Every dropped or altered row: {args.report}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from core.errors import StudioError
    from core.export import export_adapter, export_merged

    try:
        result = (
            export_merged(args.run_dir, args.out, args.dtype)
            if args.merged
            else export_adapter(args.run_dir, args.out)
        )
    except StudioError as exc:
        return _fail(str(exc), 1, args.json)
    except OSError as exc:
        return _fail(f"Export failed: {exc}", 1, args.json)
    if args.json:
        from dataclasses import asdict

        print(_json(asdict(result)))
    else:
        print(result.summary())
        if result.zip_path:
            print(f"Zip: {result.zip_path}")
    return 0


def cmd_estimate(args: argparse.Namespace) -> int:
    from core.config import TrainingConfig
    from core.errors import ConfigError, StudioError
    from core.model import inspect_model, target_modules_for
    from core.plan import plan_training
    from core.plan_report import estimate_report
    from ui.views import plan_text

    ok = math.isfinite(args.gpu_gib) and 0 < args.gpu_gib <= 4096
    problems = [] if ok else [f"--gpu-gib: {args.gpu_gib} must be a size in GiB above 0 and at most 4096."]
    fields = ("max_length", "lora_r", "per_device_train_batch_size", "gradient_accumulation_steps", "dtype")
    overrides = {k: getattr(args, k) for k in (*fields, "gradient_checkpointing", "optim")}
    overrides["model_name_or_path"] = args.model
    try:
        base = TrainingConfig.from_json_file(args.config).to_dict() if args.config else {}
        cfg = TrainingConfig.from_dict({**base, **{k: v for k, v in overrides.items() if v is not None}})
    except ConfigError as exc:
        problems += exc.problems
    from core.runs import new_file_problems

    problems += new_file_problems(args.out, "--out")
    if problems:
        return _fail(str(ConfigError(problems)), 2, args.json)
    try:
        spec = inspect_model(cfg.model_name_or_path)
    except StudioError as exc:
        return _fail(str(exc), 1, args.json)
    methods = None if args.method == "auto" else (args.method,)
    try:
        target_modules_for(cfg, spec)  # a misspelled module would plan 0 trainable parameters
        result = plan_training(spec, cfg, args.gpu_gib, methods=methods)
        report = estimate_report(spec, cfg, args.gpu_gib, result, args.num_processes)
    except StudioError as exc:  # a target module the model lacks; a method its distributed_strategy refuses
        return _fail(str(exc), 2, args.json)
    notes = []
    if args.out and result.chosen is not None:
        from core.runs import write_json_new

        try:
            write_json_new(Path(args.out), report["plan"]["config"])
        except FileExistsError:
            return _fail(
                f"--out: {args.out} appeared meanwhile; nothing overwritten, pick a new name.", 2, args.json
            )
        except OSError as exc:
            return _fail(f"--out: cannot write {args.out} ({exc.strerror}).", 1, args.json)
        report["out"] = args.out
        notes.append(f"Config written to {args.out}")
        if not cfg.dataset_name:
            notes.append(
                "It has no dataset_name yet: add your data file there (or pass --config with your settings) "
                "before `launch.py train`."
            )
    elif args.out:
        notes.append(f"Nothing written to {args.out}.")
    print(_json(report) if args.json else "\n".join([plan_text(spec, cfg, result, report), *notes]))
    return 0 if result.chosen is not None or not args.out else 1


def cmd_ui(args: argparse.Namespace) -> int:
    from ui.serve import serve

    return serve(args)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's own errors exit 2 with usage, as ours do
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="launch.py", description="LoRA Studio: no-code LoRA / QLoRA fine-tuning.")
    p.add_argument(
        "--host", default=UI_DEFAULT_HOST, help="UI address (default 127.0.0.1; 0.0.0.0 to share on the LAN)"
    )
    p.add_argument("--port", type=int, default=UI_DEFAULT_PORT, help="UI port (default 7860)")
    p.add_argument("--share", action="store_true", help="also open a public gradio.live link")
    p.add_argument("--auth", default=None, help="USER:PASSWORD required to open the UI (a login page)")
    p.add_argument(
        "--private-sessions",
        action="store_true",
        help="give each browser its own uploads, runs, exports and chat (on by itself on a Hugging Face Space)",
    )
    p.add_argument(
        "--session-ttl-hours",
        type=float,
        default=6.0,
        help="with private sessions: delete a session's files this long after its last request (default 6)",
    )
    p.add_argument(
        "--workspace",
        default=None,
        help="local install: the folder whose runs/ the UI uses (default: the current folder)",
    )
    sub = p.add_subparsers(dest="command", parser_class=_Parser)
    t = sub.add_parser("train", help="train from a JSON config of TrainingConfig field names")
    t.add_argument("config")
    t.add_argument("--json", action="store_true", help="print a JSON summary as the last stdout line")
    t.add_argument(
        "--num-processes",
        dest="num_processes",
        type=int,
        help="processes (one per GPU) through accelerate launch; 0 = every visible GPU (sets num_processes)",
    )
    t.add_argument(
        "--distributed-strategy",
        dest="distributed_strategy",
        choices=["auto", "ddp", "fsdp"],
        help="with several processes: DDP, FSDP, or auto (DDP when the model fits one GPU)",
    )
    t.add_argument(
        "--accelerate-config",
        dest="accelerate_config",
        help="an accelerate config file (`accelerate config`), e.g. for several machines",
    )
    w = sub.add_parser("train-worker", help="internal: one rank of a multi-process run (accelerate launch)")
    w.add_argument("run_dir")
    v = sub.add_parser("validate", help="check a config's dataset: counts per stage, dropped rows and why")
    v.add_argument("config")
    v.add_argument("--report", default=None, help="write every dropped or altered row to this CSV")
    v.add_argument("--json", action="store_true")
    e = sub.add_parser("export", help="export a run's adapter or merged weights")
    e.add_argument("run_dir")
    kind = e.add_mutually_exclusive_group(required=True)
    kind.add_argument("--merged", action="store_true", help="merge into a 16-bit base, save, verify")
    kind.add_argument("--adapter", action="store_true", help="copy the LoRA adapter only")
    e.add_argument("--out", default=None, help="destination folder (must not exist)")
    e.add_argument(
        "--dtype",
        default="auto",
        choices=["auto", "bfloat16", "float16", "float32"],
        help="merged weights dtype (auto: the base's 16-bit dtype)",
    )
    e.add_argument("--json", action="store_true")
    for name, text in (
        ("estimate", "GPU memory by method and component, and the fastest plan that fits"),
        ("plan", "the fastest plan that fits a GPU, written as a config `train` accepts (--out)"),
    ):
        s = sub.add_parser(name, help=text)
        s.add_argument("--model", required=True, help="hub id, catalogue id or local folder")
        s.add_argument(
            "--gpu-gib",
            type=float,
            required=True,
            help="usable GPU memory in GiB as the driver reports it (a '24 GB' RTX 4090 is 23.99, a '16 GB' T4 15.0)",
        )
        s.add_argument("--config", default=None, help="start from this config file (dataset, rank, ...)")
        s.add_argument("--out", default=None, help="write the chosen plan's config here (never overwritten)")
        s.add_argument("--method", choices=["auto", "lora", "lora8", "qlora"], default="auto")
        s.add_argument("--max-length", dest="max_length", type=int)
        s.add_argument("--lora-r", dest="lora_r", type=int)
        s.add_argument("--batch-size", dest="per_device_train_batch_size", type=int)
        s.add_argument("--gradient-accumulation-steps", dest="gradient_accumulation_steps", type=int)
        s.add_argument(
            "--gradient-checkpointing",
            dest="gradient_checkpointing",
            nargs="?",
            const="true",
            choices=["auto", "true", "false"],
            help="fix it on or off (default: the planner chooses)",
        )
        s.add_argument("--dtype", choices=["auto", "bfloat16", "float16", "float32"], default=None)
        s.add_argument("--optim", choices=["adamw_torch", "adamw_8bit", "paged_adamw_8bit"], default=None)
        s.add_argument(
            "--num-processes",
            dest="num_processes",
            type=_positive_int,
            default=1,
            help="GPUs to spread the run over: adds the memory per GPU under DDP or FSDP (with the reason)",
        )
        s.add_argument("--json", action="store_true")
    return p


def _positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (the GPUs an estimate spreads over)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a number of GPUs (use 1 or more)")
    return value


def _console_safe() -> None:
    """Make every console write survive characters the console's encoding cannot hold.

    A Windows console in a Chinese locale (cp936 / GBK), ``PYTHONIOENCODING=ascii`` or a C locale cannot encode
    an emoji or U+2047 in a file name, a chat role or a log line; Python's default ``errors="strict"`` then raises
    UnicodeEncodeError at the print. Keep each stream's encoding but write what it cannot encode as a backslash
    escape (``\\U0001f642``), on sys.stdout, sys.stderr and the stream of every logging handler already set up.
    Log files (``train.log``) are opened with ``encoding="utf-8"`` and are not affected.
    """
    streams: list[Any] = [sys.stdout, sys.stderr]
    loggers = [logging.getLogger(), *(logging.getLogger(n) for n in list(logging.root.manager.loggerDict))]
    for logger in loggers:
        for handler in getattr(logger, "handlers", ()):
            if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
                streams.append(handler.stream)
    for stream in streams:
        reconfigure = getattr(stream, "reconfigure", None)
        if (
            reconfigure is None
        ):  # replaced by a caller (a test's capture, a plain StringIO): nothing to encode
            continue
        with contextlib.suppress(ValueError, OSError):  # a closed or detached stream
            reconfigure(errors="backslashreplace")


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen command; returns the exit code."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for (
        handler
    ) in logging.getLogger().handlers:  # the engine logs INFO to each run's train.log, not the console
        handler.setLevel(logging.WARNING)
    # bitsandbytes warns on import that optional CPU kernels ("pip install kernels") are missing; irrelevant here.
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
    _console_safe()  # after basicConfig, so its handler (and any a caller set up) is covered too
    args = build_parser().parse_args(argv)
    if args.command != "train-worker":  # a rank is ended by its launcher (and by its parent's death)
        from core.procs import exit_cleanly_on

        exit_cleanly_on(signal.SIGTERM, signal.SIGHUP)
    handlers = {
        "validate": cmd_validate,
        "train": cmd_train,
        "train-worker": cmd_train_worker,
        "export": cmd_export,
        "estimate": cmd_estimate,
        "plan": cmd_estimate,
        None: cmd_ui,
    }
    return handlers[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
