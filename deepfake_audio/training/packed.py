"""One-file, compact copy of a preprocessed synthesizer dataset, for moving it to a training machine.

`deepfake_audio.training.synthesizer_preprocess` writes one .npy per mel, audio and embedding: convenient on the
machine that made them, slow and large to copy. A pack holds only what Tacotron training
reads, in one compressed .npz:

    ids          (sum N,)   int16   character ids of every transcript, concatenated
    id_offsets   (U + 1,)   int64   transcript u is ids[id_offsets[u]:id_offsets[u + 1]]
    mels_xz      (bytes,)   uint8   the mels, quantised (below), frame-major, delta-coded in time
                                    (mod 256) and xz-compressed: 35 % smaller than zlib on raw bytes
    mel_offsets  (U + 1,)   int64   utterance u is frames mel_offsets[u]:mel_offsets[u + 1]
    n_mels       ()         int64   channels per frame (80)
    embeds       (U, 256)   float16 speaker embeddings (unit norm)
    speakers     (U,)       str     speaker of each utterance
    max_abs_value ()        float   the quantisation range
    f0           (sum T,)   float16 (with --pitch) F0 in Hz of every mel frame, 0 where unvoiced
                                    (`core.pitch.track_voice_f0` of the processed audio), for the
                                    pitch-conditioned starter synthesizer

Mels are quantised to uint8 over [-max_abs_value, max_abs_value]: the error is at most
max_abs_value / 255 (0.016 for the published range of 4, 0.2 dB),
far below what Tacotron's loss can resolve. Character ids are computed when packing, so
the training machine needs neither the text cleaners' packages nor the audio stack.

    python -m deepfake_audio.training.packed data/synthesizer data/synthesizer.npz
    python -m deepfake_audio.training.synthesizer_train data/synthesizer.npz --run-dir runs/synthesizer
"""
from __future__ import annotations

import argparse
import lzma
import sys
from pathlib import Path

import numpy as np
import torch

from deepfake_audio_core.errors import DeepfakeAudioError
from synthesizer.hparams import SynthesizerHParams, hparams as default_hparams

QUANT_LEVELS = 255


def quantise(mel: np.ndarray, max_abs: float) -> np.ndarray:
    """(80, T) float in [-max_abs, max_abs] -> uint8."""
    scaled = (np.clip(mel, -max_abs, max_abs) + max_abs) * (QUANT_LEVELS / (2 * max_abs))
    return np.rint(scaled).astype(np.uint8)


def dequantise(q: np.ndarray, max_abs: float) -> np.ndarray:
    """uint8 (80, T) -> float32 in [-max_abs, max_abs]."""
    return (q.astype(np.float32) * np.float32(2 * max_abs / QUANT_LEVELS) - np.float32(max_abs))


def _compress_mels(q: np.ndarray) -> np.ndarray:
    """(80, T) uint8 -> xz bytes of the frame-to-frame differences (mod 256), frame-major."""
    frames = np.ascontiguousarray(q.T)
    delta = np.diff(frames, axis=0, prepend=np.zeros((1, frames.shape[1]), np.uint8))  # wraps mod 256
    return np.frombuffer(lzma.compress(delta.tobytes(), preset=6), np.uint8)


def _decompress_mels(data: np.ndarray, n_channels: int) -> np.ndarray:
    """Inverse of `_compress_mels`: (80, T) uint8."""
    delta = np.frombuffer(lzma.decompress(data.tobytes()), np.uint8).reshape(-1, n_channels)
    return np.ascontiguousarray(np.cumsum(delta, axis=0, dtype=np.uint8).T)


def frame_f0(audio: np.ndarray, n_frames: int) -> np.ndarray:
    """F0 (Hz, 0 unvoiced) of each of the `n_frames` mel frames of `audio` (16 kHz): (n_frames,) float16."""
    from deepfake_audio_core.pitch import track_voice_f0
    f0 = track_voice_f0(audio.astype(np.float32)).f0[:n_frames]
    return np.pad(f0, (0, n_frames - len(f0))).astype(np.float16)


def pack_dataset(data: Path, out: Path, hp: SynthesizerHParams = default_hparams,
                 speakers: set[str] | None = None, pitch: bool = False) -> int:
    """Write the pack of the preprocessed folder `data` to `out` (.npz); returns the utterance count.

    `speakers`, when given, keeps only those speakers' utterances. `pitch` adds each
    frame's F0, measured from the processed audio.
    """
    from deepfake_audio.training.files import read_metadata
    from synthesizer.text import text_to_sequence
    records = read_metadata(data, ("mel", "embed", "text"))
    if speakers is not None:
        records = [r for r in records if r["speaker"] in speakers]
    if not records:
        raise DeepfakeAudioError(f"{data} has no utterances to pack.")
    if pitch and any("audio" not in r for r in records):
        raise DeepfakeAudioError(f"{data} has no processed audio to measure pitch from; preprocess it again.")
    ids, mels, embeds, f0 = [], [], [], []
    for r in records:
        ids.append(np.asarray(text_to_sequence(r["text"], hp.tts_cleaner_names), np.int16))
        mel = np.load(r["mel"])
        mels.append(quantise(mel, hp.max_abs_value))
        embeds.append(np.load(r["embed"]).astype(np.float16))
        if pitch:
            f0.append(frame_f0(np.load(r["audio"]), mel.shape[1]))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".part.npz")
    extra = {"f0": np.concatenate(f0)} if pitch else {}
    np.savez(
        tmp, ids=np.concatenate(ids), id_offsets=np.cumsum([0] + [len(i) for i in ids]),
        mels_xz=_compress_mels(np.concatenate(mels, axis=1)), n_mels=np.int64(hp.num_mels),
        mel_offsets=np.cumsum([0] + [m.shape[1] for m in mels]),
        embeds=np.stack(embeds), speakers=np.asarray([r["speaker"] for r in records]),
        max_abs_value=np.float32(hp.max_abs_value), **extra)
    tmp.replace(out)
    return len(records)


