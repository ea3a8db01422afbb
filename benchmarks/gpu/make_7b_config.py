"""Write a LLaVA-OneVision-7B- or LLaVA-Video-7B-shaped checkpoint directory without weights, for `--load-format dummy`.

Shapes are llava-hf/llava-onevision-qwen2-7b-ov-hf's: SigLIP-so400m vision tower (hidden 1152,
26 layers as llava-hf keeps them, 16 heads, MLP 4304, 384 px / patch 14) and Qwen2-7B (hidden
3584, 28 layers, 28 heads, 4 KV heads, MLP 18944, vocab 152064). Tokenizer, chat template and
processor files come from the tiny model (`mmgvid make-tiny-model`): the hub is unreachable, and
serving speed does not depend on the vocabulary's contents. Timing does not depend on weight
values either, so vLLM fills the weights with random numbers.

`--model llava-video` is LLaVA-Video-7B-Qwen2 as vLLM serves it: the HF conversion
Isotr0py/LLaVA-Video-7B-Qwen2-hf (vLLM issue #13190) is made by transformers' OneVision
conversion script with only the model id added, so it is a `LlavaOnevisionForConditionalGeneration`
with the same config as OneVision-7B; only its name differs here. It is the paper's 64-frame model:
serve it with `--media-io-kwargs '{"video": {"num_frames": 64}}'` (vLLM's loader samples 32 frames
otherwise) and `--max-model-len` / `--max-num-batched-tokens` >= 16384 (64 x 196 + 1 = 12545 video
tokens unpruned). README "Supported models" has the sources and how vLLM's geometry differs from
the original LLaVA-Video's.

    python benchmarks/gpu/make_7b_config.py                       # -> .gpu-model/llava-ov-7b
    python benchmarks/gpu/make_7b_config.py --model llava-video   # -> .gpu-model/llava-video-7b
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from mmgvid_vllm.tiny_model import ensure_tiny_model

VISION = {"hidden_size": 1152, "intermediate_size": 4304, "num_hidden_layers": 26, "num_attention_heads": 16}
TEXT = {"hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28, "num_attention_heads": 28,
        "num_key_value_heads": 4, "head_dim": 128, "vocab_size": 152064, "max_window_layers": 28,
        "layer_types": ["full_attention"] * 28}
# --model: (default --out, top-level config fields that differ from the OneVision checkpoint)
MODELS = {
    "llava-onevision": (Path(".gpu-model/llava-ov-7b"), {}),
    "llava-video": (Path(".gpu-model/llava-video-7b"), {"_name_or_path": "Isotr0py/LLaVA-Video-7B-Qwen2-hf"}),
}


def write_config(out: Path, model: str = "llava-onevision") -> Path:
    tiny = ensure_tiny_model()
    out.mkdir(parents=True, exist_ok=True)
    for item in tiny.iterdir():
        if item.suffix != ".safetensors":
            shutil.copy(item, out / item.name)
    config = json.loads((tiny / "config.json").read_text())
    config["vision_config"].update(VISION)
    config["text_config"].update(TEXT)
    config.update(MODELS[model][1])
    (out / "config.json").write_text(json.dumps(config, indent=1))
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=list(MODELS), default="llava-onevision")
    parser.add_argument("--out", type=Path, help="default: .gpu-model/llava-ov-7b or .gpu-model/llava-video-7b")
    args = parser.parse_args()
    print(write_config(args.out or MODELS[args.model][0], args.model))
