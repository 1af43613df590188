"""Write the model card of a trained starter synthesizer from what the recipe recorded.

    python -m deepfake_audio.training.model_card --corpus artifacts/corpus --run runs/starter \
        --models saved_models/starter [--recipe-times artifacts/recipe_times.json]

Reads the corpus manifest (voices, licences, hours), the run folder (hyperparameters,
training wall time, step), the evaluation report written next to the weights, and the
recipe's step timings when given, and writes `<models>/MODEL_CARD.md`.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from deepfake_audio.training import TrainingError
from deepfake_audio.training.commands import console_entry
from deepfake_audio.training.loop import WALL_TIME


def _read_json(path: Path, what: str) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TrainingError(f"{path} not found: {what}.") from None
    except ValueError as exc:
        raise TrainingError(f"{path} is not valid JSON ({exc}).") from None


def _weights(path: Path) -> tuple[dict, int]:
    """(the exported checkpoint, its number of floating-point weights)."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    return ckpt, sum(v.numel() for v in ckpt["model_state"].values() if v.is_floating_point())


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"


def model_card(corpus: Path, run: Path, models: Path, recipe_times: Path | None = None,
               notes: tuple[str, ...] = (), vocoder_run: Path | None = None, vocoder_data: Path | None = None,
               vocoder_notes: tuple[str, ...] = (), pseudo: Path | None = None,
               limit_notes: tuple[str, ...] = ()) -> str:
    """The card's Markdown."""
    manifest = _read_json(corpus / "manifest.json", "build the corpus first")
    report = _read_json(models / "evaluation.json", "run the evaluation step first")
    settings = _read_json(run / "hparams.json", "train first")
    clock = _read_json(run / WALL_TIME, "train first")
    weights = models / "synthesizer.pt"
    ckpt, n_params = _weights(weights)
    hp = settings["hparams"]
    times = _read_json(recipe_times, "the recipe records it") if recipe_times else {}

    train_voices = [v for v in manifest["voices"] if v["split"] == "train"]
    held_out = manifest["held_out_voices"]
    lines = [
        "# Starter models", "",
        "A small FastSpeech-style synthesizer (`synthesizer/fastspeech.py`) that ships with the project so that a "
        "fresh install clones voices offline. It was trained on this project's own 2-core CPU machine by "
        "`bash scripts/train_starter.sh`, on speech made by free speech synthesisers: it clones the timbre of a "
        "reference only roughly and sounds synthetic. The official SV2TTS models (`python -m deepfake_audio "
        "download`) sound far more natural and replace it as soon as they are in the models folder.", "",
        "## Data", "",
        f"- {manifest['utterances']} utterances, {manifest['hours']:.2f} h at {manifest['sample_rate']} Hz, "
        f"{len(manifest['speakers'])} speakers: {len(train_voices)} synthetic voices plus "
        f"{manifest['augment']} pitch/formant/tempo variants of each, and {len(held_out)} held-out voices.",
        f"- Sentences: {manifest['sentences']['train']} training and {manifest['sentences']['eval']} held-out "
        f"sentences of {manifest['sentences']['words'][0]}-{manifest['sentences']['words'][1]} words from "
        f"{manifest['sentences']['source']}; each training speaker reads "
        f"{manifest['sentences'].get('per_speaker', 'half')} of them.",
        *_pseudo_lines(pseudo),
        "- Voices and licences:", "",
        "| voice | engine | Debian package | licence | split |", "|---|---|---|---|---|"]
    lines += [f"| {v['speaker']} | {v['engine']} `{v['name']}` | {v['debian_package']} | {v['licence']} | "
              f"{v['split']} |" for v in manifest["voices"]]
    model_fields = ("d_model", "heads", "encoder_layers", "decoder_layers", "ffn_dims", "ffn_kernel",
                    "decoder_stride", "duration_dims", "aligner_dims")
    lines += [
        "", "## Model", "",
        f"- {n_params / 1e6:.2f} M weights, stored in float16 ({weights.stat().st_size / 2**20:.1f} MiB); "
        f"step {int(ckpt['model_state']['step'])}.",
        "- Characters of the engine's English front end (same cleaners and symbols as the Tacotron) and the "
        "official speaker encoder's 256-d embedding in; 80-band mels in the published normalisation out "
        "(12.5 ms frames), so Griffin-Lim and the official WaveRNN both vocode it.",
        "- Text encoder and mel decoder of pre-norm transformer blocks with convolutional feed-forward layers; a "
        "duration predictor; a learned monotonic aligner (forward-sum loss, monotonic alignment search, "
        "binarization loss: Badlani et al. 2022), so no external aligner is needed.",
        *(["- Pitch-aware (FastPitch-style, Lancucki 2021): the voice's median and spread of log-F0 (measured from "
           "the reference at clone time, or guessed from its embedding by a small head) condition the encoder; a "
           "predictor gives each character's log-F0 relative to that median and the absolute log-F0 is embedded "
           "before the length regulator, so the decoder draws the harmonics at the voice's pitch and the pitch "
           "control moves them. Trained on each frame's F0 measured by YIN (`deepfake_audio_core/pitch.py`)."]
          if hp.get("pitch_conditioning") else []),
        "- " + ", ".join(f"{k} {hp[k]}" for k in model_fields if k in hp) + ".",
        "", "## Training", "",
        f"- {clock['step']} steps of {hp['batch_size']} utterances (length-bucketed), AdamW, learning rate "
        f"{hp['learning_rate']} with {hp['warmup_steps']} warm-up steps and cosine decay to a tenth; "
        f"binarization loss from step {hp['binarization_start']}"
        + (f"; per-character pitch loss with weight {hp.get('pitch_loss_weight', 0.1)}."
           if hp.get("pitch_conditioning") else "."),
        *([f"- Speaker-consistency losses from step {hp.get('consistency_start', 0)}: the frozen speaker encoder "
           f"reads each output mel (converted to its own 40-band front end) and 1 - cosine to the embedding asked "
           f"for is added, with weight {hp.get('consistency_loss_weight', 0)} for the batch's own voices and "
           f"{hp.get('consistency_bank_weight', 0)} for {hp.get('consistency_bank_items', 0)} voices per step "
           f"drawn from a bank of embeddings without recordings (`python -m deepfake_audio.training.speaker_bank`: "
           f"espeak-ng accents and variants, pitch- and formant-shifted training voices; never the held-out "
           f"ones). Without them the clones of unseen voices sounded alike."]
          if hp.get("consistency_loss_weight") or hp.get("consistency_bank_weight") else []),
        f"- Training wall time on this machine: {_hours(clock['seconds'])} "
        f"({clock['seconds'] / max(clock['step'], 1):.2f} s per step, 2 CPU cores, shared with other work).",
    ]
    if times:
        lines.append("- The whole recipe: " + ", ".join(f"{step} {_hours(sec)}" for step, sec in times.items())
                     + f"; {_hours(sum(times.values()) + clock['seconds'])} in all.")
    lines += [f"- {note}" for note in notes]
    if vocoder_run is not None:
        lines += _vocoder_lines(models, vocoder_run, vocoder_data, vocoder_notes)
    words = models / AS_RECORDED
    lines += evaluation_lines(report, manifest, limit_notes,
                              _read_json(words, "evaluate the voices as recorded") if words.is_file() else None)
    return "\n".join(lines) + "\n"


