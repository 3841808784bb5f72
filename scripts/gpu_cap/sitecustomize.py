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
