"""Private voice libraries: each visitor sees and changes only their own; replicas share a folder safely."""
from __future__ import annotations

import concurrent.futures
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from deepfake_audio_core.errors import RequestError
from deepfake_audio.studio import owners
from deepfake_audio.studio.library import VoiceError
from test_studio_api import models_folder, speechlike_wav

ROOT = Path(__file__).resolve().parent.parent
TOKEN_A, TOKEN_B = "a" * 20 + "-first-visitor", "b" * 20 + "_second-visitor"


@pytest.fixture(scope="module")
def voice_wav(tmp_path_factory) -> Path:
    return speechlike_wav(tmp_path_factory.mktemp("privacy-audio") / "voice.wav")


@pytest.fixture(scope="module")
def private_studio(quick_dir, tmp_path_factory):
    from deepfake_audio.studio import Studio
    models = models_folder(tmp_path_factory.mktemp("privacy-models"), quick_dir)
    return Studio(models, tmp_path_factory.mktemp("privacy-data"), private=True)


def test_owner_identities_and_folders(tmp_path):
    assert owners.owner_id(TOKEN_A) == f"token:{TOKEN_A}"
    assert owners.owner_id(TOKEN_A, account="alice") == "hf:alice"  # signed in: the account wins
    for bad in (None, "", "short", "../../etc/passwd" + "x" * 20, "a" * 20 + "/" + "b" * 10, 42):
        assert owners.owner_id(bad) is None
    folder = owners.owner_folder(tmp_path, owners.owner_id(TOKEN_A))
    assert folder.parent == tmp_path / "owners" and TOKEN_A not in str(folder) and len(folder.name) == 40
    assert owners.valid_token(owners.new_token()) and owners.new_token() != owners.new_token()


def test_the_page_reads_its_visitors_tokens_after_a_restart(private_studio, monkeypatch):
    """The key the browser's owner token is encrypted with is kept in the data folder (owner-only), so a
    restarted studio still knows its visitors; it is never in the folder the page serves."""
    from deepfake_audio.studio.ui.blocks import build_ui
    monkeypatch.delenv("DEEPFAKE_AUDIO_BROWSER_SECRET", raising=False)
    data = private_studio.data_dir
    keys = [next(c for c in build_ui(private_studio).blocks.values()
                 if getattr(c, "storage_key", None) == "deepfake-audio-owner").secret for _ in range(2)]
    assert keys[0] == keys[1] == owners.browser_secret(data) and len(keys[0]) >= 32
    assert oct((data / owners.BROWSER_SECRET_FILE).stat().st_mode & 0o777) == "0o600"
    assert data / owners.BROWSER_SECRET_FILE not in private_studio.output_dir.rglob("*")
    assert not (data / owners.BROWSER_SECRET_FILE).is_relative_to(private_studio.output_dir)
    monkeypatch.setenv("DEEPFAKE_AUDIO_BROWSER_SECRET", "given-by-the-operator")
    assert owners.browser_secret(data) == "given-by-the-operator"


def test_replicas_starting_at_once_share_one_browser_key(tmp_path, monkeypatch):
    """Several studio processes started together on one empty data folder agree on the key."""
    monkeypatch.delenv("DEEPFAKE_AUDIO_BROWSER_SECRET", raising=False)
    code = ("import importlib.util as u, sys; s = u.spec_from_file_location('owners', sys.argv[2]); "
            "m = u.module_from_spec(s); s.loader.exec_module(m); print(m.browser_secret(sys.argv[1]))")
    starts = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path), owners.__file__], stdout=subprocess.PIPE,
                               text=True) for _ in range(6)]  # the module alone: the processes start together
    keys = {p.communicate(timeout=120)[0].strip() for p in starts}
    assert keys == {owners.browser_secret(tmp_path)} and len(keys.pop()) >= 32
    assert [p.name for p in tmp_path.iterdir()] == [owners.BROWSER_SECRET_FILE]  # nothing staged left behind


