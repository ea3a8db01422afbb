"""What a request may set in ``mm_processor_kwargs``: an allow-list, checked and canonicalised.

``mmgvid serve`` runs vLLM with ``--trust-request-mm-kwargs`` (per-request retention), which
hands every key of a request's ``mm_processor_kwargs`` to the HF processor. Many of the HF
video processor's keys change what the vision tower receives, and vLLM's engine dies on them
(found by fuzzing the server): ``size`` / ``do_resize`` / ``crop_size`` change the frame size
(the SigLIP tower takes 384x384 only), ``do_sample_frames`` / ``num_frames`` / ``fps`` make the
HF processor drop frames after vLLM sized the prompt for all of them. So a request may set:

* ``mmgvid_retention``: a number in (0, 1] (sent as a float whatever the JSON had: ``1`` and
  ``1.0`` are one cache entry, and ``1`` can never share vLLM's multimodal hash with ``5e-324``,
  whose float64 bytes equal the int64 bytes of ``1``);
* ``mmgvid_method``: one of ``pruning.METHODS``;
* the pixel normalisation, which changes values, never shapes: ``do_rescale``, ``do_normalize``,
  ``do_convert_rgb`` (booleans), ``rescale_factor`` (a number in (0, 1]), ``image_mean``
  (a number or 3 numbers in [-10, 10]) and ``image_std`` (a number or 3 numbers in [0.001, 100]).
  The bounds keep every pixel finite and of the order of magnitude the model sees in training;
  each value is sent as float(s).

Anything else (other HF keys, scoped ``videos_kwargs`` / ``images_kwargs``, unknown ``mmgvid_*``
keys) is a ``ValueError`` naming the key, which vLLM answers with HTTP 400. Frame sampling is set
per request the vLLM way instead: ``"media_io_kwargs": {"video": {"num_frames": N}}``.
The server's own ``--mm-processor-kwargs`` are the operator's and are not restricted here; the
processor still checks every processed video's shape before a request reaches the engine.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

from .config import KEY_PREFIX, METHOD_KEY, RETENTION_KEY, check_method
from .pruning import check_retention

__all__ = ["ALLOWED_KEYS", "check_request_kwargs"]

MEDIA_IO_HINT = 'set frame sampling with "media_io_kwargs": {"video": {"num_frames": N}} instead'


def _boolean(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false, got {value!r}")
    return value


def _number(value: object, low: float, high: float, *, low_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"must be a number, got {type(value).__name__} {value!r}")
    number = float(value)
    if not math.isfinite(number) or number > high or number < low or (low_open and number == low):
        bound = "(" if low_open else "["
        raise ValueError(f"must lie in {bound}{low:g}, {high:g}], got {value!r}")
    return number


def _per_channel(low: float, high: float) -> Callable[[object], float | list[float]]:
    def check(value: object) -> float | list[float]:
        if isinstance(value, (list, tuple)):
            if len(value) != 3:
                raise ValueError(f"must be one number or 3 (one per RGB channel), got {len(value)}")
            return [_number(v, low, high) for v in value]
        return _number(value, low, high)

    return check


# key -> check returning the canonical value (ValueError if invalid)
ALLOWED_KEYS: dict[str, Callable[[object], object]] = {
    RETENTION_KEY: check_retention,
    METHOD_KEY: check_method,
    "do_rescale": _boolean,
    "do_normalize": _boolean,
    "do_convert_rgb": _boolean,
    "rescale_factor": lambda value: _number(value, 0.0, 1.0, low_open=True),
    "image_mean": _per_channel(-10.0, 10.0),
    "image_std": _per_channel(0.001, 100.0),
}


def check_request_kwargs(mm_kwargs: Mapping[str, object]) -> dict[str, object]:
    """A request's ``mm_processor_kwargs`` -> the same keys with canonical values.

    Raises ``ValueError`` naming the first key that is not allowed or whose value is invalid.
    """
    if not isinstance(mm_kwargs, Mapping):
        raise ValueError(f"mm_processor_kwargs must be an object, got {type(mm_kwargs).__name__}")
    canonical = {}
    for key, value in mm_kwargs.items():
        check = ALLOWED_KEYS.get(key)
        if check is None:
            raise ValueError(_not_allowed(key))
        try:
            canonical[key] = check(value)
        except ValueError as exc:
            raise ValueError(f"mm_processor_kwargs[{key!r}]: {exc}") from None
    return canonical


def _not_allowed(key: object) -> str:
    allowed = ", ".join(ALLOWED_KEYS)
    if isinstance(key, str) and key.startswith(KEY_PREFIX):
        return f"unknown mm_processor_kwargs key {key!r}; MMG-Vid accepts {RETENTION_KEY!r} and {METHOD_KEY!r}"
    hint = f" ({MEDIA_IO_HINT})" if key in ("num_frames", "fps", "do_sample_frames") else ""
    return f"mm_processor_kwargs key {key!r} is not accepted per request{hint}; accepted: {allowed}"
