"""Which of a synthesizer's parameters a voice's fine-tuning changes, and the base's fingerprint.

Fine-tuning one voice trains only the parameters that turn the text's encoding and the
speaker into a mel; the text encoder (and the FastSpeech aligner, used in training only)
stay as they are. The subset is what a tuned voice file stores (`core.tuned`), so it is
kept under `core.tuned.MAX_BYTES` in fp16:

- FastSpeech starter (6.8 M parameters): the speaker projection, the duration and pitch
  predictors and the pitch inputs, the mel decoder and its projection: 3.3 M, 6.6 MB.
- Tacotron (30.9 M): the decoder's prenet, attention RNN, its input projection, the mel
  and stop projections, the speaker projection and the postnet's last layers: 3.0 M, 6 MB.
  Its two 8.4 M residual LSTMs stay frozen (each alone would be 17 MB).

Takes in another language than the model's (English) train less: only the parts that colour the
voice, `TIMBRE_PREFIXES` (a subset of the above). The decoder, which turns the text's encoding
into sounds, would otherwise learn the other language's sounds for English letters, and the
duration predictor its rhythm: a real man's Russian takes made the English words of his clones
twice as hard to recognise (bench/RESULTS.md, "A real person's voice"). The tuned voice file holds
the same share either way; the parts that did not train are the base's. The Tacotron's colour
layers (its speaker projection and output projections) are the same idea, not measured here (the
official weights are not on this machine).
"""
from __future__ import annotations

import torch

from deepfake_audio_core.checkpoint import frozen_fingerprint

TUNABLE_PREFIXES: dict[str, tuple[str, ...]] = {
    "fastspeech": ("speaker_proj.", "duration.", "pitch.", "pitch_embed.", "pitch_stats_proj.",
                   "pitch_from_speaker.", "decoder.", "decoder_norm.", "mel_proj."),
    "tacotron": ("decoder.prenet.", "decoder.attn_net.", "decoder.attn_rnn.", "decoder.rnn_input.",
                 "decoder.mel_proj.", "decoder.stop_proj.", "encoder_proj.", "postnet.conv_project2.",
                 "post_proj."),
}
TIMBRE_PREFIXES: dict[str, tuple[str, ...]] = {  # and, for FastSpeech, its last decoder block (`timbre_prefixes`)
    "fastspeech": ("speaker_proj.", "pitch_stats_proj.", "pitch_from_speaker.", "decoder_norm.", "mel_proj."),
    "tacotron": ("encoder_proj.", "decoder.mel_proj.", "postnet.conv_project2.", "post_proj."),
}
_COUNTERS = ("step", "decoder.r", "stop_threshold")  # buffers that are settings, not weights


def timbre_prefixes(model: torch.nn.Module, architecture: str) -> tuple[str, ...]:
    """What trains on takes in another language: `TIMBRE_PREFIXES`, plus a FastSpeech's last decoder
    block. With that block the clones of a real man tuned on his Russian takes were as like him as
    with the whole share (0.711 against 0.714) and kept their English words; without it they were
    less like him (0.653)."""
    prefixes = TIMBRE_PREFIXES[architecture]
    if architecture == "fastspeech":
        blocks = {int(name.split(".")[1]) for name, _ in model.named_parameters() if name.startswith("decoder.")
                  and name.split(".")[1].isdigit()}
        prefixes += (f"decoder.{max(blocks)}.",) if blocks else ()
    return prefixes


def is_tunable(name: str, architecture: str) -> bool:
    """Whether fine-tuning a voice changes the parameter (or buffer) `name` of `architecture`."""
    return name.startswith(TUNABLE_PREFIXES[architecture]) and name not in _COUNTERS


def tunable_state(model: torch.nn.Module, architecture: str) -> dict[str, torch.Tensor]:
    """The tuned subset of a model's weights (parameters and buffers), detached on the CPU."""
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items() if is_tunable(k, architecture)}


def fingerprint(model: torch.nn.Module, architecture: str) -> str:
    """Hex digest of the parameters fine-tuning leaves frozen: a tuned voice fits a base with the same
    (`core.checkpoint.frozen_fingerprint`)."""
    return frozen_fingerprint(model, architecture, lambda name: is_tunable(name, architecture) or name in _COUNTERS)
