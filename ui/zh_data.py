"""Chinese for the Model, Data and GPU memory tabs (ui.tabs.model_tab, data_tab, estimate_tab): their run-time text,
the engine's messages they show (core.datafiles / core.readers / core.textrows, the row reasons of core.formats,
core.chat_turns, core.tokenization and core.issues, the hub messages of core.hub, core.model's errors), and the
labels these tabs compute. English template -> Chinese, placeholders identical (see ``ui.i18n.tr`` / ``tr_text``:
a template with fields also translates an engine message that fills them in).

Terms follow the textbook chapter (/work/shared/seed, chapter 26): 秩 r, 缩放因子 α, 显存, 量化, 训练, 数据集, 校验,
对话模板, 行.
"""

from __future__ import annotations

ZH: dict[str, str] = {
    # ---- Data tab: messages, summary, preview, histogram (ui.tabs.data_tab)
    "No dataset chosen: upload a file or pick a sample in the Data tab.": (
        "尚未选择数据集：请在“数据”标签页上传文件或选择一个示例数据集。"
    ),
    "Using **{name}** as the dataset. To replace it, drop or choose another file above; earlier uploads stay "
    "on disk.": "正在使用 **{name}** 作为数据集。要替换它，把另一个文件拖到上方或点击上方选择；之前上传的文件仍保留在磁盘上。",
    "Loading the tokenizer": "正在加载分词器",
    "Reading, normalising and tokenizing rows": "正在读取、规范化并分词每一行",
    "Checking rows": "正在校验行",
    "rows": "行",
    "row": "行",
    "text": "文本",
    "turns": "轮次",
    "trained": "参与训练",
    "**This data cannot be used.** {error}": "**这份数据无法使用。** {error}",
    "`{source}` ({kind}): format **{format}**, columns used: {columns}": "`{source}`（{kind}）：格式 **{format}**，使用的列：{columns}",
    "Rows: {stages}. Supervised tokens per kept row: median {median}.": (
        "行数：{stages}。每个保留行中参与训练的 token 数：中位数 {median}。"
    ),
    "read": "读取",
    "usable": "可用",
    "after tokenizing": "分词后",
    "truncated": "被截断",
    "Dropped: {reasons}": "丢弃：{reasons}",
    "- row {row}: {reason}": "- 第 {row} 行：{reason}",
    "... and {n} more dropped rows: see the CSV.": "……另有 {n} 个被丢弃的行：见 CSV 文件。",
    "{n} rows kept with a note (truncated, roles not alternating...): see the CSV.": (
        "{n} 行已保留但附有说明（被截断、角色未交替……）：见 CSV 文件。"
    ),
    "max_length {max_length} ({over} rows longer)": "max_length {max_length}（{over} 行更长）",
    "tokens per row (chat template applied)": "每行 token 数（已套用对话模板）",
    # ---- row reasons (core.formats, core.chat_turns, core.tokenization, core.issues, core.textrows)
    "(other reasons)": "（其他原因）",
    "{name} is empty": "{name} 为空",
    "{name} is empty (it holds only invisible characters such as zero-width spaces)": (
        "{name} 为空（只含零宽空格等不可见字符）"
    ),
    "message {j} ({role})": "第 {j} 条消息（{role}）",
    "no assistant message to learn from": "没有可供学习的 assistant 消息",
    "the conversation starts with an {role} turn; start with a user (or system) message": (
        "对话以 {role} 轮次开头；请以 user（或 system）消息开头"
    ),
    "roles do not alternate: turn {i} is {role}, expected {expected}": "角色没有交替：第 {i} 轮是 {role}，应为 {expected}",
    "has a {column} field ({shown}) of the {format} format that most rows do not have; read as {read_as} like "
    "the other rows, that field is ignored": (
        "含有 {format} 格式的字段 {column}（{shown}），而大多数行没有；与其他行一样按 {read_as} 读取，该字段被忽略"
    ),
    "a value": "有值",
    "the answer starts after max_length={max_length} tokens; raise max_length": (
        "回答从第 max_length={max_length} 个 token 之后才开始；请调大 max_length"
    ),
    "truncated from {n} to {max_length} tokens": "从 {n} 个 token 截断到 {max_length} 个",
    # the Dropped line groups reasons by their part before ";" (core.validation): those parts alone
    "line {line} is not valid JSON at column {column} ({what})": "第 {line} 行在第 {column} 列不是合法的 JSON（{what}）",
    "line {line} is a JSON {kind}, not an object": "第 {line} 行是 JSON {kind}，不是对象",
    "has {n} fields but the header has {m}": "有 {n} 个字段，但表头有 {m} 个",
    "the conversation starts with an {role} turn": "对话以 {role} 轮次开头",
    "the answer starts after max_length={max_length} tokens": "回答从第 max_length={max_length} 个 token 之后才开始",
    "has a {column} field ({shown}) of the {format} format that most rows do not have": (
        "含有 {format} 格式的字段 {column}（{shown}），而大多数行没有"
    ),
    "line {line} is not valid JSON at column {column} ({what}); fix or remove it": (
        "第 {line} 行在第 {column} 列不是合法的 JSON（{what}）；请修正或删除该行"
    ),
    "line {line} is a JSON {kind}, not an object; fix or remove it": "第 {line} 行是 JSON {kind}，不是对象；请修正或删除该行",
    "has {n} fields but the header has {m}; put text that contains {sep} in double quotes": (
        "有 {n} 个字段，但表头有 {m} 个；含有 {sep} 的文本请放在双引号中"
    ),
    # ---- file and dataset errors (core.readers, core.datafiles, core.validation)
    "{source}: file not found.": "{source}：找不到文件。",
    "{name}: the file has no rows.": "{name}：文件中没有任何行。",
    "No usable rows in {name}.": "{name} 中没有可用的行。",
    "{source}: is a folder with no data files; choose a CSV, TSV, JSON, JSONL, Parquet or XLSX file.": (
        "{source}：是一个不含数据文件的文件夹；请选择 CSV、TSV、JSON、JSONL、Parquet 或 XLSX 文件。"
    ),
    "{dataset}: could not load this hub dataset (split {split}): {error}. Check the id, split and config, or "
    "give a file path instead.": "{dataset}：无法加载这个 hub 数据集（split {split}）：{error}。请检查 id、split 和 "
    "config，或改为给出文件路径。",
    # ---- the hub cannot be reached (core.hub)
    "The Hugging Face Hub is not reachable ({reason}), so {name} cannot be fetched. Offline, only local model "
    "folders (written by save_pretrained) and the embedded default model ({default}) work for training; the "
    "{count} catalogue models (e.g. {examples}) work for the GPU memory estimate and plan. {name} is not in the "
    "offline catalogue either. Connect and try again, or pick a local folder.": (
        "无法连接 Hugging Face Hub（{reason}），因此无法获取 {name}。离线时只有本地模型文件夹（由 save_pretrained "
        "写出）和内置的默认模型（{default}）可以训练；目录中的 {count} 个模型（例如 {examples}）可用于显存估算和方案。"
        "{name} 也不在离线目录中。请连接网络后重试，或选择本地文件夹。"
    ),
    "The Hugging Face Hub is not reachable ({reason}), so {name} cannot be fetched. Offline, only local model "
    "folders (written by save_pretrained) and the embedded default model ({default}) work for training; the "
    "{count} catalogue models (e.g. {examples}) work for the GPU memory estimate and plan. Connect and try "
    "again, or pick a local folder.": (
        "无法连接 Hugging Face Hub（{reason}），因此无法获取 {name}。离线时只有本地模型文件夹（由 save_pretrained "
        "写出）和内置的默认模型（{default}）可以训练；目录中的 {count} 个模型（例如 {examples}）可用于显存估算和方案。"
        "请连接网络后重试，或选择本地文件夹。"
    ),
    "The Hugging Face Hub is not reachable ({reason}), so the hub dataset {name} cannot be fetched. Offline, "
    "only local data files and the samples work: connect and try again, or upload the file.": (
        "无法连接 Hugging Face Hub（{reason}），因此无法获取 hub 数据集 {name}。离线时只有本地数据文件和示例数据集"
        "可用：请连接网络后重试，或上传文件。"
    ),
    "offline: HF_HUB_OFFLINE=1": "离线：HF_HUB_OFFLINE=1",
    "the host name does not resolve: no network or no DNS": "无法解析主机名：没有网络或没有 DNS",
    "the connection timed out": "连接超时",
    "no connection": "没有连接",
    "Cause: {cause}": "原因：{cause}",
    # ---- Model tab (ui.tabs.model_tab) and core.model's errors
    "Custom (the hub id or folder on the right)": "自定义（右侧的 hub id 或文件夹）",
    "SmolLM2-135M-Instruct (embedded, works offline)": "SmolLM2-135M-Instruct（内置，可离线使用）",
    "Enter a hub id (owner/name) or a local model folder.": "请输入 hub id（owner/name）或本地模型文件夹。",
    "Reading {model}": "正在读取 {model}",
    "**Cannot use this model.** {error}": "**无法使用这个模型。** {error}",
    "Suggested learning rate for this size: {lr} (set in the Train tab).": "这个规模的建议学习率：{lr}（在“训练”标签页设置）。",
    "Shape from LoRA Studio's offline catalogue ({date}), not downloaded: the estimate and the GPU tab's plan "
    "work now; training downloads the weights from the Hugging Face Hub, so it needs a connection (and, for "
    "gated models, an accepted licence and `hf auth login`).": (
        "形状来自 LoRA Studio 的离线目录（{date}），没有下载：显存估算和 GPU 标签页的方案现在就能用；训练时要从 "
        "Hugging Face Hub 下载权重，因此需要联网（受限模型还需接受许可并执行 `hf auth login`）。"
    ),
    "{name} is neither an existing folder nor a hub id of the form owner/name.": (
        "{name} 既不是已存在的文件夹，也不是 owner/name 形式的 hub id。"
    ),
    "{folder}: no config.json here; pick the folder that save_pretrained wrote.": (
        "{folder}：这里没有 config.json；请选择 save_pretrained 写出的文件夹。"
    ),
    "{name}: cannot build a causal LM from its config ({error}).": "{name}：无法根据其配置构建因果语言模型（{error}）。",
    # ---- GPU memory tab (ui.tabs.estimate_tab)
    "Detected: {name} ({gib} GiB)": "检测到：{name}（{gib} GiB）",
    "Custom size": "自定义大小",
    "a custom GPU": "自定义 GPU",
    "Enter the GPU memory in GiB (a number above 0 and at most 4096) for a custom size.": (
        "自定义大小时请输入 GPU 显存（GiB，大于 0 且不超过 4096 的数字）。"
    ),
    "Unknown GPU {choice}; pick one from the list or {custom}.": "未知的 GPU {choice}；请从列表中选择，或选择 {custom}。",
    "Load a model in the Model tab first.": "请先在“模型”标签页加载一个模型。",
    "Not estimated": "未估算",
    "auto (off in this estimate)": "自动（本次估算中为关闭）",
    "on": "开",
    "off": "关",
    "does not fit": "放不下",
    "### Your settings on {gpu} ({gib} GiB usable): {method} **{status}**, about {total} GiB\n"
    "Micro-batch {batch} x {accumulation} accumulation, max_length {max_length}, gradient checkpointing "
    "{checkpointing}, optimizer {optim}.": (
        "### 你的设置在 {gpu}（可用 {gib} GiB）上：{method} **{status}**，约 {total} GiB\n"
        "微批次 {batch} x 梯度累积 {accumulation}，max_length {max_length}，梯度检查点 {checkpointing}，优化器 {optim}。"
    ),
    "Nothing fits this GPU": "这块 GPU 上什么都放不下",
    "Fits only with max_length {max_length}: {plan}": "只有 max_length 为 {max_length} 时才放得下：{plan}",
    "Fastest plan that fits: {plan}": "放得下的最快方案：{plan}",
    "LoRA (16-bit base)": "LoRA（16 位基座）",
    "LoRA on an 8-bit base": "8 位量化基座上的 LoRA",
    "QLoRA (4-bit base)": "QLoRA（4 位量化基座）",
    "**Each method with your other settings:** ": "**各方法（其余设置不变）：** ",
    "**How the estimate counts:**": "**估算的计算方式：**",
    "**On this machine:** {cpu} LoRA on the CPU with these settings needs about {ram} GiB of RAM.": (
        "**在这台机器上：** {cpu} 按这些设置在 CPU 上做 LoRA 约需 {ram} GiB 内存。"
    ),
    # how the estimate counts (core.vram's notes, shown in this tab)
    "Packing: each micro-batch holds {tokens} tokens of whole rows, so this is the usual peak, not only the worst "
    "case.": "打包（packing）：每个微批次装入 {tokens} 个 token 的完整行，所以这是通常的峰值，而不只是最坏情况。",
    "Worst case: every micro-batch padded to {tokens} tokens; batches of shorter rows use less.": (
        "最坏情况：每个微批次都填充到 {tokens} 个 token；行更短的批次占用更少。"
    ),
    "float32 compute: weights and activations at 4 bytes, twice bf16.": "float32 计算：权重和激活值每个 4 字节，是 bf16 的两倍。",
    "Full fine-tuning: weights {w} B + gradients {g} B + optimizer states {s} B per parameter (in pure bf16 that "
    "is the textbook's 7B example, 26.1.1: 14 + 14 + 28 GB).": (
        "全量微调：每个参数 权重 {w} B + 梯度 {g} B + 优化器状态 {s} B（纯 bf16 下就是教材 26.1.1 中 7B 的例子："
        "14 + 14 + 28 GB）。"
    ),
    "int8 base: {packed} M linear weights at 1 byte; the rest in {rest}. bitsandbytes keeps each 8-bit layer's "
    "inputs even with gradient checkpointing (calibrated on 11 H200 runs).": (
        "int8 基座：{packed} M 个线性层权重每个 1 字节；其余为 {rest}。即使开启梯度检查点，bitsandbytes 也会保留每个 "
        "8 位层的输入（基于 11 次 H200 运行校准）。"
    ),
    "NF4 base: {packed} M packed linear weights at {bits} bit; {others} M others (norms, embeddings) in 16 bit.": (
        "NF4 基座：{packed} M 个打包的线性层权重，每个 {bits} 位；其余 {others} M 个（归一化层、嵌入层）为 16 位。"
    ),
    "NF4 base: {packed} M packed linear weights at {bits} bit; {others} M others (norms, embeddings) upcast to "
    "fp32 (the seed recipe).": (
        "NF4 基座：{packed} M 个打包的线性层权重，每个 {bits} 位；其余 {others} M 个（归一化层、嵌入层）提升为 fp32"
        "（种子配方）。"
    ),
    "Gradient checkpointing: keeps one hidden state per layer and recomputes the rest.": (
        "梯度检查点：每层只保留一个隐藏状态，其余重新计算。"
    ),
    "16 bit": "16 位",
    "**After training:** {line}": "**训练之后：** {line}",
    "Not enough here: export the adapter only, or merge on a bigger machine.": (
        "这里不够：只导出适配器，或在更大的机器上合并。"
    ),
    "Merged export needs about {total} GiB of {where}; available now: {available} GiB": (
        "合并导出约需 {total} GiB {where}；当前可用：{available} GiB"
    ),
    "Merged export needs about {total} GiB of {where}": "合并导出约需 {total} GiB {where}",
    "RAM": "内存",
    "GPU memory": "显存",
    "{bits} base {base} GiB + adapter {adapter} + runtime {runtime}": "{bits} 基座 {base} GiB + 适配器 {adapter} + 运行时 {runtime}",
    "Estimate first: there is no plan to apply.": "请先估算：还没有可应用的方案。",
    "Applied to the Train tab: {changes}.": "已应用到“训练”标签页：{changes}。",
    "The Train tab already has this plan's settings.": "“训练”标签页已经是这个方案的设置。",
    "Building the catalogue's model shapes (meta device, no download)": "正在构建目录中各模型的形状（meta 设备，不下载）",
    "**{fitting} of {total}** models fit {gib} GiB at max_length {max_length}, effective batch {effective}, "
    "r {r}. Each method's cell is its fastest plan that fits (checkpointing, micro-batch x accumulation), or "
    "its leanest try when none does; *tight* = over 90% of the GPU but under its size (may not fit), *no* = "
    "over its size. In the chart: circle fits, diamond tight, x does not fit; the dashed line is the GPU, the "
    "dotted one its 90% budget. Click a row to load that model in the Model tab.": (
        "在 max_length {max_length}、有效批次 {effective}、秩 r {r} 下，**{total} 个模型中有 {fitting} 个**放得进 "
        "{gib} GiB。每个方法的单元格是它放得下的最快方案（梯度检查点、微批次 x 梯度累积），都放不下时是它最省显存的"
        "尝试；*很紧* = 超过 GPU 的 90% 但小于其容量（可能放不下），*no* = 超过其容量。图中：圆点放得下，菱形很紧，"
        "x 放不下；虚线是 GPU 容量，点线是其 90% 预算。点击某一行即可在“模型”标签页加载该模型。"
    ),
    "Click a model's row to load it.": "点击某个模型所在的行即可加载它。",
    "Loaded **{model}** in the Model tab from the catalogue's facts (no download). Training downloads its "
    "weights from the Hugging Face Hub, so it needs a connection.": (
        "已根据目录中的信息在“模型”标签页加载 **{model}**（不下载）。训练时要从 Hugging Face Hub 下载它的权重，"
        "因此需要联网。"
    ),
    "It is gated: accept its licence on the hub and log in (`hf auth login`) before training.": (
        "它是受限模型：训练前请在 hub 上接受其许可并登录（`hf auth login`）。"
    ),
    "It is a mixture-of-experts model: LoRA Studio does not estimate or plan it.": (
        "它是混合专家（MoE）模型：LoRA Studio 不对它做估算或方案。"
    ),
    "No CUDA GPU found: training runs on the CPU ({cores} cores) in float32 with LoRA. QLoRA 4-bit also runs "
    "on the CPU through bitsandbytes but is several times slower and saves no GPU memory, so LoRA is the "
    "better choice here; use a small model such as the embedded SmolLM2-135M.": (
        "没有找到 CUDA GPU：训练以 float32 在 CPU（{cores} 核）上用 LoRA 进行。4 位 QLoRA 也能通过 bitsandbytes 在 "
        "CPU 上运行，但慢好几倍且不节省显存，所以这里 LoRA 更合适；请使用小模型，例如内置的 SmolLM2-135M。"
    ),
    # separators named in CSV row problems ("text that contains {sep}")
    "tabs": "制表符",
    "commas": "逗号",
    "semicolons": "分号",
    "bars": "竖线",
    "The estimate below is for the GPU chosen above, to plan a run on another machine.": (
        "下面的估算针对上方选中的 GPU，用于规划在另一台机器上的训练。"
    ),
}
