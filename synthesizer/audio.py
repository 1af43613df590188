"""Synthesizer audio front end: wav <-> normalised log-mel, and Griffin-Lim.

Mels are float32 (80, frames) in the normalised domain [-4, 4]; one frame is 200
samples (12.5 ms) at 16 kHz. The arithmetic follows the reference (float64 where
scipy/librosa promote) so results match it to ~1e-6.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from deepfake_audio_core.audio_io import load_audio
from deepfake_audio_core.audio_config import MEL, MelConfig
from deepfake_audio_core.emphasis import de_emphasis, pre_emphasis


def load_wav(path: str | Path, hp: MelConfig = MEL) -> np.ndarray:
    """Decode and resample a file to hp.sample_rate; rescaled to peak hp.rescaling_max if hp.rescale."""
    wav = load_audio(path, hp.sample_rate)
    if hp.rescale:
        peak = np.abs(wav).max()
        if peak > 0:
            wav = wav / peak * hp.rescaling_max
    return wav


def preemphasis(wav: np.ndarray, k: float, preemphasize: bool = True) -> np.ndarray:
    return pre_emphasis(wav, k) if preemphasize else wav


def inv_preemphasis(wav: np.ndarray, k: float, inv_preemphasize: bool = True) -> np.ndarray:
    return de_emphasis(wav, k) if inv_preemphasize else wav


def _stft(y: np.ndarray, hp: MelConfig) -> np.ndarray:
    import librosa
    return librosa.stft(y=y, n_fft=hp.n_fft, hop_length=hp.hop_size, win_length=hp.win_size)


def _istft(y: np.ndarray, hp: MelConfig) -> np.ndarray:
    import librosa
    return librosa.istft(y, hop_length=hp.hop_size, win_length=hp.win_size)


@lru_cache(maxsize=4)
def mel_basis(hp: MelConfig = MEL) -> np.ndarray:
    """Slaney mel filterbank, float32 (num_mels, n_fft // 2 + 1)."""
    import librosa
    assert hp.fmax <= hp.sample_rate // 2
    return librosa.filters.mel(sr=hp.sample_rate, n_fft=hp.n_fft, n_mels=hp.num_mels, fmin=hp.fmin, fmax=hp.fmax)


@lru_cache(maxsize=4)
def _inv_mel_basis(hp: MelConfig) -> np.ndarray:
    return np.linalg.pinv(mel_basis(hp))


def _amp_to_db(x: np.ndarray, hp: MelConfig) -> np.ndarray:
    min_level = np.exp(hp.min_level_db / 20 * np.log(10))
    return 20 * np.log10(np.maximum(min_level, x))


def _db_to_amp(x: np.ndarray) -> np.ndarray:
    return np.power(10.0, x * 0.05)


def _normalize(S: np.ndarray, hp: MelConfig) -> np.ndarray:
    m = hp.max_abs_value
    return np.clip((2 * m) * ((S - hp.min_level_db) / (-hp.min_level_db)) - m, -m, m)


def _denormalize(D: np.ndarray, hp: MelConfig) -> np.ndarray:
    m = hp.max_abs_value
    return ((np.clip(D, -m, m) + m) * -hp.min_level_db / (2 * m)) + hp.min_level_db


def melspectrogram(wav: np.ndarray, hp: MelConfig = MEL) -> np.ndarray:
    """Normalised log-mel of a wav at hp.sample_rate: float32 (80, 1 + len // 200) in [-4, 4]."""
    D = _stft(preemphasis(wav, hp.preemphasis, hp.preemphasize), hp)
    S = _amp_to_db(np.dot(mel_basis(hp), np.abs(D)), hp) - hp.ref_level_db
    return _normalize(S, hp).astype(np.float32)


def griffin_lim(mel: np.ndarray, hp: MelConfig = MEL,
                rng: np.random.RandomState | None = None, momentum: float = 0.0,
                iterations: int | None = None) -> np.ndarray:
    """Waveform from a normalised mel by Griffin-Lim phase reconstruction.

    mel: (80, frames) in [-4, 4]. Returns float64 (200 * (frames - 1),) at 16 kHz.
    `rng` draws the initial phases (`np.random.RandomState(seed)` reproduces the
    reference seeded with `np.random.seed(seed)`); None uses numpy's global RNG as the
    reference does.
    `momentum` 0 is the reference's algorithm. Above 0 it is the "fast Griffin-Lim" of
    Perraudin, Balazs and Søndergaard (2013): each iteration's phases are pushed on past
    the previous ones by this factor (0.99 is their choice), which converges to a more
    consistent spectrogram, and so less phasey, clearer speech, in fewer iterations.
    `iterations` defaults to hp.griffin_lim_iters (60).
    """
    iterations = hp.griffin_lim_iters if iterations is None else iterations
    D = _denormalize(mel, hp)
    S = np.maximum(1e-10, np.dot(_inv_mel_basis(hp), _db_to_amp(D + hp.ref_level_db)))
    S = np.abs(S ** hp.power).astype(complex)
    uniform = (rng or np.random).rand(*S.shape)
    if momentum <= 0:
        y = _istft(S * np.exp(2j * np.pi * uniform), hp)
        for _ in range(iterations):
            y = _istft(S * np.exp(1j * np.angle(_stft(y, hp))), hp)
        return inv_preemphasis(y, hp.preemphasis, hp.preemphasize)
    phases = np.exp(2j * np.pi * uniform)
    previous = np.zeros_like(S)
    for _ in range(iterations):
        projected = _stft(_istft(S * phases, hp), hp)
        # Extrapolate from the last projection; only the phase of the result is kept.
        pushed = projected - (momentum / (1 + momentum)) * previous
        phases = pushed / np.maximum(1e-16, np.abs(pushed))
        previous = projected
    return inv_preemphasis(_istft(S * phases, hp), hp.preemphasis, hp.preemphasize)


def stretch_frames(mel: np.ndarray, pace: float) -> np.ndarray:
    """`mel` (80, T) spoken `pace` times as fast: (80, round(T / pace)) by linear interpolation in time.

    For a synthesizer that cannot change its own speaking rate (the Tacotron): the vocoder
    then makes proportionally shorter or longer audio at the same pitch.
    """
    if pace == 1.0:
        return mel
    frames = mel.shape[1]
    target = max(1, int(round(frames / pace)))
    positions = np.linspace(0, frames - 1, target)
    return np.stack([np.interp(positions, np.arange(frames), channel) for channel in mel]).astype(mel.dtype)
