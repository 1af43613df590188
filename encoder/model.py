"""The GE2E speaker encoder network (state-dict layout of the published `encoder.pt`)."""
from __future__ import annotations

import torch
from torch import nn

from encoder.hparams import hparams as hp


class SpeakerEncoder(nn.Module):
    """3-layer LSTM over mel frames -> linear -> ReLU -> L2 normalisation.

    Input: (batch, frames, 40) float32 power mel. Output: (batch, 256) unit-norm embeddings.
    `similarity_weight` / `similarity_bias` are GE2E loss parameters, used only in training
    but part of the checkpoint.
    """

    def __init__(self, mel_channels: int = hp.mel_n_channels, hidden_size: int = hp.model_hidden_size,
                 embedding_size: int = hp.model_embedding_size, num_layers: int = hp.model_num_layers):
        super().__init__()
        self.lstm = nn.LSTM(input_size=mel_channels, hidden_size=hidden_size, num_layers=num_layers,
                            batch_first=True)
        self.linear = nn.Linear(hidden_size, embedding_size)
        self.relu = nn.ReLU()
        self.similarity_weight = nn.Parameter(torch.tensor([10.0]))
        self.similarity_bias = nn.Parameter(torch.tensor([-5.0]))

    def forward(self, utterances: torch.Tensor) -> torch.Tensor:
        """(batch, frames, n_mels) -> (batch, embedding_size), each row of norm ~1."""
        _, (hidden, _) = self.lstm(utterances)
        embeds_raw = self.relu(self.linear(hidden[-1]))
        # The epsilon is the reference's; it keeps an all-zero ReLU output finite.
        return embeds_raw / (torch.norm(embeds_raw, dim=1, keepdim=True) + 1e-5)


# Hyperparameters (names of encoder.hparams) that size the network; a trained checkpoint
# keeps those it overrides under its "hparams" entry.
MODEL_HPARAMS = {"model_hidden_size": "hidden_size", "model_embedding_size": "embedding_size",
                 "model_num_layers": "num_layers"}


def speaker_encoder_from_hparams(overrides=None) -> SpeakerEncoder:
    """A SpeakerEncoder of the published size, or sized by `overrides` ({hparam name: value})."""
    overrides = dict(overrides or {})
    return SpeakerEncoder(**{arg: overrides.get(name, getattr(hp, name)) for name, arg in MODEL_HPARAMS.items()})
