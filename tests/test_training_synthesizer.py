"""Tacotron training: learns, follows the r schedule, loads in the engine, resumes exactly."""
import re

import numpy as np
import pytest
import torch

from deepfake_audio_core.checkpoint import read_checkpoint
from deepfake_audio.pipeline import Pipeline
from deepfake_audio.training import synthesizer_train as train
from synthesizer.inference import Synthesizer
from training_fixtures import (QUIET, SYNTH_TINY, one_thread, same_state, scalars, speech_corpus,  # noqa: F401
                               synthesizer_data)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory, seed1_dir):
    return synthesizer_data(tmp_path_factory, seed1_dir / "encoder.pt")


def _train(data, run, steps, *extra):
    return train.main([str(data), "--run-dir", str(run), "--steps", str(steps), "--hparams", *SYNTH_TINY, *QUIET,
                       *extra])


def test_preprocessed_data(data):
    from deepfake_audio.training.files import read_metadata
    from synthesizer.audio import melspectrogram
    records = read_metadata(data)
    assert len(records) == 16
    rec = records[0]
    mel, wav, embed = np.load(rec["mel"]), np.load(rec["audio"]), np.load(rec["embed"])
    assert mel.shape == (80, rec["n_frames"]) and mel.shape[1] == 1 + len(wav) // 200
    assert np.array_equal(mel, melspectrogram(wav))  # the engine's front end, exactly
    assert embed.shape == (256,) and np.isclose(np.linalg.norm(embed), 1.0, atol=1e-5)
    assert abs(np.abs(wav).max() - 0.9) < 1e-6 and rec["text"].endswith(".")


