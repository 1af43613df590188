"""The starter vocoder: a small network that turns 80-band mels into 16 kHz audio on a CPU.

It ships in `saved_models/starter/` and replaces Griffin-Lim wherever no WaveRNN
`vocoder.pt` is present. All of its network runs at the mel frame rate (80 frames a
second), so it costs a few milliseconds per second of audio.

Two designs share one backbone (a 1-D ConvNeXt over the mel frames, as in Vocos,
Siuzdak 2023); the starter ships the one that measured best (bench/RESULTS.md):

- "source_filter" (harmonic-plus-noise, in the spirit of neural source-filter and DDSP
  vocoders: Wang & Yamagishi 2019, Engel et al. 2020). The network reads the pitch (log-F0)
  off the mel, a band-limited pulse train at that pitch and white noise are the sources,
  and the network's per-frame spectral envelopes filter them in the STFT domain (the
  harmonic one as a minimum-phase filter, like a vocal tract). The phase of every
  harmonic follows from the pitch, so the network needs no adversarial training to make
  coherent voiced speech, and any pitch in 50-600 Hz is produced the same way: one it
  never heard in training as well.
- "istft": the network predicts the STFT's magnitude and phase directly, then one inverse
  STFT (Vocos without its discriminators).

    mel (B, 80, T) -> backbone (B, T, C) -> heads -> STFT frames (B, 401, T) -> iSTFT -> (B, 200 T)

Frame t covers the 800 samples centred on sample 200 t (the mel's own framing), so a mel
of T frames gives 200 T samples.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from deepfake_audio_core.audio_config import MEL

ARCHITECTURE = "starter_vocoder"
DESIGNS = ("source_filter", "istft")
LOG_F0_CENTRE = math.log(150.0)  # log-F0 is predicted relative to this, in units of LOG_F0_SCALE
LOG_F0_SCALE = 0.5
PULSE_LEVEL = 0.1


@dataclass(frozen=True)
class StarterVocoderHParams:
    """Model sizes and training settings; times in samples at 16 kHz."""

    design: str = "source_filter"
    num_mels: int = MEL.num_mels
    channels: int = 192
    blocks: int = 6
    kernel: int = 7
    ffn_mult: int = 3
    n_fft: int = MEL.n_fft  # 800: 20 Hz bins, resolves the harmonics of an 80 Hz voice
    hop_size: int = MEL.hop_size
    f0_min: float = 50.0
    f0_max: float = 600.0
    harmonic_ceiling: float = 7800.0  # Hz: highest harmonic of the pulse train

    # Training
    batch_size: int = 16
    segment_frames: int = 48  # 0.6 s per item
    learning_rate: float = 2e-3
    warmup_steps: int = 300
    total_steps: int = 30_000  # cosine decay to a tenth at this step
    clip_grad_norm: float = 1.0
    f0_loss_weight: float = 1.0
    voicing_loss_weight: float = 0.2
    teacher_f0_until: int = 30_000  # the sources use the measured F0 (not the predicted one) before this step
    # Adversarial fine-tuning (deepfake_audio.training.vocoder_discriminator); 0 = the STFT loss alone
    adversarial_weight: float = 0.0
    feature_weight: float = 0.0


TRAINING_FIELDS = ("batch_size", "segment_frames", "learning_rate", "warmup_steps", "total_steps",
                   "clip_grad_norm", "f0_loss_weight", "voicing_loss_weight", "teacher_f0_until",
                   "adversarial_weight", "feature_weight")


class ConvNeXtBlock(nn.Module):
    """Depthwise conv + LayerNorm + pointwise MLP, residual: (B, C, T) -> (B, C, T)."""

    def __init__(self, channels: int, kernel: int, mult: int):
        super().__init__()
        self.depthwise = nn.Conv1d(channels, channels, kernel, padding=kernel // 2, groups=channels)
        self.norm = nn.LayerNorm(channels)
        self.up = nn.Linear(channels, mult * channels)
        self.down = nn.Linear(mult * channels, channels)
        self.scale = nn.Parameter(torch.full((channels,), 0.1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.depthwise(x).transpose(1, 2)
        y = self.down(F.gelu(self.up(self.norm(y))))
        return x + (self.scale * y).transpose(1, 2)


class Backbone(nn.Module):
    """mel (B, 80, T) in [-4, 4] -> features (B, T, C)."""

    def __init__(self, hp: StarterVocoderHParams):
        super().__init__()
        self.inp = nn.Conv1d(hp.num_mels, hp.channels, hp.kernel, padding=hp.kernel // 2)
        self.blocks = nn.ModuleList(ConvNeXtBlock(hp.channels, hp.kernel, hp.ffn_mult) for _ in range(hp.blocks))
        self.norm = nn.LayerNorm(hp.channels)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = self.inp(mel / 4.0)
        for block in self.blocks:
            x = block(x)
        return self.norm(x.transpose(1, 2))

    @property
    def receptive_frames(self) -> int:
        """Frames of context on each side that reach an output frame."""
        k = self.inp.kernel_size[0] // 2
        return k * (1 + len(self.blocks))


def stft_window(n_fft: int, device=None) -> torch.Tensor:
    return torch.hann_window(n_fft, device=device)


def istft(spec: torch.Tensor, hp: StarterVocoderHParams) -> torch.Tensor:
    """Complex frames (B, n_fft/2+1, T) -> audio (B, hop * T), frame t centred on sample hop * t."""
    t = spec.size(-1)
    wav = torch.istft(spec, hp.n_fft, hp.hop_size, hp.n_fft, stft_window(hp.n_fft, spec.device), center=True,
                      length=hp.hop_size * t)
    return wav


def stft(wav: torch.Tensor, hp: StarterVocoderHParams, frames: int) -> torch.Tensor:
    """Audio (B, hop * T) -> complex frames (B, n_fft/2+1, T), the framing `istft` inverts."""
    spec = torch.stft(wav, hp.n_fft, hp.hop_size, hp.n_fft, stft_window(hp.n_fft, wav.device), center=True,
                      return_complex=True)
    return spec[..., :frames]


def upsample_frames(x: torch.Tensor, hop: int) -> torch.Tensor:
    """Per-frame values (B, T) -> per-sample (B, hop * T), linear between frame centres."""
    b, t = x.shape
    padded = torch.cat([x, x[:, -1:]], dim=1)  # (B, T+1): hold the last value
    weights = torch.arange(hop, device=x.device, dtype=x.dtype) / hop  # (hop,)
    out = padded[:, :-1, None] * (1 - weights) + padded[:, 1:, None] * weights
    return out.reshape(b, t * hop)


def pulse_train(f0: torch.Tensor, hp: StarterVocoderHParams, phase0: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Band-limited pulse train: sum of cos(k phi) for every harmonic k f0 below the ceiling.

    f0 (B, T) Hz per frame -> (audio (B, hop * T), final phase (B,) in [0, 2 pi)). Every
    harmonic has the same amplitude whatever the pitch, so the filter that follows sets
    the harmonics' levels.
    Closed form (Dirichlet kernel): sum_{k=1..K} cos(k phi) = sin((K + 1/2) phi) / (2 sin(phi / 2)) - 1/2.
    """
    sr = MEL.sample_rate
    f0_s = upsample_frames(f0.double(), hp.hop_size)
    phase = torch.cumsum(2 * math.pi * f0_s / sr, dim=1)
    if phase0 is not None:
        phase = phase + phase0.double()[:, None]
    phase = torch.remainder(phase, 2 * math.pi)
    harmonics = torch.floor(hp.harmonic_ceiling / f0_s.clamp_min(hp.f0_min)).clamp_min(1)
    half = torch.sin(phase / 2)
    near = half.abs() < 1e-6
    safe = torch.where(near, torch.ones_like(half), half)
    value = torch.where(near, harmonics, torch.sin((harmonics + 0.5) * phase) / (2 * safe) - 0.5)
    # PULSE_LEVEL: each harmonic at a level like speech's in the STFT; the filter sets the rest
    return (PULSE_LEVEL * value).float(), phase[:, -1].float()


