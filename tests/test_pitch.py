"""F0 tracking (deepfake_audio_core.pitch) on signals whose pitch is known."""
from __future__ import annotations

import subprocess

import numpy as np
import pytest

from deepfake_audio_core.pitch import mains_hum, pitch_stats, track_f0
from training_corpus import tools_missing

SR = 16000


def glottal_like(f0: np.ndarray, seconds: float = 1.0) -> np.ndarray:
    """A pulse train at a (possibly gliding) pitch through a two-formant resonance: voiced-speech-like."""
    from scipy.signal import lfilter
    n = int(seconds * SR)
    f0 = np.interp(np.arange(n), np.linspace(0, n, len(f0)), f0) if np.ndim(f0) else np.full(n, float(f0))
    phase = np.cumsum(f0 / SR)
    pulses = (np.diff(np.floor(phase), prepend=0) > 0).astype(float)
    wav = pulses
    for freq, bw in ((700, 120), (1200, 150)):
        r = np.exp(-np.pi * bw / SR)
        wav = lfilter([1], [1, -2 * r * np.cos(2 * np.pi * freq / SR), r * r], wav)
    return (0.5 * wav / np.abs(wav).max()).astype(np.float32)


@pytest.mark.parametrize("f0", [70.0, 95.0, 150.0, 240.0, 330.0, 450.0])
def test_steady_pitch_is_found_within_two_percent(f0):
    track = track_f0(glottal_like(f0))
    assert track.voiced_fraction > 0.9
    assert np.median(track.f0[track.voiced]) == pytest.approx(f0, rel=0.02)


def test_gliding_pitch_is_followed_frame_by_frame():
    glide = np.linspace(100, 200, 100)
    track = track_f0(glottal_like(glide))
    frames = np.arange(len(track.f0))
    expected = np.interp(frames * 200, np.linspace(0, SR, len(glide)), glide)
    inner = track.voiced & (frames > 4) & (frames < len(frames) - 4)
    assert np.mean(np.abs(track.f0[inner] / expected[inner] - 1) < 0.05) > 0.95


def test_silence_and_noise_are_unvoiced():
    rng = np.random.default_rng(0)
    assert track_f0(np.zeros(SR, dtype=np.float32)).voiced_fraction == 0
    assert track_f0(0.3 * rng.standard_normal(SR).astype(np.float32)).voiced_fraction < 0.05
    assert pitch_stats(np.zeros(SR, dtype=np.float32)) is None


def test_a_long_recording_is_tracked_in_bounded_memory_with_the_same_result():
    # every reference is measured per request, and uploads run to 30 minutes: all frames at once
    # took 8 GB on 20 minutes; blocks of frames give the same track in a small fraction of that
    import tracemalloc
    from deepfake_audio_core import pitch
    wav = np.concatenate([glottal_like(np.linspace(90, 180, 50), 1.0),
                          0.05 * np.random.default_rng(1).standard_normal(SR).astype(np.float32)])
    long = np.tile(wav, 150)  # 5 minutes
    tracemalloc.start()
    try:
        track = track_f0(long)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 300e6, f"{peak / 1e6:.0f} MB"  # all at once: about 2,000 MB
    assert 0.3 < track.voiced_fraction < 0.7
    short, blocks = long[:20 * SR], pitch.FRAMES_PER_BLOCK
    once = track_f0(short)  # 1,601 frames: one block
    try:
        pitch.FRAMES_PER_BLOCK = 97  # many uneven blocks
        split = track_f0(short)
    finally:
        pitch.FRAMES_PER_BLOCK = blocks
    assert np.array_equal(split.f0, once.f0) and np.array_equal(split.voiced, once.voiced)


