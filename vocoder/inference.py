"""Mel -> waveform with a loaded WaveRNN, or with Griffin-Lim when no vocoder is loaded."""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from deepfake_audio_core.checkpoint import MissingMessage, load_model
from deepfake_audio_core.modes import arithmetic
from deepfake_audio_core.rng import make_generator
from vocoder import rolling
from vocoder.fast import FastWaveRNN, mode_precision
from vocoder.hparams import hparams as hp
from vocoder.model import wavernn_from_hparams
from vocoder.rolling import MelTimeline, StreamStats

# Each reference vocoder call builds two throw-away GRUCells whose default initialisation
# draws this many uniform words from the generator before sampling starts. Burning the
# same number keeps seeded outputs identical to the reference.
REFERENCE_GRUCELL_WORDS = 3 * 512 * (512 + 512 + 2) + 3 * 512 * (544 + 512 + 2)


class Vocoder:
    """A loaded WaveRNN vocoder: (80, T) mel in [-4, 4] -> 16 kHz waveform of 200 * (T - 1) samples."""

    sample_rate = hp.sample_rate

    def __init__(self, weights: Path | str, device: str | torch.device = "cpu",
                 missing_message: MissingMessage | None = None):
        self.weights = Path(weights)
        self.device = torch.device(device)
        # A trained checkpoint of a non-published size says how big it is under "hparams".
        self.model, _ = load_model(self.weights, lambda c: wavernn_from_hparams(c.get("hparams")), "vocoder",
                                   missing_message)
        self.model.to(self.device).eval()
        self._fast: dict[str, FastWaveRNN] = {}
        self._fast_lock = threading.Lock()

    @property
    def step(self) -> int:
        return int(self.model.step.item())

    def infer_waveform(self, mel: np.ndarray, normalize: bool = True, batched: bool = True,
                       target: int = hp.voc_target, overlap: int = hp.voc_overlap, seed: int | None = None,
                       generator: torch.Generator | None = None,
                       progress: Callable[[int, int], None] | None = None, mode: str = "parity",
                       head: int = 0) -> np.ndarray:
        """Waveform of `mel` (80, T) float32: float64 (200 * (T - 1),), unclipped.

        `seed` (or `generator`) reproduces the reference call made right after
        `torch.manual_seed(seed)`: the same generator words are consumed in the same order.
        `mode` "parity" (default) is the reference's loop, bit for bit; "fast" (int8),
        "int8" and "fp16" sample the same network several times faster with int8 or fp16
        weights (same distribution, not the same bits: `vocoder.fast`,
        `deepfake_audio_core.modes`). `head` (fast modes) gives the first `head` samples
        their own short folds, generated first.
        """
        mel_t, generator = self._prepare(mel, normalize, seed, generator, burn=mode == "parity")
        if mode == "parity":
            return self.model.generate(mel_t, batched, target, overlap, generator, progress)
        return self.fast(mode).generate(mel_t, batched=batched, target=target, overlap=overlap, head=head,
                                        generator=generator, progress=progress)

    def stream_waveform(self, mel: np.ndarray, normalize: bool = True, target: int = hp.voc_target,
                        overlap: int = hp.voc_overlap, head: int = 0, seed: int | None = None,
                        generator: torch.Generator | None = None, mode: str = "fast", first_samples: int = 800,
                        min_samples: int = 1600, ending: bool = True,
                        progress: Callable[[int, int], None] | None = None) -> Iterator[np.ndarray]:
        """`infer_waveform(mode=mode)` in pieces, each yielded as soon as it is final.

        Pieces are float64; the first has at least `first_samples` samples, the others at
        least `min_samples` (except the last). Joined, they equal `infer_waveform`'s result
        for the same arguments. With `ending` False (fast modes) the mel is the start of a
        longer utterance: 200 * T samples, no final fade. "parity" is not streamed: one piece.
        """
        if mode == "parity":
            return iter([self.infer_waveform(mel, normalize, True, target, overlap, seed, generator, progress)])
        sampler = self.fast(mode)
        mel_t, generator = self._prepare(mel, normalize, seed, generator, burn=False)
        return sampler.stream(mel_t, target=target, overlap=overlap, head=head, generator=generator,
                              first_samples=first_samples, min_samples=min_samples, ending=ending,
                              progress=progress)

    def rolling_waveform(self, mel: np.ndarray | MelTimeline, generator: torch.Generator | None = None,
                         seed: int | None = None, mode: str = "fast", first_samples: int = 1 << 62,
                         min_samples: int = 1 << 62, stats: StreamStats | None = None) -> Iterator[np.ndarray]:
        """Rolling-fold audio (`vocoder.rolling`) of a mel (80, T) or of a `MelTimeline` still being
        filled (frames already scaled to [-1, 1]), in pieces as they are final: float64,
        200 * (T - 1) samples in all. The defaults give the whole waveform as one piece. The
        same mel and generator give the same samples however the frames arrive."""
        if arithmetic(mode) == "parity":
            raise ValueError("rolling folds run in the fast modes, not 'parity'")
        if generator is None:
            generator = make_generator(seed, self.device)
        if not isinstance(mel, MelTimeline):
            mel_t, _ = self._prepare(mel, True, None, generator, burn=False)
            mel = MelTimeline.complete(mel_t[0].cpu().numpy())
        return rolling.stream(self.fast(mode), mel, generator, first_samples=first_samples,
                              min_samples=min_samples, stats=stats)

    def fast(self, mode: str = "fast") -> FastWaveRNN:
        """The fused sampler of this model for a non-parity `mode`, built on first use (one per precision)."""
        precision = mode_precision(mode, self.device, self.model.rnn_dims)
        with self._fast_lock:
            if precision not in self._fast:
                self._fast[precision] = FastWaveRNN(self.model, precision)
            return self._fast[precision]

    def _prepare(self, mel: np.ndarray, normalize: bool, seed: int | None, generator: torch.Generator | None,
                 burn: bool = True) -> tuple[torch.Tensor, torch.Generator]:
        if mel.ndim != 2 or mel.shape[0] != hp.num_mels:
            raise ValueError(f"expected a mel of shape (80, frames), got {mel.shape}")
        if generator is None:
            generator = make_generator(seed, self.device)
        if burn and self.device.type == "cpu":
            torch.empty(REFERENCE_GRUCELL_WORDS).uniform_(generator=generator)
        if normalize:
            mel = mel / hp.max_abs_value
        mel_t = torch.from_numpy(np.ascontiguousarray(mel[None, ...], dtype=np.float32)).to(self.device)
        return mel_t, generator
