"""Every rank of a tensor-parallel server prunes on its own: the kept indices must be
bit-identical across processes and repeated runs for the same input."""

import hashlib
import subprocess
import sys

import pytest
import torch

from mmgvid_vllm.pruning import prune

SCRIPT = """
import hashlib, sys, torch
from mmgvid_vllm.pruning import prune
device = sys.argv[1]
for seed in range(20):
    gen = torch.Generator().manual_seed(seed)
    scenes = torch.randn(3, 196, 64, generator=gen)
    tokens = scenes[torch.randint(0, 3, (16,), generator=gen)] + 0.05 * torch.randn(16, 196, 64, generator=gen)
    kept = prune(tokens.to(device), 0.25).cpu().numpy().tobytes()
    print(hashlib.sha256(kept).hexdigest())
"""


def _hashes_from_a_fresh_process(device: str) -> list[str]:
    result = subprocess.run([sys.executable, "-c", SCRIPT, device], capture_output=True, text=True, check=True)
    return result.stdout.split()


def test_same_indices_in_separate_processes():
    first, second = _hashes_from_a_fresh_process("cpu"), _hashes_from_a_fresh_process("cpu")
    assert len(first) == 20 and first == second


@pytest.mark.parametrize("device", ["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
def test_deterministic_algorithms_give_the_same_indices(device):
    """No op on the path lacks a deterministic implementation, and the result does not change."""
    tokens = torch.randn(24, 196, 128, generator=torch.Generator().manual_seed(3)).to(device)
    expected = prune(tokens, 0.15)
    torch.use_deterministic_algorithms(True)
    try:
        repeated = [hashlib.sha256(prune(tokens, 0.15).cpu().numpy().tobytes()).hexdigest() for _ in range(3)]
    finally:
        torch.use_deterministic_algorithms(False)
    assert set(repeated) == {hashlib.sha256(expected.cpu().numpy().tobytes()).hexdigest()}
