"""Honest answers: the line an answer rests on, the span it copies, its confidence, and abstaining when nothing
given to the answerer supports an answer (pure core, a tiny real causal LM, and `vqa ask` end to end)."""

from __future__ import annotations

import json

import pytest

from pipelines.answerers.base import AnswerRequest, ContextLine, load_answerer
from pipelines.answerers.prompt import answer_fields
from pipelines.answerers.spans import find_span, mentions
from pipelines.answerers.support import (
    NOT_FOUND,
    answer_kind,
    assess,
    cite_line,
    is_refusal,
    is_visual,
    line_matches,
)
from tests.synth import make_color_video

# What Whisper tiny.en wrote for a real recording of a phone menu (Asterisk's basic-pbx-ivr-main prompt,
# whose words are "To speak with a customer advocate, press two. ... For an operator, press zero."): the
# transcriber cut the sentences mid-way, and every line says "press".
MENU = [
    ContextLine(33.96, 36.78, "speech", "Thank you for calling Super Awesome Company,"),
    ContextLine(40.52, 44.22, "speech", "If you know your party's extension, you may dial it at any time"),
    ContextLine(44.22, 47.58, "speech", "to establish a sales partnership press 1."),
    ContextLine(47.60, 51.34, "speech", "To speak with a customer advocate, press 2, for accounting,"),
    ContextLine(51.70, 56.22, "speech", "and other receivables press 3, for a company directory press 4,"),
    ContextLine(56.22, 58.88, "speech", "For an operator, press zero."),
    ContextLine(87.27, 96.93, "speech", "A 28.8 kilobit modem. To execute an echo test, dial 600. This test is most "
                                        "useful when you have"),
    ContextLine(103.37, 112.43, "speech", "single user with extension 1234 and password 4242. That user is configured"),
    ContextLine(137.0, 161.5, "screen", "Lab session"),
    ContextLine(137.0, 161.5, "screen", "Room 214, Friday at 3 pm"),
    ContextLine(170.33, 175.67, "speech", "And Mr. John Dashwood had then leisure to consider how much there might "
                                          "be prudently in"),
]


def span_for(question: str, model_text: str = "") -> tuple[str, float]:
    span = find_span(question, MENU, line_matches(question, MENU), model_text)
    assert span is not None, question
    return span.text, span.line.start


# --- pure core ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("question,span,line", [
    ("What number do you press to speak with a customer advocate?", "2", 47.60),
    ("What do you press for an operator?", "zero", 56.22),
    ("Which number do you press for a company directory?", "4", 51.70),
    ("What number do you dial to execute an echo test?", "600", 87.27),
    ("What is the password of the sample user?", "4242", 103.37),
    ("Which room is the lab session in?", "214", 137.0),
    ("On which day is the lab session?", "Friday", 137.0),
    ("Who had leisure to consider how much there might be in his power?", "John Dashwood", 170.33),
])
def test_the_span_comes_from_the_line_that_matches_the_question(question, span, line):
    got, start = span_for(question)
    assert (got, start) == (span, line)
    # the model's paraphrase with another number does not move it ("press 2" became "press 1")
    assert span_for(question, model_text="You press 1.")[0] == span


def test_answer_kinds():
    assert answer_kind("What is the gate code?") == "number"
    assert answer_kind("Who had leisure to consider how much he could do?") == "name"  # the first wh-word
    assert answer_kind("What is the captain's name?") == "name"
    assert answer_kind("When does the ferry leave?") == "when"
    assert answer_kind("On which day is the lab session?") == "day"
    assert answer_kind("Why is the sky blue?") is None


def test_numbers_said_or_written_are_the_same_number():
    assert mentions("You press two.", "2") and mentions("press 2", "two") and not mentions("press 12", "2")


def test_cite_the_line_the_answer_comes_from_not_a_neighbour():
    said = cite_line("To speak with a customer advocate, press 2.",
                     "What number do you press to speak with a customer advocate?", MENU)
    assert said is not None and said.start == 47.60


def test_no_supporting_line_abstains_and_a_matching_one_answers():
    q = "What colour is the lecturer's shirt?"
    m = line_matches(q, MENU)
    verdict = assess(q, "The shirt is blue.", MENU, None, matches=m, sees=False, model_p=0.9)
    assert verdict.abstained and "what is seen" in verdict.reason and "sees" in verdict.reason
    # nothing at all said or written, and no model that sees
    empty = assess("What is the bird doing?", "The bird is dancing.", [], None, matches={}, sees=False, model_p=0.8)
    assert empty.abstained and "nothing said or written" in empty.reason
    # a model that sees the frames is not held to the lines
    seen = assess("What is the bird doing?", "It is preening.", [], None, matches={}, sees=True, model_p=0.8)
    assert not seen.abstained and seen.confidence == pytest.approx(0.48)
    # the line that says it: answered, with a confidence from the match and the model's probability
    q = "What do you press for an operator?"
    m = line_matches(q, MENU)
    ok = assess(q, "zero", MENU, MENU[5], matches=m, sees=False, model_p=0.2, copied=True)
    assert not ok.abstained and ok.signals["match"] == 1.0
    assert ok.confidence == pytest.approx(0.5 + 0.2 + 0.3 * 0.2)
    sure = assess(q, "zero", MENU, MENU[5], matches=m, sees=False, model_p=0.9, copied=True)
    assert sure.confidence > ok.confidence
    # an answer whose words no line holds is invented
    made_up = assess("Who called?", "A parrot named Ava called.", MENU, None,
                     matches=line_matches("Who called?", MENU), sees=False, model_p=0.9)
    assert made_up.abstained


