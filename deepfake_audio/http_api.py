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
400 (bad input or markup), 401 (API key), 404 (unknown voice), 422 (a value out of range,
an unsupported format), 429 (too many requests already waiting) or 503 (none of the
syntheses in progress finished in time), the last two with `Retry-After`; never a traceback.

At most `concurrency` syntheses run at once (`Slots`). Up to `DEEPFAKE_AUDIO_API_QUEUE`
requests (default 8) wait for a turn, each for at most `DEEPFAKE_AUDIO_API_WAIT` seconds
(default 60). A request whose client has gone by its turn is not started, and a stream
stops, freeing its slot, within one chunk of its client going (finished, failed,
cancelled or disconnected).
"""
from __future__ import annotations

import asyncio
import hmac
import logging
import os
import struct
import threading
import weakref
from typing import AsyncIterator, Iterator

import numpy as np
from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool
from pydantic import BaseModel

from deepfake_audio_core.audio_io import OUTPUT_FORMATS, encode_audio, output_format
from deepfake_audio_core.errors import DeepfakeAudioError, RequestError, TextError
from deepfake_audio.pipeline import SAMPLE_RATE
from deepfake_audio_core.requests import MAX_PACE, MIN_PACE, check_pace, check_pitch
from deepfake_audio.studio import owners
from deepfake_audio.studio.access import API_KEY_VARIABLE
from deepfake_audio.studio.library import VoiceError
from deepfake_audio.watermark import provenance_tags

logger = logging.getLogger(__name__)

FORMATS = ("wav", "pcm", "mp3", "flac", "opus")
STREAMED = ("wav", "pcm")
QUEUE_VARIABLE, WAIT_VARIABLE = "DEEPFAKE_AUDIO_API_QUEUE", "DEEPFAKE_AUDIO_API_WAIT"
DEFAULT_QUEUE, DEFAULT_WAIT_SECONDS = 8, 60.0


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
                 code: str | None = None, retry_after: int | None = None):
        super().__init__(message)
        self.status, self.message, self.kind, self.param, self.code = status, message, kind, param, code
        self.retry_after = retry_after

    def response(self) -> JSONResponse:
        headers = {"Retry-After": str(self.retry_after)} if self.retry_after is not None else None
        return JSONResponse({"error": {"message": self.message, "type": self.kind, "param": self.param,
                                       "code": self.code}}, status_code=self.status, headers=headers)


class ClientGone(Exception):
    """The client disconnected before its request's turn came."""


