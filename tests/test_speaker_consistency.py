"""The speaker-consistency loss of the starter recipe: the encoder's front end rebuilt from a
synthesizer mel, the loss, the speaker bank, and training with them."""
import subprocess

import numpy as np
import pytest
import soundfile as sf
import torch

from deepfake_audio_core.audio_io import resample
from deepfake_audio_core.errors import DeepfakeAudioError
from deepfake_audio.training import fastspeech_train as train
from deepfake_audio.training.speaker_bank import OTHER_LANGUAGE_VOICES, load_bank, other_language_voices
from deepfake_audio.training.speaker_loss import load_consistency
from encoder.audio import wav_to_mel_spectrogram
from encoder.inference import Encoder, prepare_reference
from synthesizer.audio import melspectrogram
from training_fixtures import QUIET, one_thread  # noqa: F401
from test_fastspeech import TINY_OVERRIDES, pack  # noqa: F401  (the tiny packed corpus)


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    """Two flite voices, 16 kHz, peak 0.9 (as the synthesizer's training audio)."""
    folder = tmp_path_factory.mktemp("consistency")
    clips = {}
    for voice in ("awb", "slt"):
        path = folder / f"{voice}.wav"
        subprocess.run(["flite", "-voice", voice, "-t", "The quick brown fox jumps over the lazy dog, and then "
                        "it runs far away into the woods.", "-o", str(path)], check=True, capture_output=True)
        wav, sr = sf.read(path, dtype="float32")
        wav = resample(wav, sr, 16000)
        clips[voice] = wav / np.abs(wav).max() * 0.9
    return clips


@pytest.fixture(scope="module")
def consistency():
    return load_consistency()


def test_front_end_rebuilds_the_encoders_mels(speech, consistency):
    """From the synthesizer's 80-band log mel to the encoder's 40-band power mel: the same
    level, and an embedding close to that of the audio itself (and not to the other voice)."""
    encoder = Encoder()
    embeds = {}
    for voice, wav in speech.items():
        mel = torch.from_numpy(melspectrogram(wav))[None]
        frames = consistency.front_end(mel)[0].numpy()
        truth = wav_to_mel_spectrogram(wav)
        n = min(len(frames), len(truth))
        ratio = np.median(frames[:n].sum(1) / np.maximum(truth[:n].sum(1), 1e-9))
        assert 0.7 < ratio < 1.4, ratio
        with torch.no_grad():
            rebuilt = consistency.embed(mel, torch.tensor([mel.shape[2]]), torch.Generator().manual_seed(0))[0]
        embeds[voice] = (rebuilt.numpy(), encoder.embed_utterance(prepare_reference(wav, 16000)))
    for voice, (rebuilt, own) in embeds.items():
        other = embeds["slt" if voice == "awb" else "awb"][1]
        assert rebuilt @ own > 0.8 and rebuilt @ own > rebuilt @ other + 0.1


def test_loss_is_small_for_the_own_voice_and_has_gradients(speech, consistency):
    encoder = Encoder()
    own = torch.from_numpy(encoder.embed_utterance(prepare_reference(speech["awb"], 16000)))[None]
    other = torch.from_numpy(encoder.embed_utterance(prepare_reference(speech["slt"], 16000)))[None]
    mel = torch.from_numpy(melspectrogram(speech["awb"]))[None].requires_grad_()
    lengths = torch.tensor([mel.shape[2]])
    loss = consistency(mel, lengths, own, torch.Generator().manual_seed(1))
    loss.backward()
    assert mel.grad is not None and torch.isfinite(mel.grad).all() and mel.grad.abs().sum() > 0
    assert not any(p.grad is not None for p in consistency.encoder.parameters())  # the encoder stays frozen
    with torch.no_grad():
        assert loss < consistency(mel, lengths, other, torch.Generator().manual_seed(1))


def test_bank_files_are_checked(tmp_path):
    np.savez(tmp_path / "ok.npz", embeds=np.eye(3, 256, dtype=np.float32), names=np.array(["a", "b", "c"]))
    assert load_bank(tmp_path / "ok.npz").shape == (3, 256)
    np.savez(tmp_path / "wrong.npz", embeds=np.zeros((3, 40), np.float32))
    (tmp_path / "broken.npz").write_bytes(b"not a zip")
    for name in ("wrong.npz", "broken.npz", "missing.npz"):
        with pytest.raises(DeepfakeAudioError, match="speaker bank|embeddings"):
            load_bank(tmp_path / name)


def test_other_language_voices_come_plain_then_moved_within_bounds():
    import random
    voices = list(OTHER_LANGUAGE_VOICES[:3])
    picked = other_language_voices(11, random.Random(0), voices)
    assert len(picked) == 11
    assert picked[:3] == [(v, {}) for v in voices]  # each voice as it is, once
    assert {v for v, _ in picked} == set(voices)
    for _, aug in picked[3:]:
        assert -500 <= aug["pitch"] <= 500 and 0.88 <= aug["formant"] <= 1.14
    assert other_language_voices(5, random.Random(0), []) == []  # none installed: none added
    assert all(v.engine == "festival" and v.debian_package.startswith("festvox-") for v in OTHER_LANGUAGE_VOICES)


@pytest.mark.usefixtures("one_thread")
def test_trains_with_the_consistency_losses(pack, tmp_path):  # noqa: F811
    rng = np.random.default_rng(0)
    bank = rng.standard_normal((6, 256)).astype(np.float32)
    np.savez(tmp_path / "bank.npz", embeds=bank / np.linalg.norm(bank, axis=1, keepdims=True))
    hparams = [*TINY_OVERRIDES, "total_steps=3", "consistency_start=1", "consistency_loss_weight=1.0",
               "consistency_bank_weight=1.0", "consistency_bank_items=2"]
    summary = train.main([str(pack), "--run-dir", str(tmp_path / "run"), "--steps", "3", "--hparams", *hparams,
                          *QUIET, "--speaker-bank", str(tmp_path / "bank.npz")])
    assert summary.step == 3 and all(np.isfinite(summary.losses))
    with pytest.raises(DeepfakeAudioError, match="--speaker-bank"):
        train.main([str(pack), "--run-dir", str(tmp_path / "no-bank"), "--steps", "2", "--hparams", *hparams, *QUIET])


@pytest.mark.parametrize("args, says", [(["--other-languages", "-1"], "--other-languages must be at least 0"),
                                        (["--voices", "-5"], "--voices must be at least 0"),
                                        (["--jobs", "0"], "--jobs must be at least 1"),
                                        (["--voices", "0"], "at least one voice")])
def test_the_bank_command_refuses_impossible_counts(tmp_path, capsys, args, says):
    from deepfake_audio.training.speaker_bank import main
    with pytest.raises(SystemExit) as stop:
        main([str(tmp_path), str(tmp_path / "bank.npz"), *args])
    assert stop.value.code == 2 and says in capsys.readouterr().err
    assert not (tmp_path / "bank.npz").exists()
