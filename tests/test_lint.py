"""``ruff check`` of the whole repository is clean (rules: ``[tool.ruff]`` in pyproject.toml).

Uses the ruff installed beside this interpreter (the ``test`` extra pins it), so that the
rules' results don't change with whatever ruff is on PATH. ``ruff format`` is not enforced.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RUFF = Path(sys.executable).parent / "ruff"


def test_ruff_check_is_clean():
    if not RUFF.is_file():
        pytest.fail(f"{RUFF} not found: install the test extra (pip install -e '.[test]')")
    proc = subprocess.run(
        [str(RUFF), "check", "--no-cache", "--output-format", "full", "."],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, f"ruff check found problems:\n{proc.stdout}{proc.stderr}"
