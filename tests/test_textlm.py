"""Text-only answerer: pure context core, a tiny real causal LM, and the packaged SmolLM2-135M-Instruct."""

from __future__ import annotations

import os
import re

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pipelines.answerers.base import AnswerRequest, ContextLine, load_answerer  # noqa: E402
from pipelines.answerers.textlm import first_answer_line, relevant_lines, user_message  # noqa: E402
from pipelines.backends.loads import LOADS  # noqa: E402

# A cooking show with a stray bus ride: what is said, what is written, and what is seen.
CONTEXT = [
    ContextLine(0.0, 3.0, "speech", "Good morning everyone, and welcome to the cooking class."),
    ContextLine(3.0, 6.0, "speech", "Today our chef Antonio will show you how to bake bread."),
    ContextLine(6.0, 9.0, "screen", "Next stop: Riverside Station"),
    ContextLine(9.0, 13.0, "speech", "First we mix the flour with warm water and a pinch of salt."),
    ContextLine(13.0, 16.0, "screen", "Oven temperature: two hundred degrees"),
    ContextLine(16.0, 20.0, "screen", "Recipe by Grandma Lucia"),
    ContextLine(0.0, 20.0, "caption", "a man in a white apron kneads dough on a wooden table"),
]
TIMES = [2.0, 7.5, 14.0]


def ask(ans, question, options=(), **kw):
    return ans.answer(AnswerRequest(question=question, options=list(options), frames=[], timestamps=list(TIMES),
                                    context=list(CONTEXT), max_new_tokens=kw.pop("max_new_tokens", 24), **kw))


# --- pure core ----------------------------------------------------------------------------------------

def test_relevant_lines_picks_overlap_in_time_order():
    got = relevant_lines(CONTEXT, "What temperature is the oven? Who is the chef?", 2)
    assert [c.start for c in got] == [3.0, 13.0]
    assert relevant_lines(CONTEXT, "zzz", 2) == CONTEXT[:2]
    assert relevant_lines([], "anything", 3) == []


def test_the_model_reads_no_timestamps():
    msg = user_message("What is the next stop?", CONTEXT)
    assert "Narrator: Today our chef Antonio will show you how to bake bread." in msg
    assert "Text on screen: Next stop: Riverside Station" in msg
    assert "Scene: a man in a white apron" in msg
    assert not re.search(r"\d", msg)  # none of the lines' times (nor any other number) leak in
    assert "No transcript" in user_message("Q?", [])


def test_first_answer_line():
    assert first_answer_line("\n  The ferry leaves at seven.\nThe inspector is Maria.") == "The ferry leaves at seven."
    assert first_answer_line("   ") == ""


# --- a tiny random causal LM through the real loading and scoring code --------------------------------

@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    from pipelines.backends.tiny_vlm import build_tiny_causal_lm

    return load_answerer(f"textlm:{build_tiny_causal_lm(tmp_path_factory.mktemp('tiny-lm'))}")


def test_tiny_lm_multiple_choice_by_likelihood(tiny_lm):
    options = ["pizza", "bread", "a cake"]
    first, again = ask(tiny_lm, "What will the chef bake?", options), ask(tiny_lm, "What will the chef bake?", options)
    assert tiny_lm.random_weights is True
    assert first.choice in "ABC" and first.choice_text == options["ABC".index(first.choice)]
    assert first.text == f"{first.choice}. {first.choice_text}"
    assert (first.text, first.cited) == (again.text, again.cited)
    assert first.prompt_template.startswith("textlm")
    assert not re.search(r"\d+\.\d", first.prompt)
    assert first.frames_seen == []  # frames are not read ...
    scores = tiny_lm.option_scores("Q", options)
    assert len(scores) == 3 and len(set(scores)) == 3


def test_tiny_lm_open_question_generates(tiny_lm):
    out = ask(tiny_lm, "What is the next stop?", max_new_tokens=5)
    assert out.generated_tokens > 0 and out.choice is None
    assert [c.text for c in out.context_used] == ["Next stop: Riverside Station"] + \
        [c.text for c in out.context_used if c.text != "Next stop: Riverside Station"]
    # ... but cited: lines sharing words with the answer, else the frames (available evidence)
    assert out.cited and set(out.cited) <= {c.start for c in CONTEXT} | set(TIMES)


# --- the packaged SmolLM2-135M-Instruct (real weights) -------------------------------------------------

@pytest.fixture(scope="module")
def smollm2():
    from pipelines.answerers import textlm
    from pipelines.config import models_dir

    was_converted = (models_dir() / textlm.SMOLLM2_FOLDER / "vqa-source.json").is_file()
    before = textlm.CONVERSIONS
    ans = load_answerer("smollm2-packaged")
    return ans, textlm.CONVERSIONS - before, was_converted


