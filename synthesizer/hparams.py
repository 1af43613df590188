"""Synthesizer hyperparameters (those of the published SV2TTS Tacotron).

The audio and mel fields come from `MelConfig`, which the vocoder extends too.
"""
from __future__ import annotations

from dataclasses import dataclass

from deepfake_audio_core.audio_config import MelConfig
from deepfake_audio_core.hparams import with_overrides

__all__ = ["SynthesizerHParams", "hparams", "with_overrides"]


@dataclass(frozen=True)
class SynthesizerHParams(MelConfig):
    """Tacotron settings on top of the shared mel configuration (`deepfake_audio_core.audio_config`)."""

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


hparams = SynthesizerHParams()
