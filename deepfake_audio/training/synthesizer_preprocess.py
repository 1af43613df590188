"""Synthesizer preprocessing: corpus audio + transcripts -> mels, audio and speaker embeddings.

Step 1, per utterance: load at 16 kHz, trim long silences with the encoder's VAD,
rescale to a 0.9 peak, and compute the synthesizer's mel (`synthesizer.audio`) exactly
as the engine does. Saved under `<out>`: `mels/<speaker>/<id>.npy` (80, frames) float32
in [-4, 4] and `audio/<speaker>/<id>.npy` (samples,) float32 (the vocoder's targets).
Step 2: the speaker embedding of each utterance with the chosen encoder,
`embeds/<speaker>/<id>.npy` (256,) float32. `metadata.jsonl` lists the utterances
that have all three, with their transcripts.

    python -m deepfake_audio.training.synthesizer_preprocess /data/LibriTTS/train-clean-100 --out data/synthesizer
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from deepfake_audio_core.errors import DeepfakeAudioError
from deepfake_audio.training.commands import console_entry, corpus_parser
from deepfake_audio.training.datasets import Utterance, read_corpora
from deepfake_audio.training.files import METADATA, SKIPPED, atomic_write, read_jsonl, relative, save_npy, write_jsonl
from deepfake_audio.training.preprocessing import Outcome, parallel_map, process_utterances, report_skipped
from synthesizer.hparams import hparams as syn_hp

_settings: dict = {}


def _init_audio(out: str, max_frames: int, trim: bool) -> None:
    _settings.update(out=Path(out), max_frames=max_frames, trim=trim)


def training_mel(wav: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mel (80, T), the 16 kHz audio (samples,) it was made from) of a 16 kHz recording, made as
    `process_audio` makes the training data's: silences trimmed, peak at `rescaling_max`."""
    from encoder.audio import preprocess_wav
    from synthesizer.audio import melspectrogram
    hp = syn_hp
    audio = preprocess_wav(np.asarray(wav, np.float32), hp.sample_rate, normalize=False, trim_silence=True)
    audio = (audio / max(float(np.abs(audio).max()), 1e-6) * hp.rescaling_max).astype(np.float32)
    return melspectrogram(audio, hp).astype(np.float32), audio


def process_audio(utt: Utterance) -> Outcome:
    """Mel and processed audio of one utterance (in a worker process)."""
    from encoder.audio import preprocess_wav
    from synthesizer.audio import melspectrogram
    from synthesizer.text import has_speakable_characters, text_to_sequence
    from deepfake_audio_core.audio_io import load_audio
    out, hp = _settings["out"], syn_hp
    if not has_speakable_characters(text_to_sequence(utt.text, hp.tts_cleaner_names)):
        return Outcome(utt.id, skipped=f"transcript has nothing speakable: {utt.text!r}", source=str(utt.audio))
    try:
        wav = load_audio(utt.audio, hp.sample_rate)
    except DeepfakeAudioError as exc:
        return Outcome(utt.id, skipped=f"unreadable audio: {exc}", source=str(utt.audio))
    if _settings["trim"]:
        wav = preprocess_wav(wav, normalize=False, trim_silence=True)
    peak = float(np.abs(wav).max()) if wav.size else 0.0
    if peak < 1e-4:
        return Outcome(utt.id, skipped="silent (no speech left after trimming)", source=str(utt.audio))
    if hp.rescale:
        wav = (wav / peak * hp.rescaling_max).astype(np.float32)
    mel = melspectrogram(wav, hp)
    if mel.shape[1] > _settings["max_frames"]:
        return Outcome(utt.id, skipped=f"too long: {mel.shape[1]} frames (limit {_settings['max_frames']}, "
                                       f"{_settings['max_frames'] * hp.frame_seconds:.1f} s)", source=str(utt.audio))
    mel_path = out / "mels" / utt.speaker / f"{utt.id}.npy"
    audio_path = out / "audio" / utt.speaker / f"{utt.id}.npy"
    save_npy(mel_path, mel)
    save_npy(audio_path, wav.astype(np.float32))
    return Outcome(utt.id, {
        "id": utt.id, "speaker": utt.speaker, "text": utt.text, "mel": relative(mel_path, out),
        "audio": relative(audio_path, out), "embed": f"embeds/{utt.speaker}/{utt.id}.npy",
        "n_frames": int(mel.shape[1]), "n_samples": int(len(wav)), "source": str(utt.audio)})


