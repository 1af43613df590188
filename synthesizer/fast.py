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
import torch.nn.functional as F
from torch import nn

from synthesizer.model import Decoder, DecoderState, Tacotron


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


class FastDecoder:
    """`Decoder.step` with fp16 ("fast") or int8 LSTM cells. Holds no per-call state; safe to share between threads."""

    def __init__(self, decoder: Decoder, mode: str = "fast"):
        self.decoder = decoder
        self.rnn1 = CELLS[mode](decoder.res_rnn1)
        self.rnn2 = CELLS[mode](decoder.res_rnn2)

    def step(self, encoder_seq: torch.Tensor, encoder_seq_proj: torch.Tensor, prenet_in: torch.Tensor,
             state: DecoderState, char_mask: torch.Tensor, mel_weight: torch.Tensor,
             generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        d = self.decoder
        prenet_out = d.prenet(prenet_in, generator)
        state.attn_hidden = d.attn_rnn(torch.cat([state.context, prenet_out], dim=-1), state.attn_hidden)
        scores = d.attn_net(encoder_seq_proj, state.attn_hidden, state.cumulative, char_mask)
        state.cumulative = state.cumulative + scores
        state.context = (scores.unsqueeze(1) @ encoder_seq).squeeze(1)
        x = d.rnn_input(torch.cat([state.context, state.attn_hidden], dim=1))
        state.rnn1 = self.rnn1(x, state.rnn1)
        x = x + state.rnn1[0]
        state.rnn2 = self.rnn2(x, state.rnn2)
        x = x + state.rnn2[0]
        mels = F.linear(x, mel_weight).view(x.size(0), d.n_mels, -1)
        stop = torch.sigmoid(d.stop_proj(torch.cat((x, state.context), dim=1)))
        return mels, scores, stop


@torch.inference_mode()
def generate(model: Tacotron, fast_decoder: FastDecoder, chars: torch.Tensor, speaker_embedding: torch.Tensor,
             steps: int = 2000, generator: torch.Generator | None = None
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`Tacotron.generate` (same arguments, same stopping rule, same results up to fp16 rounding)."""
    if model.training:
        raise RuntimeError("generate() needs eval mode: call model.eval() first")
    batch, n_chars = chars.shape
    device = chars.device
    r = model.r
    state = DecoderState.zeros(batch, n_chars, model.decoder_dims, model.lstm_dims,
                               model.encoder_dims + model.speaker_embedding_size, device)
    char_mask = (chars != 0).float()
    encoder_seq = model.encoder(chars, speaker_embedding, generator)
    encoder_seq_proj = model.encoder_proj(encoder_seq)
    prenet_in = torch.zeros(batch, model.n_mels, device=device)
    mel_weight = model.decoder.mel_weight_for(r)
    mel_outputs, attn_scores = [], []
    for t in range(0, steps, r):
        frames, scores, stop = fast_decoder.step(encoder_seq, encoder_seq_proj, prenet_in, state, char_mask,
                                                 mel_weight, generator)
        mel_outputs.append(frames)
        attn_scores.append(scores.unsqueeze(1))
        prenet_in = frames[:, :, -1]
        if (stop > 0.5).all() and t > 10:
            break
    mels = torch.cat(mel_outputs, dim=2)
    linear = model.post_proj(model.postnet(mels)).transpose(1, 2)
    return mels, linear, torch.cat(attn_scores, 1)
