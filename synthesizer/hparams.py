"""Synthesizer hyperparameters (those of the published SV2TTS Tacotron).

The audio settings here are also the vocoder's: the vocoder consumes these mels.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SynthesizerHParams:
    """Tacotron and mel configuration. Times in samples at `sample_rate` unless stated."""

    # Audio and mel (shared with the vocoder)
    sample_rate: int = 16000
    n_fft: int = 800
    hop_size: int = 200  # 12.5 ms
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

    # Tacotron
    tts_embed_dims: int = 512
    tts_encoder_dims: int = 256
    tts_decoder_dims: int = 128
    tts_postnet_dims: int = 512
    tts_encoder_K: int = 5
    tts_lstm_dims: int = 1024
    tts_postnet_K: int = 5
    tts_num_highways: int = 4
    tts_dropout: float = 0.5
    tts_stop_threshold: float = -3.4  # trailing frames whose max is below this are trimmed
    max_r: int = 20  # mel_proj always produces this many frames per step
    speaker_embedding_size: int = 256
    tts_cleaner_names: tuple[str, ...] = ("english_cleaners",)

    # Inference
    synthesis_batch_size: int = 16
    max_decoder_frames: int = 2000  # 25 s: the reference's hard cap per generate call

    # Training
    tts_schedule: tuple[tuple[int, float, int, int], ...] = (
        (2, 1e-3, 20_000, 12), (2, 5e-4, 40_000, 12), (2, 2e-4, 80_000, 12),
        (2, 1e-4, 160_000, 12), (2, 3e-5, 320_000, 12), (2, 1e-5, 640_000, 12))
    tts_clip_grad_norm: float = 1.0
    max_mel_frames: int = 900
    trim_silence: bool = True
    utterance_min_duration: float = 1.6  # s
    silence_min_duration_split: float = 0.4  # s

    @property
    def frame_seconds(self) -> float:
        return self.hop_size / self.sample_rate


hparams = SynthesizerHParams()


def _as_field_value(value):
    # Checkpoints store tuples as lists when they pass through JSON; the dataclass wants tuples.
    return tuple(_as_field_value(v) for v in value) if isinstance(value, (list, tuple)) else value


def with_overrides(hp: SynthesizerHParams, overrides=None) -> SynthesizerHParams:
    """`hp` with {field name: value} replaced (e.g. a checkpoint's "hparams"); unknown names are ignored."""
    from dataclasses import fields, replace
    names = {f.name for f in fields(SynthesizerHParams)}
    changes = {k: _as_field_value(v) for k, v in dict(overrides or {}).items() if k in names}
    return replace(hp, **changes) if changes else hp
