"""Measure a set of models on the held-out part of a corpus built by `deepfake_audio.training.corpus`.

    python -m deepfake_audio.training.evaluate --corpus DIR [--models DIR] [--vocoder griffinlim] [--out report.json]

* Intelligibility: pocketsphinx (offline; its US English model ships in the wheel) word
  error rate of the clones of every held-out sentence in every held-out voice. The same
  recogniser on the held-out voices' own recordings gives the floor.
* Cloning: for each clone, whether its speaker embedding is closer to its own voice's
  reference than to every other held-out voice's reference; and the mean cosine
  similarity between a clone and its reference.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from deepfake_audio.core.errors import DeepfakeAudioError

SAMPLE_RATE = 16000


def normalise_words(text: str) -> list[str]:
    """Lower-case words, digits spelled out as the synthesizer would, punctuation dropped."""
    from synthesizer.text.cleaners import english_cleaners
    return re.findall(r"[a-z']+", english_cleaners(text).replace("-", " "))


def word_errors(reference: list[str], hypothesis: list[str]) -> int:
    """Levenshtein distance in words (substitutions + deletions + insertions)."""
    previous = list(range(len(hypothesis) + 1))
    for i, ref_word in enumerate(reference, 1):
        current = [i]
        for j, hyp_word in enumerate(hypothesis, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ref_word != hyp_word)))
        previous = current
    return previous[-1]


def word_error_rate(references: list[str], hypotheses: list[str]) -> float:
    """Corpus WER: total word errors over total reference words."""
    errors = sum(word_errors(normalise_words(r), normalise_words(h)) for r, h in zip(references, hypotheses))
    words = sum(len(normalise_words(r)) for r in references)
    return errors / max(words, 1)


class Recogniser:
    """pocketsphinx's default US English recogniser over 16 kHz float audio."""

    def __init__(self):
        try:
            from pocketsphinx import Decoder
        except ImportError:
            raise DeepfakeAudioError("pocketsphinx is not installed: run `bash scripts/setup.sh --dev`.") from None
        self._decoder = Decoder(samprate=SAMPLE_RATE, loglevel="FATAL")

    def __call__(self, wav: np.ndarray) -> str:
        pcm = (np.clip(wav, -1, 1) * 32767).astype("<i2").tobytes()
        self._decoder.start_utt()
        self._decoder.process_raw(pcm, full_utt=True)
        self._decoder.end_utt()
        hyp = self._decoder.hyp()
        return hyp.hypstr if hyp is not None else ""


@dataclass
class VoiceReport:
    voice: str
    sentences: int
    wer: float
    floor_wer: float  # the recordings themselves
    identified: float  # fraction of clones closest to their own voice's reference
    similarity: float  # mean cosine(clone, own reference)
    vocoder_floor_wer: float | None = None  # the vocoder on the recordings' own mels


@dataclass
class Report:
    models: dict[str, str]
    vocoder: str
    wer: float
    floor_wer: float
    identified: float
    similarity: float
    voices: list[VoiceReport] = field(default_factory=list)
    vocoder_floor_wer: float | None = None  # what a perfect synthesizer would score with this vocoder