def test_each_owner_sees_only_their_voices(private_studio, voice_wav):
    a, b = owners.owner_id(TOKEN_A), owners.owner_id(TOKEN_B)
    assert private_studio.save_voice("Alice", voice_wav, consent=True, owner=a) == "Alice"
    assert private_studio.voice_names(a) == ["Alice"] and private_studio.voice_names(b) == []
    with pytest.raises(VoiceError, match="no saved voice called 'Alice'"):
        private_studio.delete_voice("Alice", owner=b)
    with pytest.raises(VoiceError, match="no saved voice called 'Alice'"):
        private_studio.clone(None, "Alice", "Hello.", 1, "griffinlim", owner=b)
    out = private_studio.clone(None, "Alice", "Hello.", 1, "griffinlim", owner=a)
    assert len(private_studio.library(a).results.list()) == 1 and private_studio.library(b).results.list() == []
    _, rows = private_studio.voice_map(owner=b)
    assert rows == []
    assert out.voice == "Alice" and private_studio.voice_names(a) == ["Alice"]
    with pytest.raises(RequestError, match="no owner"):
        private_studio.voice_names(None)
    saved = private_studio.library(a).voices.get("Alice")
    assert saved.consent is not None and abs(saved.consent - time.time()) < 600  # when consent was given
    with pytest.raises(RequestError, match="speaker's permission"):
        private_studio.save_voice("Bob", voice_wav, owner=b)  # no consent
    with pytest.raises(VoiceError, match="Use letters"):
        private_studio.save_voice("../../escape", voice_wav, consent=True, owner=b)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(models: Path, data: Path, port: int, log: Path) -> subprocess.Popen:
    env = {**os.environ, "DEEPFAKE_AUDIO_NATIVE": os.environ.get("DEEPFAKE_AUDIO_NATIVE", "1")}
    return subprocess.Popen([sys.executable, "app.py", "--models", str(models), "--data", str(data), "--port",
                             str(port), "--host", "127.0.0.1", "--private-libraries"], cwd=ROOT, env=env,
                            stdout=log.open("w"), stderr=subprocess.STDOUT)


def wait_until_up(url: str, process: subprocess.Popen, log: Path, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the studio exited:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(1)
    raise AssertionError(f"the studio at {url} did not start:\n{log.read_text()[-3000:]}")


def test_two_server_processes_share_one_data_folder(quick_dir, tmp_path, voice_wav):
    """Replicas behind a load balancer: saves and deletes through both at once lose nothing."""
    from gradio_client import Client, handle_file
    models = models_folder(tmp_path / "models", quick_dir)
    data = tmp_path / "shared-data"
    ports = [free_port(), free_port()]
    logs = [tmp_path / f"server{k}.log" for k in range(2)]
    servers = [start_server(models, data, port, log) for port, log in zip(ports, logs)]
    try:
        for server, port, log in zip(servers, ports, logs):
            wait_until_up(f"http://127.0.0.1:{port}/", server, log)
        clients = [Client(f"http://127.0.0.1:{port}/", verbose=False) for port in ports]

        def save(k: int):
            return clients[k % 2].predict(f"Voice {k}", handle_file(str(voice_wav)), True, TOKEN_A,
                                          api_name="/save_voice")

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            list(pool.map(save, range(12)))
        expected = {f"Voice {k}" for k in range(12)}
        for client in clients:
            assert set(client.predict(TOKEN_A, api_name="/voices")) == expected
            assert client.predict(TOKEN_B, api_name="/voices") == []

        def delete(k: int):  # each voice deleted through the other server than the one that saved it
            return clients[(k + 1) % 2].predict(f"Voice {k}", TOKEN_A, api_name="/delete_voice")

        def save_more(k: int):
            return clients[k % 2].predict(f"Later {k}", handle_file(str(voice_wav)), True, TOKEN_A,
                                          api_name="/save_voice")

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            jobs = [pool.submit(delete, k) for k in range(0, 12, 2)] + [pool.submit(save_more, k) for k in range(4)]
            for job in jobs:
                job.result(timeout=300)
        # Both replicas asked to save the same name at once: exactly one of each pair succeeds.
        def save_same(job: tuple[int, int]):
            k, server = job
            try:
                clients[server].predict(f"Same {k}", handle_file(str(voice_wav)), True, TOKEN_A,
                                        api_name="/save_voice")
                return True
            except Exception as exc:  # the loser is told the name is taken
                assert "already exists" in str(exc), exc
                return False

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            won = list(pool.map(save_same, [(k, server) for k in range(4) for server in (0, 1)]))
        assert [won[2 * k] + won[2 * k + 1] for k in range(4)] == [1] * 4
        expected = {f"Voice {k}" for k in range(1, 12, 2)} | {f"Later {k}" for k in range(4)} | \
            {f"Same {k}" for k in range(4)}
        for client in clients:
            assert set(client.predict(TOKEN_A, api_name="/voices")) == expected
        # On disk: exactly those voices, no staging or trash folders left behind.
        folder = owners.owner_folder(data, owners.owner_id(TOKEN_A)) / "voices"
        assert len([p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")]) == len(expected)
        assert not [p for p in folder.iterdir() if p.name.startswith((".new-", ".deleted-"))]
    except BaseException:  # the servers' side of a failure, in the report
        for log in logs:
            print(f"--- {log.name}\n{log.read_text(errors='replace')[-4000:]}")
        raise
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
