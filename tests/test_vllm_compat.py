"""Version safety: the supported vLLM versions and the check of every vLLM name the plugin
overrides, calls or imports (``mmgvid_vllm.vllm_support``), and its static twin
``scripts/check_vllm_overrides.py``, all offline against the installed vLLM (0.32 on CPU)."""

from __future__ import annotations

import importlib.util
import logging
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from mmgvid_vllm import vllm_support as vs

ROOT = Path(__file__).resolve().parent.parent
LLAVA_FILE = "vllm/model_executor/models/llava_onevision.py"
PROCESSOR_FILE = "vllm/multimodal/processing/processor.py"


@pytest.fixture(autouse=True)
def _fresh_warnings(monkeypatch):
    monkeypatch.setattr(vs, "_warned", set())
    monkeypatch.delenv(vs.ALLOW_UNSUPPORTED_ENV, raising=False)


def installed_tree(**replace: tuple[str, str]) -> vs.SourceTree:
    """The installed vLLM's sources, with ``file=(old, new)`` text replacements."""
    base = vs.SourceTree.from_directory(vs.installed_vllm_root())
    overrides = {}
    for key, (old, new) in replace.items():
        rel = {"llava": LLAVA_FILE, "processor": PROCESSOR_FILE}[key]
        text = base.text(rel)
        assert old in text, f"{old!r} not in {rel}"
        overrides[rel] = text.replace(old, new)
    return vs.SourceTree(lambda rel: overrides.get(rel) or base.text(rel), "patched", None)


def entries() -> list[tuple[str, str, tuple[str, ...]]]:
    variant = vs.hf_call_variant(vs.runtime_signature(vs.HF_CALL_PROBE))
    return [(t, k, e) for t, (k, e) in vs.expected_api(variant).items()]


# -- the installed vLLM passes ----------------------------------------------------------------


def test_installed_vllm_is_supported_and_passes():
    assert vs.parse_version(vs.installed_vllm_version())[:2] == (0, 32)
    assert vs.check_vllm_compatibility() == []
    assert vs.require_supported_vllm(pruning_requested=True) is True


def test_runtime_check_passes_and_agrees_with_the_static_one():
    """The table against the imported objects (inspect), and the static engine's signature of
    every override/call entry equal to inspect's: the ast resolution is what Python sees."""
    assert vs.check_vllm_compatibility(runtime=True) == []
    tree = vs.SourceTree.from_directory(vs.installed_vllm_root())
    compared = 0
    for target, kind, _ in entries():
        if kind == "attr":
            continue
        for alternative in (t.strip() for t in target.split("|")):
            try:
                runtime = vs.runtime_signature(alternative)
            except vs.Missing:
                continue
            assert vs.static_signature(tree, alternative) == runtime, alternative
            compared += 1
            break
    assert compared >= 20


