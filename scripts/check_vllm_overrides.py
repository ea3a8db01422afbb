#!/usr/bin/env python3
"""Check the vLLM internals mmgvid-vllm overrides and calls against a vLLM release's sources.

No vLLM install, no engine, no import of vLLM: the wheel is downloaded with
``pip download vllm==VERSION --no-deps`` (cached in ``~/.cache/mmgvid-vllm/wheels``), the
``.py`` files the check reads are extracted to ``~/.cache/mmgvid-vllm/sources/VERSION``, and
``mmgvid_vllm/vllm_support.py``'s expectation table (the one ``plugin.register()`` checks
at startup) is resolved with ``ast``: each name's definition (following imports, class bases,
module-level instances), its parameters, and whether they are what the plugin expects.

    python scripts/check_vllm_overrides.py 0.26.0 0.32.0 0.33.0 0.34.0
    python scripts/check_vllm_overrides.py path/to/vllm-0.35.0-...whl
    python scripts/check_vllm_overrides.py --installed           # the vLLM of this Python
    python scripts/check_vllm_overrides.py 0.33.0 0.34.0 --diff 0.32.0 [--show-diff]

``--diff BASE``: also compares, against release BASE, the source of every definition the
table resolves to (the overridden vanilla methods, the called ones) and the files whose
behaviour the plugin relies on (``WATCHED``: LLaVA-OneVision, multimodal processing, inputs,
hashing, processor cache, video loading); ``--show-diff`` prints the unified diffs.

Exit status: 0 if every version passes (signatures; a version outside
``SUPPORTED_VLLM_VERSIONS`` is reported, not failed), 1 otherwise.
"""

from __future__ import annotations

import argparse
import difflib
import glob
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mmgvid-vllm"

# Files whose behaviour (not only signatures) the plugin relies on: placeholder counts, HF
# processor calls, processor cache keys and hashing of mm_processor_kwargs, field batching,
# the video loader and its metadata.
WATCHED = (
    "vllm/model_executor/models/llava_onevision.py",
    "vllm/multimodal/processing/",
    "vllm/multimodal/inputs.py",
    "vllm/multimodal/parse.py",
    "vllm/multimodal/hasher.py",
    "vllm/multimodal/cache/",
    "vllm/multimodal/registry.py",
    "vllm/multimodal/video.py",
    "vllm/multimodal/media/video.py",
    "vllm/multimodal/utils.py",
    "vllm/inputs/engine.py",
)


