"""The packaged models on ctranslate2 (``pipelines.backends.ct2``): converted once through the product's own
conversion code, they answer (and embed) as the transformers runtime does, and the offline ask path no longer
imports torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pipelines.answerers.base import AnswerRequest, load_answerer  # noqa: E402
from pipelines.answerers.textlm import SYSTEM, Ct2LM, TextLMAnswerer  # noqa: E402
from pipelines.backends import ct2  # noqa: E402
from tests.test_textlm import CONTEXT, MENU, TIMES, ask  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def trigrams_repeat(ids: list[int]) -> bool:
    grams = [tuple(ids[i:i + 3]) for i in range(len(ids) - 2)]
    return len(grams) != len(set(grams))


# --- a tiny LlamaForCausalLM built with the real classes, on both runtimes ----------------------------

@pytest.fixture(scope="module")
def tiny_pair(tmp_path_factory):
    """(transformers answerer, ct2 answerer, ct2 folder) of one tiny random Llama."""
    from pipelines.backends.tiny_vlm import build_tiny_causal_lm

    root = tmp_path_factory.mktemp("tiny-ct2")
    folder = build_tiny_causal_lm(root)
    hf = load_answerer(f"textlm:{folder}")
    before = ct2.CONVERSIONS
    target = ct2.converted(folder, root / "tiny-ct2", source_id="tiny", quantization="float32")
    assert ct2.CONVERSIONS == before + 1
    fast = TextLMAnswerer(str(target), name="tiny-ct2", runtime=Ct2LM(str(target), device="cpu",
                                                                       compute_type="float32"), where=str(target))
    return hf, fast, target


def test_chat_prompt_is_apply_chat_templates(tiny_pair):
    hf, fast, _ = tiny_pair
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Question: who?\nNarrator: x"}]
    assert fast.runtime.prompt(messages) == hf.runtime.tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=False)
    text = fast._prompt("Text on screen: Next stop: Riverside Station\n\nQuestion: What is the next stop?")
    assert fast._ids(text) == hf._ids(text) and "<|im_start|>system" in text


@pytest.mark.parametrize("question,options", [
    ("What will the chef bake?", ["pizza", "bread", "a cake"]),
    ("What is the next stop?", ["Central Park", "Harbor Gate", "Airport", "Riverside Station"]),
    ("Who is the chef?", ["Antonio", "Lucia"]),
])
def test_tiny_options_choose_the_same(tiny_pair, question, options):
    hf, fast, _ = tiny_pair
    a, b = ask(hf, question, options), ask(fast, question, options)
    assert (b.choice, b.text) == (a.choice, a.text)
    np.testing.assert_allclose(fast.option_scores("Q", options), hf.option_scores("Q", options), atol=1e-4)
    assert b.confidence == pytest.approx(a.confidence, abs=1e-3)


@pytest.mark.parametrize("question,max_new", [
    ("What is the next stop?", 12), ("What is the chef's name?", 24), ("What happens in the class?", 40)])
def test_tiny_generation_is_the_same(tiny_pair, question, max_new):
    hf, fast, _ = tiny_pair
    a, b = ask(hf, question, max_new_tokens=max_new), ask(fast, question, max_new_tokens=max_new)
    assert (b.model_text, b.text, b.generated_tokens, b.cited) == (a.model_text, a.text, a.generated_tokens, a.cited)
    assert b.confidence == pytest.approx(a.confidence, abs=1e-3)


def test_no_repeat_rule_holds_under_ct2(tiny_pair):
    """A random model loops at once: plain greedy ctranslate2 repeats its own 3-grams; the runtime never does,
    and its tokens are transformers' (``textlm._no_repeat``, a logits processor) token for token. (No stop
    string here: the tiny model's first token is a newline, which ends an answer.)"""
    import torch

    from pipelines.answerers.textlm import _no_repeat

    hf, fast, _ = tiny_pair
    prompt = fast._ids(fast._prompt("Narrator: the boat the boat the boat\n\nQuestion: What?"))
    lm = fast.runtime.lm
    plain = lm.generator.generate_batch([lm.tokens(prompt)], max_length=60, sampling_topk=1,
                                        include_prompt_in_result=False)[0].sequences_ids[0]
    ruled = lm.generate(prompt, 60, stop_text=None)
    assert len(ruled) == 60 and trigrams_repeat(plain)  # the rule has something to do here ...
    assert not trigrams_repeat(ruled)  # ... it holds ...
    ids = torch.tensor([prompt])
    with torch.inference_mode():
        out = hf.runtime.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                        max_new_tokens=60, logits_processor=_no_repeat(len(prompt)),
                                        pad_token_id=hf.runtime.tokenizer.pad_token_id)
    assert ruled == out[0, len(prompt):].tolist()  # ... and it is transformers' rule
    # with the stop string, the answer ends on its first line, as on transformers
    assert lm.generate(prompt, 60) == hf.runtime.generate(prompt, 60, seed=0)


