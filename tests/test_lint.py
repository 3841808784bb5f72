"""The code base stays lint-clean (ruff) and type-checks (mypy on core/), as DESIGN.md's habits ask."""

import subprocess
import sys

from tests.conftest import ROOT


def test_ruff_is_clean():
    out = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "."], cwd=ROOT, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_mypy_core_is_clean():
    out = subprocess.run([sys.executable, "-m", "mypy", "core"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
