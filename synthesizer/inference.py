"""Text + speaker embedding -> mel spectrograms with a loaded Tacotron.

`Synthesizer.synthesize_spectrograms` reproduces the reference wrapper exactly
(batches of 16, zero-padded ids, common stop, trailing trim); it is the parity path.
Sentence splitting for long text lives in `synthesizer.sentences` and is applied by the
pipeline on top of it.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from deepfake_audio.checkpoint import check_state_dict, model_state_of, read_checkpoint
from deepfake_audio.errors import TextError
from synthesizer import fast
from synthesizer.hparams import SynthesizerHParams, hparams as default_hparams, with_overrides
from synthesizer.model import Tacotron
from synthesizer.text import has_speakable_characters, text_to_sequence


def make_generator(seed: int | None, device: torch.device | str = "cpu") -> torch.Generator:
    """A private RNG: seeded with `seed`, or from OS entropy when None."""
    generator = torch.Generator(device=device)
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(int(seed))
    return generator


class Synthesizer:
    """A loaded Tacotron synthesizer. Outputs mels (80, frames) in [-4, 4], 12.5 ms frames."""

    sample_rate = default_hparams.sample_rate

    def __init__(self, weights: Path | str, device: str | torch.device = "cpu",
                 hp: SynthesizerHParams = default_hparams):
        self.weights = Path(weights)
        self.device = torch.device(device)
        ckpt = read_checkpoint(self.weights)
        # A trained checkpoint of a non-published size says how it differs under "hparams".
        self.hparams = with_overrides(hp, ckpt.get("hparams"))
        self.model = Tacotron(self.hparams)
        state = model_state_of(ckpt, self.weights)
        check_state_dict(self.model, state, self.weights, "synthesizer")
        self.model.load_state_dict(state, strict=True)
        self.model.to(self.device).eval()
        self._fast: dict[str, fast.LSTMCells] = {}
        self._fast_lock = threading.Lock()

    @property
    def step(self) -> int:
        return int(self.model.step.item())

    @property
    def r(self) -> int:
        return self.model.r

    def text_ids(self, text: str) -> list[int]:
        """Ids of one text as the reference computes them (stripped, cleaned, EOS appended)."""
        return text_to_sequence(text.strip(), self.hparams.tts_cleaner_names)

    def synthesize_spectrograms(self, texts: Sequence[str], embeddings: np.ndarray | Sequence[np.ndarray],
                                seed: int | None = None, generator: torch.Generator | None = None,
                                return_alignments: bool = False, progress=None, mode: str = "parity"):
        """Mels of `texts`, one (80, frames) float32 array each, in order.

        `embeddings` gives one (256,) speaker embedding per text (a single 1-D array is
        used for one text). Texts go through the model in chunks of 16; within a chunk
        every item runs until all have stopped, then each loses its trailing frames whose
        maximum is below -3.4. Seeding (`seed`, or an explicit `generator`) reproduces
        the reference run made right after `torch.manual_seed(seed)`.
        `progress(done, total)` is called after each chunk. `mode` "fast" runs the
        decoder's LSTM cells with fp16 weights and "int8" with int8 weights (`synthesizer.fast`:
        faster on CPU, not the reference's exact numbers); "parity" (the default) is the
        reference path.
        """
        if mode not in ("fast", "int8", "parity"):
            raise ValueError(f"unknown synthesizer mode {mode!r}: use 'parity', 'fast' or 'int8'")
        if isinstance(texts, str):
            texts = [texts]
        embeds = [embeddings] if isinstance(embeddings, np.ndarray) and embeddings.ndim == 1 else list(embeddings)
        if len(embeds) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(embeds)} speaker embeddings")
        inputs = [self.text_ids(t) for t in texts]
        for text, ids in zip(texts, inputs):
            if not has_speakable_characters(ids):
                raise TextError(f"Nothing to say in {text!r}: the text has no letters the synthesizer can speak.")
        if generator is None:
            generator = make_generator(seed)
        batch_size = self.hparams.synthesis_batch_size
        specs, alignments = [], None
        for start in range(0, len(inputs), batch_size):
            batch = inputs[start:start + batch_size]
            max_len = max(len(ids) for ids in batch)
            chars = torch.tensor([ids + [0] * (max_len - len(ids)) for ids in batch], dtype=torch.long,
                                 device=self.device)
            speakers = torch.from_numpy(np.stack(embeds[start:start + batch_size]).astype(np.float32)).to(self.device)
            cells = self._lstm_cells(mode)
            with fast.decoding(cells):
                _, mels, alignments = self.model.generate(chars, speakers, self.hparams.max_decoder_frames,
                                                          generator, cells)
            for mel in mels.cpu().numpy():
                specs.append(self.trim_trailing_silence(mel))
            if progress is not None:
                progress(min(start + batch_size, len(inputs)), len(inputs))
        if return_alignments:
            return specs, alignments.cpu().numpy()
        return specs

    def _lstm_cells(self, mode: str) -> "fast.LSTMCells | None":
        """The reduced-precision LSTM cells of `mode`, made once; None for parity or where fbgemm is missing."""
        if mode not in fast.CELLS or not fast.available(self.device):
            return None
        with self._fast_lock:
            if mode not in self._fast:
                self._fast[mode] = fast.lstm_cells(self.model.decoder, mode)
            return self._fast[mode]

    def trim_trailing_silence(self, mel: np.ndarray) -> np.ndarray:
        """Drop trailing frames whose loudest channel is below the stop threshold (keeps >= 1 frame)."""
        frame_max = mel.max(axis=0)
        keep = len(frame_max)
        while keep > 1 and frame_max[keep - 1] < self.hparams.tts_stop_threshold:
            keep -= 1
        return mel[:, :keep]
