"""Memory a merged export needs, the memory the machine has now, and the check that refuses a merge up front.

A merged export (core.export.export_merged) holds one full copy of the base at a time, never the 4-bit QLoRA
weights: first base + adapter unmerged (the reference logits), then the base at the export dtype with the adapter
merged into it (what is saved), then the saved folder reloaded (the verification). Each copy is freed (gc + glibc's
malloc_trim, core.export._release_memory) before the next one loads, so they do not coexist. Before that release
they did: glibc kept the freed float32 reference's pages and the reload came on top (SmolLM2-135M, anonymous peak
1,020 MiB before, 549 MiB after; bench/RESULTS.md, 2026-11-30 session 5).

Arithmetic (bytes, then GiB = 2**30 bytes); N = the base's parameters (ModelSpec.num_params, tied embeddings once):

- base: N x bytes per parameter of the export dtype (2 for "auto", "bfloat16", "float16"; 4 for "float32").
- adapter: LoRA parameters x 4 (peft loads adapters in float32 on a 16-bit base: ``autocast_adapter_dtype``).
- verification: N x 2, the reference and the reload in 16-bit. export_merged runs them in float32 only when 4N fits
  in 60% of the available memory (core.export._reference_dtype); 16-bit is the least it runs with, so that is what
  the check asks for (total_float32_verification_gib is the peak when float32 fits).
- runtime: one Linear's merge delta (out x in x 6 bytes: peft's get_delta_weight computes B A in float32 on the CPU
  and casts it back) + 0.1 GiB (tokenizer, the probe prompt's logits, Python objects) + 5% of the copy (allocator).
- total = max(base, verification) + adapter + runtime: what the export adds to the process's memory.

Measured with bench/merge_memory.py (2-core CPU, 24 GiB, torch 2.13 / transformers 5.24 / peft 0.21; each export
in a fresh process; increase of the process's anonymous memory at its peak, which is what the OOM killer counts):

| base | export dtype, verification in | anonymous peak | peak RSS | estimate for that verification |
|---|---|---|---|---|
| SmolLM2-135M (trained 4 steps, r 8) | auto (bf16), float32 | 549 MiB | 791 MiB | 656 MiB |
| SmolLM2-135M | auto (bf16), bfloat16 | 244 MiB | 313 MiB | 386 MiB |
| SmolLM2-135M | float32, float32 | 553 MiB | 789 MiB | 656 MiB |
| random Llama 1.17B (r 16) | auto (bf16), float32 | 4,548 MiB | 6,723 MiB | 4,904 MiB |
| random Llama 1.17B | auto (bf16), bfloat16 | 2,160 MiB | 2,426 MiB | 2,560 MiB |
| random Llama 1.17B | float32, float32 | 4,755 MiB | 6,771 MiB | 4,904 MiB |

The estimate is 3-58% above the anonymous peak. The peak RSS is higher only where a 16-bit checkpoint is converted to
float32: its memory-mapped file pages (2N) are counted while they are read, and being page cache the kernel drops
them under pressure (MemAvailable counts them as available too). On an H200 (session 2, Llama-2-7B shape with a
49,152-token vocabulary, r 16, float32 verification) the peak allocated was 26.0 GiB; this estimate says 27.4.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from core.errors import ExportError
from core.modelspec import ModelSpec

GIB = 2**30
DTYPE_BYTES = {"auto": 2, "bfloat16": 2, "float16": 2, "float32": 4}  # "auto" is always a 16-bit dtype
ADAPTER_BYTES = 4  # peft autocasts LoRA A/B to float32 when it loads an adapter on a 16-bit base
VERIFY_BYTES = 2  # the least export_merged verifies in (bfloat16); float32 only when 4N fits in 60% of free
DEFAULT_LORA_R = 16  # assumed rank when the adapter is not known yet (the GPU memory tab before training)
# peft's get_delta_weight computes B A in float32 on the CPU for a 16-bit base (cast_to_fp32 in
# peft/tuners/lora/layer.py), then casts it back before adding it in place: 4 + 2 bytes per weight of one Linear.
DELTA_BYTES = 6
RUNTIME_FIXED_GIB = 0.1  # tokenizer, probe logits (tokens x vocab x 4 B, a few copies), Python objects
RUNTIME_FRACTION = 0.05  # allocator slack on top of the largest copy
# export_merged verifies in float32 when a float32 copy (4N bytes) fits in this share of the available memory
FLOAT32_VERIFY_SHARE = 0.6
CGROUP_ROOT = Path("/sys/fs/cgroup")


def verifies_in_float32(num_params: int, available_gib: float) -> bool:
    """Whether export_merged computes its reference and reload in float32 (exact) rather than bfloat16: when a
    float32 copy (4 bytes per parameter) fits in FLOAT32_VERIFY_SHARE of ``available_gib``."""
    return num_params * 4 < FLOAT32_VERIFY_SHARE * available_gib * GIB


@dataclass(frozen=True)
class MergeMemory:
    """Memory a merged export adds to the process, by component, in GiB (2**30 bytes).

    Attributes:
        device: where the merge runs: "cpu" (RAM) or "cuda" (GPU memory).
        dtype: the export dtype asked for ("auto" is a 16-bit dtype).
        num_params: N, the base's parameters.
        adapter_params: LoRA parameters of the adapter.
        base_gib: the merged copy of the base: N x bytes/param of ``dtype``.
        adapter_gib: the adapter in float32: adapter_params x 4.
        verification_gib: one 16-bit copy of the base (N x 2), the reference before the merge and the reload
            after it; it replaces the merged copy rather than adding to it.
        runtime_gib: one Linear's merge delta (largest out x in x DELTA_BYTES) + RUNTIME_FIXED_GIB +
            RUNTIME_FRACTION x the largest copy.
    """

    device: str
    dtype: str
    num_params: int
    adapter_params: int
    base_gib: float
    adapter_gib: float
    verification_gib: float
    runtime_gib: float

    @property
    def peak_copy_gib(self) -> float:
        """The largest model copy held at once: max(base, verification), GiB."""
        return max(self.base_gib, self.verification_gib)

    @property
    def total_gib(self) -> float:
        """What the merge needs free: max(base, verification) + adapter + runtime, GiB."""
        return self.peak_copy_gib + self.adapter_gib + self.runtime_gib

    @property
    def total_float32_verification_gib(self) -> float:
        """The peak when export_merged verifies in float32 (it does when that fits in 60% of free memory), GiB."""
        extra = max(self.base_gib, 2 * self.verification_gib) - self.peak_copy_gib
        return self.total_gib + extra * (1 + RUNTIME_FRACTION)

    @property
    def where(self) -> str:
        """Memory the merge uses, in words: "RAM" or "GPU memory"."""
        return "GPU memory" if self.device.startswith("cuda") else "RAM"

    def as_dict(self) -> dict[str, float]:
        """The GiB components and total_gib, for JSON and tables."""
        out = {k: v for k, v in asdict(self).items() if k.endswith("_gib")}
        out["total_gib"] = self.total_gib
        return out

    def components(self) -> str:
        """The sum in words, e.g. "16-bit base 0.25 GiB + adapter 0.01 + runtime 0.12"."""
        bits = "32-bit" if DTYPE_BYTES.get(self.dtype, 2) == 4 else "16-bit"
        return f"{bits} base {self.base_gib:.2f} GiB + adapter {self.adapter_gib:.2f} + runtime {self.runtime_gib:.2f}"

    def summary(self, available_gib: float | None = None) -> str:
        """One line for the Export tab / GPU memory tab: "Merged export needs about X GiB of RAM; available now: Y"."""
        line = f"Merged export needs about {self.total_gib:.1f} GiB of {self.where}"
        if available_gib is not None:
            line += f"; available now: {available_gib:.1f} GiB"
        return line


def estimate_merge_memory(
    spec: ModelSpec, dtype: str = "auto", device: str = "cpu", adapter_params: int | None = None
) -> MergeMemory:
    """Estimate what a merged export of ``spec`` adds to the process's memory (arithmetic in the module docstring).

    Args:
        spec: the base model (core.model.inspect_model; meta device, no weights).
        dtype: export dtype, one of core.export.MERGED_DTYPES ("auto" counts 2 bytes per parameter).
        device: "cpu" (RAM) or "cuda" (GPU memory): where export_merged loads the copies.
        adapter_params: LoRA parameters of the adapter (adapter_params_in); None assumes r = DEFAULT_LORA_R on every
            linear module of the decoder (spec.lora_params).

    Returns:
        MergeMemory in GiB.

    Raises:
        ExportError: ``dtype`` is not a merged-export dtype.
    """
    if dtype not in DTYPE_BYTES:
        raise ExportError(f"dtype {dtype!r} is not one of {tuple(DTYPE_BYTES)}.")
    n = spec.num_params
    if adapter_params is None:
        adapter_params = spec.lora_params(DEFAULT_LORA_R, spec.linear_names)
    base = n * DTYPE_BYTES[dtype]
    verification = n * VERIFY_BYTES
    largest_linear = max((g.in_features * g.out_features for g in spec.linear_groups), default=0)
    copy = max(base, verification)
    runtime = largest_linear * DELTA_BYTES + RUNTIME_FIXED_GIB * GIB + RUNTIME_FRACTION * copy
    return MergeMemory(
        device="cuda" if device.startswith("cuda") else "cpu",
        dtype=dtype,
        num_params=n,
        adapter_params=adapter_params,
        base_gib=base / GIB,
        adapter_gib=adapter_params * ADAPTER_BYTES / GIB,
        verification_gib=verification / GIB,
        runtime_gib=runtime / GIB,
    )


def adapter_params_in(adapter_dir: str | Path) -> int | None:
    """Parameters in ``adapter_dir/adapter_model.safetensors``, from its header alone (no tensor read).

    The safetensors format starts with an 8-byte little-endian header length, then a JSON header mapping each
    tensor name to its dtype, shape and offsets (https://github.com/huggingface/safetensors#format).
    Returns None when the file is missing or its header unreadable (the export's adapter checks name that).
    """
    path = Path(adapter_dir) / "adapter_model.safetensors"
    try:
        with path.open("rb") as fh:
            length = int.from_bytes(fh.read(8), "little")
            if not 0 < length <= 100 * 2**20:
                return None
            header = json.loads(fh.read(length))
        return sum(math.prod(v["shape"]) for k, v in header.items() if k != "__metadata__")
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def merge_memory_for_run(run_dir: str | Path, dtype: str = "auto", device: str | None = None) -> MergeMemory:
    """estimate_merge_memory for a run folder: its config.json's base, its adapter's real size.

    Args:
        run_dir: a run folder (config.json with model_name_or_path, adapter/).
        dtype: export dtype.
        device: "cpu" or "cuda"; None: "cuda" when torch sees a GPU (what export_merged merges on).

    Raises:
        ExportError: no config.json in ``run_dir``, or a bad dtype.
        ModelError: the base's config cannot be read (core.model.inspect_model).
    """
    from core.model import inspect_model

    cfg_path = Path(run_dir) / "config.json"
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
        name = str(cfg["model_name_or_path"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ExportError(f"{run_dir}: not a run folder ({cfg_path.name} unreadable: {exc}).") from None
    if device is None:
        device = merge_device()
    return estimate_merge_memory(
        inspect_model(name), dtype, device, adapter_params_in(Path(run_dir) / "adapter")
    )


def merge_device() -> str:
    """Where export_merged loads the copies: "cuda" when torch sees a GPU, else "cpu"."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None  # "max" (cgroup v2, no limit) is not a number


def _inactive_file(stat: Path, key: str) -> int:
    try:
        for line in stat.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key and value.strip().isdigit():
                return int(value)
    except OSError:
        pass
    return 0


def cgroup_available_bytes(root: Path = CGROUP_ROOT) -> int | None:
    """Bytes the process's memory cgroup still allows, or None when no limit is set.

    cgroup v2: ``memory.max`` - (``memory.current`` - inactive_file of ``memory.stat``); cgroup v1:
    ``memory/memory.limit_in_bytes`` - (``memory.usage_in_bytes`` - total_inactive_file). Inactive page cache is
    reclaimed before the OOM killer runs, so it counts as available (what docker stats and the kernel's
    MemAvailable do too). A v1 limit of ~2**63 means none.
    """
    for limit_f, usage_f, stat_f, key in (
        (root / "memory.max", root / "memory.current", root / "memory.stat", "inactive_file"),
        (
            root / "memory" / "memory.limit_in_bytes",
            root / "memory" / "memory.usage_in_bytes",
            root / "memory" / "memory.stat",
            "total_inactive_file",
        ),
    ):
        limit = _read_int(limit_f)
        if limit is None or limit >= 2**60:
            continue
        usage = _read_int(usage_f) or 0
        working = max(usage - _inactive_file(stat_f, key), 0)
        return max(limit - working, 0)
    return None


def host_available_bytes() -> int:
    """RAM the kernel can give without swapping: psutil's ``available`` (MemAvailable on Linux), else
    /proc/meminfo MemAvailable, else free pages (os.sysconf SC_AVPHYS_PAGES)."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024  # the file counts kB = 1024 bytes
    except (OSError, ValueError, IndexError):
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def available_memory_gib(device: str = "cpu") -> float:
    """Memory a merge on ``device`` can use now, GiB.

    cpu: the smaller of the host's available RAM (host_available_bytes) and what the cgroup limit still allows
    (cgroup_available_bytes; a container's limit is what its OOM killer enforces). cuda: the GPU's free memory
    (torch.cuda.mem_get_info, which creates the CUDA context first, so the context is already counted) plus what
    this process's caching allocator holds but does not use (reserved - allocated: a later load reuses it).
    """
    if device.startswith("cuda"):
        import torch

        free, _ = torch.cuda.mem_get_info()
        cached = torch.cuda.memory_reserved() - torch.cuda.memory_allocated()
        return (free + cached) / GIB
    host = host_available_bytes()
    limit = cgroup_available_bytes()
    return (host if limit is None else min(host, limit)) / GIB


def check_merge_memory(need: MergeMemory, available_gib: float | None = None) -> float:
    """Refuse a merge that cannot fit, before anything loads.

    Args:
        need: estimate_merge_memory's result.
        available_gib: what the machine has; None measures it (available_memory_gib on ``need.device``).

    Returns:
        The available GiB it was checked against.

    Raises:
        ExportError: need.total_gib > available_gib; the message gives both, the components and what to do.
    """
    if available_gib is None:
        available_gib = available_memory_gib(need.device)
    if need.total_gib > available_gib:
        machine = "this GPU has" if need.where == "GPU memory" else "this machine has"
        raise ExportError(
            f"Merging needs about {need.total_gib:.1f} GiB of {need.where} ({need.components()}; the reference "
            f"and the verification reload replace the base, they do not add); {machine} {available_gib:.1f} GiB "
            "available. Free memory, export the adapter only (it needs almost none), or merge on a bigger machine."
        )
    return available_gib
