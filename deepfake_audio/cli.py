"""Command line: `python -m deepfake_audio {clone,embed,download,info}`.

Every failure caused by input ends with a one-line `error: ...` on stderr and a
non-zero exit status (2 for bad input or weights, 1 for anything unexpected, 130 when
interrupted); `--debug` shows the traceback instead.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Iterator

from deepfake_audio_core.console import run_command
from deepfake_audio_core.errors import DeepfakeAudioError
from deepfake_audio_core.modes import MODES
from deepfake_audio_core.requests import MAX_LUFS, MIN_LUFS, VOCODER_CHOICES, check_loudness
from deepfake_audio_core.tuned import is_tuned_voice_file


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", type=Path, default=None, metavar="DIR",
                        help="folder with encoder.pt (optional), synthesizer.pt and vocoder.pt "
                             "(default: saved_models/default, or $DEEPFAKE_AUDIO_MODELS)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None,
                        help="where the models run (default: cuda when available, else cpu)")
    parser.add_argument("--no-starter", action="store_true",
                        help="never fall back to the small starter models shipped in saved_models/starter "
                             "(missing official weights are then an error)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m deepfake_audio",
                                     description="SV2TTS voice cloning: speak any text in the voice of a recording.")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True)

    clone = sub.add_parser("clone", help="speak text in the voice of a reference recording")
    voice = clone.add_mutually_exclusive_group()
    voice.add_argument("--voice", type=Path, help="reference recording (wav, flac, ogg, mp3; any rate), or a tuned "
                                                  "voice (NAME.tuned.pt, from sv2tts-finetune --tuned-voice)")
    voice.add_argument("--embedding", type=Path, help="saved voice from `embed` (.npy) instead of --voice")
    text = clone.add_mutually_exclusive_group(required=True)
    text.add_argument("--text", help="what to say")
    text.add_argument("--text-file", type=Path, help="UTF-8 text file with what to say")
    clone.add_argument("--out", type=Path, required=True,
                       help="output file: .wav (16-bit), .flac, .mp3, .opus or .ogg (Opus); watermarked, with "
                            "provenance tags")
    clone.add_argument("--loudness", type=float, default=None, metavar="LUFS",
                       help="loudness target of the file (EBU R128), e.g. -16 for podcasts or -23 for broadcast "
                            "(default: a 0.97 peak)")
    clone.add_argument("--seed", type=int, default=None, help="random seed: same seed, same output")
    clone.add_argument("--vocoder", choices=VOCODER_CHOICES, default="auto",
                       help="WaveRNN (needs vocoder.pt), the starter vocoder (shipped: fast, follows the "
                            "voice's pitch), Griffin-Lim (no weights, lower quality), or auto (default: WaveRNN "
                            "when its weights are present, else the starter vocoder)")
    clone.add_argument("--mode", choices=MODES, default="fast",
                       help="arithmetic: fast (default: int8 weights, the fastest that sounds like the "
                            "reference), int8, fp16, or parity (the reference implementation's exact "
                            "numbers, several times slower)")
    clone.add_argument("--stream", action="store_true",
                       help="write the WAV progressively, playable while the rest is generated")
    clone.add_argument("--pace", type=float, default=1.0,
                       help="speaking rate from 0.5 (half as fast) to 2.0 (twice as fast); default 1.0")
    clone.add_argument("--pitch", type=float, default=0.0, metavar="SEMITONES",
                       help="move the voice's pitch, -12 to 12 semitones (default 0: the voice's own); "
                            "with the starter vocoder or the pitch-aware starter synthesizer")
    clone.add_argument("--speaker", action="append", default=[], metavar="NAME=FILE",
                       help="a voice that the text's [voice: NAME] lines use: a recording, a saved embedding "
                            "(.npy) or a tuned voice (.tuned.pt); repeat for each speaker of a script (see the "
                            "README's scripts section)")
    clone.add_argument("--clean", action="store_true", help="reduce noise in the recordings first (spectral gating and a 70-7600 Hz band-pass; for noisy microphone recordings)")
    _add_model_options(clone)

    batch = sub.add_parser("clone-batch", help="clone a text file (one file per paragraph) or a CSV "
                                               "(voice,text[,file]) into a ZIP of audio files")
    batch.add_argument("--input", type=Path, required=True, help="a .txt (one audio file per paragraph) or a "
                                                                 ".csv with a header row voice,text and optionally file")
    batch.add_argument("--out", type=Path, required=True, help="the ZIP to write (audio files and manifest.csv)")
    batch_voice = batch.add_mutually_exclusive_group()
    batch_voice.add_argument("--voice", type=Path, help="reference recording for rows without a voice")
    batch_voice.add_argument("--embedding", type=Path, help="saved voice (.npy) for rows without a voice")
    batch.add_argument("--speaker", action="append", default=[], metavar="NAME=FILE",
                       help="a voice that rows (and [voice: NAME] lines) name: a recording or an .npy embedding")
    batch.add_argument("--format", default="wav", choices=("wav", "flac", "mp3", "opus", "ogg"),
                       help="audio format of the files (default wav)")
    batch.add_argument("--loudness", type=float, default=None, metavar="LUFS",
                       help="loudness target of every file (EBU R128), e.g. -16")
    batch.add_argument("--seed", type=int, default=None, help="seed of the first file (then +1 per file)")
    batch.add_argument("--pace", type=float, default=1.0, help="speaking rate, 0.5 to 2.0 (default 1.0)")
    batch.add_argument("--pitch", type=float, default=0.0, metavar="SEMITONES",
                       help="move every file's pitch, -12 to 12 semitones (default 0)")
    batch.add_argument("--clean", action="store_true", help="reduce noise in the recordings first (spectral gating and a 70-7600 Hz band-pass; for noisy microphone recordings)")
    batch.add_argument("--vocoder", choices=VOCODER_CHOICES, default="auto",
                       help="vocoder (default: WaveRNN when its weights are present)")
    _add_model_options(batch)

    embed = sub.add_parser("embed", help="save the voice embedding of a recording as .npy")
    embed.add_argument("--voice", type=Path, required=True, help="reference recording")
    embed.add_argument("--out", type=Path, required=True, help="output .npy file (256 float32 values)")
    embed.add_argument("--clean", action="store_true", help="reduce noise in the recordings first (spectral gating and a 70-7600 Hz band-pass; for noisy microphone recordings)")
    _add_model_options(embed)

    download = sub.add_parser("download", help="fetch the official synthesizer and vocoder checkpoints")
    download.add_argument("--models", type=Path, default=None, metavar="DIR",
                          help="destination folder (default: saved_models/default)")
    download.add_argument("--encoder", action="store_true", help="also fetch encoder.pt (the bundled one is the same)")
    download.add_argument("--force", action="store_true", help="download again even if the files are present")

    detect = sub.add_parser("detect", help="check audio files for this tool's watermark and provenance tags")
    detect.add_argument("files", nargs="+", type=Path, metavar="FILE", help="audio files (wav, flac, mp3, ogg, ...)")
    detect.add_argument("--json", action="store_true",
                        help='print one JSON list: {"file", "watermarked", "score", "provenance"} per file '
                             '(and "error" for a file that could not be checked)')

    info = sub.add_parser("info", help="show which weights each stage would use")
    _add_model_options(info)
    return parser


class _StageBars:
    """tqdm bars, one per pipeline stage, fed by the pipeline's `ProgressEvent`s."""

    def __init__(self):
        from tqdm import tqdm
        self._tqdm = tqdm
        self._bars: dict[str, object] = {}

    def __call__(self, event) -> None:
        bar = self._bars.get(event.stage)
        if bar is None:
            for other in self._bars.values():
                other.close()
            bar = self._bars[event.stage] = self._tqdm(total=100, desc=f"{event.stage:>12}", unit="%", leave=True,
                                                       bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix}")
        if event.unit == "sentence" and event.done:
            bar.set_postfix_str(f"sentence {event.done} of {event.total}", refresh=False)
        bar.update(max(0, round(100 * event.fraction) - bar.n))

    def close(self) -> None:
        for bar in self._bars.values():
            bar.close()

    def write(self, line: str) -> None:
        """A line on stderr above the bars, which are drawn again below it."""
        self._tqdm.write(line, file=sys.stderr)


