"""How well a vocoder rebuilds speech it never heard: held-out voices, and those voices moved
in pitch and vocal-tract length by sox, vocoded from their own (true) mels.

    python -m deepfake_audio.training.vocoder_check --corpus artifacts/corpus --vocoder runs/starter_vocoder/vocoder.pt griffinlim

For every vocoder named (a starter vocoder checkpoint, or `griffinlim`), and every clip:
DNSMOS OVRL of the result, its median F0 (pyin) over the recording's, its voiced fraction,
pocketsphinx's word error rate, how much of the speaker it keeps (the GE2E encoder's cosine
between the result and the recording cut to the same length, so that the encoder's framing
of the audio cannot differ), and the same measures of the recordings themselves. The
held-out voices are the corpus's (`eval/`), never in any training transform.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from deepfake_audio_core.errors import DeepfakeAudioError

# (name, sox effects): the held-out voices as they are, lower and higher, with a longer and a
# shorter vocal tract. speed x then pitch -1200 log2(x) moves the formants alone.
TRANSFORMS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("as recorded", ()),
    ("pitch -6 st", ("pitch", "-600")),
    ("pitch +6 st", ("pitch", "600")),
    ("formants x0.88", ("speed", "0.88", "pitch", "221.3")),
    ("formants x1.15", ("speed", "1.15", "pitch", "-242.0")),
)


@dataclass
class ClipScore:
    voice: str
    transform: str
    vocoder: str
    dnsmos: float
    f0_ratio: float  # median F0 of the result over the recording's
    voiced_fraction: float
    recording_voiced_fraction: float
    wer: float
    similarity: float  # GE2E cosine of the result to the recording (1.0 for the recording itself)


def _transform(path: Path, effects: tuple[str, ...]) -> np.ndarray:
    import soundfile as sf
    if not effects:
        return sf.read(path, dtype="float32")[0]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "t.wav"
        subprocess.run(["sox", str(path), "-r", "16000", str(out), *effects, "rate", "16000"], check=True,
                       capture_output=True, timeout=60)
        return sf.read(out, dtype="float32")[0]


def load_vocoder(name: str):
    """`griffinlim`, or a starter vocoder checkpoint path: a function mel -> wav."""
    if name == "griffinlim":
        from deepfake_audio.pipeline import FAST_GRIFFIN_LIM
        from synthesizer.audio import griffin_lim
        return lambda mel, seed: griffin_lim(mel, rng=np.random.RandomState(seed), **FAST_GRIFFIN_LIM)
    from vocoder.starter import StarterVocoder
    model = StarterVocoder(name)
    return lambda mel, seed: model.infer_waveform(mel, seed=seed)


def check(corpus: Path, vocoders: list[str], per_voice: int = 4,
          transforms: tuple[str, ...] | None = None) -> list[ClipScore]:
    """Scores of every clip, transform (`TRANSFORMS`, or those named in `transforms`) and vocoder,
    the recording itself included as "recording"."""
    from deepfake_audio.training.evaluate import Recogniser, normalise_words, word_errors
    from deepfake_audio.training.measures import dnsmos, pitch_of
    from synthesizer.audio import melspectrogram
    manifest = corpus / "manifest.json"
    if not manifest.is_file():
        raise DeepfakeAudioError(f"{manifest} not found: build the corpus first.")
    voices = json.loads(manifest.read_text())["held_out_voices"]
    recognise = Recogniser()
    embed = _embedder()
    runners = {name: load_vocoder(name) for name in vocoders}
    scores: list[ClipScore] = []
    for voice in voices:
        for k, path in enumerate(sorted((corpus / "eval" / voice).glob("*.wav"))[:per_voice]):
            words = normalise_words(path.with_suffix(".txt").read_text(encoding="utf-8"))
            for label, effects in (t for t in TRANSFORMS if transforms is None or t[0] in transforms):
                recording = _transform(path, effects)
                recording = recording / max(float(np.abs(recording).max()), 1e-6) * 0.9
                reference = pitch_of(recording)
                mel = melspectrogram(recording)
                outputs = {"recording": recording}
                outputs.update({name: run(mel, k) for name, run in runners.items()})
                length = min(len(w) for w in outputs.values())
                target = embed(recording[:length])
                for name, wav in outputs.items():
                    wav = np.asarray(wav, dtype=np.float32)
                    wav = wav / max(float(np.abs(wav).max()), 1e-6) * 0.9
                    pitch = pitch_of(wav)
                    errors = word_errors(words, normalise_words(recognise(wav)))
                    scores.append(ClipScore(voice, label, name, dnsmos(wav), pitch.median_hz / reference.median_hz,
                                            pitch.voiced_fraction, reference.voiced_fraction,
                                            errors / max(len(words), 1), float(embed(wav[:length]) @ target)))
    return scores


def _embedder():
    """audio (samples,) at 16 kHz -> unit GE2E embedding (256,), as the encoder hears a reference."""
    from encoder.inference import Encoder, prepare_reference
    encoder = Encoder()
    return lambda wav: encoder.embed_utterance(prepare_reference(wav, 16000, min_speech_seconds=0.0))


MEASURES = ("dnsmos", "f0_ratio", "voiced_fraction", "wer", "similarity")  # averaged by `summarise`


def summarise(scores: list[ClipScore]) -> dict:
    """Means per vocoder and per (vocoder, transform)."""
    def mean(items, key):
        values = [getattr(s, key) for s in items if np.isfinite(getattr(s, key))]
        return round(float(np.mean(values)), 3) if values else None
    out: dict = {}
    for name in dict.fromkeys(s.vocoder for s in scores):
        mine = [s for s in scores if s.vocoder == name]
        row = {key: mean(mine, key) for key in MEASURES}
        row["f0_within_15pct"] = round(float(np.mean([abs(s.f0_ratio - 1) <= 0.15 for s in mine])), 3)
        row["transforms"] = {t: {key: mean([s for s in mine if s.transform == t], key)
                                 for key in MEASURES}
                             for t in dict.fromkeys(s.transform for s in mine)}
        out[name] = row
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deepfake_audio.training.vocoder_check",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, required=True, help="corpus folder with manifest.json")
    parser.add_argument("--vocoder", nargs="+", required=True, help="griffinlim and/or starter vocoder checkpoints")
    parser.add_argument("--per-voice", type=int, default=4, help="clips per held-out voice (default 4)")
    parser.add_argument("--transforms", nargs="+", default=None, choices=[label for label, _ in TRANSFORMS],
                        metavar="NAME", help="only these versions of the voices (default: all: "
                        + ", ".join(f"'{label}'" for label, _ in TRANSFORMS) + ")")
    parser.add_argument("--out", type=Path, default=None, help="write every score and the summary as JSON")
    args = parser.parse_args(argv)
    try:
        scores = check(args.corpus, args.vocoder, args.per_voice, args.transforms)
    except DeepfakeAudioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    summary = summarise(scores)
    if args.out:
        args.out.write_text(json.dumps({"summary": summary, "clips": [asdict(s) for s in scores]}, indent=1))
    for name, row in summary.items():
        print(f"{name}: DNSMOS {row['dnsmos']}, F0 ratio {row['f0_ratio']} (within 15 %: "
              f"{row['f0_within_15pct']:.0%}), voiced {row['voiced_fraction']}, WER {row['wer']}, "
              f"speaker kept {row['similarity']}")
        for label, t in row["transforms"].items():
            print(f"    {label:>15}: DNSMOS {t['dnsmos']}, F0 ratio {t['f0_ratio']}, voiced {t['voiced_fraction']}, "
                  f"WER {t['wer']}, speaker kept {t['similarity']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
