"""The chained pipeline: parity through the public API, reproducibility, threads, errors."""
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import DATA, vector
from deepfake_audio import Pipeline
from deepfake_audio_core.errors import AudioError, MissingWeightsError, TextError
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
    assert set(a.seconds) == {"encoding", "synthesizing", "vocoding", "watermarking"} and a.real_time_factor > 0


def test_clone_from_saved_embedding_and_griffinlim(pipe):
    embedding = pipe.embed(DATA / "ref.wav")
    result = pipe.clone(text="One. Two. Three.", embedding=embedding, seed=1, vocoder="griffinlim")
    assert len(result.sentences) == 3 and result.vocoder == "griffinlim"
    assert np.all(np.isfinite(result.wav)) and len(result.wav) > 3 * 13 * 200


def test_progress_reports_every_stage(pipe):
    seen = []
    pipe.clone(DATA / "ref.wav", "Hi.", seed=1, progress=lambda event: seen.append((event.stage, event.fraction)))
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


def test_a_reference_that_is_not_speech_is_refused_and_noisy_speech_is_not(pipe):
    # noise, whispering or a held tone clone nothing of a voice: say so rather than speak some voice
    from encoder.audio import preprocess_wav
    rng = np.random.default_rng(0)
    t = np.arange(8 * 16000) / 16000
    for audio, message in ((0.1 * rng.standard_normal(t.size), "no voiced speech"),
                           (0.3 * np.sin(2 * np.pi * 440 * t), "steady tone at 440 Hz")):
        with pytest.raises(AudioError, match=message):
            pipe.embed(audio.astype(np.float32), 16000)
    # the same check passes speech buried in white noise at 0 dB SNR (a bad phone recording)
    speech = preprocess_wav(DATA / "ref.wav", normalize=False, trim_silence=False)
    noise = rng.standard_normal(speech.size)
    noise *= np.sqrt(np.mean(speech ** 2) / np.mean(noise ** 2))
    assert pipe.embed((speech + noise).astype(np.float32), 16000).shape == (256,)


def test_missing_weights(quick_dir, tmp_path):
    shutil.copy(quick_dir / "synthesizer.pt", tmp_path / "synthesizer.pt")
    pipe = Pipeline(tmp_path, device="cpu")
    assert pipe.vocoder is None and "missing" in pipe.describe()["vocoder"]
    with pytest.raises(MissingWeightsError, match="vocoder.pt.*python -m deepfake_audio download"):
        pipe.clone(DATA / "ref.wav", "Hello.", vocoder="wavernn")
    assert len(pipe.clone(DATA / "ref.wav", "Hello.", vocoder="griffinlim", seed=1).wav) > 0
    (tmp_path / "synthesizer.pt").unlink()
    with pytest.raises(MissingWeightsError, match="synthesizer.pt"):
        Pipeline(tmp_path, device="cpu", starter=False).clone(DATA / "ref.wav", "Hello.")


@pytest.fixture
def starter_dir(quick_dir, tmp_path, monkeypatch):
    """A starter-models folder holding (a link to) the quick synthesizer, and an empty models folder."""
    import deepfake_audio.pipeline as pipeline_module
    starter = tmp_path / "starter"
    starter.mkdir()
    (starter / "synthesizer.pt").symlink_to(quick_dir / "synthesizer.pt")
    monkeypatch.setattr(pipeline_module, "STARTER_MODELS_DIR", starter)
    (tmp_path / "models").mkdir()
    return starter


def test_starter_models_stand_in_for_missing_official_ones(starter_dir, quick_dir, tmp_path):
    models = tmp_path / "models"
    pipe = Pipeline(models, device="cpu")
    assert pipe.synthesizer_path == starter_dir / "synthesizer.pt" and pipe.vocoder is None
    assert pipe.is_starter("synthesizer") and not pipe.is_starter("vocoder")
    described = pipe.describe()
    assert described["synthesizer"].startswith("starter model") and str(models) in described["synthesizer"]
    assert described["vocoder"].startswith("Griffin-Lim")
    result = pipe.clone(DATA / "ref.wav", "Hello.", seed=1)  # "auto": Griffin-Lim, as no WaveRNN is there
    assert result.vocoder == "griffinlim" and len(result.wav) > 0
    from deepfake_audio.studio import Studio
    assert "Starter models in use" in Studio(data_dir=tmp_path / "data", pipeline=pipe).weights_notice()
    # Official weights in the folder win; starter=False turns the fallback off.
    (models / "synthesizer.pt").symlink_to(quick_dir / "synthesizer.pt")
    (models / "vocoder.pt").symlink_to(quick_dir / "vocoder.pt")
    official = Pipeline(models, device="cpu")
    assert not official.is_starter("synthesizer") and official.default_vocoder() == "wavernn"
    assert Pipeline(tmp_path / "empty", device="cpu", starter=False).synthesizer is None


