"""The starter vocoder: its signal pieces, its data and training commands, and the shipped weights."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from training_corpus import make_speech_corpus, tools_missing
from vocoder.starter_model import (StarterVocoderHParams, StarterVocoderNet, minimum_phase, pulse_train,
                                   upsample_frames)

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "saved_models" / "starter" / "starter_vocoder.pt"
SR = 16000
TINY = ["channels=16", "blocks=1", "batch_size=2", "segment_frames=24", "warmup_steps=1"]


def test_pulse_train_has_every_harmonic_below_the_ceiling_and_nothing_above():
    hp = StarterVocoderHParams()
    wav, _ = pulse_train(torch.full((1, 160), 100.0), hp)  # 2 s at 100 Hz
    spectrum = np.abs(np.fft.rfft(wav[0].numpy() * np.hanning(wav.shape[1])))
    freqs = np.fft.rfftfreq(wav.shape[1], 1 / SR)
    peaks = [spectrum[np.argmin(np.abs(freqs - k * 100))] for k in (1, 10, 40, 78)]
    assert min(peaks) > 0.5 * max(peaks)  # the harmonics are level with each other
    assert spectrum[freqs > 7900].max() < 0.01 * max(peaks)
    between = spectrum[np.argmin(np.abs(freqs - 150))]
    assert between < 0.01 * max(peaks)


def test_pulse_train_phase_carries_on_across_calls():
    hp = StarterVocoderHParams()
    f0 = torch.full((1, 20), 137.0)
    whole, _ = pulse_train(torch.cat([f0, f0], dim=1), hp)
    first, phase = pulse_train(f0, hp)
    second, _ = pulse_train(f0, hp, phase0=phase)
    np.testing.assert_allclose(torch.cat([first, second], dim=1).numpy(), whole.numpy(), atol=2e-3)


def test_minimum_phase_filter_keeps_the_magnitude_and_rings_early():
    n_fft = 800
    bins = torch.arange(n_fft // 2 + 1, dtype=torch.float32)
    log_mag = (2.0 * torch.exp(-((bins - 40) / 15) ** 2) - 0.002 * bins)[None, :, None]  # a formant, a tilt
    spectrum = minimum_phase(log_mag, n_fft)
    np.testing.assert_allclose(spectrum.abs().log().numpy(), log_mag.numpy(), atol=1e-3)
    response = torch.fft.irfft(spectrum[0, :, 0], n=n_fft).numpy()
    energy = np.cumsum(response ** 2) / np.sum(response ** 2)
    assert energy[n_fft // 8] > 0.95


def test_upsampled_frames_meet_at_frame_centres():
    x = torch.tensor([[1.0, 3.0, 2.0]])
    up = upsample_frames(x, 4)
    assert up.shape == (1, 12)
    assert up[0, 0] == 1 and up[0, 4] == 3 and up[0, 8] == 2 and up[0, 2] == 2


@pytest.mark.parametrize("design", ["source_filter", "istft"])
def test_both_designs_make_200_samples_a_frame_and_learn(design):
    hp = StarterVocoderHParams(design=design, channels=16, blocks=1)
    torch.manual_seed(0)
    model = StarterVocoderNet(hp)
    mel = torch.randn(2, 80, 30)
    out = model(mel)
    assert out["wav"].shape == (2, 6000) and torch.isfinite(out["wav"]).all()
    if design == "source_filter":
        assert out["log_f0"].shape == (2, 30)
        forced = model(mel, f0=torch.full((2, 30), 220.0))["wav"]
        assert forced.shape == (2, 6000)


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory):
    if tools_missing():
        pytest.skip(f"missing {tools_missing()}")
    return make_speech_corpus(tmp_path_factory.mktemp("corpus"), speakers=2, utterances=3)


def _run(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def test_pack_train_resume_export_and_vocode(tiny_corpus, tmp_path):
    """The recipe's commands on a tiny corpus: pack, train, resume, export, then the engine uses it."""
    pack = tmp_path / "pack"
    made = _run("deepfake_audio.training.starter_vocoder_data", str(tiny_corpus), "--out", str(pack), "--quiet")
    assert made.returncode == 0, made.stderr
    assert "6 utterances" in made.stdout
    from deepfake_audio.training.starter_vocoder_data import VocoderPack
    opened = VocoderPack.open(pack)
    mel, f0, audio = opened.segment(0, 0, 20)
    assert mel.shape == (80, 20) and f0.shape == (20,) and audio.shape == (4000,)
    assert (f0 > 0).any()  # speech has voiced frames

    run = tmp_path / "run"
    first = _run("deepfake_audio.training.starter_vocoder_train", str(pack), "--run-dir", str(run), "--steps", "2",
                 "--quiet", "--hparams", *TINY)
    assert first.returncode == 0, first.stderr
    again = _run("deepfake_audio.training.starter_vocoder_train", str(pack), "--run-dir", str(run), "--steps", "3",
                 "--quiet")
    assert again.returncode == 0, again.stderr
    from deepfake_audio.training.checkpoints import load_training_checkpoint
    ckpt = load_training_checkpoint(run / "vocoder.pt")
    assert int(ckpt["model_state"]["step"]) == 3 and ckpt["hparams"]["channels"] == 16
    assert "discriminator_state" not in ckpt

    # Adversarial fine-tuning from there: a discriminator starts, and a resumed run continues it
    # (in this process: the command line is the same `cli` as above).
    from deepfake_audio.training.starter_vocoder_train import cli
    assert cli([str(pack), "--run-dir", str(run), "--steps", "4", "--quiet", "--hparams", "adversarial_weight=0.1",
                "feature_weight=0.2"]) == 0
    first_critic = load_training_checkpoint(run / "vocoder.pt")["discriminator_state"]
    assert cli([str(pack), "--run-dir", str(run), "--steps", "5", "--quiet"]) == 0
    ckpt = load_training_checkpoint(run / "vocoder.pt")
    assert int(ckpt["model_state"]["step"]) == 5 and ckpt["discriminator_optimizer_state"]["state"]
    assert any(not torch.equal(first_critic[k], v) for k, v in ckpt["discriminator_state"].items())
    import json
    assert json.loads((run / "hparams.json").read_text())["hparams"]["adversarial_weight"] == 0.1

    models = tmp_path / "models"
    exported = _run("deepfake_audio.training.export", str(run / "vocoder.pt"), str(models / "starter_vocoder.pt"),
                    "--fp16")
    assert exported.returncode == 0, exported.stderr
    from vocoder.starter import StarterVocoder
    vocoder = StarterVocoder(models / "starter_vocoder.pt")
    wav = vocoder.infer_waveform(mel, seed=1)
    assert wav.shape == (200 * 19,) and np.isfinite(wav).all()
    np.testing.assert_array_equal(wav, vocoder.infer_waveform(mel, seed=1))