def _pseudo_lines(folder: Path | None) -> list[str]:
    """The pseudo-speakers' line of the Data section (none without their folder)."""
    path = None if folder is None else Path(folder) / "pseudo_speakers.json"
    if path is None or not path.is_file():
        return []
    made = json.loads(path.read_text(encoding="utf-8"))
    targets = [v["target_hz"] for v in made["speakers"].values()]
    return [f"- Plus {len(targets)} pseudo-speakers ({made['utterances']} utterances; "
            "`python -m deepfake_audio.training.pseudo_speakers`): the training voices moved by sox in pitch, "
            f"vocal-tract length and tempo to medians of {min(targets):.0f}-{max(targets):.0f} Hz, never the "
            "held-out voices. Both starter models learn from them."]


AS_RECORDED = "evaluation_as_recorded.json"  # the recipe's word-error evaluation on every held-out sentence


def evaluation_lines(report: dict, manifest: dict, limit_notes: tuple[str, ...] = (),
                     as_recorded: dict | None = None) -> list[str]:
    """The Evaluation and Limits sections, from an evaluation report (`training.evaluate`); `limit_notes`
    are more lines for Limits; `as_recorded`, the report of the held-out voices as recorded on every
    held-out sentence (the recipe's `evaluate_words` step), adds their word errors over all of them."""
    held_out = manifest["held_out_voices"]
    floor = report.get("vocoder_floor_wer")
    lines = [
        "", "## Evaluation", "",
        f"`python -m deepfake_audio.training.evaluate` on {report['voices'][0]['sentences']} of the "
        f"{manifest['sentences']['eval']} held-out sentences spoken by the held-out voices ({', '.join(held_out)}), "
        f"cloned from their reference recordings and vocoded with the {report['vocoder']} vocoder:", "",
        "| measure | result |", "|---|---|",
        f"| word error rate of the clones (pocketsphinx) | {report['wer']:.1%} |",
        f"| floor: the recordings themselves | {report['floor_wer']:.1%} |",
    ]
    if floor is not None:
        lines.append(f"| floor: {report['vocoder']} on the recordings' own mels | {floor:.1%} |")
    lines += [
        f"| clones closer to their own voice than to the other held-out voices | {report['identified']:.0%} |",
        f"| mean speaker similarity of a clone to its voice | {report['similarity']:.3f} |", "",
        "| voice | sentences | WER | floor WER | identified | similarity |", "|---|---|---|---|---|---|"]
    lines += [f"| {v['voice']} | {v['sentences']} | {v['wer']:.1%} | {v['floor_wer']:.1%} | {v['identified']:.0%} "
              f"| {v['similarity']:.3f} |" for v in report["voices"]]
    if as_recorded is not None:
        per_voice = "; ".join(f"{v['voice']} {v['wer']:.1%} ({v['floor_wer']:.1%})" for v in as_recorded["voices"])
        floor = as_recorded.get("vocoder_floor_wer")
        n, total = as_recorded["voices"][0]["sentences"], manifest["sentences"]["eval"]
        lines += ["", f"Word errors over {f'all {n}' if n == total else f'{n} of the {total}'} held-out sentences of "
                  f"the voices as recorded (`{AS_RECORDED}`: `evaluate --no-transforms --fast`, the same models): "
                  f"**{as_recorded['wer']:.1%}** (the recordings {as_recorded['floor_wer']:.1%}"
                  + (f", the {as_recorded['vocoder']} vocoder on their own mels {floor:.1%}" if floor is not None else "")
                  + f"); per voice, the recordings in brackets: {per_voice}."]
    lines += _quality_lines(report)
    lines += ["", "## Limits", "",
              "- English only, trained on synthetic voices: expect a robotic sound and a rough likeness to real "
              "voices."]
    if report["identified"] < 0.9:
        lines.append(f"- Likeness of unseen voices: only {report['identified']:.0%} of the clones are closer to their "
                     "own held-out voice than to the others (the target is 90 %). Trained on a dozen synthetic "
                     "voices, it follows the broad class of a voice (pitch range, accent) more than the speaker.")
    lines += [f"- {note}" for note in limit_notes]
    lines.append("- Only clone voices you have permission to use.")
    return lines