def test_cli_says_when_starter_models_are_used(starter_dir, tmp_path, capsys):
    from deepfake_audio import cli
    out = tmp_path / "out.wav"
    assert cli.main(["clone", "--voice", str(DATA / "ref.wav"), "--text", "Hello.", "--out", str(out),
                     "--models", str(tmp_path / "models"), "--device", "cpu", "--seed", "1"]) == 0
    captured = capsys.readouterr()
    assert "using the starter synthesizer" in captured.err and "Griffin-Lim" in captured.err
    assert "python -m deepfake_audio download" in captured.err
    assert "Griffin-Lim" in captured.out and out.is_file()


def test_pipeline_griffin_lim_modes(pipe):
    """Parity mode keeps the reference's Griffin-Lim; the other modes use the fast one."""
    from deepfake_audio.pipeline import FAST_GRIFFIN_LIM
    from synthesizer.audio import griffin_lim, load_wav, melspectrogram
    mel = melspectrogram(load_wav(DATA / "ref.wav")[:8000])
    np.testing.assert_array_equal(pipe.vocode(mel, "griffinlim", seed=3, mode="parity"),
                                  griffin_lim(mel, rng=np.random.RandomState(3)))
    np.testing.assert_array_equal(pipe.vocode(mel, "griffinlim", seed=3),
                                  griffin_lim(mel, rng=np.random.RandomState(3), **FAST_GRIFFIN_LIM))


def tiny_starter_vocoder(path: Path) -> Path:
    """A small, untrained starter vocoder checkpoint in the shipped layout."""
    from vocoder.starter_model import ARCHITECTURE, StarterVocoderHParams, StarterVocoderNet
    torch.manual_seed(0)
    model = StarterVocoderNet(StarterVocoderHParams(channels=16, blocks=1))
    torch.save({"model_state": model.state_dict(), "architecture": ARCHITECTURE,
                "hparams": {"channels": 16, "blocks": 1}}, path)
    return path


def test_the_starter_vocoder_speaks_when_no_wavernn_is_there(starter_dir, tmp_path):
    """Without vocoder.pt, "auto" is the shipped starter vocoder; it follows the reference's pitch and
    takes a pitch shift; WaveRNN asked for falls back to it with a note."""
    from deepfake_audio_core.errors import MissingWeightsError, RequestError
    from deepfake_audio_core.pitch import pitch_stats
    from encoder.inference import prepare_reference
    tiny_starter_vocoder(starter_dir / "starter_vocoder.pt")
    pipe = Pipeline(tmp_path / "models", device="cpu")
    assert pipe.default_vocoder() == "starter" and pipe.is_starter("starter_vocoder")
    assert "starter vocoder" in pipe.describe()["vocoder"]
    plan = pipe.plan(DATA / "ref.wav", "Hello there. Bye.", seed=1)
    assert plan.vocoder == "starter"
    assert plan.pitch_hz == pytest.approx(pitch_stats(prepare_reference(DATA / "ref.wav")).median_hz)
    result = pipe.run(plan)
    assert result.vocoder == "starter" and len(result.wav) == sum(m.shape[1] - 1 for m in result.mels) * 200 + 2400
    again = pipe.clone(DATA / "ref.wav", "Hello there. Bye.", seed=1)
    np.testing.assert_array_equal(again.wav, result.wav)
    assert not np.array_equal(pipe.clone(DATA / "ref.wav", "Hello there. Bye.", seed=1, pitch=5).wav, result.wav)
    for bad in (13, -12.5, "high", float("nan")):
        with pytest.raises(RequestError, match="pitch"):
            pipe.plan(DATA / "ref.wav", "Hi.", pitch=bad)
    vocoder, note = pipe.resolve_vocoder("wavernn", fallback=True)
    assert vocoder == "starter" and "starter vocoder was used" in note
    griffin = Pipeline(tmp_path / "models", device="cpu", starter=False)
    with pytest.raises(MissingWeightsError, match="starter_vocoder.pt"):
        griffin.resolve_vocoder("starter")
    assert griffin.resolve_vocoder("starter", fallback=True)[0] == "griffinlim"
