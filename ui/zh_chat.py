"""Chinese for the Chat tab: its status lines, errors and progress text (``ui.i18n.tr``), core.chat's ChatError
templates, and the static labels the tab adds. English template -> Chinese; placeholders identical."""

from __future__ import annotations

ZH: dict[str, str] = {
    # static labels (render)
    "Enter sends; Shift+Enter adds a new line.": "按 Enter 发送；按 Shift+Enter 换行。",
    "Stop": "停止",
    # status lines (ui.tabs.chat_tab)
    "Stopping...": "正在停止...",
    "No answer is being generated.": "当前没有正在生成的回答。",
    "not known yet": "暂时未知",
    "under a minute": "不到一分钟",
    "about {minutes} min": "约 {minutes} 分钟",
    "Waiting for another chat answer to finish (one answer at a time on this machine).": (
        "正在等待另一个对话回答完成（这台机器一次只生成一个回答）。"
    ),
    "Waiting for the training run to finish (chat and training take turns on this machine).": (
        "正在等待训练结束（这台机器上对话和训练轮流使用 GPU）。"
    ),
    "Place in line: {place} ({ahead} ahead). Estimated wait: {wait}. Stop leaves the line.": (
        "排队位置：第 {place} 位（前面还有 {ahead} 个）。预计等待：{wait}。点“停止”可退出排队。"
    ),
    "Pick a run folder first (train one in the Train tab).": "请先选择一个运行文件夹（在“训练”标签页训练一个）。",
    "No run": "没有运行记录",
    "{run}: no adapter or merged export to chat with yet.": "{run}：还没有可用于对话的适配器或合并权重导出。",
    "Nothing to load": "没有可加载的模型",
    "Chat failed": "对话失败",
    "Fine-tuned model answering...": "微调后的模型正在回答...",
    "Base model answering...": "基座模型正在回答...",
    "Stopped: what was generated before Stop is kept.": "已停止：保留了停止前生成的内容。",
    "Stopped before the answer started; nothing was generated.": "在回答开始前已停止；没有生成任何内容。",
    "Done.": "完成。",
    "`{run}` with `{tuned}` ({kind}), {dtype} on {device}": "`{run}` 使用 `{tuned}`（{kind}），{dtype}，运行于 {device}",
    # progress while loading (core.chat)
    "Loading the base model ({dtype}, {device})...": "正在加载基座模型（{dtype}，{device}）...",
    "Loading the adapter...": "正在加载适配器...",
    "Loading the merged model {name}...": "正在加载合并权重 {name}...",
    "Generating...": "正在生成...",
    # ChatError templates (core.chat, core.chat_generate)
    "{folder}: not a run folder (no config.json).": "{folder}：不是运行文件夹（没有 config.json）。",
    "Loading the models for {run} failed: {error}": "加载 {run} 的模型失败：{error}",
    "{run}: nothing to chat with yet (train the run, or wait for it to save its adapter).": (
        "{run}：还没有可对话的模型（请训练该运行，或等待它保存适配器）。"
    ),
    "{run}: no fine-tuned model {choice} here; this run has {have}.": (
        "{run}：这里没有微调后的模型 {choice}；该运行有：{have}。"
    ),
    "Out of GPU memory while generating; lower max new tokens.": "生成时 GPU 显存不足；请调低最大新 token 数。",
    "Generation failed: {error}": "生成失败：{error}",
    "Type a prompt first.": "请先输入提示词。",
    "{problems}.": "{problems}。",
}