def _vocoder_lines(models: Path, run: Path, data: Path | None, notes: tuple[str, ...]) -> list[str]:
    """The starter vocoder's section: model, data, training."""
    settings = _read_json(run / "hparams.json", "train the vocoder first")
    clock = _read_json(run / WALL_TIME, "train the vocoder first")
    weights = models / "starter_vocoder.pt"
    ckpt, n_params = _weights(weights)
    hp = settings["hparams"]
    lines = [
        "", "## Starter vocoder", "",
        f"- `starter_vocoder.pt`: {n_params / 1e6:.2f} M weights in float16 ({weights.stat().st_size / 2**20:.1f} MiB), "
        f"step {int(ckpt['model_state']['step'])}, design `{hp['design']}` (`vocoder/starter_model.py`). It speaks "
        "wherever no WaveRNN `vocoder.pt` is present; Griffin-Lim stays selectable.",
        "- Source-filter: a ConvNeXt over the mel frames (channels "
        f"{hp['channels']}, {hp['blocks']} blocks, kernel {hp['kernel']}) reads the pitch and two spectral "
        "envelopes off the mel; a band-limited pulse train at that pitch, filtered by the first (minimum phase), "
        "plus white noise filtered by the second, through one inverse STFT. At clone time the pitch is moved to "
        "the reference's median F0 (measured by the pipeline; for a saved voice, its recording's, else the F0 "
        "its embedding predicts: `voice_pitch.pt`), and by the pitch control.",
        f"- Training: {clock['step']} steps of {hp['batch_size']} windows of {hp['segment_frames']} frames, "
        f"multi-resolution STFT loss plus log-F0 and voicing losses against the measured F0 (YIN, "
        f"`deepfake_audio_core/pitch.py`), AdamW, learning rate {hp['learning_rate']}, cosine decay; "
        f"{_hours(clock['seconds'])} on one core of this machine.",
    ]
    if data is not None and (data / "index.json").is_file():
        index = _read_json(data / "index.json", "pack the vocoder data first")
        speakers = set(index["speakers"])
        pseudo = sum(1 for s in speakers if s.startswith("pseudo"))
        lines.append(f"- Data: {len(index['offsets']) - 1} utterances, {index['hours']:.2f} h, {len(speakers)} "
                     f"speakers: the corpus's training speakers and {pseudo} pseudo-speakers (`python -m "
                     "deepfake_audio.training.pseudo_speakers`: training voices moved by sox in pitch, "
                     "vocal-tract length and tempo to medians of 65-380 Hz; never the held-out voices).")
    for extra in settings.get("also") or []:
        index = _read_json(Path(extra) / "index.json", "pack the vocoder's extra data first")
        lines.append(f"- Also drawn from, in proportion to its frames: `{Path(extra).name}`, "
                     f"{len(index['offsets']) - 1} utterances, {index['hours']:.2f} h: the same utterances' mels as "
                     "the trained synthesizer makes them with teacher forcing (`vocoder_preprocess --synthesizer`, "
                     "its aligner's durations and the measured pitch), paired with their audio, so the vocoder "
                     "learns the smoother mels it is given at clone time.")
    pitch = models / "voice_pitch.pt"
    if pitch.is_file():
        info = torch.load(pitch, map_location="cpu", weights_only=True)
        lines.append(f"- `voice_pitch.pt`: ridge regression from the speaker embedding to the median log-F0, "
                     f"fitted on {info.get('voices')} voices; with each base voice held out in turn: median "
                     f"error {float(info.get('held_out_median_error', 0)):.1%}, within 15 % in "
                     f"{float(info.get('held_out_within_15pct', 0)):.0%} of utterances.")
    lines += [f"- {note}" for note in notes]
    return lines