def test_guided_attention_loss_favours_the_diagonal():
    steps, chars = 20, 10
    diagonal = torch.zeros(1, steps, chars)
    diagonal[0, torch.arange(steps), torch.arange(steps) * chars // steps] = 1
    flipped = diagonal.flip(2)
    lens = torch.tensor([chars]), torch.tensor([steps * 2])
    assert train.guided_attention_loss(diagonal, *lens, r=2) < 0.1 * train.guided_attention_loss(flipped, *lens, r=2)
    # In a batch, attending to the padding after a shorter item is the worst choice, not a free one.
    padded = torch.cat([diagonal, torch.zeros(1, steps, 5)], dim=2)
    on_padding = torch.zeros_like(padded)
    on_padding[0, :, chars:] = 1 / 5
    assert train.guided_attention_loss(on_padding, *lens, r=2) > train.guided_attention_loss(flipped, *lens, r=2)


def test_loss_falls_on_one_batch(data, tmp_path):
    run = tmp_path / "run"
    summary = _train(data, run, 16, "--overfit-batch", "--guided-attention", "1")
    losses = summary.losses
    assert np.mean(losses[-3:]) < 0.6 * np.mean(losses[2:4])  # after the r = 4 phase
    assert scalars(run, "synthesizer/r") == [4.0, 4.0] + [2.0] * 14
    assert len(scalars(run, "synthesizer/guided_attention_loss")) == 16


def test_checkpoint_loads_in_engine_and_synthesizes(data, tmp_path, seed1_dir, tmp_path_factory):
    run = tmp_path / "run"
    _train(data, run, 3, "--sample-every", "3")
    ckpt = read_checkpoint(run / "synthesizer.pt")
    assert list(ckpt) == ["model_state", "optimizer_state", "hparams"]
    assert int(ckpt["model_state"]["step"]) == 3 and int(ckpt["model_state"]["decoder.r"]) == 2
    assert ckpt["hparams"]["tts_lstm_dims"] == 64
    synth = Synthesizer(run / "synthesizer.pt")
    assert synth.step == 3 and synth.r == 2 and synth.hparams.tts_lstm_dims == 64
    embed = np.load(sorted((data / "embeds").rglob("*.npy"))[0])
    (mel,) = synth.synthesize_spectrograms(["Hello there."], [embed], seed=1)
    assert mel.shape[0] == 80 and 1 <= mel.shape[1] <= 200 and np.all(np.isfinite(mel))
    # The studio and CLI path: the trained synthesizer in the Pipeline, with Griffin-Lim.
    pipe = Pipeline(encoder=seed1_dir / "encoder.pt", synthesizer=run / "synthesizer.pt", models_dir=tmp_path)
    voice = speech_corpus(tmp_path_factory) / "espeak_f2" / "utt1.wav"
    result = pipe.clone(voice, "Hello there.", seed=1, vocoder="griffinlim")
    assert result.wav.dtype == np.float32 and len(result.wav) > 0 and np.all(np.isfinite(result.wav))
    samples = sorted(p.name for p in (run / "samples").iterdir())
    assert samples == ["synthesizer_attention_3.png", "synthesizer_griffin_lim_3.wav", "synthesizer_mel_3.png"]


def test_resume_is_exact(data, tmp_path):
    _train(data, tmp_path / "straight", 4)
    _train(data, tmp_path / "resumed", 2)
    summary = _train(data, tmp_path / "resumed", 4)
    assert (summary.start_step, summary.step) == (2, 4)
    straight = read_checkpoint(tmp_path / "straight" / "synthesizer.pt")
    resumed = read_checkpoint(tmp_path / "resumed" / "synthesizer.pt")
    assert same_state(resumed["model_state"], straight["model_state"])
    assert same_state(resumed["optimizer_state"], straight["optimizer_state"])


def test_pack_round_trip_and_training_from_a_pack(data, tmp_path):
    from deepfake_audio.training.files import read_metadata
    from deepfake_audio.training.packed import PackedSynthesizerData, pack_dataset
    from synthesizer.text import text_to_sequence
    pack = tmp_path / "data.npz"
    assert pack_dataset(data, pack) == 16
    packed = PackedSynthesizerData(pack)
    records = read_metadata(data)
    assert len(packed) == len(records)
    for u in (0, 7, 15):
        ids, mel, embed = packed[(u, 0)]
        assert ids.tolist() == text_to_sequence(records[u]["text"])
        original = np.load(records[u]["mel"])
        assert mel.shape == original.shape and np.abs(mel - original).max() <= 4.0 / 255 + 1e-6
        assert np.allclose(embed, np.load(records[u]["embed"]), atol=1e-3)
    # The same model trains from the pack as from the folder (up to the quantisation).
    summary = _train(pack, tmp_path / "run", 3)
    assert summary.step == 3 and all(np.isfinite(summary.losses))
    with pytest.raises(Exception, match="not a synthesizer pack"):
        PackedSynthesizerData(tmp_path / "run" / "synthesizer.pt")


def test_a_run_until_the_time_limit_shows_steps_without_a_total(data, tmp_path, capfd):
    # what a voice tuning's pieces show: steps and speed, not "3/1000000000" and a time left of years
    from deepfake_audio.training.loop import OPEN_ENDED
    train.main([str(data), "--run-dir", str(tmp_path / "run"), "--steps", str(OPEN_ENDED), "--time-limit", "2",
                "--hparams", *SYNTH_TINY, *[a for a in QUIET if a != "--quiet"]])
    shown = capfd.readouterr().err
    assert re.search(r"\d+step \[", shown) and str(OPEN_ENDED) not in shown, shown[-500:]


def test_sigterm_stops_a_background_run_with_its_checkpoint_saved(data, tmp_path):
    # A run started with `&` ignores Ctrl+C, and a container stops with SIGTERM: either way the
    # steps trained so far are saved between two steps, and the run resumes from them.
    import json
    import signal
    import subprocess
    import sys
    import time
    from deepfake_audio.training.loop import OPEN_ENDED
    run, progress = tmp_path / "run", tmp_path / "progress.json"
    command = [sys.executable, "-m", "deepfake_audio.training.synthesizer_train", str(data), "--run-dir", str(run),
               "--steps", str(OPEN_ENDED), "--time-limit", "300", "--progress-file", str(progress),
               "--hparams", *SYNTH_TINY, *QUIET]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            if progress.is_file() and json.loads(progress.read_text())["step"] >= 2:
                break
            time.sleep(0.2)
        assert process.poll() is None, process.communicate()[1][-2000:]
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, err[-2000:]
    saved = re.search(r"terminated: checkpoint saved at step (\d+)", err)
    assert saved and "Traceback" not in err, err[-2000:]
    step = int(saved.group(1))
    assert step >= 2 and Synthesizer(run / "synthesizer.pt").step == step
    assert _train(data, run, step + 1).step == step + 1  # it resumes where it stopped


def test_time_limit_stops_cleanly_and_export_shrinks(data, tmp_path):
    from deepfake_audio.training.export import export_weights
    run = tmp_path / "run"
    summary = _train(data, run, 1000, "--time-limit", "0")
    assert summary.step == 0 and not (run / "synthesizer.pt").exists()  # no step taken, nothing to save
    _train(data, run, 2)
    full = read_checkpoint(run / "synthesizer.pt")
    size = export_weights(run / "synthesizer.pt", tmp_path / "small.pt", fp16=True)
    assert size < 0.3 * (run / "synthesizer.pt").stat().st_size
    small = read_checkpoint(tmp_path / "small.pt")
    assert set(small) == {"model_state", "hparams"}
    assert small["model_state"]["decoder.r"].dtype == full["model_state"]["decoder.r"].dtype
    synth = Synthesizer(tmp_path / "small.pt")  # float16 weights load into the float32 model
    assert synth.step == 2 and synth.hparams.tts_lstm_dims == 64
    embed = np.load(sorted((data / "embeds").rglob("*.npy"))[0])
    a = Synthesizer(run / "synthesizer.pt").synthesize_spectrograms(["Hi there."], [embed], seed=3)[0]
    b = synth.synthesize_spectrograms(["Hi there."], [embed], seed=3)[0]
    n = min(a.shape[1], b.shape[1])
    assert np.abs(a[:, :n] - b[:, :n]).mean() < 0.05
