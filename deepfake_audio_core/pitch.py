"""Fundamental frequency (F0) of speech, frame by frame, on the mel frames' grid.

`track_f0` is YIN (de Cheveigné & Kawahara 2002: the cumulative-mean-normalised
difference function, its first dip under a threshold, parabolic refinement) computed
for all frames at once with FFTs, plus a voicing decision from YIN's aperiodicity and
the frame's level. About 100 times faster than `librosa.pyin`, which is too slow for
hours of training audio and for a reference measured per request.

`pitch_stats` summarises a voice's pitch as the median and spread of log-F0 over its
voiced frames: what the starter vocoder's pitch follows at clone time. A steady mains hum
(50 or 60 Hz and its harmonics, common in recordings from laptops and cheap microphones) is
perfectly periodic, so YIN would take it for a very low voice in every frame it reaches;
`track_voice_f0` (which `pitch_stats` and the training data use) finds such a hum and
notches it out first (`mains_hum`).

Frames are centred every `hop` samples (frame t at sample t * hop), as the synthesizer's
mels (12.5 ms at 16 kHz): a wav of n samples gives 1 + n // hop frames.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deepfake_audio_core.audio_config import MEL
from deepfake_audio_core.embedding_memory import EmbeddingMemory

F0_MIN = 50.0  # Hz: below the lowest adult voices (about 65 Hz)
F0_MAX = 600.0  # Hz: above children's speaking voices
YIN_THRESHOLD = 0.15  # first dip of the normalised difference under this is the period
WINDOW_PERIODS = 1.5  # lags are compared over this many periods of the lowest pitch
FRAMES_PER_BLOCK = 2048  # frames measured together (about 35 MB per array at 16 kHz)
VOICED_APERIODICITY = 0.5  # a frame is voiced when its best dip is under this ...
VOICED_LEVEL_DB = -45.0  # ... and it is no more than this far below the loudest frame
SILENCE_DB = -70.0  # ... and above this (mean square, dB relative to full scale)
LOW_BAND_HZ = (60.0, 250.0)  # where a man's lowest harmonics are ...
SPEECH_BAND_HZ = (300.0, 3400.0)  # ... against a telephone's band
MISSING_LOW_BAND_DB = -15.0  # low band this far under the speech band: no lowest harmonics (telephone: -23 to -37
# dB; full-band recordings of men and women: -10 to +5 dB; a voice at 290 Hz has none either)
RESTORED_BAND_HZ = (50.0, 400.0)  # what YIN reads of a rectified low voice: its F0 and lowest harmonics
RESTORE_BELOW_HZ = 180.0  # a voice without a low band read under this is restored (a man's range)
HELD_NOTE_STEP = 0.003  # log-F0 per frame (5 cents): a musical note holds its pitch this closely ...
HELD_NOTE_SECONDS = 0.125  # ... for this long at least; speech does not (`held_notes`)
MAINS_HZ = (50.0, 60.0)
HUM_PROMINENCE_DB = 15.0  # a mains line this far above the spectrum beside it is a hum, not a voice
HUM_NOTCH_UP_TO = 420.0  # Hz: the hum's harmonics notched (the ones that reach YIN's lags)
HUM_VOICED_LEVEL_DB = -30.0  # with a hum notched out, voiced frames are no more than this below the loudest:
# the notches ring (a narrow filter spreads the voice's own energy at the mains lines over about
# 0.2 s), which leaves faint mains-pitched tones in the pauses


@dataclass(frozen=True)
class F0Track:
    """F0 per frame: `f0` (T,) float32 Hz (0 where unvoiced), `voiced` (T,) bool, `aperiodicity` (T,) in [0, 1+]."""

    f0: np.ndarray
    voiced: np.ndarray
    aperiodicity: np.ndarray

    @property
    def voiced_fraction(self) -> float:
        return float(self.voiced.mean()) if self.voiced.size else 0.0


@dataclass(frozen=True)
class PitchStats:
    """A voice's pitch: median of log-F0 (natural log of Hz) and its spread (standard deviation)."""

    log_f0_median: float
    log_f0_spread: float
    voiced_fraction: float

    @property
    def median_hz(self) -> float:
        return float(np.exp(self.log_f0_median))