@pytest.mark.parametrize("mains", [50.0, 60.0])
@pytest.mark.parametrize("voice", [(80.0, 95.0), (120.0, 150.0), (250.0, 300.0)])
def test_a_mains_hum_is_not_taken_for_the_voice(mains, voice):
    """A recording with mains hum (its line and two harmonics, 20 dB under the voice's peak): the
    pitch is still the voice's. Unfiltered, YIN reads the hum."""
    voiced = glottal_like(np.concatenate([np.linspace(*voice, 40), np.linspace(voice[1], voice[0], 40)]), seconds=3.0)
    t = np.arange(len(voiced)) / SR
    words = np.clip(4 * np.sin(2 * np.pi * 1.6 * t), 0, 1)  # "words" of 0.3 s with pauses between, as in speech
    clean = (voiced * words).astype(np.float32)
    hum = 0.05 * np.sin(2 * np.pi * mains * t) + 0.02 * np.sin(2 * np.pi * 2 * mains * t + 1) \
        + 0.02 * np.sin(2 * np.pi * 3 * mains * t + 2)
    humming = (clean + hum).astype(np.float32)
    assert mains_hum(clean) is None and mains_hum(humming) == mains
    truth = pitch_stats(clean).median_hz
    assert pitch_stats(humming).median_hz == pytest.approx(truth, rel=0.04)
    unfiltered = track_f0(humming)  # what the notches prevent: the pauses "voiced" at the mains frequency
    assert np.mean(np.abs(unfiltered.f0[unfiltered.voiced] / mains - 1) < 0.02) > 0.15
    assert abs(np.median(unfiltered.f0[unfiltered.voiced]) / truth - 1) > 0.05
    # the training data of a tuned voice (its takes' frame F0) is measured the same way
    from deepfake_audio.training.packed import frame_f0
    frames = frame_f0(humming, 1 + len(humming) // 200).astype(np.float32)
    assert np.mean(np.abs(frames[frames > 0] / mains - 1) < 0.02) < 0.02


def test_one_frame_per_hop_and_empty_input():
    assert len(track_f0(np.zeros(1000)).f0) == 1 + 1000 // 200
    assert len(track_f0(np.zeros(0)).f0) == 0


@pytest.mark.skipif(bool(tools_missing()), reason="espeak-ng / sox missing")
@pytest.mark.parametrize("cents", [-700, 0, 700])
def test_speech_pitch_stats_follow_a_pitch_shift(tmp_path, cents):
    """espeak-ng speech moved by sox: the median F0 moves by the same ratio."""
    base = tmp_path / "base.wav"
    subprocess.run(["espeak-ng", "-v", "en-us+m3", "-w", str(base),
                    "Pitch tracking should follow the voice whichever way it moves."], check=True)
    moved = tmp_path / "moved.wav"
    subprocess.run(["sox", str(base), "-r", "16000", str(moved), "pitch", str(cents), "rate", "16000"], check=True)
    plain = pitch_stats(_read16k(base))
    shifted = pitch_stats(_read16k(moved))
    assert plain is not None and shifted is not None and shifted.voiced_fraction > 0.4
    assert shifted.median_hz / plain.median_hz == pytest.approx(2 ** (cents / 1200), rel=0.06)


def _read16k(path) -> np.ndarray:
    from deepfake_audio_core.audio_io import load_audio
    return load_audio(path, SR)


def test_pitch_memory_recalls_what_it_measured_and_forgets_the_oldest():
    from deepfake_audio_core.pitch import PitchMemory
    rate = 16000
    t = np.arange(2 * rate) / rate
    memory = PitchMemory(size=2)
    voices = {hz: np.random.default_rng(int(hz)).standard_normal(256).astype(np.float32) for hz in (100.0, 180.0, 250.0)}
    for hz, embedding in voices.items():
        stats = pitch_stats(0.5 * np.sign(np.sin(2 * np.pi * hz * t)) * np.hanning(len(t)), rate)
        memory.store(embedding, stats.median_hz, stats.log_f0_spread)
    assert memory.recall(voices[100.0]) == (None, None)  # the oldest went
    for hz in (180.0, 250.0):
        median, spread = memory.recall(voices[hz].copy())  # the same values, another array
        assert median == pytest.approx(hz, rel=0.02) and spread < 0.05
    assert pitch_stats(np.zeros(rate), rate) is None  # silence: nothing to keep
    assert memory.recall(voices[100.0]) == (None, None)


@pytest.mark.skipif(bool(tools_missing()), reason="espeak-ng / flite / sox missing")
def test_a_low_voice_over_a_telephone_band_keeps_its_pitch(tmp_path):
    """A man at about 82 Hz (flite `rms` 4 semitones down) heard through a telephone band
    (300-3,400 Hz at 8 kHz): his lowest harmonics are gone. Read as it is, YIN locks on to a third
    or a quarter of his period in a third of the frames; restored, his pitch is his own. The
    full-band recording is tracked exactly as before."""
    from deepfake_audio_core.pitch import lacks_low_band, track_voice_f0
    spoken = tmp_path / "rms.wav"
    subprocess.run(["flite", "-voice", "rms", "-t", "Pitch tracking should follow the voice whichever way it moves, "
                    "even over a telephone line, where the lowest notes of a man's voice are lost.",
                    "-o", str(spoken)], check=True)
    low, phone = tmp_path / "low.wav", tmp_path / "phone.wav"
    subprocess.run(["sox", str(spoken), "-r", "16000", str(low), "pitch", "-400", "rate", "16000"], check=True)
    subprocess.run(["sox", str(low), str(phone), "sinc", "300-3400", "rate", "8000"], check=True)
    full, band = _read16k(low), _read16k(phone)
    assert not lacks_low_band(full) and lacks_low_band(band)
    truth = pitch_stats(full).median_hz
    assert 70 < truth < 95
    def too_high(track) -> float:  # frames read at 2 to 5 times his pitch
        return float(np.mean(track.f0[track.voiced] > 1.8 * truth))
    assert too_high(track_f0(band)) > 0.25  # what the restoration prevents (measured: 0.37)
    assert too_high(track_voice_f0(band)) < 0.15  # (0.08)
    assert pitch_stats(band).median_hz == pytest.approx(truth, rel=0.06)
    as_before, now = track_f0(full), track_voice_f0(full)
    assert np.array_equal(as_before.f0, now.f0) and np.array_equal(as_before.voiced, now.voiced)


def _organ(samples: int, rate: int = 16000, seed: int = 0) -> np.ndarray:
    """Chords of square waves, a new one every half second (about 55-330 Hz): a music bed."""
    rng = np.random.default_rng(seed)
    t = np.arange(rate // 2) / rate
    chords = []
    for _ in range(samples // len(t) + 1):
        root = rng.choice([110.0, 123.5, 130.8, 146.8, 164.8, 174.6, 196.0, 220.0])
        chords.append(sum(0.3 * np.sign(np.sin(2 * np.pi * f * t)) for f in (root, root * 1.26, root * 1.5, root / 2)))
    return np.concatenate(chords)[:samples].astype(np.float32)


@pytest.mark.skipif(bool(tools_missing()), reason="espeak-ng / flite / sox missing")
def test_music_under_a_voice_does_not_pull_its_pitch(tmp_path):
    """A woman (flite `slt`, about 170 Hz) with a loud music bed (10 dB under her speech) that plays
    on alone for a second between her sentences: the chords' held notes are left out of her median,
    which the plain median over every voiced frame was not. Her speech alone holds its pitch that
    steadily in a few frames only, and its median stays where it was."""
    from deepfake_audio_core.pitch import held_notes, track_voice_f0
    gap = np.zeros(16000, np.float32)
    parts = []
    for k, text in enumerate(["The garden was quiet in the early light of the morning.",
                              "Nobody had expected the letter to arrive so soon after the storm.",
                              "We will meet again at the station when the last train comes in."]):
        spoken = tmp_path / f"slt{k}.wav"
        subprocess.run(["flite", "-voice", "slt", "-t", text, "-o", str(spoken)], check=True)
        parts += [_read16k(spoken), gap]
    voice = np.concatenate(parts)
    music = _organ(len(voice))
    speech_power = np.mean(voice[np.abs(voice) > 0.01] ** 2)
    mixed = voice + music * np.sqrt(speech_power / 10 / np.mean(music ** 2))
    truth = pitch_stats(voice).median_hz
    assert 150 < truth < 200
    track = track_voice_f0(mixed)
    plain = float(np.exp(np.median(np.log(track.f0[track.voiced]))))
    assert abs(plain / truth - 1) > 0.25  # what it was (measured: 0.57 of her pitch)
    assert pitch_stats(mixed).median_hz == pytest.approx(truth, rel=0.08)  # (0.96)
    alone = track_voice_f0(voice)
    assert np.mean(held_notes(alone)[alone.voiced]) < 0.05  # her own steadiest stretches, a few frames
    assert pitch_stats(voice).median_hz == pytest.approx(np.exp(np.median(np.log(alone.f0[alone.voiced]))), rel=0.01)
