"""Simplified Chinese (zh-CN) UI text for LoRA Studio.

``ZH`` maps every English UI string (label, help text, Markdown block, button text) to its Chinese translation;
the keys are the English strings exactly. ``HELP_EN`` / ``HELP_ZH`` are the "How LoRA works" help panel and
``GPU_HELP_EN`` / ``GPU_HELP_ZH`` the shorter panel of the GPU memory tab. The help text and the terminology
(秩 r, 缩放因子 α, 低秩分解, 冻结, 全零初始化, 量化, 显存, ...) follow the textbook chapter in /work/shared/seed
(chapter 26, "LoRA 与 QLoRA - 高效微调"); tables and numbers are quoted from it.
"""

from __future__ import annotations

ZH: dict[str, str] = {
    (
        "# LoRA Studio\n"
        "Fine-tune a language model with **LoRA** or **QLoRA** without writing code: pick a model, add data, check that it fits your GPU, train while watching the loss, then export merged weights."
    ): (
        "# LoRA Studio\n"
        "无需编写代码，用 **LoRA** 或 **QLoRA** 微调语言模型：选择模型、添加数据、检查它能否放进你的 GPU 显存、一边训练一边观察 loss，最后导出合并后的权重。"
    ),
    "1. Model": "1. 模型",
    "Preset": "预设",
    "Hub id or local model folder": "Hub id 或本地模型文件夹",
    "Hugging Face hub id or local model folder. The default works offline (packaged copy).": "Hugging Face hub id 或本地模型文件夹。默认值可离线使用（随软件打包的副本）。",
    "Load model info": "加载模型信息",
    "Loading the embedded model's facts...": "正在加载内置模型的信息...",
    "2. Data": "2. 数据",
    "Upload CSV, TSV, JSON, JSONL, Parquet or XLSX": "上传 CSV、TSV、JSON、JSONL、Parquet 或 XLSX 文件",
    "...or use a sample dataset": "...或使用示例数据集",
    "Dataset file (or hub dataset id)": "数据集文件（或 hub 数据集 id）",
    "Path to a CSV / TSV / JSON / JSONL / Parquet / XLSX file, or a hub dataset id (owner/name).": "CSV / TSV / JSON / JSONL / Parquet / XLSX 文件的路径，或 hub 数据集 id（owner/name）。",
    "Format": "格式",
    "auto, alpaca, prompt_completion, messages (chat), sharegpt (conversations) or text (raw).": "auto、alpaca、prompt_completion、messages（对话）、sharegpt（conversations）或 text（原始文本）。",
    "Column mapping (field=column, ...)": "列映射（field=column, ...）",
    "Your columns for the format's fields, e.g. instruction=question, output=answer; unmapped fields are matched by name, other columns ignored.": "为该格式的各字段指定你的列，例如 instruction=question, output=answer；未映射的字段按名称匹配，其余列忽略。",
    "More data options": "更多数据选项",
    "Train on answers only": "只在回答上训练",
    "Train on the answers / assistant turns only (off: on the whole text).": "只在回答 / assistant 轮次上训练（关闭：在全部文本上训练）。",
    "Fold system message into user turn": "将 system 消息并入 user 轮次",
    "Move a leading system turn into the first user turn (for templates that refuse a system role).": "把开头的 system 轮次移入第一个 user 轮次（用于不接受 system 角色的对话模板）。",
    "Hub split": "Hub 数据划分（split）",
    "Hub datasets: the split to train on.": "Hub 数据集：用于训练的数据划分（split）。",
    "Hub config": "Hub 配置（config）",
    "Hub datasets: the configuration (subset) name, if any.": "Hub 数据集：配置（子集）名称（如有）。",
    "Validate data": "校验数据",
    "Upload a file or pick a sample.": "请上传文件或选择一个示例数据集。",
    "Token lengths": "Token 长度",
    "Row report (every dropped or altered row, CSV)": "行报告（每一条被丢弃或被修改的行，CSV）",
    "First row as the model sees it: highlighted tokens are trained on": "模型看到的第一行：高亮的 token 参与训练",
    "Preview (normalised rows)": "预览（规范化后的行）",
    "3. GPU memory": "3. GPU 显存",
    "GPU": "GPU",
    "Custom size (GiB), used when GPU is 'Custom size'": "自定义大小（GiB），当 GPU 选为“自定义大小”时使用",
    "Estimate": "估算",
    "Apply this plan to the Train tab": "把这个方案应用到训练页",
    "What fits on my GPU: every catalogue model": "我的 GPU 能训练什么：目录里的所有模型",
    "Model size": "模型大小",
    "Family": "模型系列",
    "Show what fits": "显示能放下的模型",
    "Catalogue models on this GPU": "目录模型在这块 GPU 上",
    "Estimated memory by model size": "按模型大小估算的显存",
    "Your current settings: estimated peak memory by component (GiB)": "当前设置：按组成部分估算的峰值显存（GiB）",
    "Memory by component": "各组成部分的显存",
    "The textbook's rule of thumb (chapter 26.9.4)": "教材中的经验法则（第 26.9.4 节）",
    (
        "| GPU | model | method |\n"
        "|---|---|---|\n"
        "| 24 GB | 7B | QLoRA |\n"
        "| 24 GB | 13B | QLoRA |\n"
        "| 40 GB | 7B | LoRA |\n"
        "| 40 GB | 13B | QLoRA |\n"
        "| 80 GB | 7B-13B | LoRA |\n"
        "| 80 GB | 70B | QLoRA |\n"
        "\n"
        "The estimate above refines this table with your model, max_length, batch size and rank."
    ): (
        "| 你的显卡 | 模型大小 | 推荐方法 |\n"
        "|---|---|---|\n"
        "| 24 GB | 7B | QLoRA |\n"
        "| 24 GB | 13B | QLoRA |\n"
        "| 40 GB | 7B | LoRA |\n"
        "| 40 GB | 13B | QLoRA |\n"
        "| 80 GB | 7B-13B | LoRA |\n"
        "| 80 GB | 70B | QLoRA |\n"
        "\n"
        "上面的估算在此表的基础上，结合你的模型、max_length、batch size 和秩（rank）做了细化。"
    ),
    "4. Train": "4. 训练",
    "#### LoRA": "#### LoRA",
    "LoRA rank (r)": "LoRA 秩（r）",
    "LoRA rank r: trainable params per matrix = r x (in + out).": "LoRA 秩 r：每个矩阵的可训练参数量 = r x (in + out)。",
    "LoRA alpha (α)": "LoRA alpha（缩放因子 α）",
    "LoRA alpha: the update is scaled by alpha / r.": "LoRA alpha：更新量按 alpha / r 缩放。",
    "LoRA dropout": "LoRA dropout",
    "Dropout on the LoRA input, 0..1.": "作用于 LoRA 输入的 dropout，0..1。",
    "Target modules": "目标模块",
    "Linear module names to adapt; empty = the model family's default.": "要应用 LoRA 的线性模块名称；留空 = 该模型系列的默认值。",
    "Method": "方法",
    "QLoRA: load the frozen base in 4-bit with bitsandbytes.": "QLoRA：用 bitsandbytes 以 4-bit 加载冻结的基础模型。",
    "Quantization (QLoRA, 8-bit)": "量化（QLoRA、8-bit）",
    "LoRA on an 8-bit base instead (GPU only)": "改为在 8-bit 基础模型上做 LoRA（仅 GPU）",
    "LoRA on an 8-bit base (bitsandbytes LLM.int8): between LoRA and QLoRA in memory.": "在 8-bit 基础模型上做 LoRA（bitsandbytes LLM.int8）：显存占用介于 LoRA 和 QLoRA 之间。",
    "4-bit type": "4-bit 类型",
    "4-bit data type: nf4 (QLoRA paper) or fp4.": "4-bit 数据类型：nf4（QLoRA 论文）或 fp4。",
    "Double quantization": "双重量化",
    "Quantize the quantization constants too (~0.4 bit/param saved).": "把量化常数也再量化一次（约节省 0.4 bit/参数）。",
    "Compute dtype": "计算 dtype",
    "dtype the 4-bit layers compute in (bfloat16 on Ampere+).": "4-bit 层计算时使用的 dtype（Ampere 及更新的 GPU 上用 bfloat16）。",
    "#### Training": "#### 训练",
    "Learning rate": "学习率",
    "Peak AdamW learning rate.": "AdamW 的峰值学习率。",
    "Epochs": "训练轮数（Epochs）",
    "Passes over the data (ignored if max_steps > 0).": "遍历数据的轮数（max_steps > 0 时忽略）。",
    "Max steps": "最大步数",
    "Optimizer steps; -1 = use num_train_epochs.": "优化器步数；-1 = 使用 num_train_epochs。",
    "Batch size": "批大小（Batch size）",
    "Rows per micro-batch.": "每个 micro-batch 的行数。",
    "Gradient accumulation": "梯度累积",
    "Micro-batches per optimizer step.": "每个优化器步包含的 micro-batch 数。",
    "Max length (tokens)": "最大长度（token）",
    "Tokens per row; longer rows are truncated.": "每行的 token 数；更长的行会被截断。",
    "Seed": "随机种子",
    "Random seed for LoRA init, shuffling and dropout.": "用于 LoRA 初始化、数据打乱和 dropout 的随机种子。",
    "Advanced": "高级",
    "Warm-up steps": "预热步数",
    "Linear warm-up steps of the learning rate.": "学习率线性预热（warm-up）的步数。",
    "Optimizer": "优化器",
    "Optimizer: adamw_torch (2 fp32 states per trained parameter) or bitsandbytes' 8-bit adamw_8bit / paged_adamw_8bit (2 one-byte states; GPU only).": "优化器：adamw_torch（每个训练参数 2 个 fp32 状态）或 bitsandbytes 的 8-bit adamw_8bit / paged_adamw_8bit（2 个单字节状态；仅 GPU）。",
    "LR schedule": "学习率调度",
    "Learning-rate schedule after warm-up.": "预热之后的学习率调度方式。",
    "Gradient checkpointing": "梯度检查点",
    "Recompute activations in backward: less memory, ~1.4x the step time (bench/RESULTS.md). auto = on only when "
    "the run would not fit the GPU without it (always off on the CPU); true / false as set.": (
        "在反向传播时重新计算激活值：显存更少，每步时间约为 1.4 倍（bench/RESULTS.md）。auto = 只有不开就放不进 GPU 时才开启"
        "（CPU 上始终关闭）；true / false 按设置。"
    ),
    "Fixed rows to track loss on": "用于跟踪 loss 的固定行",
    "Training rows whose loss is re-measured ~5 times during the run: a smooth curve (0 = off).": "在训练过程中重新测量约 5 次 loss 的训练行：得到一条平滑的曲线（0 = 关闭）。",
    "Validation split": "验证集划分",
    "Rows held out for evaluation loss: a fraction (< 1) or a count (>= 1); 0 = none.": "留出用于计算评估 loss 的行：比例（< 1）或行数（>= 1）；0 = 不留出。",
    "Weights dtype (LoRA)": "权重 dtype（LoRA）",
    "Weights dtype for LoRA: auto = bfloat16 on a bf16 GPU, float16 on older GPUs, float32 on CPU.": "LoRA 的权重 dtype：auto = 支持 bf16 的 GPU 上用 bfloat16，较旧的 GPU 上用 float16，CPU 上用 float32。",
    "Log every N steps": "每 N 步记录一次日志",
    "Log loss every this many optimizer steps.": "每隔这么多个优化器步记录一次 loss。",
    "Runs folder": "运行记录文件夹",
    "Folder in which a new, never-overwritten run folder is created.": "在此文件夹中创建一个新的、永不覆盖的运行文件夹。",
    "Engine, checkpoints and resume": "引擎、检查点与恢复训练",
    "Padding-free packing": "无填充打包（padding-free packing）",
    "Padding-free packing: each micro-batch's rows become one sequence with their own positions, so no compute is spent on padding; the loss equals the unpacked loss.": "无填充打包：每个 micro-batch 的各行拼接成一条序列，各自保留自己的位置编号，因此不会在填充（padding）上浪费计算；loss 与不打包时相同。",
    "Attention kernel": "Attention 内核",
    "Attention kernel: auto = flash varlen for packed rows on a CUDA GPU, else PyTorch SDPA.": "Attention 内核：auto = 在 CUDA GPU 上对打包后的行使用 flash varlen，否则使用 PyTorch SDPA。",
    "Liger-Kernel (GPU)": "Liger-Kernel（GPU）",
    "Liger-Kernel's fused norms, SwiGLU and cross-entropy on a CUDA GPU when installed.": "已安装时，在 CUDA GPU 上使用 Liger-Kernel 的融合归一化、SwiGLU 和交叉熵。",
    "Size the micro-batch from the memory estimate (GPU)": "根据显存估算确定 micro-batch 大小（GPU）",
    "On a GPU, pick the micro-batch and checkpointing from the memory estimate, keeping the rows per optimizer step (batch x accumulation) unchanged.": "在 GPU 上根据显存估算选择 micro-batch 大小和是否使用梯度检查点，同时保持每个优化器步的行数（batch x accumulation）不变。",
    "Checkpoint every N steps": "每 N 步保存一次检查点",
    "Save a resumable checkpoint every this many steps, and at the end or Stop (0 = only then).": "每隔这么多步保存一个可恢复的检查点，训练结束或点击“停止”时也会保存（0 = 只在那时保存）。",
    "Resume from (run folder or checkpoint)": "从此恢复（运行文件夹或检查点）",
    "Continue a run: its folder (last checkpoint) or a checkpoint folder; a new run folder.": "继续一次运行：填入它的运行文件夹（使用最后一个检查点）或某个检查点文件夹；结果写入一个新的运行文件夹。",
    "empty = a new run; or paste a run folder from the Runs tab": "留空 = 新的运行；或粘贴“运行记录”标签页中的运行文件夹",
    "Start training": "开始训练",
    "Stop": "停止",
    "No training has run in this session.": "本次会话中还没有运行过训练。",
    "Training charts": "训练图表",
    "Log": "日志",
    "5. Export": "5. 导出",
    "Run folder": "运行文件夹",
    "Refresh": "刷新",
    "Merged weights dtype": "合并权重的 dtype",
    "auto = the base's 16-bit dtype. float32 keeps tiny adapters exact at twice the size.": "auto = 基础模型的 16-bit dtype。float32 能精确保留很小的适配器增量，但文件大小翻倍。",
    "Max shard size": "最大分片大小",
    "Largest safetensors file of a merged export (transformers' max_shard_size).": "合并导出时单个 safetensors 文件的最大大小（transformers 的 max_shard_size）。",
    "Export merged weights": "导出合并后的权重",
    "Export adapter only": "仅导出适配器",
    "Merged export reloads the base in 16-bit (never 4-bit), merges W + (α/r)·B·A, saves safetensors + tokenizer + chat template, and checks the result against base+adapter.": "合并导出会以 16-bit（绝不用 4-bit）重新加载基础模型，合并 W + (α/r)·B·A，保存 safetensors + tokenizer + 对话模板，并将结果与“基础模型 + 适配器”进行比对检查。",
    "Download": "下载",
    "Last export folder": "最近一次导出的文件夹",
    "Push to the Hugging Face Hub (optional)": "推送到 Hugging Face Hub（可选）",
    "Repository": "仓库",
    "your-name/my-fine-tune": "your-name/my-fine-tune",
    "Hugging Face token (write)": "Hugging Face token（写权限）",
    "Used for this upload only: never saved, logged or shown.": "仅用于本次上传：不会被保存、记录到日志或显示。",
    "Private repository": "私有仓库",
    "Push the last export": "推送最近一次导出",
    "6. Runs": "6. 运行记录",
    "Select a row to see that run's charts (from its `metrics.jsonl`).": "选择一行以查看该次运行的图表（来自其 `metrics.jsonl`）。",
    "Selected run": "选中的运行",
    "7. Chat": "7. 对话",
    "The base model and the fine-tuned one answer the same prompt, one after the other, through the model's chat template. With an adapter both share one copy of the base weights (the base answers with the adapter switched off). Temperature 0 is greedy decoding: the same prompt gives the same answer.": "基础模型和微调后的模型依次回答同一个提示词，都经过模型的对话模板。使用适配器时，两者共享同一份基础权重（基础模型回答时关闭适配器）。温度为 0 即贪心解码：相同的提示词给出相同的回答。",
    "Fine-tuned model": "微调后的模型",
    "The run's adapter, or a merged export of it.": "该次运行的适配器，或它的合并导出。",
    "Prompt": "提示词",
    "Ask both models the same question...": "向两个模型提出同一个问题...",
    "Temperature": "温度（Temperature）",
    "0 = greedy": "0 = 贪心解码",
    "Top-p": "Top-p",
    "Max new tokens": "最大新 token 数",
    "Send": "发送",
    "Base model": "基础模型",
    "Fine-tuned": "微调后",
    "Several GPUs (accelerate)": "多块 GPU（accelerate）",
    "Processes (one per GPU; 0 = all GPUs)": "进程数（每块 GPU 一个；0 = 全部 GPU，自动）",
    "Training processes (accelerate's num_processes): 0 = auto, one per visible GPU (inside the app when there is at most one); 1 = inside the app's process; N > 1 = accelerate launch of N processes, one per GPU (gloo on the CPU).": "训练进程数（accelerate 的 num_processes）：0 = 自动，每块可见 GPU 一个（最多只有一块 GPU 时在应用内训练）；1 = 在应用自身的进程里训练；N > 1 = 用 accelerate launch 启动 N 个进程，每块 GPU 一个（CPU 上用 gloo）。",
    "Strategy": "并行策略",
    "With several processes: ddp (each GPU holds the whole model), fsdp (weights, gradients and optimizer states sharded across GPUs) or auto (DDP when the model fits one GPU, else FSDP).": "多进程时：ddp（每块 GPU 放一份完整模型）、fsdp（权重、梯度和优化器状态分片到各块 GPU）或 auto（模型放得进一块 GPU 时用 DDP，否则用 FSDP）。",
    "accelerate config file (optional)": "accelerate 配置文件（可选）",
    "Optional accelerate config file (from `accelerate config`) for the launch, e.g. several machines; its settings win over num_processes.": "启动时使用的 accelerate 配置文件（由 `accelerate config` 生成，可选），例如多台机器；其中的设置优先于 num_processes。",
    "One process: training runs inside the app. Same run from a terminal: `python launch.py train CONFIG.json`": "单进程：训练在应用内运行。在终端里做同样的训练：`python launch.py train CONFIG.json`",
    "Auto: with several GPUs visible, `accelerate launch` of one process per GPU (the log names the strategy and why); otherwise training runs inside the app. Same run from a terminal: `python launch.py train CONFIG.json`": "自动：有多块 GPU 可见时，用 `accelerate launch` 为每块 GPU 启动一个进程（日志会写明所选策略及原因）；否则训练在应用内运行。在终端里做同样的训练：`python launch.py train CONFIG.json`",
    # demo banner (core.space.limits_markdown with the default DemoLimits)
    (
        "**Shared demo:** training is on, within limits a free CPU Space finishes in minutes: the embedded model only, "
        "up to 30 steps, 512 tokens per row, batch 4, 2,000 rows and 20 MB uploads. Per run: at most 120 rows trained "
        "(steps x batch x gradient accumulation), 360 rows evaluated (evaluations x (fixed rows + validation rows)) and "
        "3 checkpoints. Install LoRA Studio locally (see the README) to lift them."
    ): (
        "**共享演示：**训练已开启，但限制在免费 CPU Space 几分钟内能完成的范围内：仅内置模型，最多 30 步、每行 512 个 token、"
        "批大小 4、2,000 行数据和 20 MB 上传。每次运行最多训练 120 行（步数 x 批大小 x 梯度累积）、评估 360 行"
        "（评估次数 x（固定行 + 验证行））、保存 3 个检查点。在本地安装 LoRA Studio（见 README）即可解除这些限制。"
    ),
}

