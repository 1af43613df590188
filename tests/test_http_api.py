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
