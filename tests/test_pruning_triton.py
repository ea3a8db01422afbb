"""The Triton stage 3 (the CUDA path) is checked on this CPU-only machine with Triton's
interpreter: same kept tokens as the torch stage 3 and, through ``prune``, as the
plain-loop reference implementation of the paper's equations; with ``on_segments`` and
``on_error`` too."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).parent


def test_triton_stage3_matches_torch_and_reference_under_the_interpreter():
    env = dict(os.environ, TRITON_INTERPRET="1")
    run = subprocess.run([sys.executable, "-m", "helpers.triton_cases", "--cases", "30"], cwd=TESTS, env=env,
                         capture_output=True, text=True, timeout=600, check=True)
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result == {
        "interpreted": True,
        "stage3_mismatches": [],
        "prune_vs_reference_mismatches": [],
        "callbacks": {  # prune(..., on_segments=, on_error=)
            "mismatches": [],
            "segments": [3, 3, 3, 3],
            "errors": ["tokens must be finite (found inf or NaN)"],
            "nonfinite_kept_uniform": True,
        },
    }
