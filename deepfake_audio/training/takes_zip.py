"""A ZIP of takes (audio + .txt pairs) -> the flat folder `sv2tts-finetune` reads, safely.

The archive comes from a user: members that would land outside the folder (`..`,
absolute paths, drive letters), links, encrypted members and archives that inflate past
`ZIP_MAX_BYTES` or hold more than `ZIP_MAX_FILES` entries are refused with a clear error,
and a member is never read past its declared size.
"""
from __future__ import annotations

import logging
import re
import stat
import zipfile
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath

from deepfake_audio_core.audio_io import SUPPORTED_EXTENSIONS, check_header
from deepfake_audio_core.errors import AudioError
from deepfake_audio.training.takes import safe_name

logger = logging.getLogger(__name__)

# ZIP import limits: a ZIP is small on the wire but may inflate enormously.
ZIP_MAX_BYTES = 200 * 1024 * 1024  # uncompressed, all members together
ZIP_MAX_FILES = 2000


def unpack_takes_zip(zip_path: Path | str, dest: Path | str, warn: Callable[[str], None] | None = None) -> list[Path]:
    """Unpack a ZIP of takes into `dest` as a flat folder of <name>.<audio> + <name>.txt pairs.

    A take is an audio file (a format `audio_io` reads: WAV, FLAC, MP3, ...) with a UTF-8
    .txt of the same name beside it; folders inside the ZIP are flattened into the names.
    Audio without a transcript (and the reverse) is skipped with a message to `warn`
    (default: this module's logger). Returns the audio paths written, sorted; files of the
    same names already in `dest` are replaced. Raises `AudioError` for a file that is not a
    ZIP or is corrupt or encrypted, one with a path leaving the folder (`..`, absolute
    paths) or a link, one over `ZIP_MAX_FILES` files or `ZIP_MAX_BYTES` unpacked, and one
    with no complete pair; nothing is left in `dest` then.
    """
    warn = warn or logger.warning
    zip_path, dest = Path(zip_path), Path(dest)
    if not zip_path.is_file():
        raise AudioError(f"{zip_path.name} was not found.")
    if not zipfile.is_zipfile(zip_path):
        raise AudioError(f"{zip_path.name} is not a ZIP archive: put the takes (audio + .txt of the same name) in "
                         "a .zip file.")
    written: list[Path] = []
    try:
        with zipfile.ZipFile(zip_path) as archive:
            members = _safe_members(zip_path.name, archive.infolist())
            pairs = _pairs(members, warn)
            if not pairs:
                raise AudioError(f"{zip_path.name} holds no take: each audio file needs a transcript of the same "
                                 "name beside it (take1.wav + take1.txt).")
            dest.mkdir(parents=True, exist_ok=True)
            budget = ZIP_MAX_BYTES  # bytes left to unpack, whatever the headers claim
            for name, audio, transcript in pairs:
                raw = _read_member(archive, transcript, budget)
                data = _read_member(archive, audio, budget - len(raw))
                budget -= len(raw) + len(data)
                try:
                    text = " ".join(raw.decode("utf-8-sig").split())
                except UnicodeDecodeError:
                    warn(f"{audio.filename}: skipped, its transcript {transcript.filename} is not UTF-8 text.")
                    continue
                if not text:
                    warn(f"{audio.filename}: skipped, its transcript {transcript.filename} is empty.")
                    continue
                target = dest / (name + PurePosixPath(audio.filename).suffix.lower())
                target.write_bytes(data)
                written.append(target)
                target.with_suffix(".txt").write_text(text + "\n", encoding="utf-8")
                if not _readable(target, warn, audio.filename):
                    written.pop()
                    target.unlink()
                    target.with_suffix(".txt").unlink()
    except AudioError:
        _remove(written)
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError) as exc:
        _remove(written)  # RuntimeError: an encrypted member; NotImplementedError: an unknown compression
        raise AudioError(f"{zip_path.name} could not be unpacked: it is corrupt or password-protected "
                         f"({str(exc).strip()[:120]}).") from None
    if not written:
        raise AudioError(f"{zip_path.name} holds no usable take: every pair was skipped (see the messages above).")
    return sorted(written)


