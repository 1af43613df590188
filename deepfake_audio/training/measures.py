"""Offline judges of generated speech that no training loss here optimises.

- `dnsmos`: DNSMOS P.835 overall quality (OVRL, 1 to 5), Microsoft's ONNX models as shipped
  in the `speechmos` wheel, run with onnxruntime; no network.
- `pitch_of`: F0 by `librosa.pyin` (the probabilistic YIN with an HMM: the reference judge
  of pitch, slower than `core.pitch.track_f0`): median F0 and voiced fraction.
- `Recogniser` / `word_error_rate`: pocketsphinx (`deepfake_audio.training.evaluate`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deepfake_audio_core.audio_config import MEL
from deepfake_audio_core.errors import DeepfakeAudioError

SAMPLE_RATE = MEL.sample_rate  # the models' rate (core.audio_config)


def dnsmos(wav: np.ndarray, sample_rate: int = SAMPLE_RATE) -> float:
    """DNSMOS OVRL of `wav` (mono float); clips shorter than the model's 9 s window are looped,
    as the reference implementation does."""
    try:
        from speechmos import dnsmos as model
    except ImportError:
        raise DeepfakeAudioError("speechmos and onnxruntime are not installed: run `bash scripts/setup.sh "
                                 "--dev`.") from None
    wav = np.asarray(wav, dtype=np.float64)
    if sample_rate != SAMPLE_RATE:
        import soxr
        wav = soxr.resample(wav, sample_rate, SAMPLE_RATE)
    peak = float(np.max(np.abs(wav))) if wav.size else 0.0
    if peak > 1:
        wav = wav / peak
    return float(model.run(wav, SAMPLE_RATE)["ovrl_mos"])


@dataclass(frozen=True)
class Pitch:
    median_hz: float  # over voiced frames (nan when none)
    voiced_fraction: float  # of frames within speech (pyin's voicing)


def pitch_of(wav: np.ndarray, sample_rate: int = SAMPLE_RATE, trim_db: float = 35.0) -> Pitch:
    """Median F0 and voiced fraction by pyin over the speech part of `wav` (leading and trailing
    silence more than `trim_db` below the peak left out, so pauses do not count as unvoiced)."""
    import librosa
    wav = np.asarray(wav, dtype=np.float32)
    speech, _ = librosa.effects.trim(wav, top_db=trim_db)
    if speech.size < sample_rate // 10:
        return Pitch(float("nan"), 0.0)
    f0, voiced, _ = librosa.pyin(speech, fmin=50, fmax=600, sr=sample_rate, frame_length=1024,
                                 hop_length=sample_rate // 80)
    return Pitch(float(np.nanmedian(f0)) if voiced.any() else float("nan"), float(voiced.mean()))


def warm_numba_cache() -> None:
    """Compile the librosa kernels the project runs (`librosa.pyin`'s, `librosa.istft`'s) in this one
    process. librosa caches them on disk on first use, and two processes compiling the same kernel at
    once can leave a cache that crashes its next reader (numba issue 10128): setup calls this first."""
    import librosa
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    tone = (0.3 * np.sin(2 * np.pi * 140 * t)).astype(np.float32)
    pitch_of(tone)
    librosa.istft(librosa.stft(tone, n_fft=800, hop_length=200), hop_length=200)
