"""The native (C) WaveRNN loop: built on this machine, same numbers as the TorchScript loop,
and a clean fallback wherever it cannot be built or run."""
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import vector
from vocoder import native
from vocoder.fast import FastWaveRNN
from vocoder.inference import Vocoder

ROOT = Path(__file__).resolve().parents[1]
# On an x86-64 machine with a C compiler and AVX2 (CI's), the native loop must be in use.
EXPECTED = platform.machine() in ("x86_64", "AMD64") and native._compiler() is not None and "avx2" in (
    Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else "")


@pytest.fixture(scope="module")
def vocoder(seed1_dir):
    return Vocoder(seed1_dir / "vocoder.pt")


def test_native_loop_is_built_and_used_here(vocoder):
    if not EXPECTED:
        pytest.skip("no x86-64 AVX2 CPU with a C compiler")
    assert native.library() is not None, native.reason()
    assert vocoder.fast("fast").native is not None
    assert vocoder.fast("int8").native is not None and FastWaveRNN(vocoder.model, "fp32").native is None
    assert vocoder.fast("int8").native.kernel in ("avx2", "avxvnni", "avx512vnni")


# (rows, in, out): the loop's shapes (5 folds, rnn 512) and awkward ones
MATMUL_SHAPES = [(1, 513, 3072), (5, 513, 1536), (6, 512, 512), (13, 37, 70), (7, 8, 9)]


