"""Speaker-encoder preprocessing: corpus audio -> mel frames per utterance.

Each utterance is loaded at 16 kHz, volume-normalised and silence-trimmed exactly as
at inference (`encoder.audio.preprocess_wav`), then turned into power mel frames
(frames, 40) float32 saved as `<out>/frames/<speaker>/<id>.npy`. `metadata.jsonl`
lists them with their speaker and length. Utterances too short for one training
partial are skipped and counted.

    python -m deepfake_audio.training.encoder_preprocess /data/LibriSpeech/train-clean-100 vctk:/data/VCTK --out data/encoder
"""
from __future__ import annotations

import argparse
from pathlib import Path

from deepfake_audio.training.datasets import Utterance, read_corpora
from deepfake_audio_core.errors import DeepfakeAudioError
from deepfake_audio.training.commands import console_entry, corpus_parser
from deepfake_audio.training.files import relative, save_npy
from deepfake_audio.training.preprocessing import Outcome, process_utterances
from encoder.hparams import hparams as hp

_settings: dict = {}


def _init(out: str, min_frames: int) -> None:
    _settings.update(out=Path(out), min_frames=min_frames)


def process(utt: Utterance) -> Outcome:
    """Mel frames of one utterance (in a worker process)."""
    from encoder.audio import preprocess_wav, wav_to_mel_spectrogram
    out, min_frames = _settings["out"], _settings["min_frames"]
    try:
        wav = preprocess_wav(utt.audio)
    except DeepfakeAudioError as exc:
        return Outcome(utt.id, skipped=f"unreadable audio: {exc}", source=str(utt.audio))
    if wav.size == 0:
        return Outcome(utt.id, skipped="no speech found (silent after trimming)", source=str(utt.audio))
    frames = wav_to_mel_spectrogram(wav)
    if len(frames) < min_frames:
        return Outcome(utt.id, skipped=f"too short: {len(frames) / 100:.2f} s of speech, "
                                       f"{min_frames / 100:.2f} s needed", source=str(utt.audio))
    path = out / "frames" / utt.speaker / f"{utt.id}.npy"
    save_npy(path, frames)
    return Outcome(utt.id, {"id": utt.id, "speaker": utt.speaker, "frames": relative(path, out),
                            "n_frames": len(frames), "source": str(utt.audio)})


def build_parser() -> argparse.ArgumentParser:
    parser = corpus_parser(
        "sv2tts-encoder-preprocess",
        "Prepare corpora for speaker-encoder training: every utterance becomes 40-channel mel frames (16 kHz, "
        "25 ms windows every 10 ms), after the volume normalisation and silence trimming the encoder uses at "
        "inference. Transcripts are not needed.",
        "sv2tts-encoder-preprocess /data/LibriSpeech/train-other-500 voxceleb:/data/vox1 --out data/encoder")
    parser.add_argument("--min-frames", type=int, default=hp.partials_n_frames, metavar="N",
                        help=f"skip utterances with fewer mel frames (10 ms each) than this after trimming "
                             f"(default {hp.partials_n_frames}, one training partial)")
    return parser


def main(argv: list[str] | None = None) -> list[dict]:
    args = build_parser().parse_args(argv)
    corpus = read_corpora(args.corpora, args.format)
    out = args.out.resolve()
    records = process_utterances(
        corpus, out, process, args.workers, "encoder preprocessing", args.quiet,
        outputs_exist=lambda r: (out / r["frames"]).is_file(), initializer=_init, initargs=(str(out), args.min_frames))
    if not args.quiet:
        speakers = len({r["speaker"] for r in records})
        print(f"{len(records)} utterances of {speakers} speakers in {out}")
    return records


cli = console_entry(main)


if __name__ == "__main__":
    raise SystemExit(cli())