def test_converted_once(tiny_pair, tmp_path):
    hf, _, _ = tiny_pair
    source, target = Path(hf.runtime.model.name_or_path), tmp_path / "converted"
    before = ct2.CONVERSIONS
    assert ct2.converted(source, target, source_id="tiny", quantization="float32") == target
    assert json.loads((target / ct2.MARKER).read_text()) == {"source": "tiny", "quantization": "float32",
                                                            "format": ct2.FORMAT}
    mtime = (target / "model.bin").stat().st_mtime_ns
    assert ct2.converted(source, target, source_id="tiny", quantization="float32") == target
    assert ct2.CONVERSIONS == before + 1 and (target / "model.bin").stat().st_mtime_ns == mtime  # not again
    assert [p.name for p in tmp_path.iterdir()] == ["converted"]  # built aside, renamed into place
    # another source (or another quantization) is converted again, into place
    ct2.converted(source, target, source_id="tiny-2", quantization="int8")
    assert ct2.CONVERSIONS == before + 2 and json.loads((target / ct2.MARKER).read_text())["source"] == "tiny-2"
    assert [p.name for p in tmp_path.iterdir()] == ["converted"]


# --- the packaged models -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def smollm2_ct2():
    return load_answerer("smollm2-packaged")


@pytest.mark.slow
def test_packaged_smollm2_runs_on_ct2_and_converts_once(smollm2_ct2):
    from pipelines.answerers import textlm

    assert isinstance(smollm2_ct2.runtime, Ct2LM) and smollm2_ct2.random_weights is False
    folder = textlm.smollm2_ct2_folder()
    assert json.loads((folder / ct2.MARKER).read_text())["quantization"] == textlm.SMOLLM2_CT2_QUANTIZATION
    before, gguf_before = ct2.CONVERSIONS, textlm.CONVERSIONS
    again = load_answerer("smollm2-packaged")
    assert (ct2.CONVERSIONS, textlm.CONVERSIONS) == (before, gguf_before)  # a second load converts nothing
    assert again.fingerprint == smollm2_ct2.fingerprint


@pytest.mark.slow
def test_packaged_smollm2_answers_as_on_transformers(smollm2_ct2, monkeypatch):
    """The real SmolLM2: on ctranslate2 (float16 weights, float32 compute) and on transformers (float32) it
    gives the same answers, options and sentences."""
    monkeypatch.setenv("VQA_TEXTLM_RUNTIME", "transformers")
    hf = load_answerer("smollm2-packaged")
    assert type(hf.runtime).__name__ == "TransformersLM"
    prompt = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Question: Who?"}]
    assert smollm2_ct2.runtime.prompt(prompt) == hf.runtime.prompt(prompt)
    for question, options in [("What is the next stop?", []), ("What happens in the cooking class?", []),
                              ("What is the man wearing?", ["a red jacket", "a blue suit", "a white apron"])]:
        a, b = ask(hf, question, options, max_new_tokens=48), ask(smollm2_ct2, question, options, max_new_tokens=48)
        assert (b.text, b.choice, b.model_text, b.generated_tokens) == (a.text, a.choice, a.model_text,
                                                                        a.generated_tokens)
        assert b.confidence == pytest.approx(a.confidence, abs=5e-3)  # (float16 weights, float32 compute)
    req = AnswerRequest(question="What do you press for an operator?", options=[], frames=[], timestamps=[],
                        context=list(MENU), max_new_tokens=32)
    assert smollm2_ct2.answer(req).text == hf.answer(req).text == "zero"
    assert ask(smollm2_ct2, "What is the chef's name?").cited == ask(hf, "What is the chef's name?").cited
    assert TIMES and CONTEXT  # (the same fixtures as test_textlm)


