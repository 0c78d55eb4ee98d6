"""Tiny random-weight models of the video-LLM families the generic backend serves (``answerers/generic.py``):
Qwen3-VL, SmolVLM2, InternVL, Gemma 3, and Idefics3 (a class vqa names nowhere: it is served only because
``AutoModelForImageTextToText`` loads it).

Each builder writes a ``save_pretrained`` folder once with the family's real model and processor classes, a
BPE tokenizer trained locally and a chat template of the family's shape, and returns its path; the
backend loads it through the same ``AutoProcessor`` + ``AutoModelForImageTextToText`` code as real weights.
Hidden sizes are 32, one or two layers: they build and answer in about a second on a CPU.
"""

from __future__ import annotations

from pathlib import Path

from pipelines.backends.tiny_vlm import (
    QWEN_SPECIALS,
    QWEN_VL_CHAT_TEMPLATE,
    _build,
    _target,
    _vocab_size,
    train_bpe,
)

FAMILIES = ("qwen3-vl", "smolvlm", "idefics3", "internvl", "gemma3")

# SmolVLM2's template shape: "User:<image>text<end_of_utterance>\nAssistant:" (Idefics3 is the same).
SMOLVLM_CHAT_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{ message['role'] | capitalize }}"
    "{% if message['content'] is string %}{{ ': ' + message['content'] }}{% else %}"
    "{% if message['content'][0]['type'] == 'image' %}{{ ':' }}{% else %}{{ ': ' }}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{ line['text'] }}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}{% endif %}"
    "<end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)

# InternVL3-hf's shape: ChatML, an image is "<IMG_CONTEXT>\n" where it stands.
INTERNVL_CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for content in message['content'] %}{% if content['type'] == 'image' %}{{ '<IMG_CONTEXT>\n' }}"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}{% endfor %}{% endif %}"
    "{{ '<|im_end|>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# Gemma 3's shape: turns, an image is "<start_of_image>" where it stands.
GEMMA3_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<start_of_turn>' + ('model' if message['role'] == 'assistant' else message['role']) + '\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for item in message['content'] %}{% if item['type'] == 'image' %}{{ '<start_of_image>' }}"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}{% endfor %}{% endif %}"
    "{{ '<end_of_turn>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)

SMALL_TEXT = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                  num_key_value_heads=1, max_position_embeddings=4096)
SMALL_VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2)


def _tokenizer(specials: list[str], eos: str, pad: str, *, bos: str | None = None, extra: dict | None = None,
               chat_template: str | None = None):
    """A Qwen2-style BPE tokenizer trained locally; ``extra`` names family tokens (``boi_token`` ...)."""
    from transformers import Qwen2Tokenizer

    vocab, merges = train_bpe(specials)
    tok = Qwen2Tokenizer(vocab=vocab, merges=merges, unk_token=None, eos_token=eos, pad_token=pad, bos_token=bos,
                         model_max_length=8192, extra_special_tokens=extra or {})
    tok.add_special_tokens({"additional_special_tokens": [s for s in specials if s not in (eos, pad, bos)]})
    if chat_template:
        tok.chat_template = chat_template
    return tok


def _save(tmp: Path, model, processor, ids: dict[str, int], eos: str, pad: str) -> None:
    model.generation_config.eos_token_id = ids[eos]
    model.generation_config.pad_token_id = ids[pad]
    model.save_pretrained(tmp)
    processor.save_pretrained(tmp)