def test_check_imports_no_vllm():
    """register() runs the check in every vLLM process: it must import nothing of vLLM (the
    model module alone takes seconds), and work where vllm_compat's imports would fail."""
    code = (
        "import sys; from mmgvid_vllm import vllm_support as vs; "
        "assert vs.check_vllm_compatibility() == []; "
        "assert vs.require_supported_vllm(True); "
        "leaked = sorted(m for m in sys.modules if m == 'vllm' or m.startswith(('vllm.', 'torch'))); "
        "assert not leaked, leaked"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_vllm_compat_finds_frontend_args_and_video_pruning():
    from mmgvid_vllm import vllm_compat

    assert vllm_compat.request_mm_kwargs_server_args() == ["--trust-request-mm-kwargs"]  # 0.32 has the flag
    for method in ("evs", "vidcom2"):  # 0.32 ships both
        assert callable(vllm_compat.video_pruning_mask_function(method))


# -- an unsupported version ---------------------------------------------------------------------


def test_unsupported_version_is_one_problem():
    problems = vs.check_vllm_compatibility(version="0.35.0")
    assert len(problems) == 1 and "0.35.0" in problems[0] and "0.34" in problems[0]
    assert vs.check_vllm_compatibility(version="0.33.1") == []
    assert vs.check_vllm_compatibility(version="0.34.0rc1") == []
    assert vs.check_vllm_compatibility(version="0.26.0+cu130") == []
    assert vs.check_vllm_compatibility(version="0.25.1") != []
    assert vs.check_vllm_compatibility(version="1.0.0") != []
    assert vs.check_vllm_compatibility(version="dev") != []


def test_unsupported_version_with_pruning_stops_with_one_message():
    with pytest.raises(RuntimeError) as err:
        vs.require_supported_vllm(pruning_requested=True, version="0.35.0")
    message = str(err.value)
    assert "vLLM 0.35.0" in message and "supported: 0.26, 0.32, 0.33, 0.34" in message
    assert "MMGVID_RETENTION" in message and vs.ALLOW_UNSUPPORTED_ENV in message
    assert "\n" not in message


def test_unsupported_version_without_pruning_warns_once_and_disables(caplog):
    with caplog.at_level(logging.WARNING, logger="mmgvid_vllm"):
        assert vs.require_supported_vllm(pruning_requested=False, version="0.35.0") is False
        assert vs.require_supported_vllm(pruning_requested=False, version="0.35.0") is False
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "0.35.0" in warnings[0].getMessage() and "left untouched" in warnings[0].getMessage()


def test_allow_unsupported_version_only_where_the_api_matches(monkeypatch, caplog):
    monkeypatch.setenv(vs.ALLOW_UNSUPPORTED_ENV, "1")
    with caplog.at_level(logging.WARNING, logger="mmgvid_vllm"):
        assert vs.require_supported_vllm(pruning_requested=True, version="0.35.0") is True
    assert "untested" in caplog.text
    tree = installed_tree(llava=("def _process_video_pixels(", "def _process_video_pixels_v2("))
    with pytest.raises(RuntimeError):
        vs.require_supported_vllm(pruning_requested=True, version="0.35.0", tree=tree)


# -- a vLLM whose internals moved (static: patched sources) --------------------------------------


def test_missing_override_is_named():
    tree = installed_tree(llava=("def _process_video_pixels(", "def _process_video_pixels_v2("))
    problems = vs.check_vllm_compatibility(version="0.32.0", tree=tree)
    assert len(problems) == 1
    assert "LlavaOnevisionForConditionalGeneration._process_video_pixels: missing" in problems[0]
    with pytest.raises(RuntimeError, match=r"vLLM 0\.32\.0 .*_process_video_pixels: missing"):
        vs.require_supported_vllm(True, version="0.32.0", tree=tree)
    assert vs.require_supported_vllm(False, version="0.32.0", tree=tree) is False


def test_changed_parameters_are_named():
    tree = installed_tree(llava=(
        "    def _get_prompt_updates(\n        self,\n        mm_items: MultiModalDataItems,\n",
        "    def _get_prompt_updates(\n        self,\n        mm_items: MultiModalDataItems,\n        prompt_ids,\n",
    ))
    problems = vs.check_vllm_compatibility(version="0.32.0", tree=tree)
    assert problems == [
        "vllm.model_executor.models.llava_onevision:LlavaOnevisionMultiModalProcessor._get_prompt_updates: "
        "parameters (mm_items, prompt_ids, hf_processor_mm_kwargs, out_mm_kwargs), "
        "expected (mm_items, hf_processor_mm_kwargs, out_mm_kwargs)"
    ]


def test_hf_call_of_vllm_0_26_is_told_apart():
    """A base ``_apply_hf_processor_main`` taking the prompt (0.26) makes the check expect the
    0.26 override (``_call_hf_processor(prompt, mm_data, mm_kwargs, tok_kwargs)``), which 0.32 lacks."""
    tree = installed_tree(processor=(
        "    def _apply_hf_processor_main(\n        self,\n",
        "    def _apply_hf_processor_main(\n        self,\n        prompt,\n",
    ))
    problems = vs.check_vllm_compatibility(version="0.32.0", tree=tree)
    assert problems == [
        "vllm.model_executor.models.llava_onevision:LlavaOnevisionMultiModalProcessor._call_hf_processor: "
        "parameters (hf_data, hf_kwargs), expected (prompt, mm_data, mm_kwargs, tok_kwargs)"
    ]


# -- a vLLM whose internals moved (runtime: patched objects) --------------------------------------


def test_runtime_missing_method_and_changed_signature(monkeypatch):
    from vllm.model_executor.models.llava_onevision import LlavaOnevisionForConditionalGeneration
    from vllm.multimodal.inputs import MultiModalFieldConfig

    monkeypatch.delattr(LlavaOnevisionForConditionalGeneration, "_video_pixels_to_features")
    monkeypatch.setattr(MultiModalFieldConfig, "batched", staticmethod(lambda modality: None))
    problems = vs.check_vllm_compatibility(runtime=True)
    assert len(problems) == 2
    assert "vllm.multimodal.inputs:MultiModalFieldConfig.batched: parameters (modality) lack keep_on_cpu" in problems
    assert any("LlavaOnevisionForConditionalGeneration._video_pixels_to_features: missing" in p for p in problems)
    with pytest.raises(RuntimeError, match="_video_pixels_to_features"):
        vs.require_supported_vllm(True, runtime=True)


# -- comparison rules ------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "expected", "actual", "ok"), [
    ("override", ("inputs", "timing_ctx"), ["inputs", "timing_ctx"], True),
    ("override", ("inputs", "timing_ctx"), ["inputs", "timing_ctx", "cache="], False),  # vLLM would pass cache
    ("override", ("*", "vllm_config", "prefix"), ["vllm_config", "prefix="], False),  # no longer keyword-only
    ("call", ("kwargs",), ["kwargs", "*", "supported_mm_processor_kwargs="], True),
    ("call", ("kwargs",), ["kwargs", "extra"], False),  # a new required parameter
    ("call", ("modality", "*", "keep_on_cpu"), ["modality", "*", "keep_on_cpu="], True),
    ("call", ("modality", "*", "keep_on_cpu"), ["modality"], False),
    ("call", ("a", "b"), ["b", "a"], False),
    ("call", ("image_width",), ["**kwargs"], True),
    ("attr", (), None, True),
])
def test_compare(kind, expected, actual, ok):
    params = None if actual is None else [vs.Param(n.rstrip("="), n.endswith("=")) for n in actual]
    assert (vs.compare(kind, expected, params) is None) is ok