def _operands(m: int, k: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(w (k, n), x (m, k)) for a matmul test; skips where the library is not built."""
    if native.library() is None:
        pytest.skip(native.reason())
    g = torch.Generator().manual_seed(m * k + n)
    return torch.randn(k, n, generator=g) / k ** 0.5, torch.randn(m, k, generator=g)


@pytest.mark.parametrize("m,k,n", MATMUL_SHAPES)
def test_native_matmul_equals_fp16_weight_product(m, k, n):
    w, x = _operands(m, k, n)
    expected = x.double() @ w.half().double()  # fp16 weights, exact products and sums
    got = native.matmul(w, x).double()
    assert got.shape == (m, n)
    assert (got - expected).abs().max() < 1e-5 * max(1.0, expected.abs().max().item())


def _int8_reference(w: torch.Tensor, x: torch.Tensor) -> np.ndarray:
    """What the int8 matmul promises, in numpy: w quantised per column, each row of x to
    round(x * 127 / max x) if it has no negative value, else to round(x * 63 / max|x|),
    integer products summed exactly, then scaled in float32."""
    w8, scale = native.quantize_int8(w)
    out = np.zeros((x.shape[0], w.shape[1]), np.float32)
    for r, row in enumerate(x.numpy()):
        amax = np.float32(np.abs(row).max())
        if amax == 0:
            continue
        steps = np.float32(63 if row.min() < 0 else 127)
        q = np.clip(np.rint(row * (steps / amax)), -steps, steps).astype(np.int64)
        dots = (q[:, None] * w8.astype(np.int64)).sum(axis=0)
        assert np.abs(dots).max() < 2 ** 24  # so the float conversion is exact
        out[r] = dots.astype(np.float32) * scale * (amax / steps)
    return out


def _int8_kernels() -> list[str]:
    return [k for k in native.INT8_KERNELS if k != "auto" and native.int8_kernel(k)]


@pytest.mark.parametrize("m,k,n", MATMUL_SHAPES)
def test_int8_matmul_is_exact_integer_arithmetic_on_every_kernel(m, k, n):
    w, x = _operands(m, k, n)
    if m > 1:
        x[m // 2] = 0  # a zero row gives zeros (no scale to divide by)
    expected = _int8_reference(w, x)
    kernels = _int8_kernels()
    assert "avx2" in kernels
    for kernel in kernels:
        np.testing.assert_array_equal(native.matmul8(w, x, kernel).numpy(), expected, err_msg=kernel)
    # and it is a matmul: within quantisation error of the float product
    exact = (x.double() @ w.double()).numpy()
    assert np.abs(expected - exact).max() <= 0.03 * np.abs(exact).max()
    with pytest.raises(ValueError, match="int8 kernel"):
        native.NativeLoop(native.library(), 8, 8, 8, *[torch.zeros(1)] * 9, precision="int8", kernel="sse")


def test_int8_matmul_is_exact_at_the_largest_products():
    """Every product at 127 x 127 with one sign (AVX2's 16-bit pair sums closest to saturating:
    a row without negatives, and a signed row at its top byte), then with alternating signs:
    the sums are still exact on every kernel."""
    w = torch.ones(40, 24)
    x = torch.ones(4, 40)
    x[1] = -1
    x[2, ::2] = -1
    x[3, -1] = -1  # signed: every other input quantises to the byte 127
    w[::3, 5] = -1
    expected = _int8_reference(w, x)
    assert np.isclose(np.abs(expected).max(), 40, rtol=1e-6)
    for kernel in _int8_kernels():
        np.testing.assert_array_equal(native.matmul8(w, x, kernel).numpy(), expected, err_msg=kernel)


def test_int8_loop_gives_the_same_samples_on_every_kernel(vocoder, monkeypatch):
    """The sums are exact integers, so AVX2 and the VNNI kernels pick the same classes: a seed
    gives the same int8 audio on any x86-64 CPU."""
    if native.library() is None:
        pytest.skip(native.reason())
    mel = torch.from_numpy(vector("voc_input_mel.npy")[:, :40] / 4).float()[None]
    waves = {}
    for kernel in _int8_kernels():
        monkeypatch.setenv("DEEPFAKE_AUDIO_INT8_KERNEL", kernel)
        fw = FastWaveRNN(vocoder.model, "int8")
        assert fw.native.kernel == kernel
        waves[kernel] = fw.generate(mel, generator=torch.Generator().manual_seed(3), target=2000, overlap=400)
    first = waves.pop("avx2")
    for kernel, wave in waves.items():
        np.testing.assert_array_equal(wave, first, err_msg=kernel)
    monkeypatch.setenv("DEEPFAKE_AUDIO_INT8_KERNEL", "mmx")
    with pytest.raises(ValueError, match="unknown int8 kernel 'mmx'"):
        FastWaveRNN(vocoder.model, "int8")


def test_native_loop_reproduces_the_torchscript_loop(vocoder):
    """Same fused fp16 weights, same uniform draws: the C loop picks the TorchScript loop's
    classes sample for sample (the order of fp32 sums differs, so a near-tie may eventually
    flip one class; none does in the first folds here)."""
    if native.library() is None:
        pytest.skip(native.reason())
    fast = FastWaveRNN(vocoder.model, "fp16")
    mel = torch.from_numpy(vector("voc_input_mel.npy")[:, :60] / 4).float()[None]
    kwargs = dict(target=4000, overlap=400)
    a = fast.generate(mel, generator=torch.Generator().manual_seed(7), **kwargs)
    loop, fast.native = fast.native, None
    try:
        b = fast.generate(mel, generator=torch.Generator().manual_seed(7), **kwargs)
    finally:
        fast.native = loop
    assert a.shape == b.shape == (59 * 200,)
    differ = np.flatnonzero(a != b)
    first = differ[0] if len(differ) else len(a)
    assert first >= 4000, first
    assert len(differ) < 0.25 * len(a)


def test_fast_mode_runs_without_the_native_loop(seed1_dir):
    """DEEPFAKE_AUDIO_NATIVE=0: the TorchScript loop, same sampling distribution."""
    code = ("import sys, numpy as np; sys.path[:0] = ['tests', '.']\n"
            "from vocoder import native; from vocoder.inference import Vocoder\n"
            f"v = Vocoder({str(seed1_dir / 'vocoder.pt')!r})\n"
            "w = v.infer_waveform(np.load('tests/data/voc_input_mel.npy')[:, :20], seed=1, mode='fast')\n"
            "assert v.fast('fast').native is None and w.shape == (3800,) and np.isfinite(w).all()\n"
            "print(native.reason())\n")
    env = dict(os.environ, DEEPFAKE_AUDIO_NATIVE="0")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert "disabled by DEEPFAKE_AUDIO_NATIVE" in done.stdout


@pytest.mark.parametrize("compiler", [None, "false"])
def test_no_compiler_or_failed_build_falls_back(monkeypatch, tmp_path, compiler):
    """No compiler, or one that fails: library() is None with the reason, nothing raised."""
    monkeypatch.setenv("DEEPFAKE_AUDIO_CACHE", str(tmp_path))
    monkeypatch.setattr(native, "_compiler", lambda: shutil.which(compiler) if compiler else None)
    monkeypatch.setattr(native, "_state", {})
    assert native.library() is None
    assert ("no C compiler" if compiler is None else "compiling wavernn.c failed") in native.reason()
    assert not list(tmp_path.glob("*.so"))  # no half-written library left behind


def test_unwritable_cache_falls_back_with_the_reason(monkeypatch, tmp_path):
    if native._compiler() is None:
        pytest.skip("no C compiler")
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder would go")
    monkeypatch.setenv("DEEPFAKE_AUDIO_CACHE", str(blocker / "cache"))
    monkeypatch.setattr(native, "_state", {})
    assert native.library() is None
    assert "set DEEPFAKE_AUDIO_CACHE" in native.reason()


def test_build_is_cached_and_rebuilt_when_forced(monkeypatch, tmp_path):
    if native._compiler() is None:
        pytest.skip("no C compiler")
    monkeypatch.setenv("DEEPFAKE_AUDIO_CACHE", str(tmp_path))
    path = native.build()
    stamp = path.stat().st_mtime_ns
    assert native.build() == path and path.stat().st_mtime_ns == stamp
    assert native.build(force=True) == path and list(tmp_path.iterdir()) == [path]


def test_damaged_cached_build_is_rebuilt(monkeypatch, tmp_path):
    if native._compiler() is None:
        pytest.skip("no C compiler")
    monkeypatch.setenv("DEEPFAKE_AUDIO_CACHE", str(tmp_path))
    monkeypatch.setattr(native, "_state", {})
    path = native.build()
    path.write_bytes(b"not a library")  # e.g. a disk that filled up mid-copy
    assert native.library() is not None or native.reason() == "this CPU lacks AVX2/FMA/F16C"
    assert path.read_bytes() != b"not a library"


def test_groups_run_side_by_side_give_each_group_its_own_samples(vocoder):
    """`run_many` starts a thread per group in C: each group's classes, state and carry are what
    `run` gives it alone, bit for bit (groups of different sizes, more groups than cores)."""
    if native.library() is None:
        pytest.skip(native.reason())
    loop = FastWaveRNN(vocoder.model, "fp16").native
    g = torch.Generator().manual_seed(3)
    steps, taps, width = 120, 4, 8 * loop.rnn + 2 * loop.fc

    def group(batch):
        return [torch.rand(batch, steps + 1, taps, generator=g), torch.randn(batch, taps, width, generator=g) * 0.3,
                torch.zeros(batch, width), torch.rand(steps, batch, generator=g),
                torch.empty(steps, batch, dtype=torch.long), torch.zeros(batch, loop.rnn + 1),
                torch.zeros(batch, loop.rnn), loop.scratch(batch)]

    groups = [group(b) for b in (2, 1, 3)]
    copies = [[t.clone() for t in grp] for grp in groups]
    loop.run_many(groups, steps)
    for grp in copies:
        loop.run(*grp, steps)
    for together, alone in zip(groups, copies):
        for a, b in zip(together[2:7], alone[2:7]):  # carry, uniform, classes, h1x, h2
            assert torch.equal(a, b)
    assert len(torch.unique(groups[0][4])) > 5  # it did sample something
    with pytest.raises(ValueError):
        loop.run_many([group(2)[:7] + [loop.scratch(1)]], steps)  # scratch too small: refused before any thread
