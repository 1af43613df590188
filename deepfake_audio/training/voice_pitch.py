"""Fit `encoder.voice_pitch`: a voice's median F0 from its speaker embedding.

    python -m deepfake_audio.training.voice_pitch artifacts/vocoder_data saved_models/starter/voice_pitch.pt

From a starter-vocoder pack (`deepfake_audio.training.starter_vocoder_data`: audio and
F0 per utterance, speakers), `--per-speaker` utterances of every speaker are embedded by
the official encoder; a ridge regression maps each embedding to its utterance's median
log-F0. Before the fit on every voice, each base voice (a corpus voice with all its
variants and pseudo-speakers) is held out in turn and predicted by a fit on the others:
that error is printed and stored with the weights.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np
import torch

from deepfake_audio.training.commands import console_entry
from deepfake_audio.training.files import atomic_write
from deepfake_audio.training.starter_vocoder_data import VocoderPack
from encoder.voice_pitch import ARCHITECTURE

RIDGE = 0.1


def base_voice(speaker: str) -> str:
    """The corpus voice a speaker was made from: `pseudo012_flite_kal` and `flite_kal_aug2` -> `flite_kal`."""
    return re.sub(r"_aug\d+$", "", re.sub(r"^pseudo\d+_", "", speaker))


def fit_ridge(x: np.ndarray, y: np.ndarray, ridge: float = RIDGE) -> tuple[np.ndarray, float]:
    """(w, bias) minimising |x w + bias - y|^2 + ridge |w|^2."""
    xb = np.hstack([x, np.ones((len(x), 1))])
    penalty = ridge * np.eye(xb.shape[1])
    penalty[-1, -1] = 0
    solution = np.linalg.solve(xb.T @ xb + penalty, xb.T @ y)
    return solution[:-1], float(solution[-1])


def examples(pack: VocoderPack, per_speaker: int, seed: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(embeddings (N, 256), median log-F0 (N,), speakers) of up to `per_speaker` voiced utterances each."""
    from encoder.inference import Encoder, default_weights_path, prepare_reference
    from deepfake_audio_core.errors import AudioError
    encoder = Encoder(default_weights_path())
    rng = np.random.default_rng(seed)
    by_speaker: dict[str, list[int]] = {}
    for u, speaker in enumerate(pack.speakers):
        by_speaker.setdefault(speaker, []).append(u)
    xs, ys, speakers = [], [], []
    for speaker, items in sorted(by_speaker.items()):
        for u in rng.permutation(items)[:per_speaker]:
            a, b = int(pack.offsets[u]), int(pack.offsets[u + 1])
            f0 = np.asarray(pack.f0[a:b], dtype=np.float32)
            if (f0 > 0).sum() < 20:
                continue
            wav = np.asarray(pack.audio[a * 200:b * 200], dtype=np.float32) / 32767
            try:
                xs.append(encoder.embed_utterance(prepare_reference(wav, 16000)))
            except AudioError:
                continue
            ys.append(float(np.log(np.median(f0[f0 > 0]))))
            speakers.append(speaker)
    return np.asarray(xs), np.asarray(ys), speakers


def held_out_error(x: np.ndarray, y: np.ndarray, speakers: list[str]) -> np.ndarray:
    """Relative F0 error of every example, predicted by a fit without its base voice."""
    bases = np.asarray([base_voice(s) for s in speakers])
    errors = np.zeros(len(y))
    for base in sorted(set(bases)):
        out = bases == base
        if out.all():
            continue
        w, bias = fit_ridge(x[~out], y[~out])
        errors[out] = np.abs(np.exp(x[out] @ w + bias - y[out]) - 1)
    return errors


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m deepfake_audio.training.voice_pitch",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("pack", type=Path, help="starter-vocoder pack folder")
    parser.add_argument("out", type=Path, help="weights to write (voice_pitch.pt)")
    parser.add_argument("--per-speaker", type=int, default=4, help="utterances per speaker (default 4)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    args = parser.parse_args(argv)
    x, y, speakers = examples(VocoderPack.open(args.pack), args.per_speaker, args.seed)
    errors = held_out_error(x, y, speakers)
    w, bias = fit_ridge(x, y)
    summary = {"voices": len(set(speakers)), "examples": len(y),
               "held_out_median_error": round(float(np.median(errors)), 4),
               "held_out_within_15pct": round(float(np.mean(errors <= 0.15)), 4)}
    atomic_write(args.out, lambda tmp: torch.save({"architecture": ARCHITECTURE, "w": torch.from_numpy(w).float(),
                                                   "bias": torch.tensor(bias), **summary}, tmp))
    print(f"{summary['voices']} voices, {summary['examples']} utterances; base voices held out: median error "
          f"{summary['held_out_median_error']:.1%}, within 15 % {summary['held_out_within_15pct']:.0%} -> {args.out}")
    return summary


cli = console_entry(main)

if __name__ == "__main__":
    sys.exit(cli())
