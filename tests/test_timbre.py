"""Timbre warps for pseudo-speakers: the mel warp itself, and `pseudo_speakers --timbre` end to end."""
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from deepfake_audio.training.pseudo_speakers import build, main
from deepfake_audio.training.timbre import ANCHORS_HZ, TimbreWarp, band_centres_hz, warp_mel
from deepfake_audio_core.pitch import pitch_stats

VOCODER = Path(__file__).resolve().parents[1] / "saved_models" / "starter" / "starter_vocoder.pt"


def peak_mel(centre_hz: float, frames: int = 5) -> np.ndarray:
    """A mel (80, frames) that is silent but for one band near `centre_hz`."""
    mel = np.full((80, frames), -4.0, np.float32)
    mel[int(np.argmin(abs(band_centres_hz() - centre_hz)))] = 2.0
    return mel


def test_the_warp_moves_each_region_by_its_own_factor_and_tilts():
    flat = TimbreWarp((1.0,) * len(ANCHORS_HZ), 0.0)
    mel = np.random.default_rng(0).uniform(-4, 4, (80, 7)).astype(np.float32)
    np.testing.assert_allclose(warp_mel(mel, flat), mel, atol=1e-5)
    centres = band_centres_hz()
    up_low_down_high = TimbreWarp((1.15, 1.15, 0.87, 0.87, 0.87), 0.0)
    for hz, factor in ((500.0, 1.15), (3500.0, 0.87)):  # a first-formant peak rises, a third-formant one falls
        moved = centres[int(np.argmax(warp_mel(peak_mel(hz), up_low_down_high)[:, 0]))]
        assert moved == pytest.approx(hz * factor, rel=0.08), (hz, moved)
    tilted = warp_mel(np.zeros((80, 3), np.float32), TimbreWarp((1.0,) * len(ANCHORS_HZ), 2.0))
    assert tilted[-1, 0] > 0 > tilted[0, 0]  # +2 dB an octave: above 1 kHz up, below it down


def flite_voice(folder, voice: str, texts: list[str]) -> None:
    folder.mkdir(parents=True)
    for k, text in enumerate(texts):
        subprocess.run(["flite", "-voice", voice, "-t", text, "-o", str(folder / f"{voice}_{k}.wav")], check=True)
        (folder / f"{voice}_{k}.txt").write_text(text + "\n", encoding="utf-8")


def test_pseudo_speakers_with_their_own_timbre(tmp_path):
    texts = ["The quick brown fox jumps over the lazy dog.", "A stitch in time saves nine, they say."]
    flite_voice(tmp_path / "train" / "flite_slt", "slt", texts)
    flite_voice(tmp_path / "train" / "flite_kal", "kal", texts)
    plain = build(tmp_path / "train", tmp_path / "plain", speakers=3, per_speaker=1, quiet=True)
    warped = build(tmp_path / "train", tmp_path / "warped", speakers=3, per_speaker=1, quiet=True, timbre=1.0,
                   timbre_vocoder=VOCODER)
    # the sox transforms are those of a build without warps, and every speaker got one
    for name, entry in warped["speakers"].items():
        assert {k: v for k, v in entry.items() if k != "timbre"} == plain["speakers"][name]
        assert set(entry["timbre"]) == {"scales", "tilt_db_per_octave"}
    assert not (tmp_path / "warped" / ".sox").exists()
    for name in warped["speakers"]:
        (wav_path,) = sorted((tmp_path / "warped" / name).glob("*.wav"))
        (plain_path,) = sorted((tmp_path / "plain" / name).glob("*.wav"))
        assert wav_path.with_suffix(".txt").read_text() == plain_path.with_suffix(".txt").read_text()
        wav, rate = sf.read(wav_path, dtype="float32")
        sox, _ = sf.read(plain_path, dtype="float32")
        assert rate == 16000 and np.all(np.isfinite(wav)) and 0.85 < np.abs(wav).max() <= 0.91
        assert abs(len(wav) / len(sox) - 1) < 0.25  # the same words (silences trimmed)
        # rendered at the sox version's pitch
        assert pitch_stats(wav).median_hz == pytest.approx(pitch_stats(sox).median_hz, rel=0.1)
    again = build(tmp_path / "train", tmp_path / "warped", speakers=3, per_speaker=1, quiet=True, timbre=1.0,
                  timbre_vocoder=VOCODER)
    assert again["made_this_run"] == 0
    json.loads((tmp_path / "warped" / "pseudo_speakers.json").read_text())


def test_a_bad_timbre_fraction_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "train" / "v").mkdir(parents=True)
    assert main([str(tmp_path / "train"), str(tmp_path / "out"), "--timbre", "1.5"]) == 2
    assert "--timbre is a fraction" in capsys.readouterr().err
