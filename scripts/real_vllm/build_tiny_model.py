"""Build a tiny, randomly initialised Qwen2.5-VL checkpoint that the real vLLM can serve.

Its answers are noise, but everything around them is the real thing: vLLM's OpenAI
server, the Qwen2-VL chat template, the Qwen2VL image processor (same patch/merge/pixel
settings as OCRFlux-3B, so image token counts match production), tokenization, streaming
and error bodies. Nothing is downloaded: the tokenizer is a byte-level BPE trained here on
a generated corpus, and the weights come from a seeded initialiser, so the build is
deterministic.

Run it with the real-vLLM venv's python (it needs torch, transformers and tokenizers):

    .cache/real-vllm/venv/bin/python scripts/real_vllm/build_tiny_model.py [--out DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import sys
from pathlib import Path

# No hub access, ever, and single-threaded BPE training so merges are reproducible.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("RAYON_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = ROOT / ".cache" / "real-vllm" / "tiny-qwen2_5_vl"
# Bump when anything below changes so cached builds are replaced.
RECIPE_VERSION = "1"
SEED = 0

SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]

# Qwen2-VL's own chat template (as shipped with Qwen2.5-VL-3B-Instruct / OCRFlux-3B).
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Qwen2.5-VL's image processor settings (min/max pixels bound the token count per image).
PREPROCESSOR = {
    "image_processor_type": "Qwen2VLImageProcessor",
    "processor_class": "Qwen2_5_VLProcessor",
    "do_resize": True,
    "do_rescale": True,
    "do_normalize": True,
    "do_convert_rgb": True,
    "rescale_factor": 1 / 255,
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_std": [0.26862954, 0.26130258, 0.27577711],
    "min_pixels": 3136,
    "max_pixels": 12845056,
    "patch_size": 14,
    "temporal_patch_size": 2,
    "merge_size": 2,
}


def _corpus(seed: int) -> list[str]:
    """Generated text for the BPE trainer: English-ish words, Markdown, JSON keys, digits."""
    rng = random.Random(seed)
    words = [
        "the",
        "page",
        "text",
        "table",
        "figure",
        "header",
        "footer",
        "title",
        "section",
        "paragraph",
        "document",
        "language",
        "rotation",
        "valid",
        "natural",
        "primary",
        "markdown",
        "image",
        "invoice",
        "total",
        "amount",
        "date",
        "name",
        "address",
        "number",
        "column",
        "row",
        "cell",
        "list",
        "item",
        "note",
        "summary",
        "result",
        "value",
    ]
    lines = [
        '{"primary_language": "en", "is_rotation_valid": true, "rotation_correction": 0, '
        '"is_table": false, "is_diagram": false, "natural_text": "..."}',
        "<table><tr><td>a</td><td>b</td></tr></table>",
        "# Title\n\n## Section\n\n- item\n- item\n\n| a | b |\n|---|---|\n| 1 | 2 |",
    ]
    for _ in range(2000):
        n = rng.randint(4, 16)
        line = " ".join(rng.choice(words) for _ in range(n))
        line += f" {rng.randint(0, 99999)} {rng.choice('.,;:!?')}"
        lines.append(line.capitalize())
    return lines


def build_tokenizer(out: Path) -> int:
    """Train and save the tokenizer; returns its vocabulary size (specials included)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import Qwen2TokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1024,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(SEED), trainer=trainer)

    fast = Qwen2TokenizerFast(
        tokenizer_object=tok,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        additional_special_tokens=SPECIAL_TOKENS[1:],
        errors="replace",
        clean_up_tokenization_spaces=False,
        model_max_length=32768,
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(out)
    # Real Qwen checkpoints name the slow class; transformers picks the fast one anyway.
    cfg_path = out / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["tokenizer_class"] = "Qwen2Tokenizer"
    cfg["chat_template"] = CHAT_TEMPLATE
    cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    return len(fast)


def build_model(out: Path, vocab: int, ids: dict[str, int]) -> None:
    import torch
    from transformers import GenerationConfig, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    torch.manual_seed(SEED)
    padded_vocab = (vocab + 63) // 64 * 64
    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": padded_vocab,
            "hidden_size": 128,
            "intermediate_size": 256,
            "num_hidden_layers": 2,
            # 128 / 2 heads = head size 64, which vLLM's CPU attention supports.
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "max_position_embeddings": 32768,
            "rms_norm_eps": 1e-6,
            # mrope_section must sum to half the head size (64 / 2 = 32).
            "rope_parameters": {
                "rope_type": "default",
                "mrope_section": [8, 12, 12],
                "rope_theta": 1000000.0,
            },
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
        },
        vision_config={
            "depth": 2,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_heads": 2,
            "out_hidden_size": 128,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "window_size": 112,
            "fullatt_block_indexes": [1],
            "tokens_per_second": 2,
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )
    model = Qwen2_5_VLForConditionalGeneration(config).to(torch.bfloat16).eval()
    model.save_pretrained(out, safe_serialization=True)
    GenerationConfig(
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]],
        pad_token_id=ids["<|endoftext|>"],
        do_sample=True,
        temperature=0.1,
        top_p=0.001,
        top_k=1,
        repetition_penalty=1.05,
    ).save_pretrained(out)


def fingerprint(out: Path) -> str:
    """Hash of every file's bytes: equal across two builds iff the build is deterministic."""
    digest = hashlib.sha256()
    for path in sorted(out.rglob("*")):
        if path.is_file() and path.name != "BUILD_INFO.json":
            digest.update(path.relative_to(out).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def build(out: Path) -> str:
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    vocab = build_tokenizer(tmp)
    added = json.loads((tmp / "tokenizer.json").read_text())["added_tokens"]
    ids = {t["content"]: t["id"] for t in added}
    build_model(tmp, vocab, ids)
    (tmp / "preprocessor_config.json").write_text(json.dumps(PREPROCESSOR, indent=2) + "\n")
    digest = fingerprint(tmp)
    info = {"recipe": RECIPE_VERSION, "seed": SEED, "sha256": digest}
    (tmp / "BUILD_INFO.json").write_text(json.dumps(info, indent=2) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)  # atomic swap: a half-written model is never mistaken for a cached one
    return digest


def is_current(out: Path) -> bool:
    try:
        info = json.loads((out / "BUILD_INFO.json").read_text())
    except (OSError, ValueError):
        return False
    return info.get("recipe") == RECIPE_VERSION and info.get("sha256") == fingerprint(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--force", action="store_true", help="rebuild even if cached")
    args = parser.parse_args(argv)
    out: Path = args.out.resolve()
    if not args.force and is_current(out):
        print(f"tiny model up to date: {out}")
        return 0
    digest = build(out)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"tiny model built: {out} ({size / 1e6:.1f} MB, sha256 {digest[:16]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