class Slots:
    """At most `concurrency` syntheses at once, with a bounded, timed queue in front.

    Lives on the server's event loop: `acquire` waits there (no worker thread is held
    while waiting) and `release` may be called from any thread.
    """

    def __init__(self, concurrency: int, max_waiting: int = DEFAULT_QUEUE, timeout: float = DEFAULT_WAIT_SECONDS):
        self.concurrency, self.max_waiting, self.timeout = max(1, concurrency), max(0, max_waiting), timeout
        self._free = self.concurrency
        self._waiters: list[asyncio.Future] = []
        self._lock = threading.RLock()  # a grant may release again from inside release
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def busy(self) -> int:
        return self.concurrency - self._free

    async def acquire(self, request: Request | None = None) -> None:
        """Take a slot, or raise `ApiError` 429 (queue full) / 503 (no turn within the timeout), or
        `ClientGone` (the client left while waiting)."""
        self._loop = asyncio.get_running_loop()
        with self._lock:
            if self._free > 0 and not self._waiters:
                self._free -= 1
                waiter = None
            elif len(self._waiters) >= self.max_waiting:
                raise ApiError(429, f"The server is busy: {len(self._waiters)} requests are already waiting. "
                                    "Try again shortly.", "rate_limit_error", code="queue_full",
                               retry_after=max(1, int(self.timeout // 4)))
            else:
                waiter = self._loop.create_future()
                self._waiters.append(waiter)
        if waiter is not None:
            try:
                await asyncio.wait_for(asyncio.shield(waiter), self.timeout)
            except (asyncio.TimeoutError, asyncio.CancelledError) as exc:
                with self._lock:
                    granted = waiter.done() and not waiter.cancelled()
                    if not granted:
                        waiter.cancel()
                        self._waiters.remove(waiter)
                if granted:  # the slot came just as we gave up: hand it on
                    self.release()
                if isinstance(exc, asyncio.CancelledError):
                    raise
                raise ApiError(503, f"The server is busy: no synthesis finished within {self.timeout:g} s. "
                                    "Try again shortly.", "server_error", code="server_busy",
                               retry_after=max(1, int(self.timeout // 2))) from None
        if request is not None and await request.is_disconnected():
            self.release()
            raise ClientGone

    def release(self) -> None:
        """Free a slot (from any thread): the longest waiter gets it."""
        with self._lock:
            while self._waiters:
                waiter = self._waiters.pop(0)
                if not waiter.done():
                    self._hand_over(waiter)
                    return
            self._free += 1

    def _hand_over(self, waiter: asyncio.Future) -> None:
        loop = waiter.get_loop()

        def grant() -> None:
            if waiter.cancelled():  # it gave up in between: the slot goes to the next one
                self.release()
            else:
                waiter.set_result(None)
        try:
            if loop is asyncio._get_running_loop():
                grant()
            else:
                loop.call_soon_threadsafe(grant)
        except RuntimeError:  # the loop is closed (server shutting down)
            self._free += 1


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


def speech_router(studio, concurrency: int = 1, max_waiting: int | None = None,
                  wait_seconds: float | None = None) -> APIRouter:
    """The /v1 routes for `studio` (its clone service and voice libraries); at most `concurrency` at once,
    `max_waiting` more waiting up to `wait_seconds` each (defaults: $DEEPFAKE_AUDIO_API_QUEUE,
    $DEEPFAKE_AUDIO_API_WAIT, else 8 and 60 s)."""
    router = APIRouter()
    if max_waiting is None:
        max_waiting = int(os.environ.get(QUEUE_VARIABLE) or DEFAULT_QUEUE)
    if wait_seconds is None:
        wait_seconds = float(os.environ.get(WAIT_VARIABLE) or DEFAULT_WAIT_SECONDS)
    slots = Slots(concurrency, max_waiting, wait_seconds)
    router.slots = slots  # for the server's own status and for tests

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

    def plan_of(body: SpeechRequest, authorization: str | None, x_owner_token: str | None):
        """The request checked and planned (cheap: the voice is a saved embedding), or an `ApiError`."""
        check_api_key(authorization)
        fmt = body.response_format.strip().lower()
        if fmt not in FORMATS:
            raise ApiError(422, f"Unsupported response_format {body.response_format!r}: choose "
                                f"{', '.join(FORMATS)}.", param="response_format", code="unsupported_format")
        try:
            speed = check_pace(body.speed)
        except RequestError:
            raise ApiError(422, f"speed must be from {MIN_PACE} to {MAX_PACE} (1 is the voice's own pace), "
                                f"got {body.speed}.", param="speed", code="speed_out_of_range") from None
        voices = library(x_owner_token).voices
        try:
            saved = voices.get(body.voice)
        except VoiceError:
            names = ", ".join(voices.names()) or "none saved yet"
            raise ApiError(404, f"Unknown voice {body.voice!r}: saved voices are {names}.", param="voice",
                           code="voice_not_found") from None
        named = studio.clones.saved_voices(library(x_owner_token))
        try:
            pitch = check_pitch(body.pitch)
        except RequestError as exc:
            raise ApiError(422, str(exc), param="pitch", code="pitch_out_of_range") from None
        try:
            plan = studio.clones.plan_saved_voice(saved, body.input, pace=speed, voices=named, pitch=pitch)
        except TextError as exc:
            raise ApiError(400, str(exc), param="input", code="invalid_input") from None
        except RequestError as exc:
            raise ApiError(422, str(exc)) from None
        except DeepfakeAudioError as exc:
            raise ApiError(400, str(exc)) from None
        return plan, fmt

    @router.post("/v1/audio/speech")
    async def speech(body: SpeechRequest, request: Request, authorization: str | None = Header(None),
                     x_owner_token: str | None = Header(None)):
        try:
            plan, fmt = await run_in_threadpool(plan_of, body, authorization, x_owner_token)
            await slots.acquire(request)
        except ApiError as exc:
            return exc.response()
        except ClientGone:
            return Response(status_code=499)  # nobody reads it; nothing was started
        tags = provenance_tags()
        if fmt in STREAMED:
            hold = _Hold(slots)
            body_iterator = _stream(studio, plan, fmt, tags, hold)
            # should the response never start iterating (its client gone at once), the slot still comes back
            weakref.finalize(body_iterator, hold.release)
            return StreamingResponse(body_iterator,
                                     media_type="audio/wav" if fmt == "wav" else f"audio/L16; rate={SAMPLE_RATE}; channels=1")
        try:
            result = await run_in_threadpool(studio.clones.run, plan)
        except DeepfakeAudioError as exc:
            return ApiError(400, str(exc)).response()
        finally:
            slots.release()
        return Response(encode_audio(result.wav, SAMPLE_RATE, fmt, tags), media_type=OUTPUT_FORMATS[fmt][2])

    return router


def _samples(studio, plan) -> Iterator[bytes]:
    """16-bit little-endian samples of the plan's stream, a chunk at a time."""
    for chunk in studio.clones.stream(plan, keep_audio=False):  # relayed, never joined: hold one piece
        yield (np.clip(chunk.audio, -1.0, 1.0) * 32767).astype("<i2").tobytes()


class _Hold:
    """One taken slot, given back once however many paths try."""

    def __init__(self, slots: Slots):
        self.slots, self._lock, self._held = slots, threading.Lock(), True

    def release(self) -> None:
        with self._lock:
            held, self._held = self._held, False
        if held:
            self.slots.release()


async def _stream(studio, plan, fmt: str, tags: dict[str, str], hold: _Hold) -> AsyncIterator[bytes]:
    """The answer's bytes as the speech is made: a WAV header first for wav, then 16-bit samples.

    The slot (taken by the caller) is held by a producer thread that makes the chunks and
    frees it when it stops: at the end, on an error, or within one chunk of this generator
    being closed (the client finished reading, cancelled or disconnected).
    """
    loop = asyncio.get_running_loop()
    chunks: asyncio.Queue = asyncio.Queue()
    stop = threading.Event()
    end = object()

    def put(item) -> None:
        try:
            loop.call_soon_threadsafe(chunks.put_nowait, item)
        except RuntimeError:  # the loop is gone
            stop.set()

    def produce() -> None:
        made = _samples(studio, plan)
        try:
            for data in made:
                if stop.is_set():
                    break
                put(data)
        except Exception:  # the status line is sent: the client sees a short answer, the log the cause
            logger.exception("The speech stream stopped early")
        finally:
            made.close()
            hold.release()
            put(end)

    try:
        if fmt == "wav":
            yield wav_stream_header(SAMPLE_RATE, tags)
    except BaseException:
        hold.release()
        raise
    threading.Thread(target=produce, name="speech-stream", daemon=True).start()
    try:
        while True:
            item = await chunks.get()
            if item is end:
                return
            yield item
    finally:
        stop.set()


__all__ = ["speech_router", "SpeechRequest", "Slots", "check_api_key", "wav_stream_header", "FORMATS",
           "output_format"]
