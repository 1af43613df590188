"""Speaker encoder hyperparameters (those of the published SV2TTS encoder)."""
from __future__ import annotations

from dataclasses import dataclass

from deepfake_audio_core.hparams import with_overrides

__all__ = ["EncoderHParams", "hparams", "with_overrides"]


@dataclass(frozen=True)
class EncoderHParams:
    """GE2E speaker encoder: its own 40-band mel front end, VAD trimming, network and training."""

    # Mel-filterbank
    mel_window_length: int = 25  # ms
    mel_window_step: int = 10  # ms
    mel_n_channels: int = 40

    # Audio
    sampling_rate: int = 16000  # Hz
    partials_n_frames: int = 160  # 1600 ms per partial utterance
    inference_n_frames: int = 80  # 800 ms (unused by the reference at inference)

    # Voice activity detection
    vad_window_length: int = 30  # ms; webrtcvad accepts 10, 20 or 30
    vad_moving_average_width: int = 8  # windows
    vad_max_silence_length: int = 6  # windows of silence kept inside speech

    audio_norm_target_dBFS: int = -30

    # Model
    model_hidden_size: int = 256
    model_embedding_size: int = 256
    model_num_layers: int = 3

    # Training
    learning_rate_init: float = 1e-4
    speakers_per_batch: int = 64
    utterances_per_speaker: int = 10


hparams = EncoderHParams()
