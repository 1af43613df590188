"""How much a voice's fine-tuning (a tuned voice) brings over zero-shot cloning, on held-out voices.

    python bench/finetune_likeness.py --corpus artifacts/corpus --out runs/finetune_bench \
        --voices "flite_rms low" "flite_awb high" --recorded 5 2 --minutes 10

For each held-out voice (a corpus voice the models never heard, moved in pitch and vocal-tract
length by sox as `training.evaluate` does: "low" is about 80 Hz, "high" about 290 Hz):

1. takes: sentences the corpus never used, spoken by the voice, `--recorded` minutes of them
   (the first takes of the longest set, so 2 minutes are the first part of the 5);
2. a tuned voice per amount of recordings: `sv2tts-finetune --tuned-voice --minutes M`, the
   command the studio runs, on all the cores there are; a snapshot after every piece; the job's
   own file is the piece that validated best on its held-out takes ("final"; "last" is the last);
3. clones of `--texts` held-out sentences, zero-shot (from one held-out recording, as the studio
   does with an uploaded clip) and with each snapshot, judged against held-out recordings:
   similarity (mean cosine to each held-out recording's embedding), identification among the
   voice 3 semitones up and down and the other voices of `training.evaluate`, F0 (pyin) within
   10 % of the voice's own median, WER (pocketsphinx). Similarity and identification are given
   twice: with each clone as it comes out (a 0.97 peak), and at the held-out recordings' own
   speech level (`*_at_level`), as the studio compares results (the encoder hears level).

`--voices nsh` is a real man instead: festival's Russian voice's recordings (package
`festvox-ru`, 620 studio clips read in one session; `apt-get install festvox-ru`). His takes are his
first clips, in Russian with their transcripts (so the job trains the voice's colour only); his
held-out recordings are 8 clips from the same part of the session (`NSH_HELD_OUT`: his pitch rose
over it, from about 120 Hz to 158 Hz at the end); the zero-shot reference is the clip after them
(its first 8 s); the clones speak the corpus's held-out English sentences.

Writes `<out>/report.json` and prints a table. Minutes of training are wall time on this
machine, so they depend on the CPU and on what else runs.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deepfake_audio_core.audio_io import load_audio  # noqa: E402
from deepfake_audio.training.corpus import VOICES, load_sentences, synthesize  # noqa: E402
from deepfake_audio.training.evaluate import (OTHER_VOICES, TWIN_SEMITONES, VOICE_TRANSFORMS, Recogniser,  # noqa: E402
                                              _prepared_array, _sox, word_error_rate)

SAMPLE_RATE = 16000
NSH = Path("/usr/share/festival/voices/russian/msu_ru_nsh_clunits")  # festvox-ru: a real man's recordings
NSH_HELD_OUT = 40  # his clips from this one on: 8 held-out recordings, then the zero-shot reference
REFERENCE_SECONDS = 8.0  # a reference is cut to this, like a clip a user records


def nsh_clips(folder: Path | None = None) -> list[tuple[Path, str]]:
    """(wav, transcript) of the real man `nsh`'s clips in recording order (default folder: `NSH`),
    stress marks removed."""
    import re
    folder = NSH if folder is None else folder
    data = folder / "etc" / "txt.done.data"
    if not data.is_file():
        raise SystemExit(f"nsh needs festival's Russian voice: {data} not found (apt-get install festvox-ru)")
    clips = []
    for line in data.read_text(encoding="utf-8").splitlines():
        found = re.match(r'\(\s*(\S+)\s+"(.*)"\s*\)', line.strip())
        if found and (folder / "wav" / f"{found.group(1)}.wav").is_file():
            clips.append((folder / "wav" / f"{found.group(1)}.wav", found.group(2).replace("+", "")))
    return clips


def nsh_corpus(corpus: Path, folder: Path) -> Path:
    """A corpus-shaped folder for `Judge` on `nsh`: train/ is the corpus's (its distractors), eval/nsh
    his 8 held-out clips and then silent stand-ins carrying the corpus's held-out English sentences
    (what the clones say), eval_ref/nsh the zero-shot reference."""
    if (folder / "eval_ref" / "nsh").is_dir():
        return folder
    clips = nsh_clips()
    held = folder / "eval" / "nsh"
    held.mkdir(parents=True, exist_ok=True)
    if not (folder / "train").exists():
        (folder / "train").symlink_to((corpus / "train").resolve())
    for k, (path, text) in enumerate(clips[NSH_HELD_OUT:NSH_HELD_OUT + 8]):
        sf.write(held / f"{k:04d}.wav", load_audio(path, SAMPLE_RATE), SAMPLE_RATE)
        (held / f"{k:04d}.txt").write_text(text + "\n", encoding="utf-8")
    english = sorted((corpus / "eval" / "flite_rms").glob("*.txt"))[8:8 + 32]
    for k, path in enumerate(english, start=8):
        sf.write(held / f"{k:04d}.wav", np.zeros(SAMPLE_RATE // 10, np.float32), SAMPLE_RATE)
        (held / f"{k:04d}.txt").write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    reference = folder / "eval_ref" / "nsh"
    reference.mkdir(parents=True, exist_ok=True)
    wav = load_audio(clips[NSH_HELD_OUT + 8][0], SAMPLE_RATE)
    sf.write(reference / "0000.wav", wav[:int(REFERENCE_SECONDS * SAMPLE_RATE)], SAMPLE_RATE)
    return folder


def nsh_takes(folder: Path, minutes: float) -> list[Path]:
    """`minutes` of `nsh`'s first clips as takes (wav + Russian transcript), before his held-out ones."""
    folder.mkdir(parents=True, exist_ok=True)
    takes, total = [], 0.0
    for path, text in nsh_clips()[:NSH_HELD_OUT]:
        if total >= minutes * 60:
            return takes
        take = folder / path.name
        if not take.is_file():
            sf.write(take, load_audio(path, SAMPLE_RATE), SAMPLE_RATE)
            take.with_suffix(".txt").write_text(text + "\n", encoding="utf-8")
        takes.append(take)
        total += sf.info(take).duration
    if total >= minutes * 60:
        return takes
    raise SystemExit(f"nsh has {total / 60:.1f} minutes of clips before his held-out ones: ask for fewer")


