"""Allowed values of TrainingConfig's choice fields (shared by the config, its checks and the UI)."""

QUANT_TYPES = ("nf4", "fp4")
COMPUTE_DTYPES = ("bfloat16", "float16", "float32")
DTYPES = ("auto", "bfloat16", "float16", "float32")
SCHEDULERS = ("linear", "cosine", "constant", "constant_with_warmup")
OPTIMIZERS = ("adamw_torch", "adamw_8bit", "paged_adamw_8bit")
DATASET_FORMATS = ("auto", "alpaca", "prompt_completion", "messages", "sharegpt", "text")
# auto: a flash-attention varlen kernel for packed rows on a CUDA GPU, else PyTorch SDPA (core/engine.py).
ATTN_IMPLEMENTATIONS = ("auto", "sdpa", "eager", "varlen")
# auto: DDP when the replicated weights fit one GPU, else FSDP (core/parallel.py, choose_strategy).
DISTRIBUTED_STRATEGIES = ("auto", "ddp", "fsdp")
