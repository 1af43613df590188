"""The reference clean-up brings a noisy recording's embedding closer to the clean recording's."""
from __future__ import annotations

import subprocess

import librosa
import numpy as np
import pytest
import soundfile as sf

from deepfake_audio.pipeline import Pipeline
from encoder.audio import clean_reference

TEXT = ("The quick brown fox jumps over the lazy dog. She sells sea shells by the sea shore, "
        "and the shells she sells are surely seashells.")


@pytest.fixture(scope="module")
def encoder_only():
    return Pipeline(stages=("encoder",), device="cpu")  # the official encoder (resemblyzer's weights)


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> list[np.ndarray]:
    folder = tmp_path_factory.mktemp("clean-up")
    clips = []
    for voice in ("en-us", "en+f3"):
        path = folder / f"{voice}.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-w", str(path), TEXT], check=True, capture_output=True)
        wav, rate = sf.read(str(path), dtype="float32")
        clips.append(librosa.resample(wav, orig_sr=rate, target_sr=16000))
    return clips


def _noisy(wav: np.ndarray, snr_db: float, seed: int) -> np.ndarray:
    noise = np.random.default_rng(seed).standard_normal(len(wav)).astype(np.float32)
    noise *= np.sqrt(np.mean(wav ** 2) / np.mean(noise ** 2) / 10 ** (snr_db / 10))
    return wav + noise


def test_clean_up_helps_the_encoder_in_heavy_noise(encoder_only, speech):
    gains = []
    for k, wav in enumerate(speech):
        clean = encoder_only.embed(wav, 16000)
        noisy = _noisy(wav, 5.0, seed=k)
        as_is = encoder_only.similarity(clean, encoder_only.embed(noisy, 16000))
        cleaned = encoder_only.similarity(clean, encoder_only.embed(noisy, 16000, clean=True))
        gains.append(cleaned - as_is)
    assert all(g > 0 for g in gains), gains  # measured: +0.03 to +0.07


def test_clean_up_lowers_the_noise_and_keeps_the_length(speech):
    wav = speech[0]
    noisy = _noisy(wav, 5.0, seed=9)
    cleaned = clean_reference(noisy)
    assert cleaned.shape == noisy.shape and cleaned.dtype == np.float32
    # Where the clean recording is silent (espeak's pauses), what is left is noise: it drops.
    quiet = np.abs(wav) < 1e-4
    assert quiet.sum() > 1600
    assert np.sqrt(np.mean(cleaned[quiet] ** 2)) < 0.7 * np.sqrt(np.mean(noisy[quiet] ** 2))
