"""Adversarial fine-tuning of the starter vocoder: a multi-resolution spectrogram discriminator.

The starter vocoder learns first from its multi-resolution STFT distance alone, which
rewards the average spectrum and so leaves the fine structure a little smooth. A
discriminator that looks at log-magnitude spectrograms at three resolutions (the MRD of
UnivNet, Jang et al. 2021, as Vocos also uses) then teaches it what real speech's detail
looks like: least-squares GAN losses (Mao et al. 2017) plus feature matching (the L1
distance of the discriminator's inner activations on real and generated audio, Kumar et
al. 2019). It is used in training only and is never shipped.

Each resolution's network is small (16 channels, strided along frequency) so that a
training step stays about a second on one CPU core.

    audio (B, S) -> log |STFT| (B, 1, frames, bins) -> 2-D convs -> scores (B, 1, frames, bins')
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

RESOLUTIONS = ((1024, 256), (512, 128), (256, 64))  # (n_fft, hop) at 16 kHz


class SpectrogramDiscriminator(nn.Module):
    """One resolution: audio (B, S) -> (score map, [inner activations])."""

    def __init__(self, n_fft: int, hop: int, channels: int = 16):
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        strided = dict(kernel_size=(3, 9), stride=(1, 2), padding=(1, 4))
        self.convs = nn.ModuleList([
            weight_norm(nn.Conv2d(1, channels, **strided)),
            weight_norm(nn.Conv2d(channels, channels, **strided)),
            weight_norm(nn.Conv2d(channels, channels, **strided)),
            weight_norm(nn.Conv2d(channels, channels, **strided)),
            weight_norm(nn.Conv2d(channels, channels, (3, 3), padding=(1, 1))),
        ])
        self.out = weight_norm(nn.Conv2d(channels, 1, (3, 3), padding=(1, 1)))

    def forward(self, wav: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        spec = torch.stft(wav, self.n_fft, self.hop, self.n_fft, self.window, return_complex=True).abs()
        x = torch.log(spec.clamp_min(1e-5)).transpose(1, 2).unsqueeze(1)  # (B, 1, frames, bins)
        inner = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), 0.1)
            inner.append(x)
        x = self.out(x)
        inner.append(x)
        return x, inner


class MultiResolutionDiscriminator(nn.Module):
    """The three resolutions side by side: audio (B, S) -> [(score map, inner activations)] per resolution."""

    def __init__(self, resolutions: tuple[tuple[int, int], ...] = RESOLUTIONS, channels: int = 16):
        super().__init__()
        self.heads = nn.ModuleList(SpectrogramDiscriminator(n, h, channels) for n, h in resolutions)

    def forward(self, wav: torch.Tensor) -> list[tuple[torch.Tensor, list[torch.Tensor]]]:
        return [head(wav) for head in self.heads]


def discriminator_loss(real: list, fake: list) -> torch.Tensor:
    """Least squares: real scores towards 1, generated towards 0, summed over resolutions."""
    return sum(((r - 1) ** 2).mean() + (f ** 2).mean() for (r, _), (f, _) in zip(real, fake))


def generator_losses(real: list, fake: list) -> tuple[torch.Tensor, torch.Tensor]:
    """(adversarial: generated scores towards 1, feature matching: mean L1 of inner activations),
    summed over resolutions. `real` is the discriminator's output on the recordings, without gradient."""
    adversarial = sum(((f - 1) ** 2).mean() for f, _ in fake)
    matching = sum(sum((a - b.detach()).abs().mean() for a, b in zip(f_in, r_in)) / len(f_in)
                   for (_, f_in), (_, r_in) in zip(fake, real))
    return adversarial, matching
