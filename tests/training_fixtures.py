"""Shared artifacts of the training tests: corpus, preprocessed data, small trained models.

Everything is built once per test session under the session's temporary folder and
reused by every test module (the preprocessing resumes and training stops at once when
the outputs exist). The models are tiny (hyperparameter overrides) so that a few
training steps take seconds on two CPU cores.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from training_corpus import make_speech_corpus, tools_missing

ENCODER_TINY = ["model_hidden_size=32", "model_num_layers=1", "partials_n_frames=50", "speakers_per_batch=3",
                "utterances_per_speaker=3", "learning_rate_init=0.01"]
SYNTH_TINY = ["tts_embed_dims=32", "tts_encoder_dims=32", "tts_decoder_dims=32", "tts_postnet_dims=32",
              "tts_lstm_dims=64", "tts_encoder_K=3", "tts_postnet_K=3", "tts_num_highways=1",
              "max_decoder_frames=200", "tts_schedule=((4, 3e-3, 2, 2), (2, 3e-3, 100000, 2))"]
VOCODER_TINY = ["voc_rnn_dims=32", "voc_fc_dims=32", "voc_compute_dims=16", "voc_res_out_dims=16",
                "voc_res_blocks=1", "voc_batch_size=4", "voc_lr=3e-3"]
QUIET = ["--workers", "0", "--quiet", "--sample-every", "0", "--log-every", "1"]


def base(tmp_path_factory) -> Path:
    folder = tmp_path_factory.getbasetemp() / "training"
    folder.mkdir(exist_ok=True)
    return folder


@pytest.fixture
def one_thread():
    """Tiny models run fastest on one thread, above all on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def speech_corpus(tmp_path_factory) -> Path:
    missing = tools_missing()
    if missing:
        pytest.skip(f"speech synthesisers missing ({', '.join(missing)}): run scripts/setup.sh --dev")
    return make_speech_corpus(base(tmp_path_factory) / "corpus")


def encoder_data(tmp_path_factory) -> Path:
    from deepfake_audio.training import encoder_preprocess as preprocess
    out = base(tmp_path_factory) / "encoder_data"
    if not (out / "metadata.jsonl").is_file():
        preprocess.main([str(speech_corpus(tmp_path_factory)), "--out", str(out), "--workers", "2",
                         "--min-frames", "50", "--quiet"])
    return out


def synthesizer_data(tmp_path_factory, encoder_ckpt: Path) -> Path:
    from deepfake_audio.training import synthesizer_preprocess as preprocess
    out = base(tmp_path_factory) / "synthesizer_data"
    if not (out / "metadata.jsonl").is_file():
        preprocess.main([str(speech_corpus(tmp_path_factory)), "--out", str(out), "--workers", "1",
                         "--encoder", str(encoder_ckpt), "--quiet"])
    return out


def trained_encoder(tmp_path_factory) -> Path:
    from deepfake_audio.training import encoder_train as train
    run = base(tmp_path_factory) / "encoder_run"
    if not (run / "encoder.pt").is_file():
        train.main([str(encoder_data(tmp_path_factory)), "--run-dir", str(run), "--steps", "4", "--hparams",
                    *ENCODER_TINY, *QUIET])
    return run / "encoder.pt"


def trained_synthesizer(tmp_path_factory, encoder_ckpt: Path) -> Path:
    from deepfake_audio.training import synthesizer_train as train
    run = base(tmp_path_factory) / "synthesizer_run"
    if not (run / "synthesizer.pt").is_file():
        train.main([str(synthesizer_data(tmp_path_factory, encoder_ckpt)), "--run-dir", str(run), "--steps", "3",
                    "--hparams", *SYNTH_TINY, *QUIET])
    return run / "synthesizer.pt"


def vocoder_data(tmp_path_factory, encoder_ckpt: Path) -> Path:
    from deepfake_audio.training import vocoder_preprocess as preprocess
    out = base(tmp_path_factory) / "vocoder_data"
    if not (out / "metadata.jsonl").is_file():
        preprocess.main([str(synthesizer_data(tmp_path_factory, encoder_ckpt)), "--out", str(out),
                         "--synthesizer", str(trained_synthesizer(tmp_path_factory, encoder_ckpt)),
                         "--device", "cpu", "--quiet"])
    return out


def trained_vocoder(tmp_path_factory, encoder_ckpt: Path) -> Path:
    from deepfake_audio.training import vocoder_train as train
    run = base(tmp_path_factory) / "vocoder_run"
    if not (run / "vocoder.pt").is_file():
        train.main([str(vocoder_data(tmp_path_factory, encoder_ckpt)), "--run-dir", str(run), "--steps", "3",
                    "--hparams", *VOCODER_TINY, *QUIET])
    return run / "vocoder.pt"


def scalars(run: Path, tag: str) -> list[float]:
    """The values TensorBoard logged under `tag` in a run folder."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(run / "logs"), size_guidance={"scalars": 0})
    acc.Reload()
    return [event.value for event in acc.Scalars(tag)]


def same_state(a: dict, b: dict) -> bool:
    """Tensors, numbers and containers equal exactly (for checkpoint comparisons)."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.shape == b.shape and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same_state(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(same_state(x, y) for x, y in zip(a, b))
    return a == b
