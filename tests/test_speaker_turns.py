"""A reference with two voices in it is cloned as the voice heard most, at that voice's pitch.

The split itself on made-up partial embeddings, then the pipeline on real speech: flite's `rms`
(a man, about 100 Hz) and `slt` (a woman, about 170 Hz) taking turns in one clip.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from deepfake_audio.pipeline import Pipeline
from deepfake_audio_core.audio_io import read_audio
from encoder.inference import prepare_reference
from encoder.speaker_turns import MIN_PARTIALS, main_speaker

SR = 16_000
STEP = SR * 8 // 10  # the encoder's partials start every 0.8 s and last 1.6 s


def _partials(groups: list[tuple[np.ndarray, int]], spread: float, seed: int = 0) -> np.ndarray:
    """(n, 256) unit vectors: `count` noisy copies of each centre, in turn."""
    rng = np.random.default_rng(seed)
    rows = [centre + spread * rng.standard_normal((count, centre.size)) / np.sqrt(centre.size)
            for centre, count in groups]
    rows = np.concatenate(rows)
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def _centres(cosine: float, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Two unit vectors at `cosine` to each other."""
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal((2, 256))
    a /= np.linalg.norm(a)
    b -= (b @ a) * a
    b /= np.linalg.norm(b)
    return a, cosine * a + np.sqrt(1 - cosine ** 2) * b


def _slices(n: int) -> list[slice]:
    return [slice(k * STEP, k * STEP + 2 * STEP) for k in range(n)]


def test_two_voices_give_the_larger_ones_windows_and_one_voice_gives_none():
    a, b = _centres(0.5)
    partials = _partials([(a, 10), (b, 5)], spread=0.3)
    n_samples = 16 * STEP
    main = main_speaker(partials, _slices(15), n_samples)
    assert main is not None
    assert main.share == pytest.approx(10 / 15)
    assert main.embedding @ a > 0.95 and main.embedding @ b < 0.6
    assert main.similarity < 0.8
    # the samples kept are those the first voice's windows reach and the second's do not
    assert main.keep[:10 * STEP].all() and not main.keep[11 * STEP:].any()
    # one voice, spread as the encoder's windows of one speaker are (centroids of halves near 0.95)
    assert main_speaker(_partials([(a, 15)], spread=0.3), _slices(15), n_samples) is None
    # too few windows to tell (under about 7 s of speech)
    few = _partials([(a, MIN_PARTIALS - 3), (b, 2)], spread=0.3)
    assert main_speaker(few, _slices(len(few)), n_samples) is None
    # a second group of under a fifth of the windows is a laugh or a cough, not a voice
    assert main_speaker(_partials([(a, 13), (b, 2)], spread=0.3), _slices(15), n_samples) is None
    # two voices as alike as one voice's windows stay one voice
    near = _partials([(a, 10), (_centres(0.9)[1], 5)], spread=0.3)
    assert main_speaker(near, _slices(15), n_samples) is None
    # windows that scatter (an untrained encoder): no group is tighter than the gap between them
    scattered = _partials([(a, 15)], spread=3.0)
    assert main_speaker(scattered, _slices(15), n_samples) is None


needs_flite = pytest.mark.skipif(not (shutil.which("flite") and shutil.which("sox")),
                                 reason="flite and sox make the speech: run scripts/setup.sh --dev")
SENTENCES = ["Thank you for coming in today, it is good to finally meet you in person.",
             "I started the company with two friends when we were still at university.",
             "Most of what we learnt came from getting things wrong and trying again.",
             "We moved into this building only last spring, and it is already too small."]
QUESTIONS = ["And how did the three of you decide who would run the business side?",
             "What would you tell someone who is starting out on their own this year?"]


def _say(folder: Path, voice: str, text: str) -> np.ndarray:
    raw, out = folder / f"{voice}.raw.wav", folder / f"{voice}.wav"
    subprocess.run(["flite", "-voice", voice, "-t", text, "-o", str(raw)], check=True, capture_output=True)
    subprocess.run(["sox", str(raw), "-r", str(SR), "-c", "1", str(out)], check=True, capture_output=True)
    return read_audio(out)[0]


