"""Tiny models built locally with the real classes and random (seeded) weights.

They let the ``tiny`` profile, the demo and the tests run with no model hub. Each builder writes a
folder/checkpoint once under the model cache and returns its path; the product then loads it through
the same code that loads real models (open_clip config JSON + checkpoint; transformers save_pretrained
folders). Their answers mean nothing: everything they produce is labelled as random weights.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from pipelines.config import models_dir

TINY_CLIP_CONFIG = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "head_width": 32, "patch_size": 16},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}

# A small corpus for training tokenizers locally: words people use about videos.
CORPUS = """a photo of a person walking in the street with a red car and a blue bus
the man in a black hat opens the door of the house and the dog runs outside
a woman is cooking food in the kitchen while talking on the phone
children play football on a green field under a cloudy sky
text on screen shows the score and the time of the game
a purple star a red circle a blue square a green triangle a yellow heart an orange cross
the narrator says the ferry leaves at seven o'clock from the harbor gate
what happens in the video when does the cat appear how many people are there
a scene with trees mountains water boats buildings people animals and vehicles
""".split("\n")


def _atomic_dir(target: Path) -> Path:
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    if tmp.exists():
        import shutil

        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    return tmp


def _publish(tmp: Path, target: Path) -> None:
    try:
        os.rename(tmp, target)
    except OSError:  # another process published first: keep theirs
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)


def tiny_clip(root: Path | None = None) -> tuple[Path, Path]:
    """(config JSON, checkpoint) of a tiny open_clip model; built once."""
    target = (root or models_dir()) / "tiny-clip"
    cfg, ckpt = target / "tiny-clip.json", target / "tiny-clip.pt"
    if ckpt.exists():
        return cfg, ckpt
    import open_clip
    import torch

    tmp = _atomic_dir(target)
    (tmp / "tiny-clip.json").write_text(json.dumps(TINY_CLIP_CONFIG, indent=2))
    torch.manual_seed(0)
    model = open_clip.CLIP(**TINY_CLIP_CONFIG)
    torch.save(model.state_dict(), tmp / "tiny-clip.pt")
    _publish(tmp, target)
    return cfg, ckpt


def _wordpiece_vocab(extra: list[str]) -> dict[str, int]:
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=400, special_tokens=extra, show_progress=False)
    tok.train_from_iterator(CORPUS, trainer=trainer)
    return tok.get_vocab()


def tiny_blip(root: Path | None = None) -> Path:
    """A tiny BLIP captioner folder (BlipForConditionalGeneration + BlipProcessor); built once."""
    target = (root or models_dir()) / "tiny-blip"
    if (target / "config.json").exists():
        return target
    from pipelines.backends.util import quiet_hub

    quiet_hub()
    import torch
    from transformers import (
        BertTokenizerFast,
        BlipConfig,
        BlipForConditionalGeneration,
        BlipImageProcessor,
        BlipProcessor,
    )

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]"]
    vocab = _wordpiece_vocab(specials)
    tokenizer = BertTokenizerFast(vocab=vocab, do_lower_case=True, model_max_length=32,
                                  bos_token="[DEC]", additional_special_tokens=["[DEC]"])
    text_cfg = dict(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                    intermediate_size=64, max_position_embeddings=64, pad_token_id=vocab["[PAD]"],
                    bos_token_id=vocab["[DEC]"], sep_token_id=vocab["[SEP]"], eos_token_id=vocab["[SEP]"])
    vision_cfg = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                      image_size=64, patch_size=16, projection_dim=32)
    config = BlipConfig(text_config=text_cfg, vision_config=vision_cfg, projection_dim=32)
    torch.manual_seed(0)
    model = BlipForConditionalGeneration(config).eval()
    model.generation_config.max_new_tokens = 12
    image_processor = BlipImageProcessor(size={"height": 64, "width": 64})
    processor = BlipProcessor(image_processor=image_processor, tokenizer=tokenizer)
    tmp = _atomic_dir(target)
    model.save_pretrained(tmp)
    processor.save_pretrained(tmp)
    _publish(tmp, target)
    return target