def make_takes(voice: str, corpus: Path, folder: Path, minutes: float) -> list[Path]:
    """`minutes` of takes of `voice` ("flite_rms low") on sentences the corpus never used."""
    import tempfile
    base, _, suffix = voice.partition(" ")
    effects = dict(VOICE_TRANSFORMS)[f" {suffix}" if suffix else ""]
    used = {p.read_text(encoding="utf-8").strip() for p in corpus.rglob("*.txt")}
    sentences = [s for s in load_sentences() if s not in used]
    rng = np.random.default_rng(7)
    rng.shuffle(sentences)
    folder.mkdir(parents=True, exist_ok=True)
    engine = next(v for v in VOICES if v.speaker == base)
    takes, total = sorted(folder.glob("*.wav")), 0.0
    total = sum(sf.info(p).duration for p in takes)
    for k, text in enumerate(sentences[len(takes):], start=len(takes)):
        if total >= minutes * 60:
            break
        with tempfile.TemporaryDirectory() as tmp:
            raw = Path(tmp) / "raw.wav"
            synthesize(engine, text, raw)
            wav, sr = sf.read(raw, dtype="float32")
            if sr != SAMPLE_RATE:
                import librosa
                wav = librosa.resample(wav, orig_sr=sr, target_sr=SAMPLE_RATE)
        wav = _sox(wav, effects)
        path = folder / f"take_{k:04d}.wav"
        sf.write(path, wav, SAMPLE_RATE)
        path.with_suffix(".txt").write_text(text + "\n", encoding="utf-8")
        takes.append(path)
        total += len(wav) / SAMPLE_RATE
    return takes


