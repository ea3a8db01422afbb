"""Prometheus metrics of video-token pruning, served on vLLM's own ``/metrics``.

Series (labels ``model_name`` = vLLM's served model name, as on ``vllm:*``, and
``method`` = the pruning method, ``none`` for a video kept whole):

- ``mmgvid_video_original_tokens_total`` (counter): video tokens before pruning (``T * 196``, no newline)
- ``mmgvid_video_kept_tokens_total`` (counter): video tokens kept (placeholders in the prompt - 1)
- ``mmgvid_kv_cache_tokens_avoided_total`` (counter): original - kept, prompt tokens never given KV cache
- ``mmgvid_video_retention_ratio`` (histogram): kept / original per video (1.0 with pruning off)
- ``mmgvid_retention_target_ratio`` (gauge): the server's configured retention (``MMGVID_RETENTION``)
- ``mmgvid_video_segments`` (histogram): segments MMG-Vid's stage 1 split a video into (1 for a video
  that is not segmented: pruning off, other methods); reported by ``prune(on_report=...)``
  and read without a device sync
- ``mmgvid_pruning_duration_seconds`` (histogram): time to prune one video, where it runs
- ``mmgvid_api_processed_videos_total`` (counter, label ``model_name``): videos the API server's processor
  prepared, also of requests rejected afterwards: a progress signal for load tools (the engine
  reports nothing while paused), not a serving count
- ``mmgvid_pruning_errors_total`` (counter): prunes that failed (inf or NaN features) and fell back
  to uniform selection, each also logged as a warning (created at 0 with the first pruned video, so
  ``increase()`` sees the first error)

Where they are recorded: in the engine's worker process, where the model encodes and prunes a
video, so only videos of requests the engine accepted count (a request that the API server
answers with 400 after processing its video, e.g. a prompt over ``max_model_len``, counts
nothing). A video whose features the engine takes from its encoder cache (the same video at the
same ratio in a request scheduled while the first one's features are still cached) is not
encoded again and is not counted again.
With tensor parallelism every rank prunes the same videos; only the first tensor-parallel rank
records (``report_from_this_process``, set by the model), so each video counts once.
Videos built by vLLM for profiling and warm-up (``get_dummy_mm_inputs``, ``profile_run`` on the
stack) are not recorded.

Cross-process design: every process writes its observations to prometheus_client
*multiprocess* files (``MmapedDict``, the format of ``PROMETHEUS_MULTIPROC_DIR``), in one directory,
and the API server's ``/metrics`` merges them with ``MultiProcessCollector``:

* With ``--api-server-count`` > 1 (or a user-set ``PROMETHEUS_MULTIPROC_DIR``) vLLM already
  runs in multiprocess mode: its ``/metrics`` merges ``PROMETHEUS_MULTIPROC_DIR``, so our files go
  there and every API server shows the same totals.
* With one API server vLLM serves the in-memory default ``REGISTRY``. ``setup()`` (called by
  ``register()`` in the API server before it starts the engine) then creates a private directory,
  publishes it in ``MMGVID_METRICS_DIR`` (inherited by engine and worker processes) and adds a
  ``MultiProcessCollector`` for it to ``REGISTRY``; the directory is removed when the process that
  made it exits.

Our files are written explicitly (not through ``prometheus_client``'s global value class), so
vLLM's own in-memory metrics are untouched; they are named ``<type>_mmgvid-<pid>.db`` so they never
share a file with prometheus_client's own ``<type>_<pid>.db``.

Pruning time: wall time on the CPU. On a CUDA device, two CUDA events are recorded around the
prune (no synchronisation) and read once complete, at the next pruning call of the process
(``torch.cuda.Event.query``), so a video's duration appears one pruned video late; so do its
segment count and failure, copied to the host behind the prune (``PruneObservation.set_report``).
"""

from __future__ import annotations

import atexit
import logging
import math
import os
import shutil
import sys
import tempfile
import threading
import time
from collections import deque
from contextlib import contextmanager
from typing import TYPE_CHECKING

from prometheus_client import REGISTRY
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.utils import floatToGoString

if TYPE_CHECKING:
    import torch

    from .pruning import PruneReport

logger = logging.getLogger(__name__)

__all__ = [
    "DIR_ENV",
    "NOT_PRUNED",
    "PruneObservation",
    "in_dummy_run",
    "metrics_dir",
    "record_processed_videos",
    "record_video",
    "setup",
    "time_pruning",
]

