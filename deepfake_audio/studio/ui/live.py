"""The live player's chunks: a streamed clone's audio grouped into pieces worth sending."""
from __future__ import annotations

import numpy as np


class LiveBuffer:
    """Groups the stream's pieces into playable chunks: the first after 0.25 s of audio, then 0.5 s each.

    Every chunk becomes one encoded segment on the page, so tiny pieces would cost more
    in overhead than they gain in latency.
    """

    FIRST_SECONDS, NEXT_SECONDS = 0.25, 0.5

    def __init__(self, sample_rate: int):
        self.sample_rate = sample_rate
        self.pieces: list[np.ndarray] = []
        self.samples = 0
        self.sent = 0

    def add(self, audio: np.ndarray) -> tuple[int, np.ndarray] | None:
        """Take one float piece; a (rate, int16 samples) chunk once enough audio is waiting, else None."""
        self.pieces.append(audio)
        self.samples += len(audio)
        wanted = self.FIRST_SECONDS if self.sent == 0 else self.NEXT_SECONDS
        return self.flush() if self.samples >= wanted * self.sample_rate else None

    def flush(self) -> tuple[int, np.ndarray] | None:
        """Whatever is waiting as one (rate, int16 samples) chunk; None when nothing is."""
        if not self.samples:
            return None
        audio = np.concatenate(self.pieces)
        self.pieces, self.samples = [], 0
        self.sent += 1
        return self.sample_rate, (np.clip(audio, -1.0, 1.0) * 32767).astype(np.int16)