@needs_flite
def test_an_interview_clip_is_cloned_as_the_voice_heard_most(tmp_path):
    """His answers and her questions in one clip: the embedding and pitch are his, and a plan says so.
    A clip of his answers alone is heard as before, with no note."""
    pipe = Pipeline(tmp_path / "no-official-weights", device="cpu")
    gap = np.zeros(SR // 2, np.float32)
    his = [_say(tmp_path, "rms", s) for s in SENTENCES]
    hers = [_say(tmp_path, "slt", q) for q in QUESTIONS]
    turns = [his[0], hers[0], his[1], his[2], hers[1], his[3]]
    interview = np.concatenate([x for w in turns for x in (w, gap)])
    alone = np.concatenate([x for w in his for x in (w, gap)])

    his_embedding = pipe.embed(alone, SR)
    assert pipe.plan(alone, "Hello.", sample_rate=SR).note == ""
    prepared = prepare_reference(alone, SR)  # one voice: the embedding is the encoder's as it always was
    assert np.array_equal(his_embedding, pipe.encoder.embed_utterance(prepared))
    his_pitch = pipe._heard_pitch.recall(his_embedding)[0]
    assert 80 < his_pitch < 130

    whole = pipe.encoder.embed_utterance(prepare_reference(interview, SR))  # what it was before
    embedding, heard = pipe.embed(interview, SR, return_wav=True)
    now, before = float(embedding @ his_embedding), float(whole @ his_embedding)
    assert now > 0.95 and now > before + 0.02, (now, before)
    assert pipe._heard_pitch.recall(embedding)[0] == pytest.approx(his_pitch, rel=0.05)
    assert len(heard) < len(prepare_reference(interview, SR))  # her turns are not what it heard
    note = pipe.plan(interview, "Hello.", sample_rate=SR).note
    assert "two voices" in note and "only the one heard most is kept" in note and "one person" in note
    assert pipe.clone(interview, "Hello.", sample_rate=SR, vocoder="griffinlim").note == note  # the result says it too
    assert pipe.clone(alone, "Hello.", sample_rate=SR, vocoder="griffinlim").note == ""


@needs_flite
def test_the_two_voices_bench_compares_the_split_with_the_whole(tmp_path, capsys):
    """`bench/two_voices.py` on a tiny corpus: one pair (flite's `awb` and `slt`), cloned with and
    without the split, and the single-voice references counted; no corpus is a sentence."""
    import importlib.util
    import json
    from deepfake_audio.training.corpus import VOICES, build_corpus
    spec = importlib.util.spec_from_file_location("two_voices", Path(__file__).parents[1] / "bench" / "two_voices.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    voices = tuple(v for v in VOICES if v.speaker in ("flite_slt", "flite_awb"))
    build_corpus(tmp_path / "corpus", n_sentences=12, per_speaker=6, augment=0, voices=voices,
                 held_out=("flite_awb",), eval_sentences=6, progress=False)
    out = tmp_path / "two.json"
    argv = ["--corpus", str(tmp_path / "corpus"), "--models", str(tmp_path / "no-official-weights"),
            "--texts", "1", "--out", str(out)]
    bench.NSH = tmp_path / "none"  # the real voices only where their packages are: not here
    assert bench.main(argv) == 0
    report = json.loads(out.read_text())
    assert set(report["pairs"]) == {"flite_awb + flite_slt"}
    row = report["pairs"]["flite_awb + flite_slt"]
    assert set(row) == {"split", "whole"}
    assert row["split"]["noted"] and not row["whole"]["noted"]
    assert set(report["single"]) == {"flite_awb x3", "flite_awb x6", "flite_slt x3", "flite_slt x6"}
    assert "single-voice references split:" in capsys.readouterr().out
    assert bench.main(["--corpus", str(tmp_path / "none")]) == 2
    assert "manifest.json not found" in capsys.readouterr().out
