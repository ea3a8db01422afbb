"""A tiny, random-weight LLaVA-OneVision checkpoint with the real video geometry.

The checkpoint is built offline (no hub access), deterministically (fixed seed),
and loads with both vLLM 0.32 (CPU) and HF transformers as
``LlavaOnevisionForConditionalGeneration``. It exists so that the video-token
pipeline (frame sampling, placeholder expansion, pooling, pruning, scheduling)
can be exercised end to end on a laptop or CI machine; its outputs are noise.

Geometry (identical to llava-hf/llava-onevision-qwen2-*-ov-hf where it matters)
------------------------------------------------------------------------------
* Vision tower: SigLIP, ``image_size=384``, ``patch_size=14`` -> a 27x27 grid
  = 729 patch tokens per frame (SigLIP has no CLS token;
  ``vision_feature_select_strategy="full"``, ``vision_feature_layer=-1``).
  Tiny: ``hidden_size=64``, 2 heads (head_dim 32), 2 layers, MLP 128.
* Video path: each frame's 27x27 projected features are bilinearly pooled with
  stride 2 to ceil(27/2)^2 = 14x14 = **196 tokens per frame**; one
  ``image_newline`` embedding is appended after the last frame. A video of F
  frames therefore expands its single ``<video>`` placeholder into
  ``F * 196 + 1`` tokens (vLLM: ``LlavaOnevisionProcessingInfo.get_num_video_tokens``;
  HF: ``LlavaOnevisionProcessor.replace_video_token``). 32 frames -> 6273.
* Images: anyres with the real 36 ``image_grid_pinpoints`` (384..2304) and
  ``vision_aspect_ratio="anyres_max_9"``; ``num_image_tokens=729``.
* Projector: 2-layer GELU MLP 64 -> 128 -> 128, with bias.
* Language model: Qwen2, ``hidden_size=128``, 4 attention heads of head_dim 32
  (vLLM's CPU attention needs head size >= 32), 2 KV heads, 2 layers,
  MLP 256, RoPE theta 1e6, ``max_position_embeddings=32768``.
* Tokenizer: byte-level BPE (Qwen2 pre-tokenizer) trained here on a small
  built-in corpus; vocabulary = tokenizer size (a few hundred entries), so any
  sampled id decodes. Special tokens, ids 0..4: ``<|endoftext|>``,
  ``<|im_start|>``, ``<|im_end|>``, ``<image>`` (image_token_index=3),
  ``<video>`` (video_token_index=4). EOS is ``<|im_end|>``.
* Chat template: ChatML. OpenAI-style content lists are rendered HF-style
  (as llava-hf's template does): per message, all ``image`` parts as
  ``<image>``, then all ``video`` parts as ``<video>``, then the text parts.
  Plain string contents are accepted too.
* Pre-processing: 384x384 bicubic resize, mean = std = 0.5 (SigLIP), as in the
  real ``preprocessor_config.json`` / ``video_preprocessor_config.json``.
* Weights: bfloat16 safetensors, about 1 MB.

Use ``ensure_tiny_model()`` to get a cached copy (built once per cache dir),
or ``build_tiny_model(path)`` to write one somewhere specific.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from pathlib import Path

__all__ = [
    "TINY_MODEL_VERSION",
    "FRAME_TOKENS",
    "build_tiny_model",
    "default_tiny_model_dir",
    "ensure_tiny_model",
    "num_video_tokens",
]

# Bump when the checkpoint's content changes, so stale caches are rebuilt.
TINY_MODEL_VERSION = 2
SEED = 1234

IMAGE_SIZE = 384
PATCH_SIZE = 14
PATCH_GRID = IMAGE_SIZE // PATCH_SIZE  # 27
NUM_IMAGE_TOKENS = PATCH_GRID * PATCH_GRID  # 729
FRAME_TOKENS = math.ceil(PATCH_GRID / 2) ** 2  # 14 * 14 = 196 (2x2 bilinear pooling)

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<video>"]
IMAGE_TOKEN_ID = SPECIAL_TOKENS.index("<image>")
VIDEO_TOKEN_ID = SPECIAL_TOKENS.index("<video>")

IMAGE_GRID_PINPOINTS = [[h, w] for h in range(384, 2305, 384) for w in range(384, 2305, 384)]

# ChatML; media parts rendered first, like llava-hf's llava-onevision template.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' -}}"
    "{%- if message['content'] is string -%}"
    "{{- message['content'] -}}"
    "{%- else -%}"
    "{%- for part in message['content'] | selectattr('type', 'equalto', 'image') -%}"
    "{{- '<image>' -}}"
    "{%- endfor -%}"
    "{%- for part in message['content'] | selectattr('type', 'equalto', 'video') -%}"
    "{{- '<video>' -}}"
    "{%- endfor -%}"
    "{%- set ns = namespace(sep=(message['content'] | rejectattr('type', 'equalto', 'text') | list | length > 0)) -%}"
    "{%- for part in message['content'] | selectattr('type', 'equalto', 'text') -%}"
    "{{- ('\\n' if ns.sep else '') + part['text'] -}}"
    "{%- set ns.sep = true -%}"
    "{%- endfor -%}"
    "{%- endif -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{- '<|im_start|>assistant\\n' -}}"
    "{%- endif -%}"
)


_SUBJECTS = [
    "a person", "the dog", "a red car", "two children", "the camera", "a cyclist",
    "an old man", "the chef", "a small bird", "the crowd", "a woman", "the robot",
]
_VERBS = [
    "walks across", "runs through", "looks at", "moves toward", "jumps over",
    "drives along", "stands near", "turns around in", "slowly enters", "leaves",
]
_PLACES = [
    "the park", "a busy street", "the kitchen", "a green field", "the beach",
    "a dark room", "the station", "a snowy mountain", "the river bank", "the stage",
]
_EXTRA = [
    "What happens in this video?",
    "Describe the video in detail.",
    "How many people appear in the clip, and what are they doing?",
    "What color is the object at the start of the video?",
    "Summarize the main events in order: first, then, finally.",
    "Is the scene indoors or outdoors? Answer yes or no.",
    "The quick brown fox jumps over the lazy dog 0123456789 times!",
    "Frames 1, 2, 3... show motion; frame 32 shows the end.",
    "User: hello. Assistant: Hi, how can I help you today?",
]


def _corpus() -> list[str]:
    lines = list(_EXTRA)
    for i, s in enumerate(_SUBJECTS):
        for j, v in enumerate(_VERBS):
            p = _PLACES[(i + 3 * j) % len(_PLACES)]
            lines.append(f"In the video, {s} {v} {p}.")
            lines.append(f"{s.capitalize()} {v} {p} while the light changes.")
    return lines


def default_tiny_model_dir() -> Path:
    """``$XDG_CACHE_HOME`` (or ``~/.cache``) ``/mmgvid-vllm/tiny-llava-onevision``."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "mmgvid-vllm" / "tiny-llava-onevision"


