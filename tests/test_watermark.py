"""Every clone is marked as generated: Perth's watermark, provenance tags, and the detector."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import DATA
from deepfake_audio import perth_compat
from deepfake_audio_core.errors import AudioError
from deepfake_audio import watermark
from deepfake_audio.watermark import (DETECTION_THRESHOLD, MARK_LEVELS, StreamWatermarker, check_file,
                                      embed_watermark, mark_checked, provenance_tags, survives_noise,
                                      watermark_enabled, watermark_score)

ROOT = Path(__file__).resolve().parent.parent
SR = 16000


def speech(seconds: float = 3.0) -> np.ndarray:
    wav, sr = sf.read(str(DATA / "ref.wav"), dtype="float32")
    assert sr == SR
    return np.tile(wav, int(np.ceil(seconds * SR / len(wav))))[:int(seconds * SR)]


def test_perth_loads_its_real_watermarker_with_the_stand_ins():
    perth_compat.install()
    import perth
    from perth.perth_net.perth_net_implicit.perth_watermarker import PerthImplicitWatermarker
    assert perth.PerthImplicitWatermarker is PerthImplicitWatermarker  # not None: pkg_resources was found
    import torchaudio.transforms
    # This torch has no working torchaudio: the stand-ins are in use, and they invert each other.
    spec = torchaudio.transforms.Spectrogram(n_fft=512, hop_length=128, power=None)
    inverse = torchaudio.transforms.InverseSpectrogram(n_fft=512, hop_length=128)
    signal = torch.from_numpy(speech(1.0))
    assert torch.allclose(inverse(spec(signal), length=len(signal)), signal, atol=1e-5)
    assert torchaudio.transforms.TimeStretch(hop_length=320, n_freq=1025).phase_advance.shape == (1025, 1)


def test_embed_and_detect():
    clean = speech()
    marked = embed_watermark(clean, SR)
    assert marked.shape == clean.shape and marked.dtype == np.float32 and np.abs(marked).max() <= 1.0
    snr = 10 * np.log10(np.sum(clean ** 2) / np.sum((marked - clean) ** 2))
    assert 10 < snr < 30  # inaudible next to speech, strong enough to survive coding
    assert watermark_score(marked, SR) > 0.9 and watermark_score(clean, SR) < 0.1
    # At another sample rate too (the detector resamples).
    import librosa
    assert watermark_score(librosa.resample(marked, orig_sr=SR, target_sr=22050), 22050) > DETECTION_THRESHOLD


def test_a_stream_marked_piece_by_piece_carries_the_mark():
    clean = speech(4.0)
    marker = StreamWatermarker(SR)
    pieces, start = [], 0
    for size in [400] + [3200] * 20 + [2400]:  # the stream's piece sizes, with a pause
        piece = clean[start:start + size] if size != 2400 else np.zeros(size, np.float32)
        pieces.append(marker.mark(piece))
        start += size if size != 2400 else 0
    joined = np.concatenate(pieces)
    assert np.all(joined[-2400:] == 0)  # pauses stay silent
    assert watermark_score(joined[:-2400], SR) > 0.9


def test_a_mark_that_fails_the_noise_check_is_raised_a_level(monkeypatch):
    clean = speech()
    marked, level = mark_checked(clean, SR)
    assert level == 0 and survives_noise(marked, SR)  # ordinary speech passes at Perth's own strength
    # A check no mark can pass: the clip climbs to the last level (which is not checked).
    monkeypatch.setattr(watermark, "CHECK_SCORE", 1.01)
    harder, level = mark_checked(clean, SR)
    assert level == len(MARK_LEVELS) - 1
    assert np.mean((harder - clean) ** 2) > np.mean((marked - clean) ** 2)  # a stronger mark
    again, same = mark_checked(clean, SR)
    assert same == level and np.array_equal(again, harder)  # the check's noise is fixed: same audio
    # A stream is marked at its fixed level whatever the check says (same request, same audio).
    marker = StreamWatermarker(SR)
    marker.mark(clean[:SR])
    assert marker.level == watermark.STREAM_LEVEL


def test_the_setting_turns_it_off_except_on_a_space(monkeypatch):
    monkeypatch.delenv("SPACE_ID", raising=False)
    monkeypatch.setenv("DEEPFAKE_AUDIO_WATERMARK", "0")
    assert not watermark_enabled()
    monkeypatch.setenv("SPACE_ID", "someone/voices")
    assert watermark_enabled()
    monkeypatch.delenv("DEEPFAKE_AUDIO_WATERMARK")
    monkeypatch.delenv("SPACE_ID")
    assert watermark_enabled()


def test_clones_are_watermarked_and_tagged(quick_dir, tmp_path):
    from deepfake_audio.pipeline import Pipeline
    from deepfake_audio.streaming import stream_clone
    pipe = Pipeline(quick_dir, device="cpu")
    assert pipe.watermark
    text = "One sentence. Two. Three here. Four. And five. Then six. Seven."  # the test weights stop early
    result = pipe.clone(DATA / "ref.wav", text, seed=1, vocoder="griffinlim")
    assert watermark_score(result.wav, SR) > DETECTION_THRESHOLD and "watermarking" in result.seconds
    streamed = np.concatenate([c.audio for c in stream_clone(pipe, DATA / "ref.wav", text, seed=1,
                                                             vocoder="griffinlim")])
    assert len(streamed) == len(result.wav) and watermark_score(streamed, SR) > DETECTION_THRESHOLD
    unmarked = Pipeline(quick_dir, device="cpu", watermark=False).clone(DATA / "ref.wav", text, seed=1,
                                                                         vocoder="griffinlim")
    assert watermark_score(unmarked.wav, SR) < DETECTION_THRESHOLD

    out = tmp_path / "clone.wav"
    done = subprocess.run([sys.executable, "-m", "deepfake_audio", "clone", "--voice", str(DATA / "ref.wav"),
                           "--text", text, "--out", str(out), "--models", str(quick_dir), "--vocoder", "griffinlim",
                           "--seed", "1"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    found = check_file(out)
    assert found.watermarked and found.provenance["comment"] == "AI-generated voice clone"
    assert found.provenance["software"].startswith("Deepfake Audio") and found.provenance["date"].startswith("20")
    assert b"INFO" in out.read_bytes()[:200]  # a RIFF INFO chunk


def test_detect_command(tmp_path):
    marked = tmp_path / "marked.wav"
    sf.write(str(marked), embed_watermark(speech(), SR), SR, subtype="PCM_16")
    plain = tmp_path / "plain.flac"
    sf.write(str(plain), speech(), SR)
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "corrupt.mp3").write_bytes(b"ID3\x03\x00\x00\x00 not really mp3 data" * 10)
    sf.write(str(tmp_path / "short.wav"), speech(0.1), SR, subtype="PCM_16")
    (tmp_path / "notes.txt").write_text("not audio")
    files = [marked, plain] + [tmp_path / n for n in ("empty.wav", "corrupt.mp3", "short.wav", "notes.txt")]
    done = subprocess.run([sys.executable, "-m", "deepfake_audio", "detect", *map(str, files), "--json"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2  # some files could not be checked; the others were
    report = json.loads(done.stdout)
    assert [r["file"] for r in report] == [str(f) for f in files]
    assert report[0]["watermarked"] is True and report[0]["score"] > 0.9
    assert report[1]["watermarked"] is False and report[1]["score"] < 0.1 and report[1]["provenance"] == {}
    errors = [r["error"] for r in report[2:]]
    assert "is empty (0 bytes)" in errors[0]
    assert "corrupt" in errors[1] and "too short to check" in errors[2] and "Unsupported audio format" in errors[3]
    assert "Traceback" not in done.stderr

    text = subprocess.run([sys.executable, "-m", "deepfake_audio", "detect", str(marked)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert text.returncode == 0 and "Watermarked" in text.stdout
    with pytest.raises(AudioError, match="too short"):
        check_file(tmp_path / "short.wav")
    # Perth's decoder scores a pure 220 Hz tone as marked (0.98): the detector refuses to judge it.
    tone = tmp_path / "tone.wav"
    sf.write(str(tone), 0.5 * np.sin(2 * np.pi * 220 * np.arange(3 * SR) / SR), SR, subtype="PCM_16")
    with pytest.raises(AudioError, match="steady 220 Hz tone, not speech"):
        check_file(tone)
    silent = tmp_path / "silent.wav"
    sf.write(str(silent), np.zeros(2 * SR), SR, subtype="PCM_16")
    with pytest.raises(AudioError, match="silent"):
        check_file(silent)


def test_provenance_tags_name_the_software():
    tags = provenance_tags()
    assert tags["comment"] == "AI-generated voice clone" and tags["software"].startswith("Deepfake Audio")