DIR_ENV = "MMGVID_METRICS_DIR"
NOT_PRUNED = "none"  # method label of a video kept whole

_INF = math.inf
# name -> (type, help, buckets); counters are named without "_total", as prometheus_client stores them.
SPECS = {
    "mmgvid_video_original_tokens": ("counter", "Video tokens before MMG-Vid pruning.", None),
    "mmgvid_video_kept_tokens": ("counter", "Video tokens kept by MMG-Vid pruning (in the prompt).", None),
    "mmgvid_kv_cache_tokens_avoided": (
        "counter",
        "Video tokens pruned before scheduling, so never given KV cache (original - kept).",
        None,
    ),
    "mmgvid_api_processed_videos": (
        "counter",
        "Videos the API server's processor prepared for the engine, also of requests rejected afterwards "
        "(a load tool's progress signal; the other mmgvid_* series count what the engine served).",
        None,
    ),
    "mmgvid_pruning_errors": ("counter", "Video prunes that failed and fell back to uniform selection.", None),
    "mmgvid_retention_target_ratio": ("gauge", "Configured share of video tokens kept (MMGVID_RETENTION).", None),
    "mmgvid_video_retention_ratio": (
        "histogram",
        "Share of a video's tokens kept (1.0 when pruning is off).",
        (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.99, 1.0, _INF),
    ),
    "mmgvid_video_segments": (
        "histogram",
        "Segments MMG-Vid split a video into (1 when not segmented).",
        (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, _INF),
    ),
    "mmgvid_pruning_duration_seconds": (
        "histogram",
        "Time to prune one video's tokens (device time on CUDA, wall time on CPU).",
        (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, _INF),
    ),
}

_created_dir: str | None = None
_collected_dir: str | None = None


def metrics_dir() -> str | None:
    """Where this process writes: vLLM's multiprocess directory if set, else ours."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get(DIR_ENV) or None


def setup() -> None:
    """Make sure this process's observations reach ``/metrics`` (idempotent; see module doc)."""
    global _created_dir, _collected_dir
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return  # vLLM's /metrics merges that directory itself
    path = os.environ.get(DIR_ENV)
    if not path:
        path = _created_dir = tempfile.mkdtemp(prefix="mmgvid-metrics-")
        os.environ[DIR_ENV] = path
        atexit.register(_remove_created_dir, os.getpid())
    os.makedirs(path, exist_ok=True)
    if _collected_dir != path:
        MultiProcessCollector(REGISTRY, path=path)
        _collected_dir = path


def _remove_created_dir(pid: int) -> None:
    if os.getpid() == pid and _created_dir:  # not in a forked child
        shutil.rmtree(_created_dir, ignore_errors=True)


