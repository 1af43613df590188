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

from deepfake_audio_core.errors import AudioError, TextError
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
    shipped = sum(p.stat().st_size for p in STARTER.glob("*.pt"))
    assert shipped <= 30 * 1024 * 1024 and (STARTER / "starter_vocoder.pt").is_file()
    synth = Synthesizer(weights)
    assert synth.architecture == "fastspeech" and synth.step > 0
    card = (STARTER / "MODEL_CARD.md").read_text(encoding="utf-8")
    for heading in ("## Data", "## Model", "## Training", "## Evaluation"):
        assert heading in card
    assert "word error rate" in card and "wall time" in card


def test_a_fresh_install_clones_intelligibly(pipe, references):
    assert pipe.is_starter("synthesizer") and pipe.is_starter("starter_vocoder")
    assert pipe.default_vocoder() == "starter"
    recognise = Recogniser()
    for voice, reference in references.items():
        result = pipe.clone(reference, SENTENCE, seed=0)
        assert result.vocoder == "starter" and 2.0 < result.duration < 8.0
        wer = word_error_rate([SENTENCE], [recognise(result.wav)])
        assert wer <= 0.5, f"{voice}: pocketsphinx heard {recognise(result.wav)!r}"


def test_clones_keep_their_voices_apart(pipe, references):
    """Each held-out voice's clone, made from its recording as a user would, is closer to its own
    reference than to the other's."""
    refs = {voice: pipe.embed(path) for voice, path in references.items()}
    for voice in refs:
        clone = pipe.embed_output(pipe.clone(references[voice], SENTENCE, seed=1).wav)
        other = next(v for v in refs if v != voice)
        assert pipe.similarity(clone, refs[voice]) > pipe.similarity(clone, refs[other])


def test_clones_from_embeddings_keep_their_voices_apart(pipe, references):
    """The Python API's `embedding=pipe.embed(recording)`: the pipeline remembers the pitch it
    measured from that recording, so the clone speaks at it (`deepfake_audio_core.pitch.PitchMemory`)."""
    refs = {voice: pipe.embed(path) for voice, path in references.items()}
    for voice in refs:
        clone = pipe.embed_output(pipe.clone(text=SENTENCE, embedding=refs[voice], seed=1).wav)
        other = next(v for v in refs if v != voice)
        assert pipe.similarity(clone, refs[voice]) > pipe.similarity(clone, refs[other])


@pytest.mark.xfail(strict=True, reason=(
    "an embedding alone carries no measured pitch: the F0 guessed from it (encoder.voice_pitch, fitted on the "
    "corpus's synthetic voices) puts flite_rms (104 Hz) at 127 Hz, about flite_awb's pitch, and the "
    "pitch-aware synthesizer then speaks it there, nearer awb; the studio's saved voices, embeddings made by "
    "the same pipeline and .npy voices from `embed` (with their .pitch.json) keep their recording's pitch; an "
    "embedding with nothing else has only the guess (issue 24)"))
def test_clones_from_embeddings_alone_keep_their_voices_apart(pipe, references, tmp_path):
    """The same from bare embeddings (made elsewhere, no pitch with them): the vocoder and the synthesizer
    then speak at the F0 the embedding predicts (`encoder.voice_pitch`)."""
    refs = {voice: pipe.embed(path) for voice, path in references.items()}
    fresh = Pipeline(tmp_path, device="cpu")  # knows nothing of the recordings
    for voice in refs:
        clone = fresh.embed_output(fresh.clone(text=SENTENCE, embedding=refs[voice], seed=1).wav)
        other = next(v for v in refs if v != voice)
        assert fresh.similarity(clone, refs[voice]) > fresh.similarity(clone, refs[other])


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


def sox_moved(source: Path, target: Path, semitones: float, formant: float = 1.0) -> Path:
    """`source` moved in pitch (semitones) and vocal-tract length (formant scale) by sox."""
    cents = 100 * semitones - 1200 * np.log2(formant)
    subprocess.run(["sox", str(source), "-r", "16000", str(target), "speed", f"{formant:.3f}", "pitch",
                    f"{cents:.1f}", "rate", "16000"], check=True, capture_output=True)
    return target


@pytest.mark.parametrize("voice, semitones, formant", [
    ("rms", -4, 0.92),  # about 80 Hz
    ("awb", 13, 1.15),  # about 270 Hz, child-like
])
def test_clones_speak_at_the_pitch_of_their_reference(pipe, references, tmp_path, voice, semitones, formant):
    """A very low and a high held-out voice: the clone's F0 (pyin) is near the reference's, and voiced."""
    from deepfake_audio.training.measures import pitch_of
    reference = sox_moved(references[voice], tmp_path / "moved.wav", semitones, formant)
    own = pitch_of(sf.read(str(reference), dtype="float32")[0])
    clone = pitch_of(pipe.clone(reference, SENTENCE, seed=0).wav)
    assert clone.median_hz == pytest.approx(own.median_hz, rel=0.15) and clone.voiced_fraction >= 0.5
    shifted = pitch_of(pipe.clone(reference, SENTENCE, seed=0, pitch=-5).wav)
    assert shifted.median_hz == pytest.approx(clone.median_hz * 2 ** (-5 / 12), rel=0.08)


def test_the_starter_vocoder_sounds_better_than_griffin_lim(pipe, references):
    """DNSMOS OVRL of the default clone against Griffin-Lim on the same mels."""
    from deepfake_audio.training.measures import dnsmos
    for reference in references.values():
        starter = dnsmos(pipe.clone(reference, SENTENCE, seed=0).wav)
        griffin = dnsmos(pipe.clone(reference, SENTENCE, seed=0, vocoder="griffinlim").wav)
        assert starter > griffin + 0.3


def test_a_result_is_compared_with_its_voice_at_the_voice_s_level(pipe, references):
    """The encoder hears level (it raises quiet audio, never lowers loud audio), so the same
    recording made louder, as a clone at a 0.97 peak is, scores lower against itself; with
    `like=` the result is brought to the level of the voice's recording first. A saved voice's
    level can be told to the pipeline (`remember_level`), as the studio does."""
    import soundfile as sf
    wav, rate = sf.read(references["rms"], dtype="float32")
    voice = pipe.embed(wav, rate)
    louder = wav * (0.97 / np.abs(wav).max())
    as_is = pipe.similarity(voice, pipe.embed_output(louder, rate))
    matched = pipe.similarity(voice, pipe.embed_output(louder, rate, like=voice))
    assert matched > 0.99 and matched > as_is + 0.03, (as_is, matched)
    quieter = [pipe.similarity(voice, pipe.embed_output(0.5 * wav, rate, **kw)) for kw in ({}, {"like": voice})]
    assert quieter[1] > 0.98 and quieter[1] > quieter[0], quieter  # (silence trimming differs a little)
    saved = np.random.default_rng(0).standard_normal(256).astype(np.float32)
    saved /= np.linalg.norm(saved)
    assert np.array_equal(pipe.embed_output(louder, rate, like=saved), pipe.embed_output(louder, rate))  # level unknown
    pipe.remember_level(saved, pipe.reference_level(wav, rate))
    np.testing.assert_allclose(pipe.embed_output(louder, rate, like=saved), pipe.embed_output(louder, rate, like=voice))
