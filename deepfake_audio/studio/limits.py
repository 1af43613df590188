"""What one HTTP request, and one client, may send the studio: body sizes and upload quotas.

An ASGI middleware in front of everything (the Gradio app and /v1):

- **Body size.** An upload (`POST /gradio_api/upload`) may carry `MAX_UPLOAD_BODY` bytes
  (the studio's 50 MB file limit plus the form's framing); any other request
  `MAX_BODY`. A declared length over the cap gets 413 before a byte is read; a body
  without a declared length is read up to the cap and refused past it.
- **Uploads per client.** A client (its address; behind a proxy that says so, the
  address the proxy saw) may have `MAX_UPLOADS_IN_FLIGHT` bytes of uploads arriving at
  once and `MAX_UPLOADED_PER_WINDOW` bytes uploaded within `UPLOAD_WINDOW_SECONDS`: the
  studio keeps uploads for about that long (`ui.blocks.UPLOAD_CACHE`), so this caps what one
  client can keep stored. Past either: 429 with `Retry-After`.

Errors are JSON in OpenAI's shape, as the rest of the studio's HTTP answers.
"""
from __future__ import annotations

import json
import os
import threading
import time
from collections import deque
from typing import Awaitable, Callable

MB = 1024 * 1024
MAX_UPLOAD_BODY = 52 * MB  # a 50 MB file and its multipart framing
MAX_BODY = 4 * MB  # everything else: JSON of the Gradio API and /v1 (a 5,000-character text is ~20 kB)
MAX_UPLOADS_IN_FLIGHT = 100 * MB
MAX_UPLOADED_PER_WINDOW = 300 * MB
UPLOAD_WINDOW_SECONDS = 3600.0
UPLOAD_PATHS = ("/gradio_api/upload", "/upload")
TRUST_PROXY_VARIABLE = "DEEPFAKE_AUDIO_TRUST_PROXY"

Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]


class TooLarge(Exception):
    pass


def error_body(message: str, kind: str, code: str) -> bytes:
    return json.dumps({"error": {"message": message, "type": kind, "param": None, "code": code}}).encode()


def trust_proxy() -> bool:
    """Whether X-Forwarded-For says who the client is: $DEEPFAKE_AUDIO_TRUST_PROXY, else on in a Space."""
    value = os.environ.get(TRUST_PROXY_VARIABLE)
    if value is None:
        return bool(os.environ.get("SPACE_ID"))
    return value.strip().lower() in ("1", "true", "yes", "on")


def client_of(scope: dict) -> str:
    """Who a request comes from, for the quotas."""
    if trust_proxy():
        for name, value in scope.get("headers", []):
            if name == b"x-forwarded-for":
                # the last entry is the one the (trusted) proxy added: what the client put before it is unchecked
                hops = [h.strip() for h in value.decode("latin-1").split(",") if h.strip()]
                if hops:
                    return hops[-1]
    client = scope.get("client")
    return client[0] if client else "unknown"


class UploadQuota:
    """Bytes in flight and bytes uploaded in the last window, per client (thread-safe)."""

    def __init__(self, in_flight: int = MAX_UPLOADS_IN_FLIGHT, per_window: int = MAX_UPLOADED_PER_WINDOW,
                 window: float = UPLOAD_WINDOW_SECONDS, clock: Callable[[], float] = time.monotonic):
        self.max_in_flight, self.max_per_window, self.window, self.clock = in_flight, per_window, window, clock
        self._lock = threading.Lock()
        self._in_flight: dict[str, int] = {}
        self._done: dict[str, deque[tuple[float, int]]] = {}

    def _stored(self, client: str, now: float) -> int:
        done = self._done.get(client)
        while done and done[0][0] < now - self.window:
            done.popleft()
        if done is not None and not done:
            del self._done[client]
            return 0
        return sum(n for _, n in done) if done else 0

    def refusal(self, client: str, declared: int) -> tuple[str, int] | None:
        """(message, seconds to wait) if `client` may not start an upload of `declared` bytes now."""
        with self._lock:
            now = self.clock()
            if self._in_flight.get(client, 0) + declared > self.max_in_flight:
                return (f"Too many uploads at once from this client (at most {self.max_in_flight // MB} MB "
                        "arriving at a time). Wait for the others to finish.", 5)
            stored = self._stored(client, now)
            if stored + declared > self.max_per_window:
                oldest = self._done[client][0][0]
                wait = max(1, int(oldest + self.window - now) + 1)
                return (f"Upload quota reached: at most {self.max_per_window // MB} MB per client within "
                        f"{self.window / 60:g} minutes (uploads are kept about that long).", wait)
            return None

    def start(self, client: str, n: int) -> None:
        with self._lock:
            self._in_flight[client] = self._in_flight.get(client, 0) + n

    def finish(self, client: str, n: int, stored: bool) -> None:
        with self._lock:
            left = self._in_flight.get(client, 0) - n
            if left > 0:
                self._in_flight[client] = left
            else:
                self._in_flight.pop(client, None)
            if stored and n:
                self._done.setdefault(client, deque()).append((self.clock(), n))


class RequestLimits:
    """ASGI middleware applying the body caps and the upload quota (see the module's docstring)."""

    def __init__(self, app, quota: UploadQuota | None = None, max_body: int = MAX_BODY,
                 max_upload_body: int = MAX_UPLOAD_BODY):
        self.app, self.quota = app, quota or UploadQuota()
        self.max_body, self.max_upload_body = max_body, max_upload_body

    async def __call__(self, scope: dict, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "/")
        upload = scope.get("method") == "POST" and path.rstrip("/").endswith(UPLOAD_PATHS)
        cap = self.max_upload_body if upload else self.max_body
        declared = None
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    return await _answer(send, 400, error_body("Bad Content-Length header.", "invalid_request_error",
                                                               "bad_request"))
        if declared is not None and declared > cap:
            return await _too_large(send, cap)
        if not upload:
            if declared is None and scope.get("method") in ("POST", "PUT", "PATCH"):
                receive = await _buffered(receive, send, cap)
                if receive is None:
                    return
            return await self.app(scope, receive, send)
        client = client_of(scope)
        size = declared
        if size is None:  # a chunked upload: read it (up to the cap) to know what it costs
            receive = await _buffered(receive, send, cap)
            if receive is None:
                return
            size = receive.size
        refusal = self.quota.refusal(client, size)
        if refusal is not None:
            message, wait = refusal
            return await _answer(send, 429, error_body(message, "rate_limit_error", "upload_quota"),
                                 [(b"retry-after", str(wait).encode())])
        self.quota.start(client, size)
        status = {"code": 0}

        async def watch(message: dict) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)
        try:
            await self.app(scope, receive, watch)
        finally:
            self.quota.finish(client, size, stored=200 <= status["code"] < 300)


async def _buffered(receive: Receive, send: Send, cap: int):
    """The whole body read into memory (at most `cap` bytes) and replayed; None after answering 413."""
    parts, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            parts = None
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > cap:
            await _too_large(send, cap)
            return None
        parts.append(chunk)
        if not message.get("more_body"):
            break
    body = b"".join(parts) if parts is not None else b""
    sent = {"done": False}

    async def replay() -> dict:
        if not sent["done"]:
            sent["done"] = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()
    replay.size = len(body)
    return replay


async def _too_large(send: Send, cap: int) -> None:
    await _answer(send, 413, error_body(f"The request is too large: at most {cap // MB} MB.", "invalid_request_error",
                                        "request_too_large"))


async def _answer(send: Send, status: int, body: bytes, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")] + (extra or [])})
    await send({"type": "http.response.body", "body": body})
