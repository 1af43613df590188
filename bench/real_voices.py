"""Issue 24's measures on recordings of real people that the machine already has.

    python bench/real_voices.py --corpus artifacts/corpus --out bench/real_voices.json

The corpus's held-out voices are synthetic (flite). Two sets of recordings of real people
come with Debian packages, and no starter model has heard either:

- `nsh`: a man reading Russian sentences, the recordings behind festival's Russian voice
  (package `festvox-ru`, BSD-like licence): 620 clips of 2-16 s, studio quality.
- `alsa`: a woman saying the names of loudspeaker channels ("Front left"), the test sounds of
  `alsa-utils` (GPL-2): eight clips of about 1.4 s, joined here into longer recordings.

Each voice is cloned from each of its references (as the studio does with an uploaded clip)
on `--texts` of the corpus's held-out English sentences, with the default models (starter
synthesizer and starter vocoder unless a models folder says otherwise), and judged as
`training.evaluate` judges the held-out voices:

- identification among hard candidates: the voice itself and its 3-semitone twins up and
  down (sox `pitch`, which moves the formants with the pitch), the other real voice and the
  corpus's held-out voices, each the mean embedding of its held-out recordings;
- similarity: cosine of the clone to its own voice's mean embedding;
- F0 (pyin) of the clone against its reference's median, within 15 %, and voiced fraction;
- DNSMOS OVRL; WER (pocketsphinx) of the English clones.

A voice whose package is missing is skipped with a note. Writes `--out` (JSON) and prints a table.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deepfake_audio_core.audio_io import load_audio  # noqa: E402
from deepfake_audio.training.evaluate import (TWIN_SEMITONES, Recogniser, _prepared_array, _sox,  # noqa: E402
                                              word_error_rate)

SAMPLE_RATE = 16000
NSH = Path("/usr/share/festival/voices/russian/msu_ru_nsh_clunits/wav")
ALSA = Path("/usr/share/sounds/alsa")
LONGEST_REFERENCE_S = 8.0  # a reference is cut to this, like a clip a user records


def _load(path: Path) -> np.ndarray:
    return load_audio(path, SAMPLE_RATE)


def real_voices(seed: int = 0, nsh: Path = NSH, alsa: Path = ALSA
                ) -> dict[str, tuple[list[np.ndarray], list[np.ndarray]]]:
    """{name: (references, held-out recordings)} for each real voice whose package is installed
    (`nsh` and `alsa` are the folders of their clips)."""
    voices = {}
    clips = sorted(nsh.glob("*.wav"))
    if clips:
        rng = np.random.default_rng(seed)
        picked = [clips[i] for i in rng.choice(len(clips), 10, replace=False)]
        wavs = [_load(p) for p in picked]
        voices["nsh"] = ([w[:int(LONGEST_REFERENCE_S * SAMPLE_RATE)] for w in wavs[:2]], wavs[2:])
    else:
        print(f"nsh skipped: no clips in {nsh} (apt-get install festvox-ru)")
    names = [p for p in sorted(alsa.glob("*.wav")) if p.stem != "Noise"]
    if len(names) >= 8:
        wavs = [_load(p) for p in names[:8]]
        gap = np.zeros(SAMPLE_RATE // 5, np.float32)
        join = lambda parts: np.concatenate([x for w in parts for x in (w, gap)])  # noqa: E731
        voices["alsa"] = ([join(wavs[:4])], [join(wavs[4:6]), join(wavs[6:8])])
    else:
        print(f"alsa skipped: fewer than 8 channel clips in {alsa} (apt-get install alsa-utils)")
    return voices


def held_out_voices(corpus: Path, n: int = 4) -> dict[str, list[np.ndarray]]:
    """The corpus's held-out voices' recordings, as distractors."""
    out = {}
    for folder in sorted((corpus / "eval").iterdir()):
        wavs = sorted(folder.glob("*.wav"))[:n]
        if wavs:
            out[folder.name] = [_load(p) for p in wavs]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, required=True, help="corpus folder (its held-out sentences and voices)")
    parser.add_argument("--models", type=Path, default=None, help="models folder (default: saved_models/default)")
    parser.add_argument("--texts", type=int, default=4, help="held-out sentences cloned per reference")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--nsh", type=Path, default=NSH, help="folder of the nsh clips")
    parser.add_argument("--alsa", type=Path, default=ALSA, help="folder of the ALSA channel clips")
    args = parser.parse_args(argv)

    from deepfake_audio.pipeline import Pipeline
    from deepfake_audio.training.measures import dnsmos, pitch_of
    if args.texts < 1:
        parser.error(f"--texts must be at least 1, got {args.texts}")
    manifest_path = args.corpus / "manifest.json"
    if not manifest_path.is_file():
        print(f"error: {manifest_path} not found: build the corpus with `python -m deepfake_audio.training.corpus`.")
        return 2
    manifest = json.loads(manifest_path.read_text())
    texts = manifest["eval_sentences"][:args.texts]
    voices = real_voices(args.seed, args.nsh, args.alsa)
    if not voices:
        print("no real voice installed")
        return 1
    pipe = Pipeline(args.models, watermark=False)
    recognise = Recogniser()
    embed = lambda w: pipe.encoder.embed_utterance(_prepared_array(w))  # noqa: E731  (as evaluate judges)
    unit = lambda x: x / np.linalg.norm(x)  # noqa: E731
    candidates = {}
    for name, (_, held) in voices.items():
        candidates[name] = unit(np.mean([embed(w) for w in held], axis=0))
        for st in TWIN_SEMITONES:
            candidates[f"{name} {st:+d} st"] = unit(np.mean([embed(_sox(w, ("pitch", str(100 * st)))) for w in held],
                                                            axis=0))
    for name, wavs in held_out_voices(args.corpus).items():
        candidates[name] = unit(np.mean([embed(w) for w in wavs], axis=0))
    keys = list(candidates)
    table = np.stack([candidates[k] for k in keys])
    report = {"models": pipe.describe(), "candidates": keys, "voices": {}}
    for name, (references, held) in voices.items():
        rows = []
        for r, reference in enumerate(references):
            reference_f0 = pitch_of(reference).median_hz
            for k, text in enumerate(texts):
                result = pipe.clone(reference, text, seed=args.seed + k, sample_rate=SAMPLE_RATE)
                e = embed(result.wav)
                pitch = pitch_of(result.wav)
                rows.append({"reference": r, "text": text, "taken_for": keys[int(np.argmax(table @ e))],
                             "similarity": float(candidates[name] @ e), "reference_f0": reference_f0,
                             "f0_ratio": pitch.median_hz / reference_f0, "voiced": pitch.voiced_fraction,
                             "dnsmos": dnsmos(result.wav), "heard": recognise(result.wav)})
        summary = {
            "clones": len(rows),
            "identified_hard": float(np.mean([row["taken_for"] == name for row in rows])),
            "similarity": float(np.mean([row["similarity"] for row in rows])),
            "f0_within_15": float(np.mean([abs(row["f0_ratio"] - 1) <= 0.15 for row in rows])),
            "voiced": float(np.mean([row["voiced"] for row in rows])),
            "dnsmos": float(np.mean([row["dnsmos"] for row in rows])),
            "recordings_dnsmos": float(np.mean([dnsmos(w) for w in held])),
            "wer": word_error_rate([row["text"] for row in rows], [row["heard"] for row in rows]),
            "taken_for": {k: sum(row["taken_for"] == k for row in rows) for k in keys
                          if any(row["taken_for"] == k for row in rows)},
        }
        report["voices"][name] = {"summary": summary, "clones": rows}
    print(f"{len(keys)} candidates: {', '.join(keys)}")
    print("| voice | clones | identified (hard) | similarity | F0 within 15 % | voiced | DNSMOS (recordings) | WER | taken for |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, entry in report["voices"].items():
        s = entry["summary"]
        taken = ", ".join(f"{k} {v}" for k, v in s["taken_for"].items())
        print(f"| {name} | {s['clones']} | {s['identified_hard']:.0%} | {s['similarity']:.3f} | {s['f0_within_15']:.0%} "
              f"| {s['voiced']:.2f} | {s['dnsmos']:.2f} ({s['recordings_dnsmos']:.2f}) | {s['wer']:.1%} | {taken} |")
    if args.out:
        args.out.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
