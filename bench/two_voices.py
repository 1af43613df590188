"""References that hold two voices: what a clone follows, with and without the main-speaker split.

    python bench/two_voices.py --corpus artifacts/corpus --out bench/two_voices.json

A clip cut from an interview often has a second voice in it. Each reference here is one voice's
clips (the main voice, about two thirds of the speech) and another voice's, taking turns, made
from the corpus's voices and, where installed, festival's Russian speaker `nsh` (a real man)
with the ALSA test sounds' woman. Each is cloned on `--texts` held-out sentences by the default
models twice: as `Pipeline.embed` now hears it (`encoder.speaker_turns`: the voice heard most)
and with the split turned off (the mean of every window, as before). Judged by the official
encoder against each voice's own other recordings: similarity of the clone to the main voice
and to the other one, how often it is nearer the main voice, and its F0 (pyin) against the main
voice's. Single-voice references (the same voices alone, 3 and 8 clips) count how often the split
fires where it should not. Prints a table; `--out` writes the numbers (JSON).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deepfake_audio_core.audio_io import load_audio  # noqa: E402
from deepfake_audio.training.evaluate import _prepared_array  # noqa: E402

SAMPLE_RATE = 16000
NSH = Path("/usr/share/festival/voices/russian/msu_ru_nsh_clunits/wav")
ALSA = Path("/usr/share/sounds/alsa")
# (main voice, other voice): men and women, two men, two women, the held-out voices among them
PAIRS = (("flite_rms", "flite_slt"), ("flite_slt", "flite_rms"), ("flite_awb", "festival_ked"),
         ("festival_slt_hts", "espeak_us_f2"), ("flite_awb", "flite_slt"), ("espeak_gb_m2", "flite_kal16"))
GAP = np.zeros(SAMPLE_RATE // 2, np.float32)  # half a second between turns


def _join(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate([x for w in parts for x in (w, GAP)])


def corpus_clips(corpus: Path, voice: str) -> list[Path]:
    return sorted((corpus / ("eval" if (corpus / "eval" / voice).is_dir() else "train") / voice).glob("*.wav"))


def voices(corpus: Path, names: set[str]) -> dict[str, tuple[list[np.ndarray], list[np.ndarray]]]:
    """{voice: (4 clips for references, up to 10 others to judge by)} of the `names` the corpus has
    (6 clips at least), plus `nsh` and the ALSA woman where their packages are installed."""
    out = {}
    for name in sorted(names):
        paths = corpus_clips(corpus, name)[:14]
        if len(paths) >= 6:
            clips = [load_audio(p, SAMPLE_RATE) for p in paths]
            out[name] = (clips[:4], clips[4:])
    nsh = sorted(NSH.glob("*.wav"))
    alsa = [p for p in sorted(ALSA.glob("*.wav")) if p.stem != "Noise"]
    if len(nsh) >= 120 and len(alsa) >= 8:
        out["nsh"] = ([load_audio(p, SAMPLE_RATE) for p in nsh[100:104]],
                      [load_audio(p, SAMPLE_RATE) for p in nsh[110:118]])
        wavs = [load_audio(p, SAMPLE_RATE) for p in alsa[:8]]
        out["alsa"] = ([_join(wavs[:4]), _join(wavs[4:])], [_join(wavs[:4]), _join(wavs[4:])])
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, required=True, help="corpus folder (its voices and held-out sentences)")
    parser.add_argument("--models", type=Path, default=None, help="models folder (default: the default models)")
    parser.add_argument("--texts", type=int, default=3, help="held-out sentences cloned per reference")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    manifest_path = args.corpus / "manifest.json"
    if not manifest_path.is_file():
        print(f"error: {manifest_path} not found: build the corpus with `python -m deepfake_audio.training.corpus`.")
        return 2
    if args.texts < 1:
        parser.error(f"--texts must be at least 1, got {args.texts}")
    import deepfake_audio.pipeline as pipeline_module
    from deepfake_audio.pipeline import Pipeline
    from deepfake_audio.training.measures import pitch_of

    texts = json.loads(manifest_path.read_text())["eval_sentences"][-args.texts:]
    pipe = Pipeline(args.models, watermark=False)
    clips = voices(args.corpus, {v for pair in PAIRS for v in pair})
    pairs = [pair for pair in [*PAIRS, ("nsh", "alsa")] if set(pair) <= set(clips)]
    if not pairs:
        print(f"error: {args.corpus} has none of the voices of {PAIRS} with 6 clips or more.")
        return 2
    embed = lambda w: pipe.encoder.embed_utterance(_prepared_array(w))  # noqa: E731  (as evaluate judges)
    unit = lambda x: x / np.linalg.norm(x)  # noqa: E731
    judge = {name: unit(np.mean([embed(w) for w in held], axis=0)) for name, (_, held) in clips.items()}
    f0 = {name: pitch_of(np.concatenate(refs)).median_hz for name, (refs, _) in clips.items()}
    split = pipeline_module.main_speaker
    report: dict = {"models": pipe.describe(), "texts": texts, "pairs": {}, "single": {}}
    for main_voice, other in pairs:
        main_refs, other_refs = clips[main_voice][0], clips[other][0]
        # main, other, main, other: two thirds of the speech the main voice's
        reference = _join([main_refs[0], main_refs[1], other_refs[0], main_refs[2], main_refs[3], other_refs[1]])
        row = {}
        for mode in ("split", "whole"):
            pipeline_module.main_speaker = split if mode == "split" else (lambda *a, **k: None)
            try:
                results = [pipe.clone(reference, t, seed=k, sample_rate=SAMPLE_RATE) for k, t in enumerate(texts)]
                note = pipe.plan(reference, texts[0], sample_rate=SAMPLE_RATE).note
            finally:
                pipeline_module.main_speaker = split
            embeds = [embed(r.wav) for r in results]
            ratios = [pitch_of(r.wav).median_hz / f0[main_voice] for r in results]
            row[mode] = {"to_main": float(np.mean([judge[main_voice] @ e for e in embeds])),
                         "to_other": float(np.mean([judge[other] @ e for e in embeds])),
                         "nearer_main": float(np.mean([judge[main_voice] @ e > judge[other] @ e for e in embeds])),
                         "f0_ratio": float(np.median(ratios)),
                         "f0_within_15": float(np.mean([abs(r - 1) <= 0.15 for r in ratios])),
                         "noted": bool(note and "two voices" in note)}
        report["pairs"][f"{main_voice} + {other}"] = row
    fired = []
    for name, (refs, held) in clips.items():  # one voice, 10 s and 20-40 s
        for parts in (refs[:3], (refs + held)[:8]):
            reference, k = _join(parts), len(parts)
            fired.append(pipeline_module.main_speaker(*_partials(pipe, reference)) is not None)
            report["single"][f"{name} x{k}"] = {"seconds": len(reference) / SAMPLE_RATE, "split": fired[-1]}

    print(f"{'main + other':34s} {'split: to main / other':>24s} {'nearer main':>11s} {'F0/main':>8s}   "
          f"{'whole: to main / other':>24s} {'nearer main':>11s} {'F0/main':>8s}")
    for key, row in report["pairs"].items():
        cells = [f"{row[m]['to_main']:11.3f} / {row[m]['to_other']:.3f} {row[m]['nearer_main']:11.0%} "
                 f"{row[m]['f0_ratio']:8.2f}" for m in ("split", "whole")]
        print(f"{key:34s} {cells[0]}   {cells[1]}")
    print(f"single-voice references split: {sum(fired)} of {len(fired)}")
    if args.out:
        args.out.write_text(json.dumps(report, indent=1))
    return 0


def _partials(pipe, wav: np.ndarray) -> tuple[np.ndarray, list[slice], int]:
    """What `Pipeline.embed` gives `main_speaker` for `wav`."""
    from encoder.inference import prepare_reference
    prepared = prepare_reference(wav, SAMPLE_RATE)
    _, partials, slices = pipe.encoder.embed_utterance(prepared, return_partials=True)
    return partials, slices, len(prepared)


if __name__ == "__main__":
    raise SystemExit(main())
