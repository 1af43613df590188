"""Pseudo-speakers: the corpus's training voices moved in pitch, vocal-tract length and tempo by sox.

    python -m deepfake_audio.training.pseudo_speakers artifacts/corpus/train artifacts/pseudo --speakers 150

Each pseudo-speaker has a target median pitch drawn log-uniformly from 65 to 380 Hz (low
male voices through women's to children's), takes the base voice of the training split
nearest to it in pitch among three drawn at random (never an `_augN` variant, and never
a held-out voice: those are not in train/), and reads `--per-speaker` of that voice's
recordings through sox with

    pitch    the shift from the base voice's median F0 to the target (at most 12 semitones)
    formant  a longer or shorter vocal tract, x0.82 to x1.22, leaning with the pitch shift
             (as in people: children and most women have both higher pitch and shorter
             tracts) but not always
    tempo    x0.85 to x1.15 Output: OUT/<pseudo>/<utterance>.wav + .txt (the generic
layout) and OUT/pseudo_speakers.json with every speaker's transform. Re-running skips
what exists.
"""
from __future__ import annotations

import argparse
import json
import math
import random
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from deepfake_audio_core.errors import DeepfakeAudioError
from deepfake_audio.training.corpus import SAMPLE_RATE

TARGET_HZ = (65.0, 380.0)
MAX_CENTS = 1200.0
FORMANT = (0.82, 1.22)
TEMPO = (0.85, 1.15)


def base_pitch(folder: Path, files: int = 8) -> float:
    """Median F0 (Hz) of a voice over a few of its recordings."""
    from deepfake_audio_core.audio_io import load_audio
    from deepfake_audio_core.pitch import track_voice_f0
    voiced = []
    for path in sorted(folder.glob("*.wav"))[:files]:
        track = track_voice_f0(load_audio(path, SAMPLE_RATE))
        voiced.append(track.f0[track.voiced])
    values = np.concatenate(voiced) if voiced else np.zeros(0)
    return float(np.median(values)) if values.size else 120.0


def draw_transform(rng: random.Random, cents: float) -> dict[str, float]:
    """One pseudo-speaker's pitch shift (cents, given), formant scale and tempo factor."""
    pitch = cents
    # formants lean the way the pitch goes (a third of an octave of pitch ~ 4 % of formant), plus spread
    lean = 0.04 * pitch / 400
    log_formant = min(max(lean + rng.gauss(0, 0.07), math.log(FORMANT[0])), math.log(FORMANT[1]))
    return {"pitch": round(pitch, 1), "formant": round(math.exp(log_formant), 3),
            "tempo": round(rng.uniform(*TEMPO), 3)}


def sox_effects(transform: dict[str, float]) -> list[str]:
    """sox effects for a transform: speed moves pitch and formants together, pitch then sets the pitch."""
    formant = transform["formant"]
    cents = transform["pitch"] - 1200 * math.log2(formant)
    effects = ["speed", f"{formant:.4f}", "pitch", f"{cents:.1f}"]
    if transform["tempo"] != 1.0:
        effects += ["tempo", "-s", f"{transform['tempo']:.4f}"]
    return effects


def _make(job: tuple[Path, Path, list[str]]) -> bool:
    source, target, effects = job
    if target.is_file() and target.with_suffix(".txt").is_file():
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.stem + ".part.wav")
    subprocess.run(["sox", str(source), "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16", str(part), *effects,
                    "rate", str(SAMPLE_RATE)], check=True, capture_output=True, timeout=120)
    part.replace(target)
    shutil.copyfile(source.with_suffix(".txt"), target.with_suffix(".txt"))
    return True


def build(train: Path, out: Path, speakers: int = 150, per_speaker: int = 24, seed: int = 0, jobs: int = 2,
          quiet: bool = False) -> dict:
    """Make the pseudo-speakers from the base voices under `train`; returns the manifest."""
    if shutil.which("sox") is None:
        raise DeepfakeAudioError("`sox` is not installed: run `bash scripts/setup.sh --dev`.")
    bases = sorted(p for p in Path(train).iterdir() if p.is_dir() and not re.search(r"_aug\d+$", p.name))
    if not bases:
        raise DeepfakeAudioError(f"no speaker folders under {train}")
    rng = random.Random(seed)
    pitches = {base.name: base_pitch(base) for base in bases}
    manifest: dict = {"source": str(train), "seed": seed, "base_pitch_hz": pitches, "speakers": {}}
    jobs_list = []
    for k in range(speakers):
        target = math.exp(rng.uniform(*map(math.log, TARGET_HZ)))
        base = min(rng.sample(bases, min(3, len(bases))), key=lambda b: abs(math.log(target / pitches[b.name])))
        cents = max(-MAX_CENTS, min(MAX_CENTS, 1200 * math.log2(target / pitches[base.name])))
        transform = draw_transform(rng, cents)
        name = f"pseudo{k:03d}_{base.name}"
        manifest["speakers"][name] = {"base": base.name, "target_hz": round(target, 1), **transform}
        files = sorted(base.glob("*.wav"))
        for source in rng.sample(files, min(per_speaker, len(files))):
            jobs_list.append((source, out / name / f"{name}_{source.stem}.wav", sox_effects(transform)))
    from tqdm import tqdm
    out.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        made = sum(tqdm(pool.map(_make, jobs_list), total=len(jobs_list), desc="pseudo-speakers", disable=quiet,
                        mininterval=5))
    manifest.update(utterances=len(jobs_list), made_this_run=made)
    (out / "pseudo_speakers.json").write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deepfake_audio.training.pseudo_speakers",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("train", type=Path, help="the corpus's train/ folder")
    parser.add_argument("out", type=Path, help="output folder (re-run to resume)")
    parser.add_argument("--speakers", type=int, default=150, help="pseudo-speakers to make (default 150)")
    parser.add_argument("--per-speaker", type=int, default=24, help="utterances each (default 24)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2, help="parallel sox processes (default 2)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:
        manifest = build(args.train, args.out, args.speakers, args.per_speaker, args.seed, args.jobs, args.quiet)
    except DeepfakeAudioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{len(manifest['speakers'])} pseudo-speakers, {manifest['utterances']} utterances -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
