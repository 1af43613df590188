"""The OpenAI-compatible speech endpoint, driven by OpenAI's own Python client."""
from __future__ import annotations

import io
import json
import urllib.error
import urllib.request

import numpy as np
import pytest
import soundfile as sf

from deepfake_audio.watermark import DETECTION_THRESHOLD, watermark_score
from test_studio_api import speechlike_wav, start_studio

SENTENCE = "The weather was cold and the children stayed inside to read their books."
KEY = "test-key-0123456789"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The studio on the shipped starter models (an empty models folder), one saved voice, an API key."""
    studio, server = start_studio(tmp_path_factory.mktemp("api-models"), tmp_path_factory.mktemp("api-data"))
    voice = speechlike_wav(tmp_path_factory.mktemp("api-audio") / "narrator.wav")
    studio.save_voice("Narrator", voice, consent=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DEEPFAKE_AUDIO_API_KEY", KEY)
        with server:
            server.studio = studio
            yield server


@pytest.fixture(scope="module")
def client(server):
    from openai import OpenAI
    return OpenAI(base_url=server.url + "v1", api_key=KEY, max_retries=0, timeout=300)


def decode(data: bytes, fmt: str) -> tuple[np.ndarray, int]:
    if fmt == "pcm":
        return np.frombuffer(data, "<i2").astype(np.float32) / 32768, 16000
    wav, rate = sf.read(io.BytesIO(data), dtype="float32")
    return wav, rate


def test_speech_in_every_format(client):
    lengths = {}
    for fmt in ("wav", "pcm", "mp3", "flac", "opus"):
        response = client.audio.speech.create(model="tts-1", voice="Narrator", input=SENTENCE, response_format=fmt)
        wav, rate = decode(response.content, fmt)
        assert rate == 16000 and 1.5 < len(wav) / rate < 10, fmt
        assert watermark_score(wav, rate) > DETECTION_THRESHOLD, fmt  # every answer is marked as generated
        lengths[fmt] = len(wav) / rate
    assert max(lengths.values()) - min(lengths.values()) < 0.1  # the same speech, whatever the container
    wav_bytes = client.audio.speech.create(model="tts-1", voice="Narrator", input=SENTENCE,
                                           response_format="wav").content
    assert b"AI-generated voice clone" in wav_bytes[:400]  # the RIFF INFO chunk comes before the samples


def test_speed_changes_the_duration_as_asked(client):
    def seconds(speed: float) -> float:
        data = client.audio.speech.create(model="tts-1", voice="Narrator", input=SENTENCE, response_format="pcm",
                                          speed=speed).content
        return len(data) / 2 / 16000
    normal = seconds(1.0)
    for speed in (0.5, 0.8, 1.25, 2.0):
        assert seconds(speed) == pytest.approx(normal / speed, rel=0.05), speed


def test_voices_are_listed(client, server):
    with urllib.request.urlopen(urllib.request.Request(server.url + "v1/voices",
                                                       headers={"Authorization": f"Bearer {KEY}"})) as response:
        listed = json.loads(response.read())
    assert [v["id"] for v in listed["data"]] == ["Narrator"]


def post(server, body: dict, key: str | None = KEY) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    request = urllib.request.Request(server.url + "v1/audio/speech", json.dumps(body).encode(), headers)
    try:
        with urllib.request.urlopen(request, timeout=300) as response:
            return response.status, {}
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.mark.parametrize("case, change, status, message", [
    ("bad markup", {"input": "Hello [pasue 2] there."}, 400, "Unknown tag [pasue 2] at line 1, column 7"),
    ("unknown voice", {"voice": "Nobody"}, 404, "Unknown voice 'Nobody'"),
    ("speed too high", {"speed": 4.0}, 422, "speed must be from 0.5 to 2.0"),
    ("speed too low", {"speed": 0.25}, 422, "speed must be from 0.5 to 2.0"),
    ("pitch out of range", {"pitch": 13}, 422, "pitch must be from -12 to 12 semitones"),
    ("unsupported format", {"response_format": "aac"}, 422, "Unsupported response_format 'aac'"),
    ("empty input", {"input": "  "}, 400, "The text is empty"),
    ("over-long input", {"input": "word " * 1001}, 400, "the limit is 5000"),
    ("missing input", {"input": None}, 422, ""),
])
def test_bad_requests_get_clear_errors(server, case, change, status, message):
    body = {"model": "tts-1", "input": SENTENCE, "voice": "Narrator", "response_format": "wav", **change}
    body = {k: v for k, v in body.items() if v is not None}
    code, answer = post(server, body)
    assert code == status, (case, answer)
    text = json.dumps(answer)
    assert message in (answer.get("error", {}).get("message", "") if message else text) and "Traceback" not in text


def test_api_key_is_checked(server):
    body = {"model": "tts-1", "input": SENTENCE, "voice": "Narrator", "response_format": "wav"}
    for key, code in ((None, "missing_api_key"), ("wrong-key", "invalid_api_key")):
        status, answer = post(server, body, key)
        assert status == 401 and answer["error"]["code"] == code
    from openai import AuthenticationError, OpenAI
    with pytest.raises(AuthenticationError):
        OpenAI(base_url=server.url + "v1", api_key="wrong-key", max_retries=0).audio.speech.create(
            model="tts-1", voice="Narrator", input=SENTENCE)


def raw(server, path: str, data: bytes | None = None, headers: dict | None = None, method: str | None = None):
    """(status, headers, body) of one request that follows no redirect."""
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None
    request = urllib.request.Request(server.url + path.lstrip("/"), data, headers or {}, method=method)
    try:
        with urllib.request.build_opener(NoRedirect).open(request, timeout=60) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_the_key_guards_the_whole_studio(server):
    """The page, the Gradio API (call, upload, files), config and /v1 need the key; the PWA shell does not."""
    multipart = (b"--b\r\nContent-Disposition: form-data; name=\"files\"; filename=\"a.wav\"\r\n"
                 b"Content-Type: audio/wav\r\n\r\nRIFF\r\n--b--\r\n")
    attempts = [
        ("gradio_api/call/clone", json.dumps({"data": [None, "Narrator", SENTENCE, 1, "griffinlim"]}).encode(),
         {"Content-Type": "application/json"}),
        ("gradio_api/upload", multipart, {"Content-Type": "multipart/form-data; boundary=b"}),
        ("gradio_api/info", None, {}), ("config", None, {}), ("gradio_api/queue/join", b"{}",
                                                                {"Content-Type": "application/json"}),
        ("gradio_api/file=/etc/hostname", None, {}), ("v1/voices", None, {}),
    ]
    for path, data, headers in attempts:
        for extra in ({}, {"Authorization": "Bearer wrong"}, {"Cookie": "deepfake_audio_session=forged"}):
            status, _, body = raw(server, path, data, {**headers, **extra})
            assert status == 401, (path, extra, status)
            assert json.loads(body)["error"]["type"] == "authentication_error"
    # a browser visiting the page is sent to the sign-in page; the PWA shell stays public
    status, headers, _ = raw(server, "/", headers={"Accept": "text/html"})
    assert status == 303 and headers["location"].startswith("/login?next=")
    for path in ("manifest.json", "sw.js", "offline.html", "pwa/icons/favicon.png", "login"):
        assert raw(server, path)[0] == 200, path
    # signing in: a wrong key is refused, the right one sets a session cookie that opens the page
    assert raw(server, "login", b"key=nope&next=/", {"Content-Type": "application/x-www-form-urlencoded"})[0] == 401
    status, headers, _ = raw(server, "login", f"key={KEY}&next=//evil.example/".encode(),
                             {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 303 and headers["location"] == "/"  # never sent to another site
    cookie = headers["set-cookie"].split(";")[0]
    assert KEY not in cookie and "HttpOnly" in headers["set-cookie"]
    status, _, page = raw(server, "/", headers={"Accept": "text/html", "Cookie": cookie})
    assert status == 200 and b"<html" in page.lower()
    assert raw(server, "config", headers={"X-API-Key": KEY})[0] == 200


def test_gradio_client_needs_the_key(server):
    from gradio_client import Client
    with pytest.raises(Exception):
        Client(server.url, verbose=False)
    client = Client(server.url, verbose=False, headers={"Authorization": f"Bearer {KEY}"})
    assert client.predict(api_name="/voices") == ["Narrator"]
    path = client.predict(None, "Narrator", "Hello there.", 3, "griffinlim", False, True, api_name="/clone")[0]
    wav, rate = sf.read(path)
    assert rate == 16000 and len(wav) > 8000


LONG_TEXT = " ".join(f"Sentence number {k} of a long reading keeps the speech going for a while." for k in range(55))


def drop_stream(server) -> None:
    """Start a streamed wav answer for a long text, read its first bytes, then reset the connection."""
    import http.client
    import socket
    import struct
    host, port = server.url.split("//")[1].rstrip("/").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=120)
    body = json.dumps({"model": "tts-1", "input": LONG_TEXT, "voice": "Narrator", "response_format": "wav"})
    connection.request("POST", "/v1/audio/speech", body, {"Content-Type": "application/json",
                                                           "Authorization": f"Bearer {KEY}"})
    response = connection.getresponse()
    assert response.status == 200
    assert response.read(4096)[:4] == b"RIFF"
    connection.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST, not FIN
    connection.sock.close()


def test_dropped_streams_free_their_slot(server):
    import time
    slots = server.app.state.speech_slots
    for _ in range(2):
        drop_stream(server)
    start = time.monotonic()
    status, _ = post(server, {"model": "tts-1", "input": SENTENCE, "voice": "Narrator", "response_format": "pcm"})
    assert status == 200 and time.monotonic() - start < 60
    deadline = time.monotonic() + 30
    while slots.busy and time.monotonic() < deadline:
        time.sleep(0.1)
    assert slots.busy == 0


def test_the_wait_for_a_slot_is_bounded():
    """Beyond the slots, a bounded queue (429 when full) and a timeout (503), both with Retry-After."""
    import asyncio

    from deepfake_audio.http_api import ApiError, Slots

    async def scenario():
        slots = Slots(1, max_waiting=1, timeout=0.5)
        await slots.acquire()
        waiting = asyncio.ensure_future(slots.acquire())
        await asyncio.sleep(0.05)
        with pytest.raises(ApiError) as full:
            await slots.acquire()
        assert full.value.status == 429 and full.value.retry_after >= 1
        with pytest.raises(ApiError) as late:
            await waiting
        assert late.value.status == 503 and late.value.response().headers["retry-after"]
        third = asyncio.ensure_future(slots.acquire())
        await asyncio.sleep(0.05)
        slots.release()  # the waiter gets the slot at once
        await asyncio.wait_for(third, 1)
        assert slots.busy == 1
        slots.release()
        assert slots.busy == 0

    asyncio.run(scenario())


def test_a_huge_body_gets_413_before_it_is_read(server):
    """A body declared at 100 MB is refused at once, in OpenAI's error shape (it used to be a bare 500)."""
    import http.client
    host, port = server.url.split("//")[1].rstrip("/").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    connection.putrequest("POST", "/v1/audio/speech")
    for name, value in (("Content-Type", "application/json"), ("Content-Length", str(100 * 2**20)),
                        ("Authorization", f"Bearer {KEY}")):
        connection.putheader(name, value)
    connection.endheaders(b'{"input": "' + b"a" * 65536)
    response = connection.getresponse()
    assert response.status == 413
    assert json.loads(response.read())["error"]["code"] == "request_too_large"
