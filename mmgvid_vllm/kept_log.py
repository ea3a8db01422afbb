"""Per-rank log of which video tokens each engine process kept (a tensor-parallel check).

With tensor parallelism every rank runs the vision tower and the pruning on its own copy of the
features; the ranks must keep exactly the same rows, or the language model silently computes
garbage. With ``MMGVID_KEPT_LOG_DIR`` set, every engine worker appends one JSON line per pruned
video to ``<dir>/rank<R>.jsonl`` (R: the torch.distributed rank, 0 without one):

``{"seq": n, "frames": T, "retention": r, "method": m, "kept": k, "features": h1, "kept_sha": h2}``

* ``seq``: the video's position in this process's order (ranks execute the same batches in the
  same order, so line n of every rank is the same video);
* ``features``: SHA-256 of the ``(D,)`` float64 column sums of the ``(T, M, D)`` features (tells
  the videos apart and shows the ranks saw the same features, without copying 45 MB per video);
* ``kept_sha``: SHA-256 of the kept flat indices (int64, ascending).

``benchmarks/gpu/check_tp_ranks.py`` compares the files. Off by default: logging copies the kept
indices to the host (one device sync per pruned video).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch

__all__ = ["KEPT_LOG_ENV", "KeptLog", "kept_log_from_env"]

KEPT_LOG_ENV = "MMGVID_KEPT_LOG_DIR"


def _sha(tensor: torch.Tensor) -> str:
    return hashlib.sha256(tensor.detach().cpu().contiguous().numpy().tobytes()).hexdigest()


def _rank() -> int:
    dist = torch.distributed
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


class KeptLog:
    """Appends one line per pruned video to ``<directory>/rank<R>.jsonl`` (R read at the first write,
    after vLLM set up the process group)."""

    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = Path(directory)
        self.seq = 0
        self.path: Path | None = None

    def write(self, tokens: torch.Tensor, keep: torch.Tensor, retention: float, method: str) -> None:
        """tokens: ``(T, M, D)`` features; keep: ``(K,)`` kept flat indices into ``T * M``."""
        if self.path is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            self.path = self.directory / f"rank{_rank()}.jsonl"
        line = {
            "seq": self.seq,
            "frames": tokens.shape[0],
            "retention": retention,
            "method": method,
            "kept": keep.numel(),
            "features": _sha(tokens.sum(dim=(0, 1), dtype=torch.float64)),
            "kept_sha": _sha(keep.to(torch.int64)),
        }
        with self.path.open("a") as f:
            f.write(json.dumps(line) + "\n")
        self.seq += 1


def kept_log_from_env(environ=os.environ) -> KeptLog | None:
    directory = environ.get(KEPT_LOG_ENV)
    return KeptLog(directory) if directory else None