HELP_EN = """\
### How LoRA works (from the textbook, chapter 26)

**Formula (26.4):** W' = W + (α/r)·B·A

- **W**: the original pretrained weight, N × D, **frozen, not trained**
- **B**: low-rank matrix, N × r, **zero-initialised**
- **A**: low-rank matrix, r × D, **randomly initialised**
- **r**: the rank, a hyperparameter; **α**: the scaling factor, a hyperparameter

**Why B starts at zero (26.4.2):** at the start of training ΔW = B·A = zeros · randn = 0, so W' = W: \
**at the start of training the model behaves exactly like the original model**. Training is stable and starts \
from a "good" point. Because A is random, the gradient of B is not zero, so B is updated from the first step.

**Trainable parameters (26.2.2, 26.10.2):** for an N × D weight matrix LoRA trains N × r + r × D = r × (N + D) \
parameters. Example: r = 32, N = 1024, D = 512 gives 32 × (1024 + 512) = **49,152** instead of \
1024 × 512 = **524,288** (≈ 9.4%).

**Choosing the rank (26.3.3)**

| Scenario | Recommended rank | Reason |
|------|----------|------|
| Simple tasks (sentiment classification, simple QA) | 4 - 8 | Simple task, a low rank is enough |
| Medium tasks (summarisation, translation) | 8 - 16 | Balances quality and efficiency |
| Complex tasks (code generation, complex reasoning) | 16 - 64 | Needs more expressive power |
| Not sure | 8 | The community's most common default |

> **Rule of thumb:** start at r = 8; if the results are not good, try r = 16 or r = 32. You rarely need more than 64.

**Setting α (26.4.3, 26.9.2):** many implementations use α = r, so α/r = 1; or α = 2r (e.g. r = 8, α = 16) to \
give LoRA a larger contribution; Hugging Face PEFT defaults to α = 8. Practical advice: set α to 1-2 times r, or \
just use the default; it is not worth spending much time tuning.

**GPU memory (26.6.3)**

| Method | 7B model memory | GPUs |
|------|------------|---------|
| Full fine-tuning (fp16) | 80GB+ | A100 80GB |
| LoRA (fp16) | 16-20GB | A100 40GB, RTX 4090 |
| QLoRA (4-bit) | 6-8GB | RTX 3090, RTX 4080 |

**QLoRA (26.6, 26.7.3):** quantize the model to 4-bit, then apply LoRA; the LoRA increment B·A stays in float32/bf16.

- **NF4**: the 4-bit quantization type (`bnb_4bit_quant_type="nf4"`) in which the frozen W is stored.
- **Double quantization**: `bnb_4bit_use_double_quant=True`, "double quantization compresses further" \
(the quantization constants are quantized too).
- **Paged optimizers**: not covered in the chapter (from the QLoRA paper, linked in its further reading): \
optimizer states are paged to CPU memory when GPU memory runs short; here `paged_adamw_8bit`.
"""

