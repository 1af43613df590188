"""Build a multi-speaker English speech corpus from Debian's free speech synthesisers.

    python -m deepfake_audio.training.corpus OUT [--sentences 600] [--augment 2] [--jobs 2] [--seed 0]

The corpus is what the starter models are trained on: no recording is needed and every
voice's licence allows redistributing models trained on its output (MBROLA and the
non-free festvox voices are deliberately absent). Sentences come from Debian's
`fortunes` package, cleaned and limited in length. Speaker variety comes from the
distinct voices plus pitch, formant and tempo augmentation with sox. Two voices and 50
sentences are held out for evaluation.

Layout (the generic `root/<speaker>/<utterance>.wav + .txt` of the training readers):
    OUT/train/<speaker>/<id>.wav|.txt   training voices (and their augmented variants)
    OUT/eval/<speaker>/<id>.wav|.txt    held-out voices speaking the held-out sentences
    OUT/eval_ref/<speaker>/<id>.wav     held-out voices speaking training sentences (cloning references)
    OUT/manifest.json                   voices, licences, sizes, splits, settings
Re-running skips utterances already made, so an interrupted build resumes.
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
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from deepfake_audio_core.audio_config import MEL
from deepfake_audio_core.errors import DeepfakeAudioError

SAMPLE_RATE = MEL.sample_rate  # the models' rate (core.audio_config)
FORTUNES_DIR = Path("/usr/share/games/fortunes")
MIN_WORDS, MAX_WORDS = 4, 16
EVAL_SENTENCES = 50
EVAL_REFERENCES = 3

FLITE_LICENCE = "Flite/CMU ARCTIC licence (BSD-style: free use, modification and redistribution)"
ESPEAK_LICENCE = "GPL-3.0-or-later (espeak-ng program and data); synthesized audio carries no restriction"


@dataclass(frozen=True)
class CorpusVoice:
    """A synthetic speaker: `engine` in {flite, festival, espeak-ng}; `name` is the engine's voice id."""

    speaker: str
    engine: str
    name: str
    debian_package: str
    licence: str


VOICES: tuple[CorpusVoice, ...] = (
    CorpusVoice("flite_awb", "flite", "awb", "flite", FLITE_LICENCE),
    CorpusVoice("flite_rms", "flite", "rms", "flite", FLITE_LICENCE),
    CorpusVoice("flite_slt", "flite", "slt", "flite", FLITE_LICENCE),
    CorpusVoice("flite_kal", "flite", "kal", "flite", FLITE_LICENCE),
    CorpusVoice("flite_kal16", "flite", "kal16", "flite", FLITE_LICENCE),
    CorpusVoice("festival_kal", "festival", "kal_diphone", "festvox-kallpc16k",
          "festvox diphone licence (A. W. Black, K. Lenzo; free use, modification and redistribution)"),
    CorpusVoice("festival_ked", "festival", "ked_diphone", "festvox-kdlpc16k",
          "CSTR festvox licence (University of Edinburgh; free use, modification and redistribution)"),
    CorpusVoice("festival_slt_hts", "festival", "cmu_us_slt_arctic_hts", "festvox-us-slt-hts", "BSD-3-Clause"),
    CorpusVoice("espeak_us_m1", "espeak-ng", "en-us+m1", "espeak-ng", ESPEAK_LICENCE),
    CorpusVoice("espeak_us_m3", "espeak-ng", "en-us+m3", "espeak-ng", ESPEAK_LICENCE),
    CorpusVoice("espeak_us_f2", "espeak-ng", "en-us+f2", "espeak-ng", ESPEAK_LICENCE),
    CorpusVoice("espeak_gb_m2", "espeak-ng", "en-gb+m2", "espeak-ng", ESPEAK_LICENCE),
    CorpusVoice("espeak_gb_f4", "espeak-ng", "en-gb+f4", "espeak-ng", ESPEAK_LICENCE),
    CorpusVoice("espeak_scot_m7", "espeak-ng", "en-gb-scotland+m7", "espeak-ng", ESPEAK_LICENCE),
)
HELD_OUT: tuple[str, ...] = ("flite_rms", "flite_awb")


