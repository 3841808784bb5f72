"""Chinese for the Runs tab (ui.tabs.runs_tab) and the run-management messages of core.run_admin (see ui.i18n.tr).

Keys are the English templates exactly; placeholders are kept as they are. The static labels of the tab's
render() are here too (for ui.i18n.translate).
"""

from __future__ import annotations

from core.run_admin import NOTE_MAX_CHARS, TITLE_MAX_CHARS

ZH: dict[str, str] = {
    # table headers and statuses
    "Started": "开始时间",
    "Status": "状态",
    "Steps": "步数",
    "Final loss": "最终 loss",
    "Method": "方法",
    "Model": "模型",
    "r / α": "r / α",
    "LR": "学习率",
    "Exports": "导出",
    "Note": "备注",
    "Folder": "文件夹",
    "completed": "已完成",
    "stopped": "已停止",
    "failed": "失败",
    "interrupted": "已中断",
    "running (another process)": "运行中（另一个进程）",
    "queued": "排队中",
    "loading": "加载中",
    "training": "训练中",
    "stopping": "正在停止",
    "saving": "正在保存",
    "unknown": "未知",
    "unreadable: {reason}": "无法读取：{reason}",
    # captions and details
    "Select a row to see that run's charts, details and exports, and to rename or delete it.": (
        "选择一行以查看该运行的图表、详情和导出，并可重命名或删除它。"
    ),
    "{n} run(s) in `{folder}`, newest first.": "`{folder}` 中有 {n} 个运行记录，最新的在前。",
    "No runs yet in `{folder}`. Start one in the Train tab.": "`{folder}` 中还没有运行记录。请在训练页开始一次训练。",
    " after {steps} steps": "，共 {steps} 步",
    ", final loss {loss}": "，最终 loss {loss}",
    "Model: {setup}": "模型：{setup}",
    "Folder: {path}": "文件夹：{path}",
    "Note:": "备注：",
    "Exports ({n}):": "导出（{n} 个）：",
    "No exports yet: export this run in the Export tab.": "还没有导出：请在导出页导出这个运行。",
    "Could not read: {problems}": "无法读取：{problems}",
    "merged weights": "合并后的权重",
    "adapter": "适配器",
    "verified": "已校验",
    "no verification.json": "没有 verification.json",
    "zip: {path}": "zip：{path}",
    "zip only: {path}": "仅有 zip：{path}",
    # managing a run
    "Title": "标题",
    f"A name for this run, up to {TITLE_MAX_CHARS} characters; the folder keeps its name.": (
        f"这个运行的名称，最多 {TITLE_MAX_CHARS} 个字符；文件夹名称保持不变。"
    ),
    f"Free text, up to {NOTE_MAX_CHARS} characters.": f"自由文本，最多 {NOTE_MAX_CHARS} 个字符。",
    "Save title and note": "保存标题和备注",
    "Delete run...": "删除运行记录...",
    "Delete": "删除",
    "Cancel": "取消",
    "Selected run": "选中的运行",
    "Refresh": "刷新",
    "Not saved.": "未保存。",
    "Saved the title and note of {name}.": "已保存 {name} 的标题和备注。",
    "Cannot delete.": "无法删除。",
    "Not deleted.": "未删除。",
    "Nothing was deleted.": "没有删除任何内容。",
    "Really delete {name}? Its folder goes with everything in it: checkpoints, adapter": (
        "确定要删除 {name} 吗？它的文件夹及其中的一切都会被删除：检查点、适配器"
    ),
    " and {n} export(s)": "以及 {n} 个导出",
    "This cannot be undone.": "此操作无法撤销。",
    "Deleted {name} ({size} freed, {n} export(s) with it).": "已删除 {name}（释放 {size}，连同 {n} 个导出）。",
    # core.run_admin.RunAdminError templates
    "The title must be one line without control characters; remove the line break.": (
        "标题必须是一行且不含控制字符；请删除换行。"
    ),
    "The title has {n} characters; at most {limit} are allowed. Shorten it (the note can be longer).": (
        "标题有 {n} 个字符，最多允许 {limit} 个。请缩短（备注可以更长）。"
    ),
    "The note holds a control character; remove it (line breaks and tabs are fine).": (
        "备注中含有控制字符；请删除它（换行和制表符可以保留）。"
    ),
    "The note has {n} characters; at most {limit} are allowed. Shorten it.": (
        "备注有 {n} 个字符，最多允许 {limit} 个。请缩短。"
    ),
    "Pick a run in the table first.": "请先在表格中选择一个运行记录。",
    "{name!r} is not a run folder name; pick a run from the table.": (
        "{name!r} 不是运行文件夹的名称；请从表格中选择一个运行记录。"
    ),
    "{folder} is not a run of the runs folder {base}; pick a run from the table.": (
        "{folder} 不是运行记录文件夹 {base} 中的运行；请从表格中选择一个运行记录。"
    ),
    (
        "{folder} is a symbolic link, not a run folder; LoRA Studio never deletes through a link. "
        "Remove the link yourself if you want it gone."
    ): "{folder} 是一个符号链接，不是运行文件夹；LoRA Studio 从不通过链接删除。如需移除，请自行删除该链接。",
    "{folder} does not exist (any more); press Refresh to update the list.": (
        "{folder} 不存在（或已被删除）；请点击“刷新”更新列表。"
    ),
    "{folder} is not a run folder (no config.json, result.json or metrics.jsonl); nothing was changed.": (
        "{folder} 不是运行文件夹（没有 config.json、result.json 或 metrics.jsonl）；没有做任何更改。"
    ),
    "Could not save the title and note of {name}: {reason}.": "无法保存 {name} 的标题和备注：{reason}。",
    "{name} is {status}; stop it in the Train tab (or wait until it ends), then delete it.": (
        "{name} 正处于“{status}”状态；请先在训练页停止它（或等它结束），然后再删除。"
    ),
    (
        "{name} is still queued or training in another process (its recorded process is alive); "
        "stop it there first, then delete it."
    ): "{name} 仍在另一个进程中排队或训练（其记录的进程仍在运行）；请先在那里停止它，然后再删除。",
    "An export of {name} is being written right now; wait until it finishes, then delete the run.": (
        "{name} 的一个导出正在写入；请等它完成后再删除这个运行记录。"
    ),
    "{name} is {what} right now; wait until that finishes, then delete it.": "{name} 当前{what}；请等它结束后再删除。",
    "being exported": "正在导出",
    "open in Chat": "正在对话页中使用",
    "The run now training ({active}) resumes from {name}; delete {name} after that run has ended.": (
        "正在训练的运行（{active}）是从 {name} 恢复的；请在该运行结束后再删除 {name}。"
    ),
    "Could not delete {name}: {reason}. Nothing was deleted.": "无法删除 {name}：{reason}。没有删除任何内容。",
    (
        "{name} is no longer listed, but some of its files could not be removed ({reason}); they are in "
        "{leftover}. Remove that folder yourself."
    ): "{name} 已不再列出，但它的部分文件无法删除（{reason}）；它们位于 {leftover}。请自行删除该文件夹。",
}
