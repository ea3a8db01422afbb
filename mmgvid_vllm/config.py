"""Pruning configuration: server-wide defaults and per-request overrides.

Precedence, highest first:

1. the request's ``mm_processor_kwargs`` keys ``mmgvid_retention`` / ``mmgvid_method``
   (vLLM 0.32 only forwards them when the server runs with ``--trust-request-mm-kwargs``);
2. the same keys in the server's ``--mm-processor-kwargs`` (vLLM merges 1 over 2 itself);
3. the environment: ``MMGVID_RETENTION`` (unset or empty: pruning off), ``MMGVID_METHOD``
   (default ``mmgvid``), and the MMG-Vid hyper-parameters ``MMGVID_TAU``,
   ``MMGVID_LAMBDA``, ``MMGVID_R_MIN`` (server-wide only; defaults: ``MMGVidOptions``).

A retention of 1.0 means "off": the video goes through vanilla vLLM unchanged.
Every check raises ``ValueError``, which vLLM's OpenAI server answers with HTTP 400
when it happens while a request is processed, and which stops the server with the
message when it happens at startup (environment).
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from .pruning import METHODS, MMGVidOptions, check_retention

__all__ = [
    "KEY_PREFIX",
    "METHOD_KEY",
    "RETENTION_KEY",
    "PruningConfig",
    "config_from_env",
    "refuse_vllm_video_pruning",
    "resolve_request",
    "server_config",
    "strip_request_keys",
]

RETENTION_KEY = "mmgvid_retention"
METHOD_KEY = "mmgvid_method"
KEY_PREFIX = "mmgvid_"

# Environment variable -> MMGVidOptions field.
_ENV_OPTIONS = {"MMGVID_TAU": "tau", "MMGVID_LAMBDA": "lam", "MMGVID_R_MIN": "r_min"}


@dataclass(frozen=True)
class PruningConfig:
    """How to prune one video.

    retention: share of video tokens kept, in (0, 1]; 1.0 = no pruning.
    method: one of ``pruning.METHODS``.
    options: MMG-Vid hyper-parameters (``tau``, ``lam``, ``r_min``), used by ``mmgvid`` only.
    """

    retention: float = 1.0
    method: str = "mmgvid"
    options: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_retention(self.retention)
        check_method(self.method)
        MMGVidOptions(**self.options)

    @property
    def enabled(self) -> bool:
        return self.retention < 1.0

    def prune_options(self, method: str) -> dict[str, float]:
        """Keyword options for ``prune(..., method=method)``."""
        return dict(self.options) if method == "mmgvid" else {}


def check_method(method: object) -> str:
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"pruning method must be one of {', '.join(METHODS)}; got {method!r}")
    return method


def _env_float(environ: Mapping[str, str], name: str) -> float | None:
    raw = environ.get(name, "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{name}={raw!r} must be finite")
    return value


def config_from_env(environ: Mapping[str, str] | None = None) -> PruningConfig:
    """The server-wide default read from ``MMGVID_*`` variables; ``ValueError`` names the bad one."""
    environ = os.environ if environ is None else environ
    retention = _env_float(environ, "MMGVID_RETENTION")
    try:
        retention = 1.0 if retention is None else check_retention(retention)
    except ValueError as exc:
        raise ValueError(f"MMGVID_RETENTION: {exc}") from None
    method = environ.get("MMGVID_METHOD", "").strip() or "mmgvid"
    try:
        check_method(method)
    except ValueError as exc:
        raise ValueError(f"MMGVID_METHOD: {exc}") from None
    options = {}
    for name, option in _ENV_OPTIONS.items():
        value = _env_float(environ, name)
        if value is not None:
            try:
                MMGVidOptions(**{option: value})
            except ValueError as exc:
                raise ValueError(f"{name}: {exc}") from None
            options[option] = value
    return PruningConfig(retention, method, options)


@functools.cache
def server_config() -> PruningConfig:
    """``config_from_env()`` of this process, read once (vLLM's processes share the environment)."""
    return config_from_env()


def resolve_request(mm_kwargs: Mapping[str, object], default: PruningConfig) -> PruningConfig:
    """``default`` overridden by the ``mmgvid_*`` keys of (merged) ``mm_processor_kwargs``.

    Raises ``ValueError`` for an invalid value or an unknown ``mmgvid_*`` key (a typo
    must not silently disable pruning). Other keys are left to vLLM and HF.
    """
    unknown = sorted(k for k in mm_kwargs if k.startswith(KEY_PREFIX) and k not in (RETENTION_KEY, METHOD_KEY))
    if unknown:
        raise ValueError(
            f"unknown mm_processor_kwargs key(s) {', '.join(map(repr, unknown))}; "
            f"MMG-Vid accepts {RETENTION_KEY!r} and {METHOD_KEY!r}"
        )
    retention, method = default.retention, default.method
    if RETENTION_KEY in mm_kwargs:
        try:
            retention = check_retention(mm_kwargs[RETENTION_KEY])
        except ValueError as exc:
            raise ValueError(f"mm_processor_kwargs[{RETENTION_KEY!r}]: {exc}") from None
    if METHOD_KEY in mm_kwargs:
        try:
            method = check_method(mm_kwargs[METHOD_KEY])
        except ValueError as exc:
            raise ValueError(f"mm_processor_kwargs[{METHOD_KEY!r}]: {exc}") from None
    return PruningConfig(retention, method, default.options)


def refuse_vllm_video_pruning(multimodal_config) -> None:
    """``ValueError`` if vLLM's own ``--video-pruning-rate`` is set (``multimodal_config``: the
    engine's ``ModelConfig.multimodal_config``, the same field in vLLM 0.26 and 0.32).

    vLLM applies that rate (EVS) only to the models that implement it, not LLaVA-OneVision, and
    ignores it silently for the others; where this plugin prunes, the same wish is a retention
    of 1 - rate through our settings, named in the message.
    """
    rate = multimodal_config.video_pruning_rate
    if rate:
        keep = f"{1 - rate:g}"
        raise ValueError(
            f"--video-pruning-rate {rate:g} (vLLM's EVS) does not apply to LLaVA-OneVision, whose video "
            f"tokens the mmgvid plugin prunes: ask for the share kept instead, `mmgvid serve --retention "
            f"{keep}`, MMGVID_RETENTION={keep} or --mm-processor-kwargs '{{\"{RETENTION_KEY}\": {keep}}}' "
            f"(MMGVID_METHOD=evs for EVS)"
        )


def strip_request_keys(mm_kwargs: Mapping[str, object]) -> dict[str, object]:
    """``mm_kwargs`` without the ``mmgvid_*`` keys, for the HF processor."""
    return {k: v for k, v in mm_kwargs.items() if not k.startswith(KEY_PREFIX)}