def build_tiny_qwen3_vl(root: Path | str | None = None) -> Path:
    """Qwen3VLForConditionalGeneration + Qwen3VLProcessor (16-px patches merged 2x2: a 32-px grid)."""

    def write(tmp: Path) -> None:
        import torch
        from transformers import (
            Qwen2VLImageProcessor,
            Qwen3VLConfig,
            Qwen3VLForConditionalGeneration,
            Qwen3VLProcessor,
            Qwen3VLVideoProcessor,
        )

        tok = _tokenizer(QWEN_SPECIALS, "<|im_end|>", "<|endoftext|>")
        ids = {t: tok.convert_tokens_to_ids(t) for t in QWEN_SPECIALS}
        text = dict(SMALL_TEXT, vocab_size=_vocab_size(tok), head_dim=16,
                    rope_parameters={"rope_type": "default", "rope_theta": 5e6, "mrope_section": [2, 3, 3],
                                     "mrope_interleaved": True},
                    bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"],
                    pad_token_id=ids["<|endoftext|>"])
        vision = dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=32,
                      patch_size=16, spatial_merge_size=2, temporal_patch_size=2, num_position_embeddings=64,
                      deepstack_visual_indexes=[0])
        config = Qwen3VLConfig(text_config=text, vision_config=vision, image_token_id=ids["<|image_pad|>"],
                               video_token_id=ids["<|video_pad|>"], vision_start_token_id=ids["<|vision_start|>"],
                               vision_end_token_id=ids["<|vision_end|>"])
        torch.manual_seed(0)
        model = Qwen3VLForConditionalGeneration(config).eval()
        size = {"shortest_edge": 32 * 32 * 4, "longest_edge": 32 * 32 * 16}
        processor = Qwen3VLProcessor(
            image_processor=Qwen2VLImageProcessor(patch_size=16, merge_size=2, size=size),
            video_processor=Qwen3VLVideoProcessor(patch_size=16, merge_size=2, size=size),
            tokenizer=tok, chat_template=QWEN_VL_CHAT_TEMPLATE)
        _save(tmp, model, processor, ids, "<|im_end|>", "<|endoftext|>")

    return _build(_target("tiny-qwen3-vl", root), write)


