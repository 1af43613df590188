"""Train-a-voice building blocks on real speech: prompts, take checks, long recordings, ZIP import.

Speech comes from flite (two voices the starter models never trained on: rms, and slt);
every take is spoken once per module and reused.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest

from deepfake_audio.training.long_recording import BoundaryAligner, split_long_recording, write_segments
from deepfake_audio.training.takes_zip import unpack_takes_zip
from deepfake_audio.training.prompts import (PROMPTS_FILE, coverage_share, greedy_order, load_prompts, words)
from deepfake_audio.training.takes import PROBLEMS, check_take, speaker_outliers
from deepfake_audio_core.audio_io import read_audio, write_wav
from deepfake_audio_core.errors import AudioError

SR = 16_000
TAKE = "The boy enjoyed measuring the strange oyster shells along the quiet northern beach."
OTHERS = ["Please fetch three bright yellow jugs of fresh water from the village pump.",
          "How much treasure could a clever thief hide beneath the old wooden bridge?",
          "The plumber fixed the leaking pipe in the kitchen within twenty minutes."]
# Six prompts of 10-13 words (each at least 2 s spoken, so none is merged with a neighbour).
READING = [4, 8, 11, 23, 26, 29]

needs_flite = pytest.mark.skipif(not (shutil.which("flite") and shutil.which("sox")),
                                 reason="flite and sox make the speech: run scripts/setup.sh --dev")


def say(text: str, folder: Path, voice: str = "rms", tempo: float = 1.0) -> np.ndarray:
    """`text` spoken by a flite voice: 16 kHz float32 (samples,)."""
    raw, out = folder / "raw.wav", folder / "out.wav"
    subprocess.run(["flite", "-voice", voice, "-t", text, "-o", str(raw)], check=True, capture_output=True)
    subprocess.run(["sox", str(raw), "-r", str(SR), "-c", "1", "-b", "16", str(out), "tempo", f"{tempo:.2f}"],
                   check=True, capture_output=True)
    wav, sr = read_audio(out)
    assert sr == SR
    return wav


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("takes")


@pytest.fixture(scope="module")
def take(work) -> np.ndarray:
    return say(TAKE, work)


# Prompts


def test_prompts_are_short_original_sentences():
    prompts = load_prompts()
    header = [line for line in PROMPTS_FILE.read_text(encoding="utf-8").splitlines() if line.startswith("#")]
    assert any("Licence: CC0-1.0, written for Deepfake Audio" in line for line in header)
    assert 140 <= len(prompts) <= 160 and len(set(prompts)) == len(prompts)
    assert all(6 <= len(p.split()) <= 16 for p in prompts)
    assert not any(re.search(r"\d", p) for p in prompts)  # numbers are written as words
    assert sum(p.endswith("?") for p in prompts) >= 20
    assert all(p[0].isupper() and p[-1] in ".?" for p in prompts)


def test_first_thirty_prompts_cover_most_of_the_list():
    prompts = load_prompts()
    assert greedy_order(prompts) == prompts  # the file is stored in the order people should record it
    first, last = coverage_share(prompts[:30], prompts), coverage_share(prompts[-30:], prompts)
    assert first >= 0.70 and first > last + 0.2, (first, last)
    assert words("Don't stop, it's 9 o'clock!") == ["don't", "stop", "it's", "o'clock"]


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng lists the phonemes")
def test_first_thirty_prompts_hold_every_english_phoneme():
    text = " ".join(load_prompts()[:30])
    phones = subprocess.run(["espeak-ng", "-v", "en-us", "-q", "-x", "--sep= ", text], check=True,
                            capture_output=True, text=True).stdout
    heard = {p.strip("',%=") for p in re.split(r"[\s_]+", phones)}
    consonants = "p b t d k g f v T D s z S Z h tS dZ m n N l r w j"
    vowels = "I E a V 0 U i: u: 3: @ eI aI OI oU aU"  # espeak-ng's General American symbols
    assert set(f"{consonants} {vowels}".split()) <= heard


# One take


@needs_flite
def test_good_take_passes(take):
    check = check_take(take, SR, TAKE)
    assert check.ok and check.problems == ()
    assert check.note.startswith("Good take")
    assert 3.0 < check.speech_seconds <= check.seconds < 6.0
    assert check.snr_db > 25 and check.rms_db > -30 and 0.1 < check.peak <= 1.0


@needs_flite
def test_quiet_take(take):
    check = check_take(take * 0.01, SR, TAKE)
    assert check.problems == ("quiet",), check
    assert "too quiet" in check.note and "closer" in check.note


@needs_flite
def test_clipped_take(take):
    check = check_take(np.clip(take * 4, -1, 1), SR, TAKE)
    assert check.problems[0] == "clipped" and not check.ok
    assert "too loud" in check.note


@needs_flite
def test_mostly_silent_take(take):
    hiss = np.random.default_rng(0).standard_normal(10 * SR).astype(np.float32) * 1e-4  # -80 dBFS
    check = check_take(np.concatenate([take, hiss]), SR, TAKE)
    assert check.problems == ("silent",), check
    assert "Most of this take is silence" in check.note
    nothing = check_take(np.zeros(3 * SR, np.float32), SR)
    assert nothing.problems == ("silent",) and "No speech was heard" in nothing.note


@needs_flite
def test_noisy_take(take):
    clean = check_take(take, SR)
    level = 10 ** (clean.rms_db / 20)
    noise = np.random.default_rng(1).standard_normal(len(take)).astype(np.float32) * level / 10 ** (5 / 20)
    check = check_take(take + noise, SR, TAKE)
    assert check.problems == ("noisy",), check
    assert abs(check.snr_db - 5) < 2
    assert "background noise" in check.note


@needs_flite
def test_a_humming_take_is_told_what_to_do(take):
    """A strong mains hum counts as noise, and the note names it (not fans and traffic)."""
    clean = check_take(take, SR)
    t = np.arange(len(take)) / SR
    level = 10 ** (clean.rms_db / 20)
    hum = (level / 10 ** (8 / 20) * np.sqrt(2) * np.sin(2 * np.pi * 50 * t)).astype(np.float32)
    check = check_take(take + hum, SR, TAKE)
    assert check.problems == ("noisy",), check
    assert "mains hum (a steady 50 Hz tone)" in check.note and "charger" in check.note


@needs_flite
def test_short_and_long_takes(take):
    short = check_take(take[:SR // 2], SR)
    assert short.problems == ("short",) and "whole sentence" in short.note
    pause = np.zeros(SR // 2, np.float32)
    long = check_take(np.concatenate([take, pause] * 5), SR)
    assert long.seconds > 20 and long.problems == ("long",) and "one sentence at a time" in long.note


@needs_flite
def test_words_missing_or_added(take):
    missing = check_take(take, SR, " ".join([TAKE, *OTHERS]))
    assert missing.problems == ("words",) and missing.letters_per_second > 28
    assert "left out" in missing.note
    added = check_take(take, SR, "The boy.")
    assert added.problems == ("words",) and "added" in added.note


# Takes in scripts whose characters are syllables or morae: espeak-ng's Mandarin, Korean and Japanese.
SYLLABIC = {"cmn": "今天天气很好，我们去公园散步吧。", "ko": "오늘은 날씨가 아주 좋아서 공원에 산책하러 갑니다.",
            "ja": "きょうはとてもいいてんきですね。"}


@pytest.mark.skipif(not shutil.which("espeak-ng"), reason="espeak-ng speaks the takes: run scripts/setup.sh --dev")
@pytest.mark.parametrize("voice", sorted(SYLLABIC))
def test_a_take_in_chinese_korean_or_japanese_is_read_at_its_own_pace(voice, work):
    path = work / f"{voice}.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-w", str(path), SYLLABIC[voice]], check=True, capture_output=True)
    wav, sr = read_audio(path)
    whole = check_take(wav, sr, SYLLABIC[voice])
    assert "words" not in whole.problems, whole  # counted as letters, every such take was "missing words"
    missing = check_take(wav, sr, SYLLABIC[voice] * 4)
    assert "words" in missing.problems and "left out" in missing.note


@needs_flite
def test_take_at_another_rate_and_in_stereo(take):
    import librosa
    wav44 = librosa.resample(take, orig_sr=SR, target_sr=44_100)
    stereo = np.stack([wav44, wav44], axis=1)
    check = check_take(stereo, 44_100, TAKE)
    assert check.ok and abs(check.seconds - len(take) / SR) < 0.01
    assert set(PROBLEMS) == {"silent", "clipped", "quiet", "short", "noisy", "long", "words"}
    with pytest.raises(AudioError, match="invalid"):
        check_take(np.full(SR, np.nan, np.float32), SR)


@needs_flite
def test_another_speaker_is_the_outlier(take, work):
    from encoder.inference import Encoder, prepare_reference
    encoder = Encoder()
    same = [take] + [say(text, work) for text in OTHERS]
    stranger = say(OTHERS[0], work, voice="slt")
    embeddings = np.stack([encoder.embed_utterance(prepare_reference(w, SR)) for w in [*same, stranger]])
    assert speaker_outliers(embeddings) == [4]
    assert speaker_outliers(embeddings[:4]) == []
    assert speaker_outliers(embeddings[[0, 4]]) == []  # two takes: no majority to compare with


# One long recording


@pytest.fixture(scope="module")
def reading(work) -> tuple[list[str], list[np.ndarray]]:
    prompts = load_prompts()
    sentences = [prompts[k] for k in READING]
    return sentences, [say(s, work) for s in sentences]


def _joined(parts: list[np.ndarray], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    pieces = []
    for wav in parts:
        pieces += [wav, np.zeros(int(rng.uniform(0.5, 1.0) * SR), np.float32)]
    wav = np.concatenate(pieces)
    return wav + rng.standard_normal(len(wav)).astype(np.float32) * 1e-3  # room hiss, -60 dBFS


@needs_flite
def test_long_recording_splits_into_its_sentences(reading, tmp_path):
    sentences, parts = reading
    wav = _joined(parts, 0)
    segments = split_long_recording(wav, SR, " ".join(sentences))
    assert sum(s.text in sentences for s in segments) >= 5, [s.text for s in segments]
    assert " ".join(s.text for s in segments) == " ".join(sentences)
    for a, b in zip(segments, segments[1:]):
        assert a.start_s < a.end_s <= b.start_s
    assert all(2.0 <= s.end_s - s.start_s <= 12.0 and len(s.wav) == round((s.end_s - s.start_s) * SR)
               for s in segments)

    from deepfake_audio.training.datasets import read_corpus
    paths = write_segments(segments, tmp_path / "voice", "my reading")
    assert [p.name for p in paths[:2]] == ["my_reading_001.wav", "my_reading_002.wav"]
    corpus = read_corpus(tmp_path / "voice")
    assert [u.text for u in corpus.utterances] == [s.text for s in segments]
    written, sr = read_audio(paths[0])
    assert sr == SR and abs(len(written) - len(segments[0].wav)) <= 1


@needs_flite
def test_aligner_finds_cuts_that_rates_and_punctuation_miss(reading, work):
    sentences, _ = reading
    bare = [re.sub(r"[^\w\s'-]", "", s) for s in sentences]  # no sentence ends to snap to
    tempi = [0.85, 1.2, 0.9, 1.15, 0.85, 1.2]  # each sentence at its own pace
    wav = _joined([say(s, work, tempo=t) for s, t in zip(bare, tempi)], 1)
    plain = split_long_recording(wav, SR, " ".join(bare))
    refined = split_long_recording(wav, SR, " ".join(bare), aligner=BoundaryAligner())
    assert len(plain) == len(refined) == 6
    exact_plain = sum(s.text in bare for s in plain)
    exact_refined = sum(s.text in bare for s in refined)
    assert exact_refined >= 5 and exact_refined > exact_plain, (exact_plain, [s.text for s in refined])


def test_long_recording_errors():
    with pytest.raises(AudioError, match="No speech"):
        split_long_recording(np.zeros(5 * SR, np.float32), SR, "Hello there.")


@needs_flite
def test_transcript_that_does_not_fit(reading):
    sentences, parts = reading
    wav = _joined(parts, 2)
    with pytest.raises(AudioError, match="does not fit"):
        split_long_recording(wav, SR, " ".join(sentences * 5))
    with pytest.raises(AudioError, match="words but the recording has"):
        split_long_recording(wav, SR, "Too few words.")


CHINESE_READING = ["今天天气很好，我们去公园散步吧。", "这本书我已经看了三遍，每次都有新的想法。",
                   "明天早上七点，我们在火车站门口见面。", "他说这个问题不难，只要多练习就能学会。"]


@pytest.mark.skipif(not shutil.which("espeak-ng"), reason="espeak-ng reads the text: run scripts/setup.sh --dev")
def test_long_recording_in_chinese_is_cut_between_characters(work):
    """Chinese has no spaces between words: each character is a word of the transcript, so the
    cuts fall between characters, at the reading's pauses (its commas and full stops)."""
    path = work / "chinese.wav"
    transcript = "".join(CHINESE_READING)
    subprocess.run(["espeak-ng", "-v", "cmn", "-g", "30", "-w", str(path), transcript], check=True,
                   capture_output=True)
    wav, sr = read_audio(path)
    segments = split_long_recording(wav, sr, transcript)
    assert len(segments) >= len(CHINESE_READING)
    assert "".join(s.text for s in segments) == transcript and all(" " not in s.text for s in segments)
    assert all(s.text.endswith(("，", "。")) for s in segments), [s.text for s in segments]
    assert sum(s.text.endswith("。") for s in segments) == len(CHINESE_READING)


