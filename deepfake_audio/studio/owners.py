"""Whose voice library a request touches.

A single-user studio (a local install, the default off a Space) has one owner: every
request sees the one library in the data folder. With private libraries (the default on
a Hugging Face Space, or `--private-libraries`), every visitor has their own:

* signed in with Hugging Face (a Space with `hf_oauth: true`): the account;
* otherwise: an unguessable token that the page makes on the first visit and keeps in
  the browser (`gr.BrowserState`). API clients pass a token of their own (any string of
  24 or more letters, digits, `-` and `_`, kept secret) as `owner`.

The server never uses what a request sends as a path: an owner's folder is named by the
SHA-256 of its identity, `owners/<hash>/` under the data folder.
"""
from __future__ import annotations

import hashlib
import os
import re
import secrets
from pathlib import Path

from deepfake_audio_core.errors import RequestError

TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{24,256}")
OWNERS_FOLDER = "owners"


def new_token() -> str:
    """A fresh owner token (256 random bits, URL-safe)."""
    return secrets.token_urlsafe(32)


BROWSER_SECRET_FILE = ".browser_secret"


def browser_secret(data_dir: Path) -> str:
    """The key the page's stored owner token is encrypted with, the same across restarts.

    `gr.BrowserState` draws a new random key at each start unless given one; the token a
    browser kept could then no longer be read after a restart, and its visitor would lose
    their library. The key is made once and kept (owner-only permissions) in the data folder;
    $DEEPFAKE_AUDIO_BROWSER_SECRET overrides it (for servers whose data folder is not kept)."""
    given = os.environ.get("DEEPFAKE_AUDIO_BROWSER_SECRET", "").strip()
    if given:
        return given
    path = Path(data_dir) / BROWSER_SECRET_FILE
    try:
        return path.read_text(encoding="ascii").strip() or _new_secret(path)
    except (OSError, ValueError):
        return _new_secret(path)


def _new_secret(path: Path) -> str:
    """Make the key, unless another process (a replica on the same folder) made it first: then theirs.

    The key is written to a file of this process's own and linked into place, which fails when
    the key exists, so every process that starts at once ends up with the same key."""
    secret = secrets.token_urlsafe(32)
    staged = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(secret)
        try:
            os.link(staged, path)
        except FileExistsError:  # made meanwhile by another process (or an empty one left behind)
            existing = path.read_text(encoding="ascii").strip()
            if existing:
                return existing
            os.replace(staged, path)
        except OSError:  # a file system without hard links
            os.replace(staged, path)
    except OSError:  # a read-only data folder: this run's key only (tokens last until a restart)
        pass
    finally:
        staged.unlink(missing_ok=True)
    return secret


def valid_token(token) -> bool:
    return isinstance(token, str) and TOKEN_RE.fullmatch(token) is not None


def owner_id(token: str | None = None, account: str | None = None) -> str | None:
    """The identity of a request's owner: the signed-in account, else the browser's token, else None."""
    if account:
        return f"hf:{account}"
    if valid_token(token):
        return f"token:{token}"
    return None


def owner_folder(data_dir: Path, owner: str) -> Path:
    """The folder of an owner's voices and results: named by a hash, never by what the request sent."""
    return Path(data_dir) / OWNERS_FOLDER / hashlib.sha256(owner.encode("utf-8")).hexdigest()[:40]


def require_owner(owner: str | None) -> str:
    if not owner:
        raise RequestError("This studio keeps each visitor's voices private, and this request has no owner: "
                           "reload the page (or, from the API, pass a secret token of 24+ letters and digits "
                           "as `owner`).")
    return owner


def private_libraries_default() -> bool:
    """$DEEPFAKE_AUDIO_PRIVATE_LIBRARIES (1/0), else on in a Hugging Face Space and off elsewhere."""
    value = os.environ.get("DEEPFAKE_AUDIO_PRIVATE_LIBRARIES")
    if value is not None:
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(os.environ.get("SPACE_ID"))
