"""The FastSpeech-style starter synthesizer: aligner maths, the model, loading, training and resuming."""
import itertools
import pickle

import numpy as np
import pytest
import torch

from deepfake_audio_core.errors import WeightsError
from deepfake_audio.pipeline import Pipeline
from deepfake_audio.training import fastspeech_train as train
from deepfake_audio.training.sampling import LengthBuckets
from synthesizer.fastspeech import (FastSpeech, FastSpeechHParams, beta_binomial_log_prior, length_regulate,
                                    monotonic_alignment_search)
from synthesizer.inference import Synthesizer
from training_fixtures import QUIET, one_thread, same_state, synthesizer_data  # noqa: F401

from conftest import DATA

TINY = FastSpeechHParams(d_model=32, heads=2, ffn_dims=64, encoder_layers=1, decoder_layers=1, duration_dims=32,
                         dropout=0.0)
TINY_OVERRIDES = ["d_model=32", "heads=2", "ffn_dims=64", "encoder_layers=1", "decoder_layers=1", "duration_dims=32",
                  "batch_size=4", "warmup_steps=2", "binarization_start=2", "learning_rate=0.01"]


def brute_force_durations(log_probs: np.ndarray, n_chars: int, n_frames: int) -> np.ndarray:
    """Best monotonic path by trying every way to give each character at least one frame."""
    best, best_d = -np.inf, None
    for cuts in itertools.combinations(range(1, n_frames), n_chars - 1):
        bounds = (0, *cuts, n_frames)
        d = np.diff(bounds)
        score = sum(log_probs[t, n] for n in range(n_chars) for t in range(bounds[n], bounds[n + 1]))
        if score > best:
            best, best_d = score, d
    return best_d


def test_monotonic_alignment_search_finds_the_best_path():
    rng = np.random.default_rng(0)
    char_lens, mel_lens = np.array([3, 4, 2]), np.array([7, 6, 5])
    log_probs = np.log(rng.dirichlet(np.ones(4), size=(3, 7)))
    durations = monotonic_alignment_search(log_probs, char_lens, mel_lens)
    for b in range(3):
        n, t = char_lens[b], mel_lens[b]
        assert durations[b, :n].tolist() == brute_force_durations(log_probs[b], n, t).tolist()
        assert durations[b].sum() == t and (durations[b, :n] >= 1).all() and (durations[b, n:] == 0).all()


def test_prior_is_a_distribution_along_the_diagonal():
    prior = beta_binomial_log_prior(torch.tensor([10]), torch.tensor([50]), 12, 60).exp()[0]
    assert torch.allclose(prior[:50, :10].sum(1), torch.ones(50), atol=1e-4)
    assert prior[50:].sum() == 0 and prior[:, 10:].sum() == 0  # nothing outside the item
    peaks = prior[:50, :10].argmax(1).float()
    assert torch.all((peaks - torch.arange(50) * 10 / 50).abs() <= 1.5)  # frame t favours character ~t N / T