# ZIP import


@pytest.fixture(scope="module")
def take_file(work, take) -> Path:
    return write_wav(work / "take.wav", take[:SR], SR)


def _zip(path: Path, entries: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return path


@needs_flite
def test_zip_of_takes(take_file, tmp_path):
    audio = take_file.read_bytes()
    archive = _zip(tmp_path / "takes.zip", {
        "session/one.wav": audio, "session/one.txt": "The first sentence.\n".encode(),
        "session/two.WAV": audio, "session/two.txt": "\ufeffThe second\nsentence.".encode(),
        "session/three.wav": audio,  # no transcript
        "session/notes.txt": b"not a transcript of anything",
        "__MACOSX/session/._one.wav": b"\0\1",
        "session/.DS_Store": b"\0",
    })
    messages: list[str] = []
    paths = unpack_takes_zip(archive, tmp_path / "voice", warn=messages.append)
    assert [p.name for p in paths] == ["session_one.wav", "session_two.wav"]
    assert (tmp_path / "voice" / "session_two.txt").read_text(encoding="utf-8") == "The second sentence.\n"
    assert sorted(p.name for p in (tmp_path / "voice").iterdir()) == [
        "session_one.txt", "session_one.wav", "session_two.txt", "session_two.wav"]
    assert any("three.wav" in m and "no transcript" in m for m in messages)
    assert any("notes.txt" in m for m in messages)


@needs_flite
def test_zip_traversal_and_bad_archives_are_refused(take_file, tmp_path):
    audio = take_file.read_bytes()
    dest = tmp_path / "voice"
    evil = _zip(tmp_path / "evil.zip", {"a.wav": audio, "a.txt": b"Hello.", "../escape.txt": b"x"})
    with pytest.raises(AudioError, match="outside the folder"):
        unpack_takes_zip(evil, dest)
    assert not (tmp_path / "escape.txt").exists() and not dest.exists()
    absolute = _zip(tmp_path / "abs.zip", {"/etc/a.wav": audio, "/etc/a.txt": b"Hello."})
    with pytest.raises(AudioError, match="outside the folder"):
        unpack_takes_zip(absolute, dest)

    not_zip = tmp_path / "takes.zip"
    not_zip.write_bytes(audio)
    with pytest.raises(AudioError, match="not a ZIP"):
        unpack_takes_zip(not_zip, dest)
    with pytest.raises(AudioError, match="empty"):
        unpack_takes_zip(_zip(tmp_path / "empty.zip", {}), dest)
    with pytest.raises(AudioError, match="no take"):
        unpack_takes_zip(_zip(tmp_path / "bare.zip", {"a.wav": audio, "b.txt": b"Hi."}), dest, warn=lambda m: None)


@needs_flite
def test_zip_limits(take_file, tmp_path, monkeypatch):
    import deepfake_audio.training.takes_zip as takes_zip
    audio = take_file.read_bytes()
    archive = _zip(tmp_path / "takes.zip", {"a.wav": audio, "a.txt": b"Hello there.", "b.wav": audio,
                                            "b.txt": b"Hello again."})
    monkeypatch.setattr(takes_zip, "ZIP_MAX_BYTES", len(audio))
    with pytest.raises(AudioError, match="unpacks to"):
        unpack_takes_zip(archive, tmp_path / "voice")
    monkeypatch.setattr(takes_zip, "ZIP_MAX_BYTES", 10 * len(audio))
    monkeypatch.setattr(takes_zip, "ZIP_MAX_FILES", 3)
    with pytest.raises(AudioError, match="4 entries; at most 3"):
        unpack_takes_zip(archive, tmp_path / "voice")
    monkeypatch.setattr(takes_zip, "ZIP_MAX_FILES", 4)
    corrupt = _zip(tmp_path / "corrupt.zip", {"a.wav": b"RIFF not really audio", "a.txt": b"Hello."})
    messages: list[str] = []
    with pytest.raises(AudioError, match="no usable take"):
        unpack_takes_zip(corrupt, tmp_path / "voice", warn=messages.append)
    assert any("not readable audio" in m for m in messages)
    assert not (tmp_path / "voice" / "a.wav").exists()
