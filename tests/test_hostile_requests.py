"""The findings of a hostile client, against the real server process on its default models.

A FLAC whose header asks for 29 minutes of 8-channel 96 kHz audio (decoded: 1.3 G samples)
and a text of 300 stacked `[pause 10]` tags are both refused with a clear 4xx error while
the server's peak memory stays under 3 GB.
"""
from __future__ import annotations

import json
import struct
import sys
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from test_studio_privacy import free_port, start_server, wait_until_up

PEAK_LIMIT_BYTES = 3 * 2**30


def flac_claiming(path: Path, seconds: float, channels: int = 8, rate: int = 96000) -> Path:
    """A short FLAC of silence whose STREAMINFO says it lasts `seconds` (what a tiny, hostile
    upload can claim; decoders size their work from it)."""
    sf.write(str(path), np.zeros((rate // 10, channels), np.int16), rate, format="FLAC", subtype="PCM_16")
    data = bytearray(path.read_bytes())
    assert data[:4] == b"fLaC" and data[4] & 0x7F == 0  # STREAMINFO first
    packed = struct.unpack(">Q", bytes(data[18:26]))[0]  # rate (20 bits) | channels-1 (3) | bits-1 (5) | samples (36)
    packed = (packed & ~((1 << 36) - 1)) | int(seconds * rate)
    data[18:26] = struct.pack(">Q", packed)
    path.write_bytes(bytes(data))
    return path


def peak_memory(pid: int) -> int:
    """VmHWM of a process (Linux), bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


@pytest.mark.skipif(sys.platform != "linux", reason="reads the server's peak memory from /proc")
def test_costly_inputs_are_refused_and_memory_stays_small(tmp_path):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError
    models = tmp_path / "models"  # empty: the shipped starter models speak
    models.mkdir()
    port = free_port()
    log = tmp_path / "server.log"
    server = start_server(models, tmp_path / "data", port, log)
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_until_up(url, server, log)
        flac = flac_claiming(tmp_path / "silence.flac", 29 * 60)
        assert flac.stat().st_size < 1_000_000 and sf.info(str(flac)).duration > 1700
        client = Client(url, verbose=False)
        owner = "hostile-client-token-0123456789"
        with pytest.raises(AppError, match="at most"):
            client.predict(handle_file(str(flac)), "", "Hello.", 1, "griffinlim", False, True, owner, api_name="/clone")
        client.predict("Narrator", handle_file(str(Path(__file__).parent / "data" / "ref.wav")), True, owner,
                       api_name="/save_voice")
        body = {"model": "tts-1", "voice": "Narrator", "input": "Hi. " + "[pause 10] " * 300, "response_format": "wav"}
        request = urllib.request.Request(url + "v1/audio/speech", json.dumps(body).encode(),
                                         {"Content-Type": "application/json", "X-Owner-Token": owner})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=120)
        assert refused.value.code == 400
        assert "pause" in json.loads(refused.value.read())["error"]["message"]
        assert peak_memory(server.pid) < PEAK_LIMIT_BYTES
    finally:
        server.terminate()
        server.wait(timeout=60)
