"""Synthesizer: parity of the Tacotron and the audio front end with the reference vectors."""

import numpy as np
import pytest
import torch

from conftest import DATA, vector
import weights
from deepfake_audio.errors import TextError
from synthesizer.audio import load_wav, melspectrogram
from synthesizer.inference import Synthesizer
from synthesizer.model import Tacotron


@pytest.fixture(scope="module")
def synthesizer(seed1_dir):
    return Synthesizer(seed1_dir / "synthesizer.pt")


def test_state_dict_layout_matches_schema():
    expected = [(t["key"], t["shape"]) for t in weights.schema("synthesizer")["tensors"]]
    got = [(k, list(v.shape)) for k, v in Tacotron().state_dict().items()]
    assert got == expected


def test_audio_mel_matches_reference():
    mel = melspectrogram(load_wav(DATA / "ref.wav"))
    expected = vector("ref_synth_mel.npy")
    assert mel.shape == expected.shape
    np.testing.assert_allclose(mel, expected, atol=1e-4, rtol=0)


def test_single_text_matches_reference(synthesizer):
    assert synthesizer.r == 2 and synthesizer.step == 1000
    (mel,) = synthesizer.synthesize_spectrograms(["Hello world, this is a test."], [vector("embed.npy")], seed=1)
    expected = vector("mel.npy")
    assert mel.shape == expected.shape
    np.testing.assert_allclose(mel, expected, atol=1e-5, rtol=0)


def test_batch_of_two_matches_reference(synthesizer):
    embed = vector("embed.npy")
    mels = synthesizer.synthesize_spectrograms(["The quick brown fox.", "Jumps over the lazy dog, twice!"],
                                               [embed, embed], seed=3)
    for i, mel in enumerate(mels):
        expected = vector(f"mel_batch2_{i}.npy")
        assert mel.shape == expected.shape
        np.testing.assert_allclose(mel, expected, atol=1e-5, rtol=0)


def test_global_rng_untouched_and_reproducible(synthesizer):
    embed = vector("embed.npy")
    torch.manual_seed(0)
    before = torch.get_rng_state()
    a = synthesizer.synthesize_spectrograms(["Hi there."], [embed], seed=5)[0]
    assert torch.equal(before, torch.get_rng_state())
    b = synthesizer.synthesize_spectrograms(["Hi there."], [embed], seed=5)[0]
    c = synthesizer.synthesize_spectrograms(["Hi there."], [embed], seed=6)[0]
    assert np.array_equal(a, b) and not np.array_equal(a, c)


@pytest.mark.parametrize("text", ["", "   ", "%%% ///", "{HH AH0 L OW1}"])
def test_unspeakable_text_is_rejected(synthesizer, text):
    with pytest.raises(TextError):
        synthesizer.synthesize_spectrograms([text], [vector("embed.npy")], seed=1)
