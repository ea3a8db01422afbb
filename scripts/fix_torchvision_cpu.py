#!/usr/bin/env python3
"""Make a CUDA-only torchvision wheel importable on a CPU-only torch.

Problem
-------
On CPU-only machines the only torchvision on PyPI is a CUDA build. Its compiled
extension ``torchvision/_C.so`` links ``libtorch_cuda`` and fails to load next
to a ``torch==X+cpu`` install. torchvision tolerates that for most ops (its
``register_meta`` helper checks ``torchvision.extension._has_ops()``), but
``torchvision/_meta_registrations.py`` registers two fake kernels
unconditionally::

    @torch.library.register_fake("torchvision::nms")
    @torch.library.register_fake("torchvision::qnms")

Because the ops were never defined, ``import torchvision`` dies with
``RuntimeError: operator torchvision::nms does not exist``. transformers
imports torchvision for its fast image/video processors (transforms v2, pure
Python), and vLLM imports transformers, so the whole stack breaks.

Fix
---
Rewrite those decorators to go through a small guard that only calls
``torch.library.register_fake`` when ``torchvision.extension._has_ops()`` is
true, and otherwise returns the function unchanged. The compiled ops
(nms, roi_align, ...) still raise torchvision's usual "Couldn't load custom
C++ ops" error if someone calls them; the pure-Python parts work.

Properties
----------
* Idempotent: the patched file carries ``MARKER``; a second run does nothing.
* No-op on a healthy install: if torchvision's ops load (a real CPU build, or a
  CUDA build next to CUDA torch), nothing is changed.
* Only the installed package of the interpreter running this script is
  touched (run it with the venv's python). Nothing is imported from
  torchvision itself, since importing it is exactly what fails.

Exit status: 0 when torchvision is importable afterwards (or absent), 1 otherwise.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

MARKER = "# mmgvid-vllm: register_fake guarded by _has_ops (scripts/fix_torchvision_cpu.py)"

GUARD = f'''
{MARKER}
def _mmgvid_register_fake_if_has_ops(op_name, *args, **kwargs):
    """torch.library.register_fake, skipped when torchvision's C++ ops are missing."""
    if torchvision.extension._has_ops():
        return torch.library.register_fake(op_name, *args, **kwargs)
    return lambda fn: fn

'''

DECORATOR_RE = re.compile(r"^@torch\.library\.register_fake\(", re.MULTILINE)
ANCHOR = "import torchvision.extension  # noqa: F401\n"


def _import_ok(python: str) -> tuple[bool, str]:
    """Import torchvision in a fresh interpreter (it may be half-imported here)."""
    proc = subprocess.run(
        [python, "-c", "import torchvision"],
        capture_output=True,
        text=True,
    )
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [""]
    return proc.returncode == 0, tail[0]


def find_meta_registrations() -> Path | None:
    spec = importlib.util.find_spec("torchvision")  # does not execute torchvision/__init__
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / "_meta_registrations.py"


def patch_source(src: str) -> str:
    """Return the patched text of _meta_registrations.py (unchanged if already patched)."""
    if MARKER in src:
        return src
    if ANCHOR not in src:
        raise ValueError("unexpected torchvision/_meta_registrations.py layout: anchor import not found")
    new, n = DECORATOR_RE.subn("@_mmgvid_register_fake_if_has_ops(", src)
    if n == 0:
        return src  # nothing unconditional to guard in this torchvision version
    return new.replace(ANCHOR, ANCHOR + GUARD, 1)


def main() -> int:
    path = find_meta_registrations()
    if path is None:
        print("fix_torchvision_cpu: torchvision not installed; nothing to do")
        return 0
    src = path.read_text()
    if MARKER in src:
        ok, err = _import_ok(sys.executable)
        print(f"fix_torchvision_cpu: already patched ({path})" + ("" if ok else f"; import still fails: {err}"))
        return 0 if ok else 1
    ok, err = _import_ok(sys.executable)
    if ok:
        print("fix_torchvision_cpu: torchvision imports fine; no patch needed")
        return 0
    if "torchvision::" not in err or "does not exist" not in err:
        print(f"fix_torchvision_cpu: torchvision import fails for another reason, not patching: {err}")
        return 1
    new = patch_source(src)
    if new == src:
        print(f"fix_torchvision_cpu: no unconditional register_fake found in {path}; cannot fix: {err}")
        return 1
    path.write_text(new)
    # Drop the stale bytecode so the next import compiles the patched source.
    for pyc in (path.parent / "__pycache__").glob("_meta_registrations.*.pyc"):
        pyc.unlink(missing_ok=True)
    ok, err = _import_ok(sys.executable)
    print(f"fix_torchvision_cpu: patched {path}" + ("" if ok else f"; import still fails: {err}"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
