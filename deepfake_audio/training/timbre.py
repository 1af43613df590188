"""New vocal-tract shapes for pseudo-speakers: a non-uniform warp of the mel's frequency axis and a
spectral tilt, rendered at the voice's own pitch by the starter vocoder.

sox's speed + pitch (`pseudo_speakers`) scales every formant of a base voice by one factor, so
each base voice only moves along a line. A voice's timbre is the shape of its spectral envelope:
where each formant region sits relative to the others, and how fast the spectrum falls. Here
each region is moved by its own factor (a piecewise-linear warp through `ANCHORS_HZ`, so the
first formant may rise while the second falls) and the spectrum is tilted around 1 kHz. The
starter vocoder reads two envelopes and the pitch off the warped mel and renders it at the base
recording's median F0, so the harmonics stay at the voice's pitch.

Measured on three training voices (`bench/RESULTS.md`): a warped voice scores 0.78-0.94 against
its base (a near neighbour, not the same speaker) and 0.94-0.98 across its own clips (one
consistent voice), with DNSMOS within 0.1 of the base's copy synthesis for moderate warps.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ANCHORS_HZ = (600.0, 1400.0, 2600.0, 4200.0, 8000.0)  # formant regions' upper edges; below the first, its factor
SCALE = (0.85, 1.18)  # each region's frequency factor
TILT_DB_PER_OCTAVE = (-2.5, 2.5)  # around 1 kHz; stronger tilts cost naturalness on women's voices


@dataclass(frozen=True)
class TimbreWarp:
    """One pseudo-speaker's warp: a frequency factor per anchor of `ANCHORS_HZ` and a tilt (dB/octave)."""

    scales: tuple[float, ...]
    tilt: float

    def to_dict(self) -> dict:
        return {"scales": [round(s, 4) for s in self.scales], "tilt_db_per_octave": round(self.tilt, 3)}

    @classmethod
    def from_dict(cls, values: dict) -> "TimbreWarp":
        return cls(tuple(float(s) for s in values["scales"]), float(values["tilt_db_per_octave"]))


def draw_warp(rng: random.Random) -> TimbreWarp:
    """A warp with each region's factor drawn log-uniformly from `SCALE`, the tilt uniformly."""
    low, high = np.log(SCALE[0]), np.log(SCALE[1])
    return TimbreWarp(tuple(float(np.exp(rng.uniform(low, high))) for _ in ANCHORS_HZ),
                      rng.uniform(*TILT_DB_PER_OCTAVE))


def band_centres_hz() -> np.ndarray:
    """Centre frequency (Hz) of each of the synthesizer's mel bands: (n_mels,)."""
    import librosa
    from synthesizer.hparams import hparams as hp
    return librosa.mel_frequencies(hp.num_mels + 2, fmin=hp.fmin, fmax=hp.fmax)[1:-1]


def warp_mel(mel: np.ndarray, warp: TimbreWarp) -> np.ndarray:
    """The mel (80, T) in the synthesizer's scale ([-4, 4] for -100..0 dB) of the warped voice.

    Output band at frequency f reads the input at f / s(f), s interpolated through the anchors
    (flat below the first), in band-index space; then the tilt adds tilt * log2(f / 1 kHz) dB.
    """
    from synthesizer.hparams import hparams as hp
    centres = band_centres_hz()
    factors = np.interp(centres, (0.0, *ANCHORS_HZ), (warp.scales[0], *warp.scales))
    source = np.interp(centres / factors, centres, np.arange(len(centres)))  # fractional band index
    lower = np.clip(np.floor(source).astype(int), 0, len(centres) - 1)
    upper = np.clip(lower + 1, 0, len(centres) - 1)
    frac = (source - lower)[:, None]
    warped = (1 - frac) * mel[lower] + frac * mel[upper]
    units_per_db = 2 * hp.max_abs_value / -hp.min_level_db
    warped = warped + (warp.tilt * np.log2(centres / 1000.0) * units_per_db)[:, None]
    return np.clip(warped, -hp.max_abs_value, hp.max_abs_value).astype(np.float32)


class TimbreRenderer:
    """Renders recordings of a base voice as the warped voice, with the starter vocoder."""

    def __init__(self, vocoder: Path | str, device: str = "cpu"):
        from vocoder.starter import StarterVocoder
        self.vocoder = StarterVocoder(vocoder, device)

    def __call__(self, wav: np.ndarray, warp: TimbreWarp, seed: int = 0) -> np.ndarray:
        """16 kHz float32 (samples,) of `wav` (16 kHz) spoken by the warped voice, peak 0.9."""
        from deepfake_audio_core.pitch import pitch_stats
        from deepfake_audio.training.synthesizer_preprocess import training_mel
        mel, audio = training_mel(wav)
        stats = pitch_stats(audio)
        out = self.vocoder.infer_waveform(warp_mel(mel, warp), seed=seed,
                                          pitch_target=None if stats is None else stats.median_hz)
        return (out / max(float(np.abs(out).max()), 1e-6) * 0.9).astype(np.float32)
