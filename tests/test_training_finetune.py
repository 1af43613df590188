"""Fine-tuning on one speaker, from a trained or a published-format checkpoint."""
import json

import numpy as np
import pytest
import torch

from deepfake_audio.training import finetune
from deepfake_audio_core.checkpoint import read_checkpoint
from deepfake_audio.pipeline import Pipeline
from training_fixtures import one_thread, speech_corpus, trained_synthesizer, trained_vocoder  # noqa: F401

pytestmark = pytest.mark.usefixtures("one_thread")
QUICK = ["--batch-size", "2", "--workers", "0", "--quiet", "--sample-every", "0"]


def test_finetune_trained_models_on_one_voice(tmp_path, tmp_path_factory, seed1_dir):
    encoder = seed1_dir / "encoder.pt"
    synth, vocoder = trained_synthesizer(tmp_path_factory, encoder), trained_vocoder(tmp_path_factory, encoder)
    voice = speech_corpus(tmp_path_factory) / "flite_slt"  # a flat folder of wav + txt
    out = tmp_path / "my_voice"
    finetune.main([str(voice), "--out", str(out), "--synthesizer", str(synth), "--vocoder", str(vocoder),
                   "--encoder", str(encoder), "--steps", "2", "--finetune-vocoder", "--vocoder-steps", "2",
                   "--vocoder-batch-size", "2", *QUICK])
    assert sorted(p.name for p in out.glob("*.pt")) == ["encoder.pt", "synthesizer.pt", "vocoder.pt"]
    before, after = read_checkpoint(synth), read_checkpoint(out / "synthesizer.pt")
    assert int(after["model_state"]["step"]) == 2
    assert int(after["model_state"]["decoder.r"]) == int(before["model_state"]["decoder.r"])
    assert after["hparams"]["tts_lstm_dims"] == before["hparams"]["tts_lstm_dims"]
    assert not torch.equal(after["model_state"]["decoder.mel_proj.weight"],
                           before["model_state"]["decoder.mel_proj.weight"])
    assert "tts_schedule" not in after["hparams"]  # training settings stay in the run folder
    run_settings = json.loads((out / "runs" / "synthesizer" / "hparams.json").read_text())
    assert run_settings["hparams"]["tts_schedule"][0][1] == 3e-5  # the fine-tuning learning rate
    voc_after = read_checkpoint(out / "vocoder.pt")
    assert int(voc_after["model_state"]["step"]) == 2
    result = Pipeline(out, device="cpu").clone(voice / "utt0.wav", "The canoe.", seed=2)
    assert len(result.wav) > 0 and np.all(np.isfinite(result.wav))


def test_finetune_published_checkpoint(tmp_path, tmp_path_factory, seed1_dir):
    """A full-size checkpoint in the published layout continues and is written back in that layout."""
    voice = tmp_path / "voice"
    voice.mkdir()
    src = speech_corpus(tmp_path_factory) / "espeak_m3"
    for name in ("utt0.wav", "utt0.txt"):
        (voice / name).write_bytes((src / name).read_bytes())
    out = tmp_path / "out"
    finetune.main([str(voice), "--out", str(out), "--synthesizer", str(seed1_dir / "synthesizer.pt"),
                   "--vocoder", str(seed1_dir / "vocoder.pt"), "--encoder", str(seed1_dir / "encoder.pt"),
                   "--steps", "1", *QUICK])
    ckpt = read_checkpoint(out / "synthesizer.pt")
    assert list(ckpt) == ["model_state", "optimizer_state"]  # no hparams entry: the published size
    published = read_checkpoint(seed1_dir / "synthesizer.pt")["model_state"]
    assert list(ckpt["model_state"]) == list(published)
    assert all(ckpt["model_state"][k].shape == v.shape and ckpt["model_state"][k].dtype == v.dtype
               for k, v in published.items())
    assert read_checkpoint(out / "vocoder.pt").keys() == read_checkpoint(seed1_dir / "vocoder.pt").keys()


@pytest.mark.usefixtures("one_thread")
def test_finetune_the_shipped_starter(tmp_path, tmp_path_factory):
    """The README's "Fine-tune one voice" on a fresh install: the shipped starter synthesizer (pitch-aware:
    each frame's F0 is measured from the voice's recordings), the bundled encoder, the starter vocoder."""
    from deepfake_audio.download import STARTER_MODELS_DIR
    voice = speech_corpus(tmp_path_factory) / "flite_slt"
    out = tmp_path / "my_voice"
    finetune.main([str(voice), "--out", str(out), "--synthesizer", str(STARTER_MODELS_DIR / "synthesizer.pt"),
                   "--steps", "2", *QUICK])
    after = read_checkpoint(out / "synthesizer.pt")
    assert after["architecture"] == "fastspeech"
    result = Pipeline(out, device="cpu").clone(voice / "utt0.wav", "The canoe.", seed=2)
    assert result.vocoder == "starter" and len(result.wav) > 0 and np.all(np.isfinite(result.wav))


def test_a_missing_or_empty_voice_folder_is_named_as_such(tmp_path):
    from deepfake_audio.training import TrainingError
    (tmp_path / "empty" / "notes").mkdir(parents=True)
    (tmp_path / "empty" / "notes" / "readme.txt").write_text("transcripts without audio")
    for folder, message in (("missing", "Voice folder not found"), ("empty", "No recordings in .*<name>.wav")):
        with pytest.raises(TrainingError, match=message):
            finetune.main([str(tmp_path / folder), "--out", str(tmp_path / "out"), "--tuned-voice",
                           str(tmp_path / "me.tuned.pt"), "--minutes", "1"])
    assert not (tmp_path / "out").exists()  # refused before anything was made
