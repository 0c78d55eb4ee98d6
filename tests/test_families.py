"""The generic video-LLM backend (answerers/generic.py) with a tiny random-weights model of each family, built
with the family's real classes and processor and loaded through AutoProcessor + AutoModelForImageTextToText
as real weights are; and the vllm: backend where vLLM is not installed."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from pipelines.answerers.base import AnswerRequest, ContextLine, load_answerer
from pipelines.errors import ModelError
from tests.conftest import jsonl

FAMILIES = ["qwen3-vl", "smolvlm", "internvl", "gemma3", "idefics3"]
# the answerer spec each family is asked through: its family backend, or a bare folder (idefics3: a class
# no adapter in vqa names, found by model_type and served by the generic backend)
SPEC = {"qwen3-vl": "qwen3-vl:{}", "smolvlm": "smolvlm:{}", "internvl": "internvl:{}", "gemma3": "gemma3:{}",
        "idefics3": "{}"}
COLOURS = [(230, 20, 20), (20, 230, 20), (20, 20, 230)]
TIMES = [1.5, 4.0, 9.25]


@pytest.fixture(scope="session")
def family_dirs(models_home):
    from pipelines.backends.tiny_families import build

    return lambda family: build(family, models_home)


class Recorder:
    """The model's own processor, with each call's arguments and outputs kept for inspection."""

    def __init__(self, inner):
        self.inner, self.calls = inner, []

    def __call__(self, **kw):
        out = self.inner(**kw)
        self.calls.append((kw, out))
        return out

    def __getattr__(self, name):
        return getattr(self.inner, name)


def request(**kw) -> AnswerRequest:
    frames = [Image.new("RGB", (320, 180), c) for c in COLOURS]
    base = dict(question="Which colour comes first?", options=["red", "green", "blue"], frames=frames,
                timestamps=list(TIMES), context=[ContextLine(2.0, 3.0, "speech", "the red one is first")],
                max_new_tokens=4)
    base.update(kw)
    return AnswerRequest(**base)


def load(family, family_dirs, **kw):
    ans = load_answerer(SPEC[family].format(family_dirs(family)), device="cpu", **kw)
    ans.processor = Recorder(ans.processor)
    return ans


@pytest.mark.parametrize("family", FAMILIES)
def test_family_answers_with_frames_in_time_order_and_budgets(family, family_dirs):
    from pipelines.answerers.generic import GenericVLM

    ans = load(family, family_dirs)
    assert isinstance(ans, GenericVLM) and ans.random_weights is True
    assert ans.family.name == ("generic" if family == "idefics3" else family)
    budgets = [64 * 64 * 3, 64 * 64, 32 * 32 * 2]
    out = ans.answer(request(pixel_budgets=budgets))
    assert out.generated_tokens > 0 and out.frames_seen == TIMES
    # the rendered prompt: each frame's label with its time, in time order, each followed by its image
    labels = [f"Frame {i + 1} at {t:.1f} s:" for i, t in enumerate(TIMES)]
    at = [out.prompt.index(label) for label in labels]
    assert at == sorted(at)
    assert "[2.0-3.0 s] Speech: the red one is first" in out.prompt and "A. red" in out.prompt
    # the processor got these frames, in time order (their colours), at the sizes the answer reports
    kw, inputs = ans.processor.calls[-1]
    images = kw["images"]
    assert [tuple(int(c) for c in np.asarray(im).reshape(-1, 3).mean(0).round()) for im in images] == COLOURS
    assert [im.size for im in images] == out.frame_sizes
    areas = [w * h for w, h in out.frame_sizes]
    assert all(a <= b for a, b in zip(areas, budgets)) and areas[0] > areas[1] > areas[2]
    if family == "qwen3-vl":  # kept as given, on the 32-px grid: the processor's patch grid says so
        grid = inputs["image_grid_thw"].tolist()
        assert [(w // 16, h // 16) for w, h in out.frame_sizes] == [(g[2], g[1]) for g in grid]
    elif family in ("smolvlm", "internvl"):  # one tile per frame when there are several
        n = inputs["pixel_values"].shape[1 if family == "smolvlm" else 0]
        assert n == len(TIMES)
    again = ans.answer(request(pixel_budgets=budgets))
    assert (again.text, again.prompt) == (out.text, out.prompt)  # greedy, seeded


@pytest.mark.parametrize("which", ["qwen2.5-vl", "llava-onevision"])
def test_the_older_families_through_the_generic_backend(which, models_home):
    from pipelines.backends import tiny_vlm

    build = tiny_vlm.build_tiny_qwen2_5_vl if which == "qwen2.5-vl" else tiny_vlm.build_tiny_llava_onevision
    ans = load_answerer(f"generic:{build(models_home)}", device="cpu")
    assert ans.family.name == ("qwen-vl" if which == "qwen2.5-vl" else "llava-ov")
    budgets = [28 * 28 * 12, 28 * 28 * 4, 28 * 28 * 2]
    out = ans.answer(request(pixel_budgets=budgets))
    assert out.generated_tokens > 0
    areas = [w * h for w, h in out.frame_sizes]
    assert areas[0] > areas[1] > areas[2] and all(a <= b for a, b in zip(areas, budgets))
    if which == "qwen2.5-vl":
        assert all(w % 28 == 0 and h % 28 == 0 for w, h in out.frame_sizes)


def test_bare_folders_dispatch_by_model_type(family_dirs):
    from pipelines.answerers.base import _MODEL_TYPES

    qwen3 = load_answerer(str(family_dirs("qwen3-vl")))
    assert (qwen3.family.name, qwen3.name) == ("qwen3-vl", f"qwen3-vl:{family_dirs('qwen3-vl')}")
    unknown = load_answerer(str(family_dirs("idefics3")))  # vqa has no adapter and no mapping for it
    assert "idefics3" not in _MODEL_TYPES and type(unknown.model).__name__ == "Idefics3ForConditionalGeneration"
    assert (unknown.family.name, unknown.name) == ("generic", f"generic:{family_dirs('idefics3')}")


def test_captions_are_batched_in_one_generate_call(family_dirs):
    ans = load("smolvlm", family_dirs)
    frames = [Image.new("RGB", (160, 90), c) for c in COLOURS]
    first = ans.caption_frames(frames, "Describe this scene in one short sentence.", max_new_tokens=5)
    assert len(ans.processor.calls) == 1
    kw, inputs = ans.processor.calls[0]
    assert len(kw["text"]) == 3 and [len(x) for x in kw["images"]] == [1, 1, 1]
    assert inputs["input_ids"].shape[0] == 3
    assert len(first) == 3 and all(isinstance(c, str) for c in first)
    assert ans.caption_frames(frames, "Describe this scene in one short sentence.", max_new_tokens=5) == first


def test_a_bare_video_llm_folder_is_a_captioner(family_dirs):
    from pipelines.stages.caption import VLMCaptioner, load_captioner

    cap = load_captioner(str(family_dirs("qwen3-vl")), device="cpu")
    assert isinstance(cap, VLMCaptioner) and cap.answerer.family.name == "qwen3-vl" and cap.random_weights
    frames = [np.full((90, 160, 3), c, dtype=np.uint8) for c in COLOURS]
    captions = cap.caption(frames)
    assert len(captions) == 3 and all(isinstance(c, str) and c for c in captions)


@pytest.mark.slow
def test_every_family_answers_and_captions_through_the_cli(cli, silent_scenes_video, family_dirs):
    """`vqa index --captioner generic:<folder>` and `vqa ask --answerer <family>:<folder>` for each family."""
    for family in FAMILIES:
        folder = family_dirs(family)
        res = cli("index", str(silent_scenes_video), "--profile", "tiny", "--captioner", f"generic:{folder}",
                  "--jsonl")
        assert res.exit_code == 0, (family, res.stderr)
        ran = jsonl(res.stdout)[0]["stages_run"]
        assert ran == ["captions"] if family != FAMILIES[0] else "captions" in ran  # only what the model changes
        scenes = json.loads(cli("scenes", str(silent_scenes_video), "--json").stdout)
        assert len(scenes["scenes"]) == 3 and scenes["captions_random_weights"] is True
        assert all(isinstance(s["caption"], str) for s in scenes["scenes"])
        assert any(s["caption"].strip() for s in scenes["scenes"]), (family, scenes["scenes"])

        res = cli("ask", str(silent_scenes_video), "What colour is shown?", "--profile", "tiny", "--frames", "3",
                  "--zoom-rounds", "0", "--max-new-tokens", "4", "--answerer", SPEC[family].format(folder), "--json")
        assert res.exit_code == 0, (family, res.stderr)
        out = json.loads(res.stdout)
        kfs = [k["t"] for k in out["keyframes"]]
        assert kfs == sorted(kfs) and len(kfs) == 3
        assert isinstance(out["answer"]["model_text"], str)
        model = out["settings"]["models"]["answerer"]
        assert model["name"] == SPEC[family].format(folder) and model["fingerprint"]
        assert out["settings"]["models"]["answerer"]["random_weights"] is True


def test_models_vqa_cannot_drive_fail_in_one_line(tmp_path, family_dirs):
    from pipelines.backends.tiny_vlm import build_tiny_causal_lm

    lm = build_tiny_causal_lm(tmp_path)
    with pytest.raises(ModelError, match="AutoModelForImageTextToText") as e:
        load_answerer(f"generic:{lm}")
    assert "\n" not in str(e.value)
    bare = shutil.copytree(family_dirs("smolvlm"), tmp_path / "no-template")
    for name in ("chat_template.jinja", "chat_template.json"):
        (bare / name).unlink(missing_ok=True)
    cfg = json.loads((bare / "processor_config.json").read_text()) if (bare / "processor_config.json").exists() else None
    if cfg is not None and "chat_template" in cfg:
        del cfg["chat_template"]
        (bare / "processor_config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelError, match="no chat template"):
        load_answerer(f"generic:{bare}")


def test_vllm_without_vllm_says_how_to_install(cli, silent_scenes_video, family_dirs):
    import importlib.util

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vLLM is installed here")
    with pytest.raises(ModelError, match=r"pip install 'vqa\[vllm\]'"):
        load_answerer(f"vllm:{family_dirs('qwen3-vl')}")
    res = cli("ask", str(silent_scenes_video), "What is shown?", "--profile", "tiny",
              "--answerer", f"vllm:{family_dirs('qwen3-vl')}")
    assert res.exit_code != 0
    err = res.stderr.strip()
    assert len(err.splitlines()) == 1 and "pip install 'vqa[vllm]'" in err and "Traceback" not in err


@pytest.mark.parametrize("family", ["qwen3-vl", "smolvlm"])
def test_vllm_gets_the_prompt_frames_and_budgets_of_the_transformers_path(family, family_dirs):
    """The vLLM backend's request, built without the engine, against what the transformers path sent."""
    from pipelines.answerers.vllm_backend import VLLMAnswerer

    hf = load(family, family_dirs)
    req = request(pixel_budgets=[64 * 64 * 3, 64 * 64, 32 * 32 * 2])
    out = hf.answer(req)
    kw, _ = hf.processor.calls[-1]
    engine_free = VLLMAnswerer.__new__(VLLMAnswerer)
    engine_free.processor, engine_free.family, engine_free.max_images = hf.processor.inner, hf.family, 8
    conv, switches, (context, images, prompt) = engine_free.conversation(req)
    assert prompt == out.prompt and context == out.context_used
    assert [im.size for im in images] == [im.size for im in kw["images"]] == out.frame_sizes
    parts = conv[0]["content"]
    assert [p["text"] for p in parts if p["type"] == "text"][:3] == [f"Frame {i + 1} at {t:.1f} s:"
                                                                     for i, t in enumerate(TIMES)]
    assert [p["image_pil"].size for p in parts if p["type"] == "image_pil"] == out.frame_sizes
    if family == "qwen3-vl":  # the widened pixel range, as vLLM passes it to the processor
        size = kw["images_kwargs"]["size"]
        assert switches == {"min_pixels": size["shortest_edge"], "max_pixels": size["longest_edge"]}
    else:
        assert switches == {"do_image_splitting": False}
    engine_free.max_images = 2
    with pytest.raises(ModelError, match="VQA_VLLM_MAX_IMAGES"):
        engine_free.conversation(req)


def test_vllm_processor_switches():
    from pipelines.answerers.vllm_backend import flat_kwargs

    assert flat_kwargs({"images_kwargs": {"size": {"shortest_edge": 1024, "longest_edge": 9000}}}) == \
        {"min_pixels": 1024, "max_pixels": 9000}
    assert flat_kwargs({"images_kwargs": {"do_image_splitting": False}}) == {"do_image_splitting": False}
    assert flat_kwargs({}) == {}
