"""The fast WaveRNN loop compiled from C (wavernn.c), loaded with ctypes.

The library is built on first use with the system's C compiler (`cc`, or `$CC`), a few
seconds, into a cache folder (`$DEEPFAKE_AUDIO_CACHE`, else ~/.cache/deepfake-audio), keyed
by the source's hash so an edited source is rebuilt. It is portable across x86-64 CPUs:
the kernels are compiled for AVX2/FMA/F16C and only called where the CPU has them.

Where there is no compiler, the CPU lacks AVX2, the build fails or `DEEPFAKE_AUDIO_NATIVE=0`
is set, `library()` returns None and the fast vocoder keeps its TorchScript loop (same
network, same sampling; slower). `python -m vocoder.native` builds it and says which.
"""
from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("wavernn.c")
ABI_VERSION = 5
FLAGS = ["-O3", "-shared", "-fPIC", "-pthread", "-fno-math-errno", "-std=c11", "-D_POSIX_C_SOURCE=200112L"]

_lock = threading.Lock()
_state: dict[str, object] = {}


def cache_dir() -> Path:
    root = os.environ.get("DEEPFAKE_AUDIO_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "deepfake-audio"


def _compiler() -> str | None:
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def build(force: bool = False) -> Path:
    """Compile wavernn.c into the cache (if not there yet) and return the library's path.
    Raises RuntimeError with the compiler's message when it cannot."""
    source = SOURCE.read_bytes()
    key = hashlib.sha256(source + " ".join(FLAGS).encode() + sys.platform.encode()).hexdigest()[:16]
    target = cache_dir() / f"wavernn-{key}.so"
    if target.is_file() and not force:
        return target
    cc = _compiler()
    if cc is None:
        raise RuntimeError("no C compiler found (install gcc, or set CC)")
    # Build beside the target and rename: another process may be building the same file.
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    except OSError as err:
        raise RuntimeError(f"cannot write {target.parent} ({err.strerror}): set DEEPFAKE_AUDIO_CACHE "
                           "to a writable folder") from err
    os.close(fd)
    try:
        done = subprocess.run([cc, *FLAGS, "-o", tmp, str(SOURCE), "-lm"], capture_output=True, text=True,
                              timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"compiling {SOURCE.name} failed: {done.stderr.strip()[-2000:]}")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def _load(path: Path) -> ctypes.CDLL:
    lib = ctypes.CDLL(str(path))
    lib.dfa_abi_version.restype = ctypes.c_int
    lib.dfa_supported.restype = ctypes.c_int
    if lib.dfa_abi_version() != ABI_VERSION:
        raise RuntimeError(f"{path} has ABI {lib.dfa_abi_version()}, expected {ABI_VERSION}")
    if not lib.dfa_supported():
        return lib
    p, i, l = ctypes.c_void_p, ctypes.c_int, ctypes.c_long  # noqa: E741
    lib.dfa_new.restype = p
    lib.dfa_new.argtypes = [i, i, i] + [p] * 9
    lib.dfa_free.restype = None
    lib.dfa_free.argtypes = [p]
    lib.dfa_run.restype = None
    lib.dfa_run.argtypes = [p, p, l, p, i, p, p, l, p, l, p, p, p, i, i]
    lib.dfa_run_many.restype = None
    lib.dfa_run_many.argtypes = [p, p, i]
    lib.dfa_scratch_floats.restype = ctypes.c_size_t
    lib.dfa_scratch_floats.argtypes = [p, i]
    lib.dfa_matmul.restype = i
    lib.dfa_matmul.argtypes = [p, i, i, p, i, p]
    lib.dfa_int8_kernel.restype = i
    lib.dfa_int8_kernel.argtypes = [i]
    lib.dfa_new8.restype = p
    lib.dfa_new8.argtypes = [i, i, i, i] + [p] * 14
    lib.dfa_matmul8.restype = i
    lib.dfa_matmul8.argtypes = [p, p, i, i, p, i, p, i]
    return lib


def library() -> ctypes.CDLL | None:
    """The loaded library if this machine can run it, else None (the reason is logged once
    and kept in `reason()`)."""
    with _lock:
        if "lib" not in _state:
            lib, why = None, ""
            if os.environ.get("DEEPFAKE_AUDIO_NATIVE", "1").strip().lower() in ("0", "false", "no", "off"):
                why = "disabled by DEEPFAKE_AUDIO_NATIVE"
            else:
                try:
                    path = build()
                    try:
                        loaded = _load(path)
                    except (OSError, RuntimeError):  # a damaged cached build: make it again, once
                        loaded = _load(build(force=True))
                    if loaded.dfa_supported():
                        lib = loaded
                    else:
                        why = "this CPU lacks AVX2/FMA/F16C"
                except (OSError, RuntimeError, subprocess.SubprocessError) as err:
                    why = str(err)
            if why:
                log.info("native WaveRNN loop not used (%s): the TorchScript loop runs instead", why)
            _state["lib"], _state["reason"] = lib, why
        return _state["lib"]  # type: ignore[return-value]


def reason() -> str:
    """Why `library()` is None ('' when it is not)."""
    library()
    return str(_state["reason"])


class _RunArgs(ctypes.Structure):
    """One call's arguments for dfa_run_many (the C struct RunArgs)."""
    _fields_ = [("coef", ctypes.c_void_p), ("ldcf", ctypes.c_long), ("rows", ctypes.c_void_p), ("taps", ctypes.c_int),
                ("carry", ctypes.c_void_p), ("uniform", ctypes.c_void_p), ("ldu", ctypes.c_long),
                ("classes", ctypes.c_void_p), ("ldc", ctypes.c_long), ("h1x", ctypes.c_void_p),
                ("h2", ctypes.c_void_p), ("scratch", ctypes.c_void_p), ("b", ctypes.c_int), ("steps", ctypes.c_int)]


def _ptr(t: torch.Tensor | np.ndarray) -> int:
    return t.data_ptr() if isinstance(t, torch.Tensor) else t.ctypes.data


# The int8 kernels (every one gives the same bits): "auto" picks the fastest this CPU has.
INT8_KERNELS = {"auto": 0, "avx2": 1, "avxvnni": 2, "avx512vnni": 3}


def int8_kernel(kernel: str = "auto") -> str | None:
    """The int8 kernel the library would use for `kernel` here (None: not supported, or no library)."""
    lib = library()
    if lib is None:
        return None
    got = lib.dfa_int8_kernel(INT8_KERNELS[kernel])
    return next((name for name, code in INT8_KERNELS.items() if code == got and got), None)


def quantize_int8(w: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(in, out) float weights -> (int8 (in, out), float32 scale (out)) with w ~ scale * w8: one
    scale per output column, max |w| / 127 (1 for an all-zero column), rounded to nearest even."""
    w = w.detach().cpu().double().numpy()
    scale = np.abs(w).max(axis=0) / 127
    scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
    w8 = np.clip(np.rint(w / scale.astype(np.float64)), -127, 127).astype(np.int8)
    return np.ascontiguousarray(w8), scale


def _fp16_bits(w: torch.Tensor) -> np.ndarray:
    """(in, out) float weights -> row-major fp16 bit patterns (round to nearest even)."""
    return np.ascontiguousarray(w.detach().cpu().to(torch.float16).numpy().view(np.uint16))


class NativeLoop:
    """The fused WaveRNN's weights in the library's layout; `run` is the sampling loop.
    Safe to call from several threads at once (the weights are read-only)."""

    def __init__(self, lib: ctypes.CDLL, rnn: int, fc: int, classes: int, w1: torch.Tensor, w2: torch.Tensor,
                 wf1: torch.Tensor, wf2: torch.Tensor, w3: torch.Tensor, b3: torch.Tensor, v1rz: torch.Tensor,
                 v1n: torch.Tensor, table: torch.Tensor, precision: str = "fp16", kernel: str | None = None):
        """Weights as `FastWaveRNN` fuses them, (in, out): w1 (rnn + 1, 6 rnn), w2 (rnn, 3 rnn),
        wf1 (rnn + 1, fc), wf2 (fc, fc), w3 (fc, classes); b3 (classes), v1rz (2 rnn), v1n (rnn),
        table (classes) in fp32.

        `precision` "fp16": the matrices are stored in fp16 (round to nearest even) and the
        arithmetic is fp32. "int8": int8 with one scale per output column (`quantize_int8`);
        each step's inputs to a matmul are quantised per fold to 7 bits (a row without negative
        values to 127 steps of max x / 127; any other row to 63 steps each side of max |x| / 63:
        exact on AVX2's 16-bit pair sums) and the products summed exactly in int32, by `kernel` (one of `INT8_KERNELS`; None: the
        environment's DEEPFAKE_AUDIO_INT8_KERNEL, else "auto", VNNI instructions where the CPU
        has them; all give the same bits)."""
        if rnn % 8:
            raise ValueError(f"the native loop needs rnn_dims a multiple of 8, not {rnn}")
        if precision not in ("fp16", "int8"):
            raise ValueError(f"unknown precision {precision!r}: use 'fp16' or 'int8'")
        self.lib, self.rnn, self.fc, self.classes, self.precision = lib, rnn, fc, classes, precision
        vecs = [np.ascontiguousarray(v.detach().cpu().float().numpy()) for v in (b3, v1rz, v1n, table)]
        self.kernel = "fp16"
        if precision == "fp16":
            mats = [_fp16_bits(w) for w in (w1, w2, wf1, wf2, w3)]
            self.handle = lib.dfa_new(rnn, fc, classes, *(_ptr(a) for a in mats + vecs))  # copied by the library
        else:
            kernel = kernel or os.environ.get("DEEPFAKE_AUDIO_INT8_KERNEL", "auto").strip().lower() or "auto"
            if kernel not in INT8_KERNELS:
                raise ValueError(f"unknown int8 kernel {kernel!r}: use one of {', '.join(INT8_KERNELS)}")
            if not lib.dfa_int8_kernel(INT8_KERNELS[kernel]):
                raise ValueError(f"this CPU has no {kernel} int8 kernel")
            quantized = [quantize_int8(w) for w in (w1, w2, wf1, wf2, w3)]
            arrays = [w8 for w8, _ in quantized] + [scale for _, scale in quantized] + vecs
            self.handle = lib.dfa_new8(rnn, fc, classes, INT8_KERNELS[kernel], *(_ptr(a) for a in arrays))
            self.kernel = int8_kernel(kernel) or kernel
        if not self.handle:
            raise MemoryError("out of memory packing the WaveRNN weights")

    def __del__(self) -> None:
        if getattr(self, "handle", None):
            self.lib.dfa_free(self.handle)
            self.handle = None

    def scratch(self, batch: int) -> torch.Tensor:
        """Working memory for `run` on `batch` folds (two periods per fold and the step's vectors)."""
        return torch.empty(self.lib.dfa_scratch_floats(self.handle, batch))

    def run(self, coef: torch.Tensor, rows: torch.Tensor, carry: torch.Tensor, uniform: torch.Tensor,
            classes: torch.Tensor, h1x: torch.Tensor, h2: torch.Tensor, scratch: torch.Tensor, steps: int) -> None:
        """`steps` samples of a batch of B folds, as `_Sampler` with inverse-CDF sampling.

        Step j's period (its `width` inputs that do not depend on the previous sample) is
        coef[:, j] @ rows: coef (B, >= steps, taps) and rows (B, taps, width), contiguous
        float32. carry (B, width): what the previous call's last step added to the period
        after it, updated. uniform (>= steps, B) float32 in [0, 1) and classes (>= steps, B)
        int64 (written) may have any row stride, unit column stride. h1x (B, rnn + 1) =
        [h1 | x] and h2 (B, rnn), contiguous, carried from call to call; scratch from `scratch(B)`.
        """
        self.run_many([(coef, rows, carry, uniform, classes, h1x, h2, scratch)], steps)

    def run_many(self, calls: list[tuple[torch.Tensor, ...]], steps: int) -> None:
        """`run` for several groups of folds at once, each on a thread of its own (started in C).

        `calls`: one (coef, rows, carry, uniform, classes, h1x, h2, scratch) per group, as for
        `run`, with buffers of their own; each group's samples are what `run` gives it alone.
        """
        args = (_RunArgs * len(calls))()
        for a, call in zip(args, calls):
            self._check(*call, steps)
            coef, rows, carry, uniform, classes, h1x, h2, scratch = call
            a.coef, a.ldcf, a.rows, a.taps, a.carry = _ptr(coef), coef.stride(0), _ptr(rows), rows.shape[1], _ptr(carry)
            a.uniform, a.ldu, a.classes, a.ldc = _ptr(uniform), uniform.stride(0), _ptr(classes), classes.stride(0)
            a.h1x, a.h2, a.scratch, a.b, a.steps = _ptr(h1x), _ptr(h2), _ptr(scratch), rows.shape[0], steps
        self.lib.dfa_run_many(self.handle, args, len(calls))

    def _check(self, coef: torch.Tensor, rows: torch.Tensor, carry: torch.Tensor, uniform: torch.Tensor,
               classes: torch.Tensor, h1x: torch.Tensor, h2: torch.Tensor, scratch: torch.Tensor, steps: int) -> None:
        batch, taps = rows.shape[0], rows.shape[1]
        width = 8 * self.rnn + 2 * self.fc
        for t, dtype in ((coef, torch.float32), (rows, torch.float32), (carry, torch.float32),
                         (uniform, torch.float32), (classes, torch.int64)):
            if t.dtype != dtype or t.device.type != "cpu" or t.stride(-1) != 1:
                raise ValueError("native loop: CPU tensors of the right type with unit column stride expected")
        if not (coef.is_contiguous() and rows.is_contiguous() and carry.is_contiguous()
                and coef.shape[0] == batch and coef.shape[1] >= steps and coef.shape[2] == taps
                and rows.shape[2] == width and carry.shape == (batch, width)
                and uniform.shape[0] >= steps and uniform.shape[1] == batch
                and classes.shape[0] >= steps and classes.shape[1] == batch
                and h1x.is_contiguous() and h2.is_contiguous() and h1x.shape == (batch, self.rnn + 1)
                and h2.shape == (batch, self.rnn) and scratch.numel() >= self.lib.dfa_scratch_floats(self.handle, batch)):
            raise ValueError("native loop: buffers of the wrong shape")


def matmul(w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """x (m, k) @ w (k, n) with w rounded to fp16, through the library's kernel (for tests)."""
    lib = library()
    if lib is None:
        raise RuntimeError(f"native library unavailable: {reason()}")
    wb = _fp16_bits(w)
    xc = x.detach().float().contiguous()
    out = torch.empty(x.shape[0], w.shape[1])
    if lib.dfa_matmul(_ptr(wb), w.shape[0], w.shape[1], _ptr(xc), x.shape[0], _ptr(out)) != 0:
        raise MemoryError("out of memory")
    return out


def matmul8(w: torch.Tensor, x: torch.Tensor, kernel: str = "auto") -> torch.Tensor:
    """x (m, k) @ w (k, n) with w quantised by `quantize_int8` and each row of x to 8 bits, through
    the library's int8 kernel `kernel` (for tests). Raises ValueError if this CPU lacks it."""
    lib = library()
    if lib is None:
        raise RuntimeError(f"native library unavailable: {reason()}")
    w8, scale = quantize_int8(w)
    xc = x.detach().float().contiguous()
    out = torch.empty(x.shape[0], w.shape[1])
    code = lib.dfa_matmul8(_ptr(w8), _ptr(scale), w.shape[0], w.shape[1], _ptr(xc), x.shape[0], _ptr(out),
                           INT8_KERNELS[kernel])
    if code == -2:
        raise ValueError(f"this CPU has no {kernel} int8 kernel")
    if code != 0:
        raise MemoryError("out of memory")
    return out
