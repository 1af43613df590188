"""An HTTP API compatible with OpenAI's speech endpoint, served next to the studio.

    POST /v1/audio/speech   {"model", "input", "voice", "response_format", "speed"} -> audio
    GET  /v1/voices         the saved voices that "voice" may name

`voice` is the name of a saved voice (its consent was given when it was saved); `model` is
accepted and ignored (the studio's models speak); `speed` is the speaking rate, 0.5 to 2.0;
`response_format` is wav, pcm (16-bit little-endian mono at 16 kHz), mp3, flac or opus.
wav and pcm stream as the speech is made. Every answer is watermarked, and its file carries
the provenance tags (wav, mp3, flac, opus). `input` may be a script ([pause S], lines
starting [voice: Name]).

When `DEEPFAKE_AUDIO_API_KEY` is set, requests need `Authorization: Bearer <key>`. Where
the studio keeps voices private, `X-Owner-Token: <token>` says whose voices to use.

Errors come back in OpenAI's shape, {"error": {"message", "type", "param", "code"}}, with
400 (bad input or markup), 401 (API key), 404 (unknown voice) or 422 (a value out of range,
an unsupported format); never a traceback.
"""
from __future__ import annotations

import hmac
import logging
import os
import struct
import threading
from typing import Iterator

import numpy as np
from fastapi import APIRouter, Header
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel

from deepfake_audio.core.audio_io import OUTPUT_FORMATS, encode_audio, output_format
from deepfake_audio.core.errors import DeepfakeAudioError, RequestError, TextError
from deepfake_audio.pipeline import MAX_PACE, MIN_PACE, SAMPLE_RATE, check_pitch
from deepfake_audio.studio import owners
from deepfake_audio.studio.library import VoiceError
from deepfake_audio.studio.service import saved_voice_pitch
from deepfake_audio.watermark import provenance_tags

logger = logging.getLogger(__name__)

API_KEY_VARIABLE = "DEEPFAKE_AUDIO_API_KEY"
FORMATS = ("wav", "pcm", "mp3", "flac", "opus")
STREAMED = ("wav", "pcm")


class SpeechRequest(BaseModel):
    model: str = "deepfake-audio"
    input: str
    voice: str
    response_format: str = "mp3"
    speed: float = 1.0
    instructions: str | None = None  # accepted for compatibility; this synthesizer takes no instructions
    pitch: float = 0.0  # extension: semitones, -12 to 12 (the starter vocoder moves the voice's pitch)


class ApiError(Exception):
    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.kind, self.param, self.code = status, message, kind, param, code

    def response(self) -> JSONResponse:
        return JSONResponse({"error": {"message": self.message, "type": self.kind, "param": self.param,
                                       "code": self.code}}, status_code=self.status)


def check_api_key(authorization: str | None) -> None:
    """401 unless the request carries the key set in $DEEPFAKE_AUDIO_API_KEY (no key set: open)."""
    expected = os.environ.get(API_KEY_VARIABLE)
    if not expected:
        return
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not given:
        raise ApiError(401, "Missing API key: send `Authorization: Bearer <key>`.", "authentication_error",
                       code="missing_api_key")
    if not hmac.compare_digest(given.strip().encode(), expected.encode()):
        raise ApiError(401, "Incorrect API key.", "authentication_error", code="invalid_api_key")


def wav_stream_header(sample_rate: int, tags: dict[str, str]) -> bytes:
    """A 16-bit mono WAV header for audio of unknown length (sizes at their maximum, as streams do),
    with the provenance tags in a RIFF INFO chunk before the data."""
    info = b"INFO"
    for key, name in (("software", b"ISFT"), ("comment", b"ICMT"), ("title", b"INAM"), ("date", b"ICRD")):
        if tags.get(key):
            value = tags[key].encode("utf-8") + b"\0"
            value += b"\0" * (len(value) % 2)
            info += name + struct.pack("<I", len(value)) + value
    fmt = struct.pack("<HHIIHH", 1, 1, sample_rate, sample_rate * 2, 2, 16)
    return (b"RIFF" + struct.pack("<I", 0xFFFFFFFF) + b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
            + b"LIST" + struct.pack("<I", len(info)) + info + b"data" + struct.pack("<I", 0xFFFFFFFF - 36))


