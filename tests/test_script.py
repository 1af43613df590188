"""Scripts (pauses, voice changes) and the speaking rate, through the pipeline."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import DATA
from deepfake_audio_core.errors import AudioError, RequestError, TextError
from deepfake_audio.pipeline import MAX_TEXT_CHARS, SENTENCE_PAUSE_SECONDS, Pipeline
from deepfake_audio_core.requests import check_pace
from deepfake_audio.script import Part, parse_script, spoken_characters

SR = 16000


@pytest.fixture(scope="module")
def pipe(quick_dir):
    return Pipeline(quick_dir, device="cpu")


def test_parse_script_parts_and_positions():
    parts = parse_script("[voice: Alice] Hello Bob. [pause 0.5] Did you sleep?\n[voice: bob] No.\n[pause 2]\n"
                         "[voice: default] The end.", ["Alice", "Bob"])
    assert parts == [Part("Hello Bob.", "Alice", line=1), Part(pause=0.5, line=1), Part("Did you sleep?", "Alice", line=1),
                     Part("No.", "Bob", line=2), Part(pause=2.0, line=3), Part("The end.", None, line=4)]
    assert spoken_characters(parts) == len("Hello Bob.Did you sleep?No.The end.")
    for text, message in [("Oops [pasue 2] here", "Unknown tag [pasue 2] at line 1, column 6"),
                          ("Fine.\n[voice: Zed] Hi.", "Unknown voice 'Zed' at line 2, column 1: saved voices are Alice, Bob"),
                          ("Hi [voice: Alice] there.", "must start its line"),
                          ("A [pause 12] B", "at most 10 seconds"), ("A [pause 0] B", "more than 0"),
                          ("Missing [pause 1 bracket", "stray bracket at line 1, column 9")]:
        with pytest.raises(TextError, match=message.replace("[", r"\[").replace("]", r"\]")):
            parse_script(text, ["Alice", "Bob"])


def test_prepare_script_silences_and_limit():
    plain = Pipeline.prepare_script("Hello there. How are you?")
    assert plain.gaps == (SENTENCE_PAUSE_SECONDS, 0.0) and plain.lead == 0.0 and plain.voices == (None, None)
    script = Pipeline.prepare_script("[pause 1]\n[voice: A] Hi. [pause 0.5] There.\n[voice: B] Yes. [pause 2]",
                                     ["A", "B"])
    assert script.sentences == ("Hi.", "There.", "Yes.") and script.voices == ("A", "A", "B")
    assert script.gaps == (0.5, SENTENCE_PAUSE_SECONDS, 2.0) and script.lead == 1.0
    # The limit counts markup too (a request's cost grows with it), and pauses add up to a minute.
    long_markup = "[pause 0.1] " * 420 + "a"
    assert len(long_markup) > MAX_TEXT_CHARS
    with pytest.raises(TextError, match="the limit is 5000"):
        Pipeline.prepare_script(long_markup)
    with pytest.raises(TextError, match="the limit is 5000"):
        Pipeline.prepare_script("[pause 0.1] " + "a " * 2600)
    assert Pipeline.prepare_script("Hi. [pause 10] " * 6).lead == 0.0
    with pytest.raises(TextError, match="70 seconds of pauses; at most 60"):
        Pipeline.prepare_script("Hi. [pause 10] " * 7)
    with pytest.raises(TextError, match="seconds of pauses"):
        Pipeline.prepare_script("[pause 10] " * 300)  # 3 KB that once asked for 50 minutes of silence


def test_a_script_with_two_voices_renders_as_one_file(pipe):
    alice = pipe.embed(DATA / "ref.wav")
    bob = np.roll(alice, 7)  # another unit-norm embedding
    bob = bob / np.linalg.norm(bob)
    text = "[voice: Alice] Hello Bob.\n[pause 1]\n[voice: Bob] Hello Alice. Nice day."
    result = pipe.clone(text=text, seed=3, vocoder="griffinlim", voices={"Alice": alice, "Bob": bob})
    assert result.sentences == ["Hello Bob.", "Hello Alice.", "Nice day."]
    spoken = sum((m.shape[1] - 1) * 200 for m in result.mels)
    assert len(result.wav) == spoken + 1 * SR + int(SENTENCE_PAUSE_SECONDS * SR)  # the asked pause, one short one
    # The same sentences in one voice are not the same audio: each line has its own speaker.
    alone = pipe.clone(text="Hello Bob.\n[pause 1]\nHello Alice. Nice day.", seed=3, vocoder="griffinlim",
                       embedding=alice)
    assert len(alone.wav) == len(result.wav) and not np.array_equal(alone.mels[1], result.mels[1])
    assert np.array_equal(alone.mels[0], result.mels[0])
    with pytest.raises(AudioError, match="No reference voice"):
        pipe.clone(text="[voice: Alice] Hi.\n[voice: default] And me.", voices={"Alice": alice})
    with pytest.raises(TextError, match="Unknown voice 'Carol' at line 1"):
        pipe.clone(text="[voice: Carol] Hi.", voices={"Alice": alice})


def test_pace(pipe):
    embedding = pipe.embed(DATA / "ref.wav")
    normal = pipe.clone(text="Steady as she goes.", embedding=embedding, seed=2, vocoder="griffinlim")
    same = pipe.clone(text="Steady as she goes.", embedding=embedding, seed=2, vocoder="griffinlim", pace=1.0)
    assert np.array_equal(normal.wav, same.wav)  # 1.0 changes nothing
    (mel,) = pipe.synthesize("Steady as she goes.", embedding, seed=2)
    (slow,) = pipe.synthesize("Steady as she goes.", embedding, seed=2, pace=0.5)
    (fast,) = pipe.synthesize("Steady as she goes.", embedding, seed=2, pace=2.0)
    assert slow.shape[1] == round(mel.shape[1] / 0.5) and fast.shape[1] == round(mel.shape[1] / 2.0)
    for bad in (0.4, 2.5, float("nan"), "quick"):
        with pytest.raises(RequestError, match="pace"):
            check_pace(bad)