@pytest.mark.slow
def test_smollm2_conversion_is_cached(smollm2):
    from pipelines.answerers import textlm
    from pipelines.config import models_dir

    first, converted, was_converted = smollm2
    assert converted == (0 if was_converted else 1)
    folder = models_dir() / textlm.SMOLLM2_FOLDER
    assert (folder / "config.json").is_file() and (folder / "tokenizer.json").is_file()
    mtime = (folder / "model.safetensors").stat().st_mtime_ns
    loads, before = LOADS["answerer:smollm2-packaged"], textlm.CONVERSIONS
    second = load_answerer("smollm2-packaged")
    assert textlm.CONVERSIONS == before  # loaded from the converted folder: no second conversion
    assert (folder / "model.safetensors").stat().st_mtime_ns == mtime
    assert LOADS["answerer:smollm2-packaged"] == loads + 1
    assert second.fingerprint == first.fingerprint and second.random_weights is False
    # it runs on ctranslate2, converted once from that folder into one beside it (pipelines.backends.ct2)
    from pipelines.backends import ct2

    ct2_folder, ct2_before = textlm.smollm2_ct2_folder(), ct2.CONVERSIONS
    assert ct2_folder.parent == folder.parent and (ct2_folder / ct2.MARKER).is_file()
    assert type(second.runtime).__name__ == "Ct2LM"
    load_answerer("smollm2-packaged")
    assert ct2.CONVERSIONS == ct2_before


@pytest.mark.slow
def test_smollm2_answers_what_was_said(smollm2):
    ans = smollm2[0]
    out = ask(ans, "What is the chef's name?")
    assert "Antonio" in out.text
    assert 3.0 in out.cited
    assert ask(ans, "What is the chef's name?").text == out.text  # greedy: same question, same answer


@pytest.mark.slow
def test_smollm2_answers_what_is_written_on_screen(smollm2):
    ans = smollm2[0]
    out = ask(ans, "What is the next stop?")
    assert "Riverside" in out.text
    assert 6.0 in out.cited
    assert "Text on screen: Next stop: Riverside Station" in out.prompt


@pytest.mark.slow
@pytest.mark.parametrize("question,options,letter,cited", [
    ("What will the chef bake?", ["pizza", "bread", "a cake", "soup"], "B", 3.0),
    ("What is the next stop?", ["Central Park", "Harbor Gate", "Airport", "Riverside Station"], "D", 6.0),
    ("What is the man wearing?", ["a red jacket", "a blue suit", "a white apron", "a black hat"], "C", 0.0),
])
def test_smollm2_multiple_choice_by_likelihood(smollm2, question, options, letter, cited):
    ans = smollm2[0]
    out = ask(ans, question, options)
    assert out.choice == letter and out.choice_text == options["ABCD".index(letter)]
    assert cited in out.cited


# What Whisper wrote for a real recording of a phone menu (Asterisk's basic-pbx-ivr-main prompt): every line
# says "press", and the model alone answered "press 1" where the line says "press 2".
MENU = [
    ContextLine(44.22, 47.58, "speech", "to establish a sales partnership press 1."),
    ContextLine(47.60, 51.34, "speech", "To speak with a customer advocate, press 2, for accounting,"),
    ContextLine(51.70, 56.22, "speech", "and other receivables press 3, for a company directory press 4,"),
    ContextLine(56.22, 58.88, "speech", "For an operator, press zero."),
]


@pytest.mark.slow
@pytest.mark.parametrize("question,span,line", [
    ("What number do you press to speak with a customer advocate?", "2", 47.60),
    ("What do you press for an operator?", "zero", 56.22),
])
def test_smollm2_copies_the_span_of_the_line_it_cites(smollm2, question, span, line):
    ans = smollm2[0]
    out = ans.answer(AnswerRequest(question=question, options=[], frames=[], timestamps=[], context=list(MENU),
                                   max_new_tokens=32))
    assert out.cited == [line]
    cited = next(c for c in MENU if c.start == line)
    assert re.search(rf"\b{span}\b", out.text) and re.search(rf"\b{span}\b", cited.text)
    assert not re.search(r"\b[013-9]\b", out.text.replace(span, ""))  # no other number beside it
    assert not out.abstained and out.signals["copied"] and 0.5 <= out.confidence <= 1.0
    assert "SmolLM" not in out.prompt and "only the lines given" in out.prompt  # its own system prompt
    again = ans.answer(AnswerRequest(question=question, options=[], frames=[], timestamps=[], context=list(MENU),
                                     max_new_tokens=32))
    assert (again.text, again.cited, again.confidence) == (out.text, out.cited, out.confidence)


@pytest.mark.slow
def test_smollm2_never_repeats_itself_and_stops_at_one_sentence(smollm2):
    ans = smollm2[0]
    out = ask(ans, "What happens in the cooking class?", max_new_tokens=48)
    toks = out.model_text.lower().split()
    trigrams = [tuple(toks[i:i + 3]) for i in range(len(toks) - 2)]
    assert len(trigrams) == len(set(trigrams))
    assert len(re.findall(r"[.!?](\s|$)", out.model_text)) <= 1