def speech_router(studio, concurrency: int = 1) -> APIRouter:
    """The /v1 routes for `studio` (its pipeline and voice libraries); at most `concurrency` at once."""
    router = APIRouter()
    slots = threading.BoundedSemaphore(max(1, concurrency))

    def library(owner_token: str | None):
        owner = owners.owner_id(owner_token) if studio.private else None
        if studio.private and owner is None:
            raise ApiError(401, "This studio keeps voices private: send your owner token (24 or more letters, "
                                "digits, - or _) as `X-Owner-Token`.", "authentication_error", code="missing_owner")
        return studio.library(owner)

    @router.get("/v1/voices")
    def list_voices(authorization: str | None = Header(None), x_owner_token: str | None = Header(None)):
        try:
            check_api_key(authorization)
            voices = library(x_owner_token).voices.list()
        except ApiError as exc:
            return exc.response()
        return {"object": "list", "data": [{"id": v.name, "object": "voice", "name": v.name,
                                            "created": int(v.created)} for v in voices]}

    @router.post("/v1/audio/speech")
    def speech(body: SpeechRequest, authorization: str | None = Header(None),
               x_owner_token: str | None = Header(None)):
        try:
            check_api_key(authorization)
            fmt = body.response_format.strip().lower()
            if fmt not in FORMATS:
                raise ApiError(422, f"Unsupported response_format {body.response_format!r}: choose "
                                    f"{', '.join(FORMATS)}.", param="response_format", code="unsupported_format")
            if not MIN_PACE <= body.speed <= MAX_PACE:
                raise ApiError(422, f"speed must be from {MIN_PACE} to {MAX_PACE} (1 is the voice's own pace), "
                                    f"got {body.speed}.", param="speed", code="speed_out_of_range")
            voices = library(x_owner_token).voices
            try:
                saved = voices.get(body.voice)
            except VoiceError:
                names = ", ".join(voices.names()) or "none saved yet"
                raise ApiError(404, f"Unknown voice {body.voice!r}: saved voices are {names}.", param="voice",
                               code="voice_not_found") from None
            named = {v.name: v.embedding for v in voices.list()}
            try:
                pitch = check_pitch(body.pitch)
            except RequestError as exc:
                raise ApiError(422, str(exc), param="pitch", code="pitch_out_of_range") from None
            plan = studio.pipeline.plan(None, body.input, None, "auto", embedding=saved.embedding,
                                        pace=body.speed, voices=named, pitch=pitch,
                                        voice_pitch_hz=saved_voice_pitch(saved.preview))
        except ApiError as exc:
            return exc.response()
        except TextError as exc:
            return ApiError(400, str(exc), param="input", code="invalid_input").response()
        except RequestError as exc:
            return ApiError(422, str(exc)).response()
        except DeepfakeAudioError as exc:
            return ApiError(400, str(exc)).response()
        tags = provenance_tags()
        if fmt in STREAMED:
            return StreamingResponse(_stream(studio, plan, fmt, tags, slots),
                                     media_type="audio/wav" if fmt == "wav" else "audio/L16; rate=16000; channels=1")
        with slots:
            try:
                result = studio.pipeline.run(plan)
            except DeepfakeAudioError as exc:
                return ApiError(400, str(exc)).response()
        return Response(encode_audio(result.wav, SAMPLE_RATE, fmt, tags), media_type=OUTPUT_FORMATS[fmt][2])

    return router


def _stream(studio, plan, fmt: str, tags: dict[str, str], slots) -> Iterator[bytes]:
    """The answer's bytes as the speech is made: a WAV header first for wav, then 16-bit samples."""
    from deepfake_audio.streaming import stream_clone
    if fmt == "wav":
        yield wav_stream_header(SAMPLE_RATE, tags)
    with slots:
        try:
            for chunk in stream_clone(studio.pipeline, plan=plan):
                yield (np.clip(chunk.audio, -1.0, 1.0) * 32767).astype("<i2").tobytes()
        except Exception:  # the status line is sent: the client sees a short answer, the log the cause
            logger.exception("The speech stream stopped early")


__all__ = ["speech_router", "SpeechRequest", "check_api_key", "wav_stream_header", "FORMATS", "output_format"]