def _idefics_like(name: str, root: Path | str | None, smolvlm: bool) -> Path:
    """SmolVLM2 (SmolVLMForConditionalGeneration) or Idefics3: a SigLIP encoder, pixel shuffle, a Llama."""

    def write(tmp: Path) -> None:
        import torch
        import transformers as tf

        prefix = "SmolVLM" if smolvlm else "Idefics3"
        grid = [f"<row_{i}_col_{j}>" for i in range(1, 7) for j in range(1, 7)]
        specials = ["<|endoftext|>", "<|im_start|>", "<end_of_utterance>", "<fake_token_around_image>",
                    "<image>", "<global-img>", *(["<video>"] if smolvlm else []), *grid]
        tok = _tokenizer(specials, "<end_of_utterance>", "<|endoftext|>", bos="<|im_start|>",
                         chat_template=SMOLVLM_CHAT_TEMPLATE)
        ids = {t: tok.convert_tokens_to_ids(t) for t in specials}
        tile, patch, scale = 32, 8, 2
        text = dict(SMALL_TEXT, model_type="llama", vocab_size=_vocab_size(tok), bos_token_id=ids["<|im_start|>"],
                    eos_token_id=ids["<end_of_utterance>"], pad_token_id=ids["<|endoftext|>"])
        vision = dict(SMALL_VISION, image_size=tile, patch_size=patch)
        config = getattr(tf, f"{prefix}Config")(text_config=text, vision_config=vision, scale_factor=scale,
                                                 image_token_id=ids["<image>"], pad_token_id=ids["<|endoftext|>"])
        torch.manual_seed(0)
        model = getattr(tf, f"{prefix}ForConditionalGeneration")(config).eval()
        images = getattr(tf, f"{prefix}ImageProcessor")(size={"longest_edge": 2 * tile},
                                                       max_image_size={"longest_edge": tile})
        seq = (tile // patch) ** 2 // scale ** 2
        if smolvlm:
            video = tf.SmolVLMVideoProcessor(size={"longest_edge": 2 * tile}, max_image_size={"longest_edge": tile})
            processor = tf.SmolVLMProcessor(image_processor=images, tokenizer=tok, video_processor=video,
                                            image_seq_len=seq, chat_template=SMOLVLM_CHAT_TEMPLATE)
        else:
            processor = tf.Idefics3Processor(image_processor=images, tokenizer=tok, image_seq_len=seq,
                                             chat_template=SMOLVLM_CHAT_TEMPLATE)
        _save(tmp, model, processor, ids, "<end_of_utterance>", "<|endoftext|>")

    return _build(_target(name, root), write)


def build_tiny_smolvlm(root: Path | str | None = None) -> Path:
    """SmolVLMForConditionalGeneration + SmolVLMProcessor (the SmolVLM2 classes; needs ``num2words``)."""
    return _idefics_like("tiny-smolvlm", root, smolvlm=True)


def build_tiny_idefics3(root: Path | str | None = None) -> Path:
    """Idefics3ForConditionalGeneration + Idefics3Processor: no adapter in vqa knows this class."""
    return _idefics_like("tiny-idefics3", root, smolvlm=False)


def build_tiny_internvl(root: Path | str | None = None) -> Path:
    """InternVLForConditionalGeneration + InternVLProcessor (InternViT, pixel shuffle, a Qwen2 LM)."""

    def write(tmp: Path) -> None:
        import torch
        from transformers import (
            GotOcr2ImageProcessor,
            InternVLConfig,
            InternVLForConditionalGeneration,
            InternVLProcessor,
            InternVLVideoProcessor,
        )

        marks = {"start_image_token": "<img>", "end_image_token": "</img>", "context_image_token": "<IMG_CONTEXT>",
                 "video_token": "<video>"}
        specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", *marks.values()]
        tok = _tokenizer(specials, "<|im_end|>", "<|endoftext|>", extra=marks, chat_template=INTERNVL_CHAT_TEMPLATE)
        ids = {t: tok.convert_tokens_to_ids(t) for t in specials}
        tile, patch = 32, 8
        text = dict(SMALL_TEXT, model_type="qwen2", vocab_size=_vocab_size(tok), bos_token_id=ids["<|endoftext|>"],
                    eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"], tie_word_embeddings=False)
        vision = dict(SMALL_VISION, image_size=[tile, tile], patch_size=[patch, patch])
        config = InternVLConfig(text_config=text, vision_config=vision, image_token_id=ids["<IMG_CONTEXT>"],
                                downsample_ratio=0.5, vision_feature_layer=-1, tie_word_embeddings=False)
        torch.manual_seed(0)
        model = InternVLForConditionalGeneration(config).eval()
        size = {"height": tile, "width": tile}
        processor = InternVLProcessor(
            image_processor=GotOcr2ImageProcessor(size=size, crop_to_patches=True, max_patches=4),
            video_processor=InternVLVideoProcessor(size=size), tokenizer=tok,
            image_seq_length=(tile // patch) ** 2 // 4, chat_template=INTERNVL_CHAT_TEMPLATE)
        _save(tmp, model, processor, ids, "<|im_end|>", "<|endoftext|>")

    return _build(_target("tiny-internvl", root), write)


def build_tiny_gemma3(root: Path | str | None = None) -> Path:
    """Gemma3ForConditionalGeneration + Gemma3Processor (a SigLIP encoder pooled to a few tokens)."""

    def write(tmp: Path) -> None:
        import torch
        from transformers import (
            Gemma3Config,
            Gemma3ForConditionalGeneration,
            Gemma3ImageProcessor,
            Gemma3Processor,
        )

        marks = {"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>", "image_token": "<image_soft_token>"}
        specials = ["<pad>", "<bos>", "<eos>", "<start_of_turn>", "<end_of_turn>", *marks.values()]
        tok = _tokenizer(specials, "<end_of_turn>", "<pad>", bos="<bos>", extra=marks,
                         chat_template=GEMMA3_CHAT_TEMPLATE)
        ids = {t: tok.convert_tokens_to_ids(t) for t in specials}
        tile, patch, tokens = 32, 8, 4
        text = dict(SMALL_TEXT, vocab_size=_vocab_size(tok), head_dim=16, sliding_window=64,
                    bos_token_id=ids["<bos>"], eos_token_id=ids["<end_of_turn>"], pad_token_id=ids["<pad>"])
        vision = dict(SMALL_VISION, model_type="siglip_vision_model", image_size=tile, patch_size=patch)
        config = Gemma3Config(text_config=text, vision_config=vision, mm_tokens_per_image=tokens,
                              boi_token_index=ids["<start_of_image>"], eoi_token_index=ids["<end_of_image>"],
                              image_token_index=ids["<image_soft_token>"])
        torch.manual_seed(2)  # seed 0's untrained model answers only with end-of-turn: no text to check
        model = Gemma3ForConditionalGeneration(config).eval()
        processor = Gemma3Processor(image_processor=Gemma3ImageProcessor(size={"height": tile, "width": tile}),
                                    tokenizer=tok, image_seq_length=tokens, chat_template=GEMMA3_CHAT_TEMPLATE)
        _save(tmp, model, processor, ids, "<end_of_turn>", "<pad>")

    return _build(_target("tiny-gemma3", root), write)


BUILDERS = {"qwen3-vl": build_tiny_qwen3_vl, "smolvlm": build_tiny_smolvlm, "idefics3": build_tiny_idefics3,
            "internvl": build_tiny_internvl, "gemma3": build_tiny_gemma3}


def build(family: str, root: Path | str | None = None) -> Path:
    return BUILDERS[family](root)
