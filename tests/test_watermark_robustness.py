"""How robust the watermark is, on 50 generated clips and 50 clips that were never marked.

Generated: the shipped starter synthesizer with Griffin-Lim (what a fresh install made until
the starter vocoder; with the starter vocoder the mark is not yet as discreet: see
bench/RESULTS.md), five voices x ten sentences, cloned unmarked and then marked, so the same clip is compared
with and without the mark. Unmarked: flite and espeak-ng voices speaking sentences, the
test reference and noise. Each clip is checked as it is and after four attacks: a 64 kbit/s
MP3 round trip, resampling to 8 kHz and back, white noise at 20 dB SNR, and cutting the
first second. The measurements are written to artifacts/watermark_robustness.json.
"""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import DATA
from deepfake_audio_core.audio_io import resample
from deepfake_audio.watermark import DETECTION_THRESHOLD, embed_watermark, watermark_score

SR = 16000
REPO = Path(__file__).resolve().parents[1]
CLONE_VOICES = [("flite", "rms"), ("flite", "awb"), ("flite", "slt"), ("espeak-ng", "en-us+f3"), ("ref", "")]
PLAIN_VOICES = [("flite", "rms"), ("flite", "awb"), ("flite", "slt"), ("flite", "kal"), ("espeak-ng", "en-us+m1"),
                ("espeak-ng", "en-gb+f4")]

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None or shutil.which("flite") is None,
                                reason="needs ffmpeg and flite: run scripts/setup.sh --dev")


def synthesise(engine: str, voice: str, text: str, path: Path) -> np.ndarray:
    if engine == "ref":
        wav, _ = sf.read(str(DATA / "ref.wav"), dtype="float32")
        return wav
    raw = path.with_suffix(".raw.wav")
    if engine == "flite":
        subprocess.run(["flite", "-voice", voice, "-t", text, "-o", str(raw)], check=True, capture_output=True)
    else:
        subprocess.run(["espeak-ng", "-v", voice, "-w", str(raw), text], check=True, capture_output=True)
    wav, sr = sf.read(str(raw), dtype="float32")
    return resample(wav, sr, SR)


def mp3_round_trip(wav: np.ndarray, folder: Path) -> np.ndarray:
    src, mp3 = folder / "in.wav", folder / "out.mp3"
    sf.write(str(src), wav, SR, subtype="PCM_16")
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", str(src), "-codec:a", "libmp3lame",
                    "-b:a", "64k", str(mp3)], check=True)
    decoded, sr = sf.read(str(mp3), dtype="float32")
    return resample(decoded, sr, SR)


def attacks(wav: np.ndarray, folder: Path, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal(len(wav)).astype(np.float32)
    noise *= np.sqrt(np.mean(wav ** 2) / 100 / np.mean(noise ** 2))  # 20 dB below the clip
    return {"as is": wav, "mp3 64 kbit/s": mp3_round_trip(wav, folder),
            "resampled 8 kHz": resample(resample(wav, SR, 8000), 8000, SR), "noise 20 dB": wav + noise,
            "first second cut": wav[SR:]}


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    from deepfake_audio.pipeline import Pipeline
    from deepfake_audio.training.corpus import load_sentences
    folder = tmp_path_factory.mktemp("watermark-clips")
    sentences = [s for s in load_sentences() if len(s.split()) >= 10][:60]  # clones over 2 s: 1 s gets cut
    pipe = Pipeline(tmp_path_factory.mktemp("fresh-install"), device="cpu", watermark=False)  # the starter
    generated, similarity = [], []
    for v, (engine, voice) in enumerate(CLONE_VOICES):
        reference = synthesise(engine, voice, "Every morning I walk to the station and buy a newspaper before "
                                              "the train arrives.", folder / f"ref{v}.wav")
        embedding = pipe.embed(reference, SR)
        for k in range(10):
            plain = pipe.clone(text=sentences[v * 10 + k], embedding=embedding, seed=k, vocoder="griffinlim").wav
            marked = embed_watermark(plain, SR)
            generated.append(marked)
            similarity.append((pipe.similarity(embedding, pipe.embed_output(plain)),
                               pipe.similarity(embedding, pipe.embed_output(marked))))
    unmarked = [synthesise(engine, voice, sentences[50 + n % 10], folder / f"plain{n}.wav")
                for n, (engine, voice) in enumerate(PLAIN_VOICES * 7)]  # 42 clips
    reference, _ = sf.read(str(DATA / "ref.wav"), dtype="float32")
    unmarked += [reference, np.concatenate([reference, reference])]
    rng = np.random.default_rng(0)
    for level in (0.01, 0.05, 0.2):
        unmarked.append((level * rng.standard_normal(3 * SR)).astype(np.float32))  # white noise
        pink = np.cumsum(rng.standard_normal(3 * SR)).astype(np.float32)
        pink -= np.convolve(pink, np.ones(400) / 400, mode="same")  # brown-ish noise, DC removed
        unmarked.append(level * pink / np.abs(pink).max())
    return {"generated": generated, "unmarked": unmarked, "similarity": similarity, "folder": folder}


@pytest.fixture(scope="module")
def report(clips):
    folder = clips["folder"]
    assert len(clips["generated"]) >= 50 and len(clips["unmarked"]) >= 50
    scores = {"generated": {}, "unmarked": {}}
    for kind in scores:
        for n, wav in enumerate(clips[kind]):
            for attack, attacked in attacks(wav, folder, n).items():
                scores[kind].setdefault(attack, []).append(watermark_score(attacked, SR))
    report = {"clips": {k: len(clips[k]) for k in scores}, "threshold": DETECTION_THRESHOLD}
    for attack in scores["generated"]:
        found = np.mean(np.array(scores["generated"][attack]) >= DETECTION_THRESHOLD)
        false = np.mean(np.array(scores["unmarked"][attack]) >= DETECTION_THRESHOLD)
        report[attack] = {"detected": float(found), "false_positives": float(false),
                          "lowest_generated_score": float(np.min(scores["generated"][attack])),
                          "highest_unmarked_score": float(np.max(scores["unmarked"][attack]))}
    plain, marked = np.array(clips["similarity"]).T
    report["similarity_change"] = {"mean_abs": float(np.mean(np.abs(plain - marked))),
                                   "mean": float(np.mean(marked - plain))}
    (REPO / "artifacts").mkdir(exist_ok=True)
    (REPO / "artifacts" / "watermark_robustness.json").write_text(json.dumps(report, indent=1))
    return report


ATTACKS = ("as is", "mp3 64 kbit/s", "resampled 8 kHz", "first second cut")


@pytest.mark.parametrize("attack", ATTACKS + ("noise 20 dB",))
def test_watermark_survives(report, attack):
    assert report[attack]["detected"] >= 0.99, (attack, report[attack])


@pytest.mark.parametrize("attack", ATTACKS + ("noise 20 dB",))
def test_never_fires_on_unmarked_audio(report, attack):
    assert report[attack]["false_positives"] == 0.0, (attack, report[attack])


def test_watermark_barely_changes_speaker_similarity(report):
    assert report["similarity_change"]["mean_abs"] < 0.02, report["similarity_change"]
