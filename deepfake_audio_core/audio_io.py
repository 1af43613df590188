"""Reading and writing audio files with clear errors.

Decoding goes through libsndfile (the `soundfile` wheel bundles 1.2+, which reads
WAV, FLAC, OGG/Vorbis, Opus, MP3, AIFF and more) and resampling through soxr, the
same resampler librosa >= 0.10 uses by default.
"""
from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import soundfile as sf

from deepfake_audio_core.errors import AudioError

SUPPORTED_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif", ".au", ".w64", ".caf")
MAX_FILE_SECONDS = 30 * 60
# What decoding a file may cost, checked from its header before any sample is decoded: a
# small, highly compressible file (a long multichannel FLAC of silence) must not be able to
# ask for gigabytes. Frames x channels at most those of 30 minutes of 48 kHz stereo.
MAX_CHANNELS = 8
MAX_SAMPLE_RATE = 192_000
MAX_DECODED_SAMPLES = 2 * 48_000 * MAX_FILE_SECONDS
DECODE_BLOCK_FRAMES = 1 << 18  # frames decoded at a time, mixed down to mono as they come
# The mean of two channels keeps a quarter of one's power when the other is silent, half or more when
# they agree; far less means they cancel (one channel's polarity reversed), and one channel is read.
CANCELLED_MIX = 0.05


def read_audio(path: Path | str) -> tuple[np.ndarray, int]:
    """Decode an audio file to mono float32 in [-1, 1] at its native rate.

    Returns `(wav, sample_rate)` with wav of shape (samples,). Multi-channel audio is
    averaged to mono (as librosa does), block by block, so memory holds the mono result and
    one block; channels that cancel in their mean (a reversed polarity) give the loudest one.
    PCM16 samples come out as k / 32768. Raises `AudioError` for a missing,
    unsupported, corrupt, empty or over-long file, and for one whose header asks for more
    channels, a higher sample rate or more samples than `MAX_CHANNELS`, `MAX_SAMPLE_RATE`
    and `MAX_DECODED_SAMPLES` allow.
    """
    path = Path(path)
    if path.is_dir():
        raise AudioError(f"{path} is a folder, not an audio file: name one recording in it.")
    if not path.is_file():
        raise AudioError(f"Audio file not found: {path}")
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_EXTENSIONS:
        raise AudioError(f"Unsupported audio format '{suffix or path.name}': use one of "
                         f"{', '.join(e.lstrip('.') for e in SUPPORTED_EXTENSIONS)} "
                         "(convert with e.g. `ffmpeg -i input output.wav`).")
    if path.stat().st_size == 0:
        raise AudioError(f"{path.name} is empty (0 bytes): the upload or recording did not complete.")
    try:
        with sf.SoundFile(str(path)) as audio:
            check_header(path.name, audio.frames, audio.channels, audio.samplerate)
            wav, sr = _decode_mono(audio), audio.samplerate
    except AudioError:
        raise
    except Exception as exc:  # libsndfile reports corrupt data with several exception types
        raise AudioError(f"Could not decode {path.name}: the file is corrupt or not "
                         f"{suffix.lstrip('.').upper()} audio ({str(exc).strip()[:120]}).") from None
    if wav.shape[0] == 0:
        raise AudioError(f"{path.name} contains no audio samples.")
    if not np.all(np.isfinite(wav)):
        raise AudioError(f"{path.name} contains invalid (NaN or infinite) samples.")
    return np.ascontiguousarray(wav, dtype=np.float32), int(sr)


def check_header(name: str, frames: int, channels: int, sample_rate: int) -> None:
    """`AudioError` when a file's header asks for more than a request may decode."""
    if channels > MAX_CHANNELS:
        raise AudioError(f"{name} has {channels} channels; at most {MAX_CHANNELS} are accepted (mix it down "
                         "to mono or stereo first).")
    if sample_rate > MAX_SAMPLE_RATE:
        raise AudioError(f"{name} is sampled at {sample_rate} Hz; at most {MAX_SAMPLE_RATE} Hz is accepted.")
    if frames > MAX_FILE_SECONDS * sample_rate:
        raise AudioError(f"{name} is {frames / sample_rate / 60:.0f} minutes long; "
                         f"use a recording shorter than {MAX_FILE_SECONDS // 60} minutes.")
    if frames * channels > MAX_DECODED_SAMPLES:
        raise AudioError(f"{name} holds {frames * channels:,} samples ({channels} channels at {sample_rate} Hz); "
                         f"at most {MAX_DECODED_SAMPLES:,} are accepted: send a shorter, mono or lower-rate "
                         "recording.")


def _decode_mono(audio: sf.SoundFile, channel: int | None = None) -> np.ndarray:
    """The whole file as mono float32, decoded a block at a time (never more frames than the header said):
    the channels' mean, or `channel` alone. Channels that cancel in their mean (one wired with its
    polarity reversed: the mean keeps under CANCELLED_MIX of the loudest channel's power) give the
    loudest channel instead, where the file can be read again from its start."""
    out = np.empty(max(audio.frames, 0), dtype=np.float32)
    power = np.zeros(audio.channels + 1)  # each channel's, then the mean's (sums of squares)
    filled = 0
    while filled < len(out):
        block = audio.read(min(DECODE_BLOCK_FRAMES, len(out) - filled), dtype="float32", always_2d=True)
        if not len(block):
            break
        if block.shape[1] == 1 or channel is not None:
            out[filled:filled + len(block)] = block[:, channel or 0]
        else:
            mixed = block.mean(axis=1, dtype=np.float32)
            out[filled:filled + len(block)] = mixed
            power += np.concatenate([np.square(block, dtype=np.float64).sum(axis=0), [np.dot(mixed, mixed)]])
        filled += len(block)
    loudest = int(np.argmax(power[:-1]))
    if channel is None and audio.channels > 1 and power[-1] < CANCELLED_MIX * power[loudest] and audio.seekable():
        audio.seek(0)
        return _decode_mono(audio, loudest)
    return out[:filled]


