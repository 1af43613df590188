"""Fast WaveRNN: same network as the parity loop, same sampling distribution; streaming."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from scipy import signal

from conftest import DATA, vector
from deepfake_audio import Pipeline
from deepfake_audio.streaming import stream_clone
from vocoder.fast import FastWaveRNN, mode_precision, plan_folds
from vocoder.inference import REFERENCE_GRUCELL_WORDS, Vocoder

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def vocoder(seed1_dir):
    return Vocoder(seed1_dir / "vocoder.pt")


@pytest.fixture(scope="module")
def mel():
    return vector("voc_input_mel.npy")


def parity_generator(seed):
    generator = torch.Generator().manual_seed(seed)
    torch.empty(REFERENCE_GRUCELL_WORDS).uniform_(generator=generator)
    return generator


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_same_draws_give_the_parity_samples(vocoder, mel, precision):
    """Given the parity loop's generator draws (Gumbel-max on its exponentials), the fused network
    picks the same classes: its logits equal the reference's to rounding."""
    mel = mel[:, :15]
    expected = vocoder.infer_waveform(mel, batched=False, seed=1)
    fast = FastWaveRNN(vocoder.model, precision)
    mel_t = torch.from_numpy(mel[None] / 4).float()
    wav = fast.generate(mel_t, batched=False, generator=parity_generator(1), sampling="gumbel")
    assert wav.shape == expected.shape
    agree = np.flatnonzero(wav != expected)
    first_difference = agree[0] if len(agree) else len(wav)
    # A near-tie can flip one class and part the trajectories; with these weights none does.
    assert first_difference >= 2000, first_difference
    np.testing.assert_array_equal(wav[:first_difference], expected[:first_difference])


def sampled_classes(wav):
    """The 9-bit classes behind a waveform: undo the de-emphasis and the mu-law expansion."""
    y = signal.lfilter([1, -0.97], [1], wav)
    x = np.sign(y) * np.log1p(511 * np.abs(y)) / np.log(512)
    return np.clip(np.round((x + 1) * 511 / 2), 0, 511).astype(int)