def load_support():
    """``mmgvid_vllm/vllm_support.py`` by path: standard library only, no package import."""
    path = ROOT / "mmgvid_vllm" / "vllm_support.py"
    spec = importlib.util.spec_from_file_location("mmgvid_vllm_support", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def wheel_for(version: str, cache: Path) -> Path:
    """The cached wheel of ``vllm==version``, downloaded if missing."""
    wheels = cache / "wheels"
    found = sorted(glob.glob(str(wheels / f"vllm-{version}-*.whl")))
    if found:
        return Path(found[0])
    wheels.mkdir(parents=True, exist_ok=True)
    print(f"downloading vllm=={version} ...", file=sys.stderr)
    subprocess.run(
        [sys.executable, "-m", "pip", "download", f"vllm=={version}", "--no-deps", "--only-binary=:all:",
         "-d", str(wheels), "--quiet", "--disable-pip-version-check"],
        check=True,
    )
    found = sorted(glob.glob(str(wheels / f"vllm-{version}-*.whl")))
    if not found:
        raise SystemExit(f"pip download vllm=={version} left no wheel in {wheels}")
    return Path(found[0])


def open_tree(support, spec: str, cache: Path):
    """``(label, version, SourceTree)`` for a version, a wheel path or ``installed``."""
    if spec == "installed":
        root = support.installed_vllm_root()
        if root is None:
            raise SystemExit("no vLLM installed for this Python")
        return f"installed ({root})", support.installed_vllm_version() or "?", support.SourceTree.from_directory(root)
    if spec.endswith(".whl"):
        wheel = Path(spec)
        version = wheel.name.split("-")[1]
    else:
        version = spec
        wheel = wheel_for(version, cache)
    tree = support.SourceTree.from_wheel(str(wheel), extract_to=str(cache / "sources" / version))
    return str(wheel), version, tree


def fmt_params(params) -> str:
    if params is None:
        return "-"
    return "(" + ", ".join(p.name + ("=" if p.has_default else "") for p in params) + ")"


def report(support, label: str, version: str, tree) -> list[str]:
    """Print one version's table; return its problems."""
    resolver = support._Resolver(tree)
    try:
        variant = support.hf_call_variant(resolver.signature(resolver.target(support.HF_CALL_PROBE)))
    except support.Missing as exc:
        variant = "?"
        print(f"  cannot tell how it calls the HF processor: {exc}")
    version_note = support.version_problem(version)
    status = "supported" if version_note is None else "NOT in SUPPORTED_VLLM_VERSIONS"
    print(f"\n== vLLM {version}  [{status}]  {label}")
    print(f"   HF processor call: {variant} ({'0.26 style' if variant == 'prompt' else '0.32+ style'})")
    table = support.expected_api(variant if variant != "?" else "items")
    for target, (kind, expected) in table.items():
        result, where, found = "MISSING", "", None
        reasons = []
        for alternative in (t.strip() for t in target.split("|")):
            try:
                node = resolver.target(alternative)
            except support.Missing as exc:
                reasons.append(str(exc))
                continue
            where = resolver.describe(node)
            found = resolver.signature(node)
            diff = support.compare(kind, expected, found)
            result = "ok" if diff is None else f"DIFFERS: {diff}"
            target = alternative
            break
        if result == "MISSING":
            result += f" ({'; '.join(reasons)})"
        sig = fmt_params(found) if kind != "attr" else ""
        print(f"   {'ok ' if result == 'ok' else '!! '}{kind:8s} {target}{sig}  [{where}]"
              + ("" if result == "ok" else f"\n        {result}"))
    problems = support.static_check(tree)
    print(f"   -> all {len(table)} names as expected" if not problems else f"   -> {len(problems)} problem(s)")
    return problems


def diff_sources(support, base, other, base_version: str, version: str, show: bool) -> None:
    """Definitions the table resolves to, and WATCHED files: identical or changed, base -> other."""
    print(f"\n-- sources {base_version} -> {version}")
    targets = {t.strip() for table in (support.EXPECTED_API, *support.EXPECTED_API_BY_HF_CALL.values())
               for key in table for t in key.split("|")}
    changed = 0
    for target in sorted(targets):
        if not target.partition(":")[2]:
            continue  # a whole module: see the files below
        try:
            wb, sb = support.static_definition(base, target)
            wo, so = support.static_definition(other, target)
        except support.Missing:
            continue
        if sb == so:
            continue
        changed += 1
        print(f"   definition changed: {target}  [{wb} -> {wo}]")
        if show:
            print_diff(sb, so, f"{base_version}/{wb}", f"{version}/{wo}")
    if not changed:
        print("   every definition the table resolves to: identical")
    files = sorted({f for prefix in WATCHED for tree in (base, other) for f in tree.files(prefix)})
    for rel in files:
        a, b = base.text(rel), other.text(rel)
        if a == b:
            print(f"   same     {rel}")
            continue
        if a is None or b is None:
            print(f"   {'added  ' if a is None else 'removed'}  {rel}")
            continue
        lines = list(difflib.unified_diff(a.splitlines(), b.splitlines(), lineterm="", n=3))
        plus = sum(1 for x in lines if x.startswith("+") and not x.startswith("+++"))
        minus = sum(1 for x in lines if x.startswith("-") and not x.startswith("---"))
        print(f"   changed  {rel}  (+{plus} -{minus})")
        if show:
            print_diff(a, b, f"{base_version}/{rel}", f"{version}/{rel}")


def print_diff(a: str, b: str, name_a: str, name_b: str) -> None:
    for line in difflib.unified_diff(a.splitlines(), b.splitlines(), name_a, name_b, lineterm="", n=3):
        print("      " + line)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("versions", nargs="*", help="vLLM versions (0.34.0) or wheel paths")
    parser.add_argument("--installed", action="store_true", help="also check the vLLM installed for this Python")
    parser.add_argument("--diff", metavar="BASE", help="compare sources against this version (or wheel)")
    parser.add_argument("--show-diff", action="store_true", help="print unified diffs (with --diff)")
    parser.add_argument("--cache-dir", type=Path, default=CACHE, help=f"wheels and sources (default {CACHE})")
    args = parser.parse_args(argv)
    specs = list(args.versions) + (["installed"] if args.installed else [])
    if not specs:
        parser.error("give at least one version, wheel or --installed")
    support = load_support()
    print(f"mmgvid-vllm: vLLM API check ({len(support.EXPECTED_API)} common + "
          f"{sum(len(t) for t in support.EXPECTED_API_BY_HF_CALL.values())} HF-call names); "
          f"supported: {', '.join(support.SUPPORTED_VLLM_VERSIONS)}")
    base = open_tree(support, args.diff, args.cache_dir) if args.diff else None
    failed = []
    summary = []
    for spec in specs:
        label, version, tree = open_tree(support, spec, args.cache_dir)
        problems = report(support, label, version, tree)
        if problems:
            failed.append(version)
        note = support.version_problem(version)
        summary.append((version, "API ok" if not problems else f"{len(problems)} API problem(s)",
                        "supported" if note is None else "not listed as supported"))
        if base is not None:
            diff_sources(support, base[2], tree, base[1], version, args.show_diff)
    print("\n== summary")
    for version, api, listed in summary:
        print(f"   vLLM {version:12s} {api:22s} {listed}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
