"""Style: ``ruff check`` and ``ruff format --check`` over the repository (settings in pyproject.toml:
line length 100; the notebooks are checked too)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _ruff(*args: str) -> subprocess.CompletedProcess:
    pytest.importorskip("ruff", reason="ruff is not installed (pip install -e '.[test]')")
    return subprocess.run(
        [sys.executable, "-m", "ruff", *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )


def test_ruff_lint_passes():
    proc = _ruff("check", "--output-format", "concise", ".")
    assert proc.returncode == 0, (
        f"ruff check found problems (fix: ruff check --fix .):\n{proc.stdout}"
    )


def test_ruff_format_leaves_every_file_unchanged():
    proc = _ruff("format", "--check", ".")
    assert proc.returncode == 0, f"files need formatting (run: ruff format .):\n{proc.stdout}"