HELP_ZH = """\
### LoRA 原理（教材第 26 章）

**公式（26.4）**：W' = W + (α/r)·B·A

- **W**：原始预训练权重，维度 N × D，**冻结不训练**
- **B**：低秩矩阵，维度 N × r，**全零初始化**
- **A**：低秩矩阵，维度 r × D，**随机初始化**
- **r**：秩（rank），超参数；**α**：缩放因子，超参数

**为什么 B 全零初始化（26.4.2）**：训练开始时 ΔW = B·A = zeros · randn = 0，所以 W' = W：\
**训练开始时，模型的行为和原始模型完全一样**。这保证了训练的稳定性，模型从一个"好"的起点开始。\
由于 A 是随机的，B 的梯度不为零，所以 B 从第一步起就会被更新。

**可训练参数量（26.2.2、26.10.2）**：对于维度为 N × D 的权重矩阵，LoRA 参数为 N × r + r × D = r × (N + D)。\
例子：r = 32、N = 1024、D = 512 时为 32 × (1024 + 512) = **49,152**，而原始为 1024 × 512 = **524,288**\
（压缩比 ≈ 9.4%）。

**Rank 的选择（26.3.3）**

| 场景 | 推荐 rank | 理由 |
|------|----------|------|
| 简单任务（情感分类、简单问答） | 4 - 8 | 任务简单，低秩足够 |
| 中等任务（摘要、翻译） | 8 - 16 | 平衡效果和效率 |
| 复杂任务（代码生成、复杂推理） | 16 - 64 | 需要更强的表达能力 |
| 不确定时 | 8 | 社区最常用的默认值 |

> **经验法则**：从 r = 8 开始，如果效果不好再尝试 r = 16 或 r = 32。很少需要超过 64。

**α 怎么设（26.4.3、26.9.2）**：很多实现中令 α = r，这样 α/r = 1；或者令 α = 2r（比如 r = 8，α = 16），\
让 LoRA 的贡献更大；Hugging Face PEFT 默认 α = 8。实践建议：α 通常设为 r 的 1-2 倍，或者直接使用默认值，\
不需要花太多时间调这个参数。

**显存节省（26.6.3）**

| 方法 | 7B 模型显存 | 可用显卡 |
|------|------------|---------|
| 全参数微调 (fp16) | 80GB+ | A100 80GB |
| LoRA (fp16) | 16-20GB | A100 40GB, RTX 4090 |
| QLoRA (4-bit) | 6-8GB | RTX 3090, RTX 4080 |

**QLoRA（26.6、26.7.3）**：把模型量化到 4-bit，再应用 LoRA；LoRA 增量 B·A 保持 float32/bf16，正常训练。

- **NF4**：4-bit 量化类型（`bnb_4bit_quant_type="nf4"`），冻结的 W 以此格式存储。
- **双重量化**：`bnb_4bit_use_double_quant=True`，"双重量化进一步压缩"（把量化常数也再量化一次）。
- **分页优化器（paged optimizers）**：本章未展开介绍（出自延伸阅读中的 QLoRA 原论文）：\
GPU 显存不足时把优化器状态分页到 CPU 内存；本应用中对应 `paged_adamw_8bit`。
"""