def _safe_members(zip_name: str, infos: Sequence[zipfile.ZipInfo]) -> list[zipfile.ZipInfo]:
    """The archive's files (no folders, no macOS metadata), after checking every name and the limits."""
    if len(infos) > ZIP_MAX_FILES:
        raise AudioError(f"{zip_name} holds {len(infos)} entries; at most {ZIP_MAX_FILES} are accepted (about "
                         f"{ZIP_MAX_FILES // 2} takes): split it into several ZIPs.")
    total = sum(info.file_size for info in infos)
    if total > ZIP_MAX_BYTES:
        raise AudioError(f"{zip_name} unpacks to {total / 2**20:.0f} MB; at most {ZIP_MAX_BYTES // 2**20} MB "
                         "are accepted: split it, or compress the audio as FLAC.")
    files = []
    for info in infos:
        name = info.filename.replace("\\", "/")  # Windows tools sometimes write backslashes
        parts = PurePosixPath(name).parts
        if name.startswith("/") or re.match(r"^[A-Za-z]:", name) or ".." in parts or "\0" in name:
            raise AudioError(f"{zip_name} was refused: its entry {info.filename!r} points outside the folder it "
                             "would be unpacked into.")
        if stat.S_ISLNK(info.external_attr >> 16):
            raise AudioError(f"{zip_name} was refused: its entry {info.filename!r} is a link; pack the files "
                             "themselves.")
        if info.flag_bits & 0x1:
            raise AudioError(f"{zip_name} is password-protected: pack the takes without a password.")
        if info.is_dir() or any(p.startswith(".") or p == "__MACOSX" for p in parts):
            continue
        files.append(info)
    if not files:
        raise AudioError(f"{zip_name} is empty: it holds no files.")
    return files


def _pairs(members: Sequence[zipfile.ZipInfo], warn: Callable[[str], None]
           ) -> list[tuple[str, zipfile.ZipInfo, zipfile.ZipInfo]]:
    """(flat output name, audio member, transcript member) of each complete take."""
    audio: dict[str, zipfile.ZipInfo] = {}
    texts: dict[str, zipfile.ZipInfo] = {}
    for info in members:
        path = PurePosixPath(info.filename.replace("\\", "/"))
        key, suffix = str(path.with_suffix("")), path.suffix.lower()
        if suffix == ".txt":
            texts[key] = info
        elif suffix in SUPPORTED_EXTENSIONS:
            if key in audio:
                warn(f"{info.filename}: skipped, {audio[key].filename} has the same name.")
                continue
            audio[key] = info
    for key in sorted(set(texts) - set(audio)):
        warn(f"{texts[key].filename}: skipped, no audio file of the same name.")
    pairs, used = [], set()
    for key in sorted(audio):
        if key not in texts:
            warn(f"{audio[key].filename}: skipped, it has no transcript ({PurePosixPath(key).name}.txt beside it).")
            continue
        name = base = safe_name(key.replace("/", "_"))
        count = 1
        while name.lower() in used:  # "a/b" and "a_b" flatten alike; case-insensitive file systems too
            count += 1
            name = f"{base}_{count}"
        used.add(name.lower())
        pairs.append((name, audio[key], texts[key]))
    return pairs


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, budget: int) -> bytes:
    """The member's bytes, read a block at a time and never past its declared size or `budget` bytes."""
    limit = min(info.file_size, budget)
    chunks, size = [], 0
    with archive.open(info) as stream:
        while True:
            block = stream.read(1 << 20)
            if not block:
                break
            size += len(block)
            if size > limit:  # a header that lies about the size (a ZIP bomb) stops here
                raise AudioError(f"{info.filename} unpacks to more than its ZIP entry says or than "
                                 f"{ZIP_MAX_BYTES // 2**20} MB in all: the archive was refused.")
            chunks.append(block)
    return b"".join(chunks)


def _readable(path: Path, warn: Callable[[str], None], name: str) -> bool:
    """Whether the audio file's header can be read and is within `audio_io`'s limits."""
    import soundfile as sf
    try:
        info = sf.info(str(path))
        check_header(name, info.frames, info.channels, info.samplerate)
    except AudioError as exc:
        warn(f"{name}: skipped, {exc}")
        return False
    except Exception:  # libsndfile reports unreadable data with several exception types
        warn(f"{name}: skipped, it is not readable audio (corrupt, or not the format its name says).")
        return False
    if info.frames == 0:
        warn(f"{name}: skipped, it holds no audio.")
        return False
    return True


def _remove(paths: Sequence[Path]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)
        path.with_suffix(".txt").unlink(missing_ok=True)
