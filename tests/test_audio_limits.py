"""Audio input is bounded by what decoding it costs, checked from the header before decoding."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from deepfake_audio_core import audio_io
from deepfake_audio_core.audio_io import read_audio
from deepfake_audio_core.errors import AudioError


def test_too_many_channels_or_too_high_a_rate_is_refused_from_the_header(tmp_path):
    sf.write(tmp_path / "nine.wav", np.zeros((1600, 9), np.float32), 16000)
    with pytest.raises(AudioError, match="9 channels; at most 8"):
        read_audio(tmp_path / "nine.wav")
    sf.write(tmp_path / "fast.wav", np.zeros(3840, np.float32), 384000)
    with pytest.raises(AudioError, match="384000 Hz; at most 192000"):
        read_audio(tmp_path / "fast.wav")


def test_a_file_asking_for_more_samples_than_allowed_is_refused_before_decoding(tmp_path, monkeypatch):
    sf.write(tmp_path / "stereo.flac", np.zeros((16000, 2), np.float32), 16000)
    monkeypatch.setattr(audio_io, "MAX_DECODED_SAMPLES", 30000)
    decoded = []
    monkeypatch.setattr(audio_io, "_decode_mono", lambda audio: decoded.append(1))
    with pytest.raises(AudioError, match="32,000 samples .2 channels at 16000 Hz.; at most 30,000"):
        read_audio(tmp_path / "stereo.flac")
    assert not decoded


def test_multichannel_audio_is_mixed_down_block_by_block(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    data = (0.3 * rng.standard_normal((10_007, 3))).astype(np.float32)
    sf.write(tmp_path / "three.wav", data, 16000, subtype="FLOAT")
    monkeypatch.setattr(audio_io, "DECODE_BLOCK_FRAMES", 1000)  # many blocks and a short last one
    wav, sr = read_audio(tmp_path / "three.wav")
    assert sr == 16000 and wav.dtype == np.float32
    np.testing.assert_allclose(wav, data.mean(axis=1), atol=1e-7)


def test_stereo_channels_that_cancel_are_read_from_the_louder_one(tmp_path, monkeypatch):
    """A stereo recording with one channel's polarity reversed mixes down to near silence (and was
    refused as silent); its louder channel is read instead. Channels that agree, or one silent
    channel, are mixed as before."""
    from conftest import DATA
    voice, rate = sf.read(DATA / "ref.wav", dtype="float32")
    monkeypatch.setattr(audio_io, "DECODE_BLOCK_FRAMES", 4096)  # several blocks
    cases = {"reversed.wav": np.stack([-0.9 * voice, voice], axis=1),
             "agree.wav": np.stack([voice, 0.9 * voice], axis=1),
             "one silent.wav": np.stack([voice, np.zeros_like(voice)], axis=1)}
    for name, data in cases.items():
        sf.write(tmp_path / name, data, rate, subtype="FLOAT")
    wav, _ = read_audio(tmp_path / "reversed.wav")
    np.testing.assert_allclose(wav, voice, atol=1e-7)  # the louder (right) channel
    np.testing.assert_allclose(read_audio(tmp_path / "agree.wav")[0], 0.95 * voice, atol=1e-6)
    np.testing.assert_allclose(read_audio(tmp_path / "one silent.wav")[0], 0.5 * voice, atol=1e-7)