def load_sentences(fortunes_dir: Path = FORTUNES_DIR) -> list[str]:
    """Clean, de-duplicated single sentences of 4-16 words from the fortune files, sorted."""
    if not fortunes_dir.is_dir():
        raise DeepfakeAudioError(f"{fortunes_dir} not found: install Debian's `fortunes` package.")
    sentences: set[str] = set()
    for path in sorted(fortunes_dir.iterdir()):
        if path.suffix or not path.is_file():  # .dat indexes and .u8 links
            continue
        text = path.read_text(encoding="utf-8", errors="ignore")
        for fortune in text.split("\n%\n"):
            if re.search(r"^\s*(--|[A-Z][a-z]*:)", fortune, re.M):  # attributions and dialogues
                continue
            flat = " ".join(fortune.split())
            for sentence in re.split(r"(?<=[.!?])\s+", flat):
                if re.fullmatch(r"[A-Z][A-Za-z ,;'\-]*[a-z][.!?]", sentence) and \
                        MIN_WORDS <= len(sentence.split()) <= MAX_WORDS and "  " not in sentence:
                    sentences.add(sentence)
    return sorted(sentences)


def synthesize(voice: CorpusVoice, text: str, out_raw: Path) -> None:
    """`text` spoken by `voice` into the WAV `out_raw`, at the engine's own sample rate."""
    if voice.engine == "flite":
        cmd = ["flite", "-voice", voice.name, "-t", text, "-o", str(out_raw)]
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    elif voice.engine == "festival":
        cmd = ["text2wave", "-eval", f"(voice_{voice.name})", "-o", str(out_raw)]
        subprocess.run(cmd, input=text.encode(), check=True, capture_output=True, timeout=120)
    else:
        cmd = ["espeak-ng", "-v", voice.name, "-w", str(out_raw), text]
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)


def _sox_effects(aug: dict[str, float]) -> list[str]:
    """sox effects for an augmentation: pitch in cents, formant scale, tempo factor."""
    effects: list[str] = []
    formant = aug.get("formant", 1.0)
    if formant != 1.0:
        # speed scales pitch and formants together; the pitch effect then puts the pitch back.
        effects += ["speed", f"{formant:.4f}", "pitch", f"{-1200 * math.log2(formant):.1f}"]
    if aug.get("pitch", 0.0):
        effects += ["pitch", f"{aug['pitch']:.1f}"]
    if aug.get("tempo", 1.0) != 1.0:
        effects += ["tempo", "-s", f"{aug['tempo']:.4f}"]
    return effects


def _make_utterance(job: tuple[CorpusVoice, dict[str, float], str, Path]) -> bool:
    voice, aug, text, wav_path = job
    if wav_path.exists() and wav_path.with_suffix(".txt").exists():
        return False
    wav_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.wav"
        synthesize(voice, text, raw)
        part = wav_path.with_name(wav_path.stem + ".part.wav")
        subprocess.run(["sox", str(raw), "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16", str(part),
                        *_sox_effects(aug), "rate", str(SAMPLE_RATE)], check=True, capture_output=True, timeout=120)
        part.replace(wav_path)
    wav_path.with_suffix(".txt").write_text(text + "\n", encoding="utf-8")
    return True


def _augmentations(rng: random.Random, count: int) -> list[dict[str, float]]:
    augs = [{}]
    for _ in range(count):
        augs.append({"pitch": round(rng.uniform(-350, 350), 1), "formant": round(rng.uniform(0.88, 1.14), 3),
                     "tempo": round(rng.uniform(0.85, 1.15), 3)})
    return augs


def _speaker_id(voice: CorpusVoice, index: int) -> str:
    return voice.speaker if index == 0 else f"{voice.speaker}_aug{index}"


