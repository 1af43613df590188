"""Vocoder preprocessing: the mels the vocoder learns from, paired with their audio.

Without `--synthesizer` the vocoder trains on ground-truth mels: the metadata simply
points at the synthesizer preprocessing's mels and audio. With a trained synthesizer,
each utterance is run through the Tacotron with teacher forcing and its post-net
output is saved as a ground-truth-aligned (GTA) mel, `mels_gta/<speaker>/<id>.npy`
(80, frames) float32: the vocoder then learns from the kind of mels it will be given
at inference, which is how the published vocoder was trained. A FastSpeech starter is
taught by its aligner's durations, and a pitch-aware one also by the F0 measured from
each utterance's audio, so that its GTA mels keep the recording's pitch. The starter
vocoder learns from such a folder too (`starter_vocoder_data` packs it).

    python -m deepfake_audio.training.vocoder_preprocess data/synthesizer --synthesizer runs/synthesizer/synthesizer.pt --out data/vocoder
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import torch

from deepfake_audio.training import TrainingError
from deepfake_audio.training.commands import console_entry
from deepfake_audio.training.files import METADATA, read_metadata, relative, save_npy, write_jsonl

GTA_SOURCE = "gta_source.json"  # which synthesizer weights made the GTA mels


def gta_mels(records: list[dict], synthesizer: Path, out: Path, batch_size: int, device: str,
             quiet: bool = False, seed: int = 0) -> None:
    """Write the teacher-forced post-net mel of every record that has none yet (for the FastSpeech
    starter: its mel with the aligner's durations). Mels an earlier run made with other
    synthesizer weights are made again (`GTA_SOURCE` records whose they are)."""
    from tqdm import tqdm
    from synthesizer.inference import Synthesizer
    from synthesizer.text import text_to_sequence
    stat = synthesizer.stat()
    source = {"synthesizer": str(synthesizer.resolve()), "bytes": stat.st_size, "modified": stat.st_mtime_ns}
    marker = out / GTA_SOURCE
    if marker.is_file() and json.loads(marker.read_text(encoding="utf-8")) != source:
        if not quiet:
            print(f"{synthesizer} changed since the GTA mels in {out} were made: making them again")
        shutil.rmtree(out / "mels_gta", ignore_errors=True)
    marker.write_text(json.dumps(source), encoding="utf-8")
    todo = [r for r in records if not (out / r["gta"]).is_file()]
    if not todo:
        return
    synth = Synthesizer(synthesizer, device)
    pitch = _pitch_inputs(records) if synth.has_pitch else None
    generator = torch.Generator(device=synth.device).manual_seed(seed)
    todo.sort(key=lambda rec: rec["n_frames"])  # similar lengths together: little padding
    bar = tqdm(total=len(todo), desc="GTA mels", unit="utt", disable=quiet, dynamic_ncols=True)
    for start in range(0, len(todo), batch_size):
        chunk = todo[start:start + batch_size]
        items = [(np.asarray(text_to_sequence(rec["text"], synth.hparams.tts_cleaner_names), np.int64),
                  np.load(rec["mel"]), np.load(rec["embed"])) for rec in chunk]
        frames = max(mel.shape[1] for _, mel, _ in items)
        extra = None if pitch is None else _pitch_batch(pitch, chunk, frames, synth.device)
        for rec, mel in zip(chunk, teacher_forced_mels(synth, items, generator, extra)):
            save_npy(out / rec["gta"], mel[:, :rec["n_frames"]].astype(np.float32))
        bar.update(len(chunk))
    bar.close()


def teacher_forced_mels(synth, items: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
                        generator: torch.Generator, pitch: dict[str, torch.Tensor] | None = None) -> np.ndarray:
    """The post-net mels a synthesizer makes when taught the true mels (teacher forcing).

    `synth`: a loaded `synthesizer.inference.Synthesizer`. `items`: (character ids (N,), true mel
    (80, T), speaker embedding (256,)) each. A FastSpeech starter is taught by its aligner's
    durations, and a pitch-aware one also by `pitch`: "f0" (B, T_max) Hz of each frame (0
    unvoiced) and "pitch_stats" (B, 2) the voice's log-F0 median and spread (NaN rows: what the
    embedding suggests). Tacotron is fed the true previous frames. Returns (B, 80, T') float32
    with T' at least the longest item's frames (Tacotron pads to its r); item b is valid for its own T.
    """
    from deepfake_audio.training.synthesizer_train import collate, pad_to_multiple
    model, hp = synth.model, synth.hparams
    r = getattr(model, "r", 1)  # Tacotron decodes r frames a step; FastSpeech pads nothing
    batch = pad_to_multiple(collate(items, -hp.max_abs_value), r, -hp.max_abs_value)
    batch = {k: v.to(synth.device) for k, v in batch.items()}
    with torch.no_grad():
        if synth.architecture == "fastspeech":
            extra = {}
            if synth.has_pitch and pitch is not None:
                extra = dict(pitch)
                extra["pitch_stats"] = model.voice_pitch(batch["embeds"], extra["pitch_stats"])
            postnet = model(batch["chars"], batch["mels"], batch["embeds"], batch["char_lens"],
                            batch["mel_lens"], **extra)["mels"]
        else:
            _, postnet, _, _ = model(batch["chars"], batch["mels"], batch["embeds"], generator)
    return postnet.cpu().numpy()


def _pitch_inputs(records: list[dict]) -> dict[str, dict]:
    """What a pitch-conditioned synthesizer is taught with, per record id: the F0 of each
    frame (T,) Hz measured from the processed audio, and its speaker's log-F0 statistics (2,)."""
    from deepfake_audio.training.packed import frame_f0, speaker_pitch_stats
    f0 = [frame_f0(np.load(rec["audio"]), int(rec["n_frames"])) for rec in records]
    offsets = np.cumsum([0] + [len(f) for f in f0])
    stats = speaker_pitch_stats(np.concatenate(f0), offsets, np.asarray([rec["speaker"] for rec in records]))
    return {rec["id"]: {"f0": f, "stats": s} for rec, f, s in zip(records, f0, stats)}


def _pitch_batch(pitch: dict[str, dict], chunk: list[dict], frames: int, device) -> dict[str, torch.Tensor]:
    """The batch's f0 (B, frames), 0 past each item's end, and pitch_stats (B, 2)."""
    f0 = np.zeros((len(chunk), frames), np.float32)
    for i, rec in enumerate(chunk):
        values = pitch[rec["id"]]["f0"][:frames]
        f0[i, :len(values)] = values
    stats = np.stack([pitch[rec["id"]]["stats"] for rec in chunk]).astype(np.float32)
    return {"f0": torch.from_numpy(f0).to(device), "pitch_stats": torch.from_numpy(stats).to(device)}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sv2tts-vocoder-preprocess",
        description="Prepare vocoder training data from a folder made by sv2tts-synthesizer-preprocess: "
                    "ground-truth mels, or with --synthesizer ground-truth-aligned mels made by a trained "
                    "Tacotron (recommended: the vocoder then matches the synthesizer's output).",
        epilog="Example: sv2tts-vocoder-preprocess data/synthesizer --synthesizer runs/synthesizer/synthesizer.pt "
               "--out data/vocoder")
    parser.add_argument("data", type=Path, help="folder written by sv2tts-synthesizer-preprocess")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR",
                        help="output folder; running again resumes and only makes the missing mels")
    parser.add_argument("--synthesizer", type=Path, default=None, metavar="CKPT",
                        help="trained synthesizer.pt for ground-truth-aligned mels (default: none, use the "
                             "ground-truth mels)")
    parser.add_argument("--batch-size", type=int, default=16, metavar="N",
                        help="utterances per synthesizer pass (default 16)")
    parser.add_argument("--device", default=None,
                        help="where the synthesizer runs: cpu, cuda or cuda:N (default: cuda when available)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    return parser


def main(argv: list[str] | None = None) -> list[dict]:
    args = build_parser().parse_args(argv)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    source = read_metadata(args.data, ("mel", "audio", "embed", "text"))
    records = []
    for rec in source:
        rec = dict(rec)
        if args.synthesizer is not None:
            rec["gta"] = f"mels_gta/{rec['speaker']}/{rec['id']}.npy"
        records.append(rec)
    if args.synthesizer is not None:
        if not args.synthesizer.is_file():
            raise TrainingError(f"Synthesizer checkpoint not found: {args.synthesizer}")
        device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
        gta_mels(records, args.synthesizer, out, args.batch_size, device, args.quiet)
    entries = [{"id": rec["id"], "speaker": rec["speaker"],
                "mel": rec["gta"] if "gta" in rec else relative(Path(rec["mel"]), out),
                "audio": relative(Path(rec["audio"]), out), "n_frames": rec["n_frames"],
                "n_samples": rec["n_samples"]} for rec in records]
    write_jsonl(out / METADATA, entries)
    if not args.quiet:
        kind = "ground-truth-aligned" if args.synthesizer else "ground-truth"
        print(f"{len(entries)} utterances with {kind} mels in {out}")
    return entries


cli = console_entry(main)


if __name__ == "__main__":
    raise SystemExit(cli())
