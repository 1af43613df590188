"""Tacotron with speaker conditioning (state-dict layout of the published `synthesizer.pt`).

Shapes: B batch, N input characters, T mel frames, r frames per decoder step.
Pre-net dropout stays on at inference, as in the reference; its masks are drawn from
an explicit `torch.Generator` so generation is reproducible and thread-safe.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from synthesizer.hparams import SynthesizerHParams, hparams as default_hparams
from synthesizer.text.symbols import NUM_SYMBOLS

# Windowed post-net (fast modes, streaming): frames in blocks, each computed with this many
# decoder frames of context on either side. The first blocks are short so that a stream
# starts early; later ones long, as each call costs about as much as 50 frames' work.
POSTNET_CONTEXT = 16
POSTNET_FIRST_BLOCKS = (16, 16, 16, 32)
POSTNET_BLOCK = 64


def postnet_blocks(frames: int) -> list[tuple[int, int]]:
    """(lo, hi) of the windowed post-net's blocks over `frames` decoder frames."""
    blocks, lo, k = [], 0, 0
    while lo < frames:
        size = POSTNET_FIRST_BLOCKS[k] if k < len(POSTNET_FIRST_BLOCKS) else POSTNET_BLOCK
        blocks.append((lo, min(lo + size, frames)))
        lo, k = lo + size, k + 1
    return blocks


def dropout(x: torch.Tensor, p: float, generator: torch.Generator | None) -> torch.Tensor:
    """Always-on dropout drawing its Bernoulli mask from `generator` (same draws as torch's CPU dropout).

    A generator on another device than `x` (a CPU-seeded run of a CUDA model) draws the
    mask where it lives, so a seed gives the same masks on every device.
    """
    if generator is not None and generator.device != x.device:
        mask = torch.empty(x.shape, dtype=x.dtype, device=generator.device).bernoulli_(1 - p, generator=generator)
        return x * mask.to(x.device).div_(1 - p)
    mask = torch.empty_like(x).bernoulli_(1 - p, generator=generator)
    return x * mask.div_(1 - p)


# (x, (h, c)) -> (h, c): an LSTM cell, as nn.LSTMCell is called.
LSTMCell = Callable[[torch.Tensor, tuple[torch.Tensor, torch.Tensor]], tuple[torch.Tensor, torch.Tensor]]
LSTMCells = tuple[LSTMCell, LSTMCell]