def resample(wav: np.ndarray, source_sr: int, target_sr: int) -> np.ndarray:
    """Resample float32 audio with soxr's high-quality filter (librosa's default)."""
    if source_sr == target_sr:
        return wav
    import librosa
    return librosa.resample(wav, orig_sr=source_sr, target_sr=target_sr).astype(np.float32, copy=False)


def load_audio(path: Path | str, sample_rate: int) -> np.ndarray:
    """Decode `path` to mono float32 at `sample_rate` Hz, shape (samples,)."""
    wav, sr = read_audio(path)
    return resample(wav, sr, sample_rate)


# Metadata soundfile can write: RIFF INFO in WAV (ISFT, ICMT, INAM, ICRD, ...), Vorbis comments
# in FLAC and OGG.
TAG_NAMES = ("title", "copyright", "software", "artist", "comment", "date", "album", "license")


def write_wav(path: Path | str, wav: np.ndarray, sample_rate: int, tags: Mapping[str, str] | None = None) -> Path:
    """Write `wav` (float, nominally [-1, 1]) as 16-bit PCM WAV, clipping anything outside.

    `tags` (names from `TAG_NAMES`) go into the file's RIFF INFO chunk.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pcm = np.clip(np.asarray(wav, dtype=np.float64), -1.0, 1.0)
    with sf.SoundFile(str(path), "w", samplerate=sample_rate, channels=1, subtype="PCM_16", format="WAV") as out:
        set_tags(out, tags)
        out.write(pcm)
    return path


def set_tags(out: sf.SoundFile, tags: Mapping[str, str] | None) -> None:
    """Store `tags` in an open output file (before its audio is written)."""
    for name, value in (tags or {}).items():
        if name not in TAG_NAMES:
            raise ValueError(f"unknown audio tag {name!r}: use one of {', '.join(TAG_NAMES)}")
        setattr(out, name, str(value))


def read_tags(path: Path | str) -> dict[str, str]:
    """The tags of an audio file (empty strings left out); {} when the format has none."""
    try:
        with sf.SoundFile(str(path)) as f:
            return {k: v for k, v in f.copy_metadata().items() if v}
    except (sf.LibsndfileError, RuntimeError, OSError):
        return {}


# Output formats: name -> (libsndfile container, sample encoding, MIME type, file extension).
OUTPUT_FORMATS: dict[str, tuple[str, str, str, str]] = {
    "wav": ("WAV", "PCM_16", "audio/wav", ".wav"),
    "flac": ("FLAC", "PCM_16", "audio/flac", ".flac"),
    "mp3": ("MP3", "MPEG_LAYER_III", "audio/mpeg", ".mp3"),
    "opus": ("OGG", "OPUS", "audio/ogg", ".opus"),
    "ogg": ("OGG", "OPUS", "audio/ogg", ".ogg"),
}


def output_format(name: str) -> tuple[str, str, str, str]:
    """The (container, encoding, MIME type, extension) of an output format name; `AudioError` when unknown."""
    key = str(name or "").strip().lower().lstrip(".")
    if key not in OUTPUT_FORMATS:
        raise AudioError(f"Unsupported output format {name!r}: choose {', '.join(OUTPUT_FORMATS)}.")
    return OUTPUT_FORMATS[key]


def encode_audio(wav: np.ndarray, sample_rate: int, fmt: str = "wav", tags: Mapping[str, str] | None = None) -> bytes:
    """`wav` (float, [-1, 1]) as the bytes of a file in `fmt` (wav, flac, mp3, opus/ogg), with `tags`.

    WAV keeps tags in its RIFF INFO chunk, FLAC and OGG in Vorbis comments, MP3 in ID3.
    """
    container, encoding, _, _ = output_format(fmt)
    buffer = io.BytesIO()
    pcm = np.clip(np.asarray(wav, dtype=np.float64), -1.0, 1.0)
    with sf.SoundFile(buffer, "w", samplerate=sample_rate, channels=1, subtype=encoding, format=container) as out:
        set_tags(out, tags)
        out.write(pcm)
    return buffer.getvalue()


def write_audio(path: Path | str, wav: np.ndarray, sample_rate: int, tags: Mapping[str, str] | None = None) -> Path:
    """Write `wav` in the format its file name says (.wav, .flac, .mp3, .opus, .ogg), with `tags`."""
    path = Path(path)
    data = encode_audio(wav, sample_rate, path.suffix, tags)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def normalize_loudness(wav: np.ndarray, sample_rate: int, target_lufs: float, peak: float = 0.99) -> np.ndarray:
    """`wav` at `target_lufs` integrated loudness (EBU R128 / ITU-R BS.1770, by pyloudnorm).

    The gain is lowered if it would push a sample past `peak`, so the result never clips
    (it is then quieter than asked). Silence, and audio too short to measure (under 0.4 s),
    come back unchanged.
    """
    import pyloudnorm
    wav = np.asarray(wav, dtype=np.float64)
    if len(wav) < 0.4 * sample_rate or not np.any(wav):
        return wav.astype(np.float32)
    loudness = pyloudnorm.Meter(sample_rate).integrated_loudness(wav)
    if not np.isfinite(loudness):
        return wav.astype(np.float32)
    gain = 10 ** ((target_lufs - loudness) / 20)
    loudest = float(np.max(np.abs(wav)))
    gain = min(gain, peak / loudest) if loudest > 0 else gain
    return (wav * gain).astype(np.float32)