def test_forward_sum_loss_prefers_a_monotonic_alignment():
    n, t = 6, 18
    diagonal = torch.full((1, t, n), -8.0)
    diagonal[0, torch.arange(t), torch.arange(t) * n // t] = 0.0
    backwards = diagonal.flip(2)
    lens = torch.tensor([n]), torch.tensor([t])
    good = train.forward_sum_loss(torch.log_softmax(diagonal, -1), lens[0], lens[1])
    bad = train.forward_sum_loss(torch.log_softmax(backwards, -1), lens[0], lens[1])
    assert good < 0.5 and bad > 5 * good


def test_length_regulation_repeats_each_character():
    x = torch.arange(6.0).view(1, 3, 2)
    out = length_regulate(x, torch.tensor([[2, 0, 3]]))
    assert out.shape == (1, 5, 2)
    assert out[0, :, 0].tolist() == [0.0, 0.0, 4.0, 4.0, 4.0]


def test_generate_lengths_follow_the_durations_and_pace():
    torch.manual_seed(0)
    model = FastSpeech(TINY).eval()
    chars = torch.tensor([[10, 11, 12, 1], [20, 21, 1, 0]])
    speaker = torch.nn.functional.normalize(torch.rand(2, 256), dim=1)
    with torch.no_grad():
        model.duration.proj.bias.fill_(np.log(1 + 4.0))  # every character lasts 4 frames
        model.duration.proj.weight.zero_()
    mels, durations = model.generate(chars, speaker)
    assert durations.tolist() == [[4, 4, 4, 4], [4, 4, 4, 0]]
    assert mels.shape == (2, 80, 16) and torch.all(mels[1, :, 12:] == -4.0)  # padding is silence
    _, slow = model.generate(chars, speaker, pace=0.5)
    assert slow.tolist() == [[8, 8, 8, 8], [8, 8, 8, 0]]


def test_length_buckets_are_a_function_of_the_step():
    lengths = np.random.default_rng(1).integers(50, 500, 100)
    whole = list(LengthBuckets(lengths, 8, seed=3, start=0, end=30))
    assert list(LengthBuckets(lengths, 8, seed=3, start=12, end=30)) == whole[12:]  # a resumed run's batches
    spread = [np.ptp(lengths[[i for i, _ in b]]) for b in whole]
    assert np.mean(spread) < 0.25 * np.ptp(lengths)  # each batch holds similar lengths
    epoch = [i for b in whole[:12] for i, _ in b]  # 12 groups of 8 = 96 of the 100 items, none twice
    assert len(set(epoch)) == 96


def save_fastspeech(path, model: FastSpeech, fp16: bool = False) -> None:
    state = {k: (v.half() if fp16 and v.is_floating_point() else v) for k, v in model.state_dict().items()}
    hparams = train.export_hparams(model.hp)
    torch.save({"architecture": "fastspeech", "model_state": state, "hparams": hparams}, path)


@pytest.fixture(scope="module")
def fastspeech_dir(tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("fastspeech")
    model = FastSpeech(TINY)
    with torch.no_grad():
        model.duration.proj.bias.fill_(np.log(1 + 3.0))  # about 3 frames per character, as trained ones make
    save_fastspeech(folder / "synthesizer.pt", model)
    save_fastspeech(folder / "synthesizer16.pt", model, fp16=True)
    return folder


def test_engine_loads_a_fastspeech_checkpoint_and_clones(fastspeech_dir):
    synth = Synthesizer(fastspeech_dir / "synthesizer.pt")
    assert synth.architecture == "fastspeech" and synth.r == 1 and synth.model.hp.d_model == 32
    embed = np.full(256, 1 / 16, np.float32)
    mels, durations = synth.synthesize_spectrograms(["Hello there.", "A longer second sentence here."],
                                                    [embed, embed], return_alignments=True)
    for mel, d, text in zip(mels, durations, ["Hello there.", "A longer second sentence here."]):
        assert mel.shape == (80, d.sum()) and len(d) == len(synth.text_ids(text))
    pipe = Pipeline(fastspeech_dir, starter=False)
    result = pipe.clone(DATA / "ref.wav", "One. Two.", seed=1, vocoder="griffinlim")
    assert result.vocoder == "griffinlim" and len(result.mels) == 2
    assert len(result.wav) == sum(m.shape[1] - 1 for m in result.mels) * 200 + 2400  # plus one 0.15 s pause


def test_fp16_weights_give_nearly_the_same_mels(fastspeech_dir):
    embed = np.full(256, 1 / 16, np.float32)
    full = Synthesizer(fastspeech_dir / "synthesizer.pt").synthesize_spectrograms(["Half precision."], embed)[0]
    half = Synthesizer(fastspeech_dir / "synthesizer16.pt").synthesize_spectrograms(["Half precision."], embed)[0]
    assert full.shape == half.shape and np.abs(full - half).max() < 0.05


def test_bad_fastspeech_checkpoints_are_refused(fastspeech_dir, tmp_path):
    ckpt = torch.load(fastspeech_dir / "synthesizer.pt", weights_only=True)
    ckpt["architecture"] = "glow-tts"
    torch.save(ckpt, tmp_path / "other.pt")
    with pytest.raises(WeightsError, match="unknown architecture 'glow-tts'"):
        Synthesizer(tmp_path / "other.pt")
    ckpt = torch.load(fastspeech_dir / "synthesizer.pt", weights_only=True)
    ckpt["hparams"]["d_model"] = 48  # says one size, holds another
    torch.save(ckpt, tmp_path / "mismatch.pt")
    with pytest.raises(WeightsError, match="does not match the FastSpeech synthesizer model"):
        Synthesizer(tmp_path / "mismatch.pt")
    data = (fastspeech_dir / "synthesizer.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[:len(data) // 2])
    with pytest.raises(WeightsError, match="truncated"):
        Synthesizer(tmp_path / "cut.pt")

    class Payload:
        def __reduce__(self):
            return (print, ("this must never run",))
    with (tmp_path / "evil.pt").open("wb") as fh:
        pickle.dump({"architecture": "fastspeech", "model_state": Payload()}, fh)
    with pytest.raises(WeightsError, match="could run code|not a PyTorch checkpoint"):
        Synthesizer(tmp_path / "evil.pt")


@pytest.fixture(scope="module")
def pack(tmp_path_factory, seed1_dir):
    from deepfake_audio.training.packed import pack_dataset
    path = tmp_path_factory.mktemp("fastspeech-pack") / "data.npz"
    pack_dataset(synthesizer_data(tmp_path_factory, seed1_dir / "encoder.pt"), path)
    return path


def _train(pack, run, steps, *extra):
    return train.main([str(pack), "--run-dir", str(run), "--steps", str(steps), "--hparams", *TINY_OVERRIDES,
                       f"total_steps={steps}", *QUIET, *extra])


@pytest.mark.usefixtures("one_thread")
def test_trains_from_a_pack_and_the_loss_falls(pack, tmp_path):
    summary = _train(pack, tmp_path / "run", 30, "--overfit-batch")
    assert summary.step == 30 and all(np.isfinite(summary.losses))
    assert np.mean(summary.losses[-3:]) < 0.7 * np.mean(summary.losses[:3])
    ckpt = torch.load(tmp_path / "run" / "synthesizer.pt", weights_only=True)
    assert ckpt["architecture"] == "fastspeech" and ckpt["hparams"]["d_model"] == 32
    assert "batch_size" not in ckpt["hparams"]  # training settings stay in the run folder


@pytest.mark.usefixtures("one_thread")
def test_resume_is_exact_and_fp16_weights_continue_at_their_step(pack, tmp_path):
    from deepfake_audio.training.export import export_weights
    straight = _train(pack, tmp_path / "straight", 4)
    _train(pack, tmp_path / "resumed", 2)
    resumed = _train(pack, tmp_path / "resumed", 4)
    assert resumed.start_step == 2 and same_state(straight.model.state_dict(), resumed.model.state_dict())

    # What a session commits mid-training: fp16 weights, no optimizer state.
    export_weights(tmp_path / "straight" / "synthesizer.pt", tmp_path / "next" / "synthesizer.pt", fp16=True)
    continued = _train(pack, tmp_path / "next", 6)
    assert continued.start_step == 4 and continued.step == 6
    synth = Synthesizer(tmp_path / "next" / "synthesizer.pt")
    assert synth.step == 6 and synth.architecture == "fastspeech"


def test_character_log_f0_averages_each_characters_voiced_frames():
    from synthesizer.fastspeech import character_log_f0
    durations = torch.tensor([[2, 0, 3]])
    f0 = torch.tensor([[150.0, 300.0, 0.0, 0.0, 75.0]])  # the middle character has no frame, two are unvoiced
    rel = character_log_f0(f0, durations, torch.tensor([0.0]))
    assert torch.allclose(rel, torch.tensor([[np.log(2) / 2, 0.0, -np.log(2)]], dtype=torch.float32), atol=1e-6)


def test_pitch_conditioning_starts_as_the_model_it_continues():
    """Added to trained weights, the pitch modules change nothing until they are trained
    (their input projections start at zero); the pitch shift then reaches the decoder."""
    from dataclasses import replace
    torch.manual_seed(1)
    plain = FastSpeech(TINY).eval()
    pitched = FastSpeech(replace(TINY, pitch_conditioning=True)).eval()
    state = pitched.state_dict()
    state.update(plain.state_dict())
    pitched.load_state_dict(state)
    chars, speaker = torch.randint(1, 40, (2, 12)), torch.nn.functional.normalize(torch.randn(2, 256), dim=1)
    stats = torch.tensor([[0.2, 0.1], [float("nan"), float("nan")]])
    assert torch.equal(plain.generate(chars, speaker)[0], pitched.generate(chars, speaker, 1.0, stats, 5.0)[0])
    with torch.no_grad():
        pitched.pitch_embed.weight.normal_()
    low, high = (pitched.generate(chars, speaker, 1.0, stats, shift)[0] for shift in (-6.0, 6.0))
    assert not torch.allclose(low, high)


@pytest.fixture(scope="module")
def pitch_pack(tmp_path_factory, seed1_dir):
    from deepfake_audio.training.packed import PackedSynthesizerData, pack_dataset
    path = tmp_path_factory.mktemp("fastspeech-pitch-pack") / "data.npz"
    pack_dataset(synthesizer_data(tmp_path_factory, seed1_dir / "encoder.pt"), path, pitch=True)
    data = PackedSynthesizerData(path, pitch=True)
    ids, mel, embed, f0, stats = data[(0, 0)]
    assert f0.shape == (mel.shape[1],) and (f0 > 0).any() and np.isfinite(stats).all()
    return path


@pytest.mark.usefixtures("one_thread")
def test_a_pitch_conditioned_model_trains_and_follows_the_asked_pitch(pitch_pack, pack, tmp_path):
    summary = _train(pitch_pack, tmp_path / "run", 30, "--overfit-batch", "--hparams", "pitch_conditioning=True")
    assert all(np.isfinite(summary.losses)) and np.mean(summary.losses[-3:]) < 0.7 * np.mean(summary.losses[:3])
    synth = Synthesizer(tmp_path / "run" / "synthesizer.pt")
    assert synth.has_pitch
    from synthesizer.inference import PitchRequest
    embed = np.full(256, 1 / 16, np.float32)
    mels = [synth.synthesize_spectrograms(["Pitch moves the harmonics."], [embed],
                                          pitch=PitchRequest(hz, 0.1, 0.0))[0] for hz in (90.0, 250.0)]
    assert mels[0].shape == mels[1].shape and not np.allclose(mels[0], mels[1])
    with pytest.raises(Exception, match="pack it again with --pitch"):
        _train(pack, tmp_path / "nopitch", 2, "--hparams", "pitch_conditioning=True")


@pytest.mark.usefixtures("one_thread")
def test_a_pitch_conditioned_model_trains_from_a_preprocessed_folder(tmp_path_factory, seed1_dir, tmp_path):
    """As fine-tuning does (`sv2tts-finetune` on the pitch-aware starter): F0 measured from the folder's audio."""
    folder = synthesizer_data(tmp_path_factory, seed1_dir / "encoder.pt")
    summary = _train(folder, tmp_path / "run", 3, "--hparams", "pitch_conditioning=True")
    assert summary.step == 3 and all(np.isfinite(summary.losses))