class HighwayNetwork(nn.Module):
    def __init__(self, size: int):
        super().__init__()
        self.W1 = nn.Linear(size, size)
        self.W2 = nn.Linear(size, size)
        self.W1.bias.data.fill_(0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = torch.sigmoid(self.W2(x))
        return g * F.relu(self.W1(x)) + (1.0 - g) * x


class PreNet(nn.Module):
    """Two ReLU layers with always-on dropout: (..., in_dims) -> (..., fc2_dims)."""

    def __init__(self, in_dims: int, fc1_dims: int = 256, fc2_dims: int = 128, dropout: float = 0.5):
        super().__init__()
        self.fc1 = nn.Linear(in_dims, fc1_dims)
        self.fc2 = nn.Linear(fc1_dims, fc2_dims)
        self.p = dropout

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        x = dropout(F.relu(self.fc1(x)), self.p, generator)
        return dropout(F.relu(self.fc2(x)), self.p, generator)


class BatchNormConv(nn.Module):
    """Conv1d (no bias, 'same' padding) -> optional ReLU -> BatchNorm; ReLU comes before the norm."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, relu: bool = True):
        super().__init__()
        self.conv = nn.Conv1d(in_channels, out_channels, kernel, stride=1, padding=kernel // 2, bias=False)
        self.bnorm = nn.BatchNorm1d(out_channels)
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        return self.bnorm(F.relu(x) if self.relu else x)


class CBHG(nn.Module):
    """Conv bank, highways, bidirectional GRU: (B, in_channels, T) -> (B, T, channels)."""

    def __init__(self, K: int, in_channels: int, channels: int, proj_channels: list[int], num_highways: int):
        super().__init__()
        self.bank_kernels = list(range(1, K + 1))
        self.conv1d_bank = nn.ModuleList(BatchNormConv(in_channels, channels, k) for k in self.bank_kernels)
        self.maxpool = nn.MaxPool1d(kernel_size=2, stride=1, padding=1)
        self.conv_project1 = BatchNormConv(len(self.bank_kernels) * channels, proj_channels[0], 3)
        self.conv_project2 = BatchNormConv(proj_channels[0], proj_channels[1], 3, relu=False)
        self.highway_mismatch = proj_channels[-1] != channels
        if self.highway_mismatch:
            self.pre_highway = nn.Linear(proj_channels[-1], channels, bias=False)
        self.highways = nn.ModuleList(HighwayNetwork(channels) for _ in range(num_highways))
        self.rnn = nn.GRU(channels, channels // 2, batch_first=True, bidirectional=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x
        seq_len = x.size(-1)
        # Even kernels yield one extra frame; keep the first seq_len.
        bank = torch.cat([conv(x)[:, :, :seq_len] for conv in self.conv1d_bank], dim=1)
        x = self.maxpool(bank)[:, :, :seq_len]
        x = self.conv_project2(self.conv_project1(x))
        x = (x + residual).transpose(1, 2)
        if self.highway_mismatch:
            x = self.pre_highway(x)
        for highway in self.highways:
            x = highway(x)
        x, _ = self.rnn(x)
        return x


class Encoder(nn.Module):
    """Characters -> (B, N, encoder_dims) text encodings."""

    def __init__(self, embed_dims: int, num_chars: int, encoder_dims: int, K: int, num_highways: int,
                 dropout: float):
        super().__init__()
        self.embedding = nn.Embedding(num_chars, embed_dims)
        self.pre_net = PreNet(embed_dims, fc1_dims=encoder_dims, fc2_dims=encoder_dims, dropout=dropout)
        self.cbhg = CBHG(K=K, in_channels=encoder_dims, channels=encoder_dims,
                         proj_channels=[encoder_dims, encoder_dims], num_highways=num_highways)

    def forward(self, chars: torch.Tensor, speaker_embedding: torch.Tensor,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """chars (B, N) int64, speaker_embedding (B, S) -> (B, N, encoder_dims + S)."""
        x = self.pre_net(self.embedding(chars), generator).transpose(1, 2)
        x = self.cbhg(x)
        speaker = speaker_embedding.unsqueeze(1).expand(-1, x.size(1), -1)
        return torch.cat([x, speaker], dim=2)


class LSA(nn.Module):
    """Location-sensitive attention over the projected encoder outputs."""

    def __init__(self, attn_dim: int, kernel_size: int = 31, filters: int = 32):
        super().__init__()
        self.conv = nn.Conv1d(1, filters, padding=(kernel_size - 1) // 2, kernel_size=kernel_size, bias=True)
        self.L = nn.Linear(filters, attn_dim, bias=False)
        self.W = nn.Linear(attn_dim, attn_dim, bias=True)
        self.v = nn.Linear(attn_dim, 1, bias=False)

    def forward(self, encoder_seq_proj: torch.Tensor, query: torch.Tensor, cumulative: torch.Tensor,
                char_mask: torch.Tensor) -> torch.Tensor:
        """Attention weights (B, N) for query (B, attn_dim) given cumulative weights (B, N).

        Padded characters get energy 0 (multiplied, not masked out), as in the reference.
        """
        processed_query = self.W(query).unsqueeze(1)
        processed_loc = self.L(self.conv(cumulative.unsqueeze(1)).transpose(1, 2))
        u = self.v(torch.tanh(processed_query + encoder_seq_proj + processed_loc)).squeeze(-1)
        return F.softmax(u * char_mask, dim=1)


@dataclass
class DecoderState:
    """Recurrent state carried between decoder steps."""

    attn_hidden: torch.Tensor  # (B, decoder_dims)
    rnn1: tuple[torch.Tensor, torch.Tensor]  # LSTM (h, c), each (B, lstm_dims)
    rnn2: tuple[torch.Tensor, torch.Tensor]
    context: torch.Tensor  # (B, encoder_dims + speaker)
    cumulative: torch.Tensor  # (B, N) summed attention weights

    @classmethod
    def zeros(cls, batch: int, n_chars: int, decoder_dims: int, lstm_dims: int, context_dims: int,
              device: torch.device) -> "DecoderState":
        z = lambda *shape: torch.zeros(*shape, device=device)  # noqa: E731
        return cls(z(batch, decoder_dims), (z(batch, lstm_dims), z(batch, lstm_dims)),
                   (z(batch, lstm_dims), z(batch, lstm_dims)), z(batch, context_dims), z(batch, n_chars))


class Decoder(nn.Module):
    """One autoregressive step: previous frame -> r mel frames and a stop probability."""

    def __init__(self, n_mels: int, encoder_dims: int, decoder_dims: int, lstm_dims: int, dropout: float,
                 speaker_embedding_size: int, max_r: int):
        super().__init__()
        self.register_buffer("r", torch.tensor(1, dtype=torch.int))
        self.n_mels = n_mels
        self.max_r = max_r
        context_dims = encoder_dims + speaker_embedding_size
        self.prenet = PreNet(n_mels, fc1_dims=decoder_dims * 2, fc2_dims=decoder_dims * 2, dropout=dropout)
        self.attn_net = LSA(decoder_dims)
        self.attn_rnn = nn.GRUCell(context_dims + decoder_dims * 2, decoder_dims)
        self.rnn_input = nn.Linear(context_dims + decoder_dims, lstm_dims)
        self.res_rnn1 = nn.LSTMCell(lstm_dims, lstm_dims)
        self.res_rnn2 = nn.LSTMCell(lstm_dims, lstm_dims)
        self.mel_proj = nn.Linear(lstm_dims, n_mels * max_r, bias=False)
        self.stop_proj = nn.Linear(encoder_dims + speaker_embedding_size + lstm_dims, 1)

    def step(self, encoder_seq: torch.Tensor, encoder_seq_proj: torch.Tensor, prenet_in: torch.Tensor,
             state: DecoderState, char_mask: torch.Tensor, r: int, generator: torch.Generator | None = None,
             mel_weight: torch.Tensor | None = None, lstm_cells: LSTMCells | None = None
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Advance `state` in place by one step.

        Returns mel frames (B, n_mels, r), attention weights (B, N) and stop probabilities (B, 1).
        `mel_weight` (from `mel_weight_for`) computes only the r frames that are kept.
        `lstm_cells` replace `res_rnn1` and `res_rnn2` (reduced-precision copies, see `synthesizer.fast`).
        """
        rnn1, rnn2 = lstm_cells or (self.res_rnn1, self.res_rnn2)
        batch = encoder_seq.size(0)
        prenet_out = self.prenet(prenet_in, generator)
        state.attn_hidden = self.attn_rnn(torch.cat([state.context, prenet_out], dim=-1), state.attn_hidden)
        scores = self.attn_net(encoder_seq_proj, state.attn_hidden, state.cumulative, char_mask)
        state.cumulative = state.cumulative + scores
        state.context = (scores.unsqueeze(1) @ encoder_seq).squeeze(1)
        x = self.rnn_input(torch.cat([state.context, state.attn_hidden], dim=1))
        state.rnn1 = rnn1(x, state.rnn1)
        x = x + state.rnn1[0]
        state.rnn2 = rnn2(x, state.rnn2)
        x = x + state.rnn2[0]
        if mel_weight is None:
            mels = self.mel_proj(x).view(batch, self.n_mels, self.max_r)[:, :, :r]
        else:
            mels = F.linear(x, mel_weight).view(batch, self.n_mels, r)
        stop = torch.sigmoid(self.stop_proj(torch.cat((x, state.context), dim=1)))
        return mels, scores, stop

    def mel_weight_for(self, r: int) -> torch.Tensor:
        """The rows of `mel_proj` that produce the first r of its max_r frames: (n_mels * r, lstm_dims).

        mel_proj makes max_r frames per step and all but r are dropped; at inference this
        skips nine tenths of the largest matmul after the LSTMs.
        """
        weight = self.mel_proj.weight
        return weight.view(self.n_mels, self.max_r, -1)[:, :r].reshape(self.n_mels * r, -1)


class Tacotron(nn.Module):
    """Speaker-conditioned Tacotron: characters + speaker embedding -> 80-channel mel."""

    def __init__(self, hp: SynthesizerHParams = default_hparams, num_chars: int = NUM_SYMBOLS):
        super().__init__()
        self.n_mels = hp.num_mels
        self.lstm_dims = hp.tts_lstm_dims
        self.encoder_dims = hp.tts_encoder_dims
        self.decoder_dims = hp.tts_decoder_dims
        self.speaker_embedding_size = hp.speaker_embedding_size
        self.encoder = Encoder(hp.tts_embed_dims, num_chars, hp.tts_encoder_dims, hp.tts_encoder_K,
                               hp.tts_num_highways, hp.tts_dropout)
        self.encoder_proj = nn.Linear(hp.tts_encoder_dims + hp.speaker_embedding_size, hp.tts_decoder_dims,
                                      bias=False)
        self.decoder = Decoder(hp.num_mels, hp.tts_encoder_dims, hp.tts_decoder_dims, hp.tts_lstm_dims,
                               hp.tts_dropout, hp.speaker_embedding_size, hp.max_r)
        self.postnet = CBHG(hp.tts_postnet_K, hp.num_mels, hp.tts_postnet_dims,
                            [hp.tts_postnet_dims, hp.num_mels], hp.tts_num_highways)
        self.post_proj = nn.Linear(hp.tts_postnet_dims, hp.num_mels, bias=False)
        self.register_buffer("step", torch.zeros(1, dtype=torch.long))
        self.register_buffer("stop_threshold", torch.tensor(hp.tts_stop_threshold, dtype=torch.float32))

    @property
    def r(self) -> int:
        """Frames per decoder step, read from the checkpoint's `decoder.r` buffer."""
        return int(self.decoder.r.item())

    @torch.inference_mode()
    def generate(self, chars: torch.Tensor, speaker_embedding: torch.Tensor, steps: int = 2000,
                 generator: torch.Generator | None = None, lstm_cells: LSTMCells | None = None,
                 windowed_postnet: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Autoregressive synthesis of a padded batch.

        chars (B, N) int64 (0 = padding), speaker_embedding (B, 256) float32.
        Stops when every item's stop probability exceeds 0.5 (after frame 10) or after
        `steps` frames. Returns decoder mels (B, 80, T), post-net mels (B, 80, T) and
        attention (B, T / r, N). `lstm_cells`: see `Decoder.step`. `windowed_postnet` runs
        the post-net in blocks (`postnet_block`), as frame-level streaming must.
        """
        mel_outputs, attn_scores = [], []
        for frames, scores, _ in self.decode_steps(chars, speaker_embedding, steps, generator, lstm_cells):
            mel_outputs.append(frames)
            attn_scores.append(scores.unsqueeze(1))
        mels = torch.cat(mel_outputs, dim=2)
        return mels, self.postnet_output(mels, windowed_postnet), torch.cat(attn_scores, 1)

    @torch.inference_mode()
    def postnet_output(self, mels: torch.Tensor, windowed: bool = False) -> torch.Tensor:
        """Post-net mels (B, 80, T) of decoder mels (B, 80, T): whole, or in `postnet_blocks`."""
        if windowed:
            return torch.cat([self.postnet_block(mels, lo, hi) for lo, hi in postnet_blocks(mels.size(2))], dim=2)
        return self.post_proj(self.postnet(mels)).transpose(1, 2)

    @torch.inference_mode()
    def decode_steps(self, chars: torch.Tensor, speaker_embedding: torch.Tensor, steps: int = 2000,
                     generator: torch.Generator | None = None, lstm_cells: LSTMCells | None = None
                     ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """The decoder's steps as they are made: (frames (B, 80, r), attention (B, N), stop (B, 1)).

        Ends when every item's stop probability exceeds 0.5 (after frame 10) or after `steps`
        frames; `generate` is this plus the post-net.
        """
        if self.training:
            raise RuntimeError("generate() needs eval mode: call model.eval() first")
        batch, n_chars = chars.shape
        device = chars.device
        r = self.r
        state = DecoderState.zeros(batch, n_chars, self.decoder_dims, self.lstm_dims,
                                   self.encoder_dims + self.speaker_embedding_size, device)
        char_mask = (chars != 0).float()
        encoder_seq = self.encoder(chars, speaker_embedding, generator)
        encoder_seq_proj = self.encoder_proj(encoder_seq)
        prenet_in = torch.zeros(batch, self.n_mels, device=device)  # the <GO> frame
        mel_weight = self.decoder.mel_weight_for(r)
        for t in range(0, steps, r):
            frames, scores, stop = self.decoder.step(encoder_seq, encoder_seq_proj, prenet_in, state,
                                                     char_mask, r, generator, mel_weight, lstm_cells)
            yield frames, scores, stop
            prenet_in = frames[:, :, -1]
            if (stop > 0.5).all() and t > 10:
                return

    @torch.inference_mode()
    def postnet_block(self, mels: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
        """Post-net frames lo .. hi - 1 of decoder mels (B, 80, T), from frames lo - `POSTNET_CONTEXT`
        .. hi + `POSTNET_CONTEXT` only (clipped to the mel): (B, 80, hi - lo).

        The post-net's bidirectional GRU sees the whole mel; a stream cannot wait for that,
        so the fast modes run it on these windows (the frames after hi must exist).
        """
        a, b = max(0, lo - POSTNET_CONTEXT), min(mels.size(2), hi + POSTNET_CONTEXT)
        out = self.post_proj(self.postnet(mels[:, :, a:b])).transpose(1, 2)
        return out[:, :, lo - a:hi - a]

    def forward(self, chars: torch.Tensor, mels: torch.Tensor, speaker_embedding: torch.Tensor,
                generator: torch.Generator | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Training pass with teacher forcing.

        chars (B, N) int64 (0 = padding), mels (B, 80, T) target mels in [-4, 4] with T a
        multiple of r, speaker_embedding (B, 256). Each decoder step sees the last target
        frame of the previous step. Returns decoder mels (B, 80, T), post-net mels
        (B, 80, T), attention (B, T / r, N) and stop probabilities (B, T).
        """
        batch, n_chars = chars.shape
        n_frames = mels.size(2)
        r = self.r
        if n_frames % r:
            raise ValueError(f"the target mels have {n_frames} frames, not a multiple of r = {r}")
        device = chars.device
        state = DecoderState.zeros(batch, n_chars, self.decoder_dims, self.lstm_dims,
                                   self.encoder_dims + self.speaker_embedding_size, device)
        char_mask = (chars != 0).float()
        encoder_seq = self.encoder(chars, speaker_embedding, generator)
        encoder_seq_proj = self.encoder_proj(encoder_seq)
        go_frame = torch.zeros(batch, self.n_mels, device=device)
        mel_outputs, attn_scores, stops = [], [], []
        for t in range(0, n_frames, r):
            prenet_in = mels[:, :, t - 1] if t > 0 else go_frame
            frames, scores, stop = self.decoder.step(encoder_seq, encoder_seq_proj, prenet_in, state, char_mask, r,
                                                     generator)
            mel_outputs.append(frames)
            attn_scores.append(scores.unsqueeze(1))
            stops.append(stop.expand(-1, r))
        decoder_mels = torch.cat(mel_outputs, dim=2)
        postnet_mels = self.post_proj(self.postnet(decoder_mels)).transpose(1, 2)
        return decoder_mels, postnet_mels, torch.cat(attn_scores, 1), torch.cat(stops, 1)