class _Files:
    """This process's multiprocess files, one per metric type; reopened after a fork."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._dir: str | None = None
        self._files: dict[str, MmapedDict] = {}

    def add(self, typ: str, metric: str, sample: str, labels: dict[str, str], amount: float, *, set_to=None) -> None:
        path = metrics_dir()
        if path is None:
            return  # setup() never ran (plugin not loaded): nothing would export these
        with self._lock:
            if (self._pid, self._dir) != (os.getpid(), path):
                self._files, self._pid, self._dir = {}, os.getpid(), path
            if typ not in self._files:
                prefix = "gauge_max" if typ == "gauge" else typ
                self._files[typ] = MmapedDict(os.path.join(path, f"{prefix}_mmgvid-{self._pid}.db"))
            file = self._files[typ]
            key = mmap_key(metric, sample, list(labels), list(labels.values()), SPECS[metric][1])
            value = set_to if set_to is not None else file.read_value(key)[0] + amount
            file.write_value(key, value, 0.0)


_files = _Files()


def _inc(name: str, labels: dict[str, str], amount: float) -> None:
    _files.add("counter", name, name + "_total", labels, amount)


def _observe(name: str, labels: dict[str, str], value: float) -> None:
    buckets = SPECS[name][2]
    bucket = next(b for b in buckets if value <= b)
    for b in buckets:  # every bucket exists from the first observation on, as in prometheus_client
        _files.add("histogram", name, name + "_bucket", {**labels, "le": floatToGoString(b)}, float(b == bucket))
    _files.add("histogram", name, name + "_sum", labels, value)


# -- engine worker: the model ---------------------------------------------------------------
_pending: deque = deque()  # (start event, end event, labels, observation) of CUDA prunes not read yet


class PruneObservation:
    """What one ``time_pruning`` block learns besides its time: the segment count and whether
    the pruning failed, from the ``prune(..., on_report=set_report)`` of its video (1 segment
    and no failure when nothing reports: pruning off)."""

    def __init__(self) -> None:
        self.segments: int | torch.Tensor = 1
        self.failed: bool | torch.Tensor = False

    def set_report(self, report: PruneReport) -> None:
        """Keep the report's values, copied to the host behind the prune (no wait); they are
        read once the prune has run (``_record_observation``)."""
        self.segments = report.segments.to("cpu", non_blocking=True)
        self.failed = report.failed.to("cpu", non_blocking=True)


def _record_observation(labels: dict[str, str], observation: PruneObservation) -> None:
    failed = bool(observation.failed)
    if failed:
        logger.warning("MMG-Vid: a video's features were inf or NaN; it kept a uniform selection instead of %s's",
                       labels["method"])
    _observe("mmgvid_video_segments", labels, int(observation.segments))
    _inc("mmgvid_pruning_errors", labels, float(failed))


def _drain_cuda_timings() -> None:
    """Record the CUDA prunes whose end event has completed (so their observation is final)."""
    while _pending and _pending[0][1].query():  # stream order: the oldest completes first
        start, end, labels, observation = _pending.popleft()
        _observe("mmgvid_pruning_duration_seconds", labels, start.elapsed_time(end) / 1000.0)
        _record_observation(labels, observation)


_reporting = True  # False in tensor-parallel ranks other than the first


def report_from_this_process(enabled: bool) -> None:
    """Whether this engine worker records pruning time, segments and errors (one rank per video)."""
    global _reporting
    _reporting = enabled


def record_processed_videos(model_name: str, count: int) -> None:
    """The API server's processor prepared ``count`` videos of a request (processor cache hits
    included), before vLLM decides whether to run it; ``max_concurrency.py`` watches this while
    the engine is paused. Not a serving count: ``record_video`` is."""
    if count and not in_dummy_run():
        _inc("mmgvid_api_processed_videos", {"model_name": model_name}, count)


def record_video(model_name: str, method: str, original_tokens: int, kept_tokens: int, target: float) -> None:
    """One video the model encoded for a request: ``original_tokens`` ``T * M``, ``kept_tokens``
    what it put into the prompt; ``method`` is ``NOT_PRUNED`` when kept whole; ``target`` is the
    server's configured retention."""
    if not _reporting or in_dummy_run():
        return
    labels = {"model_name": model_name, "method": method}
    _inc("mmgvid_video_original_tokens", labels, original_tokens)
    _inc("mmgvid_video_kept_tokens", labels, kept_tokens)
    _inc("mmgvid_kv_cache_tokens_avoided", labels, original_tokens - kept_tokens)
    _observe("mmgvid_video_retention_ratio", labels, kept_tokens / original_tokens)
    _files.add("gauge", "mmgvid_retention_target_ratio", "mmgvid_retention_target_ratio",
               {"model_name": model_name}, 0.0, set_to=float(target))


@contextmanager
def time_pruning(model_name: str, method: str, device=None):
    """Time one video's pruning and record its segment count and failure (the model's hook).

    Yields a ``PruneObservation``; pass its ``set_report`` as ``prune(..., on_report=)``. On
    CUDA the time, segments and failure are recorded once the device has finished the
    pruning, seen at a later call.
    """
    observation = PruneObservation()
    labels = {"model_name": model_name, "method": method}
    record = _reporting and not in_dummy_run()
    if record:
        _inc("mmgvid_pruning_errors", labels, 0)  # the series exists (at 0) before the first error
    cuda = record and getattr(device, "type", device) == "cuda"
    if cuda:
        import torch

        _drain_cuda_timings()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
    t0 = time.perf_counter()
    try:
        yield observation
    finally:
        if cuda:
            end.record()
            _pending.append((start, end, labels, observation))
        elif record:
            _observe("mmgvid_pruning_duration_seconds", labels, time.perf_counter() - t0)
            _record_observation(labels, observation)


def in_dummy_run() -> bool:
    """True while vLLM processes or encodes dummy inputs (never for a request)."""
    from .vllm_compat import DUMMY_INPUT_CALLERS  # here: the rest of this module runs without vLLM

    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name in DUMMY_INPUT_CALLERS:
            return True
        frame = frame.f_back
    return False