def build_corpus(out: Path, n_sentences: int = 600, augment: int = 2, jobs: int = 2, seed: int = 0,
                 voices: tuple[CorpusVoice, ...] = VOICES, held_out: tuple[str, ...] = HELD_OUT,
                 eval_sentences: int = EVAL_SENTENCES, progress: bool = True,
                 per_speaker: int | None = None) -> dict:
    """Synthesize the corpus into `out` and write its manifest; returns the manifest.

    Each training speaker reads `per_speaker` sentences drawn from the pool of
    `n_sentences` (default: half the pool), so a large pool with few sentences per
    speaker gives more distinct texts for the same hours of audio.
    """
    per_speaker = max(1, n_sentences // 2) if per_speaker is None else per_speaker
    for tool in {"sox", *(("flite",) if any(v.engine == "flite" for v in voices) else ()),
                 *(("text2wave",) if any(v.engine == "festival" for v in voices) else ()),
                 *(("espeak-ng",) if any(v.engine == "espeak-ng" for v in voices) else ())}:
        if shutil.which(tool) is None:
            raise DeepfakeAudioError(f"`{tool}` is not installed: run `bash scripts/setup.sh --dev`.")
    rng = random.Random(seed)
    pool = load_sentences()
    rng.shuffle(pool)
    if len(pool) < n_sentences + eval_sentences:
        raise DeepfakeAudioError(f"only {len(pool)} usable sentences; ask for fewer than {n_sentences}.")
    eval_set, train_set = pool[:eval_sentences], pool[eval_sentences:eval_sentences + n_sentences]
    train_voices = [v for v in voices if v.speaker not in held_out]
    eval_voices = [v for v in voices if v.speaker in held_out]
    jobs_list: list[tuple[CorpusVoice, dict[str, float], str, Path]] = []
    speakers: dict[str, dict] = {}
    for voice in train_voices:
        for k, aug in enumerate(_augmentations(rng, augment)):
            speaker = _speaker_id(voice, k)
            speakers[speaker] = {"voice": voice.speaker, "augmentation": aug, "split": "train"}
            # each speaker reads its own random subset, so variants do not share every text
            for i in sorted(rng.sample(range(len(train_set)), k=min(len(train_set), per_speaker))):
                jobs_list.append((voice, aug, train_set[i], out / "train" / speaker / f"{speaker}_{i:05d}.wav"))
    for voice in eval_voices:
        speakers[voice.speaker] = {"voice": voice.speaker, "augmentation": {}, "split": "eval"}
        for i, text in enumerate(eval_set):
            jobs_list.append((voice, {}, text, out / "eval" / voice.speaker / f"{voice.speaker}_{i:05d}.wav"))
        for i, text in enumerate(train_set[:EVAL_REFERENCES]):
            jobs_list.append((voice, {}, text, out / "eval_ref" / voice.speaker / f"{voice.speaker}_ref{i}.wav"))
    from tqdm import tqdm
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as executor:
        made = sum(tqdm(executor.map(_make_utterance, jobs_list), total=len(jobs_list), desc="utterances",
                        disable=not progress))
    seconds = sum(p.stat().st_size - 44 for p in out.rglob("*.wav")) / 2 / SAMPLE_RATE
    manifest = {
        "sample_rate": SAMPLE_RATE, "seed": seed, "augment": augment,
        "sentences": {"source": "Debian package `fortunes` (public domain / freely redistributable quotations)",
                      "train": len(train_set), "eval": len(eval_set), "words": [MIN_WORDS, MAX_WORDS],
                      "per_speaker": per_speaker},
        "voices": [dict(asdict(v), split="eval" if v.speaker in held_out else "train") for v in voices],
        "held_out_voices": list(held_out),
        "speakers": speakers,
        "utterances": len(jobs_list), "made_this_run": made, "hours": round(seconds / 3600, 3),
        "eval_sentences": eval_set,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deepfake_audio.training.corpus", description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="output folder (re-run to resume)")
    parser.add_argument("--sentences", type=int, default=600, help="training sentences in the pool (default 600)")
    parser.add_argument("--augment", type=int, default=2,
                        help="augmented variants (pitch, formant, tempo) per training voice (default 2)")
    parser.add_argument("--per-speaker", type=int, default=None,
                        help="sentences each training speaker reads (default: half of --sentences)")
    parser.add_argument("--jobs", type=int, default=2, help="parallel synthesis processes (default 2)")
    parser.add_argument("--seed", type=int, default=0, help="seed for sentence choice and augmentation")
    args = parser.parse_args(argv)
    try:
        manifest = build_corpus(args.out, args.sentences, args.augment, args.jobs, args.seed,
                                per_speaker=args.per_speaker)
    except DeepfakeAudioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{manifest['utterances']} utterances, {len(manifest['speakers'])} speakers, "
          f"{manifest['hours']} h -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