def test_a_bad_pack_or_checkpoint_is_a_clear_error(tmp_path):
    bad = _run("deepfake_audio.training.starter_vocoder_train", str(tmp_path), "--run-dir", str(tmp_path / "r"),
               "--steps", "1", "--quiet")
    assert bad.returncode == 2 and "not a starter-vocoder pack" in bad.stderr and "Traceback" not in bad.stderr
    from deepfake_audio_core.errors import WeightsError
    from vocoder.starter import StarterVocoder
    torch.save({"model_state": {"x": torch.zeros(1)}}, tmp_path / "other.pt")
    with pytest.raises(WeightsError, match="not a starter vocoder"):
        StarterVocoder(tmp_path / "other.pt")


def test_vocoder_check_judges_the_shipped_vocoder_above_griffin_lim(tmp_path, capsys):
    """The README's `vocoder_check` on a held-out voice, as recorded and lowered by sox: the shipped
    vocoder keeps more of the speaker, rates better and keeps the pitch, on mels of speech it never heard."""
    from deepfake_audio.training.corpus import VOICES, build_corpus
    voices = tuple(v for v in VOICES if v.speaker in ("flite_slt", "flite_awb"))
    build_corpus(tmp_path / "corpus", n_sentences=1, augment=0, voices=voices, held_out=("flite_awb",),
                 eval_sentences=1, progress=False)
    out = tmp_path / "check.json"
    from deepfake_audio.training.vocoder_check import main  # the command line, in this process
    assert main(["--corpus", str(tmp_path / "corpus"), "--vocoder", str(SHIPPED), "griffinlim", "--per-voice", "1",
                 "--transforms", "as recorded", "pitch -6 st", "--out", str(out)]) == 0
    import json
    summary = json.loads(out.read_text())["summary"]
    recording, starter, griffin = summary["recording"], summary[str(SHIPPED)], summary["griffinlim"]
    assert recording["similarity"] == pytest.approx(1.0, abs=1e-4)  # the recording against itself
    assert list(starter["transforms"]) == ["as recorded", "pitch -6 st"] and "speaker kept" in capsys.readouterr().out
    assert griffin["similarity"] < starter["similarity"] < 1.0
    assert starter["dnsmos"] > griffin["dnsmos"] and starter["f0_within_15pct"] >= 0.8
