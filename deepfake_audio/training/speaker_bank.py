"""A bank of voice embeddings for the speaker-consistency loss, from voices the corpus lacks.

    python -m deepfake_audio.training.speaker_bank CORPUS OUT.npz [--voices 320] [--jobs 2] [--seed 1]

The starter synthesizer learns from a few dozen transcribed voices; with the
speaker-consistency loss (`speaker_loss`) it can also learn from embeddings alone. Those
need no transcript and no training-quality audio: two sentences per voice are enough. The
bank's voices are the corpus's training voices with new pitch, formant and tempo shifts
(wider than the corpus's own), espeak-ng's English accents crossed with its voice
variants, and (`--other-languages`) festival's voices of other languages where they are
installed (`OTHER_LANGUAGE_VOICES`), plain and shifted. Those are diphone, unit-selection
and HTS voices made from recordings of real people, so they bring vocal tracts that no
English synthesiser here has; their English is accented, which the embedding barely hears
and the bank does not need. The corpus's held-out voices are never used, so the
evaluation stays honest.

Output: an .npz with `embeds` (K, 256) float32 unit vectors and `names` (K,) strings.
"""
from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from deepfake_audio_core.errors import DeepfakeAudioError
from deepfake_audio.training.corpus import (ESPEAK_LICENCE, SAMPLE_RATE, VOICES, CorpusVoice, _sox_effects,
                                            load_sentences, synthesize)

ESPEAK_ACCENTS = ("en-us", "en-gb", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029", "en-us-nyc",
                  "en-gb-scotland")
ESPEAK_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "f1", "f2", "f3", "f4", "f5", "klatt", "klatt2",
                   "klatt3", "klatt4", "adam", "Andy", "david", "edward", "john", "linda", "max", "paul", "robert",
                   "steph", "norbert", "travis", "victor", "grandma", "grandpa", "shelby", "zac", "annie", "benjamin")
UTTERANCES_PER_VOICE = 2
_GPL = "GPL (festival voice data); synthesized audio carries no restriction"
_LGPL = "LGPL-2 (festival voice data); synthesized audio carries no restriction"
# festival voices of other languages in Debian main (free licences), by package.
OTHER_LANGUAGE_VOICES: tuple[CorpusVoice, ...] = (
    CorpusVoice("festival_it_lp", "festival", "lp_diphone", "festvox-italp16k", _GPL),
    CorpusVoice("festival_it_pc", "festival", "pc_diphone", "festvox-itapc16k", _GPL),
    CorpusVoice("festival_cs_dita", "festival", "czech_dita", "festvox-czech-dita", _GPL),
    CorpusVoice("festival_cs_krb", "festival", "czech_krb", "festvox-czech-krb", _GPL),
    CorpusVoice("festival_cs_machac", "festival", "czech_machac", "festvox-czech-machac", _GPL),
    CorpusVoice("festival_cs_ph", "festival", "czech_ph", "festvox-czech-ph", _GPL),
    CorpusVoice("festival_fi_lj", "festival", "suo_fi_lj_diphone", "festvox-suopuhe-lj", _LGPL),
    CorpusVoice("festival_fi_mv", "festival", "hy_fi_mv_diphone", "festvox-suopuhe-mv", _LGPL),
    CorpusVoice("festival_ru_nsh", "festival", "msu_ru_nsh_clunits", "festvox-ru", _GPL),
    CorpusVoice("festival_ca_ona", "festival", "upc_ca_ona_hts", "festvox-ca-ona-hts",
                "LGPL-2.1+ and BSD-3-Clause (festival voice data); synthesized audio carries no restriction"),
)


def installed_other_language_voices() -> list[CorpusVoice]:
    """The voices of `OTHER_LANGUAGE_VOICES` that festival can speak with here."""
    import shutil
    if shutil.which("text2wave") is None:
        return []
    return [v for v in OTHER_LANGUAGE_VOICES if _festival_voice_dir(v.name) is not None]


def _festival_voice_dir(name: str) -> Path | None:
    """Where Debian's festival keeps the voice `name` (voices/<language>/<name>), or None."""
    for root in (Path("/usr/share/festival/voices"), Path("/usr/lib/festival/voices")):
        for found in root.glob(f"*/{name}"):
            return found
    return None


def other_language_voices(n_voices: int, rng: random.Random, voices: list[CorpusVoice]) -> list[tuple[CorpusVoice, dict]]:
    """`n_voices` (voice, augmentation) pairs from `voices`: each as it is once, then moved in pitch and
    vocal-tract length (never so far that a voice becomes a cartoon: +-5 semitones, formants x0.88-1.14)."""
    picked: list[tuple[CorpusVoice, dict]] = [(v, {}) for v in voices][:n_voices]
    while voices and len(picked) < n_voices:
        voice = voices[len(picked) % len(voices)]
        picked.append((voice, {"pitch": round(rng.uniform(-500, 500), 1), "formant": round(rng.uniform(0.88, 1.14), 3)}))
    return picked


def bank_voices(n_voices: int, rng: random.Random, held_out: tuple[str, ...]) -> list[tuple[CorpusVoice, dict]]:
    """`n_voices` (voice, augmentation) pairs: half espeak accent x variant, half shifted corpus voices."""
    espeak = [CorpusVoice(f"espeak_{a}+{v}", "espeak-ng", f"{a}+{v}", "espeak-ng", ESPEAK_LICENCE)
              for a in ESPEAK_ACCENTS for v in ESPEAK_VARIANTS]
    rng.shuffle(espeak)
    corpus = [v for v in VOICES if v.speaker not in held_out]
    picked: list[tuple[CorpusVoice, dict]] = []
    for k in range(n_voices):
        if k % 2 == 0 and espeak:
            voice, aug = espeak.pop(), {}
            if rng.random() < 0.5:
                aug = {"pitch": round(rng.uniform(-300, 300), 1), "formant": round(rng.uniform(0.9, 1.1), 3)}
        else:
            voice = corpus[k % len(corpus)]
            aug = {"pitch": round(rng.uniform(-500, 500), 1), "formant": round(rng.uniform(0.82, 1.2), 3),
                   "tempo": round(rng.uniform(0.85, 1.15), 3)}
        picked.append((voice, aug))
    return picked


