"""WaveRNN vocoder (state-dict layout of the published `vocoder.pt`).

Mel frames (80, T) at 12.5 ms are upsampled to one conditioning vector per output
sample; a GRU network then predicts each 9-bit mu-law sample from the previous one.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vocoder.hparams import hparams as hp
from deepfake_audio_core.emphasis import de_emphasis
from vocoder.audio import decode_mu_law


class ResBlock(nn.Module):
    def __init__(self, dims: int):
        super().__init__()
        self.conv1 = nn.Conv1d(dims, dims, kernel_size=1, bias=False)
        self.conv2 = nn.Conv1d(dims, dims, kernel_size=1, bias=False)
        self.batch_norm1 = nn.BatchNorm1d(dims)
        self.batch_norm2 = nn.BatchNorm1d(dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.batch_norm1(self.conv1(x)))
        return x + self.batch_norm2(self.conv2(y))


class MelResNet(nn.Module):
    """Auxiliary features: (B, 80, T + 2 pad) mel -> (B, res_out_dims, T)."""

    def __init__(self, res_blocks: int, in_dims: int, compute_dims: int, res_out_dims: int, pad: int):
        super().__init__()
        self.conv_in = nn.Conv1d(in_dims, compute_dims, kernel_size=pad * 2 + 1, bias=False)
        self.batch_norm = nn.BatchNorm1d(compute_dims)
        self.layers = nn.ModuleList(ResBlock(compute_dims) for _ in range(res_blocks))
        self.conv_out = nn.Conv1d(compute_dims, res_out_dims, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.batch_norm(self.conv_in(x)))
        for layer in self.layers:
            x = layer(x)
        return self.conv_out(x)


class Stretch2d(nn.Module):
    """Nearest-neighbour upsampling of the last two axes by (y_scale, x_scale)."""

    def __init__(self, x_scale: int, y_scale: int):
        super().__init__()
        self.x_scale = x_scale
        self.y_scale = y_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.repeat_interleave(self.y_scale, dim=-2).repeat_interleave(self.x_scale, dim=-1)


class UpsampleNetwork(nn.Module):
    """(B, 80, T + 2 pad) mel -> upsampled mel (B, hop*T, 80) and aux (B, hop*T, res_out_dims)."""

    def __init__(self, feat_dims: int, upsample_scales: tuple[int, ...], compute_dims: int, res_blocks: int,
                 res_out_dims: int, pad: int):
        super().__init__()
        total_scale = int(np.prod(upsample_scales))
        self.indent = pad * total_scale
        self.resnet = MelResNet(res_blocks, feat_dims, compute_dims, res_out_dims, pad)
        self.resnet_stretch = Stretch2d(total_scale, 1)
        self.up_layers = nn.ModuleList()
        for scale in upsample_scales:
            kernel = (1, scale * 2 + 1)
            conv = nn.Conv2d(1, 1, kernel_size=kernel, padding=(0, scale), bias=False)
            conv.weight.data.fill_(1.0 / kernel[1])
            self.up_layers.append(Stretch2d(scale, 1))
            self.up_layers.append(conv)

    def forward(self, m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        aux = self.resnet_stretch(self.resnet(m).unsqueeze(1)).squeeze(1)
        m = m.unsqueeze(1)
        for layer in self.up_layers:
            m = layer(m)
        m = m.squeeze(1)[:, :, self.indent:-self.indent]
        return m.transpose(1, 2), aux.transpose(1, 2)


class WaveRNN(nn.Module):
    """The SV2TTS WaveRNN in RAW mode (softmax over 2^bits mu-law classes)."""

    def __init__(self, rnn_dims: int = hp.voc_rnn_dims, fc_dims: int = hp.voc_fc_dims, bits: int = hp.bits,
                 pad: int = hp.voc_pad, upsample_factors: tuple[int, ...] = hp.voc_upsample_factors,
                 feat_dims: int = hp.num_mels, compute_dims: int = hp.voc_compute_dims,
                 res_out_dims: int = hp.voc_res_out_dims, res_blocks: int = hp.voc_res_blocks,
                 hop_length: int = hp.hop_size, sample_rate: int = hp.sample_rate, mode: str = hp.voc_mode):
        super().__init__()
        if mode != "RAW":
            raise ValueError(f"only RAW mode is supported, not {mode}")
        self.mode = mode
        self.pad = pad
        self.n_classes = 2**bits
        self.rnn_dims = rnn_dims
        self.aux_dims = res_out_dims // 4
        self.hop_length = hop_length
        self.sample_rate = sample_rate
        self.upsample = UpsampleNetwork(feat_dims, upsample_factors, compute_dims, res_blocks, res_out_dims, pad)
        self.I = nn.Linear(feat_dims + self.aux_dims + 1, rnn_dims)
        self.rnn1 = nn.GRU(rnn_dims, rnn_dims, batch_first=True)
        self.rnn2 = nn.GRU(rnn_dims + self.aux_dims, rnn_dims, batch_first=True)
        self.fc1 = nn.Linear(rnn_dims + self.aux_dims, fc_dims)
        self.fc2 = nn.Linear(fc_dims + self.aux_dims, fc_dims)
        self.fc3 = nn.Linear(fc_dims, self.n_classes)
        self.step = nn.Parameter(torch.zeros(1).long(), requires_grad=False)

    def conditioning(self, mels: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(1, 80, T) mel in [-1, 1] -> upsampled mel (1, hop*T, 80) and 4 aux splits (1, hop*T, 32)."""
        mels = F.pad(mels, (self.pad, self.pad))  # zeros: mid-range, not silence, as in the reference
        mels, aux = self.upsample(mels)
        d = self.aux_dims
        return mels, [aux[:, :, d * i:d * (i + 1)] for i in range(4)]

    @torch.no_grad()
    def generate(self, mels: torch.Tensor, batched: bool = True, target: int = hp.voc_target,
                 overlap: int = hp.voc_overlap, generator: torch.Generator | None = None,
                 progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        """Sample a waveform for a (1, 80, T) mel already scaled to [-1, 1].

        Batched mode folds the sequence into segments of `target + 2 * overlap` samples,
        generates them in lockstep and cross-fades them back together. Returns float64
        (200 * (T - 1),) at 16 kHz: mu-law decoded, de-emphasised and faded out over its
        last 4000 samples (the whole of it when shorter). Not clipped.
        """
        if self.training:
            raise RuntimeError("generate() needs eval mode: call model.eval() first")
        wave_len = (mels.size(-1) - 1) * self.hop_length
        cond, aux_split = self.conditioning(mels)
        if batched:
            cond = fold_with_overlap(cond, target, overlap)
            aux_split = [fold_with_overlap(a, target, overlap) for a in aux_split]
        samples = self.sample(cond, aux_split, generator, progress)
        output = samples.cpu().numpy().astype(np.float64)
        output = xfade_and_unfold(output, overlap) if batched else output[0]
        output = decode_mu_law(output, self.n_classes, False)
        if hp.preemphasize:
            output = de_emphasis(output, hp.preemphasis)
        output = output[:wave_len]
        fade = min(hp.fade_out_samples, len(output))  # the reference crashes below 21 frames
        output[len(output) - fade:] *= np.linspace(1, 0, fade)
        return output

    def sample(self, cond: torch.Tensor, aux_split: list[torch.Tensor], generator: torch.Generator | None,
               progress: Callable[[int, int], None] | None = None) -> torch.Tensor:
        """The autoregressive loop: (B, S, 80) conditioning -> (B, S) samples in [-1, 1], float32."""
        batch, seq_len, _ = cond.shape
        device = cond.device
        h1 = torch.zeros(batch, self.rnn_dims, device=device)
        h2 = torch.zeros(batch, self.rnn_dims, device=device)
        x = torch.zeros(batch, 1, device=device)
        rnn1 = (self.rnn1.weight_ih_l0, self.rnn1.weight_hh_l0, self.rnn1.bias_ih_l0, self.rnn1.bias_hh_l0)
        rnn2 = (self.rnn2.weight_ih_l0, self.rnn2.weight_hh_l0, self.rnn2.bias_ih_l0, self.rnn2.bias_hh_l0)
        a1, a2, a3, a4 = aux_split
        output = torch.empty(batch, seq_len, device=device)
        report_every = max(1, seq_len // 100)
        for i in range(seq_len):
            x = self.I(torch.cat([x, cond[:, i, :], a1[:, i, :]], dim=1))
            h1 = torch.gru_cell(x, h1, *rnn1)
            x = x + h1
            h2 = torch.gru_cell(torch.cat([x, a2[:, i, :]], dim=1), h2, *rnn2)
            x = x + h2
            x = F.relu(self.fc1(torch.cat([x, a3[:, i, :]], dim=1)))
            x = F.relu(self.fc2(torch.cat([x, a4[:, i, :]], dim=1)))
            posterior = F.softmax(self.fc3(x), dim=1)
            # Categorical(probs) renormalises before sampling; the division changes bits, so keep it.
            posterior = posterior / posterior.sum(-1, keepdim=True)
            classes = torch.multinomial(posterior, 1, True, generator=generator)
            sample = 2 * classes.float() / (self.n_classes - 1.0) - 1.0
            output[:, i] = sample[:, 0]
            x = sample
            if progress is not None and (i + 1) % report_every == 0:
                progress(i + 1, seq_len)
        return output

    def forward(self, x: torch.Tensor, mels: torch.Tensor) -> torch.Tensor:
        """Training pass (teacher forcing over a window of samples).

        x (B, S) float: the previous sample at each position, in [-1, 1].
        mels (B, 80, S / hop + 2 * pad) float in [-1, 1]: the window's frames plus `pad`
        frames of context on each side. Returns logits (B, S, 2^bits) of each sample.
        """
        batch = x.size(0)
        cond, aux = self.upsample(mels)
        d = self.aux_dims
        a1, a2, a3, a4 = (aux[:, :, d * i:d * (i + 1)] for i in range(4))
        h1 = torch.zeros(1, batch, self.rnn_dims, device=x.device)
        h2 = torch.zeros(1, batch, self.rnn_dims, device=x.device)
        x = self.I(torch.cat([x.unsqueeze(-1), cond, a1], dim=2))
        residual = x
        x, _ = self.rnn1(x, h1)
        x = x + residual
        residual = x
        x, _ = self.rnn2(torch.cat([x, a2], dim=2), h2)
        x = x + residual
        x = F.relu(self.fc1(torch.cat([x, a3], dim=2)))
        x = F.relu(self.fc2(torch.cat([x, a4], dim=2)))
        return self.fc3(x)


def fold_with_overlap(x: torch.Tensor, target: int, overlap: int) -> torch.Tensor:
    """(1, L, C) -> (n_folds, target + 2 * overlap, C) overlapping segments, zero-padding the end."""
    _, total_len, features = x.shape
    num_folds = max((total_len - overlap) // (target + overlap), 0)
    extended_len = num_folds * (overlap + target) + overlap
    remaining = total_len - extended_len
    if remaining != 0:
        num_folds += 1
        padding = target + 2 * overlap - remaining
        x = F.pad(x, (0, 0, 0, max(padding, 0)))
    return torch.stack([x[0, i * (target + overlap):i * (target + overlap) + target + 2 * overlap]
                        for i in range(num_folds)])


def xfade_and_unfold(y: np.ndarray, overlap: int) -> np.ndarray:
    """(n_folds, target + 2 * overlap) float64 -> (n_folds * (target + overlap) + overlap,).

    Each fold's ends are multiplied by an equal-power fade preceded (or followed) by
    overlap / 2 samples of silence, then the folds are overlap-added.
    """
    num_folds, length = y.shape
    target = length - 2 * overlap
    total_len = num_folds * (target + overlap) + overlap
    silence_len = overlap // 2
    fade_len = overlap - silence_len
    silence = np.zeros(silence_len, dtype=np.float64)
    t = np.linspace(-1, 1, fade_len, dtype=np.float64)
    fade_in = np.concatenate([silence, np.sqrt(0.5 * (1 + t))])
    fade_out = np.concatenate([np.sqrt(0.5 * (1 - t)), silence])
    y = y.copy()
    y[:, :overlap] *= fade_in
    y[:, -overlap:] *= fade_out
    unfolded = np.zeros(total_len, dtype=np.float64)
    for i in range(num_folds):
        start = i * (target + overlap)
        unfolded[start:start + length] += y[i]
    return unfolded


# Hyperparameters (names of vocoder.hparams) that size the network, and the WaveRNN
# arguments they set; a trained checkpoint keeps those it overrides under "hparams".
MODEL_HPARAMS = {"voc_rnn_dims": "rnn_dims", "voc_fc_dims": "fc_dims", "bits": "bits", "voc_pad": "pad",
                 "voc_upsample_factors": "upsample_factors", "voc_compute_dims": "compute_dims",
                 "voc_res_out_dims": "res_out_dims", "voc_res_blocks": "res_blocks"}


def wavernn_from_hparams(overrides=None) -> WaveRNN:
    """A WaveRNN of the published size, or sized by `overrides` ({hparam name: value})."""
    overrides = dict(overrides or {})
    kwargs = {arg: overrides.get(name, getattr(hp, name)) for name, arg in MODEL_HPARAMS.items()}
    kwargs["upsample_factors"] = tuple(kwargs["upsample_factors"])
    return WaveRNN(**kwargs)