def minimum_phase(log_mag: torch.Tensor, n_fft: int) -> torch.Tensor:
    """Minimum-phase spectrum with magnitude exp(log_mag): (B, F, T) real -> (B, F, T) complex.

    Folding the real cepstrum onto positive quefrencies (Oppenheim & Schafer) gives the
    phase that puts a filter's energy as early as possible: the shape of a vocal tract's
    response to a glottal pulse, rather than a zero-phase click.
    """
    cepstrum = torch.fft.irfft(log_mag.transpose(1, 2), n=n_fft)  # (B, T, n_fft)
    fold = torch.zeros(n_fft, device=log_mag.device, dtype=log_mag.dtype)
    fold[0] = 1
    fold[1:n_fft // 2] = 2
    fold[n_fft // 2] = 1
    return torch.exp(torch.fft.rfft(cepstrum * fold, n=n_fft)).transpose(1, 2)


class StarterVocoderNet(nn.Module):
    """mel (B, 80, T) -> audio (B, 200 T); see the module's notes for the two designs."""

    architecture = ARCHITECTURE

    def __init__(self, hp: StarterVocoderHParams = StarterVocoderHParams()):
        super().__init__()
        if hp.design not in DESIGNS:
            raise ValueError(f"unknown starter vocoder design {hp.design!r}: {', '.join(DESIGNS)}")
        self.hp = hp
        bins = hp.n_fft // 2 + 1
        self.backbone = Backbone(hp)
        if hp.design == "source_filter":
            self.pitch = nn.Linear(hp.channels, 2)  # normalised log-F0, voicing logit
            self.harmonic = nn.Linear(hp.channels, bins)  # log-magnitude of the harmonic filter
            self.noise = nn.Linear(hp.channels, bins)  # log-magnitude of the noise filter
            # start near speech's levels: harmonics about as loud as the pulses, noise well below
            for layer, bias in ((self.harmonic, -1.0), (self.noise, -3.0)):
                nn.init.normal_(layer.weight, std=0.01)
                nn.init.constant_(layer.bias, bias)
        else:
            self.magnitude = nn.Linear(hp.channels, bins)
            self.phase = nn.Linear(hp.channels, 2 * bins)
        self.register_buffer("step", torch.zeros(1, dtype=torch.long))

    def pitch_of(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(log-F0 (B, T) natural log of Hz, voicing logit (B, T)) from backbone features."""
        out = self.pitch(features)
        log_f0 = LOG_F0_CENTRE + LOG_F0_SCALE * out[..., 0]
        return log_f0.clamp(math.log(self.hp.f0_min), math.log(self.hp.f0_max)), out[..., 1]

    def forward(self, mel: torch.Tensor, f0: torch.Tensor | None = None, noise: torch.Tensor | None = None,
                phase0: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """mel (B, 80, T); `f0` (B, T) Hz drives the pulse train instead of the predicted pitch
        (training; a pitch control). `noise` (B, 200 T) is the noise source (default: drawn).

        Returns {"wav": (B, 200 T)} and, for source_filter, "log_f0" and "voicing" (B, T).
        """
        hp = self.hp
        features = self.backbone(mel)
        t = mel.size(-1)
        if hp.design == "istft":
            mag = torch.exp(self.magnitude(features).clamp(max=6.0)).transpose(1, 2)
            re, im = self.phase(features).transpose(1, 2).chunk(2, dim=1)
            spec = mag * torch.exp(1j * torch.atan2(im, re))
            return {"wav": istft(spec, hp)}
        log_f0, voicing = self.pitch_of(features)
        drive = torch.exp(log_f0) if f0 is None else f0
        pulses, _ = pulse_train(drive, hp, phase0)
        if noise is None:
            noise = torch.randn_like(pulses)
        harmonic = minimum_phase(self.harmonic(features).clamp(max=6.0).transpose(1, 2), hp.n_fft)
        noisy = torch.exp(self.noise(features).clamp(max=6.0)).transpose(1, 2)
        spec = harmonic * stft(pulses, hp, t) + noisy * stft(noise, hp, t)
        return {"wav": istft(spec, hp), "log_f0": log_f0, "voicing": voicing}