@contextlib.contextmanager
def _held_warnings() -> Iterator[list[str]]:
    """The package's log warnings while the block runs, kept instead of printed (they would cut
    into a progress bar), so that the caller says them once, between the bars."""
    held: list[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: held.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("deepfake_audio")
    propagate, logger.propagate = logger.propagate, False
    logger.addHandler(handler)
    try:
        yield held
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def _notes(held: list[str], note: str) -> list[str]:
    """The lines that tell the user what a plan changed or noticed: its note, and warnings it does not repeat."""
    return [f"warning: {message}" for message in held if message not in note] + ([f"note: {note}"] if note else [])


def _read_text(args) -> str:
    if args.text is not None:
        return args.text
    try:
        return args.text_file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DeepfakeAudioError(f"Text file not found: {args.text_file}") from None
    except (UnicodeDecodeError, OSError) as exc:
        raise DeepfakeAudioError(f"Cannot read {args.text_file} as UTF-8 text ({exc}).") from None


def _check_output(path: Path, *suffixes: str) -> None:
    if path.suffix.lower() not in suffixes:
        raise DeepfakeAudioError(f"The output file must end in {' or '.join(suffixes)}: {path}")
    if path.is_dir():
        raise DeepfakeAudioError(f"The output path is a folder: {path}")


def _pipeline(args, stages: tuple[str, ...] = ("encoder", "synthesizer", "vocoder")):
    if args.device == "cuda":
        import torch
        if not torch.cuda.is_available():
            raise DeepfakeAudioError("--device cuda was asked for, but no CUDA GPU is available; use --device cpu.")
    from deepfake_audio.pipeline import Pipeline
    return Pipeline(args.models, device=args.device, stages=stages, starter=not args.no_starter)


def _atomic_write(path: Path, write) -> None:
    """Write through a temporary file in the same folder, so a failure never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _speaker_spec(spec: str) -> tuple[str, Path]:
    name, sep, path = spec.partition("=")
    if not sep or not name.strip() or not path.strip():
        raise DeepfakeAudioError(f"--speaker takes NAME=FILE (a recording or an .npy embedding), got {spec!r}.")
    return name.strip(), Path(path.strip())


def _pitch_file(npy: Path) -> Path:
    """Where `embed` keeps the pitch of the recording behind an .npy voice: me.npy -> me.pitch.json."""
    return npy.with_suffix(".pitch.json")


def _load_tuned(path: Path):
    from deepfake_audio_core.tuned import load_tuned_voice
    return load_tuned_voice(path)


def _voice_file(path: Path, pipe, clean: bool):
    """The voice in a file: a saved embedding (.npy), a tuned voice (.tuned.pt) or a recording (embedded)."""
    if is_tuned_voice_file(path):
        return _load_tuned(path)
    return _load_embedding(path, pipe) if path.suffix.lower() == ".npy" else pipe.embed(path, clean=clean)


def _load_embedding(path: Path, pipe=None):
    """The voice embedding (256,) in an .npy file; the pitch `embed` measured beside it, if any,
    is handed to `pipe` so that the clone speaks at it."""
    import json
    import numpy as np
    from deepfake_audio.pipeline import check_embedding
    try:
        embedding = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DeepfakeAudioError(f"Cannot read the embedding {path}: {exc}") from None
    try:
        embedding = check_embedding(embedding)
    except DeepfakeAudioError:
        raise DeepfakeAudioError(f"{path} is not a voice embedding (256 finite values).") from None
    pitch_file = _pitch_file(path)
    if pipe is not None and pitch_file.is_file():
        try:
            pitch = json.loads(pitch_file.read_text(encoding="utf-8"))
            pipe.remember_pitch(embedding, float(pitch["median_hz"]), pitch.get("log_f0_spread"))
        except (OSError, ValueError, KeyError, TypeError):
            print(f"note: {pitch_file.name} is unreadable; the pitch is guessed from the embedding", file=sys.stderr)
    return embedding


def _check_loudness(loudness: float | None) -> None:
    try:
        check_loudness(loudness)
    except DeepfakeAudioError:
        raise DeepfakeAudioError(f"--loudness must be from {MIN_LUFS:g} to {MAX_LUFS:g} LUFS, got {loudness}.") from None


def cmd_clone(args) -> int:
    from deepfake_audio_core.audio_io import normalize_loudness, write_audio
    from deepfake_audio.watermark import provenance_tags
    from deepfake_audio_core.audio_io import OUTPUT_FORMATS
    _check_output(args.out, *(f".{name}" for name in OUTPUT_FORMATS))
    if args.stream and args.out.suffix.lower() != ".wav":
        raise DeepfakeAudioError("--stream writes a WAV file as it goes: give --out a .wav name.")
    _check_loudness(args.loudness)
    text = _read_text(args)
    from deepfake_audio.pipeline import VOCODER_LABELS, Pipeline
    from deepfake_audio_core.requests import check_pace, check_pitch
    speakers = dict(_speaker_spec(spec) for spec in args.speaker)
    Pipeline.prepare_script(text, list(speakers))  # fail on bad text before loading models
    check_pace(args.pace)
    check_pitch(args.pitch)
    if args.voice is None and args.embedding is None and not speakers:
        raise DeepfakeAudioError("Give the voice: --voice FILE, --embedding FILE.npy, or --speaker NAME=FILE for "
                                 "the [voice: NAME] lines of a script.")
    if args.embedding is not None:
        _load_embedding(args.embedding)  # a bad file is refused before the models load
    tuned = _load_tuned(args.voice) if args.voice is not None and is_tuned_voice_file(args.voice) else None
    pipe = _pipeline(args)
    embedding = _load_embedding(args.embedding, pipe) if args.embedding is not None else None
    _say_which_models(pipe)
    voices = {name: _voice_file(path, pipe, args.clean) for name, path in speakers.items()}
    bars = _StageBars()
    try:
        with _held_warnings() as held:
            plan = pipe.plan(None if tuned else args.voice, text, args.seed, args.vocoder, embedding=embedding,
                             mode=args.mode, progress=bars, pace=args.pace, voices=voices, clean=args.clean,
                             pitch=args.pitch, tuned=tuned)
        for line in _notes(held, plan.note):  # e.g. a second voice in the recording, a pitch control unused
            bars.write(line)
        if args.stream:
            return _clone_streaming(pipe, args, plan)
        result = pipe.run(plan, bars)
    finally:
        bars.close()
    wav = result.wav if args.loudness is None else normalize_loudness(result.wav, result.sample_rate, args.loudness)
    _atomic_write(args.out, lambda tmp: write_audio(tmp, wav, result.sample_rate, provenance_tags()))
    print(f"wrote {args.out} ({result.duration:.1f} s, {len(result.sentences)} sentence(s), "
          f"{VOCODER_LABELS[result.vocoder]}, real-time factor {result.real_time_factor:.2f})")
    return 0


def _say_which_models(pipe) -> None:
    """One stderr line when the shipped starter models stand in for missing official weights."""
    if pipe.is_starter("synthesizer"):
        vocoder = "starter WaveRNN" if pipe.is_starter("vocoder") else \
            ("WaveRNN" if pipe.vocoder is not None else
             "the starter vocoder" if pipe.starter_vocoder is not None else "Griffin-Lim")
        from deepfake_audio.download import download_command
        print(f"using the starter synthesizer ({pipe.synthesizer_path}) with {vocoder}: small models trained on "
              f"synthetic voices. For real cloning fetch the official weights: "
              f"{download_command(pipe.models_dir)}", file=sys.stderr)


def _clone_streaming(pipe, args, plan) -> int:
    """`clone --stream`: each piece is appended to the WAV (header updated) as soon as it is final."""
    import time

    import numpy as np
    import soundfile as sf
    from deepfake_audio_core.audio_io import set_tags
    from deepfake_audio.pipeline import SAMPLE_RATE
    from deepfake_audio.streaming import stream_clone
    from deepfake_audio.watermark import provenance_tags
    # input errors were raised by the plan, before the file exists; the pieces go to the file, not memory
    chunks = stream_clone(pipe, plan=plan, keep_audio=False)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    start, first, samples = time.perf_counter(), None, 0
    try:
        with sf.SoundFile(str(args.out), "w", samplerate=SAMPLE_RATE, channels=1,
                          subtype="PCM_16", format="WAV") as out:
            set_tags(out, provenance_tags())
            for chunk in chunks:
                out.write(np.clip(chunk.audio, -1.0, 1.0))
                out.flush()
                samples += len(chunk.audio)
                if first is None:
                    first = time.perf_counter() - start
                    print(f"first audio after {first:.2f} s", file=sys.stderr)
    except BaseException:
        args.out.unlink(missing_ok=True)  # never leave half a file behind
        raise
    seconds = samples / SAMPLE_RATE
    print(f"wrote {args.out} ({seconds:.1f} s, streamed; first audio after {first or 0:.2f} s, "
          f"real-time factor {(time.perf_counter() - start) / max(seconds, 1e-9):.2f})")
    return 0


def cmd_clone_batch(args) -> int:
    """`clone-batch`: every row or paragraph checked first, then cloned into the ZIP with a progress bar."""
    from tqdm import tqdm
    from deepfake_audio.batch import check_batch, read_batch, run_batch
    from deepfake_audio_core.requests import check_pace, check_pitch
    _check_output(args.out, ".zip")
    _check_loudness(args.loudness)
    check_pace(args.pace)
    check_pitch(args.pitch)
    items = read_batch(args.input)
    speakers = dict(_speaker_spec(spec) for spec in args.speaker)
    check_batch(items, {name: None for name in speakers}, args.voice is not None or args.embedding is not None)
    pipe = _pipeline(args)
    _say_which_models(pipe)
    embedding = _load_embedding(args.embedding, pipe) if args.embedding is not None else \
        (_voice_file(args.voice, pipe, args.clean) if args.voice is not None else None)
    voices = {name: _voice_file(path, pipe, args.clean) for name, path in speakers.items()}
    with tqdm(total=len(items), desc="clone-batch", unit="file") as bar:
        run_batch(pipe, items, args.out, embedding=embedding, voices=voices, seed=args.seed, pace=args.pace,
                  vocoder=args.vocoder, file_format=args.format, loudness=args.loudness, pitch=args.pitch,
                  progress=lambda done, total: bar.update(done - bar.n))
    print(f"wrote {args.out} ({len(items)} files and manifest.csv)")
    return 0


def cmd_embed(args) -> int:
    import json
    import numpy as np
    from deepfake_audio_core.pitch import pitch_stats
    from deepfake_audio.pipeline import SAMPLE_RATE
    _check_output(args.out, ".npy")
    embedding, wav = _pipeline(args, stages=("encoder",)).embed(args.voice, return_wav=True, clean=args.clean)
    _atomic_write(args.out, lambda tmp: np.save(tmp, embedding))
    stats = pitch_stats(wav, SAMPLE_RATE)
    if stats is not None:  # the pitch-aware models speak a saved voice at its recording's pitch
        pitch = {"median_hz": round(stats.median_hz, 2), "log_f0_spread": round(stats.log_f0_spread, 4),
                 "voice": Path(args.voice).name}
        _atomic_write(_pitch_file(args.out), lambda tmp: tmp.write_text(json.dumps(pitch), encoding="utf-8"))
    print(f"wrote {args.out} (256-d voice embedding of {len(wav) / SAMPLE_RATE:.1f} s of speech"
          + (f", its pitch beside it in {_pitch_file(args.out).name})" if stats is not None else ")"))
    return 0


def cmd_download(args) -> int:
    from deepfake_audio.download import DEFAULT_FILES, DEFAULT_MODELS_DIR, download_models
    files = ("encoder.pt",) + DEFAULT_FILES if args.encoder else DEFAULT_FILES
    paths = download_models(args.models or DEFAULT_MODELS_DIR, files, force=args.force)
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0


def cmd_info(args) -> int:
    for stage, text in _pipeline(args).describe().items():
        print(f"{stage:>12}: {text}")
    return 0


def cmd_detect(args) -> int:
    """Each file's verdict; exit status 2 when a file could not be checked (the others still are)."""
    import json
    from dataclasses import asdict
    from deepfake_audio.watermark import check_file
    results, failed = [], False
    for path in args.files:
        try:
            found = check_file(path)
        except DeepfakeAudioError as exc:
            failed = True
            results.append({"file": str(path), "watermarked": None, "score": None, "provenance": {},
                            "error": str(exc)})
            if not args.json:
                print(f"error: {exc}", file=sys.stderr)
            continue
        results.append(asdict(found))
        if not args.json:
            print(f"{path}: {found.verdict}")
            for name, value in found.provenance.items():
                print(f"    {name}: {value}")
    if args.json:
        print(json.dumps(results, indent=1, ensure_ascii=False))
    return 2 if failed else 0


COMMANDS = {"clone": cmd_clone, "embed": cmd_embed, "download": cmd_download, "info": cmd_info,
            "detect": cmd_detect, "clone-batch": cmd_clone_batch}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # A bug, not bad input, is still one line (exit status 1) unless --debug asks for the traceback.
    return run_command(lambda: COMMANDS[args.command](args), debug=args.debug, catch_all=True)
