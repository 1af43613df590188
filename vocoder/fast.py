"""Fast WaveRNN sampling: the same network and checkpoint, reorganised for throughput.

The parity loop (`WaveRNN.sample`) runs every layer as the reference does, eleven small
matmuls and some forty tensor operations per sample. Here all that does not depend on
the previous sample is computed ahead of the loop in large matmuls, and each step is
two fused matmuls on the hidden states, fc2, fc3 and fifteen in-place element-wise
operations, run by a TorchScript loop over preallocated buffers:

* The input layer I, the GRUs' input weights and fc1/fc2's aux columns are linear in
  the upsampled mel and the aux features, so they collapse into one (80 -> 3584) matmul
  per sample plus a per-frame table (the aux features are constant over a frame).
* The previous sample x enters only through I, so its effect is x times fixed vectors.
* h1 feeds rnn1 (next step), rnn2 and fc1 (this step); h2 feeds fc1 and rnn2 (next
  step). One matmul each, accumulating into a per-step buffer whose layout makes each
  matmul's output one contiguous span (see `_Layout`).
* Sampling is Gumbel-max, argmax(logits - log E) with E ~ Exp(1): the class is drawn
  with probability softmax(logits), as `Categorical(softmax(logits))` does. With E from
  the same generator words as the parity loop's `multinomial`, both choose the same
  class whenever their logits agree to rounding.

The output therefore equals the parity loop's up to float rounding in the logits: the
sampled sequences agree until a near-tie flips one class, then the trajectories part
while keeping the same distribution (tests/test_vocoder_fast.py checks this).

Folds are balanced (each sentence is cut into equal folds, no zero padding) and an
optional head (a few short folds run first) gets the first audio out early when
streaming. `stream` yields the finished audio as it becomes final; `generate` returns
it at once and is equal to joining what `stream` yields for the same arguments.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from scipy import signal
from torch import nn

from vocoder import hparams as hp
from vocoder.audio import decode_mu_law
from vocoder.model import WaveRNN

# Steps run per call of the scripted loop: large enough to hide the call's cost, small
# enough that the per-step buffers stay in cache.
CHUNK_STEPS = 64
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


def _even_folds(start: int, length: int, target: int, overlap: int) -> Wave:
    """Equal folds of about `target` (+ 2 overlap) samples covering [start, start + length)."""
    n = max(1, math.ceil((length - overlap) / (target + overlap)))
    if n == 1:
        return Wave((start,), length)
    body = math.ceil((length - overlap) / n) - overlap
    return Wave(tuple(start + i * (body + overlap) for i in range(n)), body + 2 * overlap)


def plan_folds(total: int, target: int = hp.voc_target, overlap: int = hp.voc_overlap,
               head: int = 0, head_target: int = 1600) -> FoldPlan:
    """Cut `total` samples into folds of about `target` (+ 2 overlap) samples.

    Unlike the reference's folding, the folds are made equal so that none is mostly
    padding. With `head` > 0, the first `head` samples are cut into folds of about
    `head_target` and generated first, as their own wave: a small batch of short folds,
    so the start of the audio is final long before the rest.
    """
    waves = []
    begin = 0
    if head > 0 and total - head > target + 2 * overlap:
        first = _even_folds(0, head, head_target, overlap)
        if len(first.starts) == 1:  # a lone head fold still needs the overlap with the next one
            first = Wave((0,), max(head, 2 * overlap + 1))
        waves.append(first)
        begin = first.starts[-1] + first.length - overlap  # the next fold overlaps the head's last
    waves.append(_even_folds(begin, total - begin, target, overlap))
    return FoldPlan(total, overlap, tuple(waves))


class _Layout:
    """Column layout of the per-step accumulation buffer.

    Step t owns one period of `width` columns. Its segments, in order: rz2 (rnn2's
    r and z pre-activations of step t), gi2n (rnn2's input n part, step t), rz1 (rnn1's
    r and z, step t + 1), gh1n (rnn1's hidden n part, step t + 1), f1 (fc1, step t),
    gh2n (rnn2's hidden n part, step t + 1). The h1 matmul of step t adds into
    [rz2 .. f1] of period t; the h2 matmul into [f1, gh2n] of period t and rz2 of period
    t + 1, which follows it in memory: each is one strided matmul, no copies.
    """

    def __init__(self, rnn: int, fc: int):
        self.rnn, self.fc = rnn, fc
        self.rz2, self.gi2n = 0, 2 * rnn
        self.rz1, self.gh1n = 3 * rnn, 5 * rnn
        self.f1, self.gh2n = 6 * rnn, 6 * rnn + fc
        self.width = 7 * rnn + fc
        self.span1 = (0, 6 * rnn + fc)
        self.span2 = (6 * rnn, 7 * rnn + fc + 2 * rnn)


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

    def __init__(self, rnn: int, fc: int, matmul: type, w1: torch.Tensor, w2: torch.Tensor, wf2: torch.Tensor,
                 w3: torch.Tensor, b3: torch.Tensor, v1rz: torch.Tensor, v1n: torch.Tensor, table: torch.Tensor):
        super().__init__()
        self.rnn, self.fc = rnn, fc
        self.mm1, self.mm2, self.mmf2, self.mm3 = matmul(w1), matmul(w2), matmul(wf2), matmul(w3)
        self.b3, self.v1rz, self.v1n, self.table = b3, v1rz, v1n, table

    def forward(self, acc: torch.Tensor, side: torch.Tensor, uniform: torch.Tensor, classes: torch.Tensor,
                h1x: torch.Tensor, h2: torch.Tensor, n1: torch.Tensor, n2: torch.Tensor, z2: torch.Tensor,
                logits: torch.Tensor, cdf: torch.Tensor, u: torch.Tensor, steps: int, gumbel: bool) -> None:
        """Run `steps` samples; see `_Layout` for `acc`. side[j] = [P_n | fc2's aux part | fc3 bias - log E].

        With `gumbel`, class = argmax(logits - log E) (E ~ Exp(1) in side). Else by inverse
        CDF: the first class whose cumulative probability exceeds uniform[j] (B, 1) times the total.
        """
        rnn, fc = self.rnn, self.fc
        width = 7 * rnn + fc
        x = h1x[:, rnn:rnn + 1]
        h1 = h1x[:, :rnn]
        for j in range(steps):
            prev = j * width
            cur = prev + width
            rz1 = acc[:, prev + 3 * rnn:prev + 5 * rnn]
            rz1.addcmul_(x, self.v1rz)
            rz1.sigmoid_()
            torch.addcmul(side[j, :, :rnn], x, self.v1n, out=n1)
            n1.addcmul_(rz1[:, :rnn], acc[:, prev + 5 * rnn:prev + 6 * rnn])
            n1.tanh_()
            torch.lerp(n1, h1, rz1[:, rnn:], out=h1)
            self.mm1.accumulate(acc[:, cur:cur + 6 * rnn + fc], h1x)
            rz2 = acc[:, cur:cur + 2 * rnn]
            rz2.sigmoid_()
            torch.addcmul(acc[:, cur + 2 * rnn:cur + 3 * rnn], rz2[:, :rnn], acc[:, prev + 6 * rnn + fc:cur],
                          out=n2)
            n2.tanh_()
            torch.lerp(n2, h2, rz2[:, rnn:], out=h2)
            self.mm2.accumulate(acc[:, cur + 6 * rnn:cur + width + 2 * rnn], h2)
            f1 = acc[:, cur + 6 * rnn:cur + 6 * rnn + fc]
            f1.relu_()
            self.mmf2.affine(side[j, :, rnn:rnn + fc], f1, z2)
            z2.relu_()
            if gumbel:
                self.mm3.affine(side[j, :, rnn + fc:], z2, logits)
                torch.argmax(logits, 1, out=classes[j])
            else:
                self.mm3.affine(self.b3, z2, logits)
                torch.cumsum(torch.softmax(logits, 1), 1, out=cdf)
                torch.mul(uniform[j], cdf[:, -1:], out=u)
                torch.searchsorted(cdf, u, out=classes[j].unsqueeze(1))
            torch.index_select(self.table, 0, classes[j], out=h1x[:, rnn])


def default_precision(device: torch.device | str) -> str:
    """fp16 weights through fbgemm on CPUs that have it (its small-batch matmuls are several times
    faster than MKL's fp32 ones on AMD CPUs), else fp32."""
    if torch.device(device).type == "cpu" and torch.backends.quantized.engine in ("x86", "fbgemm"):
        return "fp16"
    return "fp32"


class _Group:
    """Buffers of the folds one thread runs."""

    def __init__(self, folds: slice, chunk: int, lay: _Layout, n_classes: int, gumbel: bool, dev: torch.device):
        batch = folds.stop - folds.start
        self.folds = folds
        self.acc = torch.empty(batch, (chunk + 2) * lay.width, device=dev)
        self.periods = self.acc.view(batch, chunk + 2, lay.width)
        self.side = torch.empty(chunk, batch, lay.rnn + lay.fc + (n_classes if gumbel else 0), device=dev)
        self.classes = torch.empty(chunk, batch, dtype=torch.long, device=dev)
        self.h1x = torch.zeros(batch, lay.rnn + 1, device=dev)
        self.h2 = torch.zeros(batch, lay.rnn, device=dev)
        self.work = [torch.empty(batch, k, device=dev) for k in (lay.rnn, lay.rnn, lay.fc, n_classes, n_classes, 1)]


class FastWaveRNN:
    """A WaveRNN's weights fused for fast sampling. Holds no state between calls.

    `model` is a loaded `WaveRNN` in eval mode; it is read once here and not kept.
    `precision` is that of the recurrent matmuls: "fp32"; "fp16" (weights stored in
    fp16, arithmetic in fp32: fbgemm, CPU only); or "int8" (fbgemm's dynamic
    quantisation, CPU only: fastest, slightly different sound, see bench/RESULTS.md).
    None picks `default_precision` for the model's device.
    """

    def __init__(self, model: WaveRNN, precision: str | None = None):
        if model.training:
            raise RuntimeError("FastWaveRNN needs a model in eval mode: call model.eval() first")
        self.device = next(model.parameters()).device
        self.hop = model.hop_length
        self.pad = model.pad
        self.n_classes = model.n_classes
        self.upsample = model.upsample
        rnn = model.rnn_dims
        fc = model.fc1.out_features
        aux = model.aux_dims
        self.rnn, self.fc, self.aux = rnn, fc, aux
        self.layout = lay = _Layout(rnn, fc)
        d = lambda t: t.detach().to(torch.float64)  # noqa: E731  (fuse in float64, store float32)
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
        # Per-sample projections, in the column order of `_prefill`'s V:
        # [Q_rz | Q_n | P_rz | R | P_n | S], of which all but S depend on the mel.
        proj_u = torch.cat([wih2_u[rz], wih2_u[n], wih1[rz], wf1_u, wih1[n]])  # (6R + F, R): rows fed by u0
        self.mel_proj = (proj_u @ w_mel).T.contiguous().float().to(self.device)  # (80, 6R + F)
        self._frame_u = proj_u  # with the aux table, see `_frame_table`
        self._w_a1, self._b_i = w_a1, b_i
        zeros = lambda k: torch.zeros(k, dtype=torch.float64)  # noqa: E731
        self._frame_aux = [(wih2_a[rz], wih2_a[n], zeros(2 * rnn), wf1_a, zeros(rnn)), wf2_a]
        self._frame_bias = torch.cat([bih2[rz] + bhh2[rz], bih2[n], bih1[rz] + bhh1[rz], bf1, bih1[n], bf2])
        self.bhh1_n = bhh1[n].float().to(self.device)
        self.bhh2_n = bhh2[n].float().to(self.device)
        # Recurrent matmuls. h1x = [h1 | x]: x's own weights ride along as one more input row.
        v = proj_u @ w_x  # x times these vectors enter Q, P, R
        v_q_rz, v_q_n, v_p_rz, v_r, v_p_n = torch.split(v, [2 * rnn, rnn, 2 * rnn, fc, rnn])
        w1 = torch.cat([wih2_u[rz], wih2_u[n], whh1[rz], whh1[n], wf1_u])  # (6R + F, R)
        x_row = torch.cat([v_q_rz, v_q_n, zeros(3 * rnn), v_r])
        self.w1 = torch.cat([w1.T, x_row[None]]).contiguous().float().to(self.device)  # (R + 1, 6R + F)
        self.w2 = torch.cat([wf1_u, whh2[n], whh2[rz]]).T.contiguous().float().to(self.device)  # (R, F + 3R)
        self.wf2 = wf2_z.T.contiguous().float().to(self.device)
        self.w3 = d(model.fc3.weight).T.contiguous().float().to(self.device)
        self.b3 = d(model.fc3.bias).float().to(self.device)
        self.v1rz = v_p_rz.float().to(self.device)
        self.v1n = v_p_n.float().to(self.device)
        self.table = torch.tensor([2 * c / (self.n_classes - 1.0) - 1.0 for c in range(self.n_classes)],
                                  dtype=torch.float32, device=self.device)
        assert lay.span1[1] == self.w1.shape[1] and lay.span2[1] - lay.span2[0] == self.w2.shape[1]
        self.precision = precision = precision or default_precision(self.device)
        if precision not in ("fp32", "fp16", "int8"):
            raise ValueError(f"unknown precision {precision!r}: use 'fp32', 'fp16' or 'int8'")
        if precision != "fp32" and self.device.type != "cpu":
            raise ValueError(f"the {precision} vocoder path runs on the CPU only")
        sampler = _Sampler(rnn, fc, MATMULS[precision], self.w1, self.w2, self.wf2, self.w3, self.b3, self.v1rz,
                           self.v1n, self.table)
        try:
            self.sampler = torch.jit.script(sampler)
        except Exception:  # TorchScript is optional: eager gives the same numbers, slower
            self.sampler = sampler

    def _frame_table(self, aux_frames: torch.Tensor) -> torch.Tensor:
        """(T, 4 * aux) aux features -> (T + 1, 7R + 2F) frame-constant part of V (last row: padding)."""
        a = torch.cat([aux_frames.to(torch.float64), aux_frames.new_zeros(1, 4 * self.aux, dtype=torch.float64)])
        a1, a2, a3, a4 = torch.split(a, self.aux, dim=1)
        u0 = a1 @ self._w_a1.T + self._b_i
        (q_rz, q_n, p_rz, r, p_n), s = self._frame_aux
        parts = [a2 @ q_rz.T, a2 @ q_n.T, p_rz.expand(len(a), -1), a3 @ r.T, p_n.expand(len(a), -1)]
        mel_part = u0 @ self._frame_u.T + torch.cat(parts, dim=1)
        return (torch.cat([mel_part, a4 @ s.T], dim=1) + self._frame_bias).float()

    def conditioning(self, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(1, 80, T) mel in [-1, 1] -> upsampled mel (hop*T + 1, 80) with a final zero row, and the frame table."""
        m = F.pad(mel.to(self.device), (self.pad, self.pad))
        aux = self.upsample.resnet(m)[0].T  # (T, 128): constant over each frame's hop samples
        up = m.unsqueeze(1)
        for layer in self.upsample.up_layers:
            up = layer(up)
        up = up[0, :, :, self.upsample.indent:-self.upsample.indent][0].T  # (hop*T, 80)
        up = torch.cat([up, up.new_zeros(1, up.shape[1])])
        return up.contiguous(), self._frame_table(aux).to(self.device)

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
        `plan`, else `plan_folds(200 * T, target, overlap, head)`, or one fold when not `batched`.
        """
        frames = mel.shape[-1]
        total = frames * self.hop
        wave_len = (frames - 1) * self.hop if ending else total
        if plan is None:
            plan = plan_folds(total, target, overlap, head) if batched else FoldPlan(total, overlap, (Wave((0,), total),))
        if wave_len <= 0:
            return
        cond, table = self.conditioning(mel)
        assembler = _Assembler(plan, wave_len, self.n_classes, ending)
        done_steps, all_steps = 0, plan.steps
        for w, wave in enumerate(plan.waves):
            for first, classes in self._run_wave(wave, cond, table, generator, sampling):
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

    def _run_wave(self, wave: Wave, cond: torch.Tensor, table: torch.Tensor, generator: torch.Generator | None,
                  sampling: str = "cdf") -> Iterator[tuple[int, torch.Tensor]]:
        """Generate one wave; yield (first step, classes (steps, B) int64) after each chunk.

        On the CPU the folds are split between threads (one per intra-op thread), each
        running its own loop: they meet once per chunk rather than in every matmul.
        """
        lay, rnn, fc, dev = self.layout, self.rnn, self.fc, self.device
        batch, length = len(wave.starts), wave.length
        total = cond.shape[0] - 1
        chunk = min(CHUNK_STEPS, length)
        # Sample index of each fold at steps -1 .. (chunks * chunk) + 1 (out of range: the zero row).
        t = torch.arange(-1, math.ceil(length / chunk) * chunk + 2, device=dev)
        idx = torch.tensor(wave.starts, device=dev)[:, None] + t
        idx = torch.where((t >= 0) & (t < length) & (idx < total), idx, torch.full_like(idx, total))
        # fbgemm's fp16 matmul is single-threaded, so threads can share out the folds; MKL's
        # fp32 and fbgemm's int8 matmuls split each call between the intra-op threads instead.
        threads = torch.get_num_threads() if self.precision == "fp16" else 1
        bounds = np.linspace(0, batch, min(threads, batch) + 1).round().astype(int)
        gumbel = sampling == "gumbel"
        groups = [_Group(slice(a, b), chunk, lay, self.n_classes, gumbel, dev)
                  for a, b in zip(bounds[:-1], bounds[1:])]
        noise = torch.empty(chunk, batch, self.n_classes if gumbel else 1, device=dev)
        loop = self.sampler
        for first in range(0, length, chunk):
            steps = min(chunk, length - first)
            # V for steps first - 1 .. first + chunk + 1: (batch, chunk + 3, 7R + 2F)
            rows = idx[:, first:first + chunk + 3]
            v = table.index_select(0, torch.div(rows, self.hop, rounding_mode="floor").flatten())
            v[:, :6 * rnn + fc].addmm_(cond.index_select(0, rows.flatten()), self.mel_proj)
            v = v.view(batch, chunk + 3, -1)
            if gumbel:
                noise.exponential_(generator=generator)  # (chunk, batch, classes): the parity loop's order
                noise.log_()
            else:
                noise.uniform_(generator=generator)
            lo = 0 if first == 0 else 2  # periods 0 and 1 carry over from the previous chunk
            for g in groups:
                if lo:
                    g.periods[:, :2] = g.periods[:, chunk:chunk + 2].clone()
                seg, vg = g.periods[:, lo:], v[g.folds]
                seg[:, :, lay.rz2:lay.rz1] = vg[:, lo:chunk + 2, :3 * rnn]
                seg[:, :, lay.rz1:lay.gh1n] = vg[:, lo + 1:chunk + 3, 3 * rnn:5 * rnn]
                seg[:, :, lay.gh1n:lay.f1] = self.bhh1_n
                seg[:, :, lay.f1:lay.gh2n] = vg[:, lo:chunk + 2, 5 * rnn:5 * rnn + fc]
                seg[:, :, lay.gh2n:] = self.bhh2_n
                g.side[:, :, :rnn + fc] = vg[:, 1:chunk + 1, 5 * rnn + fc:].transpose(0, 1)
                if gumbel:
                    torch.sub(self.b3, noise[:, g.folds], out=g.side[:, :, rnn + fc:])
            args = [(g.acc, g.side, noise[:, g.folds], g.classes, g.h1x, g.h2, *g.work, steps, gumbel)
                    for g in groups]
            futures = [torch.jit.fork(loop, *a) for a in args[1:]]
            loop(*args[0])
            for f in futures:
                torch.jit.wait(f)
            yield first, torch.cat([g.classes[:steps] for g in groups], dim=1)


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
        if hp.apply_preemphasis:
            y, self.state = signal.lfilter([1], [1, -hp.preemphasis], y, zi=self.state)
        fade_start = self.wave_len - len(self.final_fade)
        if end > fade_start:
            lo = max(self.emitted, fade_start)
            y[lo - self.emitted:] *= self.final_fade[lo - fade_start:end - fade_start]
        self.emitted = end
        return y