def _frames(wav: np.ndarray, length: int, hop: int) -> np.ndarray:
    """(T, length) frames centred every `hop` samples (reflect-padded at the ends)."""
    pad = length // 2
    padded = np.pad(wav, (pad, pad), mode="reflect" if len(wav) > pad else "constant")
    count = 1 + len(wav) // hop
    need = (count - 1) * hop + length
    if len(padded) < need:
        padded = np.pad(padded, (0, need - len(padded)))
    return np.lib.stride_tricks.sliding_window_view(padded, length)[::hop][:count]


def track_f0(wav: np.ndarray, sample_rate: int = MEL.sample_rate, hop: int = MEL.hop_size,
             fmin: float = F0_MIN, fmax: float = F0_MAX, threshold: float = YIN_THRESHOLD,
             level_db: float = VOICED_LEVEL_DB) -> F0Track:
    """F0 of `wav` (float, mono) every `hop` samples; see the module's notes. A voiced frame is
    no more than `level_db` below the loudest frame."""
    wav = np.asarray(wav, dtype=np.float64).reshape(-1)
    tau_min = max(2, int(sample_rate / fmax))
    tau_max = int(np.ceil(sample_rate / fmin))
    window = int(WINDOW_PERIODS * tau_max)  # samples summed per lag
    length = window + tau_max + 1
    if wav.size == 0:
        empty = np.zeros(0, dtype=np.float32)
        return F0Track(empty, np.zeros(0, dtype=bool), empty)
    frames = _frames(wav, length, hop)  # a strided view: no copy
    # in blocks of frames, so that memory stays bounded on long recordings (all at once, a
    # 20-minute file took 8 GB); every frame is measured on its own, so the result is the same
    parts = [_yin_block(frames[i:i + FRAMES_PER_BLOCK], window, tau_min, tau_max, threshold)
             for i in range(0, len(frames), FRAMES_PER_BLOCK)]
    period, aperiodicity, level = (np.concatenate(values) for values in zip(*parts))
    loud = (level > (level.max() + level_db)) & (level > SILENCE_DB)
    voiced = (aperiodicity < VOICED_APERIODICITY) & loud & (period > 0)
    voiced = _drop_short_runs(voiced, 3)
    f0 = np.where(voiced, sample_rate / np.maximum(period, 1e-6), 0.0)
    return F0Track(f0.astype(np.float32), voiced, aperiodicity.astype(np.float32))


