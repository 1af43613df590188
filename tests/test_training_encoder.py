"""Speaker-encoder training: GE2E learns, checkpoints load in the engine, resuming is exact."""
import numpy as np
import pytest
import torch

from deepfake_audio_core.checkpoint import read_checkpoint
from deepfake_audio.training import encoder_train as train
from encoder.audio import preprocess_wav
from encoder.inference import Encoder
from training_fixtures import (ENCODER_TINY, QUIET, encoder_data, one_thread, same_state, scalars,  # noqa: F401
                               speech_corpus)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return encoder_data(tmp_path_factory)


def _train(data, run, steps, *extra):
    return train.main([str(data), "--run-dir", str(run), "--steps", str(steps), "--hparams", *ENCODER_TINY, *QUIET,
                       *extra])


def test_ge2e_loss_prefers_separated_speakers():
    torch.manual_seed(0)
    centres = torch.nn.functional.normalize(torch.randn(4, 1, 16), dim=2)
    tight = torch.nn.functional.normalize(centres + 0.05 * torch.randn(4, 5, 16), dim=2)
    mixed = torch.nn.functional.normalize(torch.randn(4, 5, 16), dim=2)
    w, b = torch.tensor([10.0]), torch.tensor([-5.0])
    loss_tight, sim = train.ge2e_loss(tight, w, b)
    loss_mixed, _ = train.ge2e_loss(mixed, w, b)
    assert sim.shape == (20, 4) and loss_tight < loss_mixed
    assert train.equal_error_rate(sim.numpy(), 5) == 0.0


def test_loss_falls_on_one_batch(data, tmp_path):
    summary = _train(data, tmp_path / "run", 25, "--overfit-batch")
    losses = summary.losses
    assert len(losses) == 25
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:3])
    logged = scalars(tmp_path / "run", "encoder/loss")
    assert len(logged) == 25 and logged[0] == pytest.approx(losses[0])
    assert len(scalars(tmp_path / "run", "encoder/eer")) == 25


def test_checkpoint_loads_in_engine(data, tmp_path, tmp_path_factory):
    run = tmp_path / "run"
    _train(data, run, 3, "--sample-every", "3")
    ckpt = read_checkpoint(run / "encoder.pt")
    assert list(ckpt) == ["step", "model_state", "optimizer_state", "hparams"]
    assert ckpt["step"] == 3 and ckpt["hparams"] == {"model_hidden_size": 32, "model_num_layers": 1}
    encoder = Encoder(run / "encoder.pt")
    assert encoder.step == 3
    wav = preprocess_wav(speech_corpus(tmp_path_factory) / "flite_awb" / "utt0.wav")
    embed = encoder.embed_utterance(wav)
    assert embed.shape == (256,) and np.isclose(np.linalg.norm(embed), 1.0, atol=1e-5)
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["encoder_mel_3.png", "encoder_partial_3.wav",
                                                                   "encoder_similarity_3.png"]


def test_resume_is_exact(data, tmp_path):
    _train(data, tmp_path / "straight", 6)
    _train(data, tmp_path / "resumed", 3)
    halfway = read_checkpoint(tmp_path / "resumed" / "encoder.pt")
    summary = _train(data, tmp_path / "resumed", 6)
    assert (summary.start_step, summary.step) == (3, 6)
    # The optimizer picked up exactly the saved state: its moments and step counts.
    model = train.speaker_encoder_from_hparams({"model_hidden_size": 32, "model_num_layers": 1})
    optimizer = torch.optim.Adam(model.parameters())
    optimizer.load_state_dict(halfway["optimizer_state"])
    assert same_state(optimizer.state_dict(), halfway["optimizer_state"])
    straight = read_checkpoint(tmp_path / "straight" / "encoder.pt")
    resumed = read_checkpoint(tmp_path / "resumed" / "encoder.pt")
    assert resumed["step"] == straight["step"] == 6
    assert same_state(resumed["model_state"], straight["model_state"])
    assert same_state(resumed["optimizer_state"], straight["optimizer_state"])


def test_too_few_speakers_is_a_clear_error(data, tmp_path):
    from deepfake_audio.training import TrainingError
    with pytest.raises(TrainingError, match="speakers_per_batch"):
        _train(data, tmp_path / "run", 1, "--hparams", "speakers_per_batch=9")
