"""Fast WaveRNN sampling: the same network and checkpoint, reorganised for throughput.

The parity loop (`WaveRNN.sample`) runs every layer as the reference does: eleven small
matmuls and some forty tensor operations per sample, each with its own Python overhead.
Here everything that does not depend on the previous sample is computed before the loop,
and a step is five matmuls and about twenty element-wise operations in a TorchScript loop
over preallocated buffers:

* I, the GRUs' input weights and the aux columns of fc1/fc2 are linear in the upsampled
  mel and the aux features. The aux features are constant over a frame and the mel's
  upsampling is one shift-invariant kernel, so a chunk's per-step inputs are a small
  batched matmul of a few frames' projected mels and aux rows (`_Layout`, `_run_wave`).
* The previous sample x enters only through I, so its effect is x times fixed vectors,
  carried as one more input row of the hidden-state matmuls.
* h1 feeds rnn1 (next step) and rnn2 (this step): one matmul; h2 feeds rnn2 (next step):
  one matmul; fc1 runs once on [h1 + h2 | x]. The first two accumulate straight into the
  per-step buffer, laid out so that each writes one contiguous strided span.
* Sampling is by inverse CDF, one uniform number per sample: the class is drawn with
  probability softmax(logits), as `Categorical` does. `sampling="gumbel"` instead takes
  argmax(logits - log E) with the exponentials E that the parity loop's `multinomial`
  draws; given the same generator words it then picks the parity loop's classes
  whenever the logits agree to rounding (tests/test_vocoder_fast.py checks that it
  reproduces the parity samples exactly).
* Matmuls: fp32; fp16 weights with fp32 arithmetic (the CPU default); or int8 weights
  (one scale per output) with each step's inputs quantised per fold. On an x86-64 CPU
  with AVX2 the fp16 and int8 loops run in C (vocoder/native: each weight, once loaded,
  serves every fold of the group; fp16 about 1.5 times the TorchScript loop's speed, int8
  with exact integer sums, VNNI instructions where the CPU has them), else in TorchScript
  with fbgemm's fp16 matmul (several times faster than MKL's fp32 at these shapes on AMD
  CPUs) or fbgemm's dynamic int8 one. In the C loop and with fp16 the folds are shared
  out between threads, which meet once per chunk of steps.

Folds are balanced (a sentence is cut into equal folds, none mostly padding), and an
optional head (short folds run first) gets the first audio out early. `stream` yields
the audio in order as it becomes final; `generate` returns it at once and equals the
joined stream for the same arguments.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from deepfake_audio_core.modes import arithmetic
from deepfake_audio_core.emphasis import de_emphasis_part
from deepfake_audio_core.threads import cpu_threads, intra_op_threads, worker_pool
from vocoder.hparams import hparams as hp
from vocoder import native
from vocoder.audio import decode_mu_law
from vocoder.model import WaveRNN

# fbgemm's fp16 ops are deprecated but still the way in.
warnings.filterwarnings("ignore", message=r"fbgemm_\w+ is deprecated")

# Steps per call of the scripted loop: enough to hide the per-chunk work, few enough that
# the chunk's buffers stay in cache (and under one frame, see `_run_wave`). The native loop
# makes each step's inputs when it needs them, so its chunks can be longer.
CHUNK_STEPS = 64
NATIVE_CHUNK_STEPS = 192
# Streaming: the first yield comes once this many samples of audio are final, later ones
# in pieces of at least `STREAM_MIN_SAMPLES`.
STREAM_FIRST_SAMPLES = 800
STREAM_MIN_SAMPLES = 1600


@dataclass(frozen=True)
class Wave:
    """Folds generated together in lockstep: fold b covers samples [starts[b], starts[b] + length)."""

    starts: tuple[int, ...]
    length: int


@dataclass(frozen=True)
class FoldPlan:
    """How one utterance of `total` samples is cut into folds and in which order they run.

    Consecutive folds overlap by `overlap` samples and are cross-faded as in the
    reference (over the overlap, overlap/2 samples of silence then an equal-power fade);
    unlike the reference, the first fold does not fade in nor the last fade out.
    """

    total: int
    overlap: int
    waves: tuple[Wave, ...]

    @property
    def folds(self) -> list[tuple[int, int]]:
        return [(s, w.length) for w in self.waves for s in w.starts]

    @property
    def steps(self) -> int:
        """Lockstep steps over all waves (the loop's iteration count)."""
        return sum(w.length for w in self.waves)


def _even_folds(start: int, length: int, target: int, overlap: int, multiple: int = 1) -> Wave:
    """Equal folds of about `target` (+ 2 overlap) samples covering [start, start + length).

    With `multiple` > 1 the number of folds is rounded up to a multiple of it (when there
    is more than one fold): the folds are shared out between that many threads, and a
    thread with one fold fewer than the others would wait for them at every chunk.
    """
    n = max(1, math.ceil((length - overlap) / (target + overlap)))
    if n > 1 and multiple > 1:
        n = max(n, min(math.ceil(n / multiple) * multiple, (length - overlap) // (2 * overlap)))
    if n == 1:
        return Wave((start,), length)
    body = math.ceil((length - overlap) / n) - overlap
    return Wave(tuple(start + i * (body + overlap) for i in range(n)), body + 2 * overlap)


def plan_folds(total: int, target: int = hp.voc_target, overlap: int = hp.voc_overlap,
               head: int = 0, head_target: int = 1600, multiple: int = 1) -> FoldPlan:
    """Cut `total` samples into folds of about `target` (+ 2 overlap) samples.

    Unlike the reference's folding, the folds are made equal so that none is mostly
    padding, and their number is a multiple of `multiple` (the threads sharing them). With
    `head` > 0, the first `head` samples are cut into folds of about `head_target` and
    generated first, as their own wave: a small batch of short folds, so the start of the
    audio is final long before the rest.
    """
    waves = []
    begin = 0
    if head > 0 and total - head > target + 2 * overlap:
        first = _even_folds(0, head, head_target, overlap)
        if len(first.starts) == 1:  # a lone head fold still needs the overlap with the next one
            first = Wave((0,), max(head, 2 * overlap + 1))
        waves.append(first)
        begin = first.starts[-1] + first.length - overlap  # the next fold overlaps the head's last
    waves.append(_even_folds(begin, total - begin, target, overlap, multiple))
    return FoldPlan(total, overlap, tuple(waves))


class _Layout:
    """Column layout of the per-step buffer: one period of `width` columns per step.

    Segments of step t's period, in order: rz1 (rnn1's r and z pre-activations), gh1n
    (rnn1's hidden n part), pn (rnn1's input n part), s (fc2's aux part), f1 (fc1's
    conditioning part), gh2n (rnn2's hidden n part), rz2 (rnn2's r and z), gi2n (rnn2's
    input n part). Before the loop a period holds everything that does not depend on the
    previous sample; the h1 matmul of step t then adds into [rz2, gi2n] of period t and
    [rz1, gh1n] of period t + 1, which follow each other in memory, and the h2 matmul into
    [gh2n, rz2] of period t + 1: each is one strided matmul, no copies.
    """

    def __init__(self, rnn: int, fc: int):
        self.rnn, self.fc = rnn, fc
        self.rz1, self.gh1n, self.pn, self.s = 0, 2 * rnn, 3 * rnn, 4 * rnn
        self.f1, self.gh2n = 4 * rnn + fc, 4 * rnn + 2 * fc
        self.rz2, self.gi2n = 5 * rnn + 2 * fc, 7 * rnn + 2 * fc
        self.width = 8 * rnn + 2 * fc

    def segments(self) -> dict[str, slice]:
        r, f = self.rnn, self.fc
        sizes = dict(rz1=2 * r, gh1n=r, pn=r, s=f, f1=f, gh2n=r, rz2=2 * r, gi2n=r)
        return {k: slice(getattr(self, k), getattr(self, k) + n) for k, n in sizes.items()}


class _MatmulFp32(nn.Module):
    """x @ w with w (in, out) float32."""

    def __init__(self, w: torch.Tensor):
        super().__init__()
        self.w = w

    @torch.jit.export
    def accumulate(self, out: torch.Tensor, x: torch.Tensor) -> None:
        out.addmm_(x, self.w)

    @torch.jit.export
    def affine(self, base: torch.Tensor, x: torch.Tensor, out: torch.Tensor) -> None:
        torch.addmm(base, x, self.w, out=out)


class _MatmulFp16(nn.Module):
    """fbgemm's fp16-weight matmul: weights rounded to fp16, products and sums in fp32. One thread."""

    def __init__(self, w: torch.Tensor):
        super().__init__()
        self.packed = torch.fbgemm_pack_gemm_matrix_fp16(w.T.contiguous())
        self.zero = torch.zeros(w.shape[1])

    @torch.jit.export
    def accumulate(self, out: torch.Tensor, x: torch.Tensor) -> None:
        out.add_(torch.fbgemm_linear_fp16_weight(x, self.packed, self.zero))

    @torch.jit.export
    def affine(self, base: torch.Tensor, x: torch.Tensor, out: torch.Tensor) -> None:
        torch.add(base, torch.fbgemm_linear_fp16_weight(x, self.packed, self.zero), out=out)


class _MatmulInt8(nn.Module):
    """fbgemm's dynamic int8 matmul: int8 weights (one scale per output), activations quantised per call."""

    def __init__(self, w: torch.Tensor):
        super().__init__()
        wt = w.T.contiguous()
        scales = (wt.abs().amax(dim=1) / 127).clamp_min(1e-12).double()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # quantized tensor creation is deprecated but still the way in
            q = torch.quantize_per_channel(wt, scales, torch.zeros(len(wt), dtype=torch.long), 0, torch.qint8)
            self.packed = torch.ops.quantized.linear_prepack(q, None)

    @torch.jit.export
    def accumulate(self, out: torch.Tensor, x: torch.Tensor) -> None:
        out.add_(torch.ops.quantized.linear_dynamic(x, self.packed, True))

    @torch.jit.export
    def affine(self, base: torch.Tensor, x: torch.Tensor, out: torch.Tensor) -> None:
        torch.add(base, torch.ops.quantized.linear_dynamic(x, self.packed, True), out=out)


MATMULS = {"fp32": _MatmulFp32, "fp16": _MatmulFp16, "int8": _MatmulInt8}


class _Sampler(nn.Module):
    """The per-sample loop over preallocated buffers (scripted: no Python between steps)."""

    def __init__(self, rnn: int, fc: int, matmul: type, w1: torch.Tensor, w2: torch.Tensor, wf1: torch.Tensor,
                 wf2: torch.Tensor, w3: torch.Tensor, b3: torch.Tensor, v1rz: torch.Tensor, v1n: torch.Tensor,
                 table: torch.Tensor):
        super().__init__()
        self.rnn, self.fc = rnn, fc
        self.mm1, self.mm2, self.mmf1, self.mmf2, self.mm3 = (matmul(w) for w in (w1, w2, wf1, wf2, w3))
        self.b3, self.v1rz, self.v1n, self.table = b3, v1rz, v1n, table

    def forward(self, acc: torch.Tensor, noise: torch.Tensor, uniform: torch.Tensor, classes: torch.Tensor,
                h1x: torch.Tensor, h2z: torch.Tensor, sx: torch.Tensor, n1: torch.Tensor, n2: torch.Tensor,
                z1: torch.Tensor, z2: torch.Tensor, logits: torch.Tensor, cdf: torch.Tensor, u: torch.Tensor,
                steps: int, gumbel: bool) -> None:
        """Run `steps` samples over `acc` (B, (steps + 1) * width), laid out as `_Layout` says.

        h1x = [h1 | x] and h2z = [h2 | 0], (B, R + 1). With `gumbel`, class = argmax(logits +
        noise[j]) where noise[j] = fc3 bias - log E, E ~ Exp(1). Else by inverse CDF: the first
        class whose cumulative probability exceeds uniform[j] (B, 1) times the total.
        """
        rnn, fc = self.rnn, self.fc
        width = 8 * rnn + 2 * fc
        x = h1x[:, rnn:rnn + 1]
        h1 = h1x[:, :rnn]
        h2 = h2z[:, :rnn]
        for j in range(steps):
            cur = j * width
            rz1 = acc[:, cur:cur + 2 * rnn]
            rz1.addcmul_(x, self.v1rz)
            rz1.sigmoid_()
            torch.addcmul(acc[:, cur + 3 * rnn:cur + 4 * rnn], x, self.v1n, out=n1)
            n1.addcmul_(rz1[:, :rnn], acc[:, cur + 2 * rnn:cur + 3 * rnn])
            n1.tanh_()
            torch.lerp(n1, h1, rz1[:, rnn:], out=h1)
            rz2 = cur + 5 * rnn + 2 * fc
            self.mm1.accumulate(acc[:, rz2:rz2 + 6 * rnn], h1x)
            acc[:, rz2:rz2 + 2 * rnn].sigmoid_()
            torch.addcmul(acc[:, rz2 + 2 * rnn:rz2 + 3 * rnn], acc[:, rz2:rz2 + rnn], acc[:, rz2 - rnn:rz2], out=n2)
            n2.tanh_()
            torch.lerp(n2, h2, acc[:, rz2 + rnn:rz2 + 2 * rnn], out=h2)
            self.mm2.accumulate(acc[:, rz2 + width - rnn:rz2 + width + 2 * rnn], h2z)
            torch.add(h1x, h2z, out=sx)
            self.mmf1.affine(acc[:, cur + 4 * rnn + fc:cur + 4 * rnn + 2 * fc], sx, z1)
            z1.relu_()
            self.mmf2.affine(acc[:, cur + 4 * rnn:cur + 4 * rnn + fc], z1, z2)
            z2.relu_()
            if gumbel:
                self.mm3.affine(noise[j], z2, logits)
                torch.argmax(logits, 1, out=classes[j])
            else:
                self.mm3.affine(self.b3, z2, logits)
                torch.cumsum(torch.softmax(logits, 1), 1, out=cdf)
                torch.mul(uniform[j], cdf[:, -1:], out=u)
                torch.searchsorted(cdf, u, out=classes[j].unsqueeze(1))
            torch.index_select(self.table, 0, classes[j], out=h1x[:, rnn])


def _inference(fn: Callable, args: tuple) -> None:
    with torch.inference_mode():  # thread-local: the worker needs it too
        fn(*args)


def default_precision(device: torch.device | str) -> str:
    """fp16 weights through fbgemm on CPUs that have it (its small-batch matmuls are several times
    faster than MKL's fp32 ones on AMD CPUs), else fp32."""
    if torch.device(device).type == "cpu" and torch.backends.quantized.engine in ("x86", "fbgemm"):
        return "fp16"
    return "fp32"


def mode_precision(mode: str, device: torch.device | str, rnn: int) -> str:
    """The recurrent matmuls' precision for a non-parity `mode` (`deepfake_audio_core.modes`) of
    a WaveRNN with `rnn` units on `device`: on a CPU "int8" ("fast") or "fp16" as named (int8
    in the C loop has exact integer sums: the same audio for a seed on every x86-64 CPU), on
    a GPU fp32 (the reduced precisions are CPU paths). A CPU with neither the C loop nor
    fbgemm gets fp32 for "fast"."""
    kind = arithmetic(mode)
    if kind == "parity":
        raise ValueError("the parity mode runs the reference loop, not FastWaveRNN")
    if torch.device(device).type != "cpu":
        return "fp32"
    if mode == "fast" and default_precision(device) == "fp32" and not (rnn % 8 == 0 and native.library() is not None):
        return "fp32"
    return kind


class _Group:
    """Buffers of the folds one thread runs: for the native loop (`loop`) its state and
    scratch, else the scripted loop's per-chunk buffer and state."""

    def __init__(self, folds: slice, chunk: int, lay: _Layout, n_classes: int, dev: torch.device,
                 loop: native.NativeLoop | None = None):
        batch = folds.stop - folds.start
        self.folds = folds
        self.carry = torch.zeros(batch, lay.width, device=dev)
        self.classes = torch.empty(chunk, batch, dtype=torch.long, device=dev)
        r, f = lay.rnn, lay.fc
        self.native = loop is not None
        if loop is not None:
            self.h1x, self.h2 = torch.zeros(batch, r + 1), torch.zeros(batch, r)
            self.scratch = loop.scratch(batch)
            return
        self.acc = torch.empty(batch, (chunk + 1) * lay.width, device=dev)
        self.periods = self.acc.view(batch, chunk + 1, lay.width)
        self.state = [torch.zeros(batch, r + 1, device=dev) for _ in range(3)]  # h1x, h2z, sx
        self.work = [torch.empty(batch, k, device=dev) for k in (r, r, f, f, n_classes, n_classes, 1)]


class FastWaveRNN:
    """A WaveRNN's weights fused for fast sampling. Holds no state between calls: one
    instance serves several threads.

    `model` is a loaded `WaveRNN` in eval mode. Its upsampling network is used as is;
    the other weights are copied, fused, when this is built (after any change to the
    model, build a new one).
    `precision` is that of the recurrent matmuls: "fp32"; "fp16" (weights stored in
    fp16, arithmetic in fp32: fbgemm, CPU only); or "int8" (fbgemm's dynamic
    quantisation, CPU only: fastest, slightly different sound, see bench/RESULTS.md).
    None picks `default_precision` for the model's device.
    """

    def __init__(self, model: WaveRNN, precision: str | None = None):
        if model.training:
            raise RuntimeError("FastWaveRNN needs a model in eval mode: call model.eval() first")
        self.device = dev = next(model.parameters()).device
        self.hop = model.hop_length
        self.pad = model.pad
        self.n_classes = model.n_classes
        self.upsample = model.upsample
        self.rnn = rnn = model.rnn_dims
        self.fc = fc = model.fc1.out_features
        self.aux = aux = model.aux_dims
        self.layout = lay = _Layout(rnn, fc)
        d = lambda t: t.detach().to(torch.float64).cpu()  # noqa: E731  (fuse in float64, store float32)
        w_i, b_i = d(model.I.weight), d(model.I.bias)
        w_x, w_mel, w_a1 = w_i[:, 0], w_i[:, 1:-aux], w_i[:, -aux:]
        wih1, whh1, bih1, bhh1 = (d(t) for t in (model.rnn1.weight_ih_l0, model.rnn1.weight_hh_l0,
                                                 model.rnn1.bias_ih_l0, model.rnn1.bias_hh_l0))
        wih2, whh2, bih2, bhh2 = (d(t) for t in (model.rnn2.weight_ih_l0, model.rnn2.weight_hh_l0,
                                                 model.rnn2.bias_ih_l0, model.rnn2.bias_hh_l0))
        wih2_u, wih2_a = wih2[:, :rnn], wih2[:, rnn:]
        wf1_u, wf1_a, bf1 = d(model.fc1.weight)[:, :rnn], d(model.fc1.weight)[:, rnn:], d(model.fc1.bias)
        wf2_z, wf2_a, bf2 = d(model.fc2.weight)[:, :fc], d(model.fc2.weight)[:, fc:], d(model.fc2.bias)
        rz, n = slice(0, 2 * rnn), slice(2 * rnn, 3 * rnn)
        seg = lay.segments()
        # u0 = I's output without x: W_mel mel + W_a1 a1 + b_I. Rows of `proj` map u0 into each
        # segment of a period; `aux_proj` the aux features a2, a3, a4; `bias` the constants.
        proj = torch.zeros(lay.width, rnn, dtype=torch.float64)
        aux_proj = torch.zeros(lay.width, 3 * aux, dtype=torch.float64)
        bias = torch.zeros(lay.width, dtype=torch.float64)
        for name, u_rows, a_rows, a_slot, b in [
                ("rz1", wih1[rz], None, 0, bih1[rz] + bhh1[rz]), ("gh1n", None, None, 0, bhh1[n]),
                ("pn", wih1[n], None, 0, bih1[n]), ("s", None, wf2_a, 2, bf2), ("f1", wf1_u, wf1_a, 1, bf1),
                ("gh2n", None, None, 0, bhh2[n]), ("rz2", wih2_u[rz], wih2_a[rz], 0, bih2[rz] + bhh2[rz]),
                ("gi2n", wih2_u[n], wih2_a[n], 0, bih2[n])]:
            if u_rows is not None:
                proj[seg[name]] = u_rows
            if a_rows is not None:
                aux_proj[seg[name], a_slot * aux:(a_slot + 1) * aux] = a_rows
            bias[seg[name]] = b
        self.mel_proj = (proj @ w_mel).T.contiguous().float().to(dev)  # (80, width)
        self._proj, self._aux_proj, self._bias, self._w_a1, self._b_i = proj, aux_proj, bias, w_a1, b_i
        # Recurrent matmuls, (in, out). x rides along as the last input row of h1x = [h1 | x];
        # h2z = [h2 | 0] and sx = h1x + h2z = [h1 + h2 | x] likewise.
        v = proj @ w_x  # x's effect through I, per segment
        x_row = lambda *names: torch.cat([v[seg[k]] for k in names])  # noqa: E731
        w1 = torch.cat([wih2_u[rz], wih2_u[n], whh1[rz], whh1[n]]).T  # -> [rz2, gi2n | rz1, gh1n]
        w1 = torch.cat([w1, torch.cat([x_row("rz2", "gi2n"), torch.zeros(3 * rnn, dtype=torch.float64)])[None]])
        w2 = torch.cat([torch.cat([whh2[n], whh2[rz]]).T, torch.zeros(1, 3 * rnn, dtype=torch.float64)])
        wf1 = torch.cat([wf1_u.T, x_row("f1")[None]])
        f32 = lambda t: t.contiguous().float().to(dev)  # noqa: E731
        self.w1, self.w2, self.wf1, self.wf2 = f32(w1), f32(w2), f32(wf1), f32(wf2_z.T)
        self.w3, self.b3 = f32(d(model.fc3.weight).T), f32(d(model.fc3.bias))
        self.v1rz, self.v1n = f32(v[seg["rz1"]]), f32(v[seg["pn"]])
        self.table = torch.tensor([2 * c / (self.n_classes - 1.0) - 1.0 for c in range(self.n_classes)],
                                  dtype=torch.float32, device=dev)
        self.kernel, self.kernel_start = self._upsample_kernel()
        self.precision = precision = precision or default_precision(dev)
        if precision not in ("fp32", "fp16", "int8"):
            raise ValueError(f"unknown precision {precision!r}: use 'fp32', 'fp16' or 'int8'")
        if precision != "fp32" and dev.type != "cpu":
            raise ValueError(f"the {precision} vocoder path runs on the CPU only")
        sampler = _Sampler(rnn, fc, MATMULS[precision], self.w1, self.w2, self.wf1, self.wf2, self.w3, self.b3,
                           self.v1rz, self.v1n, self.table)
        try:
            self.sampler = torch.jit.script(sampler)
        except Exception:  # TorchScript is optional: eager gives the same numbers, slower
            self.sampler = sampler
        # The C loop (vocoder/native) runs the fp16 and int8 paths where this machine can build and
        # run it; its int8 matmuls are its own (VNNI where the CPU has it), not fbgemm's.
        self.native: native.NativeLoop | None = None
        lib = native.library() if precision in ("fp16", "int8") and rnn % 8 == 0 else None
        if lib is not None:
            self.native = native.NativeLoop(lib, rnn, fc, self.n_classes, self.w1, self.w2[:rnn], self.wf1,
                                            self.wf2, self.w3, self.b3, self.v1rz, self.v1n, self.table,
                                            precision=precision)

    def threads(self) -> int:
        """Threads that share out the folds of a wave. The C loop and TorchScript's fp16 loop
        (fbgemm's fp16 matmul) run on one thread each, so each intra-op thread runs its own
        folds; MKL's fp32 and fbgemm's int8 matmuls split every call between the intra-op
        threads instead."""
        return cpu_threads() if self.precision == "fp16" or self.native is not None else 1

    def _upsample_kernel(self) -> tuple[torch.Tensor, int]:
        """The upsampling network's mel path as one kernel: frame f contributes kernel[k] * mel[f]
        to the (uncropped) sample hop * f + kernel_start + k. Its stages are linear, shared by all
        channels and shift-invariant, so an impulse gives it."""
        frames = 2 * len(self.upsample.up_layers) + 5
        impulse = torch.zeros(1, 1, 1, frames, device=self.device)
        impulse[..., frames // 2] = 1
        x = impulse
        with torch.inference_mode():
            for layer in self.upsample.up_layers:
                x = layer(x)
        response = x[0, 0, 0].cpu()
        nonzero = torch.nonzero(response).flatten()
        lo, hi = int(nonzero[0]), int(nonzero[-1]) + 1
        return response[lo:hi].clone(), lo - self.hop * (frames // 2)

    def conditioning(self, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(1, 80, T) mel in [-1, 1] -> per padded frame, its mel projected into a period's columns
        (T + 2 pad + 1, width; last row zero), and per frame the aux and constant part (T + 1, width;
        last row: the zero padding beyond the end)."""
        m = F.pad(mel.to(self.device), (self.pad, self.pad))
        aux = self.upsample.resnet(m)[0].T.to(torch.float64).cpu()  # (T, 128): constant over each frame
        a = torch.cat([aux, aux.new_zeros(1, aux.shape[1])])
        u0 = a[:, :self.aux] @ self._w_a1.T + self._b_i
        frame = (u0 @ self._proj.T + a[:, self.aux:] @ self._aux_proj.T + self._bias).float().to(self.device)
        mel_frames = m[0].T @ self.mel_proj
        return torch.cat([mel_frames, mel_frames.new_zeros(1, mel_frames.shape[1])]), frame

    @torch.inference_mode()
    def stream(self, mel: torch.Tensor, plan: FoldPlan | None = None, generator: torch.Generator | None = None,
               batched: bool = True, target: int = hp.voc_target, overlap: int = hp.voc_overlap, head: int = 0,
               first_samples: int = STREAM_FIRST_SAMPLES, min_samples: int = STREAM_MIN_SAMPLES,
               sampling: str = "cdf", ending: bool = True,
               progress: Callable[[int, int], None] | None = None) -> Iterator[np.ndarray]:
        """Yield the waveform of a (1, 80, T) mel (scaled to [-1, 1]) in order, as it becomes final.

        Chunks are float64 at 16 kHz and together make 200 * (T - 1) samples, post-processed
        as in `WaveRNN.generate` (mu-law decoded, de-emphasised, last 4000 faded out). With
        `ending` False the mel is the start of a longer utterance: all 200 * T samples come
        out and none is faded.
        The first chunk has at least `first_samples` samples, the others at least
        `min_samples` except the last. `sampling` "cdf" (inverse CDF, one uniform number per
        sample) or "gumbel" (argmax of logits - log E: the parity loop's generator draws,
        three times slower to draw). The folds are
        `plan`, else `plan_folds(200 * T, target, overlap, head)` with as many folds as there are
        threads or a multiple, or one fold when not `batched`.
        """
        frames = mel.shape[-1]
        total = frames * self.hop
        wave_len = (frames - 1) * self.hop if ending else total
        if plan is None:
            whole = FoldPlan(total, overlap, (Wave((0,), total),))
            plan = plan_folds(total, target, overlap, head, multiple=self.threads()) if batched else whole
        if wave_len <= 0:
            return
        mel_frames, frame = self.conditioning(mel)
        assembler = _Assembler(plan, wave_len, self.n_classes, ending)
        done_steps, all_steps = 0, plan.steps
        for w, wave in enumerate(plan.waves):
            for first, classes in self._run_wave(wave, mel_frames, frame, generator, sampling):
                assembler.add(w, first, classes.cpu().numpy())
                done_steps += classes.shape[0]
                if progress is not None:
                    progress(done_steps, all_steps)
                chunk = assembler.take(min_samples if assembler.emitted else first_samples)
                if chunk is not None:
                    yield chunk
        chunk = assembler.take(0)
        if chunk is not None:
            yield chunk

    def generate(self, mel: torch.Tensor, **kwargs) -> np.ndarray:
        """The whole waveform at once: float64 (200 * (T - 1),). Same arguments as `stream`."""
        kwargs["first_samples"] = kwargs["min_samples"] = 1 << 62
        chunks = list(self.stream(mel, **kwargs))
        return np.concatenate(chunks) if chunks else np.zeros(0)

    def _run_wave(self, wave: Wave, mel_frames: torch.Tensor, frame: torch.Tensor,
                  generator: torch.Generator | None, sampling: str = "cdf") -> Iterator[tuple[int, torch.Tensor]]:
        """Generate one wave; yield (first step, classes (steps, B) int64) after each chunk.

        On the CPU with fp16 matmuls the folds are split between threads (one per intra-op
        thread), each running its own loop: they meet once per chunk, not in every matmul.
        """
        lay, dev, hop = self.layout, self.device, self.hop
        batch, length = len(wave.starts), wave.length
        frames = frame.shape[0] - 1
        total = frames * hop
        gumbel = sampling == "gumbel"
        loop = None if gumbel else self.native  # the native loop samples by inverse CDF only
        chunk = min(NATIVE_CHUNK_STEPS if loop else CHUNK_STEPS, length, hop - 1)  # at most two frames
        threads = self.threads()
        bounds = np.linspace(0, batch, min(threads, batch) + 1).round().astype(int)
        groups = [_Group(slice(a, b), chunk, lay, self.n_classes, dev, loop) for a, b in zip(bounds[:-1], bounds[1:])]
        noise = torch.empty(chunk, batch, self.n_classes if gumbel else 1, device=dev)
        # Mel part of the prefill: sample n gets kernel[u - hop * f - start] * mel_frames[f] summed
        # over the few padded frames f near it (u = n + indent); frame part: frame[n // hop].
        kernel = torch.cat([self.kernel.to(dev), self.kernel.new_zeros(1, device=dev)])
        taps = math.ceil((chunk + len(self.kernel)) / hop) + 1
        starts = torch.tensor(wave.starts, device=dev)[:, None]
        t = torch.arange(chunk + 1, device=dev)
        zero_frame = mel_frames.shape[0] - 1
        for first in range(0, length, chunk):
            # The groups' threads stand in for the intra-op threads (see deepfake_audio_core.threads).
            with intra_op_threads(1 if len(groups) > 1 else 0):
                steps = min(chunk, length - first)
                n = starts + first + t  # (B, chunk + 1)
                valid = n < total
                u = n + self.upsample.indent
                f_lo = torch.div(u[:, :1] - self.kernel_start - len(self.kernel) + 1, hop, rounding_mode="floor")
                f = f_lo + torch.arange(taps, device=dev)  # (B, taps) padded frame indices
                k = u[:, :, None] - hop * f[:, None, :] - self.kernel_start  # (B, chunk + 1, taps)
                inside = (k >= 0) & (k < len(self.kernel)) & valid[:, :, None]
                weights = kernel[torch.where(inside, k, len(self.kernel))]
                f = torch.where((f >= 0) & (f < zero_frame), f, zero_frame)
                q = torch.where(valid, torch.div(n, hop, rounding_mode="floor"), frames)
                q0, q1 = q[:, :1], q[:, -1:]
                x = torch.cat([weights, (q == q0)[:, :, None].float(), ((q == q1) & (q1 != q0))[:, :, None].float()], 2)
                y = torch.cat([mel_frames[f], frame[q0], frame[q1]], 1)  # (B, taps + 2, width)
                if gumbel:
                    noise.exponential_(generator=generator)  # (chunk, batch, classes): the parity loop's order
                    torch.sub(self.b3, noise.log_(), out=noise)
                else:
                    noise.uniform_(generator=generator)
                # Each group runs its steps on a thread of its own: the native library starts
                # them itself; the scripted loop releases the GIL, so plain threads run it.
                if loop is not None:  # the library starts a thread per group itself
                    loop.run_many([(x[g.folds], y[g.folds], g.carry, noise[:, g.folds, 0], g.classes, g.h1x, g.h2,
                                    g.scratch) for g in groups], steps)
                else:
                    jobs = [(self._run_group, (g, x, y, noise, steps, gumbel)) for g in groups]
                    futures = [worker_pool().submit(_inference, fn, args) for fn, args in jobs[1:]]
                    _inference(*jobs[0])
                    for future in futures:
                        future.result()
            yield first, torch.cat([g.classes[:steps] for g in groups], dim=1)

    def _run_group(self, g: _Group, x: torch.Tensor, y: torch.Tensor, noise: torch.Tensor, steps: int,
                   gumbel: bool) -> None:
        """One chunk of one group's folds: `steps` steps of the loop over its per-step inputs
        x @ y (x (B, chunk + 1, taps), y (B, taps, width)) plus what the last chunk's final step
        carried over. The native loop makes each step's inputs itself, as it needs them."""
        if g.native:
            self.native.run(x[g.folds], y[g.folds], g.carry, noise[:, g.folds, 0], g.classes, g.h1x, g.h2,
                            g.scratch, steps)
            return
        chunk = g.periods.shape[1] - 1
        torch.bmm(x[g.folds], y[g.folds], out=g.periods)
        g.periods[:, 0] += g.carry
        g.periods[:, chunk] = 0
        self.sampler(g.acc, noise[:, g.folds], noise[:, g.folds], g.classes, *g.state, *g.work, steps, gumbel)
        g.carry.copy_(g.periods[:, chunk])


class _Assembler:
    """Overlap-adds fold samples as they arrive and releases the finished prefix, post-processed."""

    def __init__(self, plan: FoldPlan, wave_len: int, n_classes: int, ending: bool = True):
        self.plan, self.wave_len, self.n_classes = plan, wave_len, n_classes
        end = max(s + n for s, n in plan.folds)
        self.mixed = np.zeros(max(end, wave_len), dtype=np.float64)
        self.done = [[0] * len(w.starts) for w in plan.waves]
        self.emitted = 0
        self.state = np.zeros(1)  # de-emphasis filter state
        overlap = plan.overlap
        silence = overlap // 2
        t = np.linspace(-1, 1, overlap - silence, dtype=np.float64)
        self.fade_in = np.concatenate([np.zeros(silence), np.sqrt(0.5 * (1 + t))])
        self.fade_out = np.concatenate([np.sqrt(0.5 * (1 - t)), np.zeros(silence)])
        fade = min(hp.fade_out_samples, wave_len) if ending else 0
        self.final_fade = np.linspace(1, 0, fade)

    def add(self, wave: int, first: int, classes: np.ndarray) -> None:
        """Classes (steps, B) of wave `wave`, steps first .. first + steps - 1."""
        w = self.plan.waves[wave]
        steps = classes.shape[0]
        # Class -> sample in float32 arithmetic, as the parity loop does.
        y = (np.float32(2) * classes.T.astype(np.float32) / np.float32(self.n_classes - 1) - np.float32(1))
        y = y.astype(np.float64)  # (B, steps)
        ov = self.plan.overlap
        pos = np.arange(first, first + steps)
        head, tail = pos < ov, pos >= w.length - ov
        last_wave = wave == len(self.plan.waves) - 1
        for b, start in enumerate(w.starts):
            # Folds fade into each other; the audio's own start and end are not faded.
            if head.any() and (wave, b) != (0, 0):
                y[b, head] *= self.fade_in[pos[head]]
            if tail.any() and not (last_wave and b == len(w.starts) - 1):
                y[b, tail] *= self.fade_out[pos[tail] - (w.length - ov)]
            self.mixed[start + first:start + first + steps] += y[b]
            self.done[wave][b] = first + steps

    def ready(self) -> int:
        """Samples from the start that no unfinished fold will still add to."""
        ready = self.wave_len
        for w, done in zip(self.plan.waves, self.done):
            for start, d in zip(w.starts, done):
                if d < w.length:
                    ready = min(ready, start + d)
        return ready

    def take(self, min_samples: int) -> np.ndarray | None:
        end = self.ready()
        if end - self.emitted < max(min_samples, 1) and not (end == self.wave_len and end > self.emitted):
            return None
        y = decode_mu_law(self.mixed[self.emitted:end], self.n_classes, False)
        if hp.preemphasize:
            y, self.state = de_emphasis_part(y, hp.preemphasis, self.state)
        fade_start = self.wave_len - len(self.final_fade)
        if end > fade_start:
            lo = max(self.emitted, fade_start)
            y[lo - self.emitted:] *= self.final_fade[lo - fade_start:end - fade_start]
        self.emitted = end
        return y
