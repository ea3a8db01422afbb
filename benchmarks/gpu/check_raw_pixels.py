"""Unnormalised video pixels + the model-side normalisation == the HF processor's pixels, bit for bit,
with the transformers version installed here (the GPU machine's differs from CI's), normalised on
the CPU and, where there is one, on the GPU (as the model does).

    python3 benchmarks/gpu/check_raw_pixels.py .gpu-model/llava-ov-7b
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch
import transformers
from transformers import AutoProcessor

from mmgvid_vllm.pixels import fused_normalization, normalize_video

SHAPES = [(32, 384, 384), (16, 240, 320), (8, 720, 1280), (3, 64, 96), (1, 500, 200)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="a LLaVA-OneVision model folder with its processor files")
    parser.add_argument("--dtype", default="bfloat16", help="the model dtype vLLM casts pixels to")
    args = parser.parse_args()
    dtype = getattr(torch, args.dtype)
    video_processor = AutoProcessor.from_pretrained(args.model).video_processor
    normalization = fused_normalization(video_processor, {})
    print(f"transformers {transformers.__version__}, {type(video_processor).__name__}, "
          f"normalisation {normalization.tolist()}")
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    failures = 0
    for i, shape in enumerate(SHAPES):
        video = np.random.default_rng(i).integers(0, 256, (*shape, 3), dtype=np.uint8)
        vanilla = video_processor(video, return_tensors="pt")["pixel_values_videos"][0].to(dtype)
        raw = video_processor(video, return_tensors="pt", do_rescale=False, do_normalize=False)
        raw = raw["pixel_values_videos"][0]  # sent as it is (uint8)
        for device in devices:
            ours = normalize_video(raw.to(device), normalization, dtype).cpu()
            same = raw.dtype == torch.uint8 and torch.equal(ours, vanilla)
            failures += not same
            print(f"{shape} on {device}: raw {raw.dtype}, {'identical' if same else 'DIFFERENT'}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
