"""Diagnostics only (scripts/gpu_diag.py --cap-check): make each training rank's GPU look smaller.

When a process has LOCAL_RANK (an accelerate launch rank) and STUDIO_DIAG_GPU_GIB is set, PyTorch's caching
allocator on that rank's GPU is capped at that many GiB (``torch.cuda.set_per_process_memory_fraction``), so a
model whose weights exceed the cap cannot be held whole by one rank: DDP must run out of memory, FSDP must not.
"""

import os
import sys

if os.environ.get("LOCAL_RANK") is not None and os.environ.get("STUDIO_DIAG_GPU_GIB"):
    import torch

    rank = int(os.environ["LOCAL_RANK"])
    gib = float(os.environ["STUDIO_DIAG_GPU_GIB"])
    total = torch.cuda.get_device_properties(rank).total_memory
    torch.cuda.set_per_process_memory_fraction(gib * 2**30 / total, rank)
    print(f"[gpu_cap] rank {rank}: allocator capped at {gib} GiB", file=sys.stderr, flush=True)

if os.environ.get("LOCAL_RANK") is not None and os.environ.get("STUDIO_DIAG_MEM_TRACE"):
    # print this rank's allocated GPU memory before accelerate prepares the model and after each FSDP unit wraps
    import functools

    import accelerate
    import torch
    from torch.distributed.fsdp import FullyShardedDataParallel

    def _gib() -> str:
        return f"{torch.cuda.memory_allocated() / 2**30:.3f} GiB (peak {torch.cuda.max_memory_allocated() / 2**30:.3f})"

    _init = FullyShardedDataParallel.__init__

    @functools.wraps(_init)
    def _traced_init(self, module, *args, **kwargs):
        before = _gib()
        _init(self, module, *args, **kwargs)
        print(
            f"[memtrace] FSDP unit {type(module).__name__}: {before} -> {_gib()}", file=sys.stderr, flush=True
        )

    FullyShardedDataParallel.__init__ = _traced_init
    _prepare = accelerate.Accelerator.prepare_model

    @functools.wraps(_prepare)
    def _traced_prepare(self, model, *args, **kwargs):
        devices = {str(p.device) for p in model.parameters()}
        print(
            f"[memtrace] before prepare_model: {_gib()}, parameters on {devices}", file=sys.stderr, flush=True
        )
        out = _prepare(self, model, *args, **kwargs)
        print(f"[memtrace] after prepare_model: {_gib()}", file=sys.stderr, flush=True)
        return out

    accelerate.Accelerator.prepare_model = _traced_prepare
