"""Fetching and verifying the official SV2TTS checkpoints.

The checkpoints live in the Hugging Face repository `CorentinJ/SV2TTS`. They are
downloaded with `huggingface_hub` (its cache, progress bar, and retries that resume a
cut transfer with a Range request), checked against the published byte sizes and,
when the server gives one, their sha256, and only then placed in the models folder.
A download that fails any check never reaches the models folder, and its cached copy
is deleted so that the next run fetches it again.

`huggingface_hub` is imported inside the functions: it reads `HF_ENDPOINT` and the
cache settings when it is first imported, and the missing-weights message must stay
cheap to build for the pipeline's loaders.
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
import shlex
import shutil
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

from deepfake_audio_core.errors import MissingWeightsError, WeightsError

logger = logging.getLogger(__name__)

DEFAULT_MODELS_DIR: Path = Path(__file__).resolve().parents[1] / "saved_models" / "default"
# Small models trained by the project (see its model card), used where official weights are absent.
STARTER_MODELS_DIR: Path = DEFAULT_MODELS_DIR.parent / "starter"
HF_REPO_ID = "CorentinJ/SV2TTS"
DOWNLOAD_COMMAND = "python -m deepfake_audio download"
# The encoder is not fetched by default; the CLI adds it with this flag.
ENCODER_FLAG = "--encoder"
MODELS_FLAG = "--models"

# Sizes in bytes of the files published in `HF_REPO_ID`.
PUBLISHED_SIZES: dict[str, int] = {
    "encoder.pt": 17_090_379,
    "synthesizer.pt": 370_554_559,
    "vocoder.pt": 53_845_290,
}
DEFAULT_FILES: tuple[str, ...] = ("synthesizer.pt", "vocoder.pt")

# For LFS files the Hub's ETag is the sha256 of the content; for small git files it is a sha1.
_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_HASH_CHUNK = 8 * 1024 * 1024


def download_command(dest: Path | str = DEFAULT_MODELS_DIR, *, encoder: bool = False) -> str:
    """The shell command that fetches the checkpoints into `dest`.

    `--models DIR` is added only when `dest` is not the default folder, and the encoder
    flag only when `encoder` is true.
    """
    parts = [DOWNLOAD_COMMAND]
    if encoder:
        parts.append(ENCODER_FLAG)
    folder = _absolute(dest)
    if folder != _absolute(DEFAULT_MODELS_DIR):
        parts += [MODELS_FLAG, shlex.quote(str(folder))]
    return " ".join(parts)


def models_folder(models_dir: Path | str | None = None) -> Path:
    """The models folder: the argument, else $DEEPFAKE_AUDIO_MODELS, else saved_models/default."""
    return Path(models_dir or os.environ.get("DEEPFAKE_AUDIO_MODELS") or DEFAULT_MODELS_DIR)


def missing_weights_message(path: Path | str) -> str:
    """One-line message for a checkpoint that is not on disk: which file, where it goes, how to get it."""
    path = Path(path)
    folder = _absolute(path.parent)
    if path.name in PUBLISHED_SIZES:
        command = download_command(folder, encoder=path.name == "encoder.pt")
        return (f"Checkpoint {path.name} is missing: it goes in {folder}{os.sep} "
                f"(expected at {folder / path.name}). Fetch it with: {command}")
    return (f"Checkpoint {_absolute(path)} is missing: put your checkpoint at that path. Only "
            f"{', '.join(PUBLISHED_SIZES)} can be downloaded, with: {download_command(folder)}")


def download_models(
    dest: Path | str = DEFAULT_MODELS_DIR,
    files: Sequence[str] = DEFAULT_FILES,
    expected_sizes: Mapping[str, int] | None = None,
    repo_id: str = HF_REPO_ID,
    revision: str | None = None,
    force: bool = False,
) -> dict[str, Path]:
    """Fetch `files` from the Hugging Face repository `repo_id` into the folder `dest`.

    A file already in `dest` with its expected size (bytes) is kept as is, unless `force`.
    Otherwise it is downloaded into the Hugging Face cache (`HF_HUB_CACHE`), its size is
    compared with `expected_sizes` (default: `PUBLISHED_SIZES`) and its sha256 with the
    one the server publishes for LFS files, and only a file that passes is hard-linked
    (or copied, across file systems) into `dest` under a temporary name and renamed into
    place. `revision` is a branch, tag or commit of the repository (default: main).

    Returns the path in `dest` of every requested file, keyed by file name.
    Raises `WeightsError` with a one-line message when a file cannot be downloaded or
    fails a check (the bad cached copy is deleted first), and `ValueError` for a file
    name without an expected size.
    """
    sizes = PUBLISHED_SIZES if expected_sizes is None else expected_sizes
    for name in files:
        if name not in sizes:
            raise ValueError(f"No expected size for {name!r}; known files: {', '.join(sizes)}.")
        if not name or Path(name).name != name or name in (".", ".."):
            raise ValueError(f"{name!r} is not a plain file name.")
    dest = _absolute(dest)
    command = download_command(dest, encoder="encoder.pt" in files)

    paths: dict[str, Path] = {}
    for name in files:
        final = dest / name
        if not force and final.is_file() and final.stat().st_size == sizes[name]:
            logger.info("%s is already in %s, skipping", name, dest)
            paths[name] = final
            continue
        cached = _fetch_verified(name, sizes[name], repo_id, revision, force, command)
        _place(cached, final)
        logger.info("%s verified and saved to %s", name, final)
        paths[name] = final
    return paths


def _fetch_verified(name: str, expected_size: int, repo_id: str, revision: str | None, force: bool,
                    command: str) -> Path:
    """Download `name` into the HF cache and return its cached path once size and sha256 check out."""
    import httpx2
    from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url, try_to_load_from_cache
    from huggingface_hub.errors import XetDownloadError

    url = hf_hub_url(repo_id, name, revision=revision)
    network_errors = (httpx2.HTTPError, OSError, ValueError, XetDownloadError)
    try:
        meta = get_hf_file_metadata(url)
    except network_errors as exc:
        raise WeightsError(_network_message(exc, name, repo_id, revision, url, command)) from None

    if meta.commit_hash is None:
        raise WeightsError(f"Could not download {name} from the Hugging Face repository {repo_id} ({url}): "
                           "the server is not a Hugging Face Hub endpoint (no X-Repo-Commit header); "
                           f"check HF_ENDPOINT, then re-run `{command}`.")
    # Refuse before transferring hundreds of MB that could only fail the size check.
    if meta.size is not None and meta.size != expected_size:
        raise WeightsError(f"{name} in {repo_id} is {meta.size:,} bytes on the server, expected "
                           f"{expected_size:,} bytes; nothing was saved. Re-run `{command}` later, or check "
                           "that the repository and revision are the right ones.")
    sha256 = meta.etag if meta.etag is not None and _SHA256_RE.fullmatch(meta.etag) else None

    def fetch(force_download: bool) -> Path:
        try:
            # Pinning the commit seen above makes the download match the metadata just checked.
            return Path(hf_hub_download(repo_id, name, revision=meta.commit_hash, force_download=force_download))
        except network_errors as exc:
            raise WeightsError(_network_message(exc, name, repo_id, revision, url, command)) from None

    was_cached = not force and (
        (meta.etag is not None and _cached_blob(repo_id, meta.etag).is_file())
        or isinstance(try_to_load_from_cache(repo_id, name, revision=meta.commit_hash), str))
    cached = fetch(force)
    problem = _check(cached, name, repo_id, expected_size, sha256, command)
    if problem is not None and was_cached:
        # The models folder holds hard links to the cache, so a file overwritten there in place
        # (or a damaged disk) corrupts the cached blob: drop it and fetch a fresh copy once.
        logger.warning("The cached copy of %s is damaged, downloading it again", name)
        _discard(cached)
        cached = fetch(True)
        problem = _check(cached, name, repo_id, expected_size, sha256, command)
    if problem is not None:
        _discard(cached)
        raise WeightsError(problem)
    if sha256 is None:
        logger.info("%s: the server gave no sha256, only its size was checked", name)
    return cached


def _check(path: Path, name: str, repo_id: str, expected_size: int, sha256: str | None,
           command: str) -> str | None:
    """Why the downloaded file at `path` is bad (one line), or None when size and sha256 match."""
    got_size = path.stat().st_size
    if got_size != expected_size:
        return (f"{name} downloaded from {repo_id} is {got_size:,} bytes, expected {expected_size:,} bytes "
                f"(truncated or wrong file); the bad copy was deleted, re-run `{command}` to download it again.")
    if sha256 is not None:
        got_sha = _sha256_of(path)
        if got_sha != sha256:
            return (f"{name} downloaded from {repo_id} has sha256 {got_sha}, expected {sha256} (corrupt "
                    f"download); the bad copy was deleted, re-run `{command}` to download it again.")
    return None


def _cached_blob(repo_id: str, etag: str) -> Path:
    """Where the HF cache keeps the content whose ETag is `etag` (it may not exist)."""
    from huggingface_hub import constants
    from huggingface_hub.file_download import repo_folder_name

    return Path(constants.HF_HUB_CACHE) / repo_folder_name(repo_id=repo_id, repo_type="model") / "blobs" / etag


def _network_message(exc: BaseException, name: str, repo_id: str, revision: str | None, url: str,
                     command: str) -> str:
    """One line saying why `name` could not be fetched from `repo_id`, and what to do."""
    import httpx2
    from huggingface_hub.errors import (HfHubHTTPError, OfflineModeIsEnabled, RemoteEntryNotFoundError,
                                        RepositoryNotFoundError, RevisionNotFoundError)

    advice = f"check the network connection (and HF_ENDPOINT if set), then re-run `{command}`"
    if isinstance(exc, OfflineModeIsEnabled):
        reason = "offline mode is on (HF_HUB_OFFLINE is set)"
        advice = f"unset HF_HUB_OFFLINE, then re-run `{command}`"
    elif isinstance(exc, RemoteEntryNotFoundError):
        reason = f"the repository has no file {name} at revision {revision or 'main'}"
    elif isinstance(exc, RevisionNotFoundError):
        reason = f"the repository has no revision {revision or 'main'}"
    elif isinstance(exc, RepositoryNotFoundError):
        reason = "the repository does not exist or is not accessible"
    elif isinstance(exc, HfHubHTTPError) and exc.response is not None:
        status = exc.response.status_code
        reason = f"{name} was not found there (HTTP 404)" if status == 404 else f"the server answered HTTP {status}"
    elif isinstance(exc, httpx2.TimeoutException):
        reason = f"the connection timed out ({_first_line(exc)})"
    elif isinstance(exc, httpx2.HTTPError):
        reason = f"the server could not be reached ({_first_line(exc)})"
    else:
        reason = _first_line(exc)
    return f"Could not download {name} from the Hugging Face repository {repo_id} ({url}): {reason}; {advice}."


def _place(src: Path, final: Path) -> None:
    """Put the verified file `src` at `final` atomically: hard link if possible, else copy."""
    final.parent.mkdir(parents=True, exist_ok=True)
    source = Path(os.path.realpath(src))  # the blob, not the snapshot symlink
    tmp = final.with_name(f".{final.name}.{uuid.uuid4().hex[:8]}.partial")
    try:
        try:
            os.link(source, tmp)
        except OSError:  # other file system, or no hard links there
            shutil.copyfile(source, tmp)
        if tmp.stat().st_size != source.stat().st_size:
            raise WeightsError(f"Copying {source} to {final} was incomplete (is the disk full?).")
        os.replace(tmp, final)
    except OSError as exc:
        raise WeightsError(f"Could not save {final.name} to {final.parent}: {_first_line(exc)}.") from None
    finally:
        tmp.unlink(missing_ok=True)


def _discard(cached: Path) -> None:
    """Delete a bad cached file, blob and snapshot entry, so the next run downloads it again."""
    blob = Path(os.path.realpath(cached))
    for path in (cached, blob):
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            logger.warning("Could not delete the bad cached file %s: %s", path, exc)


def _sha256_of(path: Path) -> str:
    """Hex sha256 of a file's content, read in 8 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _absolute(path: Path | str) -> Path:
    return Path(path).expanduser().resolve()


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:200] if lines else type(exc).__name__


def fetch_missing_weights(models_dir: Path | str | None = None) -> list[str]:
    """Download the official checkpoints the studio would otherwise run without; returns their names.

    For hosts that start from a bare checkout (a Hugging Face Space installs only
    requirements.txt): the synthesizer and vocoder when absent, and encoder.pt when
    neither it nor the encoder bundled with resemblyzer is there. Raises `WeightsError`
    when a download fails.
    """
    # Lazily: the encoder module is only needed to find resemblyzer's bundled weights.
    from encoder.inference import default_weights_path

    folder = models_folder(models_dir)
    wanted = [name for name in ("synthesizer.pt", "vocoder.pt") if not (folder / name).is_file()]
    if not (folder / "encoder.pt").is_file():
        try:
            default_weights_path()
        except MissingWeightsError:
            wanted.insert(0, "encoder.pt")
    if wanted:
        download_models(folder, wanted)
    return wanted
