"""Checkpoint loading: both torch formats, optional optimizer state, and clear refusals."""
import os

import numpy as np
import pytest
import torch

from conftest import DATA, vector
import weights
from deepfake_audio_core.errors import MissingWeightsError, WeightsError
from encoder.inference import Encoder
from synthesizer.inference import Synthesizer
from vocoder.inference import Vocoder


@pytest.mark.parametrize("zip_format", [True, False])
@pytest.mark.parametrize("with_optimizer", [True, False])
def test_legacy_and_zip_with_or_without_optimizer(tmp_path, zip_format, with_optimizer):
    path = tmp_path / "encoder.pt"
    torch.save(weights.make_checkpoint("encoder", 1, with_optimizer=with_optimizer), path,
               _use_new_zipfile_serialization=zip_format)
    enc = Encoder(path)
    assert enc.step == 1000
    np.testing.assert_allclose(enc.embed_utterance(vector("ref_preprocessed.npy")), vector("embed.npy"), atol=1e-5)


def test_bare_state_dict_loads(tmp_path):
    path = tmp_path / "vocoder.pt"
    torch.save(weights.make_state("vocoder", 1), path)
    assert Vocoder(path).step == 1000


def test_missing_file_names_file_and_command(tmp_path):
    from deepfake_audio.download import missing_weights_message
    with pytest.raises(MissingWeightsError) as err:  # the pipeline's loaders pass the download message in
        Synthesizer(tmp_path / "synthesizer.pt", missing_message=missing_weights_message)
    message = str(err.value)
    assert "synthesizer.pt" in message and str(tmp_path) in message
    assert "python -m deepfake_audio download" in message


def test_git_lfs_pointer(tmp_path):
    path = tmp_path / "vocoder.pt"
    path.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 53845290\n")
    with pytest.raises(WeightsError, match="Git LFS pointer"):
        Vocoder(path)


@pytest.mark.parametrize("zip_format", [True, False])
def test_truncated_checkpoint(tmp_path, zip_format):
    path = tmp_path / "encoder.pt"
    torch.save(weights.make_checkpoint("encoder", 1), path, _use_new_zipfile_serialization=zip_format)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match="truncated or not a PyTorch checkpoint"):
        Encoder(path)


@pytest.mark.parametrize("content", [b"", b"\x00" * 1000, b"hello, I am a text file\n" * 20,
                                     (DATA / "ref.wav").read_bytes()])
def test_not_a_checkpoint(tmp_path, content):
    path = tmp_path / "encoder.pt"
    path.write_bytes(content)
    with pytest.raises(WeightsError, match=str(path.name)):
        Encoder(path)


def test_wrong_shape_names_tensor_and_file(tmp_path):
    ckpt = weights.make_checkpoint("vocoder", 1)
    ckpt["model_state"]["fc3.weight"] = torch.zeros(256, 512)
    path = tmp_path / "vocoder.pt"
    torch.save(ckpt, path)
    with pytest.raises(WeightsError, match=r"vocoder\.pt.*'fc3\.weight' has shape \[256, 512\], expected \[512, 512\]"):
        Vocoder(path)


def test_checkpoint_of_another_model(tmp_path):
    path = tmp_path / "synthesizer.pt"
    torch.save(weights.make_checkpoint("vocoder", 1), path)
    with pytest.raises(WeightsError, match=r"synthesizer\.pt does not match the synthesizer model: tensor 'step'|"
                                           r"synthesizer\.pt does not match the synthesizer model"):
        Synthesizer(path)


def test_extra_tensor_is_reported(tmp_path):
    ckpt = weights.make_checkpoint("encoder", 1)
    ckpt["model_state"]["lstm.weight_ih_l3"] = torch.zeros(1024, 256)
    path = tmp_path / "encoder.pt"
    torch.save(ckpt, path)
    with pytest.raises(WeightsError, match="unexpected tensor 'lstm.weight_ih_l3'"):
        Encoder(path)


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch EXPLOITED",))


def test_code_in_a_checkpoint_never_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ckpt = weights.make_checkpoint("encoder", 1)
    ckpt["payload"] = _Exploit()
    torch.save(ckpt, tmp_path / "encoder.pt")
    with pytest.raises(WeightsError, match="could run code"):
        Encoder(tmp_path / "encoder.pt")
    assert not (tmp_path / "EXPLOITED").exists()
