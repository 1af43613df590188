"""Mel -> waveform with a loaded WaveRNN, or with Griffin-Lim when no vocoder is loaded."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch

from deepfake_audio.checkpoint import load_into
from vocoder import hparams as hp
from vocoder.model import WaveRNN

# Each reference vocoder call builds two throw-away GRUCells whose default initialisation
# draws this many uniform words from the generator before sampling starts. Burning the
# same number keeps seeded outputs identical to the reference.
REFERENCE_GRUCELL_WORDS = 3 * 512 * (512 + 512 + 2) + 3 * 512 * (544 + 512 + 2)


class Vocoder:
    """A loaded WaveRNN vocoder: (80, T) mel in [-4, 4] -> 16 kHz waveform of 200 * (T - 1) samples."""

    sample_rate = hp.sample_rate

    def __init__(self, weights: Path | str, device: str | torch.device = "cpu"):
        self.weights = Path(weights)
        self.device = torch.device(device)
        self.model = WaveRNN()
        load_into(self.model, self.weights, "vocoder")
        self.model.to(self.device).eval()

    @property
    def step(self) -> int:
        return int(self.model.step.item())

    def infer_waveform(self, mel: np.ndarray, normalize: bool = True, batched: bool = True,
                       target: int = hp.voc_target, overlap: int = hp.voc_overlap, seed: int | None = None,
                       generator: torch.Generator | None = None,
                       progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        """Waveform of `mel` (80, T) float32: float64 (200 * (T - 1),), unclipped.

        `seed` (or `generator`) reproduces the reference call made right after
        `torch.manual_seed(seed)`: the same generator words are consumed in the same order.
        """
        if mel.ndim != 2 or mel.shape[0] != hp.num_mels:
            raise ValueError(f"expected a mel of shape (80, frames), got {mel.shape}")
        if generator is None:
            from synthesizer.inference import make_generator
            generator = make_generator(seed, self.device)
        torch.empty(REFERENCE_GRUCELL_WORDS).uniform_(generator=generator) if self.device.type == "cpu" else None
        if normalize:
            mel = mel / hp.mel_max_abs_value
        mel_t = torch.from_numpy(np.ascontiguousarray(mel[None, ...], dtype=np.float32)).to(self.device)
        return self.model.generate(mel_t, batched, target, overlap, generator, progress)
