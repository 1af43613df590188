"""Fast Tacotron decoding: the decoder's LSTM cells with fp16 (or int8) weights.

At batch 1 a decoder step is a chain of matrix-vector products that read about 5 MB of
weights besides the two 1024-unit LSTM cells, which read 32 MB each: the step is bound
by memory bandwidth, not arithmetic. Stored in fp16 (fbgemm's matmul, arithmetic still
in fp32) the cells read half as much, and each cell's matmul is shared out between the
CPU threads, so that all cores draw on memory. Everything else is the parity path's
modules.

The result is not the parity path's: weights rounded to fp16 move the mels by about
1e-3 (of a [-4, 4] range), well below what the pre-net's always-on dropout changes
between two seeds. `Synthesizer.synthesize_spectrograms(mode="fp16")` uses it; the
default stays the parity path. `mode="int8"` (and "fast", which is int8: see
`deepfake_audio_core.modes`) stores the cells' weights in int8 (one scale per output
row; fbgemm's dynamic matmul quantises the inputs per call): a quarter of the fp32
bytes and faster than fp16 again, with mels moved by a few hundredths.
"""
from __future__ import annotations

import contextlib
import warnings

import torch
from torch import nn

from deepfake_audio_core.threads import cpu_threads, intra_op_threads, worker_pool
from synthesizer.model import Decoder, LSTMCells

# fbgemm's fp16 ops are deprecated but still the way in; filtered once here, not per call
# (a decoder step calls them twice, from several threads).
warnings.filterwarnings("ignore", message=r"fbgemm_\w+ is deprecated")

# Blocks an fp16 cell's matmul is cut into at most (beyond a few, the per-call handoffs cost more).
MAX_PARTS = 4


def available(device: torch.device | str) -> bool:
    """fp16 and int8 weights need fbgemm (x86 CPUs); elsewhere the fast modes are the parity path."""
    return torch.device(device).type == "cpu" and torch.backends.quantized.engine in ("x86", "fbgemm")


class _Fp16LSTMCell:
    """`nn.LSTMCell` with its two weight matrices packed together in fp16.

    fbgemm's fp16 matmul runs on one thread, and one thread cannot draw all of the memory
    bandwidth a batch-1 step needs, so the gate rows are cut into `parts` blocks (default:
    torch's thread count when built) computed side by side on the shared worker pool.
    The blocks' results are exactly the whole matmul's.
    """

    def __init__(self, cell: nn.LSTMCell, parts: int | None = None):
        weight = torch.cat([cell.weight_ih, cell.weight_hh], dim=1).detach().float()
        bias = (cell.bias_ih + cell.bias_hh).detach().float()
        parts = max(1, min(parts or cpu_threads(), MAX_PARTS))
        # Blocks start at multiples of 64 rows: fbgemm then sums each output in the same order
        # as for the whole matrix, so the split changes no bit.
        bounds = sorted({64 * round(k * len(weight) / parts / 64) for k in range(parts)} | {len(weight)})
        self.blocks = [(torch.fbgemm_pack_gemm_matrix_fp16(weight[a:b].contiguous()), bias[a:b].contiguous())
                       for a, b in zip(bounds[:-1], bounds[1:])]

    @property
    def parts(self) -> int:
        return len(self.blocks)

    def __call__(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        h, c = state
        xh = torch.cat([x, h], dim=1)
        rest = [worker_pool().submit(torch.fbgemm_linear_fp16_weight, xh, *block) for block in self.blocks[1:]]
        first = torch.fbgemm_linear_fp16_weight(xh, *self.blocks[0])
        gates = torch.cat([first] + [part.result() for part in rest], dim=1) if rest else first
        i, f, g, o = gates.chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c


class _Int8LSTMCell:
    """`nn.LSTMCell` with its two weight matrices packed together in int8 (per-row scales).
    fbgemm's dynamic int8 matmul uses torch's intra-op threads itself."""

    parts = 1

    def __init__(self, cell: nn.LSTMCell):
        weight = torch.cat([cell.weight_ih, cell.weight_hh], dim=1).detach().float().contiguous()
        self.bias = (cell.bias_ih + cell.bias_hh).detach().float().contiguous()
        scales = (weight.abs().amax(dim=1) / 127).clamp_min(1e-12).double()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # quantized tensor creation is deprecated but still the way in
            q = torch.quantize_per_channel(weight, scales, torch.zeros(len(weight), dtype=torch.long), 0, torch.qint8)
            self.packed = torch.ops.quantized.linear_prepack(q, self.bias)

    def __call__(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        h, c = state
        gates = torch.ops.quantized.linear_dynamic(torch.cat([x, h], dim=1), self.packed, True)
        i, f, g, o = gates.chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c


CELLS = {"fp16": _Fp16LSTMCell, "int8": _Int8LSTMCell}


def decoding(cells: LSTMCells | None) -> contextlib.AbstractContextManager:
    """Context for `Tacotron.generate` with `cells`: torch's intra-op threads are held at one
    (see `deepfake_audio_core.threads`) while split cells run on the worker pool, and for the
    int8 cells: fbgemm's dynamic int8 matmul on two threads gave a batch other bits from run
    to run (4e-4 in the mels of a 12-sentence stream against its clone), on one it is
    repeatable, and a stream must make the mels of a clone with the same seed. It costs the
    int8 decoder about 1.6x per step (still faster than fp16's at batch 1)."""
    split = cells is not None and any(getattr(cell, "parts", 1) > 1 for cell in cells)
    int8 = cells is not None and any(isinstance(cell, _Int8LSTMCell) for cell in cells)
    return intra_op_threads(1) if split or int8 else contextlib.nullcontext()


def postnet_beside(cells: LSTMCells | None) -> bool:
    """Whether post-net blocks may run on the worker pool beside the decoder steps of `cells`
    (`synthesizer.postnet_blocks`): with int8 cells, which keep the decoder on one thread.
    fp16's split cells need the pool for themselves; the parity cells use every thread."""
    return cells is not None and all(isinstance(cell, _Int8LSTMCell) for cell in cells)


def lstm_cells(decoder: Decoder, mode: str = "int8") -> LSTMCells:
    """fp16 or int8 (`mode`) copies of the decoder's two residual LSTM cells, for
    `Tacotron.generate(..., lstm_cells=...)`. They hold no per-call state: safe to share between threads."""
    return CELLS[mode](decoder.res_rnn1), CELLS[mode](decoder.res_rnn2)