def _speak(job: tuple[CorpusVoice, dict, str]) -> np.ndarray | None:
    import soundfile as sf
    voice, aug, text = job
    with tempfile.TemporaryDirectory() as tmp:
        raw, out = Path(tmp) / "raw.wav", Path(tmp) / "out.wav"
        try:
            synthesize(voice, text, raw)
            subprocess.run(["sox", str(raw), "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16", str(out),
                            *_sox_effects(aug), "rate", str(SAMPLE_RATE)], check=True, capture_output=True,
                           timeout=120)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
            return None  # an espeak variant that this install lacks
        return sf.read(out, dtype="float32")[0]


def build_bank(corpus: Path, out: Path, n_voices: int = 320, jobs: int = 2, seed: int = 1,
               encoder_weights: Path | None = None, progress: bool = True, other_languages: int = 0) -> dict:
    """Speak, embed and save the bank; returns a summary. `other_languages` more voices come from
    festival's voices of other languages that are installed (none where none are)."""
    from tqdm import tqdm
    from encoder.inference import Encoder, prepare_reference
    manifest_path = corpus / "manifest.json"
    if not manifest_path.is_file():
        raise DeepfakeAudioError(f"{manifest_path} not found: build the corpus first.")
    manifest = json.loads(manifest_path.read_text())
    held_out = tuple(manifest["held_out_voices"])
    excluded = set(manifest["eval_sentences"])
    rng = random.Random(seed)
    sentences = [s for s in load_sentences() if s not in excluded and len(s.split()) >= 8]
    voices = bank_voices(n_voices, rng, held_out)
    installed = installed_other_language_voices() if other_languages > 0 else []
    voices += other_language_voices(other_languages, rng, installed)
    jobs_list = [(voice, aug, rng.choice(sentences)) for voice, aug in voices for _ in range(UTTERANCES_PER_VOICE)]
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as executor:
        wavs = list(tqdm(executor.map(_speak, jobs_list), total=len(jobs_list), desc="bank utterances",
                         disable=not progress))
    encoder = Encoder(encoder_weights)
    embeds, names = [], []
    for k, (voice, aug) in enumerate(voices):
        clips = [w for w in wavs[k * UTTERANCES_PER_VOICE:(k + 1) * UTTERANCES_PER_VOICE] if w is not None]
        usable = []
        for clip in clips:
            try:
                usable.append(encoder.embed_utterance(prepare_reference(clip, SAMPLE_RATE, min_speech_seconds=1.0)))
            except DeepfakeAudioError:
                continue
        if not usable:
            continue
        mean = np.mean(usable, axis=0)
        embeds.append(mean / np.linalg.norm(mean))
        names.append(voice.speaker + ("" if not aug else " " + json.dumps(aug, sort_keys=True)))
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, embeds=np.asarray(embeds, np.float32), names=np.asarray(names))
    missing = sorted({v.debian_package for v in OTHER_LANGUAGE_VOICES} - {v.debian_package for v in installed}) \
        if other_languages > 0 else []
    return {"voices": len(embeds), "asked": n_voices + other_languages, "out": str(out), "missing_packages": missing}


def load_bank(path: Path) -> np.ndarray:
    """(K, 256) float32 unit embeddings of a bank file."""
    try:
        with np.load(path, allow_pickle=False) as z:
            embeds = z["embeds"].astype(np.float32)
    except (OSError, KeyError, ValueError) as exc:
        raise DeepfakeAudioError(f"{path} is not a speaker bank ({exc}).") from None
    if embeds.ndim != 2 or embeds.shape[1] != 256 or len(embeds) == 0:
        raise DeepfakeAudioError(f"{path} holds {embeds.shape} embeddings; expected (K, 256) with K > 0.")
    return embeds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deepfake_audio.training.speaker_bank",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("corpus", type=Path, help="corpus folder (its manifest names the held-out voices)")
    parser.add_argument("out", type=Path, help="output .npz")
    parser.add_argument("--voices", type=int, default=320, help="voices in the bank (default 320)")
    parser.add_argument("--other-languages", type=int, default=0, metavar="N",
                        help="N more voices from festival's voices of other languages, where installed "
                             "(default 0)")
    parser.add_argument("--jobs", type=int, default=2, help="parallel synthesis processes (default 2)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    for flag, value, least in (("--voices", args.voices, 0), ("--other-languages", args.other_languages, 0),
                               ("--jobs", args.jobs, 1)):
        if value < least:
            parser.error(f"{flag} must be at least {least}, got {value}.")
    if args.voices + args.other_languages == 0:
        parser.error("the bank needs at least one voice: --voices or --other-languages above 0.")
    try:
        summary = build_bank(args.corpus, args.out, args.voices, args.jobs, args.seed,
                             other_languages=args.other_languages)
    except DeepfakeAudioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if summary["missing_packages"]:
        print("note: festival voices of other languages not installed, so not in the bank: "
              f"apt-get install {' '.join(summary['missing_packages'])}", file=sys.stderr)
    print(f"{summary['voices']} voices -> {summary['out']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
