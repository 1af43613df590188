"""What Resemble's Perth watermarker imports but this install cannot provide otherwise.

Perth (`resemble-perth`) imports three transforms from `torchaudio`, whose PyPI wheel is
built against other torch releases and does not load with the CPU torch pinned here, and
`pkg_resources.resource_filename`, which setuptools 82 and later no longer ship. Without
the latter, `perth.PerthImplicitWatermarker` silently becomes None.

`install()` registers small stand-ins as `torchaudio.transforms` and `pkg_resources` in
`sys.modules`, each only when the real module cannot be imported. The stand-ins do what
Perth needs and nothing more:

* `Spectrogram(power=None)`: the complex STFT (`torch.stft`, centred, reflect-padded,
  unnormalised, one-sided), window as a buffer named `window` (Perth's checkpoint holds it);
* `InverseSpectrogram`: `torch.istft` with the same settings and its `window` buffer;
* `TimeStretch`: only its `phase_advance` buffer (linspace(0, pi * hop, n_freq), one
  column), which Perth's checkpoint holds; Perth stretches only while training.
"""
from __future__ import annotations

import importlib.resources
import math
import sys
import types
from typing import Callable

import torch
from torch import nn


class Spectrogram(nn.Module):
    """(..., samples) -> (..., n_fft // 2 + 1, frames): complex when `power` is None, else |STFT|^power."""

    def __init__(self, n_fft: int = 400, win_length: int | None = None, hop_length: int | None = None,
                 pad: int = 0, window_fn: Callable[[int], torch.Tensor] = torch.hann_window,
                 power: float | None = 2.0, normalized: bool = False, wkwargs: dict | None = None,
                 center: bool = True, pad_mode: str = "reflect", onesided: bool = True):
        super().__init__()
        if normalized:
            raise NotImplementedError("this stand-in computes unnormalised spectrograms only")
        self.n_fft = n_fft
        self.win_length = win_length or n_fft
        self.hop_length = hop_length or self.win_length // 2
        self.register_buffer("window", window_fn(self.win_length, **(wkwargs or {})))
        self.pad, self.power, self.center, self.pad_mode, self.onesided = pad, power, center, pad_mode, onesided

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        shape = waveform.shape
        frames = waveform.reshape(-1, shape[-1])
        if self.pad:
            frames = nn.functional.pad(frames, (self.pad, self.pad))
        spec = torch.stft(frames, self.n_fft, self.hop_length, self.win_length, self.window, center=self.center,
                          pad_mode=self.pad_mode, normalized=False, onesided=self.onesided, return_complex=True)
        spec = spec.reshape(shape[:-1] + spec.shape[-2:])
        return spec if self.power is None else spec.abs().pow(self.power)


class InverseSpectrogram(nn.Module):
    """Complex (..., n_fft // 2 + 1, frames) -> (..., samples), the inverse of `Spectrogram(power=None)`."""

    def __init__(self, n_fft: int = 400, win_length: int | None = None, hop_length: int | None = None,
                 pad: int = 0, window_fn: Callable[[int], torch.Tensor] = torch.hann_window,
                 normalized: bool = False, wkwargs: dict | None = None, center: bool = True,
                 pad_mode: str = "reflect", onesided: bool = True):
        super().__init__()
        if normalized or pad:
            raise NotImplementedError("this stand-in inverts unnormalised, unpadded spectrograms only")
        self.n_fft = n_fft
        self.win_length = win_length or n_fft
        self.hop_length = hop_length or self.win_length // 2
        self.register_buffer("window", window_fn(self.win_length, **(wkwargs or {})))
        self.center, self.onesided = center, onesided

    def forward(self, spectrogram: torch.Tensor, length: int | None = None) -> torch.Tensor:
        shape = spectrogram.shape
        spec = spectrogram.reshape(-1, shape[-2], shape[-1])
        wave = torch.istft(spec, self.n_fft, self.hop_length, self.win_length, self.window, center=self.center,
                           normalized=False, onesided=self.onesided, length=length)
        return wave.reshape(shape[:-2] + wave.shape[-1:])


class TimeStretch(nn.Module):
    """Holds the phase-advance buffer of a phase vocoder; stretching itself is not provided."""

    def __init__(self, hop_length: int | None = None, n_freq: int = 201, fixed_rate: float | None = None):
        super().__init__()
        hop_length = hop_length if hop_length is not None else n_freq - 1
        self.register_buffer("phase_advance", torch.linspace(0, math.pi * hop_length, n_freq)[..., None])

    def forward(self, spectrogram: torch.Tensor, rate: float | None = None) -> torch.Tensor:
        raise NotImplementedError("time stretching is not needed to embed or detect a watermark")


def resource_filename(package: str, resource: str) -> str:
    """`pkg_resources.resource_filename` for a resource inside an installed package."""
    return str(importlib.resources.files(package) / resource)


def _importable(name: str) -> bool:
    try:
        __import__(name)
        return True
    except Exception:  # a broken wheel raises OSError, RuntimeError, ...: treat it as absent
        sys.modules.pop(name, None)
        return False


def install() -> list[str]:
    """Register the stand-ins that are needed; returns the module names it registered."""
    registered = []
    if "torchaudio.transforms" not in sys.modules and not _importable("torchaudio.transforms"):
        transforms = types.ModuleType("torchaudio.transforms")
        transforms.Spectrogram, transforms.InverseSpectrogram = Spectrogram, InverseSpectrogram
        transforms.TimeStretch = TimeStretch
        package = types.ModuleType("torchaudio")
        package.transforms = transforms
        package.__path__ = []  # a package, so that `import torchaudio.transforms` finds the submodule
        sys.modules["torchaudio"], sys.modules["torchaudio.transforms"] = package, transforms
        registered.append("torchaudio.transforms")
    if "pkg_resources" not in sys.modules and not _importable("pkg_resources"):
        shim = types.ModuleType("pkg_resources")
        shim.resource_filename = resource_filename
        sys.modules["pkg_resources"] = shim
        registered.append("pkg_resources")
    return registered