_encoder = {}


def _init_encoder(weights: str, out: str) -> None:
    import torch
    from encoder.inference import Encoder
    torch.set_num_threads(1)
    _encoder.update(model=Encoder(weights, "cpu"), out=Path(out))


def process_embedding(record: dict) -> tuple[dict, str | None]:
    """Speaker embedding of one processed utterance (in a worker process)."""
    from encoder.audio import preprocess_wav
    out = _encoder["out"]
    wav = np.load(out / record["audio"])
    try:
        embed = _encoder["model"].embed_utterance(preprocess_wav(wav))
    except DeepfakeAudioError as exc:
        return record, str(exc)
    save_npy(out / record["embed"], embed.astype(np.float32))
    return record, None


def build_parser() -> argparse.ArgumentParser:
    parser = corpus_parser(
        "sv2tts-synthesizer-preprocess",
        "Prepare corpora with transcripts for synthesizer training: the synthesizer's 80-channel mels (the "
        "engine's audio front end), the processed audio (targets for the vocoder) and the speaker embedding of "
        "every utterance, made with the encoder you choose. Utterances without a transcript, unreadable or too "
        "long are skipped and listed.",
        "sv2tts-synthesizer-preprocess /data/LibriSpeech/train-clean-100 ljspeech:/data/LJSpeech-1.1 "
        "--out data/synthesizer --encoder runs/encoder/encoder.pt")
    parser.add_argument("--encoder", type=Path, default=None, metavar="CKPT",
                        help="speaker encoder for the embeddings: a trained encoder.pt (default: the "
                             "official encoder bundled with the resemblyzer package). Use the same encoder "
                             "for cloning later")
    parser.add_argument("--max-frames", type=int, default=syn_hp.max_mel_frames, metavar="N",
                        help=f"skip utterances longer than N mel frames of 12.5 ms (default "
                             f"{syn_hp.max_mel_frames}, {syn_hp.max_mel_frames * syn_hp.frame_seconds:.2f} s)")
    parser.add_argument("--no-trim", action="store_true",
                        help="keep long silences (by default they are cut with the encoder's voice-activity "
                             "detection, as the published model's data was)")
    return parser


def main(argv: list[str] | None = None) -> list[dict]:
    args = build_parser().parse_args(argv)
    corpus = read_corpora(args.corpora, args.format).with_transcripts()
    out = args.out.resolve()
    from encoder.inference import default_weights_path
    encoder = (args.encoder or default_weights_path()).resolve()
    previous = out / "preprocess.json"
    if previous.is_file() and json.loads(previous.read_text()).get("encoder") != str(encoder):
        # Embeddings of another encoder are useless with this one: make them again.
        for record in read_jsonl(out / METADATA):
            (out / record["embed"]).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(previous, lambda tmp: tmp.write_text(json.dumps(
        {"encoder": str(encoder), "max_frames": args.max_frames, "trim": not args.no_trim}, indent=2) + "\n"))

    records = process_utterances(
        corpus, out, process_audio, args.workers, "synthesizer mels", args.quiet,
        outputs_exist=lambda r: (out / r["mel"]).is_file() and (out / r["audio"]).is_file(),
        initializer=_init_audio, initargs=(str(out), args.max_frames, not args.no_trim))

    todo = [r for r in records if not (out / r["embed"]).is_file()]
    failed: list[tuple[str, str]] = []
    for record, error in parallel_map(process_embedding, todo, args.workers, "speaker embeddings", args.quiet,
                                      _init_encoder, (str(encoder), str(out))):
        if error is not None:
            failed.append((record["source"], f"no speaker embedding: {error}"))
    records = [r for r in records if (out / r["embed"]).is_file()]
    write_jsonl(out / METADATA, records)
    if failed:
        with (out / SKIPPED).open("a", encoding="utf-8") as fh:
            fh.writelines(f"{path}\t{why}\n" for path, why in failed)
        report_skipped(failed, out, args.quiet)
    if not args.quiet:
        minutes = sum(r["n_samples"] for r in records) / syn_hp.sample_rate / 60
        print(f"{len(records)} utterances ({minutes:.1f} min) of {len({r['speaker'] for r in records})} "
              f"speakers in {out}")
    return records


cli = console_entry(main)


if __name__ == "__main__":
    raise SystemExit(cli())
