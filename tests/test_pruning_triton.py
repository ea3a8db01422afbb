"""The CUDA path (stages 1-2 in ``plan_triton``, stage 3 in ``token_selection_triton``) is
checked on this CPU-only machine with Triton's interpreter: the same plans as the host's
stages 1-2, the same kept tokens as the torch stage 3 and, through ``prune``, as the host path
and the plain-loop reference implementation of the paper's equations; with ``on_report``."""

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
        "plan_mismatches": [],
        "stage3_mismatches": [],
        "device_vs_host_prune_mismatches": [],
        "prune_vs_reference_mismatches": [],
        "reports": {  # prune(..., on_report=)
            "mismatches": [],
            "segments": [3, 3, 3, 3, 1],
            "failed": [False, False, False, False, True],
            "nonfinite_kept_uniform": True,
        },
    }