def _yin_block(frames: np.ndarray, window: int, tau_min: int, tau_max: int,
               threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """YIN on (B, length) frames: period (B,) in samples, aperiodicity (B,) (the dip's depth) and
    level (B,) dB (the mean square of the first `window` samples)."""
    frames = frames - frames.mean(axis=1, keepdims=True)
    length = frames.shape[1]
    n_fft = 1 << int(np.ceil(np.log2(2 * length)))
    spectrum = np.fft.rfft(frames, n_fft)
    head = np.fft.rfft(frames[:, :window], n_fft)
    corr = np.fft.irfft(np.conj(head) * spectrum, n_fft)[:, :tau_max + 1]  # r(tau) = sum_j x_j x_{j+tau}
    energy = np.concatenate([np.zeros((len(frames), 1)), np.cumsum(frames ** 2, axis=1)], axis=1)
    lags = np.arange(tau_max + 1)
    e_shift = energy[:, lags + window] - energy[:, lags]  # sum of x^2 over [tau, tau + window)
    diff = np.maximum(e_shift[:, :1] + e_shift - 2 * corr, 0.0)
    cum = np.cumsum(diff[:, 1:], axis=1)
    cmnd = np.ones_like(diff)
    cmnd[:, 1:] = diff[:, 1:] * lags[1:] / np.maximum(cum, 1e-12)

    band = cmnd[:, tau_min:tau_max]
    # the first lag under the threshold that is a local minimum; else the global minimum
    below = band < threshold
    local_min = np.zeros_like(below)
    local_min[:, :-1] = band[:, :-1] <= band[:, 1:]
    dips = below & local_min
    has = dips.any(axis=1)
    first = np.where(has, dips.argmax(axis=1), band.argmin(axis=1))
    # walk down to the bottom of the dip the first crossing is in
    rows = np.arange(len(band))
    for _ in range(tau_max):
        nxt = np.minimum(first + 1, band.shape[1] - 1)
        step = band[rows, nxt] < band[rows, first]
        if not step.any():
            break
        first = np.where(step, nxt, first)
    tau = first + tau_min
    # parabolic interpolation of the dip
    left = cmnd[rows, np.maximum(tau - 1, 1)]
    mid = cmnd[rows, tau]
    right = cmnd[rows, np.minimum(tau + 1, tau_max)]
    denom = left - 2 * mid + right
    shift = np.where(np.abs(denom) > 1e-12, 0.5 * (left - right) / np.where(denom == 0, 1, denom), 0.0)
    period = tau + np.clip(shift, -1, 1)
    aperiodicity = mid

    level = 10 * np.log10(np.maximum(e_shift[:, 0] / window, 1e-20))
    return period, aperiodicity, level


def _drop_short_runs(mask: np.ndarray, shortest: int) -> np.ndarray:
    """`mask` with runs of True shorter than `shortest` frames set False (isolated voicing blips)."""
    out = mask.copy()
    start = None
    for i, value in enumerate(np.append(mask, False)):
        if value and start is None:
            start = i
        elif not value and start is not None:
            if i - start < shortest:
                out[start:i] = False
            start = None
    return out


def mains_hum(wav: np.ndarray, sample_rate: int = MEL.sample_rate) -> float | None:
    """50.0 or 60.0 when `wav` carries a steady mains hum, else None.

    A hum is a line in the long-term spectrum (0.5 Hz resolution) at the mains frequency or
    its 2nd or 3rd harmonic, HUM_PROMINENCE_DB above the spectrum 3-15 Hz either side of it;
    a voice's pitch moves, so its harmonics make no such line.
    """
    from scipy.signal import welch
    wav = np.asarray(wav, dtype=np.float64).reshape(-1)
    if wav.size < sample_rate // 2:
        return None
    freqs, power = welch(wav, sample_rate, nperseg=min(wav.size, 2 * sample_rate))
    best, found = HUM_PROMINENCE_DB, None
    for mains in MAINS_HZ:
        for k in (1, 2, 3):
            line = mains * k
            near = np.abs(freqs - line)
            peak = power[near <= 1.0].max(initial=0.0)
            side = power[(near >= 3.0) & (near <= 15.0)]
            if side.size and peak > 0:
                prominence = 10 * np.log10(peak / max(float(np.median(side)), 1e-30))
                if prominence > best:
                    best, found = prominence, mains
    return found


def remove_hum(wav: np.ndarray, mains: float, sample_rate: int = MEL.sample_rate) -> np.ndarray:
    """`wav` with narrow notches (Q 30) at `mains` Hz and its harmonics up to HUM_NOTCH_UP_TO."""
    from scipy.signal import filtfilt, iirnotch
    out = np.asarray(wav, dtype=np.float64).reshape(-1)
    for k in range(1, int(HUM_NOTCH_UP_TO // mains) + 1):
        b, a = iirnotch(mains * k, 30.0, sample_rate)
        out = filtfilt(b, a, out)
    return out


def lacks_low_band(wav: np.ndarray, sample_rate: int = MEL.sample_rate) -> bool:
    """Whether `wav` has (almost) nothing in LOW_BAND_HZ against SPEECH_BAND_HZ: a telephone band, or
    a voice too high to have harmonics there. Long-term spectrum, MISSING_LOW_BAND_DB apart."""
    from scipy.signal import welch
    wav = np.asarray(wav, dtype=np.float64).reshape(-1)
    if wav.size < 2048 or sample_rate < 2 * SPEECH_BAND_HZ[1]:
        return False
    freqs, power = welch(wav, sample_rate, nperseg=2048)
    low = power[(freqs >= LOW_BAND_HZ[0]) & (freqs < LOW_BAND_HZ[1])].sum()
    speech = power[(freqs >= SPEECH_BAND_HZ[0]) & (freqs < SPEECH_BAND_HZ[1])].sum()
    return speech > 0 and 10 * np.log10(max(low, 1e-30) / speech) < MISSING_LOW_BAND_DB


def restore_fundamental(wav: np.ndarray, sample_rate: int = MEL.sample_rate) -> np.ndarray:
    """`wav` half-wave rectified and band-passed to RESTORED_BAND_HZ: a voice's harmonics beat at
    its F0, and rectifying them puts that beat back in as a component of its own, with the lowest
    harmonics, where YIN finds the whole period."""
    from scipy.signal import butter, sosfiltfilt
    wav = np.asarray(wav, dtype=np.float64).reshape(-1)
    sos = butter(2, RESTORED_BAND_HZ, btype="band", fs=sample_rate, output="sos")
    return sosfiltfilt(sos, np.maximum(wav, 0.0))


def track_voice_f0(wav: np.ndarray, sample_rate: int = MEL.sample_rate, hop: int = MEL.hop_size) -> F0Track:
    """`track_f0` of a recording of a voice, with any mains hum (`mains_hum`) notched out first:
    what every measure of a voice's pitch uses (references, takes, training data).

    A low voice recorded without its low band (`lacks_low_band`: a telephone line passes 300-3,400
    Hz; read under RESTORE_BELOW_HZ) is tracked on `restore_fundamental` of it. Without its lowest
    harmonics a voice can repeat nearly at a third or a quarter of its period when one harmonic
    dominates, and YIN takes the first such dip: an 82 Hz voice over a telephone band read 99 Hz
    (40 % of its frames at 3-5 times its F0), restored 85 Hz (16 %). Higher voices lose only
    their fundamental there and read right as they are, while the rectified signal would halve
    their pitch in a fifth of their frames. Everything else is tracked as before, to the bit."""
    hum = mains_hum(wav, sample_rate)
    if hum is None:
        track = track_f0(wav, sample_rate, hop)
        if lacks_low_band(wav, sample_rate) and track.voiced.any() \
                and np.median(track.f0[track.voiced]) < RESTORE_BELOW_HZ:
            return track_f0(restore_fundamental(wav, sample_rate), sample_rate, hop)
        return track
    return track_f0(remove_hum(wav, hum, sample_rate), sample_rate, hop, level_db=HUM_VOICED_LEVEL_DB)


def held_notes(track: F0Track, hop_seconds: float = MEL.frame_seconds) -> np.ndarray:
    """(T,) bool: voiced frames in runs of at least HELD_NOTE_SECONDS whose F0 moves less than
    HELD_NOTE_STEP (log) from frame to frame. A voice's pitch is never that steady (none of the
    corpus's eleven base voices, `nsh`, the ALSA woman or `krb` has such runs; flite's `slt` 3 % of
    its voiced frames), while a note of music under or between the words is (34-85 % of the voiced
    frames of synthetic chords)."""
    f0, voiced = track.f0, track.voiced
    steady = np.zeros(len(f0), dtype=bool)
    if len(f0) > 1:
        log_f0 = np.log(np.maximum(f0, 1.0))
        steady[1:] = voiced[1:] & voiced[:-1] & (np.abs(np.diff(log_f0)) < HELD_NOTE_STEP)
    shortest = max(int(round(HELD_NOTE_SECONDS / hop_seconds)), 1)
    held = np.zeros(len(f0), dtype=bool)
    run = 0
    for t, ok in enumerate(steady):
        run = run + 1 if ok else 0
        if run >= shortest:
            held[t - run:t + 1] = True
    return held


def pitch_stats(wav: np.ndarray, sample_rate: int = MEL.sample_rate) -> PitchStats | None:
    """Median and spread of log-F0 over the voiced frames of `wav` (`track_voice_f0`: a mains hum
    notched out first); None with under 10 voiced frames. Frames of held notes (`held_notes`: music
    under the voice) are left out of both where 10 others remain; the voiced fraction counts them."""
    track = track_voice_f0(wav, sample_rate, hop=int(round(sample_rate * MEL.frame_seconds)))
    log_f0 = np.log(track.f0[track.voiced])
    if log_f0.size < 10:
        return None
    spoken = track.voiced & ~held_notes(track)
    if np.count_nonzero(spoken) >= 10:
        log_f0 = np.log(track.f0[spoken])
    median = float(np.median(log_f0))
    # a robust spread: half the distance between the 16th and 84th percentiles (sigma for a normal)
    spread = float(0.5 * (np.percentile(log_f0, 84) - np.percentile(log_f0, 16)))
    return PitchStats(median, spread, track.voiced_fraction)


# Is it someone speaking? Speech is voiced in 20-80 % of its frames, even under white noise at 0 dB
# SNR, over a telephone band, pitch-shifted by +-8 semitones or with reverb (measured on the example
# voices, 2026-12-07); white or brown noise and whispering in 0-1 %.
MIN_VOICED_FRACTION = 0.05
# A held tone or a buzz is voiced throughout at one pitch: log-F0 spread under 0.002, speech's 0.07 or more.
STEADY_TONE_SPREAD = 0.01


def not_speech(stats: PitchStats | None, name: str) -> str | None:
    """Why the recording `name`, whose pitch is `stats` (`pitch_stats`), is not someone speaking in a
    normal voice, or None when it may be: a reference without voiced speech clones nothing of a voice."""
    if stats is None or stats.voiced_fraction < MIN_VOICED_FRACTION:
        found = 0.0 if stats is None else stats.voiced_fraction
        return (f"{name} has no voiced speech (a pitch in {found:.0%} of it): it sounds like noise or "
                f"whispering. Record or upload a few seconds of someone speaking in their normal voice.")
    if stats.log_f0_spread < STEADY_TONE_SPREAD and stats.voiced_fraction > 0.9:
        return (f"{name} is a steady tone at {stats.median_hz:.0f} Hz, not speech. Record or upload a few "
                f"seconds of someone speaking.")
    return None


class PitchMemory(EmbeddingMemory[tuple[float, "float | None"]]):
    """The pitch of the recordings behind the embeddings a pipeline made, so that a clone from one
    of those embeddings (`Pipeline.clone(embedding=pipe.embed("me.wav"))`) speaks at the
    recording's measured pitch rather than at the one guessed from the embedding.

    Keyed by the embedding's exact bytes; the `size` most recent are kept (see
    `EmbeddingMemory`); a lost entry only means the guess is used.
    """

    def store(self, embedding: np.ndarray, median_hz: float, spread: float | None) -> None:
        """Keep for `embedding` (256,) the pitch of its recording (`pitch_stats` of the audio the encoder
        heard, or a saved voice's)."""
        self.put(embedding, (float(median_hz), None if spread is None else float(spread)))

    def recall(self, embedding: np.ndarray) -> tuple[float | None, float | None]:
        """(median F0 Hz, log-F0 spread) measured for `embedding`, or (None, None)."""
        return self.get(embedding, (None, None))
