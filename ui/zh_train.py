"""Chinese for the Train tab's text computed at run time (ui.forms, ui/tabs/train_*.py) and its new static labels.

English template -> Simplified Chinese; placeholders identical (tests/test_train_ui.py checks every ``tr()`` template
of those modules is here with the same placeholders). Terms: 秩 r, 缩放因子 α, 学习率, 显存, 训练, 步, 剩余时间.
"""

from __future__ import annotations

ZH: dict[str, str] = {
    # ui/forms.py: the "Several GPUs" line and the form's own checks
    "One process: training runs inside the app.": "单进程：训练在应用内运行。",
    "Auto: with several GPUs visible, `accelerate launch` of one process per GPU (the log names the strategy and "
    "why); otherwise training runs inside the app.": (
        "自动：可见多块 GPU 时，用 `accelerate launch` 每块 GPU 启动一个进程（日志会写明所选策略及原因）；否则训练在应用内运行。"
    ),
    "{how} Same run from a terminal: `{command}`": "{how} 在终端运行同样的训练：`{command}`",
    "one per visible GPU": "每块可见 GPU 一个进程",
    "{n} processes": "{n} 个进程",
    "`accelerate launch` of {n} (gloo on a machine without CUDA); the log names the strategy chosen and why, and "
    "the GPU memory estimate per GPU.": (
        "用 `accelerate launch` 启动 {n}（没有 CUDA 的机器上用 gloo）；日志会写明所选策略及原因，以及每块 GPU 的显存估算。"
    ),
    "{field}: {value} is not one of this form's choices ({choices}).": "{field}：{value} 不在表单的可选项中（{choices}）。",
    # ui/tabs/train_progress.py: the progress bar
    "Waiting for the machine...": "正在排队等待机器……",
    "Loading data and model...": "正在加载数据和模型……",
    "Training progress": "训练进度",
    "Preparing...": "正在准备……",
    "Done": "已完成",
    "Step {step} of {max_steps} ({pct}%)": "第 {step} 步，共 {max_steps} 步（{pct}%）",
    "Stopped at step {step}": "已在第 {step} 步停止",
    "Failed at step {step}": "在第 {step} 步失败",
    "estimating the time left...": "正在估算剩余时间……",
    "Stopping after this step...": "本步结束后停止……",
    "Saving the adapter...": "正在保存适配器……",
    "about {eta} left": "剩余时间约 {eta}",
    "{elapsed} elapsed": "已用 {elapsed}",
    # ui/tabs/train_setup.py: the setup as a file
    "Setup saved as **{name}**: download it above. `{command}` trains it from a terminal in the LoRA Studio folder "
    "(or paste the lines below there).": (
        "设置已保存为 **{name}**：请在上方下载。在 LoRA Studio 文件夹的终端里运行 `{command}` 即可训练（或把下面几行粘贴到终端）。"
    ),
    "Copy these lines into a terminal in the LoRA Studio folder: the first ones write **{name}**, the last one "
    "trains it (`{command}`).": (
        "把这几行复制到 LoRA Studio 文件夹的终端中：前几行写出 **{name}**，最后一行开始训练（`{command}`）。"
    ),
    "Loaded **{name}**: every field of the form now holds its value (r {r}, α {alpha}).": (
        "已加载 **{name}**：表单的每个字段都已换成其中的值（秩 r {r}，缩放因子 α {alpha}）。"
    ),
    "**{name} was not loaded; the form is unchanged.**\n{problems}": "**未加载 {name}，表单保持不变。**\n{problems}",
    "**Fix these settings first:**\n{problems}": "**请先修正这些设置：**\n{problems}",
    "**Cannot write the setup file:** {error}": "**无法写入设置文件：** {error}",
    # static labels of the setup accordion (ui/tabs/train_setup.py render)
    "Save or load this setup (JSON, same file as the command line)": "保存或加载这套设置（JSON，与命令行用的文件相同）",
    "Download setup (JSON)": "下载设置（JSON）",
    "Load setup (JSON)": "加载设置（JSON）",
    "Copy as CLI command": "复制为命令行",
    "Setup file": "设置文件",
    "Same run from a terminal (run in the LoRA Studio folder)": "在终端运行同样的训练（在 LoRA Studio 文件夹中运行）",
    "Nothing was trained.": "没有训练任何内容。",
    "Failed before the first step.": "在第一步之前失败。",
}
