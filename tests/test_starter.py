"""The shipped starter models: a fresh install clones a voice intelligibly, offline.

Everything here runs on the weights committed in saved_models/starter/ and on references
spoken by flite voices the starter never trained on (flite_rms and flite_awb are held out
of its corpus). Intelligibility is measured as the evaluation does: pocketsphinx's word
error rate.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from deepfake_audio.core.errors import AudioError, TextError
from deepfake_audio.pipeline import Pipeline
from deepfake_audio.training.evaluate import Recogniser, word_error_rate
from synthesizer.inference import Synthesizer

REPO = Path(__file__).resolve().parents[1]
STARTER = REPO / "saved_models" / "starter"
SENTENCE = "The weather was cold and the children stayed inside to read."
REFERENCE_TEXT = "Every morning I walk to the station and buy a newspaper before the train arrives."


def flite_reference(path: Path, voice: str, text: str = REFERENCE_TEXT) -> Path:
    subprocess.run(["flite", "-voice", voice, "-t", text, "-o", str(path)], check=True, capture_output=True)
    return path


@pytest.fixture(scope="module")
def references(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("starter-references")
    return {voice: flite_reference(folder / f"{voice}.wav", voice) for voice in ("rms", "awb")}


@pytest.fixture(scope="module")
def pipe(tmp_path_factory) -> Pipeline:
    # An empty models folder, as on a fresh install: the starter synthesizer stands in.
    return Pipeline(tmp_path_factory.mktemp("no-official-weights"), device="cpu")


def test_the_starter_ships_small_and_documented():
    weights = STARTER / "synthesizer.pt"
    assert weights.stat().st_size <= 25 * 1024 * 1024
    synth = Synthesizer(weights)
    assert synth.architecture == "fastspeech" and synth.step > 0
    card = (STARTER / "MODEL_CARD.md").read_text(encoding="utf-8")
    for heading in ("## Data", "## Model", "## Training", "## Evaluation"):
        assert heading in card
    assert "word error rate" in card and "wall time" in card


def test_a_fresh_install_clones_intelligibly(pipe, references):
    assert pipe.is_starter("synthesizer") and pipe.default_vocoder() == "griffinlim"
    recognise = Recogniser()
    for voice, reference in references.items():
        result = pipe.clone(reference, SENTENCE, seed=0)
        assert result.vocoder == "griffinlim" and 2.0 < result.duration < 8.0
        wer = word_error_rate([SENTENCE], [recognise(result.wav)])
        assert wer <= 0.5, f"{voice}: pocketsphinx heard {recognise(result.wav)!r}"


def test_clones_keep_their_voices_apart(pipe, references):
    """Each held-out voice's clone is closer to its own reference than to the other's."""
    refs = {voice: pipe.embed(path) for voice, path in references.items()}
    for voice in refs:
        clone = pipe.embed_output(pipe.clone(text=SENTENCE, embedding=refs[voice], seed=1).wav)
        other = next(v for v in refs if v != voice)
        assert pipe.similarity(clone, refs[voice]) > pipe.similarity(clone, refs[other])


def test_bad_input_gets_the_same_clear_errors(pipe, tmp_path, references):
    sf.write(str(tmp_path / "silent.wav"), np.zeros(3 * 16000), 16000, subtype="PCM_16")
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt garbage")
    short = sf.read(str(references["rms"]), dtype="float32")
    sf.write(str(tmp_path / "short.wav"), short[0][:int(0.4 * short[1])], short[1], subtype="PCM_16")
    for name, message in [("silent.wav", "is silent"), ("corrupt.wav", "Could not decode"),
                          ("short.wav", "s of speech after removing silence"), ("missing.wav", "not found")]:
        with pytest.raises(AudioError, match=message):
            pipe.clone(tmp_path / name, SENTENCE)
    with pytest.raises(TextError, match="empty"):
        pipe.clone(references["rms"], "   ")
    with pytest.raises(TextError, match="the limit is 5000"):
        pipe.clone(references["rms"], "word " * 1001)
    with pytest.raises(TextError, match="no speakable characters"):
        pipe.clone(references["rms"], "?!... --")