def num_video_tokens(num_frames: int) -> int:
    """Placeholder tokens one video of ``num_frames`` frames expands to (no pruning)."""
    return num_frames * FRAME_TOKENS + 1


def _build_tokenizer():
    from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers, trainers
    from tokenizers.models import BPE
    from transformers import Qwen2Tokenizer
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    tok = Tokenizer(BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1024,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer)
    hf_tok = Qwen2Tokenizer(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        bos_token=None,
        extra_special_tokens={"image_token": "<image>", "video_token": "<video>"},
        model_max_length=32768,
        chat_template=CHAT_TEMPLATE,
    )
    assert hf_tok.convert_tokens_to_ids("<image>") == IMAGE_TOKEN_ID
    assert hf_tok.convert_tokens_to_ids("<video>") == VIDEO_TOKEN_ID
    return hf_tok


def _build_config(vocab_size: int, eos_id: int, pad_id: int):
    from transformers import LlavaOnevisionConfig

    vision = dict(
        model_type="siglip_vision_model",
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_channels=3,
        image_size=IMAGE_SIZE,
        patch_size=PATCH_SIZE,
        hidden_act="gelu_pytorch_tanh",
        layer_norm_eps=1e-6,
        vision_use_head=False,
    )
    text = dict(
        model_type="qwen2",
        vocab_size=vocab_size,
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=32,
        hidden_act="silu",
        max_position_embeddings=32768,
        rms_norm_eps=1e-6,
        rope_theta=1000000.0,
        tie_word_embeddings=False,
        use_sliding_window=False,
        bos_token_id=None,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
        dtype="bfloat16",
    )
    return LlavaOnevisionConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=IMAGE_TOKEN_ID,
        video_token_index=VIDEO_TOKEN_ID,
        projector_hidden_act="gelu",
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
        multimodal_projector_bias=True,
        tie_word_embeddings=False,
        image_grid_pinpoints=IMAGE_GRID_PINPOINTS,
        vision_aspect_ratio="anyres_max_9",
        dtype="bfloat16",
    )


def _build_processor(tokenizer):
    from transformers import (
        LlavaOnevisionImageProcessor,
        LlavaOnevisionProcessor,
        LlavaOnevisionVideoProcessor,
    )

    common = dict(
        size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
        resample=3,  # bicubic
        do_convert_rgb=True,
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        do_resize=True,
    )
    image_processor = LlavaOnevisionImageProcessor(
        do_pad=True, image_grid_pinpoints=IMAGE_GRID_PINPOINTS, **common
    )
    video_processor = LlavaOnevisionVideoProcessor(**common)
    return LlavaOnevisionProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        num_image_tokens=NUM_IMAGE_TOKENS,
        vision_feature_select_strategy="full",
        vision_aspect_ratio="anyres_max_9",
        chat_template=CHAT_TEMPLATE,
    )