def subset(takes: list[Path], folder: Path, minutes: float) -> Path:
    """A folder with the first takes of `takes` that add up to `minutes`."""
    folder.mkdir(parents=True, exist_ok=True)
    total = 0.0
    for path in takes:
        if total >= minutes * 60:
            break
        for src in (path, path.with_suffix(".txt")):
            dst = folder / src.name
            if not dst.exists():
                dst.write_bytes(src.read_bytes())
        total += sf.info(path).duration
    return folder


class Judge:
    """Scores clones of one held-out voice against its held-out recordings."""

    def __init__(self, pipe, voice: str, corpus: Path, n_texts: int):
        base, _, suffix = voice.partition(" ")
        effects = dict(VOICE_TRANSFORMS)[f" {suffix}" if suffix else ""]
        read = lambda p: sf.read(p, dtype="float32")[0]  # noqa: E731
        items = sorted((corpus / "eval" / base).glob("*.wav"))
        self.references = [_sox(read(p), effects) for p in sorted((corpus / "eval_ref" / base).glob("*.wav"))]
        held = items[:8]  # the voice's held-out recordings (other sentences than the clones')
        self.recordings = [_sox(read(p), effects) for p in held]
        self.texts = [p.with_suffix(".txt").read_text(encoding="utf-8").strip() for p in items[8:8 + n_texts]]
        self.pipe = pipe
        embed = lambda w: pipe.encoder.embed_utterance(_prepared_array(w))  # noqa: E731
        from encoder.audio import power_dbfs
        prepared = [_prepared_array(w) for w in self.recordings]
        self.own = np.stack([pipe.encoder.embed_utterance(w) for w in prepared])
        self.level = float(np.median([power_dbfs(w) for w in prepared]))  # the level the encoder hears them at
        centroid = lambda e: e.mean(0) / np.linalg.norm(e.mean(0))  # noqa: E731
        candidates = [centroid(self.own)]
        for semitones in TWIN_SEMITONES:
            candidates.append(centroid(np.stack([embed(_sox(w, ("pitch", str(100 * semitones))))
                                                 for w in self.recordings[:4]])))
        for name, other_effects in OTHER_VOICES:
            clips = sorted((corpus / "train" / name.split(" ")[0]).glob("*.wav"))[:3]
            if clips:
                candidates.append(centroid(np.stack([embed(_sox(read(p), other_effects)) for p in clips])))
        self.candidates = np.stack(candidates)
        from deepfake_audio.training.measures import pitch_of
        self.f0 = pitch_of(np.concatenate(self.recordings)).median_hz
        self.recognise = Recogniser()

    def score(self, **clone_args) -> dict:
        from deepfake_audio.training.measures import pitch_of
        from encoder.audio import at_power_dbfs
        sims, hits, f0_ok, hyps, level_sims, level_hits = [], 0, 0, [], [], 0
        for k, text in enumerate(self.texts):
            wav = self.pipe.clone(text=text, seed=k, **clone_args).wav
            prepared = _prepared_array(wav)
            embed = self.pipe.encoder.embed_utterance(prepared)
            sims.append(float(np.mean(self.own @ embed)))
            hits += int(np.argmax(self.candidates @ embed) == 0)
            at_level = self.pipe.encoder.embed_utterance(at_power_dbfs(prepared, self.level))
            level_sims.append(float(np.mean(self.own @ at_level)))
            level_hits += int(np.argmax(self.candidates @ at_level) == 0)
            pitch = pitch_of(wav)
            f0_ok += int(np.isfinite(pitch.median_hz) and abs(pitch.median_hz / self.f0 - 1) <= 0.10)
            hyps.append(self.recognise(wav))
        n = len(self.texts)
        return {"similarity": round(float(np.mean(sims)), 4), "identified": hits / n,
                "similarity_at_level": round(float(np.mean(level_sims)), 4), "identified_at_level": level_hits / n,
                "f0_within_10": f0_ok / n,
                "wer": round(word_error_rate(self.texts, hyps), 4), "clones": n}