def _quality_lines(report: dict) -> list[str]:
    """The measures no training loss sees, for the card's vocoder and the others side by side."""
    if report.get("dnsmos") is None:
        return []
    rows = [(report["vocoder"], report), *report.get("others", {}).items()]
    if report.get("candidates") is None:  # evaluated with --no-transforms
        intro = ("Measures the losses cannot game (the held-out voices as recorded only: no lower or higher "
                 "versions; identification among the held-out voices alone):")
    else:
        intro = (f"Measures the losses cannot game (references from about 80 to 290 Hz: the held-out voices, "
                 f"4 semitones lower and 14 higher; identification among {report['candidates']} candidates: "
                 "the voices, each 3 semitones up and down, voices of the other sex, a child-like voice):")
    lines = ["", intro, "",
             "| vocoder | WER | identified among the hard candidates | clone F0 within 15 % of the reference's "
             "| voiced fraction | DNSMOS OVRL |", "|---|---|---|---|---|---|"]
    lines += [f"| {name} | {r['wer']:.1%} | {r['identified_hard']:.0%} | {r['f0_within_15']:.0%} | "
              f"{r['voiced_fraction']:.2f} | {r['dnsmos']:.2f} |" for name, r in rows]
    if report.get("floor_dnsmos") is not None:
        lines.append(f"| the recordings themselves | {report['floor_wer']:.1%} | | | | {report['floor_dnsmos']:.2f} |")
    moved = [v for v in report["voices"] if " " in v["voice"]]
    if moved and min(v["floor_wer"] for v in moved) > 0.8:
        lines += ["", "pocketsphinx cannot follow the sox-moved recordings themselves (word error rates near 100 %), "
                  "so judge intelligibility on the voices as recorded."]
    lines += ["", "| voice | reference F0 | clone F0 / reference | F0 within 15 % | voiced | identified (hard) "
              "| DNSMOS |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {v['voice']} | {v['reference_f0']:.0f} Hz | {v['f0_ratio']:.2f} | {v['f0_within_15']:.0%} | "
              f"{v['voiced_fraction']:.2f} | {v['identified_hard']:.0%} | {v['dnsmos']:.2f} |"
              for v in report["voices"] if v.get("f0_ratio") is not None]
    return lines


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(prog="python -m deepfake_audio.training.model_card",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, required=True, help="corpus folder with manifest.json")
    parser.add_argument("--run", type=Path, required=True, help="training run folder (hparams.json, wall_time.json)")
    parser.add_argument("--models", type=Path, required=True,
                        help="folder with the exported synthesizer.pt and its evaluation.json; MODEL_CARD.md goes here")
    parser.add_argument("--recipe-times", type=Path, default=None,
                        help="JSON {step: seconds} of the recipe's other steps (written by scripts/train_starter.sh)")
    parser.add_argument("--note", action="append", default=[],
                        help="a line for the Training section (how this run differed from the recipe); repeatable")
    parser.add_argument("--vocoder-run", type=Path, default=None,
                        help="the starter vocoder's run folder: adds its section")
    parser.add_argument("--vocoder-data", type=Path, default=None, help="the starter vocoder's pack folder")
    parser.add_argument("--pseudo", type=Path, default=None, help="the pseudo-speakers' folder (pseudo_speakers.json)")
    parser.add_argument("--vocoder-note", action="append", default=[],
                        help="a line for the vocoder's section; repeatable")
    parser.add_argument("--limit-note", action="append", default=[],
                        help="a line for the Limits section (what is known not to work yet); repeatable")
    args = parser.parse_args(argv)
    out = args.models / "MODEL_CARD.md"
    out.write_text(model_card(args.corpus, args.run, args.models, args.recipe_times, tuple(args.note),
                              args.vocoder_run, args.vocoder_data, tuple(args.vocoder_note), args.pseudo,
                              tuple(args.limit_note)),
                   encoding="utf-8")
    print(f"wrote {out}")
    return out


cli = console_entry(main)

if __name__ == "__main__":
    raise SystemExit(cli())
