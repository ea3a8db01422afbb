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


def test_kernel_arguments_avoid_the_names_of_tritons_launcher():
    """Triton 3.6's launcher binds a kernel's arguments in generated code whose locals are
    ``params``, ``specialization`` and ``options`` (and ``backend``, ``specialize_impl`` in its
    namespace): an argument of such a name reached the GPU kernel as a dict (seen on an H100)."""
    import triton

    from mmgvid_vllm.pruning import plan_triton, token_selection_triton

    reserved = {"params", "specialization", "options", "backend", "specialize_impl", "JITCallable"}
    kernels = [value for module in (plan_triton, token_selection_triton) for value in vars(module).values()
               if isinstance(value, triton.runtime.jit.JITFunction) and value.__name__.endswith("_kernel")]
    assert len(kernels) == 4
    clashes = {kernel.__name__: sorted(reserved & set(kernel.arg_names)) for kernel in kernels}
    assert all(not names for names in clashes.values()), clashes
