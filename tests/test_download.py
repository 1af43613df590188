"""Tests of `deepfake_audio.download` against a local stand-in for the Hugging Face Hub.

The stand-in is a real HTTP server on 127.0.0.1 that answers the requests
`hf_hub_download` makes (HEAD then GET on `/{repo_id}/resolve/{revision}/{filename}`,
with the Hub's X-Repo-Commit, ETag, X-Linked-Etag and X-Linked-Size headers and Range
requests for resumed transfers). It sends no X-Xet-* header, so the plain HTTP path
is taken. Downloads run in a subprocess because `huggingface_hub` reads `HF_ENDPOINT`
and its cache settings once, at import.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

import pytest
import torch

from deepfake_audio.download import (DEFAULT_MODELS_DIR, DOWNLOAD_COMMAND, HF_REPO_ID, PUBLISHED_SIZES,
                                     download_models, missing_weights_message)
from deepfake_audio_core.errors import WeightsError

REPO_ROOT = Path(__file__).resolve().parents[1]
COMMIT = "3f1c2a9e8b7d6c5f4e3a2b1c0d9e8f7a6b5c4d3e"
RESOLVE_RE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<file>[^?]+)$")


def checkpoint_bytes(seed: int, n: int) -> bytes:
    """A small real checkpoint (a few KB) as `torch.save` writes it."""
    gen = torch.Generator().manual_seed(seed)
    buf = io.BytesIO()
    torch.save({"model_state": {"w": torch.randn(n, generator=gen)}, "step": seed}, buf)
    return buf.getvalue()


SYNTH = checkpoint_bytes(1, 1000)
VOCODER = checkpoint_bytes(2, 400)
SIZES = {"synthesizer.pt": len(SYNTH), "vocoder.pt": len(VOCODER)}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Served:
    """What the stand-in Hub serves for one file."""

    body: bytes  # bytes sent on GET
    etag: str  # sha256 advertised in ETag / X-Linked-Etag
    size_headers: bool = True  # send X-Linked-Size and Content-Length on HEAD
    drop_first_get_at: int | None = None  # close the first GET after this many bytes


@dataclass
class FakeHub:
    files: dict[str, Served]
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)
    url: str = ""
    drops_done: set[str] = field(default_factory=set)

    def gets(self, name: str) -> list[tuple[str, str, str | None]]:
        return [r for r in self.requests if r[0] == "GET" and r[1].endswith("/" + name)]


def make_handler(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # keep pytest output clean
            pass

        def do_HEAD(self) -> None:
            self._answer(send_body=False)

        def do_GET(self) -> None:
            self._answer(send_body=True)

        def _error(self, code: str) -> None:
            self.send_response(404)
            self.send_header("X-Error-Code", code)
            self.send_header("X-Repo-Commit", COMMIT)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def _answer(self, send_body: bool) -> None:
            hub.requests.append((self.command, self.path, self.headers.get("Range")))
            match = RESOLVE_RE.match(self.path)
            if match is None or unquote(match["repo"]) != HF_REPO_ID:
                return self._error("RepoNotFound")
            if unquote(match["rev"]) not in ("main", COMMIT):
                return self._error("RevisionNotFound")
            served = hub.files.get(unquote(match["file"]))
            if served is None:
                return self._error("EntryNotFound")

            body, start = served.body, 0
            rng = self.headers.get("Range")
            if send_body and rng is not None:
                start = int(re.fullmatch(r"bytes=(\d+)-", rng)[1])
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            else:
                self.send_response(200)
            self.send_header("X-Repo-Commit", COMMIT)
            self.send_header("ETag", f'"{served.etag}"')
            self.send_header("X-Linked-Etag", f'"{served.etag}"')
            self.send_header("Accept-Ranges", "bytes")
            if send_body:
                self.send_header("Content-Length", str(len(body) - start))
            elif served.size_headers:
                self.send_header("X-Linked-Size", str(len(body)))
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if not send_body:
                return
            name = unquote(match["file"])
            if served.drop_first_get_at is not None and name not in hub.drops_done:
                hub.drops_done.add(name)
                self.wfile.write(body[start:served.drop_first_get_at])
                self.wfile.flush()
                self.close_connection = True  # the client sees the body cut short
                return
            self.wfile.write(body[start:])

    return Handler


@pytest.fixture
def hub():
    fake = FakeHub(files={
        "synthesizer.pt": Served(SYNTH, sha256(SYNTH)),
        "vocoder.pt": Served(VOCODER, sha256(VOCODER)),
    })
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(fake))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield fake
    server.shutdown()
    server.server_close()


RUNNER = """
import json, sys
from deepfake_audio.download import download_models
from deepfake_audio_core.errors import WeightsError
try:
    paths = download_models(**json.loads(sys.argv[1]))
