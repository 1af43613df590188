"""WaveRNN vocoder hyperparameters (those of the published `vocoder.pt`).

The audio and mel fields come from `MelConfig`, the configuration the synthesizer's
mels are made with (`deepfake_audio_core.audio_config`).
"""
from __future__ import annotations

from dataclasses import dataclass

from deepfake_audio_core.audio_config import MelConfig
from deepfake_audio_core.hparams import with_overrides

__all__ = ["VocoderHParams", "hparams", "with_overrides"]


@dataclass(frozen=True)
class VocoderHParams(MelConfig):
    """WaveRNN settings on top of the shared mel configuration."""

    # Output: 9-bit mu-law classes sampled from a softmax ("RAW" mode)
    bits: int = 9
    mu_law: bool = True
    voc_mode: str = "RAW"

    # Network
    voc_upsample_factors: tuple[int, ...] = (5, 5, 8)  # product must equal hop_size
    voc_rnn_dims: int = 512
    voc_fc_dims: int = 512
    voc_compute_dims: int = 128
    voc_res_out_dims: int = 128
    voc_res_blocks: int = 10
    voc_pad: int = 2  # mel frames of context on each side for the aux ResNet

    # Generation (the defaults the reference's infer_waveform actually uses)
    voc_gen_batched: bool = True
    voc_target: int = 8000  # samples per fold
    voc_overlap: int = 800  # samples of cross-fade between folds
    fade_out_frames: int = 20  # final fade to silence, in mel frames

    # Training
    voc_batch_size: int = 100
    voc_lr: float = 1e-4
    voc_seq_len: int = 1000  # 5 hops
    voc_gen_at_checkpoint: int = 5

    @property
    def fade_out_samples(self) -> int:
        return self.fade_out_frames * self.hop_size


hparams = VocoderHParams()