def judged_snapshots(folder: Path, minutes: tuple[float, ...] = (1, 2, 5, 10)) -> list[Path]:
    """The snapshots nearest to `minutes` of the job (and the last one), in order."""
    snaps = sorted(folder.glob("*.tuned.pt"))
    spent = [int(p.name.split("_")[2].removesuffix("s.tuned.pt")) / 60 for p in snaps]
    picked = {int(np.argmin([abs(s - m) for s in spent])) for m in minutes if spent} | ({len(snaps) - 1} if snaps else set())
    return [snaps[i] for i in sorted(picked)]


def plot(report: dict, path: Path) -> Path:
    """Similarity against minutes of training (each amount of recordings) and against minutes recorded."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for voice, entry in report.items():
        zero = entry["zero_shot"]["similarity"]
        runs = sorted((float(k.split("_")[1].removesuffix("min")), v) for k, v in entry.items()
                      if k.startswith("recorded_") and v.get("curve"))
        for recorded, run in runs:
            xs = [0.0] + [row["minutes"] for row in run["curve"]]
            ys = [zero] + [row["similarity"] for row in run["curve"]]
            left.plot(xs, ys, marker="o", label=f"{voice}, {recorded:g} min recorded")
        if runs:
            right.plot([0.0] + [r for r, _ in runs], [zero] + [run["final"]["similarity"] for _, run in runs],
                       marker="o", label=voice)
    left.set(xlabel="minutes of fine-tuning (wall time, 2 busy cores)", ylabel="similarity to held-out recordings",
             title="against training time (0: zero-shot)")
    right.set(xlabel="minutes of recordings", ylabel="similarity after the whole budget",
              title="against recordings (0: zero-shot)")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--voices", nargs="+", default=["flite_rms low", "flite_awb high"])
    parser.add_argument("--recorded", nargs="+", type=float, default=[5.0, 2.0], help="minutes of takes")
    parser.add_argument("--minutes", type=float, default=10.0, help="fine-tuning budget, minutes of wall time")
    parser.add_argument("--piece", type=float, default=60.0, help="seconds between snapshots")
    parser.add_argument("--texts", type=int, default=8, help="clones per condition")
    parser.add_argument("--vocoder", default="starter")
    parser.add_argument("--plot", type=Path, default=None, help="also draw the curves into this PNG")
    parser.add_argument("--lr", type=float, default=None, help="learning rate (default: the command's)")
    parser.add_argument("--consistency", type=float, default=None, help="speaker-consistency loss weight")
    parser.add_argument("--vocoder-share", type=float, default=None,
                        help="share of the budget for the voice's own starter vocoder (default: the command's)")
    args = parser.parse_args(argv)
    from deepfake_audio.download import STARTER_MODELS_DIR, models_folder
    from deepfake_audio.pipeline import Pipeline
    from deepfake_audio.training.voice_tuning import TuningJob, tune_voice
    from deepfake_audio_core.tuned import load_tuned_voice
    report_path = args.out / "report.json"
    report = json.loads(report_path.read_text()) if report_path.is_file() else {}
    models = models_folder()
    synthesizer = models / "synthesizer.pt"
    synthesizer = synthesizer if synthesizer.is_file() else STARTER_MODELS_DIR / "synthesizer.pt"
    pipe = Pipeline(device="cpu")
    for voice in args.voices:
        slug = voice.replace(" ", "_")
        corpus = nsh_corpus(args.corpus, args.out / "nsh_corpus") if voice == "nsh" else args.corpus
        judge = Judge(pipe, voice, corpus, args.texts)
        entry = report.setdefault(voice, {"reference_f0": round(judge.f0, 1)})
        if "zero_shot" not in entry:
            entry["zero_shot"] = judge.score(reference_audio=judge.references[0], sample_rate=SAMPLE_RATE,
                                             vocoder=args.vocoder)
            print(voice, "zero-shot", entry["zero_shot"], flush=True)
        takes = (nsh_takes(args.out / slug / "takes", max(args.recorded)) if voice == "nsh"
                 else make_takes(voice, args.corpus, args.out / slug / "takes", max(args.recorded)))
        for minutes in args.recorded:
            key = f"recorded_{minutes:g}min"
            if key in entry and entry[key].get("complete"):
                continue
            folder = subset(takes, args.out / slug / f"takes_{minutes:g}min", minutes)
            work = args.out / slug / f"work_{minutes:g}min"
            began = time.time()
            tune_voice(TuningJob(folder, work, work / f"{slug}.tuned.pt", synthesizer, slug, args.minutes * 60,
                                 models=models, piece=args.piece, quiet=True, snapshots=True, lr=args.lr,
                                 **({} if args.consistency is None else {"consistency": args.consistency}),
                                 **({} if args.vocoder_share is None else {"vocoder_share": args.vocoder_share})))
            curve = []
            for snap in judged_snapshots(work / "snapshots"):
                step, spent = snap.name.split("_")[1], snap.name.split("_")[2].removesuffix("s.tuned.pt")
                tuned = load_tuned_voice(snap)
                row = {"step": int(step), "minutes": round(int(spent) / 60, 2),
                       **judge.score(tuned=tuned, vocoder=args.vocoder)}
                curve.append(row)
                print(voice, key, row, flush=True)
            # the job's file is the piece that validated best (voice_tuning's "kept"), not always the last
            progress = json.loads((work / "progress.json").read_text())
            kept_step = progress["kept"]["step"]
            kept = next((row for row in curve if row["step"] == kept_step), None)
            final = load_tuned_voice(work / f"{slug}.tuned.pt")
            if kept is None:
                final_synthesizer = load_tuned_voice(work / f"{slug}.tuned.pt")
                final_synthesizer.vocoder = None
                kept = {"step": kept_step, **judge.score(tuned=final_synthesizer, vocoder=args.vocoder)}
                print(voice, key, "kept", kept, flush=True)
            entry[key] = {"curve": curve, "final": kept, "last": curve[-1] if curve else None, "complete": True,
                          "job_seconds": round(time.time() - began, 1), "vocoder": progress.get("vocoder")}
            if final.vocoder is not None:  # the voice as the job left it: with its own vocoder
                entry[key]["synthesizer_only"] = kept
                entry[key]["final"] = {"step": kept_step, "vocoder": True,
                                       **judge.score(tuned=final, vocoder=args.vocoder)}
                print(voice, key, "with its own vocoder", entry[key]["final"], flush=True)
            report_path.parent.mkdir(parents=True, exist_ok=True)
            report_path.write_text(json.dumps(report, indent=1))
        report_path.write_text(json.dumps(report, indent=1))
    for voice, entry in report.items():
        zero = entry["zero_shot"]
        for key, value in entry.items():
            if key.startswith("recorded_") and value.get("final"):
                final = value["final"]
                print(f"{voice} {key} (kept step {final.get('step')}): similarity {zero['similarity']:.3f} -> "
                      f"{final['similarity']:.3f} "
                      f"(+{final['similarity'] - zero['similarity']:.3f}), identified {zero['identified']:.0%} -> "
                      f"{final['identified']:.0%}, F0 within 10 % {zero['f0_within_10']:.0%} -> "
                      f"{final['f0_within_10']:.0%}, WER {zero['wer']:.1%} -> {final['wer']:.1%}")
    if args.plot:
        print(f"plot: {plot(report, args.plot)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