# transformers 5 keeps the weights under new names in memory, and its
# save_pretrained() writes a layout that vLLM 0.32 cannot map (it drops the
# SigLIP "vision_model." prefix). Write the layout of the published llava-hf
# checkpoints instead, which both libraries load.
_CHECKPOINT_PREFIXES = (
    ("model.vision_tower.vision_model.", "vision_tower.vision_model."),
    ("model.vision_tower.", "vision_tower.vision_model."),
    ("model.language_model.", "language_model.model."),
    ("lm_head.", "language_model.lm_head."),
    ("model.multi_modal_projector.", "multi_modal_projector."),
    ("model.image_newline", "image_newline"),
)


def _to_checkpoint_layout(state_dict):
    out = {}
    for key, tensor in state_dict.items():
        for old, new in _CHECKPOINT_PREFIXES:
            if key.startswith(old):
                out[new + key[len(old):]] = tensor.detach().contiguous()
                break
        else:
            raise KeyError(f"unexpected parameter name {key!r}")
    return dict(sorted(out.items()))


def build_tiny_model(path: str | os.PathLike) -> Path:
    """Write the tiny checkpoint (config, bf16 safetensors, tokenizer, processor) to ``path``.

    Offline and deterministic. ``path`` is created if missing; existing files
    with the same names are overwritten. Returns ``Path(path)``.
    """
    import torch
    from safetensors.torch import save_file
    from transformers import GenerationConfig, LlavaOnevisionForConditionalGeneration

    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)

    tokenizer = _build_tokenizer()
    eos_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
    pad_id = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    config = _build_config(len(tokenizer), eos_id, pad_id)

    # Random init under a fixed seed, in float32 (deterministic), then cast.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = LlavaOnevisionForConditionalGeneration(config)
        with torch.no_grad():
            # HF leaves image_newline uninitialised (torch.empty): make it deterministic.
            for name, param in model.named_parameters():
                if name.endswith("image_newline"):
                    param.normal_(0.0, 0.02)
    model = model.to(torch.bfloat16).eval()

    config.architectures = ["LlavaOnevisionForConditionalGeneration"]
    config.save_pretrained(out)
    GenerationConfig(
        eos_token_id=[eos_id, pad_id], pad_token_id=pad_id, do_sample=False, max_new_tokens=16
    ).save_pretrained(out)
    save_file(
        _to_checkpoint_layout(model.state_dict()),
        str(out / "model.safetensors"),
        metadata={"format": "pt"},
    )
    os.chmod(out / "model.safetensors", 0o644)

    processor = _build_processor(tokenizer)
    processor.save_pretrained(out)
    tokenizer.save_pretrained(out)

    (out / "mmgvid_tiny_model.json").write_text(
        json.dumps(
            {
                "version": TINY_MODEL_VERSION,
                "seed": SEED,
                "frame_tokens": FRAME_TOKENS,
                "num_image_tokens": NUM_IMAGE_TOKENS,
                "video_token_id": VIDEO_TOKEN_ID,
                "image_token_id": IMAGE_TOKEN_ID,
                "note": "tiny random-weight LLaVA-OneVision for tests; outputs are noise",
            },
            indent=2,
        )
        + "\n"
    )
    return out


def _is_complete(path: Path) -> bool:
    marker = path / "mmgvid_tiny_model.json"
    try:
        return json.loads(marker.read_text()).get("version") == TINY_MODEL_VERSION
    except (OSError, ValueError):
        return False


def ensure_tiny_model(path: str | os.PathLike | None = None, *, force: bool = False) -> Path:
    """Return a ready tiny checkpoint at ``path`` (default: ``default_tiny_model_dir()``).

    Built once: into a temporary sibling directory, then renamed into place, so
    a concurrent or interrupted build never leaves a half-written model behind.
    ``force=True`` rebuilds it.
    """
    target = Path(path) if path is not None else default_tiny_model_dir()
    if not force and _is_complete(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        build_tiny_model(tmp)
        os.chmod(tmp, 0o755)  # mkdtemp makes it 0700
        if target.exists():
            if not force and _is_complete(target):  # someone else finished first
                return target
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            os.replace(target, old / "m")
            shutil.rmtree(old, ignore_errors=True)
        try:
            os.replace(tmp, target)
        except OSError:
            if _is_complete(target):  # lost a race to a concurrent build
                return target
            raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target
