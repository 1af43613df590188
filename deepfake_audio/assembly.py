"""A clone's timeline: the silence before the first sentence, each sentence's audio, the pause
after it, and the output's peak.

`Pipeline.run` joins a whole clone with `Timeline.join`; `deepfake_audio.streaming` asks the
same object for the lead, the pause after sentence k and the level of each piece as it goes
out, so both lay out a clone the same way.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

from synthesizer.hparams import hparams as syn_hp

if TYPE_CHECKING:
    from deepfake_audio.pipeline import ClonePlan

OUTPUT_PEAK = 0.97


def normalize_peak(wav: np.ndarray, peak: float = OUTPUT_PEAK) -> np.ndarray:
    """`wav` scaled so that its loudest sample is `peak` (silence stays silence), as float32."""
    loudest = float(np.max(np.abs(wav))) if wav.size else 0.0
    return (wav * (peak / loudest) if loudest > 0 else wav).astype(np.float32)


def silence(seconds: float, sample_rate: int) -> np.ndarray:
    """float32 zeros, `seconds` long (rounded to whole samples) at `sample_rate` Hz."""
    return np.zeros(int(round(seconds * sample_rate)), np.float32)


class Timeline:
    """Where a plan's sentences go in its clone, and how loud the clone is.

    Sample counts are at `sample_rate` (16 kHz); the lead and the pauses come from the plan
    (`ClonePlan.lead`, `ClonePlan.gap_after`). `peak` is the loudest sample of the output.
    """

    def __init__(self, plan: ClonePlan, sample_rate: int = syn_hp.sample_rate, peak: float = OUTPUT_PEAK):
        self.plan = plan
        self.sample_rate = sample_rate
        self.peak = peak
        self.loudest = peak  # a stream's loudest sample so far (`level`), never below `peak`

    def lead(self) -> np.ndarray:
        """(samples,) float32 zeros: the silence before the first sentence."""
        return silence(self.plan.lead, self.sample_rate)

    def pause_after(self, k: int) -> np.ndarray:
        """(samples,) float32 zeros: the pause after sentence k (none after the last, unless asked for)."""
        return silence(self.plan.gap_after(k), self.sample_rate)

    def join(self, pieces: Sequence[np.ndarray]) -> np.ndarray:
        """The whole clone, (samples,) float32 at `peak`: the lead, then each sentence's audio
        (`pieces[k]`, (samples,)) followed by its pause."""
        parts = [self.lead()]
        for k, piece in enumerate(pieces):
            parts += [piece.astype(np.float32), self.pause_after(k)]
        return self.normalize(np.concatenate(parts))

    def normalize(self, wav: np.ndarray) -> np.ndarray:
        """A whole clone (samples,) scaled to `peak`, as float32 (see `normalize_peak`)."""
        return normalize_peak(wav, self.peak)

    def level(self, wav: np.ndarray) -> np.ndarray:
        """A streamed piece (samples,) scaled by min(1, peak / loudest sample so far): a stream
        cannot know its loudest sample in advance, so quiet speech stays as made and nothing clips."""
        self.loudest = max(self.loudest, float(np.max(np.abs(wav))))
        return wav * (self.peak / self.loudest)
