"""Chinese for the Export tab (ui.tabs.export_tab): the run list's labels, the memory line, the export's result,
its errors and the Hub push (see ui.i18n.tr).

Keys are the English templates exactly; placeholders (and their format specs) are kept as they are. Terms: 导出,
合并权重, 适配器, 检查点, 显存, 运行记录. Run statuses are worded as in ui.zh_runs.
"""

from __future__ import annotations

ZH: dict[str, str] = {
    # the run list (run_label)
    "no steps recorded": "未记录步数",
    "{n} step": "{n} 步",
    "{n} steps": "{n} 步",
    "exports {checkpoint}": "导出检查点 {checkpoint}",
    "completed": "已完成",
    "stopped": "已停止",
    "failed": "失败",
    "interrupted": "已中断",
    "running (another process)": "运行中（另一个进程）",
    "unknown": "未知",
    # the memory line (memory_line)
    "Merged export memory: cannot estimate ({error}).": "合并导出所需内存：无法估算（{error}）。",
    "GPU memory": "显存",
    "RAM": "内存",
    "{bits} base {base:.2f} GiB + adapter {adapter:.2f} + runtime {runtime:.2f}": (
        "{bits} 基座模型 {base:.2f} GiB + 适配器 {adapter:.2f} + 运行时 {runtime:.2f}"
    ),
    "Merged export needs about {need:.1f} GiB of {where}; available now: {available:.1f} GiB": (
        "合并导出需要约 {need:.1f} GiB {where}；当前可用：{available:.1f} GiB"
    ),
    " ({parts}).": "（{parts}）。",
    (
        "**{line}** Not enough for a merge: free memory, export the adapter only (it needs almost none), "
        "or merge on a bigger machine."
    ): "**{line}** 不足以完成合并：请释放内存，或只导出适配器（它几乎不占内存），或在更大的机器上合并。",
    " It verifies in float32 here, about {peak:.1f} GiB at the peak.": (
        " 在这台机器上将以 float32 校验，峰值约 {peak:.1f} GiB。"
    ),
    # the result (result_text, do_export)
    (
        "Run interrupted at step {step}: exported the adapter of its last checkpoint ({checkpoint}); "
        "Resume from this run folder continues it. "
    ): "运行在第 {step} 步中断：已导出其最后一个检查点（{checkpoint}）的适配器；从这个运行文件夹恢复训练即可继续。",
    (
        "Run ended early at step {step}: exported the adapter of its last checkpoint ({checkpoint}); "
        "Resume from this run folder continues it. "
    ): "运行在第 {step} 步提前结束：已导出其最后一个检查点（{checkpoint}）的适配器；从这个运行文件夹恢复训练即可继续。",
    (
        "Merged model saved to {path} ({size}). Verified on a probe prompt: reloaded logits match "
        "base+adapter (mean |Δ| = {ref:.4f} x std, tolerance {tolerance:.4f}; same top-1 token at "
        "{top1:.1f}% of positions) and differ from the base (mean |Δ| = {base:.4f} x std)."
    ): (
        "合并权重已保存到 {path}（{size}）。已用探测提示校验：重新加载后的 logits 与基座模型+适配器一致"
        "（平均 |Δ| = {ref:.4f} x std，容差 {tolerance:.4f}；{top1:.1f}% 的位置 top-1 token 相同），"
        "且与基座模型不同（平均 |Δ| = {base:.4f} x std）。"
    ),
    (
        "Adapter saved to {path} ({tensors} tensors, {size}); verified: it loads with "
        "PeftModel.from_pretrained on the base and changes it (max |B| = {max_b:.4g})."
    ): (
        "适配器已保存到 {path}（{tensors} 个张量，{size}）；已校验：它能用 PeftModel.from_pretrained "
        "加载到基座模型上，并改变其输出（max |B| = {max_b:.4g}）。"
    ),
    "Too large to zip for a browser download: use the folder.": "文件太大，无法打包成 zip 供浏览器下载：请使用文件夹。",
    "Pick a run folder first (train one in the Train tab).": "请先选择一个运行文件夹（在“训练”标签页训练一个）。",
    "**Not yet.** This run is still training; export it when it finishes or after Stop.": (
        "**还不行。** 这个运行仍在训练中；请在训练结束或停止后再导出。"
    ),
    "Merging and verifying": "正在合并并校验",
    "Copying and verifying the adapter": "正在复制并校验适配器",
    "**Export failed.** {reason}": "**导出失败。** {reason}",
    (
        "The run folder {folder} was deleted while it was being exported; nothing was exported "
        "(deleted runs cannot be exported)."
    ): "运行文件夹 {folder} 在导出过程中被删除；没有导出任何内容（已删除的运行无法导出）。",
    "**Done.** {summary}": "**完成。** {summary}",
    "See `verification.json` and the model card `README.md` in the folder.": (
        "请查看文件夹中的 `verification.json` 和模型卡片 `README.md`。"
    ),
    "No zip was written: use the folder.": "没有生成 zip：请使用文件夹。",
    "Zip: `{path}`": "Zip：`{path}`",
    "{reason}{name}. Check the folder exists and is writable, then retry.": (
        "{reason}{name}。请确认文件夹存在且可写，然后重试。"
    ),
    # the Hub push (do_push)
    "Export first: the push sends the last verified export folder.": "请先导出：推送会上传最近一次校验通过的导出文件夹。",
    "Uploading to {repo}": "正在上传到 {repo}",
    "**Push failed.** {reason}": "**推送失败。** {reason}",
    "**Pushed** `{name}` to {url}": "**已推送** `{name}` 到 {url}",
}
