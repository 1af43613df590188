"""Synthesizer: parity of the Tacotron and the audio front end with the reference vectors."""

import numpy as np
import pytest
import torch

from conftest import DATA, vector
import weights
from deepfake_audio_core.errors import TextError
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


def spectral_convergence(wav, mel):
    """How far a waveform's magnitude spectrogram is from the one Griffin-Lim was asked for."""
    from synthesizer import audio
    from synthesizer.hparams import hparams as hp
    target = np.dot(audio._inv_mel_basis(hp), audio._db_to_amp(audio._denormalize(mel, hp) + hp.ref_level_db))
    target = np.maximum(1e-10, target) ** hp.power
    got = np.abs(audio._stft(audio.preemphasis(wav, hp.preemphasis), hp))
    frames = min(got.shape[1], target.shape[1])
    return np.linalg.norm(got[:, :frames] - target[:, :frames]) / np.linalg.norm(target[:, :frames])


def test_fast_griffin_lim_is_more_consistent_in_fewer_iterations():
    """Momentum Griffin-Lim in 32 iterations lands closer to the requested spectrogram than the
    reference's 60 plain iterations, for real speech and any starting phases."""
    from synthesizer.audio import griffin_lim
    mel = melspectrogram(load_wav(DATA / "ref.wav")[:32000])
    for seed in (0, 1):
        plain = spectral_convergence(griffin_lim(mel, rng=np.random.RandomState(seed)), mel)
        fast = spectral_convergence(griffin_lim(mel, rng=np.random.RandomState(seed), momentum=0.99,
                                                iterations=32), mel)
        assert fast < 0.97 * plain, (fast, plain)

