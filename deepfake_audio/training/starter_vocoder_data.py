"""Training data of the starter vocoder: audio, its mels and its pitch, packed in one folder.

    python -m deepfake_audio.training.starter_vocoder_data artifacts/corpus/train --out artifacts/vocoder_data

Every `<speaker>/<utterance>.wav` under the given folders (the corpus layout,
`deepfake_audio.training.corpus`) is loaded at 16 kHz and peak-normalised as the
synthesizer's preprocessing does. A folder made by `vocoder_preprocess` (its
metadata.jsonl) gives its mels instead, ground-truth-aligned ones from a synthesizer,
with their processed audio: the vocoder then learns the synthesizer's mels, which are
smoother than a recording's. Three aligned arrays are appended:

    audio.npy     (200 F,)  int16    the audio, each utterance zero-padded to 200 frames' worth
    mels.npy      (F, 80)   uint8    the published normalised log-mel, quantised (`packed.quantise`)
    f0.npy        (F,)      float16  F0 in Hz of each frame, 0 where unvoiced (`core.pitch.track_voice_f0`)
    index.json    utterance offsets in frames, speakers, files, settings

F is the total of every utterance's frames; utterance u is frames offsets[u]:offsets[u+1]
and samples 200 offsets[u]:200 offsets[u+1]. Held-out voices must not be given here:
the corpus keeps them in eval/ and eval_ref/, never in train/.
"""
from __future__ import annotations

import argparse
import json
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deepfake_audio_core.audio_config import MEL
from deepfake_audio.training import TrainingError
from deepfake_audio.training.commands import console_entry
from deepfake_audio.training.files import atomic_write, save_npy

MAX_ABS = MEL.max_abs_value
LEVELS = 255


