"""The one mel and audio configuration of SV2TTS's synthesizer and vocoder.

The synthesizer makes these mels and the vocoder turns them back into audio, so both
stages' hyperparameters extend `MelConfig` instead of copying its numbers. The values
are those of the published checkpoints: 16 kHz audio, 80 Slaney mel bands from 55 to
7600 Hz, 50 ms windows every 12.5 ms, dB values normalised to [-4, 4].
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MelConfig:
    """Audio and mel settings. Times in samples at `sample_rate` unless stated."""

    sample_rate: int = 16000
    n_fft: int = 800
    hop_size: int = 200  # 12.5 ms per mel frame
    win_size: int = 800  # 50 ms
    num_mels: int = 80
    fmin: int = 55
    fmax: int = 7600
    min_level_db: int = -100
    ref_level_db: int = 20
    max_abs_value: float = 4.0  # mels are normalised to [-max_abs_value, max_abs_value]
    preemphasis: float = 0.97
    preemphasize: bool = True
    signal_normalization: bool = True
    allow_clipping_in_normalization: bool = True
    symmetric_mels: bool = True
    rescale: bool = True
    rescaling_max: float = 0.9
    power: float = 1.5  # Griffin-Lim magnitude exponent
    griffin_lim_iters: int = 60

    @property
    def frame_seconds(self) -> float:
        return self.hop_size / self.sample_rate


MEL = MelConfig()