GPU_HELP_EN = """\
### What takes GPU memory in training (textbook 26.1, 26.6.3)

Full fine-tuning of a 7B model in fp16 has to store:

- **Model weights**: 7B x 2 bytes = 14GB
- **Gradients**: as large as the weights, 14GB
- **Optimizer states**: Adam needs 2 times the parameter count, 28GB

These three alone need **56GB of GPU memory**, before **activations**, batch data, etc. LoRA freezes W, so only \
B and A need gradients and optimizer states; QLoRA also stores W in 4-bit.

| Method | 7B model memory | GPUs |
|------|------------|---------|
| Full fine-tuning (fp16) | 80GB+ | A100 80GB |
| LoRA (fp16) | 16-20GB | A100 40GB, RTX 4090 |
| QLoRA (4-bit) | 6-8GB | RTX 3090, RTX 4080 |
"""

GPU_HELP_ZH = """\
### 训练时什么在占用显存（教材 26.1、26.6.3）

全参数微调一个 7B 模型（fp16）需要存储：

- **模型参数本身**：7B x 2 bytes = 14GB
- **梯度**：和参数一样大，14GB
- **优化器状态**：Adam 需要 2 倍参数量，28GB

仅这三项就需要 **56GB 显存**！而且还没算**激活值**、batch 数据等。LoRA 冻结 W，只有 B 和 A 需要梯度和\
优化器状态；QLoRA 还把 W 量化到 4-bit。

| 方法 | 7B 模型显存 | 可用显卡 |
|------|------------|---------|
| 全参数微调 (fp16) | 80GB+ | A100 80GB |
| LoRA (fp16) | 16-20GB | A100 40GB, RTX 4090 |
| QLoRA (4-bit) | 6-8GB | RTX 3090, RTX 4080 |
"""