def test_packaged_minilm_vectors_are_transformers_own(monkeypatch):
    """MiniLM on ctranslate2 gives the transformers vectors (cosine >= 0.9999 per row on real sentences), so it
    keeps the fingerprint the index stored its text vectors under."""
    from pipelines.stages.textembed import load_text_embedder

    texts = ["The ferry to the island leaves at noon.", "Gate code 4817", "a", "What is the gate code?",
             "This is the main gate where the fishing boats come in every morning. " * 40,  # truncated at 256
             "Ünïcödé — and punctuation!", "Fish market closes at 11:30", "On the left you can see the lighthouse."]
    fast = load_text_embedder("packaged:all-MiniLM-L6-v2", device="cpu", batch_size=3)
    assert type(fast.model).__name__ == "_Ct2MeanPooled" and fast.dim == 384
    monkeypatch.setenv("VQA_TEXTEMBED_RUNTIME", "transformers")
    slow = load_text_embedder("packaged:all-MiniLM-L6-v2", device="cpu", batch_size=3)
    assert type(slow.model).__name__ == "_MeanPooled"
    a, b = fast.embed_texts(texts), slow.embed_texts(texts)
    assert a.shape == b.shape == (len(texts), 384) and a.dtype == np.float32
    assert ((a * b).sum(1) >= 0.9999).all()
    assert fast.fingerprint == slow.fingerprint
    before = ct2.CONVERSIONS
    monkeypatch.delenv("VQA_TEXTEMBED_RUNTIME")
    load_text_embedder("packaged:all-MiniLM-L6-v2", device="cpu")
    assert ct2.CONVERSIONS == before  # converted once


@pytest.mark.slow
def test_offline_ask_does_not_import_torch(tmp_path, models_home):
    """`vqa ask --profile offline` in a fresh process: the answer, and neither torch nor transformers loaded."""
    env = {**os.environ, "VQA_HOME": str(tmp_path / "home"), "VQA_MODELS": str(models_home)}
    db, demo = tmp_path / "vqa.db", ROOT / "assets" / "demo.mp4"
    run = "import sys; from vqa_cli.app import main; sys.argv = ['vqa', *sys.argv[1:]]\ntry: main()\nexcept SystemExit as e: code = e.code\nelse: code = 0\n"
    index = subprocess.run([sys.executable, "-c", run, "index", str(demo), "--profile", "offline", "--db", str(db)],
                           capture_output=True, text=True, env=env, cwd=ROOT)
    assert index.returncode == 0, index.stderr[-2000:]
    warm = subprocess.run([sys.executable, "-c", run, "ask", str(demo), "What is the gate code?", "--profile",
                           "offline", "--db", str(db), "--json"], capture_output=True, text=True, env=env, cwd=ROOT)
    assert warm.returncode == 0, warm.stderr[-2000:]  # (converts the packaged models if none did yet)
    check = run + ("import json; print('MODULES ' + json.dumps({m: m in sys.modules for m in "
                   "('torch', 'transformers', 'ctranslate2')}), file=sys.stderr)\nsys.exit(code)\n")
    out = subprocess.run([sys.executable, "-c", check, "ask", str(demo), "What is the gate code?", "--profile",
                          "offline", "--db", str(db), "--json"], capture_output=True, text=True, env=env, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "4817" in json.loads(out.stdout)["answer"]["text"]
    modules = json.loads(out.stderr.split("MODULES ", 1)[1].splitlines()[0])
    assert modules == {"torch": False, "transformers": False, "ctranslate2": True}
