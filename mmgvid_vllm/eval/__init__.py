"""``mmgvid eval``: lmms-eval-style multiple-choice video accuracy of a running server per retention."""

from .prompt import build_prompt, parse_answer
from .runner import EvalConfig, markdown_table, request_body, run_eval, summarize
from .tasks import (
    CONVERTERS,
    Sample,
    from_longvideobench,
    from_mlvu,
    from_mvbench,
    from_videomme,
    load_task,
    write_jsonl,
)
from .video import sample_indices, sample_video

__all__ = [
    "CONVERTERS", "EvalConfig", "Sample", "build_prompt", "from_longvideobench", "from_mlvu",
    "from_mvbench", "from_videomme", "load_task", "markdown_table", "parse_answer", "request_body",
    "run_eval", "sample_indices", "sample_video", "summarize", "write_jsonl",
]