# -- the static script, offline ---------------------------------------------------------------------


def load_script():
    spec = importlib.util.spec_from_file_location("check_vllm_overrides", ROOT / "scripts" / "check_vllm_overrides.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_script_on_installed_sources(capsys):
    assert load_script().main(["--installed"]) == 0
    out = capsys.readouterr().out
    n = len(vs.expected_api("items"))
    assert f"all {n} names as expected" in out
    assert "HF processor call: items" in out
    assert "!!" not in out


def test_script_on_a_wheel_extracts_only_what_it_reads(tmp_path, capsys):
    """A wheel made of the installed files the check reads: the script's wheel path (no
    download), the extraction, and the source diff against itself."""
    installed = vs.SourceTree.from_directory(vs.installed_vllm_root())
    assert vs.static_check(installed) == []
    needed = sorted(installed._texts)
    wheel = tmp_path / "vllm-0.32.0-cp38-abi3-manylinux_2_28_x86_64.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        for rel in needed:
            z.writestr(rel, installed.text(rel))
    cache = tmp_path / "cache"
    assert load_script().main([str(wheel), "--diff", str(wheel), "--cache-dir", str(cache)]) == 0
    out = capsys.readouterr().out
    assert "vLLM 0.32.0  [supported]" in out
    assert "every definition the table resolves to: identical" in out
    extracted = sorted(str(p.relative_to(cache / "sources" / "0.32.0")) for p in (cache / "sources").rglob("*.py"))
    assert extracted == needed
    assert len(needed) < 60  # only what the resolution reads, not the 2,900 files of the wheel
