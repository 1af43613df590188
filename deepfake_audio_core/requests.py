"""The values a clone request carries, defined once, with the one check of each.

Every front end (studio, HTTP API, CLI, Python) checks a user's value here, once, at
its edge; the layers below take the checked value as it is. Errors are
`RequestError`s that say what is allowed (the HTTP API turns them into 422s).

    pace       speaking rate, MIN_PACE to MAX_PACE (1 is the model's own)
    pitch      shift in semitones, -MAX_PITCH_SEMITONES to MAX_PITCH_SEMITONES (0 is the voice's own)
    vocoder    one of VOCODER_CHOICES ("auto": WaveRNN when its weights are there, else the starter)
    loudness   EBU R128 target in LUFS, MIN_LUFS to MAX_LUFS, or None for the 0.97 peak
    mode       `deepfake_audio_core.modes` (MODES, check_mode)
    format     `deepfake_audio_core.audio_io` (OUTPUT_FORMATS)
    sample rate  `deepfake_audio_core.audio_config.MEL` (16 kHz in and out of the models)
"""
from __future__ import annotations

import math

from deepfake_audio_core.errors import RequestError

MIN_PACE, MAX_PACE = 0.5, 2.0  # speaking rate: half to twice the model's own
MAX_PITCH_SEMITONES = 12.0
VOCODERS: tuple[str, ...] = ("wavernn", "starter", "griffinlim")
VOCODER_CHOICES: tuple[str, ...] = ("auto", *VOCODERS)
MIN_LUFS, MAX_LUFS = -40.0, -9.0


def _number(value, what: str, allowed: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise RequestError(f"The {what} must be a number {allowed}, got {value!r}.") from None
    if math.isnan(number):
        raise RequestError(f"The {what} must be a number {allowed}, got {value!r}.")
    return number


def check_pace(pace) -> float:
    """The speaking rate as a float in [MIN_PACE, MAX_PACE]; `RequestError` otherwise."""
    value = _number(pace, "pace", f"from {MIN_PACE} to {MAX_PACE}")
    if not MIN_PACE <= value <= MAX_PACE:
        raise RequestError(f"The pace must be from {MIN_PACE} to {MAX_PACE} (1 is the voice's own rate), "
                           f"got {pace!r}.")
    return value


def check_pitch(pitch) -> float:
    """A pitch shift in semitones as a float in [-12, 12]; `RequestError` otherwise."""
    value = _number(pitch, "pitch", f"of semitones from -{MAX_PITCH_SEMITONES:g} to {MAX_PITCH_SEMITONES:g}")
    if not -MAX_PITCH_SEMITONES <= value <= MAX_PITCH_SEMITONES:
        raise RequestError(f"The pitch must be from -{MAX_PITCH_SEMITONES:g} to {MAX_PITCH_SEMITONES:g} semitones "
                           f"(0 is the voice's own), got {pitch!r}.")
    return value


def check_loudness(loudness) -> float | None:
    """A loudness target in LUFS as a float in [MIN_LUFS, MAX_LUFS], or None (no value: the 0.97
    peak); `RequestError` otherwise."""
    if loudness is None or (isinstance(loudness, str) and not loudness.strip()):
        return None
    value = _number(loudness, "loudness target", "of LUFS, such as -16")
    if not MIN_LUFS <= value <= MAX_LUFS:
        raise RequestError(f"The loudness target must be from {MIN_LUFS} to {MAX_LUFS} LUFS, got {loudness!r}.")
    return value


def check_vocoder(vocoder) -> str:
    """A vocoder name of VOCODER_CHOICES, spelt loosely ("Griffin-Lim", "WaveRNN"; None or empty:
    "auto"); `RequestError` otherwise."""
    if vocoder is not None and not isinstance(vocoder, str):
        raise RequestError(f"Unknown vocoder {vocoder!r}: choose {', '.join(VOCODERS)} or auto.")
    name = (vocoder or "auto").strip().lower()
    name = name.replace("-", "").replace(" ", "").replace("_", "") or "auto"
    if name not in VOCODER_CHOICES:
        raise RequestError(f"Unknown vocoder {vocoder!r}: choose {', '.join(VOCODERS)} or auto.")
    return name
