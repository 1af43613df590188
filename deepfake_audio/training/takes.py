"""Checks of recorded takes for "Train a voice": one take as it comes, and a set of them.

`check_take` measures one recording of a prompt (level, clipping, speech duration by
webrtcvad, a signal-to-noise estimate and, given the prompt, the speaking rate) and
says in one sentence what to fix. `speaker_outliers` finds takes that sound like someone
else. Thresholds are the module constants below; each says what it was chosen from.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace

import numpy as np

from deepfake_audio_core.audio_io import resample
from deepfake_audio_core.errors import AudioError
from deepfake_audio_core.pitch import mains_hum

VAD_RATE = 16_000  # webrtcvad takes 8, 16, 32 or 48 kHz; 16 kHz is the encoder's rate
VAD_FRAME_S = 0.03  # webrtcvad takes 10, 20 or 30 ms frames; 30 ms decides most reliably
VAD_MODE = 3  # the most reluctant to call noise speech (mode 1 took the silence around flite speech for speech)
# webrtcvad has a fixed energy floor: speech at -60 dBFS is "silence" to it. The take is
# brought to this level (its loudest frames) before the VAD hears it, by at most
# VAD_MAX_GAIN_DB, so that a quiet take is reported as quiet rather than as silent.
VAD_LEVEL_DBFS = -20.0
VAD_MAX_GAIN_DB = 40.0
FILL_GAP_S = 0.21  # gaps this short inside speech (between words, stop closures) count as speech
MIN_BURST_S = 0.09  # speech bursts this short on their own (a click, a breath) do not

# Level of the speech frames (RMS, dBFS; flite and espeak-ng speak at -14 to -22).
# Preprocessing rescales every utterance to a 0.9 peak, so level alone does no harm, but
# under -40 dBFS the microphone's own hiss and the 16-bit steps are raised with it.
QUIET_DBFS = -40.0
# A sample at or above CLIP_LEVEL of full scale is taken as clipped; a take is "clipped" when
# more than CLIPPED_SHARE of its samples are. Clean synthetic speech peaked at full scale had
# 3 such samples in 80,000 (0.004 %); the same voices amplified 4x and hard-clipped, 1.9-21 %.
CLIP_LEVEL = 0.98
CLIPPED_SHARE = 0.001
MIN_SPEECH_S = 1.0  # less than this is not a sentence (and too little for the speaker encoder)
MAX_TAKE_S = 20.0  # a prompt takes 2-6 s to read; 20 s is a take left running or several sentences
MIN_SPEECH_SHARE = 0.4  # below it the take is mostly silence: cropping it is the user's job, not the trainer's
# SNR of speech over the noise floor (`snr_db`): 29-77 dB measured on clean synthetic
# speech (120 takes of six voices); with white noise added at 5, 10, 15, 20 and 30 dB below
# the speech, the estimate was within 1 dB of it. Under 15 dB the noise is plainly audible
# and a fine-tuned model learns it as part of the voice.
NOISY_SNR_DB = 15.0
MIN_NOISE_FRAMES = 3  # non-speech frames (90 ms) needed to measure the noise from them
NOISE_PERCENTILE = 10  # otherwise (speech fills the take) the quietest tenth of all frames
SNR_CAP_DB = 60.0  # digital silence between words would make it infinite
# Letters of the prompt per second of speech (VAD speech, short gaps included). Measured
# on six synthetic voices (flite slt, awb, rms, kal; espeak-ng en-us+m3, en-gb+f2) reading
# 20 prompts: 12.5-19.8, median 15.6. The bounds sit at about half and twice that, wide
# enough for slow and fast readers: outside them, around half the words are missing or extra.
LETTERS_PER_SECOND = (7.0, 28.0)

# Cosine of a take's embedding to the normalised mean of the others' (official encoder).
# Measured on 5 takes each of six synthetic voices: a take among 4 of its own voice 0.90-0.97;
# one take of another voice among 4 of one voice 0.38-0.82 (median 0.57; above 0.75 only
# for the closest pairs: espeak-ng f2 and m3, flite awb and rms), while the 4 others stayed
# at 0.87-0.95. Real people vary more between takes (pairs of clips 0.75-0.85, so 0.82-0.90
# to the mean of three others), hence a threshold below that: under 0.75 a listener would
# not take the voices for the same person (`studio.voice_map`'s "close" band).
OUTLIER_SIMILARITY = 0.75

PROBLEMS = ("silent", "clipped", "quiet", "short", "noisy", "long", "words")  # most important first


@dataclass(frozen=True)
class TakeCheck:
    """What `check_take` measured and what is wrong.

    problems: codes from `PROBLEMS`, most important first (empty: a good take);
    note: one sentence for the user about the first problem (or that the take is good);
    seconds: the take's duration; speech_seconds: its speech by VAD (short gaps included);
    snr_db: speech over noise floor (capped at `SNR_CAP_DB`); peak: largest |sample|
    (1 = full scale); rms_db: RMS of the speech frames in dBFS (-120 when none);
    letters_per_second: speaking rate for the prompt given (None without one).
    """

    problems: tuple[str, ...]
    note: str
    seconds: float
    speech_seconds: float
    snr_db: float
    peak: float
    rms_db: float
    letters_per_second: float | None = None

    @property
    def ok(self) -> bool:
        return not self.problems


def check_take(wav: np.ndarray, sample_rate: int, text: str | None = None) -> TakeCheck:
    """Check one take: wav (samples,) or (samples, channels) float in [-1, 1] at `sample_rate` Hz.

    `text` is the prompt that was read: given, a speaking rate far from normal is
    reported as "words". Raises `AudioError` for NaN or infinite samples.
    """
    wav = _mono(wav)
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    seconds = len(wav) / sample_rate
    peak = float(np.max(np.abs(wav))) if len(wav) else 0.0
    clipped = float(np.mean(np.abs(wav) >= CLIP_LEVEL)) if len(wav) else 0.0
    wav16 = resample(wav, sample_rate, VAD_RATE)
    energy = frame_energies(wav16)
    mask = speech_frames(wav16)
    speech_seconds = float(mask.sum() * VAD_FRAME_S)
    rms_db = _db(float(energy[mask].mean())) if mask.any() else -120.0
    snr = snr_db(energy, mask)
    rate = None
    if text is not None and speech_seconds > 0:
        rate = letter_count(text) / speech_seconds

    problems = []
    enough = speech_seconds >= MIN_SPEECH_S  # under a second the share of silence and the SNR say little
    if speech_seconds == 0 or (enough and speech_seconds < MIN_SPEECH_SHARE * seconds):
        problems.append("silent")
    if clipped > CLIPPED_SHARE:
        problems.append("clipped")
    if speech_seconds > 0 and rms_db < QUIET_DBFS:
        problems.append("quiet")
    if 0 < speech_seconds < MIN_SPEECH_S:
        problems.append("short")
    if enough and snr < NOISY_SNR_DB:
        problems.append("noisy")
    if seconds > MAX_TAKE_S:
        problems.append("long")
    if rate is not None and enough and not LETTERS_PER_SECOND[0] <= rate <= LETTERS_PER_SECOND[1]:
        problems.append("words")
    check = TakeCheck(tuple(problems), "", round(seconds, 3), round(speech_seconds, 3), round(snr, 1),
                      round(peak, 4), round(rms_db, 1), None if rate is None else round(rate, 1))
    hum = mains_hum(wav16, VAD_RATE) if problems[:1] == ["noisy"] else None
    return replace(check, note=_note(check, clipped, hum))


def _note(check: TakeCheck, clipped: float, hum: float | None = None) -> str:
    """One sentence about the most important problem of `check`."""
    if not check.problems:
        return (f"Good take: {check.speech_seconds:.1f} s of clear speech, well above the background noise; "
                "go on to the next sentence.")
    first = check.problems[0]
    if first == "silent" and check.speech_seconds == 0:
        return ("No speech was heard: check that the right microphone is chosen and not muted, "
                "then record the sentence again.")
    if first == "silent":
        return (f"Most of this take is silence (only {check.speech_seconds:.1f} of {check.seconds:.1f} s is "
                "speech): start speaking soon after pressing record and stop right after the sentence.")
    if first == "clipped":
        return (f"The recording is distorted because it was too loud ({100 * clipped:.1f} % of samples hit the "
                "limit): move back from the microphone or turn its input level down, then record again.")
    if first == "quiet":
        return (f"The speech is too quiet ({check.rms_db:.0f} dBFS, at least {QUIET_DBFS:.0f} is needed): move "
                "closer to the microphone or turn its input level up, then record again.")
    if first == "noisy" and hum is not None:
        return (f"A mains hum (a steady {hum:.0f} Hz tone) is too loud under the speech (only {check.snr_db:.0f} dB "
                f"below it, {NOISY_SNR_DB:.0f} dB is needed): unplug the laptop's charger, move the microphone "
                "away from lamps, cables and power supplies, then record again.")
    if first == "noisy":
        return (f"There is too much background noise (speech only {check.snr_db:.0f} dB above it, "
                f"{NOISY_SNR_DB:.0f} dB is needed): record in a quieter place, away from fans, traffic and "
                "other voices.")
    if first == "short":
        return (f"Only {check.speech_seconds:.1f} s of speech was heard: read the whole sentence, "
                "and stop recording only after its last word.")
    if first == "long":
        return (f"This take is {check.seconds:.0f} s long: keep each take under {MAX_TAKE_S:.0f} s by reading "
                "one sentence at a time.")
    if check.letters_per_second is not None and check.letters_per_second > LETTERS_PER_SECOND[1]:
        return ("The recording is too short for its sentence, as if words were left out: read the whole "
                "sentence exactly as written.")
    return ("The recording is too long for its sentence, as if words were added or repeated: read just the "
            "sentence as written, nothing before or after it.")


def _mono(wav: np.ndarray) -> np.ndarray:
    wav = np.asarray(wav, dtype=np.float32)
    if wav.ndim == 2:
        wav = wav.mean(axis=1, dtype=np.float32)
    if wav.ndim != 1:
        raise AudioError(f"A take must be mono or (samples, channels) audio, not of shape {wav.shape}.")
    if not np.all(np.isfinite(wav)):
        raise AudioError("The take contains invalid (NaN or infinite) samples: record it again.")
    return wav


def _db(power: float) -> float:
    return 10.0 * float(np.log10(max(power, 1e-12)))


# Scripts whose characters are whole syllables (Chinese characters, Korean Hangul syllables) or
# morae (Japanese kana) count as several letters, so that a take read at a normal pace in those
# scripts is not flagged as missing words. Per second of speech: Mandarin about 4-5 characters,
# Korean about 5-6 syllables, Japanese about 7-8 morae, against about 15 English letters. Checked
# on espeak-ng's cmn, ko and ja voices, which read slowly: 7.8, 16.8 and 16.6 "letters" a second.
SYLLABLE_LETTERS = 3
MORA_LETTERS = 2
HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"  # Chinese characters (also Japanese kanji), as a regex class
HANGUL = "\uac00-\ud7af"  # Korean syllables
KANA = "\u3041-\u3096\u30a1-\u30fa"  # Japanese hiragana and katakana
_SYLLABLES = re.compile(f"[{HAN}{HANGUL}]")
_MORAE = re.compile(f"[{KANA}]")


def letter_count(text: str) -> int:
    """Letters of `text`, a digit counted as three (a number read aloud is longer than its digits),
    a Chinese character or Hangul syllable as `SYLLABLE_LETTERS` and a kana as `MORA_LETTERS`."""
    syllables, morae = len(_SYLLABLES.findall(text)), len(_MORAE.findall(text))
    letters = len(re.findall(r"[^\W\d_]", text)) - syllables - morae
    return letters + SYLLABLE_LETTERS * syllables + MORA_LETTERS * morae + 3 * len(re.findall(r"\d", text))


def frame_energies(wav16: np.ndarray) -> np.ndarray:
    """Mean square of each `VAD_FRAME_S` frame of 16 kHz audio: (frames,) float64 (the tail is dropped)."""
    size = int(VAD_RATE * VAD_FRAME_S)
    n = len(wav16) // size
    frames = np.asarray(wav16[:n * size], dtype=np.float64).reshape(n, size)
    return np.mean(frames ** 2, axis=1)


def speech_frames(wav16: np.ndarray) -> np.ndarray:
    """Speech mask of 16 kHz audio: bool (frames,) of `VAD_FRAME_S` frames, as `frame_energies`.

    webrtcvad (`VAD_MODE`) on the take brought to `VAD_LEVEL_DBFS`; then gaps under
    `FILL_GAP_S` between speech are filled and bursts under `MIN_BURST_S` dropped.
    """
    import webrtcvad
    energy = frame_energies(wav16)
    size = int(VAD_RATE * VAD_FRAME_S)
    if not len(energy) or not np.any(energy):
        return np.zeros(len(energy), bool)
    loud = _db(float(np.percentile(energy, 95)))
    gain = 10 ** (min(VAD_LEVEL_DBFS - loud, VAD_MAX_GAIN_DB) / 20)
    pcm = np.clip(np.round(wav16[:len(energy) * size] * gain * 32767), -32768, 32767).astype("<i2")
    vad = webrtcvad.Vad(VAD_MODE)
    flags = np.array([vad.is_speech(pcm[k * size:(k + 1) * size].tobytes(), VAD_RATE) for k in range(len(energy))])
    flags = _fill_runs(flags, False, round(FILL_GAP_S / VAD_FRAME_S), inner_only=True)
    return _fill_runs(flags, True, round(MIN_BURST_S / VAD_FRAME_S), inner_only=False)


def _fill_runs(mask: np.ndarray, value: bool, longest: int, inner_only: bool) -> np.ndarray:
    """`mask` with runs of `value` of at most `longest` frames flipped (with `inner_only`, not those at an end)."""
    out = mask.copy()
    edges = np.flatnonzero(np.diff(np.concatenate([[not value], mask == value, [not value]]).astype(np.int8)))
    for start, stop in zip(edges[::2], edges[1::2]):
        if stop - start <= longest and not (inner_only and (start == 0 or stop == len(mask))):
            out[start:stop] = not value
    return out


def snr_db(energy: np.ndarray, speech: np.ndarray) -> float:
    """Speech-to-noise ratio in dB from frame energies (frames,) and the speech mask (frames,).

    The noise floor is the median energy of the non-speech frames (at least
    `MIN_NOISE_FRAMES` of them) or the `NOISE_PERCENTILE`th percentile of all frames,
    whichever is lower: webrtcvad calls strong noise speech, and then the quietest frames
    are the best view of the noise. Speech is the speech frames' mean less that floor.
    """
    if not speech.any():
        return 0.0
    noise = float(np.percentile(energy, NOISE_PERCENTILE))
    if (~speech).sum() >= MIN_NOISE_FRAMES:
        noise = min(noise, float(np.median(energy[~speech])))
    signal = float(energy[speech].mean()) - noise
    if noise <= 1e-12:
        return SNR_CAP_DB
    return float(np.clip(10 * np.log10(max(signal, 1e-12) / noise), -SNR_CAP_DB, SNR_CAP_DB))


def speaker_outliers(embeddings: np.ndarray, threshold: float = OUTLIER_SIMILARITY) -> list[int]:
    """Indices of takes that sound like another speaker than the rest.

    embeddings: (N, 256) speaker embeddings, one per take (normalised here). A take is
    an outlier when the cosine between its embedding and the normalised mean of the
    others' is below `threshold`. Fewer than 3 takes: [] (with two, neither is "the rest").
    """
    e = np.asarray(embeddings, dtype=np.float64)
    if e.ndim != 2:
        raise ValueError(f"embeddings must be (N, dims), got shape {e.shape}")
    if len(e) < 3:
        return []
    e = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
    others = e.sum(axis=0, keepdims=True) - e  # leave-one-out sums: the take itself must not vote
    others /= np.maximum(np.linalg.norm(others, axis=1, keepdims=True), 1e-12)
    similarity = np.sum(e * others, axis=1)
    return [int(k) for k in np.flatnonzero(similarity < threshold)]


def safe_name(name: str) -> str:
    """`name` as a file name of letters, digits, '_', '.' and '-' only (never empty, never hidden)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "take"
