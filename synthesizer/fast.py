"""Fast Tacotron decoding: the decoder's LSTM cells with fp16 (or int8) weights.

At batch 1 a decoder step is a chain of matrix-vector products that read about 10 MB of
weights besides the two 1024-unit LSTM cells, which read 32 MB each: the step is bound
by memory bandwidth, not arithmetic. Stored in fp16 (fbgemm's matmul, arithmetic still
in fp32) the cells read half as much. Everything else is the parity path's modules.

The result is not the parity path's: weights rounded to fp16 move the mels by about
1e-3 (of a [-4, 4] range), well below what the pre-net's always-on dropout changes
between two seeds. `Synthesizer.synthesize_spectrograms(mode="fast")` uses it; the
default stays the parity path. `mode="int8"` stores the cells' weights in int8 (one
scale per output row; fbgemm's dynamic matmul quantises the inputs per call): a
quarter of the fp32 bytes and about twice as fast as fp16 again, with mels moved by a
few hundredths.
"""
from __future__ import annotations

import warnings

import torch
from torch import nn

from synthesizer.model import Decoder, LSTMCells


def available(device: torch.device | str) -> bool:
    """fp16 and int8 weights need fbgemm (x86 CPUs); elsewhere the fast modes are the parity path."""
    return torch.device(device).type == "cpu" and torch.backends.quantized.engine in ("x86", "fbgemm")


class _Fp16LSTMCell:
    """`nn.LSTMCell` with its two weight matrices packed together in fp16."""

    def __init__(self, cell: nn.LSTMCell):
        weight = torch.cat([cell.weight_ih, cell.weight_hh], dim=1).detach().float().contiguous()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the fp16 fbgemm ops are deprecated but still the way in
            self.packed = torch.fbgemm_pack_gemm_matrix_fp16(weight)
        self.bias = (cell.bias_ih + cell.bias_hh).detach().float().contiguous()

    def __call__(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        h, c = state
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gates = torch.fbgemm_linear_fp16_weight(torch.cat([x, h], dim=1), self.packed, self.bias)
        i, f, g, o = gates.chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c


class _Int8LSTMCell(_Fp16LSTMCell):
    """`nn.LSTMCell` with its two weight matrices packed together in int8 (per-row scales)."""

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


CELLS = {"fast": _Fp16LSTMCell, "int8": _Int8LSTMCell}


def lstm_cells(decoder: Decoder, mode: str = "fast") -> LSTMCells:
    """fp16 ("fast") or int8 copies of the decoder's two residual LSTM cells, for
    `Tacotron.generate(..., lstm_cells=...)`. They hold no per-call state: safe to share between threads."""
    return CELLS[mode](decoder.res_rnn1), CELLS[mode](decoder.res_rnn2)