except WeightsError as exc:
    print(json.dumps({"error": str(exc)}))
    sys.exit(3)
print(json.dumps({"paths": {name: str(path) for name, path in paths.items()}}))
"""


@dataclass
class Result:
    rc: int
    out: dict
    stderr: str


def run_download(endpoint: str, tmp_path: Path, env_extra: dict[str, str] | None = None, **kwargs) -> Result:
    """Call `download_models(**kwargs)` in a fresh interpreter pointed at `endpoint`."""
    kwargs.setdefault("dest", str(tmp_path / "models"))
    kwargs.setdefault("expected_sizes", SIZES)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("HF_") and k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
    env.update({
        "HF_ENDPOINT": endpoint,
        "HF_HOME": str(tmp_path / "hf-home"),
        "HF_HUB_CACHE": str(tmp_path / "hf-cache"),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_XET": "1",
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
        **(env_extra or {}),
    })
    proc = subprocess.run([sys.executable, "-c", RUNNER, json.dumps(kwargs)], env=env, cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines, f"no output; stderr:\n{proc.stderr}"
    return Result(proc.returncode, json.loads(lines[-1]), proc.stderr)


def blobs(tmp_path: Path) -> list[Path]:
    return [p for p in (tmp_path / "hf-cache").glob("models--*/blobs/*") if p.is_file()]


def test_downloads_verified_files_into_dest(hub: FakeHub, tmp_path: Path) -> None:
    res = run_download(hub.url, tmp_path, files=["synthesizer.pt", "vocoder.pt"])
    assert res.rc == 0, res
    dest = tmp_path / "models"
    assert res.out["paths"] == {"synthesizer.pt": str(dest / "synthesizer.pt"),
                                "vocoder.pt": str(dest / "vocoder.pt")}
    assert (dest / "synthesizer.pt").read_bytes() == SYNTH
    assert (dest / "vocoder.pt").read_bytes() == VOCODER
    assert sorted(p.name for p in dest.iterdir()) == ["synthesizer.pt", "vocoder.pt"]  # no temp left
    assert torch.load(dest / "vocoder.pt", weights_only=True)["step"] == 2
    # Same file system: the models folder holds hard links to the cache blobs, not copies.
    blob = tmp_path / "hf-cache" / "models--CorentinJ--SV2TTS" / "blobs" / sha256(SYNTH)
    assert (dest / "synthesizer.pt").stat().st_ino == blob.stat().st_ino
    assert len(hub.gets("synthesizer.pt")) == 1 and len(hub.gets("vocoder.pt")) == 1
    assert all(RESOLVE_RE.match(path) for _, path, _ in hub.requests)


def test_second_call_skips_and_cache_is_reused(hub: FakeHub, tmp_path: Path) -> None:
    assert run_download(hub.url, tmp_path, files=["synthesizer.pt", "vocoder.pt"]).rc == 0
    seen = len(hub.requests)

    res = run_download(hub.url, tmp_path, files=["synthesizer.pt", "vocoder.pt"])
    assert res.rc == 0, res
    assert len(hub.requests) == seen  # files in place with the right size: no request at all

    # Files gone from the models folder, or replaced there by a wrong-sized file, come back
    # from the HF cache: metadata requests only, no GET.
    dest = tmp_path / "models"
    (dest / "vocoder.pt").unlink()
    (dest / "synthesizer.pt").unlink()
    (dest / "synthesizer.pt").write_bytes(b"not the right size")
    res = run_download(hub.url, tmp_path, files=["synthesizer.pt", "vocoder.pt"])
    assert res.rc == 0, res
    assert (dest / "vocoder.pt").read_bytes() == VOCODER
    assert (dest / "synthesizer.pt").read_bytes() == SYNTH
    assert len(hub.gets("synthesizer.pt")) == 1 and len(hub.gets("vocoder.pt")) == 1

    res = run_download(hub.url, tmp_path, files=["vocoder.pt"], force=True)
    assert res.rc == 0, res
    assert len(hub.gets("vocoder.pt")) == 2


def test_damaged_cache_is_downloaded_again(hub: FakeHub, tmp_path: Path) -> None:
    assert run_download(hub.url, tmp_path, files=["vocoder.pt"]).rc == 0
    # Overwriting the models-folder file in place also damages the cache blob it is linked to.
    damaged = tmp_path / "models" / "vocoder.pt"
    damaged.write_bytes(b"x" * 10)
    res = run_download(hub.url, tmp_path, files=["vocoder.pt"])
    assert res.rc == 0, res
    assert damaged.read_bytes() == VOCODER
    assert len(hub.gets("vocoder.pt")) == 2
    assert [p.read_bytes() for p in blobs(tmp_path)] == [VOCODER]


@pytest.mark.parametrize("size_headers", [True, False], ids=["size-in-metadata", "size-only-on-get"])
def test_truncated_file_is_rejected(hub: FakeHub, tmp_path: Path, size_headers: bool) -> None:
    short = SYNTH[:-100]
    hub.files["synthesizer.pt"] = Served(short, sha256(SYNTH), size_headers=size_headers)
    res = run_download(hub.url, tmp_path, files=["synthesizer.pt"])
    assert res.rc == 3
    msg = res.out["error"]
    assert "\n" not in msg
    assert "synthesizer.pt" in msg and HF_REPO_ID in msg
    assert f"{len(SYNTH):,} bytes" in msg and f"{len(short):,} bytes" in msg
    assert "re-run" in msg.lower() and DOWNLOAD_COMMAND in msg
    dest = tmp_path / "models"
    assert not dest.exists() or list(dest.iterdir()) == []
    assert blobs(tmp_path) == []  # the bad copy is not kept in the cache either
    if size_headers:
        assert hub.gets("synthesizer.pt") == []  # refused from the metadata, nothing transferred
    else:
        assert len(hub.gets("synthesizer.pt")) == 1
        # The cached copy was deleted, so once the server is fixed a retry downloads it again.
        hub.files["synthesizer.pt"] = Served(SYNTH, sha256(SYNTH), size_headers=False)
        res = run_download(hub.url, tmp_path, files=["synthesizer.pt"])
        assert res.rc == 0, res
        assert len(hub.gets("synthesizer.pt")) == 2
        assert (dest / "synthesizer.pt").read_bytes() == SYNTH


def test_wrong_sha256_is_rejected(hub: FakeHub, tmp_path: Path) -> None:
    wrong = sha256(b"some other content")
    hub.files["vocoder.pt"] = Served(VOCODER, wrong)
    res = run_download(hub.url, tmp_path, files=["vocoder.pt"])
    assert res.rc == 3
    msg = res.out["error"]
    assert "vocoder.pt" in msg and "sha256" in msg and wrong in msg and sha256(VOCODER) in msg
    assert "re-run" in msg.lower()
    dest = tmp_path / "models"
    assert not (dest / "vocoder.pt").exists()
    assert not dest.exists() or list(dest.iterdir()) == []
    assert blobs(tmp_path) == []


def test_interrupted_transfer_resumes_with_range(hub: FakeHub, tmp_path: Path) -> None:
    # huggingface_hub writes in 10 MiB chunks, so a transfer cut after 11 MiB resumes at 10 MiB.
    big = torch.randint(0, 256, (12 * 2**20,), dtype=torch.uint8, generator=torch.Generator().manual_seed(3))
    body = big.numpy().tobytes()
    hub.files["vocoder.pt"] = Served(body, sha256(body), drop_first_get_at=11 * 2**20)
    res = run_download(hub.url, tmp_path, files=["vocoder.pt"], expected_sizes={"vocoder.pt": len(body)})
    assert res.rc == 0, res
    assert (tmp_path / "models" / "vocoder.pt").read_bytes() == body
    ranges = [rng for _, _, rng in hub.gets("vocoder.pt")]
    assert ranges == [None, f"bytes={10 * 2**20}-"]


def test_server_down_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    res = run_download(f"http://127.0.0.1:{port}", tmp_path, files=["synthesizer.pt"])
    assert res.rc == 3
    msg = res.out["error"]
    assert "\n" not in msg
    assert msg.startswith(f"Could not download synthesizer.pt from the Hugging Face repository {HF_REPO_ID}")
    assert "could not be reached" in msg and DOWNLOAD_COMMAND in msg
    assert not (tmp_path / "models").exists()


def test_missing_remote_file_is_a_clear_error(hub: FakeHub, tmp_path: Path) -> None:
    res = run_download(hub.url, tmp_path, files=["encoder.pt"], expected_sizes={"encoder.pt": 10})
    assert res.rc == 3
    msg = res.out["error"]
    assert "encoder.pt" in msg and HF_REPO_ID in msg and "no file encoder.pt" in msg


def test_offline_mode_is_a_clear_error(hub: FakeHub, tmp_path: Path) -> None:
    res = run_download(hub.url, tmp_path, files=["vocoder.pt"], env_extra={"HF_HUB_OFFLINE": "1"})
    assert res.rc == 3
    assert "HF_HUB_OFFLINE" in res.out["error"] and "vocoder.pt" in res.out["error"]
    assert hub.requests == []


def test_present_file_is_kept_without_network(tmp_path: Path) -> None:
    (tmp_path / "x.pt").write_bytes(b"abc")
    assert download_models(tmp_path, files=["x.pt"], expected_sizes={"x.pt": 3}) == {"x.pt": tmp_path / "x.pt"}


def test_file_without_expected_size_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown.pt"):
        download_models(tmp_path, files=["unknown.pt"])
    with pytest.raises(ValueError, match="plain file name"):
        download_models(tmp_path, files=["../x.pt"], expected_sizes={"../x.pt": 1})


def test_published_sizes() -> None:
    assert PUBLISHED_SIZES == {"encoder.pt": 17_090_379, "synthesizer.pt": 370_554_559, "vocoder.pt": 53_845_290}
    assert DEFAULT_MODELS_DIR == REPO_ROOT / "saved_models" / "default"


def test_missing_weights_message_default_folder() -> None:
    msg = missing_weights_message(DEFAULT_MODELS_DIR / "synthesizer.pt")
    assert "synthesizer.pt" in msg and str(DEFAULT_MODELS_DIR) in msg
    assert msg.endswith(DOWNLOAD_COMMAND)
    assert "--models" not in msg and "\n" not in msg


def test_missing_weights_message_other_folder(tmp_path: Path) -> None:
    folder = tmp_path / "my models"
    msg = missing_weights_message(folder / "vocoder.pt")
    assert "vocoder.pt" in msg and str(folder) in msg
    assert msg.endswith(f"{DOWNLOAD_COMMAND} --models '{folder}'")

    msg = missing_weights_message(folder / "encoder.pt")
    assert f"{DOWNLOAD_COMMAND} --encoder --models '{folder}'" in msg

    msg = missing_weights_message(folder / "custom.pt")
    assert "custom.pt" in msg and DOWNLOAD_COMMAND in msg


def test_missing_weights_message_is_raised_by_checkpoint_loader(tmp_path: Path) -> None:
    from deepfake_audio_core.checkpoint import read_checkpoint
    from deepfake_audio_core.errors import MissingWeightsError

    with pytest.raises(MissingWeightsError) as info:
        read_checkpoint(tmp_path / "vocoder.pt", missing_weights_message)
    assert isinstance(info.value, WeightsError)
    assert DOWNLOAD_COMMAND in str(info.value) and "vocoder.pt" in str(info.value)
