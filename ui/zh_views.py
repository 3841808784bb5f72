"""Chinese for the shared formatters (ui.views, ui.charts, ui.poll) and for the engine's messages they show
(core.job status messages, core.plan reasons, core.vram component names): see ``ui.i18n.tr`` / ``tr_text``.

Terms follow the textbook chapter (/work/shared/seed, chapter 26): 秩 r, 缩放因子 α, 显存, 量化, 可训练参数.
"""

from __future__ import annotations

ZH: dict[str, str] = {
    "**Fix the settings first:** {problems}": "**请先修正设置：** {problems}",
    "{h}h {m}m": "{h} 小时 {m} 分",
    "{m}m {s}s": "{m} 分 {s} 秒",
    "{s}s": "{s} 秒",
    "Model": "模型",
    "Training {status} after {steps} step, final loss {loss}. Adapter saved.": "训练{status}，共 {steps} 步，"
    "最终 loss {loss}。适配器已保存。",
    "Training {status} after {steps} step. Adapter saved.": "训练{status}，共 {steps} 步。适配器已保存。",
    "This run's folder has since been deleted.": "这个运行的文件夹之后已被删除。",
    # model facts
    "**Cannot use this model.** {reason}": "**无法使用这个模型。** {reason}",
    "Architecture": "架构",
    "Parameters": "参数量",
    "Stored dtype": "存储精度（dtype）",
    "Context length": "上下文长度",
    "{n} tokens": "{n} 个 token",
    "Layers / hidden / vocab": "层数 / 隐藏维度 / 词表大小",
    "Chat template": "对话模板",
    "yes": "有",
    "no (an Alpaca-style prompt is used)": "没有（使用 Alpaca 风格的提示词）",
    "Linear modules (N x D x count)": "线性层模块（N x D x 个数）",
    # LoRA arithmetic
    "**W' = W + (α/r)·B·A** with r = {r}, α = {alpha}: scale α/r = **{scale}**. B (N×r) starts at zero, "
    "so training starts from the unchanged model.": "**W' = W + (α/r)·B·A**，其中 r = {r}，α = {alpha}：缩放因子 α/r = "
    "**{scale}**。B（N×r）全零初始化，所以训练从未改动的模型开始。",
    "Load a model in the Model tab to see trainable parameters.": "在模型页加载一个模型，即可看到可训练参数。",
    "module": "模块",
    "per matrix r·(N+D)": "每个矩阵 r·(N+D)",
    "matrices": "矩阵数",
    "trainable": "可训练参数",
    "({share}% of N·D)": "（N·D 的 {share}%）",
    "**Trainable: {total}** = {share}% of the base model's {params} parameters (peft's "
    "`print_trainable_parameters` counts the adapter in the total: {with_adapter}, {peft_share}%). "
    "Adapter file ≈ {mib} MiB in fp32.": "**可训练参数：{total}** = 基座模型 {params} 个参数的 {share}%（peft 的 "
    "`print_trainable_parameters` 把适配器也计入总数：{with_adapter}，{peft_share}%）。适配器文件在 fp32 下约 {mib} MiB。",
    # methods and memory components
    "Full": "全量微调",
    "LoRA 8-bit": "LoRA 8 位",
    "weights": "模型权重",
    "gradients": "梯度",
    "optimizer states": "优化器状态",
    "activations": "激活值",
    "allocator overhead": "分配器开销",
    "CUDA context": "CUDA 上下文",
    "LoRA weights": "LoRA 权重",
    "logits / loss": "logits / loss 计算",
    "TOTAL (GiB)": "合计（GiB）",
    "trainable parameters": "可训练参数",
    # status line
    "QUEUED": "排队中",
    "LOADING": "加载中",
    "TRAINING": "训练中",
    "STOPPING": "正在停止",
    "SAVING": "保存中",
    "COMPLETED": "已完成",
    "STOPPED": "已停止",
    "FAILED": "失败",
    "INTERRUPTED": "已中断",
    "step {step}/{max_steps} ({pct}%)": "第 {step}/{max_steps} 步（{pct}%）",
    "elapsed {time}": "已用时 {time}",
    "ETA {time}": "预计剩余 {time}",
    "loss {last} (mean of last {k}: {mean_last}, first {k}: {mean_first})": "loss {last}（最近 {k} 次平均：{mean_last}，"
    "最初 {k} 次平均：{mean_first}）",
    "loss on fixed rows {first} → {last}": "固定样本上的 loss {first} → {last}",
    "{rate} tokens/s": "{rate} token/秒",
    "GPU memory peak {peak} GiB (worst-case estimate {estimate} GiB)": "显存峰值 {peak} GiB（最坏情况估算 {estimate} GiB）",
    "trainable {count} on {device} ({dtype})": "可训练参数 {count}，设备 {device}（{dtype}）",
    "Run folder: {folder}": "运行文件夹：{folder}",
    # the job's messages (core.job), shown as they are made
    "No training has run in this session.": "本次会话还没有训练过。",
    "Loading data and model...": "正在加载数据和模型...",
    "Stopping after the current step...": "当前这一步结束后停止...",
    "Training step {step}/{max_steps}": "训练第 {step}/{max_steps} 步",
    "Training {status} after {steps} steps, final loss {loss}. Adapter saved.": "训练{status}，共 {steps} 步，"
    "最终 loss {loss}。适配器已保存。",
    "Training {status} after {steps} steps. Adapter saved.": "训练{status}，共 {steps} 步。适配器已保存。",
    "completed": "已完成",
    "stopped": "已停止",
    "failed": "失败",
    "Training failed: {error}": "训练失败：{error}",
    "Stopped while waiting in the queue: nothing was trained.": "在排队时停止：没有训练任何内容。",
    "Stopped before the first step: nothing was trained.": "在第一步之前停止：没有训练任何内容。",
    "Queued: number {n} in line (1 run is ahead of yours on this machine). Estimated wait: {wait}. Your run "
    "starts by itself; Stop leaves the queue.": "排队中：第 {n} 位（这台机器上有 1 个运行排在你前面）。预计等待：{wait}。"
    "轮到时自动开始；点“停止”即离开队列。",
    "Queued: number {n} in line ({ahead} runs are ahead of yours on this machine). Estimated wait: {wait}. Your "
    "run starts by itself; Stop leaves the queue.": "排队中：第 {n} 位（这台机器上有 {ahead} 个运行排在你前面）。"
    "预计等待：{wait}。轮到时自动开始；点“停止”即离开队列。",
    "Waiting for the Chat tab's answer to finish (only one job uses the GPU at a time); training starts then.": (
        "正在等待对话页的回答结束（GPU 一次只做一件事）；之后训练自动开始。"
    ),
    # plan (core.plan) and fits
    "Changes to your settings: ": "对你的设置的改动：",
    "none (already set).": "无（已经是这样设置的）。",
    "Alternatives (memory, time per optimizer step relative to the chosen plan):": "其他方案（显存、每个优化器步"
    "相对所选方案的耗时）：",
    "{plan}, {ratio}x the time": "{plan}，耗时 {ratio} 倍",
    "checkpointing on": "梯度检查点 开",
    "checkpointing off": "梯度检查点 关",
    "{method}, checkpointing {onoff}, micro-batch {batch} x {accum} accumulation: {gib} GiB": "{method}，梯度检查点"
    " {onoff}，微批次 {batch} x {accum} 次梯度累积：{gib} GiB",
    "checkpointing {onoff}, micro-batch {batch} x {accum} accumulation: {gib} GiB": "梯度检查点 {onoff}，微批次 "
    "{batch} x {accum} 次梯度累积：{gib} GiB",
    "on": "开",
    "off": "关",
    "Fastest plan within {budget} GiB (90% of {gpu} GiB): {plan}.": "{budget} GiB 以内（{gpu} GiB 的 90%）最快的方案："
    "{plan}。",
    "Fastest plan within {budget} GiB (90% of {gpu} GiB): {plan}. Faster plans need more: the leanest of them, "
    "{faster}, is over the limit.": "{budget} GiB 以内（{gpu} GiB 的 90%）最快的方案：{plan}。更快的方案需要更多显存："
    "其中最省的 {faster} 也超出了上限。",
    "fits": "放得下",
    "tight": "很紧",
    "no": "放不下",
    "MoE: not planned": "MoE：不做规划",
    "fits {gib} GiB ({how})": "放得下 {gib} GiB（{how}）",
    "{mark} (leanest {gib} GiB)": "{mark}（最省 {gib} GiB）",
    "model": "模型",
    "family": "系列",
    "B params": "参数量（B）",
    "fastest plan": "最快方案",
    "90% budget": "90% 预算线",
    "parameters (billions)": "参数量（十亿）",
    "estimated peak GiB": "估算峰值 GiB",
    # charts
    "rows": "行数",
    "max_length {max_length} ({over} rows longer)": "max_length {max_length}（{over} 行超出）",
    "tokens per row (chat template applied)": "每行 token 数（已套用对话模板）",
    "tokens per row (raw text)": "每行 token 数（原始文本）",
    "Loss": "Loss（损失）",
    "Learning rate": "学习率",
    "Gradient norm": "梯度范数",
    "Tokens per second": "每秒 token 数",
    "GPU memory (GiB)": "显存（GiB）",
    "train loss (each batch)": "训练 loss（每个批次）",
    "moving average (last {n} logs)": "滑动平均（最近 {n} 次记录）",
    "loss on fixed training rows": "固定训练样本上的 loss",
    "validation loss": "验证集 loss",
    "learning rate": "学习率",
    "gradient norm": "梯度范数",
    "no learning rate logged yet": "还没有记录学习率",
    "no gradient norm logged yet": "还没有记录梯度范数",
    "no token counts logged yet": "还没有记录 token 数",
    "optimizer step": "优化器步数",
    "measured peak reserved": "实测峰值（reserved）",
    "CPU run: no GPU memory measured": "CPU 运行：没有测量显存",
    "no GPU memory measured yet": "还没有测量到显存",
    "no GPU memory measured (CPU run, or no step logged yet)": "没有测量到显存（CPU 运行，或还没有记录任何一步）",
    "estimate {gib} GiB": "估算 {gib} GiB",
    "The loss appears here once training logs its first step": "训练记录第一步后，loss 曲线会显示在这里",
}
