"""Inference modes: how much arithmetic precision a request trades for speed.

    "fast"    the default: the fastest arithmetic that sounds like the reference. Today
              that is "int8" on every CPU (below).
    "int8"    int8 weights: the synthesizer's decoder LSTM cells (fbgemm's dynamic int8
              matmul) and the WaveRNN's recurrent matmuls (the C loop's exact integer
              sums: the same audio for a seed on every x86-64 CPU).
    "fp16"    fp16 weights with fp32 arithmetic in the same places (the default until
              2026-12: on 2 cores its WaveRNN is compute-bound at about 0.7 of real time,
              too slow to stream without stalls while the synthesizer shares the cores).
    "parity"  the reference implementation's exact numbers.

int8 and fp16 are CPU arithmetic: on a GPU every mode but "parity" runs the stages' fp32
fast paths (and where a CPU lacks fbgemm, the synthesizer runs its parity cells).

Why int8 is the default: its sampled audio is as close to the parity loop's as fp16's
(class histograms and spectra: bench/RESULTS.md, quality table), and on 2 cores with
VNNI its WaveRNN runs 2.5-3 times as fast as fp16's.
"""
from __future__ import annotations

from deepfake_audio_core.errors import RequestError

MODES = ("fast", "int8", "fp16", "parity")

# What "fast" means. One place, so that every stage agrees.
FAST = "int8"


def arithmetic(mode: str) -> str:
    """The arithmetic a `mode` runs: "int8", "fp16" or "parity" ("fast" resolved).
    Raises ValueError naming the modes for anything else."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}: use {', '.join(repr(m) for m in MODES)}")
    return FAST if mode == "fast" else mode


def check_mode(mode: str) -> str:
    """`mode` itself if it is one of `MODES`, else a RequestError for the user, naming them."""
    if mode not in MODES:
        raise RequestError(f"Unknown mode {mode!r}: choose {', '.join(MODES)}.")
    return mode
