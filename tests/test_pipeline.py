"""The chained pipeline: parity through the public API, reproducibility, threads, errors."""
import shutil
import threading

import numpy as np
import pytest

from conftest import DATA, vector
from deepfake_audio import Pipeline
from deepfake_audio.errors import AudioError, MissingWeightsError, TextError
from deepfake_audio.pipeline import MAX_TEXT_CHARS


@pytest.fixture(scope="module")
def pipe(quick_dir):
    return Pipeline(quick_dir, device="cpu")


@pytest.fixture(scope="module")
def parity_pipe(seed1_dir):
    return Pipeline(seed1_dir, device="cpu")


def test_api_matches_reference_vectors(parity_pipe):
    embed = parity_pipe.embed(DATA / "ref.wav")
    np.testing.assert_allclose(embed, vector("embed.npy"), atol=1e-5)
    (mel,) = parity_pipe.synthesize("Hello world, this is a test.", vector("embed.npy"), seed=1)
    assert mel.shape == (80, 896)
    np.testing.assert_allclose(mel, vector("mel.npy"), atol=1e-5)


def test_clone_is_reproducible_with_a_seed(pipe):
    a = pipe.clone(DATA / "ref.wav", "Hello there. How are you?", seed=7)
    b = pipe.clone(DATA / "ref.wav", "Hello there. How are you?", seed=7)
    c = pipe.clone(DATA / "ref.wav", "Hello there. How are you?", seed=8)
    assert a.sentences == ["Hello there.", "How are you?"]
    assert a.wav.dtype == np.float32 and a.sample_rate == 16000
    assert np.array_equal(a.wav, b.wav) and not np.array_equal(a.wav, c.wav)
    assert 0.9 < np.abs(a.wav).max() <= 0.97 + 1e-6
    # two 14-frame sentences vocoded jointly plus one 0.15 s pause
    assert len(a.wav) == (28 - 1) * 200 + 2400
    assert set(a.seconds) == {"encoding", "synthesizing", "vocoding"} and a.real_time_factor > 0


def test_clone_from_saved_embedding_and_griffinlim(pipe):
    embedding = pipe.embed(DATA / "ref.wav")
    result = pipe.clone(text="One. Two. Three.", embedding=embedding, seed=1, vocoder="griffinlim")
    assert len(result.sentences) == 3 and result.vocoder == "griffinlim"
    assert np.all(np.isfinite(result.wav)) and len(result.wav) > 3 * 13 * 200


def test_progress_reports_every_stage(pipe):
    seen = []
    pipe.clone(DATA / "ref.wav", "Hi.", seed=1, progress=lambda stage, f, detail: seen.append((stage, f)))
    stages = [s for s, _ in seen]
    assert stages.index("encoding") < stages.index("synthesizing") < stages.index("vocoding")
    assert ("vocoding", 1.0) in seen


def test_concurrent_calls_match_serial(pipe):
    text = "Threads share one model."
    expected = pipe.clone(DATA / "ref.wav", text, seed=3).wav
    results, errors = [None] * 3, []

    def work(i):
        try:
            results[i] = pipe.clone(DATA / "ref.wav", text, seed=3).wav
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for wav in results:
        assert np.array_equal(wav, expected)


@pytest.mark.parametrize("text, match", [
    ("", "empty"), ("   \n ", "empty"), ("%%% /// ~~", "no speakable"),
    ("x" * (MAX_TEXT_CHARS + 1), "limit"),
])
def test_bad_text(pipe, text, match):
    with pytest.raises(TextError, match=match):
        pipe.clone(DATA / "ref.wav", text)


def test_long_text_is_split_and_batched(pipe):
    text = " ".join(f"Sentence number {i} is here." for i in range(20))
    result = pipe.clone(DATA / "ref.wav", text, seed=1, vocoder="griffinlim")
    assert len(result.sentences) == 20 and len(result.mels) == 20


def test_silent_reference(pipe, tmp_path):
    import soundfile as sf
    sf.write(tmp_path / "silence.wav", np.zeros(32000, np.float32), 16000)
    with pytest.raises(AudioError, match="silent"):
        pipe.clone(tmp_path / "silence.wav", "Hello.")


def test_missing_weights(quick_dir, tmp_path):
    shutil.copy(quick_dir / "synthesizer.pt", tmp_path / "synthesizer.pt")
    pipe = Pipeline(tmp_path, device="cpu")
    assert pipe.vocoder is None and "missing" in pipe.describe()["vocoder"]
    with pytest.raises(MissingWeightsError, match="vocoder.pt.*python -m deepfake_audio download"):
        pipe.clone(DATA / "ref.wav", "Hello.", vocoder="wavernn")
    assert len(pipe.clone(DATA / "ref.wav", "Hello.", vocoder="griffinlim", seed=1).wav) > 0
    (tmp_path / "synthesizer.pt").unlink()
    with pytest.raises(MissingWeightsError, match="synthesizer.pt"):
        Pipeline(tmp_path, device="cpu").clone(DATA / "ref.wav", "Hello.")
