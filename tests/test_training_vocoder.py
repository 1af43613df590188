"""WaveRNN training on GTA mels: learns, loads in the engine (and the whole chain), resumes exactly."""
import numpy as np
import pytest

from deepfake_audio_core.checkpoint import read_checkpoint
from deepfake_audio.pipeline import Pipeline
from deepfake_audio.training.files import read_metadata
from training_fixtures import (QUIET, VOCODER_TINY, one_thread, same_state, speech_corpus,  # noqa: F401
                               synthesizer_data, trained_encoder, trained_synthesizer, vocoder_data)
from deepfake_audio.training import vocoder_train as train
from vocoder.inference import Vocoder

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory, seed1_dir):
    return vocoder_data(tmp_path_factory, seed1_dir / "encoder.pt")


def _train(data, run, steps, *extra):
    return train.main([str(data), "--run-dir", str(run), "--steps", str(steps), "--hparams", *VOCODER_TINY, *QUIET,
                       *extra])


def test_gta_and_ground_truth_inputs(data, tmp_path, tmp_path_factory, seed1_dir):
    from deepfake_audio.training import vocoder_preprocess as preprocess
    gta = read_metadata(data)
    truth = {r["id"]: r for r in read_metadata(synthesizer_data(tmp_path_factory, seed1_dir / "encoder.pt"))}
    assert len(gta) == 16
    for rec in gta[:3]:
        mel = np.load(rec["mel"])
        assert "mels_gta" in rec["mel"] and mel.shape == np.load(truth[rec["id"]]["mel"]).shape
        assert rec["audio"] == truth[rec["id"]]["audio"]
    plain = preprocess.main([str(synthesizer_data(tmp_path_factory, seed1_dir / "encoder.pt")),
                             "--out", str(tmp_path / "gt"), "--quiet"])
    assert len(plain) == 16 and all("mels_gta" not in r["mel"] for r in plain)


def test_windows_line_up_with_audio(data):
    from vocoder.audio import label_to_float
    dataset = train.VocoderWindows(read_metadata(data), seq_len=1000, pad=2, bits=9, seed=0)
    x, mel, y = dataset[(0, 5)]
    assert x.shape == (1000,) and y.shape == (1000,) and mel.shape == (80, 9)
    assert y.min() >= 0 and y.max() < 512 and np.abs(mel).max() <= 1.0
    # The input at t is the target at t - 1: teacher forcing.
    assert np.allclose(x[1:], label_to_float(y[:-1].astype(np.float32), 9))


def test_loss_falls_on_one_batch(data, tmp_path):
    summary = _train(data, tmp_path / "run", 25, "--overfit-batch", "--hparams", "voc_lr=0.01")
    losses = summary.losses
    # From ln(512) = 6.24 nats (uniform over the classes) the cross-entropy falls steadily.
    assert np.mean(losses[-5:]) < np.mean(losses[:3]) - 0.4
    assert all(b < a + 0.05 for a, b in zip(losses, losses[1:]))


def test_checkpoint_loads_in_engine(data, tmp_path):
    run = tmp_path / "run"
    _train(data, run, 3, "--sample-every", "3", "--sample-frames", "30")
    ckpt = read_checkpoint(run / "vocoder.pt")
    assert list(ckpt) == ["model_state", "optimizer_state", "hparams"]
    assert int(ckpt["model_state"]["step"]) == 3
    vocoder = Vocoder(run / "vocoder.pt")
    assert vocoder.step == 3
    mel = np.load(read_metadata(data)[0]["mel"])[:, :40]
    wav = vocoder.infer_waveform(mel, seed=1)
    assert wav.shape == (39 * 200,) and np.all(np.isfinite(wav))
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["vocoder_generated_3.wav", "vocoder_mel_3.png"]


def test_trained_models_clone_a_voice(data, tmp_path, tmp_path_factory, seed1_dir):
    """Encoder, synthesizer and vocoder, all trained here, drop into the engine as a models folder."""
    import shutil
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(trained_encoder(tmp_path_factory), models / "encoder.pt")
    shutil.copy(trained_synthesizer(tmp_path_factory, seed1_dir / "encoder.pt"), models / "synthesizer.pt")
    _train(data, tmp_path / "run", 2)
    shutil.copy(tmp_path / "run" / "vocoder.pt", models / "vocoder.pt")
    pipe = Pipeline(models, device="cpu")
    voice = speech_corpus(tmp_path_factory) / "flite_awb" / "utt2.wav"
    result = pipe.clone(voice, "Good morning.", seed=3)
    assert result.vocoder == "wavernn" and len(result.wav) > 0 and np.all(np.isfinite(result.wav))


def test_resume_is_exact(data, tmp_path):
    _train(data, tmp_path / "straight", 4)
    _train(data, tmp_path / "resumed", 2)
    summary = _train(data, tmp_path / "resumed", 4)
    assert (summary.start_step, summary.step) == (2, 4)
    straight = read_checkpoint(tmp_path / "straight" / "vocoder.pt")
    resumed = read_checkpoint(tmp_path / "resumed" / "vocoder.pt")
    assert same_state(resumed["model_state"], straight["model_state"])
    assert same_state(resumed["optimizer_state"], straight["optimizer_state"])
