"""The command line as a user runs it: real processes, real files, one-line errors."""
import concurrent.futures
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import DATA

ROOT = Path(__file__).resolve().parents[1]


def run(*args, env=None, cwd=ROOT):
    full_env = dict(os.environ, **(env or {}))
    return subprocess.run([sys.executable, "-m", "deepfake_audio", *map(str, args)], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=600)


def assert_clean_error(proc, *fragments):
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ")
    for fragment in fragments:
        assert fragment in last, last


def test_clone_writes_16bit_wav(quick_dir, tmp_path):
    out = tmp_path / "sub" / "out.wav"
    proc = run("clone", "--voice", DATA / "ref.wav", "--text", "Hello world. Bye.", "--out", out,
               "--seed", 1, "--models", quick_dir, "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    info = sf.info(out)
    assert info.subtype == "PCM_16" and info.samplerate == 16000 and info.channels == 1
    assert info.frames == (28 - 1) * 200 + 2400
    assert "wrote" in proc.stdout and "vocoding" in proc.stderr  # tqdm bars go to stderr
    again = tmp_path / "again.wav"
    run("clone", "--voice", DATA / "ref.wav", "--text", "Hello world. Bye.", "--out", again,
        "--seed", 1, "--models", quick_dir)
    assert np.array_equal(sf.read(out)[0], sf.read(again)[0])


def test_embed_then_clone_from_embedding(quick_dir, tmp_path):
    npy = tmp_path / "voice.npy"
    proc = run("embed", "--voice", DATA / "ref.wav", "--out", npy, "--models", quick_dir)
    assert proc.returncode == 0, proc.stderr
    embedding = np.load(npy)
    assert embedding.shape == (256,) and abs(np.linalg.norm(embedding) - 1) < 1e-5
    text_file = tmp_path / "text.txt"
    text_file.write_text("Read from a file.\n", encoding="utf-8")
    out = tmp_path / "out.wav"
    cleaned = tmp_path / "cleaned.npy"
    with concurrent.futures.ThreadPoolExecutor(2) as pool:  # independent commands: their start-ups overlap
        cleaning = pool.submit(run, "embed", "--voice", DATA / "ref.wav", "--out", cleaned, "--clean", "--models",
                               quick_dir)
        proc = run("clone", "--embedding", npy, "--text-file", text_file, "--out", out, "--vocoder", "griffinlim",
                   "--models", quick_dir)
        cleaning = cleaning.result()
    assert proc.returncode == 0, proc.stderr
    info = sf.info(str(out))  # a complete 16 kHz WAV of the sentence (plus nothing else) was written
    assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16") and info.frames > 200
    assert "wrote" in proc.stdout and str(out) in proc.stdout
    # --clean: the same voice heard after the clean-up (a different, still close, embedding)
    assert cleaning.returncode == 0, cleaning.stderr
    similarity = float(np.dot(np.load(cleaned), embedding))
    assert 0.8 < similarity < 0.99999


def test_bad_inputs_give_one_line_errors(quick_dir, tmp_path):
    silent, noise = tmp_path / "silent.wav", tmp_path / "noise.wav"
    sf.write(silent, np.zeros(32000, np.float32), 16000)
    sf.write(noise, 0.1 * np.random.default_rng(0).standard_normal(5 * 16000).astype(np.float32), 16000)
    common = ["--models", quick_dir, "--out", tmp_path / "o.wav"]
    cases = [(("--voice", tmp_path / "nope.wav", "--text", "Hi.", *common), "not found"),
             (("--voice", tmp_path, "--text", "Hi.", *common), "is a folder, not an audio file"),
             (("--voice", silent, "--text", "Hi.", *common), "silent"),
             (("--voice", noise, "--text", "Hi.", *common), "noise.wav has no voiced speech"),
             (("--voice", DATA / "ref.wav", "--text", "  ", *common), "empty"),
             (("--voice", DATA / "ref.wav", "--text-file", tmp_path / "none.txt", *common), "Text file not found"),
             (("--voice", DATA / "ref.wav", "--text", "Hi.", "--models", quick_dir, "--out", tmp_path / "o.aac"),
              "must end in .wav or .flac or .mp3")]
    with concurrent.futures.ThreadPoolExecutor(3) as pool:  # independent commands: their start-ups overlap
        procs = list(pool.map(lambda case: run("clone", *case[0]), cases))
    for proc, (_, fragment) in zip(procs, cases):
        assert_clean_error(proc, fragment)
    assert not (tmp_path / "o.aac").exists()


def test_missing_weights_say_how_to_fetch_them(tmp_path):
    proc = run("clone", "--voice", DATA / "ref.wav", "--text", "Hi.", "--out", tmp_path / "o.wav",
               "--models", tmp_path, "--no-starter")
    assert_clean_error(proc, "synthesizer.pt", str(tmp_path), "python -m deepfake_audio download --models")


def test_download_failure_is_one_line(tmp_path):
    env = {"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_CACHE": str(tmp_path / "cache"),
           "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_ETAG_TIMEOUT": "5", "HF_HUB_DOWNLOAD_TIMEOUT": "5"}
    proc = run("download", "--models", tmp_path / "models", env=env)
    assert_clean_error(proc, "CorentinJ/SV2TTS")
    assert not list((tmp_path / "models").glob("*.pt")) if (tmp_path / "models").exists() else True


def test_clone_to_flac_at_a_loudness_target(quick_dir, tmp_path):
    import pyloudnorm
    out = tmp_path / "story.flac"
    proc = run("clone", "--voice", DATA / "ref.wav", "--text", "One. Two. Three. Four. Five. Six. Seven. Eight.",
               "--out", out, "--models", quick_dir, "--vocoder", "griffinlim", "--seed", "2", "--loudness", "-23")
    assert proc.returncode == 0, proc.stderr
    info = sf.info(str(out))
    assert info.format == "FLAC" and info.samplerate == 16000
    wav, rate = sf.read(str(out))
    assert pyloudnorm.Meter(rate).integrated_loudness(wav) == pytest.approx(-23, abs=1.0)
    with sf.SoundFile(str(out)) as f:
        assert f.copy_metadata()["comment"] == "AI-generated voice clone"
    assert_clean_error(run("clone", "--voice", DATA / "ref.wav", "--text", "Hi.", "--out", tmp_path / "o.wav",
                           "--models", quick_dir, "--loudness", "-3"), "--loudness must be from -40 to -9")


def test_an_npy_voice_keeps_its_recording_pitch(tmp_path):
    """`embed` writes the recording's pitch beside the .npy; `clone --embedding` on the pitch-aware
    starter speaks at it (moved here to show that the clone follows the file, not a guess)."""
    import json
    from deepfake_audio_core.pitch import track_f0
    empty = tmp_path / "models"  # a fresh install: the starter models
    empty.mkdir()
    npy = tmp_path / "voice.npy"
    proc = run("embed", "--voice", DATA / "ref.wav", "--out", npy, "--models", empty)
    assert proc.returncode == 0, proc.stderr
    pitch = json.loads((tmp_path / "voice.pitch.json").read_text())
    assert 60 < pitch["median_hz"] < 400 and pitch["voice"] == "ref.wav"
    # The same voice with its pitch file as written, moved up by half, and broken: three .npy voices side by side
    pitches = {"1.0": json.dumps(pitch), "1.5": json.dumps({**pitch, "median_hz": pitch["median_hz"] * 1.5}),
               "broken": "{broken"}
    for name, content in pitches.items():
        (tmp_path / f"voice{name}.npy").write_bytes(npy.read_bytes())
        (tmp_path / f"voice{name}.pitch.json").write_text(content)

    def clone(name: str):
        return run("clone", "--embedding", tmp_path / f"voice{name}.npy", "--text",
                   "Speaking at the pitch of the recording.", "--out", tmp_path / f"out{name}.wav", "--seed", 1,
                   "--models", empty)

    with concurrent.futures.ThreadPoolExecutor(3) as pool:  # independent commands: their start-ups overlap
        procs = dict(zip(pitches, pool.map(clone, pitches)))
    medians = []
    for factor in ("1.0", "1.5"):
        assert procs[factor].returncode == 0, procs[factor].stderr
        track = track_f0(sf.read(str(tmp_path / f"out{factor}.wav"), dtype="float32")[0])
        medians.append(float(np.median(track.f0[track.voiced])))
    assert medians[0] == pytest.approx(pitch["median_hz"], rel=0.15)
    assert medians[1] / medians[0] == pytest.approx(1.5, rel=0.1)
    assert procs["broken"].returncode == 0 and "unreadable" in procs["broken"].stderr


def test_clone_says_what_its_plan_noticed_once(quick_dir, tmp_path):
    """A plan's note reaches the command line as one `note:` line on stderr: a pitch control that the
    loaded models cannot follow, and (where flite makes one) a recording with two voices, whose log
    warning is not said a second time."""
    proc = run("clone", "--voice", DATA / "ref.wav", "--text", "Hi there.", "--out", tmp_path / "o.wav",
               "--models", quick_dir, "--vocoder", "griffinlim", "--pitch", "2")
    assert proc.returncode == 0, proc.stderr
    notes = [line for line in proc.stderr.splitlines() if "note: " in line]
    assert len(notes) == 1 and "The pitch control needs the starter vocoder" in notes[0], proc.stderr
    if shutil.which("flite") is None or shutil.which("sox") is None:
        return
    from test_speaker_turns import QUESTIONS, SENTENCES, _say
    gap = np.zeros(8000, np.float32)
    turns = [_say(tmp_path, "rms", SENTENCES[0]), _say(tmp_path, "slt", QUESTIONS[0]),
             _say(tmp_path, "rms", SENTENCES[1]), _say(tmp_path, "rms", SENTENCES[2]),
             _say(tmp_path, "slt", QUESTIONS[1]), _say(tmp_path, "rms", SENTENCES[3])]
    interview = tmp_path / "interview.wav"
    sf.write(interview, np.concatenate([x for w in turns for x in (w, gap)]), 16000)
    fresh = tmp_path / "models"  # a fresh install: the official encoder, with the starter models
    fresh.mkdir()
    proc = run("clone", "--voice", interview, "--text", "Hi there.", "--out", tmp_path / "o.wav",
               "--models", fresh, "--vocoder", "griffinlim")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("seems to hold two voices") == 1 and "note: interview.wav seems to hold" in proc.stderr
    assert "warning:" not in proc.stderr
