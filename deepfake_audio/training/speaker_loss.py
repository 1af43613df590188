"""Speaker-consistency loss: does a generated mel sound like the voice it was asked for?

The synthesizer is conditioned on the speaker encoder's embedding; this loss runs the
(frozen) encoder on what the synthesizer made and penalises 1 - cos(embedding of the
output, embedding asked for) (the "speaker consistency loss" of YourTTS, Casanova et al.
2022). It needs no recording of the voice asked for, so it can be applied to embeddings
of voices the corpus has no transcribed speech of: that is how a synthesizer trained on a
few dozen voices learns to follow embeddings between them.

The encoder reads 40-band power mels of 16 kHz audio in 25 ms windows every 10 ms; the
synthesizer writes 80-band normalised log-amplitude mels of pre-emphasised audio in 50 ms
windows every 12.5 ms. `EncoderFrontEnd` converts the one into the other differentiably:
denormalise -> mel amplitude -> linear amplitude (pseudo-inverse of the mel filterbank)
-> power, corrected for the pre-emphasis and the shorter window -> 40-band mel ->
resampled in time from 12.5 ms to 10 ms frames.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from deepfake_audio_core.audio_config import MEL, MelConfig
from encoder.hparams import hparams as encoder_hp
from encoder.model import SpeakerEncoder


def _encoder_mel_basis() -> np.ndarray:
    import librosa
    n_fft = encoder_hp.sampling_rate * encoder_hp.mel_window_length // 1000
    return librosa.filters.mel(sr=encoder_hp.sampling_rate, n_fft=n_fft, n_mels=encoder_hp.mel_n_channels)


class EncoderFrontEnd(nn.Module):
    """Normalised synthesizer mels (B, 80, T) -> the encoder's power mels (B, T', 40), T' = 1 + (T - 1) * 1.25.

    `gain` scales the power; 1 matches audio at the level of the training mels (peak 0.9).
    """

    def __init__(self, hp: MelConfig = MEL, gain: float = 1.0):
        super().__init__()
        import librosa
        self.hp = hp
        synth_basis = librosa.filters.mel(sr=hp.sample_rate, n_fft=hp.n_fft, n_mels=hp.num_mels, fmin=hp.fmin,
                                          fmax=hp.fmax)
        enc_basis = _encoder_mel_basis()  # (40, 201)
        synth_freqs = np.linspace(0, hp.sample_rate / 2, hp.n_fft // 2 + 1)
        enc_freqs = np.linspace(0, encoder_hp.sampling_rate / 2, enc_basis.shape[1])
        # Power of the pre-emphasised signal -> power of the signal itself
        emphasis = np.abs(1 - hp.preemphasis * np.exp(-2j * np.pi * synth_freqs / hp.sample_rate)) ** 2
        # The encoder's bins are twice as wide: each takes the mean power of the two synthesizer bins it
        # spans, scaled by the window-energy ratio (400 vs 800 samples: half the power of noise)
        to_enc = np.zeros((len(enc_freqs), len(synth_freqs)))
        for j, f in enumerate(enc_freqs):
            to_enc[j] = np.interp(synth_freqs, [f - enc_freqs[1], f, f + enc_freqs[1]], [0, 1, 0], left=0, right=0)
        to_enc /= np.maximum(to_enc.sum(1, keepdims=True), 1e-9)
        to_enc *= 0.5
        self.register_buffer("inv_basis", torch.from_numpy(np.linalg.pinv(synth_basis)).float())  # (401, 80)
        self.register_buffer("power_to_mel", torch.from_numpy(enc_basis @ (to_enc / emphasis[None, :])).float())
        self.gain = gain
        self.step_ratio = (encoder_hp.sampling_rate * encoder_hp.mel_window_step / 1000) / hp.hop_size

    def forward(self, mels: torch.Tensor) -> torch.Tensor:
        hp = self.hp
        m = hp.max_abs_value
        db = (mels.clamp(-m, m) + m) * (-hp.min_level_db / (2 * m)) + hp.min_level_db + hp.ref_level_db
        amp = torch.pow(10.0, db * 0.05)
        linear = torch.relu(self.inv_basis @ amp)  # (B, 401, T)
        power = self.power_to_mel @ linear.pow(2) * self.gain  # (B, 40, T)
        t = mels.size(2)
        n_out = int((t - 1) / self.step_ratio) + 1
        positions = torch.arange(n_out, device=mels.device, dtype=mels.dtype) * self.step_ratio
        lo = positions.floor().long().clamp_max(t - 1)
        hi = (lo + 1).clamp_max(t - 1)
        w = (positions - lo.to(mels.dtype))[None, None, :]
        frames = power[:, :, lo] * (1 - w) + power[:, :, hi] * w
        return frames.transpose(1, 2)


class SpeakerConsistency(nn.Module):
    """1 - cos(encoder(mel), embedding), averaged over the batch; the encoder stays frozen.

    Each mel is cut to one window of at most `window` encoder frames (1.6 s, the encoder's
    partial utterance), at a random place inside its real frames.
    """

    def __init__(self, encoder: SpeakerEncoder, hp: MelConfig = MEL, window: int = encoder_hp.partials_n_frames):
        super().__init__()
        self.front_end = EncoderFrontEnd(hp)
        self.encoder = encoder.eval()
        for p in self.encoder.parameters():
            p.requires_grad_(False)
        self.window = window

    def embed(self, mels: torch.Tensor, mel_lens: torch.Tensor, generator: torch.Generator | None = None
              ) -> torch.Tensor:
        """mels (B, 80, T), real lengths (B,) -> unit embeddings (B, 256)."""
        frames = self.front_end(mels)
        enc_lens = ((mel_lens - 1).float() / self.front_end.step_ratio).long() + 1
        length = int(min(self.window, int(enc_lens.min())))
        spare = (enc_lens - length).clamp_min(0).float()
        starts = (torch.rand(len(mels), generator=generator) * (spare + 1)).long().clamp_max(spare.long())
        index = starts[:, None] + torch.arange(length)[None, :]
        crops = torch.gather(frames, 1, index[..., None].expand(-1, -1, frames.size(2)))
        # cuDNN-free LSTM backward needs train mode; no dropout in this encoder, so outputs are identical
        self.encoder.train()
        try:
            return self.encoder(crops)
        finally:
            self.encoder.eval()

    def forward(self, mels: torch.Tensor, mel_lens: torch.Tensor, embeddings: torch.Tensor,
                generator: torch.Generator | None = None) -> torch.Tensor:
        embeds = self.embed(mels, mel_lens, generator)
        return (1 - (embeds * F.normalize(embeddings, dim=1)).sum(1)).mean()


def load_consistency(weights=None, hp: MelConfig = MEL) -> SpeakerConsistency:
    """The loss with the engine's speaker encoder (default: the embedded official weights)."""
    from encoder.inference import Encoder
    return SpeakerConsistency(Encoder(weights).model, hp)
