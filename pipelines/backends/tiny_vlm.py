"""Tiny answerer models built with the real transformers classes and seeded random weights.

Each builder writes a ``save_pretrained`` folder once (model, processor or tokenizer, chat template)
under the folder it is given (default: the model cache) and returns its path. The answerers then load
these folders through the same code as hub models. Their answers mean nothing (random weights).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from pipelines.config import models_dir

MARKER = "vqa-tiny.json"  # marks a folder of random weights; loaders set ``random_weights`` from it
# Bump when a builder changes, so that stale cached folders are not reused.
BUILD_VERSION = 2

CORPUS = [
    "Frame at 12.0 s: a person walks in the street next to a red car and a blue bus.",
    "Context lines with time ranges in seconds. Speech: the gate code is seven hundred.",
    "On screen: EXIT 4 NORTH. Scene: a white boat docked next to a wooden pier.",
    "Question: what happens in the video? Options: A. a dog runs B. a cat sleeps C. it rains D. nothing",
    "Answer with the option's letter only. Answer briefly, in a few words. The answer is B.",
    "0 1 2 3 4 5 6 7 8 9 10 20 30 45 100 0.0 1.5 2.0 12.5 60.0 seconds minutes",
    "you are a helpful assistant. the narrator says the ferry leaves at seven o'clock from the harbor.",
    "a purple star, a red circle, a blue square, a green triangle, a yellow heart and an orange cross.",
]

QWEN_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                 "<|image_pad|>", "<|video_pad|>"]
LLAVA_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<video>"]

# The shape of Qwen2.5-VL's own chat template: images and texts interleaved in message order.
QWEN_VL_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# The shape of llava-hf's LLaVA-OneVision template: all images of a turn first, then its texts.
LLAVA_OV_CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + ' ' }}"
    "{% if message['content'] is string %}{{ '\n' + message['content'] }}{% else %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>' }}{% endfor %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'video') %}{{ '<video>' }}{% endfor %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{{ '\n' + content['text'] }}{% endfor %}{% endif %}{{ '<|im_end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# SmolLM2-style plain chat template for the tiny causal LM.
CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def _target(name: str, root: Path | str | None) -> Path:
    return Path(root or models_dir()) / f"{name}-v{BUILD_VERSION}"


def _build(target: Path, write) -> Path:
    """Write into a private temporary folder, then publish it with one rename (safe across processes)."""
    if (target / "config.json").exists():
        return target
    from pipelines.backends.util import quiet_hub

    quiet_hub()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    write(tmp)
    (tmp / MARKER).write_text(json.dumps({"random_weights": True, "builder": target.name}))
    try:
        os.rename(tmp, target)
    except OSError:  # another process published first: keep theirs
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def train_bpe(specials: list[str], vocab_size: int = 600) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A byte-level BPE (vocab, merges) trained locally on a small corpus; specials get the first ids."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS * 4, trainer=trainer)
    model = json.loads(tok.to_str())["model"]
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    return model["vocab"], merges


def _qwen_tokenizer(specials: list[str], chat_template: str | None = None):
    from transformers import Qwen2Tokenizer

    vocab, merges = train_bpe(specials)
    tok = Qwen2Tokenizer(vocab=vocab, merges=merges, unk_token=None, eos_token="<|im_end|>",
                         pad_token="<|endoftext|>", model_max_length=4096)
    tok.add_special_tokens({"additional_special_tokens": specials[1:]})
    if chat_template:
        tok.chat_template = chat_template
    return tok


def _vocab_size(tok) -> int:
    return (len(tok) + 63) // 64 * 64


def build_tiny_qwen2_5_vl(root: Path | str | None = None) -> Path:
    """A tiny Qwen2.5-VL folder: Qwen2_5_VLForConditionalGeneration + Qwen2_5_VLProcessor."""

    def write(tmp: Path) -> None:
        import torch
        from transformers import (
            Qwen2_5_VLConfig,
            Qwen2_5_VLForConditionalGeneration,
            Qwen2_5_VLProcessor,
            Qwen2VLImageProcessor,
            Qwen2VLVideoProcessor,
        )

        tok = _qwen_tokenizer(QWEN_SPECIALS)
        ids = {t: tok.convert_tokens_to_ids(t) for t in QWEN_SPECIALS}
        text = dict(vocab_size=_vocab_size(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                    rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [2, 3, 3]},
                    bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"],
                    pad_token_id=ids["<|endoftext|>"])
        vision = dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64,
                      patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=56,
                      fullatt_block_indexes=[1])
        config = Qwen2_5_VLConfig(text_config=text, vision_config=vision,
                                  image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
                                  vision_start_token_id=ids["<|vision_start|>"],
                                  vision_end_token_id=ids["<|vision_end|>"])
        torch.manual_seed(0)
        model = Qwen2_5_VLForConditionalGeneration(config).eval()
        model.generation_config.eos_token_id = ids["<|im_end|>"]
        model.generation_config.pad_token_id = ids["<|endoftext|>"]
        pixels = dict(min_pixels=28 * 28 * 4, max_pixels=28 * 28 * 16)
        processor = Qwen2_5_VLProcessor(image_processor=Qwen2VLImageProcessor(**pixels), tokenizer=tok,
                                        video_processor=Qwen2VLVideoProcessor(**pixels),
                                        chat_template=QWEN_VL_CHAT_TEMPLATE)
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)

    return _build(_target("tiny-qwen2.5-vl", root), write)


def build_tiny_llava_onevision(root: Path | str | None = None) -> Path:
    """A tiny LLaVA-OneVision folder: LlavaOnevisionForConditionalGeneration + LlavaOnevisionProcessor."""

    def write(tmp: Path) -> None:
        import torch
        from transformers import (
            LlavaOnevisionConfig,
            LlavaOnevisionForConditionalGeneration,
            LlavaOnevisionImageProcessor,
            LlavaOnevisionProcessor,
            LlavaOnevisionVideoProcessor,
        )

        tok = _qwen_tokenizer(LLAVA_SPECIALS)
        ids = {t: tok.convert_tokens_to_ids(t) for t in LLAVA_SPECIALS}
        tile, patch = 56, 14
        pinpoints = [[tile, tile], [tile, 2 * tile], [2 * tile, tile], [2 * tile, 2 * tile]]
        text = dict(model_type="qwen2", vocab_size=_vocab_size(tok), hidden_size=64, intermediate_size=128,
                    num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                    max_position_embeddings=4096, bos_token_id=ids["<|endoftext|>"],
                    eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"])
        vision = dict(model_type="siglip_vision_model", hidden_size=32, intermediate_size=64,
                      num_hidden_layers=2, num_attention_heads=2, image_size=tile, patch_size=patch)
        config = LlavaOnevisionConfig(text_config=text, vision_config=vision,
                                      image_token_index=ids["<image>"], video_token_index=ids["<video>"],
                                      vision_feature_select_strategy="full", vision_feature_layer=-1,
                                      image_grid_pinpoints=pinpoints, vision_aspect_ratio="anyres_max_9")
        torch.manual_seed(0)
        model = LlavaOnevisionForConditionalGeneration(config).eval()
        model.generation_config.eos_token_id = ids["<|im_end|>"]
        model.generation_config.pad_token_id = ids["<|endoftext|>"]
        size = {"height": tile, "width": tile}
        processor = LlavaOnevisionProcessor(
            image_processor=LlavaOnevisionImageProcessor(size=size, image_grid_pinpoints=pinpoints),
            tokenizer=tok, video_processor=LlavaOnevisionVideoProcessor(size=size),
            num_image_tokens=(tile // patch) ** 2, vision_feature_select_strategy="full",
            vision_aspect_ratio="anyres_max_9", chat_template=LLAVA_OV_CHAT_TEMPLATE)
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)

    return _build(_target("tiny-llava-onevision", root), write)


def build_tiny_causal_lm(root: Path | str | None = None) -> Path:
    """A tiny SmolLM2-shaped LlamaForCausalLM folder with a chat-template tokenizer."""

    def write(tmp: Path) -> None:
        import torch
        from transformers import LlamaConfig, LlamaForCausalLM

        specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
        tok = _qwen_tokenizer(specials, CHAT_TEMPLATE)
        ids = {t: tok.convert_tokens_to_ids(t) for t in specials}
        config = LlamaConfig(vocab_size=_vocab_size(tok), hidden_size=64, intermediate_size=128,
                             num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                             max_position_embeddings=4096, tie_word_embeddings=True,
                             bos_token_id=ids["<|im_start|>"], eos_token_id=ids["<|im_end|>"],
                             pad_token_id=ids["<|endoftext|>"])
        torch.manual_seed(0)
        model = LlamaForCausalLM(config).eval()
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)

    return _build(_target("tiny-causal-lm", root), write)