def evaluate(corpus: Path, models: Path | None = None, vocoder: str = "griffinlim", seed: int = 0,
             limit: int | None = None, vocoder_floor: bool = True) -> Report:
    """Clone every held-out sentence in every held-out voice of `corpus` and score the clones.

    With `vocoder_floor`, the vocoder also reconstructs each recording from its own mel
    (the synthesizer's front end): the word error rate a perfect synthesizer would get.
    """
    import soundfile as sf
    from deepfake_audio.pipeline import Pipeline
    manifest_path = corpus / "manifest.json"
    if not manifest_path.is_file():
        raise DeepfakeAudioError(f"{manifest_path} not found: build the corpus with `python -m deepfake_audio.training.corpus`.")
    manifest = json.loads(manifest_path.read_text())
    voices = manifest["held_out_voices"]
    pipe = Pipeline(models)
    recognise = Recogniser()
    references = {}
    for voice in voices:
        wavs = [pipe.encoder.embed_utterance(pipe_wav) for pipe_wav in
                (_prepared(p) for p in sorted((corpus / "eval_ref" / voice).glob("*.wav")))]
        ref = np.mean(wavs, axis=0)
        references[voice] = ref / np.linalg.norm(ref)
    names = list(references)
    ref_matrix = np.stack([references[n] for n in names])
    per_voice, all_refs, all_hyps, all_floor, all_vocoded = [], [], [], [], []
    for voice in voices:
        items = sorted((corpus / "eval" / voice).glob("*.wav"))[:limit]
        texts = [p.with_suffix(".txt").read_text(encoding="utf-8").strip() for p in items]
        hyps, floor, vocoded, hits, sims = [], [], [], 0, []
        for k, (path, text) in enumerate(zip(items, texts)):
            recording = sf.read(path, dtype="float32")[0]
            floor.append(recognise(recording))
            if vocoder_floor:
                vocoded.append(recognise(_own_mel_vocoded(pipe, recording, vocoder, seed + k)))
            result = pipe.clone(text=text, embedding=references[voice], seed=seed + k, vocoder=vocoder)
            hyps.append(recognise(result.wav))
            embed = pipe.encoder.embed_utterance(_prepared_array(result.wav))
            scores = ref_matrix @ embed
            hits += int(names[int(np.argmax(scores))] == voice)
            sims.append(float(references[voice] @ embed))
        per_voice.append(VoiceReport(voice, len(items), word_error_rate(texts, hyps), word_error_rate(texts, floor),
                                     hits / max(len(items), 1), float(np.mean(sims)) if sims else 0.0,
                                     word_error_rate(texts, vocoded) if vocoder_floor else None))
        all_refs += texts
        all_hyps += hyps
        all_floor += floor
        all_vocoded += vocoded
    n = sum(v.sentences for v in per_voice)
    return Report(pipe.describe(), vocoder, word_error_rate(all_refs, all_hyps), word_error_rate(all_refs, all_floor),
                  sum(v.identified * v.sentences for v in per_voice) / max(n, 1),
                  sum(v.similarity * v.sentences for v in per_voice) / max(n, 1), per_voice,
                  word_error_rate(all_refs, all_vocoded) if vocoder_floor else None)


def _own_mel_vocoded(pipe, recording: np.ndarray, vocoder: str, seed: int) -> np.ndarray:
    """A recording rebuilt by the vocoder from its own mel, made as the training data's were."""
    from encoder.audio import preprocess_wav
    from synthesizer.audio import melspectrogram
    from synthesizer.hparams import hparams as hp
    wav = preprocess_wav(recording, hp.sample_rate, normalize=False, trim_silence=True)
    wav = wav / max(float(np.abs(wav).max()), 1e-6) * hp.rescaling_max
    out = pipe.vocode(melspectrogram(wav), vocoder, seed)
    return (out / max(float(np.abs(out).max()), 1e-6) * 0.97).astype(np.float32)


def _prepared(path: Path) -> np.ndarray:
    from encoder.inference import prepare_reference
    return prepare_reference(path)


def _prepared_array(wav: np.ndarray) -> np.ndarray:
    from encoder.inference import prepare_reference
    return prepare_reference(wav.astype(np.float32), SAMPLE_RATE, min_speech_seconds=0.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deepfake_audio.training.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, required=True, help="corpus folder with manifest.json")
    parser.add_argument("--models", type=Path, default=None, help="models folder (default: saved_models/default)")
    parser.add_argument("--vocoder", choices=("wavernn", "griffinlim"), default="griffinlim")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first clone (then +1 per sentence)")
    parser.add_argument("--limit", type=int, default=None, help="at most this many sentences per voice")
    parser.add_argument("--out", type=Path, default=None, help="write the report as JSON here")
    args = parser.parse_args(argv)
    try:
        report = evaluate(args.corpus, args.models, args.vocoder, args.seed, args.limit)
    except DeepfakeAudioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    text = json.dumps(asdict(report), indent=1)
    if args.out:
        args.out.write_text(text)
    vocoded = "" if report.vocoder_floor_wer is None else \
        f", {report.vocoder} on the recordings' own mels {report.vocoder_floor_wer:.1%}"
    print(f"WER {report.wer:.1%} (floors: recordings {report.floor_wer:.1%}{vocoded}), clones identified "
          f"{report.identified:.0%}, mean similarity {report.similarity:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
