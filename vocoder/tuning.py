"""Which of the starter vocoder's parameters a voice's fine-tuning changes, and the base's fingerprint.

A tuned voice (`core.tuned`) may carry its own starter vocoder: the job that tunes the voice
(`deepfake_audio.training.voice_tuning`) continues the starter vocoder on the voice's takes as
well, which brings a voice far from the ones it learnt from (a high voice, a child's) nearer
itself. Only the parts that shape the output train, and only they are stored, in fp16:

- the last `TUNED_BLOCKS` of the backbone's blocks and its output norm (what the mel's speaker
  detail turns into), and
- the three heads: the pitch read off the mel, and the harmonic and noise filters.

For the shipped vocoder (6 blocks of 192 channels, 1.6 M parameters) that is 1.05 M
parameters, 2.1 MB, and a starter voice's file 9.1 MB; the whole vocoder would take it past
10 MB for little more: on a child's voice, 2.3 minutes of tuning brought the clones +0.042 nearer
with 4 blocks, +0.037 with 3 and +0.044 with the whole vocoder (bench/RESULTS.md). The rest
stays the base's, so a voice's vocoder only fits the base it was tuned on (`fingerprint`).
"""
from __future__ import annotations

import torch

from deepfake_audio_core.checkpoint import frozen_fingerprint

TUNED_BLOCKS = 4  # of the backbone's blocks, counted from its output (3: 85 % of the gain; all: 102 %)
HEADS = ("backbone.norm.", "pitch.", "harmonic.", "noise.")
_COUNTERS = ("step",)  # a buffer that is a setting, not a weight


def tunable_prefixes(blocks: int) -> tuple[str, ...]:
    """Name prefixes of the tuned parameters of a starter vocoder with `blocks` backbone blocks."""
    first = max(0, blocks - TUNED_BLOCKS)
    return tuple(f"backbone.blocks.{k}." for k in range(first, blocks)) + HEADS


def is_tunable(name: str, blocks: int) -> bool:
    return name.startswith(tunable_prefixes(blocks))


def fingerprint(model: torch.nn.Module) -> str:
    """Hex digest of the parameters a voice's tuning leaves frozen (`core.checkpoint.frozen_fingerprint`)."""
    blocks = len(model.backbone.blocks)
    return frozen_fingerprint(model, "starter-vocoder", lambda name: is_tunable(name, blocks) or name in _COUNTERS)
