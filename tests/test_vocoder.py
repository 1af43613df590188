"""Vocoder: bit-level parity with the reference WaveRNN, and edge cases it crashes on."""
import numpy as np
import pytest
import torch

from conftest import vector
import weights
from vocoder.inference import Vocoder
from vocoder.model import WaveRNN


@pytest.fixture(scope="module")
def vocoder(seed1_dir):
    return Vocoder(seed1_dir / "vocoder.pt")


def test_state_dict_layout_matches_schema():
    expected = [(t["key"], t["shape"]) for t in weights.schema("vocoder")["tensors"]]
    assert [(k, list(v.shape)) for k, v in WaveRNN().state_dict().items()] == expected


@pytest.mark.parametrize("batched, name", [(True, "voc_batched.npy"), (False, "voc_unbatched.npy")])
def test_matches_reference(vocoder, batched, name):
    wav = vocoder.infer_waveform(vector("voc_input_mel.npy"), batched=batched, target=8000, overlap=800, seed=1)
    expected = vector(name)
    assert wav.dtype == np.float64 and wav.shape == expected.shape
    np.testing.assert_allclose(wav, expected, atol=2e-5, rtol=0)


@pytest.mark.parametrize("frames", [1, 2, 3, 20])
def test_short_mels_work(vocoder, frames):
    """The reference raises for fewer than 21 frames (its 4000-sample fade-out); these must work."""
    mel = vector("voc_input_mel.npy")[:, :frames]
    for batched in (True, False):
        # Small folds (as in the reference's self-test) keep the batched case quick.
        wav = vocoder.infer_waveform(mel, batched=batched, target=200, overlap=50, seed=0)
        assert wav.shape == ((frames - 1) * 200,)
        assert np.all(np.isfinite(wav))
        if frames > 1:
            assert wav[-1] == 0.0


def test_seed_reproducible_and_global_rng_untouched(vocoder):
    mel = vector("voc_input_mel.npy")[:, :10]
    folds = dict(target=400, overlap=100)  # small folds: the default ones pad any mel to 9,600 samples
    torch.manual_seed(0)
    before = torch.get_rng_state()
    a = vocoder.infer_waveform(mel, seed=4, **folds)
    b = vocoder.infer_waveform(mel, seed=4, **folds)
    assert torch.equal(before, torch.get_rng_state())
    assert np.array_equal(a, b)
    assert not np.array_equal(a, vocoder.infer_waveform(mel, seed=5, **folds))
