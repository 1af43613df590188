"""Measure a set of models on the held-out part of a corpus built by `deepfake_audio.training.corpus`.

    python -m deepfake_audio.training.evaluate --corpus DIR [--models DIR] [--vocoder griffinlim] [--out report.json]

* Intelligibility: pocketsphinx (offline; its US English model ships in the wheel) word
  error rate of the clones of every held-out sentence in every held-out voice. The same
  recogniser on the held-out voices' own recordings gives the floor.
* Cloning: for each clone, whether its speaker embedding is closer to its own voice's
  reference than to every other held-out voice's reference; and the mean cosine
  similarity between a clone and its reference.
* Measures the training losses cannot game (the speaker-consistency loss trains against
  the encoder that measures similarity): identification among hard candidates (the same
  voice 3 semitones up and down, voices of the other sex, a child-like voice), the F0
  of the clone against the reference's (pyin), the voiced fraction, DNSMOS OVRL.
* The held-out voices are also judged lower and higher in pitch and vocal-tract length
  (sox), so the references span about 80 to 290 Hz; `--compare` scores other vocoders on
  the same clones side by side.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from deepfake_audio_core.audio_config import MEL
from deepfake_audio_core.errors import DeepfakeAudioError

SAMPLE_RATE = MEL.sample_rate  # the models' rate (core.audio_config)


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


# Held-out voices are also judged moved in pitch and vocal-tract length, so that the references
# span low male to child-like pitch (about 80 to 290 Hz from the corpus's two held-out voices):
# (suffix of the voice's name, sox effects). speed x then pitch moves the formants by x.
VOICE_TRANSFORMS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("", ()),
    (" low", ("speed", "0.92", "pitch", "-255.6")),  # -4 semitones, formants x0.92
    (" high", ("speed", "1.18", "pitch", "1113.5")),  # +14 semitones, formants x1.18
)
# Distractors that make identification hard: the same voice 3 semitones up and down, voices of the
# other sex (training voices), and a child-like voice.
TWIN_SEMITONES = (-3, 3)
OTHER_VOICES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("flite_slt", ()), ("festival_slt_hts", ()), ("espeak_us_f2", ()),
    ("flite_slt child-like", ("speed", "1.2", "pitch", "268.4")),  # +6 semitones, formants x1.2
    ("espeak_us_m1", ()),
)


@dataclass
class VoiceReport:
    voice: str
    sentences: int
    wer: float
    floor_wer: float  # the recordings themselves
    identified: float  # fraction of clones closest to their own voice among the held-out voices
    similarity: float  # mean cosine(clone, own reference)
    vocoder_floor_wer: float | None = None  # the vocoder on the recordings' own mels
    identified_hard: float | None = None  # ... among the hard candidates (pitch twins, other sex, child-like)
    reference_f0: float | None = None  # median F0 of the references (pyin), Hz
    f0_ratio: float | None = None  # median over clones of (clone's median F0 / reference_f0)
    f0_within_15: float | None = None  # fraction of clones whose F0 is within 15 % of reference_f0
    voiced_fraction: float | None = None  # mean over clones (pyin)
    dnsmos: float | None = None  # mean DNSMOS OVRL of the clones
    floor_dnsmos: float | None = None  # of the recordings
    stages: dict[str, dict[str, float]] | None = None  # see `stage_scores`


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
    identified_hard: float | None = None
    candidates: int | None = None  # voices in the hard identification set
    f0_within_15: float | None = None
    voiced_fraction: float | None = None
    dnsmos: float | None = None
    floor_dnsmos: float | None = None
    others: dict[str, dict] = field(default_factory=dict)  # the same measures with other vocoders
    stages: dict[str, dict[str, float]] | None = None  # sentence-weighted means of the voices' stages


@dataclass
class _Voice:
    """A voice of the evaluation: its reference clips and, for held-out voices, its test sentences."""

    name: str
    references: list[np.ndarray]
    recordings: list[tuple[np.ndarray, str]] = field(default_factory=list)
    embedding: np.ndarray | None = None
    clone_embeddings: list[np.ndarray] = field(default_factory=list)  # of the report's vocoder's clones, in order


def _sox(wav: np.ndarray, effects: tuple[str, ...]) -> np.ndarray:
    if not effects:
        return wav
    import subprocess
    import tempfile
    import soundfile as sf
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "in.wav", Path(tmp) / "out.wav"
        sf.write(src, wav, SAMPLE_RATE)
        subprocess.run(["sox", str(src), str(out), *effects, "rate", str(SAMPLE_RATE)], check=True,
                       capture_output=True, timeout=60)
        return sf.read(out, dtype="float32")[0]


def _voices(corpus: Path, held_out: list[str], limit: int | None, transforms: bool
            ) -> tuple[list[_Voice], list[_Voice]]:
    """(held-out voices to clone, distractors) with their clips, transformed by sox."""
    import soundfile as sf
    read = lambda p: sf.read(p, dtype="float32")[0]  # noqa: E731
    targets, distractors = [], []
    for suffix, effects in (VOICE_TRANSFORMS if transforms else VOICE_TRANSFORMS[:1]):
        for voice in held_out:
            refs = [_sox(read(p), effects) for p in sorted((corpus / "eval_ref" / voice).glob("*.wav"))]
            items = sorted((corpus / "eval" / voice).glob("*.wav"))[:limit]
            recordings = [(_sox(read(p), effects), p.with_suffix(".txt").read_text(encoding="utf-8").strip())
                          for p in items]
            targets.append(_Voice(voice + suffix, refs, recordings))
            if transforms:
                for semitones in TWIN_SEMITONES:
                    twin = ("pitch", str(100 * semitones))
                    distractors.append(_Voice(f"{voice}{suffix} {semitones:+d} st", [_sox(r, twin) for r in refs]))
    if transforms:
        for name, effects in OTHER_VOICES:
            folder = corpus / "train" / name.split(" ")[0]
            clips = sorted(folder.glob("*.wav"))[:3]
            if clips:
                distractors.append(_Voice(name, [_sox(read(p), effects) for p in clips]))
    return targets, distractors


def evaluate(corpus: Path, models: Path | None = None, vocoder: str = "griffinlim", seed: int = 0,
             limit: int | None = None, vocoder_floor: bool = True, transforms: bool = True,
             compare: tuple[str, ...] = (), quality: bool = True, stages: bool = False) -> Report:
    """Clone every held-out sentence in every held-out voice of `corpus` and score the clones.

    Each voice is cloned from its first reference recording (so the pipeline measures its
    pitch). With `transforms`, each held-out voice is also judged lower and higher
    (`VOICE_TRANSFORMS`), and identification is also measured among hard candidates
    (`TWIN_SEMITONES`, `OTHER_VOICES`). With `vocoder_floor`, the vocoder also rebuilds
    each recording from its own mel: the word error rate a perfect synthesizer would get.
    `compare` names other vocoders measured on the same clones' mels and seeds (`Report.others`).
    `quality` adds pyin's F0 and DNSMOS (the slow measures). `stages` also scores what each
    stage keeps of the voice (`stage_scores`): where identification is lost.
    """
    from deepfake_audio.pipeline import Pipeline
    manifest_path = corpus / "manifest.json"
    if not manifest_path.is_file():
        raise DeepfakeAudioError(f"{manifest_path} not found: build the corpus with `python -m deepfake_audio.training.corpus`.")
    manifest = json.loads(manifest_path.read_text())
    pipe = Pipeline(models)
    recognise = Recogniser()
    targets, distractors = _voices(corpus, manifest["held_out_voices"], limit, transforms)
    for voice in targets + distractors:
        mean = np.mean([pipe.encoder.embed_utterance(_prepared_array(w)) for w in voice.references], axis=0)
        voice.embedding = mean / np.linalg.norm(mean)
    plain = np.stack([v.embedding for v in targets])
    hard = np.stack([v.embedding for v in targets + distractors])
    reports, floors = {}, {}
    for name in (vocoder, *compare):
        reports[name] = _score(pipe, recognise, targets, plain, hard, name, seed, vocoder_floor, quality, floors,
                               report_vocoder=vocoder)
    report = reports[vocoder]
    report.candidates = len(targets) + len(distractors) if transforms else None
    if stages:
        for index, (voice, row) in enumerate(zip(targets, report.voices)):
            row.stages = stage_scores(pipe, voice, index, hard, vocoder, seed)
        n = sum(v.sentences for v in report.voices)
        report.stages = {stage: {key: sum(v.stages[stage][key] * v.sentences for v in report.voices) / max(n, 1)
                                 for key in report.voices[0].stages[stage]} for stage in report.voices[0].stages}
    report.others = {name: {k: v for k, v in asdict(r).items() if k not in ("models", "voices", "others")}
                     for name, r in reports.items() if name != vocoder}
    return report


def _score(pipe, recognise, targets: list[_Voice], plain: np.ndarray, hard: np.ndarray, vocoder: str, seed: int,
           vocoder_floor: bool, quality: bool, floors: dict, report_vocoder: str | None = None) -> Report:
    """One vocoder's report. `floors` keeps what does not depend on the vocoder (the recordings'
    own transcripts and DNSMOS, the references' F0) across calls. The clones' embeddings are kept
    on each voice when `vocoder` is `report_vocoder`."""
    from deepfake_audio.training.measures import dnsmos, pitch_of
    per_voice, all_refs, all_hyps, all_floor, all_vocoded = [], [], [], [], []
    for index, voice in enumerate(targets):
        texts = [text for _, text in voice.recordings]
        if quality and (voice.name, "f0") not in floors:
            floors[voice.name, "f0"] = pitch_of(np.concatenate(voice.references)).median_hz
        reference_f0 = floors.get((voice.name, "f0"))
        hyps, floor, vocoded, hits, hard_hits, sims, ratios, voiced, mos, floor_mos = [], [], [], 0, 0, [], [], [], [], []
        for k, (recording, text) in enumerate(voice.recordings):
            if (voice.name, k) not in floors:
                floors[voice.name, k] = (recognise(recording), dnsmos(recording) if quality else None)
            floor.append(floors[voice.name, k][0])
            if vocoder_floor:
                vocoded.append(recognise(_own_mel_vocoded(pipe, recording, vocoder, seed + k)))
            result = pipe.clone(voice.references[0], text, seed=seed + k, vocoder=vocoder, sample_rate=SAMPLE_RATE)
            hyps.append(recognise(result.wav))
            embed = pipe.encoder.embed_utterance(_prepared_array(result.wav))
            if vocoder == report_vocoder:  # kept for `stage_scores`, which judges the same clones
                voice.clone_embeddings.append(embed)
            hits += int(np.argmax(plain @ embed) == index)
            hard_hits += int(np.argmax(hard @ embed) == index)
            sims.append(float(voice.embedding @ embed))
            if quality:
                pitch = pitch_of(result.wav)
                ratios.append(pitch.median_hz / reference_f0)
                voiced.append(pitch.voiced_fraction)
                mos.append(dnsmos(result.wav))
                floor_mos.append(floors[voice.name, k][1])
        n = max(len(texts), 1)
        finite = [r for r in ratios if np.isfinite(r)]
        per_voice.append(VoiceReport(
            voice.name, len(texts), word_error_rate(texts, hyps), word_error_rate(texts, floor), hits / n,
            float(np.mean(sims)) if sims else 0.0, word_error_rate(texts, vocoded) if vocoder_floor else None,
            hard_hits / n, reference_f0,
            float(np.median(finite)) if finite else None,
            float(np.mean([abs(r - 1) <= 0.15 for r in ratios])) if ratios else None,
            float(np.mean(voiced)) if voiced else None, float(np.mean(mos)) if mos else None,
            float(np.mean(floor_mos)) if floor_mos else None))
        all_refs += texts
        all_hyps += hyps
        all_floor += floor
        all_vocoded += vocoded
    n = sum(v.sentences for v in per_voice)
    weighted = lambda key: (sum(getattr(v, key) * v.sentences for v in per_voice) / max(n, 1)  # noqa: E731
                            if all(getattr(v, key) is not None for v in per_voice) else None)
    return Report(pipe.describe(), vocoder, word_error_rate(all_refs, all_hyps), word_error_rate(all_refs, all_floor),
                  weighted("identified"), weighted("similarity"), per_voice,
                  word_error_rate(all_refs, all_vocoded) if vocoder_floor else None,
                  weighted("identified_hard"), None, weighted("f0_within_15"), weighted("voiced_fraction"),
                  weighted("dnsmos"), weighted("floor_dnsmos"))


STAGES = ("recording", "copy_synthesis", "teacher_forced", "clone")


def stage_scores(pipe, voice: _Voice, index: int, candidates: np.ndarray, vocoder: str, seed: int
                 ) -> dict[str, dict[str, float]]:
    """What each stage keeps of `voice`, on its held-out recordings: identification among
    `candidates` (unit embeddings (V, 256), `voice` at row `index`) and mean similarity to the
    voice, for

    * recording: the recordings themselves (what any clone is measured against);
    * copy_synthesis: the vocoder rebuilding each recording from its own mel (the vocoder's loss);
    * teacher_forced: the synthesizer taught each recording's mel (its durations and, for a
      pitch-aware starter, each frame's F0), with the reference's embedding and pitch, then the
      vocoder (what the synthesizer's spectra lose, prosody aside);
    * clone: the clone of each sentence, as the rest of the report (the embeddings `_score` kept
      on the voice, else made here).

    Every clip is judged at a 0.97 peak, as clones come out (the encoder hears level).
    """
    from deepfake_audio.training.packed import frame_f0
    from deepfake_audio.training.synthesizer_preprocess import training_mel
    from deepfake_audio.training.vocoder_preprocess import teacher_forced_mels
    from deepfake_audio_core.pitch import pitch_stats
    from synthesizer.inference import PitchRequest
    import torch
    reference = _prepared_array(voice.references[0])
    embedding = pipe.encoder.embed_utterance(reference)
    stats = pitch_stats(reference) if pipe.synthesizer.has_pitch else None
    pitch_hz = None if stats is None else stats.median_hz
    scores: dict[str, list[tuple[int, float]]] = {stage: [] for stage in STAGES}
    for k, (recording, text) in enumerate(voice.recordings):
        mel, audio = training_mel(recording)
        extra = None
        if stats is not None:
            extra = {"f0": torch.from_numpy(frame_f0(audio, mel.shape[1]).astype(np.float32))[None],
                     "pitch_stats": PitchRequest(stats.median_hz, stats.log_f0_spread).stats(1)}
        ids = np.asarray(pipe.synthesizer.text_ids(text), np.int64)
        taught = teacher_forced_mels(pipe.synthesizer, [(ids, mel, embedding)],
                                     torch.Generator().manual_seed(seed + k), extra)[0][:, :mel.shape[1]]
        clips = {"recording": recording,
                 "copy_synthesis": pipe.vocode(mel, vocoder, seed + k, pitch_hz=pitch_hz),
                 "teacher_forced": pipe.vocode(taught, vocoder, seed + k, pitch_hz=pitch_hz)}
        if len(voice.clone_embeddings) != len(voice.recordings):
            clips["clone"] = pipe.clone(voice.references[0], text, seed=seed + k, vocoder=vocoder,
                                        sample_rate=SAMPLE_RATE).wav
        outs = {stage: pipe.encoder.embed_utterance(_prepared_array(
                    np.asarray(clip, np.float32) / max(float(np.abs(clip).max()), 1e-6) * 0.97))
                for stage, clip in clips.items()}
        if "clone" not in outs:
            outs["clone"] = voice.clone_embeddings[k]
        for stage in STAGES:
            scores[stage].append((int(np.argmax(candidates @ outs[stage]) == index), float(voice.embedding @ outs[stage])))
    return {stage: {"identified": float(np.mean([hit for hit, _ in rows])),
                    "similarity": float(np.mean([sim for _, sim in rows]))} for stage, rows in scores.items() if rows}


def _own_mel_vocoded(pipe, recording: np.ndarray, vocoder: str, seed: int) -> np.ndarray:
    """A recording rebuilt by the vocoder from its own mel, made as the training data's were."""
    from deepfake_audio.training.synthesizer_preprocess import training_mel
    mel, _ = training_mel(recording)
    out = pipe.vocode(mel, vocoder, seed)
    return (out / max(float(np.abs(out).max()), 1e-6) * 0.97).astype(np.float32)


def _prepared_array(wav: np.ndarray) -> np.ndarray:
    from encoder.inference import prepare_reference
    return prepare_reference(wav.astype(np.float32), SAMPLE_RATE, min_speech_seconds=0.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deepfake_audio.training.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, required=True, help="corpus folder with manifest.json")
    parser.add_argument("--models", type=Path, default=None, help="models folder (default: saved_models/default)")
    parser.add_argument("--vocoder", choices=("wavernn", "starter", "griffinlim"), default="griffinlim")
    parser.add_argument("--compare", nargs="*", default=[], choices=("wavernn", "starter", "griffinlim"),
                        help="other vocoders measured side by side on the same clones")
    parser.add_argument("--no-transforms", action="store_true",
                        help="only the held-out voices as recorded (no lower/higher versions, no hard candidates)")
    parser.add_argument("--fast", action="store_true", help="skip the slow measures (pyin F0 and DNSMOS)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first clone (then +1 per sentence)")
    parser.add_argument("--limit", type=int, default=None, help="at most this many sentences per voice")
    parser.add_argument("--stages", action="store_true",
                        help="also score what each stage keeps of the voice: the recordings, the vocoder on their "
                             "own mels, the synthesizer taught them (teacher forcing), the clones")
    parser.add_argument("--out", type=Path, default=None, help="write the report as JSON here")
    args = parser.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        print(f"error: --limit is the number of sentences per voice to clone, at least 1 (got {args.limit})",
              file=sys.stderr)
        return 2
    try:
        report = evaluate(args.corpus, args.models, args.vocoder, args.seed, args.limit,
                          transforms=not args.no_transforms, compare=tuple(args.compare), quality=not args.fast,
                          stages=args.stages)
    except DeepfakeAudioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    text = json.dumps(asdict(report), indent=1)
    if args.out:
        args.out.write_text(text)
    vocoded = "" if report.vocoder_floor_wer is None else \
        f", {report.vocoder} on the recordings' own mels {report.vocoder_floor_wer:.1%}"
    print(f"{report.vocoder}: WER {report.wer:.1%} (floors: recordings {report.floor_wer:.1%}{vocoded}), clones "
          f"identified {report.identified:.0%}, mean similarity {report.similarity:.3f}")
    for name, row in [(report.vocoder, asdict(report)), *report.others.items()]:
        extra = [f"{label} {row[key]:{fmt}}" for key, label, fmt in (
            ("identified_hard", f"identified among {report.candidates} candidates", ".0%"),
            ("f0_within_15", "F0 within 15 %", ".0%"), ("voiced_fraction", "voiced", ".2f"),
            ("dnsmos", "DNSMOS", ".2f"), ("wer", "WER", ".1%")) if row.get(key) is not None]
        print(f"  {name}: " + ", ".join(extra))
    if report.stages:
        among = f"among {report.candidates} candidates" if report.candidates else "among the held-out voices"
        print(f"what each stage keeps of the voice ({report.vocoder}; identified {among} / similarity):")
        for stage, row in report.stages.items():
            print(f"  {stage.replace('_', ' ')}: {row['identified']:.0%} / {row['similarity']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