def speaker_pitch_stats(f0: np.ndarray, offsets: np.ndarray, speakers: np.ndarray) -> np.ndarray:
    """(U, 2) float32: the log-F0 median and spread (`core.pitch.pitch_stats`' measures, over all
    of a speaker's voiced frames, ln(F0 / 150 Hz)) of each utterance's speaker; NaN for a
    speaker with under 10 voiced frames."""
    from synthesizer.fastspeech import PITCH_REFERENCE_HZ
    stats = np.full((len(speakers), 2), np.nan, np.float32)
    for speaker in np.unique(speakers):
        items = np.flatnonzero(speakers == speaker)
        values = np.concatenate([f0[offsets[u]:offsets[u + 1]] for u in items]).astype(np.float32)
        log_f0 = np.log(values[values > 0] / PITCH_REFERENCE_HZ)
        if log_f0.size >= 10:
            low, median, high = np.percentile(log_f0, [16, 50, 84])
            stats[items] = (median, 0.5 * (high - low))
    return stats


class PackedSynthesizerData(torch.utils.data.Dataset):
    """Item (index, key) -> (char ids (N,) int64, mel (80, T) float32, embedding (256,) float32);
    with `pitch` also (F0 (T,) float32 Hz, the speaker's log-F0 median and spread (2,) float32)."""

    def __init__(self, path: Path, pitch: bool = False):
        try:
            with np.load(path, allow_pickle=False) as z:
                self.ids, self.id_offsets = z["ids"], z["id_offsets"]
                self.mels, self.mel_offsets = _decompress_mels(z["mels_xz"], int(z["n_mels"])), z["mel_offsets"]
                self.embeds, self.speakers = z["embeds"], z["speakers"]
                self.max_abs = float(z["max_abs_value"])
                self.f0 = z["f0"] if pitch else None
        except KeyError as exc:
            if pitch and "f0" in str(exc):
                raise DeepfakeAudioError(f"{path} has no pitch: pack it again with --pitch.") from None
            raise DeepfakeAudioError(f"{path} is not a synthesizer pack ({exc}).") from None
        except (OSError, ValueError, lzma.LZMAError) as exc:
            raise DeepfakeAudioError(f"{path} is not a synthesizer pack ({exc}).") from None
        self.pitch_stats = speaker_pitch_stats(self.f0, self.mel_offsets, self.speakers) if pitch else None

    def __len__(self) -> int:
        return len(self.embeds)

    def __getitem__(self, item: tuple[int, int]):
        u = item[0]
        ids = self.ids[self.id_offsets[u]:self.id_offsets[u + 1]].astype(np.int64)
        mel = dequantise(self.mels[:, self.mel_offsets[u]:self.mel_offsets[u + 1]], self.max_abs)
        if self.f0 is None:
            return ids, mel, self.embeds[u].astype(np.float32)
        f0 = self.f0[self.mel_offsets[u]:self.mel_offsets[u + 1]].astype(np.float32)
        return ids, mel, self.embeds[u].astype(np.float32), f0, self.pitch_stats[u]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m deepfake_audio.training.packed",
                                     description="Pack a folder written by deepfake_audio.training.synthesizer_preprocess into one "
                                                 "compact .npz that deepfake_audio.training.synthesizer_train reads directly.")
    parser.add_argument("data", type=Path, help="folder written by deepfake_audio.training.synthesizer_preprocess")
    parser.add_argument("out", type=Path, help="pack to write (.npz)")
    parser.add_argument("--speakers", nargs="+", default=None, help="keep only these speakers")
    parser.add_argument("--pitch", action="store_true",
                        help="also measure each frame's F0 (for the pitch-conditioned starter synthesizer)")
    args = parser.parse_args(argv)
    n = pack_dataset(args.data, args.out, speakers=set(args.speakers) if args.speakers else None,
                     pitch=args.pitch)
    print(f"{n} utterances -> {args.out} ({args.out.stat().st_size / 2**20:.1f} MiB)")


if __name__ == "__main__":
    from deepfake_audio.training.commands import run_cli
    sys.exit(run_cli(main))
