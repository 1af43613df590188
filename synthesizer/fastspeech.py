"""A small non-autoregressive synthesizer: FastSpeech-style, with a learned monotonic aligner.

The starter synthesizer that ships with the project and trains on a 2-core CPU. It takes
the same inputs as the Tacotron (character ids of the engine's text front end and a 256-d
speaker embedding) and makes the same output (80-band mels in the published
normalisation, 12.5 ms frames), so Griffin-Lim and the official WaveRNN both vocode it.

    text encoder   ids (B, N) -> embedding + sine positions -> FFT blocks -> (B, N, d)
    speaker        embedding (B, 256) -> linear -> added to every character
    durations      conv predictor -> log(1 + frames) per character        (FastSpeech, Ren et al. 2019)
    length regul.  each character repeated for its duration -> (B, T, d)
    pitch          (optional, `pitch_conditioning`) the voice's log-F0 median and spread -> linear
                   -> added to every character; a conv predictor -> log-F0 per character
                   relative to that median; the absolute log-F0 -> conv -> added to the
                   characters before the length regulator                   (FastPitch, Lancucki 2021)
    decoder        sine positions -> (pool by `decoder_stride`) -> FFT blocks -> linear -> (B, 80, T)

Training needs no external aligner ("One TTS Alignment To Rule Them All", Badlani et al.
2022): a small aligner compares mel frames with characters, a forward-sum loss (CTC over
the soft alignment) teaches it, the monotonic alignment search turns it into hard
durations that drive the length regulator and the duration predictor's targets, and a
binarization loss pulls the soft alignment towards the hard one. FFT blocks are pre-norm
transformer layers whose feed-forward part is a 1-D convolution (FastSpeech).

Inference is one parallel pass per batch, so the speaking rate (`pace`) is just a scale
on the predicted durations. With pitch conditioning, a clone speaks around the pitch
statistics measured from its reference (`core.pitch.pitch_stats`; without them, those
that its embedding suggests, from a small head trained beside), and a pitch shift in
semitones moves every character's F0 before the decoder draws the harmonics.
Log-F0 is in natural-log units from `PITCH_REFERENCE_HZ` (65 Hz -> -0.84, 380 Hz -> 0.93).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from synthesizer.text.symbols import NUM_SYMBOLS

ARCHITECTURE = "fastspeech"
PITCH_REFERENCE_HZ = 150.0  # log-F0 values are ln(F0 / PITCH_REFERENCE_HZ)


@dataclass(frozen=True)
class FastSpeechHParams:
    """Model sizes (d = model width) and loss weights. Mel layout is the published one."""

    num_mels: int = 80
    speaker_embedding_size: int = 256
    d_model: int = 192
    heads: int = 2
    encoder_layers: int = 4
    decoder_layers: int = 4
    ffn_dims: int = 768
    ffn_kernel: int = 3
    dropout: float = 0.1  # encoder and duration predictor
    decoder_dropout: float = 0.0  # the decoder's tensors are 5x the encoder's: dropout there costs time
    decoder_stride: int = 2  # decoder runs on frames pooled in pairs: half the cost, same durations
    duration_dims: int = 192
    duration_kernel: int = 3
    aligner_dims: int = 80
    aligner_temperature: float = 0.0005
    max_abs_value: float = 4.0  # mel range; padding and silence are -max_abs_value
    max_frames_per_char: int = 60  # a predicted duration is capped here (0.75 s)
    pitch_conditioning: bool = False  # FastPitch-style pitch (checkpoints from before it have none)

    # Training
    batch_size: int = 32
    learning_rate: float = 1e-3
    warmup_steps: int = 500
    total_steps: int = 20_000  # the learning rate decays (cosine) to 10 % at this step
    clip_grad_norm: float = 1.0
    duration_loss_weight: float = 0.1
    pitch_loss_weight: float = 0.1  # per-character log-F0 (MSE), and the voice statistics from the embedding
    align_loss_weight: float = 1.0
    binarization_start: int = 3000  # step from which the soft alignment is pulled to the hard one
    binarization_loss_weight: float = 1.0
    # Speaker consistency (the frozen speaker encoder judges the output; training only):
    # on the batch's own voices, and on `consistency_bank_items` voices of a speaker bank
    # (embeddings without recordings) speaking the batch's texts. 0 turns a term off.
    consistency_start: int = 0
    consistency_loss_weight: float = 0.0
    consistency_bank_weight: float = 0.0
    consistency_bank_items: int = 16


TRAINING_FIELDS = ("batch_size", "learning_rate", "warmup_steps", "total_steps", "clip_grad_norm",
                   "duration_loss_weight", "pitch_loss_weight", "align_loss_weight", "binarization_start", "binarization_loss_weight",
                   "consistency_start", "consistency_loss_weight", "consistency_bank_weight",
                   "consistency_bank_items")


def sinusoid_positions(length: int, dims: int, device: torch.device | None = None) -> torch.Tensor:
    """(length, dims) sine/cosine position codes (Vaswani et al. 2017)."""
    position = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dims, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dims))
    codes = torch.zeros(length, dims, device=device)
    codes[:, 0::2] = torch.sin(position * freq)
    codes[:, 1::2] = torch.cos(position * freq)
    return codes


class FFTBlock(nn.Module):
    """Pre-norm self-attention + convolutional feed-forward: (B, T, d) -> (B, T, d)."""

    def __init__(self, d: int, heads: int, ffn_dims: int, kernel: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)
        self.norm2 = nn.LayerNorm(d)
        self.conv1 = nn.Conv1d(d, ffn_dims, kernel, padding=kernel // 2)
        self.conv2 = nn.Conv1d(ffn_dims, d, 1)
        self.dropout = dropout

    def forward(self, x: torch.Tensor, mask: torch.Tensor, attn_bias: torch.Tensor) -> torch.Tensor:
        """x (B, T, d), mask (B, T, 1) float (1 = real position), attn_bias (B, 1, 1, T) (0 or -inf)."""
        b, t, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        attn = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_bias,
                                              dropout_p=self.dropout if self.training else 0.0)
        x = x + self._dropout(self.out(attn.transpose(1, 2).reshape(b, t, d)))
        y = (self.norm2(x) * mask).transpose(1, 2)
        y = self.conv2(self._dropout(F.relu_(self.conv1(y)))).transpose(1, 2)
        return (x + self._dropout(y)) * mask

    def _dropout(self, x: torch.Tensor) -> torch.Tensor:
        return F.dropout(x, self.dropout, self.training) if self.dropout else x


def run_blocks(blocks: nn.ModuleList, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Apply FFT blocks to x (B, T, d) with mask (B, T) bool; padded positions stay zero."""
    attn_bias = torch.zeros(mask.shape, dtype=x.dtype, device=x.device).masked_fill_(~mask, -math.inf)[:, None, None]
    mask_f = mask[..., None].to(x.dtype)
    for block in blocks:
        x = block(x, mask_f, attn_bias)
    return x