def class_distance(a, b, bins=16):
    """Total variation distance between the histograms of two waveforms' sampled classes."""
    ha = np.bincount(sampled_classes(a) * bins // 512, minlength=bins) / len(a)
    hb = np.bincount(sampled_classes(b) * bins // 512, minlength=bins) / len(b)
    return 0.5 * np.abs(ha - hb).sum()


def spectral_distance(a, b):
    """Mean absolute difference of the Welch power spectra, in dB."""
    (_, pa), (_, pb) = signal.welch(a, nperseg=512), signal.welch(b, nperseg=512)
    return float(np.mean(np.abs(10 * np.log10(pa + 1e-12) - 10 * np.log10(pb + 1e-12))))


def test_fast_modes_sample_the_parity_distribution(vocoder, mel):
    """Each fast arithmetic (inverse-CDF sampling; int8, the default, and fp16 weights on CPU)
    against the parity loop: the sampled classes and the spectra differ no more than between
    two seeds of that mode."""
    mel = mel[:, :50]
    kwargs = dict(target=2000, overlap=400)
    parity = vocoder.infer_waveform(mel, seed=1, **kwargs)[1000:-1000]
    for mode in ("int8", "fp16"):
        fast_a = vocoder.infer_waveform(mel, seed=1, mode=mode, **kwargs)[1000:-1000]
        fast_b = vocoder.infer_waveform(mel, seed=2, mode=mode, **kwargs)[1000:-1000]
        assert not np.array_equal(fast_a, fast_b)
        floor_classes, floor_spec = class_distance(fast_a, fast_b), spectral_distance(fast_a, fast_b)
        assert class_distance(parity, fast_a) < 1.5 * floor_classes + 0.02, mode
        assert spectral_distance(parity, fast_a) < 1.5 * floor_spec + 0.2, mode
        assert abs(parity.std() / fast_a.std() - 1) < 0.15, mode


def test_each_mode_picks_its_arithmetic():
    from deepfake_audio_core.modes import arithmetic
    assert [arithmetic(m) for m in ("fast", "int8", "fp16", "parity")] == ["int8", "int8", "fp16", "parity"]
    assert [mode_precision(m, "cpu", 512) for m in ("fast", "int8", "fp16")] == ["int8", "int8", "fp16"]
    # int8 and fp16 are CPU arithmetic: a GPU runs fp32 whatever the mode (no CUDA needed to ask)
    assert {mode_precision(m, "cuda", 512) for m in ("fast", "int8", "fp16")} == {"fp32"}
    with pytest.raises(ValueError, match="reference loop"):
        mode_precision("parity", "cpu", 512)
    with pytest.raises(ValueError, match="unknown mode 'turbo'"):
        arithmetic("turbo")


def test_fast_mode_is_int8_and_close_to_fp16(vocoder, mel):
    mel = mel[:, :50]
    fast = vocoder.infer_waveform(mel, seed=3, mode="fast")
    fp16 = vocoder.infer_waveform(mel, seed=3, mode="fp16")
    np.testing.assert_array_equal(fast, vocoder.infer_waveform(mel, seed=3, mode="int8"))
    assert vocoder.fast("fast") is vocoder.fast("int8") and vocoder.fast("fp16").precision == "fp16"
    assert fp16.shape == fast.shape and np.all(np.isfinite(fast))
    assert class_distance(fast, fp16) < 0.02
    assert spectral_distance(fast, fp16) < 0.5


@pytest.mark.parametrize("kwargs", [dict(), dict(head=2400, target=2000, overlap=400),
                                    dict(target=1000, overlap=200)])
def test_stream_joins_to_the_whole_waveform(vocoder, mel, kwargs):
    whole = vocoder.infer_waveform(mel[:, :40], seed=5, mode="fast", **kwargs)
    pieces = list(vocoder.stream_waveform(mel[:, :40], seed=5, mode="fast", first_samples=400,
                                          min_samples=1000, **kwargs))
    assert len(pieces) >= 2 and len(pieces[0]) >= 400
    assert all(len(p) >= 1000 for p in pieces[1:-1])
    np.testing.assert_array_equal(np.concatenate(pieces), whole)


def test_head_comes_first_in_short_folds():
    plan = plan_folds(40000, target=8000, overlap=800, head=4000)
    head, rest = plan.waves
    assert head.starts == (0, 1600) and head.length == 2400
    assert rest.starts[0] == head.starts[-1] + head.length - 800  # overlaps the head's last fold
    last = rest.starts[-1] + rest.length
    assert 40000 <= last < 40000 + len(rest.starts)
    single = plan_folds(5000)
    assert single.folds == [(0, 5000)]


@pytest.mark.parametrize("total", [80000, 81234, 200000])
def test_fold_count_fits_the_threads(total):
    """Folds shared out between 2 threads come in pairs, still cover the audio with the same overlap,
    and are shorter than the single-thread plan's, so neither thread waits on the other."""
    one, two = plan_folds(total), plan_folds(total, multiple=2)
    (wave,) = two.waves
    assert len(wave.starts) % 2 == 0 and len(wave.starts) >= len(one.waves[0].starts)
    assert wave.length <= one.waves[0].length
    assert all(b - a == wave.length - 800 for a, b in zip(wave.starts, wave.starts[1:]))
    assert total <= wave.starts[-1] + wave.length < total + len(wave.starts)
    assert plan_folds(5000, multiple=2).folds == [(0, 5000)]  # one fold is never split


@pytest.mark.parametrize("frames", [1, 2, 3, 20])
def test_short_mels_work(vocoder, mel, frames):
    for mode in ("fast", "int8"):
        wav = vocoder.infer_waveform(mel[:, :frames], seed=0, mode=mode)
        assert wav.shape == ((frames - 1) * 200,) and np.all(np.isfinite(wav))
        if frames > 1:
            assert wav[-1] == 0.0


def test_fast_seeded_reproducible_and_global_rng_untouched(vocoder, mel):
    torch.manual_seed(0)
    before = torch.get_rng_state()
    a = vocoder.infer_waveform(mel[:, :30], seed=4, mode="fast")
    b = vocoder.infer_waveform(mel[:, :30], seed=4, mode="fast")
    assert torch.equal(before, torch.get_rng_state())
    assert np.array_equal(a, b) and not np.array_equal(a, vocoder.infer_waveform(mel[:, :30], seed=5, mode="fast"))


def test_unknown_mode_is_refused(vocoder, mel):
    with pytest.raises(ValueError, match="parity"):
        vocoder.infer_waveform(mel[:, :5], mode="turbo")


@pytest.fixture(scope="module")
def pipe(quick_dir):
    return Pipeline(quick_dir, device="cpu")


def test_stream_clone_matches_clone_layout(pipe):
    text = "Hello there. How are you? Fine."
    chunks = list(stream_clone(pipe, DATA / "ref.wav", text, seed=7))
    again = list(stream_clone(pipe, DATA / "ref.wav", text, seed=7))
    audio = np.concatenate([c.audio for c in chunks])
    assert np.array_equal(audio, np.concatenate([c.audio for c in again]))
    assert [c.start for c in chunks] == list(np.cumsum([0] + [len(c.audio) for c in chunks[:-1]]))
    assert [c.sentence for c in chunks] == sorted(c.sentence for c in chunks) and chunks[-1].sentence == 2
    assert audio.dtype == np.float32 and np.abs(audio).max() <= 0.97 + 1e-6
    result = pipe.clone(DATA / "ref.wav", text, seed=7)
    assert len(audio) == len(result.wav) == (3 * 14 - 1) * 200 + 2 * 2400  # same sentences, same pauses
    assert np.any(audio[:14 * 200]) and not np.any(audio[14 * 200:14 * 200 + 2400])
    # the first sentence arrives in pieces where the first piece is shorter than it (fp16's: 1,400 samples)
    first = next(iter(stream_clone(pipe, DATA / "ref.wav", text, seed=7, mode="fp16")))
    assert first.sentence == 0 and len(first.audio) < 14 * 200


def test_stream_clone_parity_and_griffinlim(pipe):
    for kwargs in (dict(mode="parity"), dict(vocoder="griffinlim")):
        chunks = list(stream_clone(pipe, DATA / "ref.wav", "One. Two.", seed=1, **kwargs))
        assert len(np.concatenate([c.audio for c in chunks])) == len(pipe.clone(DATA / "ref.wav", "One. Two.",
                                                                                seed=1, **kwargs).wav)


def test_cli_stream_writes_a_playable_wav(quick_dir, tmp_path):
    out = tmp_path / "streamed.wav"
    proc = subprocess.run([sys.executable, "-m", "deepfake_audio", "clone", "--voice", str(DATA / "ref.wav"),
                           "--text", "Hello world. Bye.", "--out", str(out), "--seed", "1", "--models",
                           str(quick_dir), "--stream"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    info = sf.info(out)
    assert info.subtype == "PCM_16" and info.samplerate == 16000 and info.frames == (28 - 1) * 200 + 2400
    assert "first audio after" in proc.stderr and "streamed" in proc.stdout


def test_fast_synthesizer_stays_close_to_parity(seed1_dir):
    """fp16 LSTM weights move the mels by about 1e-3; the same seed gives the same dropout masks."""
    from synthesizer.inference import Synthesizer
    synth = Synthesizer(seed1_dir / "synthesizer.pt")
    synth.hparams = type(synth.hparams)(**{**synth.hparams.__dict__, "max_decoder_frames": 60})
    args = (["Hello world, this is a test."], [vector("embed.npy")])
    (parity,) = synth.synthesize_spectrograms(*args, seed=1)
    (fp16,) = synth.synthesize_spectrograms(*args, seed=1, mode="fp16")
    (other_seed,) = synth.synthesize_spectrograms(*args, seed=2, mode="fp16")
    assert fp16.shape == parity.shape == (80, 60)
    assert np.abs(fp16 - parity).max() < 0.05
    assert np.abs(fp16 - parity).mean() < 0.1 * np.abs(other_seed - parity).mean()
    # int8 cells (the fast mode's): a coarser rounding, still far below what another seed changes.
    (int8,) = synth.synthesize_spectrograms(*args, seed=1, mode="int8")
    assert int8.shape == parity.shape
    assert np.abs(int8 - parity).mean() < 0.3 * np.abs(other_seed - parity).mean()
    np.testing.assert_array_equal(synth.synthesize_spectrograms(*args, seed=1, mode="fast")[0], int8)
    with pytest.raises(ValueError, match="parity"):
        synth.synthesize_spectrograms(*args, seed=1, mode="turbo")


def test_fp16_cell_split_between_threads_is_exact(seed1_dir):
    """An fp16 LSTM cell cut into blocks run on the worker pool gives the whole matmul's numbers,
    and decoding with split cells gives torch its thread count back afterwards."""
    from synthesizer import fast
    from synthesizer.inference import Synthesizer
    synth = Synthesizer(seed1_dir / "synthesizer.pt")
    cell = synth.model.decoder.res_rnn1
    x, h, c = (torch.randn(3, cell.hidden_size, generator=torch.Generator().manual_seed(k)) for k in range(3))
    whole = fast._Fp16LSTMCell(cell, parts=1)
    for parts in (2, 3):
        split = fast._Fp16LSTMCell(cell, parts=parts)
        assert split.parts == parts
        for a, b in zip(split(x, (h, c)), whole(x, (h, c))):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    from deepfake_audio_core.threads import cpu_threads
    threads = torch.get_num_threads()
    with fast.decoding((split, split)):
        assert torch.get_num_threads() == 1
        # Cells built meanwhile (another request) still split for the user's thread count.
        assert cpu_threads() == threads
        assert fast._Fp16LSTMCell(cell).parts == min(threads, fast.MAX_PARTS)
    assert torch.get_num_threads() == threads
    with fast.decoding((whole, whole)):
        assert torch.get_num_threads() == threads


def test_same_audio_on_a_thread_that_started_during_a_hold(vocoder, mel):
    """A server's worker thread that first ran torch while another request held the intra-op
    count at one keeps one as its own count (OpenMP's count is per thread). The fold groups
    (and so the samples of a seed) and its later torch work must not depend on that."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        _same_audio_on_a_stuck_thread(vocoder, mel, 2)
    finally:
        torch.set_num_threads(before)


def _same_audio_on_a_stuck_thread(vocoder, mel, threads: int) -> None:
    from concurrent.futures import ThreadPoolExecutor
    from deepfake_audio_core.threads import IntraOpHold, cpu_threads
    short = mel[:, :40]
    expected = vocoder.infer_waveform(short, seed=6, mode="fast")
    rolling = next(vocoder.rolling_waveform(short, seed=6))
    with ThreadPoolExecutor(1) as pool:
        hold = IntraOpHold(1)
        hold.enter()  # another request's hold, as the worker runs torch for the first time
        assert pool.submit(torch.get_num_threads).result() == 1
        hold.exit()
        assert pool.submit(cpu_threads).result() == threads
        np.testing.assert_array_equal(pool.submit(vocoder.infer_waveform, short, seed=6, mode="fast").result(),
                                      expected)
        def hold_once():
            h = IntraOpHold(1)
            h.enter()
            h.exit()
        pool.submit(hold_once).result()  # the worker's own hold, begun and ended on one thread...
        with ThreadPoolExecutor(1) as fresh:  # ...leaves the process setting as it found it
            assert fresh.submit(torch.get_num_threads).result() == threads
        from deepfake_audio_core.threads import use_user_threads
        pool.submit(use_user_threads).result()  # what a request's start does (Pipeline.plan)
        assert pool.submit(torch.get_num_threads).result() == threads
        np.testing.assert_array_equal(pool.submit(lambda: next(vocoder.rolling_waveform(short, seed=6))).result(),
                                      rolling)