def test_the_model_saying_it_is_not_there_abstains():
    assert is_refusal("The lines do not say.") and is_refusal("This is not mentioned in the transcript.")
    assert not is_refusal("You press zero.")


# --- the text answerer with a tiny real causal LM (random weights): the copy does not depend on luck ---

DEMO_LINES = [  # the shipped demo's lines as the offline profile reads them
    ContextLine(0.0, 6.0, "screen", "Harbor Tour"),
    ContextLine(0.69, 5.18, "speech", "Welcome to the harbor tour. Today we walk along the old docks."),
    ContextLine(6.0, 12.0, "screen", "Gate code 4817"),
    ContextLine(6.69, 10.59, "speech", "This is the main gate where the fishing boats come in every morning."),
    ContextLine(12.3, 16.6, "speech", "The ferry to the island leaves at noon. The captain's name is Marlow."),
    ContextLine(12.0, 17.6, "screen", "Pier 9"),
]


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    from pipelines.backends.tiny_vlm import build_tiny_causal_lm

    return load_answerer(f"textlm:{build_tiny_causal_lm(tmp_path_factory.mktemp('tiny-lm'))}")


@pytest.mark.parametrize("question,span", [("What is the gate code?", "4817"),
                                           ("What is the captain's name?", "Marlow")])
def test_text_answerer_reply_holds_the_exact_span_of_the_line_it_cites(tiny_lm, question, span):
    out = tiny_lm.answer(AnswerRequest(question, [], [], [], list(DEMO_LINES), max_new_tokens=8))
    (cited,) = out.cited
    line = next(c for c in DEMO_LINES if c.start == cited)
    assert span in out.text and span in line.text
    assert out.signals["copied"] is True and 0.0 <= out.confidence <= 1.0
    assert out.signals["model"] is not None  # the tiny model's own probability of the copied span
    assert "SmolLM" not in out.prompt and "only the lines given" in out.prompt  # its own system prompt
    assert not out.abstained


def test_text_answerer_abstains_without_lines(tiny_lm):
    out = tiny_lm.answer(AnswerRequest("What colour is the bird?", [], [], [1.0, 2.0], [], max_new_tokens=6))
    shown = answer_fields(out)
    assert out.abstained and shown["abstained"] and shown["text"] == NOT_FOUND
    assert shown["model_text"] == out.text and shown["choice"] is None
    assert "reads text only" in out.reason


# --- vqa ask end to end -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def silent_colours(tmp_path_factory):
    """A generated video with no speech and no text: nothing said or written to answer from."""
    path = tmp_path_factory.mktemp("honest") / "colours.mp4"
    make_color_video(path, [1.5, 2.0, 1.5])
    return path


def test_ask_abstains_on_a_visual_question_without_a_model_that_sees(cli, silent_colours):
    res = cli("ask", str(silent_colours), "What colour is the square?", "--profile", "tiny", "--json",
              "--frames", "3")
    assert res.exit_code == 0, res.stderr
    out = json.loads(res.stdout)
    ans = out["answer"]
    assert ans["abstained"] is True and ans["text"] == NOT_FOUND and ans["choice"] is None
    assert "random weights" in ans["reason"] and 0.0 <= ans["confidence"] <= 1.0
    assert ans["model_text"]  # what the model said is kept, not shown as the answer
    assert json.loads(cli("log", str(silent_colours), "--json").stdout)[0]["answer"] == NOT_FOUND
    text = cli("ask", str(silent_colours), "What colour is the square?", "--profile", "tiny", "--frames", "3")
    assert text.exit_code == 0, text.stderr
    assert f"Answer: {NOT_FOUND}" in text.stdout and "Why:" in text.stdout


def test_an_answer_resting_on_a_line_that_misses_the_question_says_which_line_and_how_well():
    # the best line matches ("For an operator, press zero."), but the answer rests on another one: the
    # verdict names that line and both matches, instead of saying that no line matches
    q = "What do you press for an operator?"
    m = line_matches(q, MENU)
    verdict = assess(q, "You press 2 to speak with a customer advocate.", MENU, MENU[3], matches=m, sees=False,
                     model_p=0.9)
    assert verdict.abstained
    assert f"at {MENU[3].start:.1f} s" in verdict.reason and f"matches the question {m[MENU[3]]:.2f}" in verdict.reason
    assert f"the best line given matches {max(m.values()):.2f}" in verdict.reason
    # no line matching at all keeps its own reason
    none = assess("Who won the match?", "You press 2.", MENU, MENU[3], matches=line_matches("Who won the match?", MENU),
                  sees=False, model_p=0.9)
    assert none.abstained and "no line said or written matches the question" in none.reason


@pytest.mark.parametrize("question, visual", [
    ("What colour is the man's shirt?", True),
    ("What is the bird doing?", True),
    ("How many people are in the room?", True),
    ("Who is the woman next to the car?", True),
    ("What does the man say?", False),
    ("What does the woman say about the weather?", True),  # the weather is seen too: held to the stricter match
    ("What is written on the car?", False),
    ("What number does the speaker mention?", False),
])
def test_a_question_about_what_someone_says_is_not_about_what_is_seen(question, visual):
    assert is_visual(question) is visual