class DurationPredictor(nn.Module):
    """Two conv layers -> log(1 + frames) per character: (B, N, d) -> (B, N)."""

    def __init__(self, d: int, dims: int, kernel: int, dropout: float):
        super().__init__()
        self.conv1 = nn.Conv1d(d, dims, kernel, padding=kernel // 2)
        self.norm1 = nn.LayerNorm(dims)
        self.conv2 = nn.Conv1d(dims, dims, kernel, padding=kernel // 2)
        self.norm2 = nn.LayerNorm(dims)
        self.proj = nn.Linear(dims, 1)
        self.dropout = dropout

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x * mask[..., None]
        x = self.norm1(F.relu(self.conv1(x.transpose(1, 2))).transpose(1, 2))
        x = F.dropout(x, self.dropout, self.training) * mask[..., None]
        x = self.norm2(F.relu(self.conv2(x.transpose(1, 2))).transpose(1, 2))
        x = F.dropout(x, self.dropout, self.training)
        return self.proj(x).squeeze(-1) * mask


class Aligner(nn.Module):
    """Soft alignment of mel frames to characters (RAD-TTS / FastPitch 1.1 alignment encoder).

    Characters (their embeddings) and frames are mapped to `dims`-d points; the log-score
    of frame t on character n is -temperature * |q_t - k_n|^2.
    """

    def __init__(self, embed_dims: int, n_mels: int, speaker_dims: int, dims: int, temperature: float):
        super().__init__()
        self.temperature = temperature
        self.key1 = nn.Conv1d(embed_dims, 2 * embed_dims, 3, padding=1)
        self.key2 = nn.Conv1d(2 * embed_dims, dims, 1)
        self.speaker = nn.Linear(speaker_dims, n_mels)
        self.query1 = nn.Conv1d(n_mels, 2 * n_mels, 3, padding=1)
        self.query2 = nn.Conv1d(2 * n_mels, n_mels, 1)
        self.query3 = nn.Conv1d(n_mels, dims, 1)

    def forward(self, embedded: torch.Tensor, mels: torch.Tensor, speaker: torch.Tensor) -> torch.Tensor:
        """embedded (B, N, e), mels (B, 80, T), speaker (B, 256) -> scores (B, T, N)."""
        keys = self.key2(F.relu(self.key1(embedded.transpose(1, 2))))  # (B, dims, N)
        q = mels + self.speaker(speaker)[:, :, None]
        q = self.query3(F.relu(self.query2(F.relu(self.query1(q)))))  # (B, dims, T)
        dist = (q.pow(2).sum(1)[:, :, None] - 2 * q.transpose(1, 2) @ keys + keys.pow(2).sum(1)[:, None, :])
        return -self.temperature * dist


def length_regulate(x: torch.Tensor, durations: torch.Tensor, n_frames: int | None = None) -> torch.Tensor:
    """Repeat each x[b, n] durations[b, n] times: (B, N, d), (B, N) int -> (B, T, d), zero-padded."""
    ends = durations.cumsum(1)
    total = int(ends.max().item()) if n_frames is None else n_frames
    frames = torch.arange(total, device=x.device)
    # character index of each frame: how many characters end at or before it
    index = (ends[:, None, :] <= frames[None, :, None]).sum(-1)  # (B, T)
    valid = index < durations.size(1)
    out = torch.gather(x, 1, index.clamp_max(durations.size(1) - 1)[..., None].expand(-1, -1, x.size(2)))
    return out * valid[..., None]


def character_log_f0(f0: torch.Tensor, durations: torch.Tensor, median: torch.Tensor) -> torch.Tensor:
    """Mean log-F0 of each character's voiced frames, relative to the voice's median.

    f0 (B, T) Hz (0 = unvoiced), durations (B, N) frames per character (hard alignment),
    median (B,) the voice's median log-F0 -> (B, N); 0 for characters with no voiced frame
    (FastPitch's convention: their target is the voice's own level).
    """
    b, t = f0.shape
    n = durations.size(1)
    ends = durations.cumsum(1)
    frames = torch.arange(t, device=f0.device)
    index = (ends[:, None, :] <= frames[None, :, None]).sum(-1)  # (B, T) character of each frame, n past the end
    voiced = (f0 > 0) & (index < n)
    log_f0 = torch.where(voiced, torch.log(f0.clamp_min(1.0) / PITCH_REFERENCE_HZ) - median[:, None], 0.0)
    index = index.clamp_max(n - 1)
    total = torch.zeros(b, n, device=f0.device).scatter_add_(1, index, log_f0)
    count = torch.zeros(b, n, device=f0.device).scatter_add_(1, index, voiced.float())
    return total / count.clamp_min(1.0)


def beta_binomial_log_prior(char_lens: torch.Tensor, mel_lens: torch.Tensor, n_chars: int, n_frames: int,
                            scale: float = 1.0) -> torch.Tensor:
    """Log of the beta-binomial alignment prior (RAD-TTS): (B, T, N), -inf outside each item.

    Frame t of an item with T frames and N characters favours characters near t N / T:
    the pmf over k in 0..N-1 of BetaBinomial(N - 1, scale (t + 1), scale (T - t)).
    """
    device = char_lens.device
    k = torch.arange(n_chars, device=device, dtype=torch.float64)[None, None, :]
    t = torch.arange(n_frames, device=device, dtype=torch.float64)[None, :, None]
    n = (char_lens.double() - 1)[:, None, None]
    big_t = mel_lens.double()[:, None, None]
    a, b = scale * (t + 1), scale * (big_t - t).clamp_min(1)
    lbeta = lambda x, y: torch.lgamma(x) + torch.lgamma(y) - torch.lgamma(x + y)  # noqa: E731
    log_choose = torch.lgamma(n + 1) - torch.lgamma(k + 1) - torch.lgamma((n - k).clamp_min(0) + 1)
    log_pmf = log_choose + lbeta(k + a, (n - k).clamp_min(0) + b) - lbeta(a, b)
    valid = (k <= n) & (t < big_t)
    return torch.where(valid, log_pmf, torch.full_like(log_pmf, -math.inf)).float()


def monotonic_alignment_search(log_probs: np.ndarray, char_lens: np.ndarray, mel_lens: np.ndarray) -> np.ndarray:
    """Hard alignment maximising the summed log-probabilities along a monotonic path.

    log_probs (B, T, N) float; the path of item b starts at (0, 0), ends at
    (mel_lens[b] - 1, char_lens[b] - 1) and moves to the next character or stays at each
    frame. Returns durations (B, N) int64 (frames per character, summing to mel_lens).
    Vectorised over the batch; one pass forward and one back over the frames.
    """
    b_size, n_frames, n_chars = log_probs.shape
    neg = -1e30
    lp = np.where(np.arange(n_chars)[None, None, :] < char_lens[:, None, None], log_probs, neg)
    best = np.full((b_size, n_frames, n_chars), neg, dtype=np.float64)
    best[:, 0, 0] = lp[:, 0, 0]
    for t in range(1, n_frames):
        prev = best[:, t - 1]
        advanced = np.concatenate([np.full((b_size, 1), neg), prev[:, :-1]], axis=1)
        best[:, t] = np.maximum(prev, advanced) + lp[:, t]
    durations = np.zeros((b_size, n_chars), dtype=np.int64)
    n = char_lens.astype(np.int64) - 1
    rows = np.arange(b_size)
    for t in range(n_frames - 1, -1, -1):
        active = t < mel_lens
        np.add.at(durations, (rows[active], n[active]), 1)
        if t == 0:
            break
        stay = best[rows, t - 1, n]
        move = best[rows, t - 1, np.maximum(n - 1, 0)]
        n = np.where(active & (n > 0) & (move >= stay), n - 1, n)
    return durations


class FastSpeech(nn.Module):
    """Characters + speaker embedding -> mel, in parallel over frames."""

    architecture = ARCHITECTURE

    def __init__(self, hp: FastSpeechHParams = FastSpeechHParams(), num_chars: int = NUM_SYMBOLS):
        super().__init__()
        self.hp = hp
        d = hp.d_model
        self.embedding = nn.Embedding(num_chars, d, padding_idx=0)
        self.encoder = nn.ModuleList(FFTBlock(d, hp.heads, hp.ffn_dims, hp.ffn_kernel, hp.dropout)
                                     for _ in range(hp.encoder_layers))
        self.encoder_norm = nn.LayerNorm(d)
        self.speaker_proj = nn.Linear(hp.speaker_embedding_size, d)
        self.duration = DurationPredictor(d, hp.duration_dims, hp.duration_kernel, hp.dropout)
        self.aligner = Aligner(d, hp.num_mels, hp.speaker_embedding_size, hp.aligner_dims, hp.aligner_temperature)
        self.decoder = nn.ModuleList(FFTBlock(d, hp.heads, hp.ffn_dims, hp.ffn_kernel, hp.decoder_dropout)
                                     for _ in range(hp.decoder_layers))
        self.decoder_norm = nn.LayerNorm(d)
        self.mel_proj = nn.Linear(d, hp.num_mels * hp.decoder_stride)
        if hp.pitch_conditioning:
            self.pitch_stats_proj = nn.Linear(2, d)  # the voice's (median, spread) of log-F0
            self.pitch_from_speaker = nn.Linear(hp.speaker_embedding_size, 2)  # the same, guessed from the embedding
            self.pitch = DurationPredictor(d, hp.duration_dims, hp.duration_kernel, hp.dropout)
            self.pitch_embed = nn.Conv1d(1, d, 3, padding=1)
            # zero: a model continued from weights without pitch starts out as that model
            for layer in (self.pitch_stats_proj, self.pitch_embed):
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)
        self.register_buffer("step", torch.zeros(1, dtype=torch.long))

    def voice_pitch(self, speaker: torch.Tensor, pitch_stats: torch.Tensor | None) -> torch.Tensor:
        """The voice's (median, spread) of log-F0 (B, 2): `pitch_stats` where given (rows of NaN
        are filled in), else what the embedding suggests."""
        guessed = self.pitch_from_speaker(speaker)
        if pitch_stats is None:
            return guessed
        return torch.where(torch.isnan(pitch_stats), guessed, pitch_stats)

    def encode(self, chars: torch.Tensor, speaker: torch.Tensor, pitch_stats: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """chars (B, N), speaker (B, 256), pitch stats (B, 2) -> (encodings (B, N, d), embedded chars, mask (B, N))."""
        mask = chars != 0
        embedded = self.embedding(chars)
        x = embedded + sinusoid_positions(chars.size(1), self.hp.d_model, chars.device)
        x = run_blocks(self.encoder, x, mask)
        x = self.encoder_norm(x) + self.speaker_proj(speaker)[:, None, :]
        if self.hp.pitch_conditioning:
            x = x + self.pitch_stats_proj(self.voice_pitch(speaker, pitch_stats))[:, None, :]
        return x * mask[..., None], embedded, mask

    def add_pitch(self, x: torch.Tensor, log_f0: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Encodings (B, N, d) + the embedding of each character's absolute log-F0 (B, N)."""
        return x + self.pitch_embed(log_f0[:, None, :]).transpose(1, 2) * mask[..., None]

    def decode(self, frames: torch.Tensor, mel_lens: torch.Tensor) -> torch.Tensor:
        """Length-regulated encodings (B, T, d) -> mels (B, 80, T)."""
        b, t, d = frames.shape
        s = self.hp.decoder_stride
        x = frames + sinusoid_positions(t, d, frames.device)
        if s > 1:  # average pairs of frames; the projection makes s frames per position again
            pad = (-t) % s
            x = F.pad(x, (0, 0, 0, pad)).view(b, (t + pad) // s, s, d).mean(2)
        positions = torch.arange(x.size(1), device=x.device)
        mask = positions[None, :] * s < mel_lens[:, None]
        x = run_blocks(self.decoder, x, mask)
        mels = self.mel_proj(self.decoder_norm(x)).view(b, -1, s, self.hp.num_mels).reshape(b, -1, self.hp.num_mels)
        mels = mels[:, :t].transpose(1, 2)
        frame_mask = torch.arange(t, device=x.device)[None, :] < mel_lens[:, None]
        return torch.where(frame_mask[:, None, :], mels, torch.full_like(mels, -self.hp.max_abs_value))

    def align(self, embedded: torch.Tensor, mels: torch.Tensor, speaker: torch.Tensor, char_lens: torch.Tensor,
              mel_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(log soft alignment with the prior (B, T, N), hard durations (B, N))."""
        scores = self.aligner(embedded, mels, speaker)
        prior = beta_binomial_log_prior(char_lens, mel_lens, embedded.size(1), mels.size(2))
        char_mask = torch.arange(embedded.size(1), device=mels.device)[None, None, :] < char_lens[:, None, None]
        scores = scores.masked_fill(~char_mask, -math.inf)
        log_soft = torch.log_softmax(scores, dim=-1) + prior
        log_soft = torch.log_softmax(log_soft.masked_fill(~torch.isfinite(log_soft), -1e4), dim=-1)
        durations = monotonic_alignment_search(log_soft.detach().cpu().double().numpy(), char_lens.cpu().numpy(),
                                               mel_lens.cpu().numpy())
        return log_soft, torch.from_numpy(durations).to(mels.device)

    def forward(self, chars: torch.Tensor, mels: torch.Tensor, speaker: torch.Tensor, char_lens: torch.Tensor,
                mel_lens: torch.Tensor, f0: torch.Tensor | None = None, pitch_stats: torch.Tensor | None = None
                ) -> dict[str, torch.Tensor]:
        """Training pass. chars (B, N), mels (B, 80, T) targets, speaker (B, 256), lengths (B,);
        with pitch conditioning also f0 (B, T) Hz of each frame (0 unvoiced) and the voice's
        log-F0 (median, spread) (B, 2).

        Returns predicted mels (B, 80, T), log durations (B, N), the hard durations
        (B, N), the log soft alignment (B, T, N) and the character mask; with pitch also
        the predicted and true relative log-F0 per character (B, N) and the statistics the
        embedding suggests (B, 2).
        """
        pitch = self.hp.pitch_conditioning
        if pitch and (f0 is None or pitch_stats is None):
            raise ValueError("a pitch-conditioned model trains on f0 and pitch_stats")
        x, embedded, mask = self.encode(chars, speaker, pitch_stats)
        log_soft, durations = self.align(embedded, mels, speaker, char_lens, mel_lens)
        log_durations = self.duration(x, mask)
        out = {"log_durations": log_durations, "durations": durations, "log_alignment": log_soft, "char_mask": mask}
        if pitch:
            target = character_log_f0(f0, durations, pitch_stats[:, 0]) * mask
            out.update(pitch=self.pitch(x, mask), pitch_target=target, stats=self.pitch_from_speaker(speaker))
            x = self.add_pitch(x, target + pitch_stats[:, :1], mask)
        frames = length_regulate(x, durations, mels.size(2))
        out["mels"] = self.decode(frames, mel_lens)
        return out

    def predict_durations(self, chars: torch.Tensor, speaker: torch.Tensor, pace: float = 1.0,
                          pitch_stats: torch.Tensor | None = None, pitch_shift: float = 0.0
                          ) -> tuple[torch.Tensor, torch.Tensor]:
        """(encodings (B, N, d) with their pitch, frames per character (B, N) int64, at least one frame per item).

        `pitch_stats` (B, 2) the voice's log-F0 median and spread (None or NaN: from the
        embedding); `pitch_shift` semitones added to every character's F0. Both only
        matter to a pitch-conditioned model.
        """
        x, _, mask = self.encode(chars, speaker, pitch_stats)
        frames = (torch.exp(self.duration(x, mask)) - 1).clamp(0, self.hp.max_frames_per_char) / pace
        durations = torch.round(frames).long() * mask
        empty = durations.sum(1) == 0
        if empty.any():
            durations[empty, 0] = 1
        if self.hp.pitch_conditioning:
            median = self.voice_pitch(speaker, pitch_stats)[:, :1] + pitch_shift * math.log(2.0) / 12.0
            x = self.add_pitch(x, (self.pitch(x, mask) + median) * mask, mask)
        return x, durations

    @torch.inference_mode()
    def generate(self, chars: torch.Tensor, speaker: torch.Tensor, pace: float = 1.0,
                 pitch_stats: torch.Tensor | None = None, pitch_shift: float = 0.0
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """chars (B, N) int64 (0 = padding), speaker (B, 256) -> (mels (B, 80, T), durations (B, N)).

        Item b's mel is mels[b, :, :durations[b].sum()]; the rest is padding (-4). Pitch
        arguments as in `predict_durations`.
        """
        x, durations = self.predict_durations(chars, speaker, pace, pitch_stats, pitch_shift)
        frames = length_regulate(x, durations)
        return self.decode(frames, durations.sum(1)), durations
