"""Architecture boundaries: core never imports gradio; light modules import without torch."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_core_never_imports_gradio():
    offenders = []
    for path in sorted((ROOT / "core").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [
                f"{path.name}:{node.lineno} {n}"
                for n in names
                if n.split(".")[0] in ("gradio", "gradio_client", "ui")
            ]
    assert offenders == []
    assert len(list((ROOT / "core").glob("*.py"))) >= 10  # the walk really saw the engine


def test_light_modules_do_not_import_torch():
    code = (
        "import sys; import core.config, core.vram, core.presets, core.modelspec, core.events, ui.views; "
        "heavy = [m for m in ('torch', 'transformers', 'peft', 'gradio', 'bitsandbytes') if m in sys.modules]; "
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