def _analyse(path: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(audio int16 (200 T,), mel uint8 (T, 80), f0 float16 (T,)) of one file."""
    from deepfake_audio_core.pitch import track_voice_f0
    from synthesizer.audio import load_wav, melspectrogram
    wav = load_wav(path)
    mel = melspectrogram(wav)
    frames = mel.shape[1]
    audio = np.zeros(frames * MEL.hop_size, dtype=np.float32)
    audio[:min(len(wav), len(audio))] = wav[:len(audio)]
    f0 = track_voice_f0(wav).f0[:frames]
    quantised = np.rint((np.clip(mel, -MAX_ABS, MAX_ABS) + MAX_ABS) * (LEVELS / (2 * MAX_ABS))).astype(np.uint8)
    return (np.clip(audio, -1, 1) * 32767).astype(np.int16), quantised.T.copy(), f0.astype(np.float16)


def _analyse_pair(paths: tuple[str, str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Like `_analyse`, for a (mel .npy (80, T), processed audio .npy) pair of a `vocoder_preprocess` folder."""
    from deepfake_audio_core.pitch import track_voice_f0
    mel_path, audio_path = paths
    mel = np.load(mel_path).astype(np.float32)
    wav = np.load(audio_path).astype(np.float32)
    frames = mel.shape[1]
    audio = np.zeros(frames * MEL.hop_size, dtype=np.float32)
    audio[:min(len(wav), len(audio))] = wav[:len(audio)]
    f0 = track_voice_f0(audio).f0[:frames]
    f0 = np.pad(f0, (0, frames - len(f0)))
    quantised = np.rint((np.clip(mel, -MAX_ABS, MAX_ABS) + MAX_ABS) * (LEVELS / (2 * MAX_ABS))).astype(np.uint8)
    return (np.clip(audio, -1, 1) * 32767).astype(np.int16), quantised.T.copy(), f0.astype(np.float16)


def _sources(folders: list[Path]) -> list[tuple[str, str, object]]:
    """(name "<speaker>/<file>", speaker, what `_analyse` or `_analyse_pair` reads) of every utterance."""
    from deepfake_audio.training.files import METADATA, read_metadata
    sources = []
    for folder in folders:
        if (Path(folder) / METADATA).is_file():
            for rec in read_metadata(Path(folder), ("mel", "audio")):
                sources.append((f"{rec['speaker']}/{rec['id']}", rec["speaker"], (str(rec["mel"]), str(rec["audio"]))))
        else:
            wavs = sorted(str(p) for p in Path(folder).glob("*/*.wav") if ".part." not in p.name)
            sources.extend((str(Path(f).relative_to(Path(f).parents[1])), Path(f).parent.name, f) for f in wavs)
    return sources


def _analyse_source(source: object) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return _analyse_pair(source) if isinstance(source, tuple) else _analyse(source)


def dequantise_mels(q: np.ndarray) -> np.ndarray:
    """uint8 (..., 80) -> float32 in [-4, 4]."""
    return q.astype(np.float32) * np.float32(2 * MAX_ABS / LEVELS) - np.float32(MAX_ABS)


def build(folders: list[Path], out: Path, workers: int = 2, quiet: bool = False) -> dict:
    """Analyse every wav under `folders` into the pack at `out`; returns its index."""
    sources = _sources(folders)
    if not sources:
        raise TrainingError(f"no <speaker>/<utterance>.wav files or vocoder_preprocess metadata under "
                            f"{', '.join(map(str, folders))}")
    out.mkdir(parents=True, exist_ok=True)
    from tqdm import tqdm
    audio, mels, f0s, offsets = [], [], [], [0]
    with ProcessPoolExecutor(max_workers=max(1, workers)) as pool:
        for a, m, f in tqdm(pool.map(_analyse_source, [s[2] for s in sources], chunksize=16), total=len(sources),
                            desc="utterances",
                            disable=quiet, mininterval=5):
            audio.append(a)
            mels.append(m)
            f0s.append(f)
            offsets.append(offsets[-1] + len(m))
    for name, parts in (("audio", audio), ("mels", mels), ("f0", f0s)):
        save_npy(out / f"{name}.npy", np.concatenate(parts))
    index = {"offsets": offsets, "files": [s[0] for s in sources], "speakers": [s[1] for s in sources],
             "hop_size": MEL.hop_size,
             "sample_rate": MEL.sample_rate, "frames": offsets[-1],
             "hours": round(offsets[-1] * MEL.hop_size / MEL.sample_rate / 3600, 3)}
    atomic_write(out / "index.json", lambda tmp: tmp.write_text(json.dumps(index), encoding="utf-8"))
    return index


@dataclass
class VocoderPack:
    """A pack opened for training: arrays memory-mapped, offsets in frames."""

    audio: np.ndarray
    mels: np.ndarray
    f0: np.ndarray
    offsets: np.ndarray
    speakers: list[str]

    @classmethod
    def open(cls, folder: Path) -> "VocoderPack":
        folder = Path(folder)
        if not (folder / "index.json").is_file():
            raise TrainingError(f"{folder} is not a starter-vocoder pack (no index.json); make one with "
                                "`python -m deepfake_audio.training.starter_vocoder_data CORPUS/train --out DIR`.")
        index = json.loads((folder / "index.json").read_text(encoding="utf-8"))
        load = lambda name: np.load(folder / f"{name}.npy", mmap_mode="r")  # noqa: E731
        return cls(load("audio"), load("mels"), load("f0"), np.asarray(index["offsets"], dtype=np.int64),
                   list(index["speakers"]))

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def segment(self, u: int, start: int, frames: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Utterance u's frames [start, start + frames): (mel (80, frames) float32, f0 (frames,) float32,
        audio (200 frames,) float32)."""
        a = int(self.offsets[u]) + start
        hop = MEL.hop_size
        mel = dequantise_mels(np.asarray(self.mels[a:a + frames])).T
        f0 = np.asarray(self.f0[a:a + frames], dtype=np.float32)
        audio = np.asarray(self.audio[a * hop:(a + frames) * hop], dtype=np.float32) / 32767
        return mel, f0, audio


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m deepfake_audio.training.starter_vocoder_data",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", type=Path,
                        help="folders of <speaker>/<utterance>.wav, or made by vocoder_preprocess (GTA mels)")
    parser.add_argument("--out", type=Path, required=True, help="pack folder (rewritten)")
    parser.add_argument("--workers", type=int, default=2, help="parallel processes (default 2)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    args = parser.parse_args(argv)
    index = build(args.folders, args.out, args.workers, args.quiet)
    print(f"{len(index['offsets']) - 1} utterances, {index['hours']} h -> {args.out}")
    return index


cli = console_entry(main)

if __name__ == "__main__":
    sys.exit(cli())
