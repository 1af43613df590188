"""The studio's API key, applied to everything it serves (page, Gradio API, uploads, files, /v1).

With `DEEPFAKE_AUDIO_API_KEY` set, a request is let through when it carries the key:

- `Authorization: Bearer <key>` or `X-API-Key: <key>` (scripts: gradio_client takes
  `headers={"Authorization": "Bearer <key>"}`, the /v1 API the same header as OpenAI's);
- or the session cookie that the studio's sign-in page (`/login`) sets once the key was
  typed there: an HMAC of the key, so the key itself is not stored in the browser, and
  changing the key signs every browser out.

Only the PWA shell stays public (manifest, service worker, icons, offline page) with the
sign-in page itself. A page visit without the key is sent to the sign-in page; any other
request gets 401 in OpenAI's error shape. Without a key set, everything is open as before.
"""
from __future__ import annotations

import hashlib
import hmac
import html
import json
import os
from typing import Awaitable, Callable
from urllib.parse import parse_qs, quote, urlsplit

API_KEY_VARIABLE = "DEEPFAKE_AUDIO_API_KEY"
SESSION_COOKIE = "deepfake_audio_session"
SESSION_DAYS = 30
LOGIN_PATH = "/login"
LOGOUT_PATH = "/logout"
PUBLIC_PATHS = frozenset({"/manifest.json", "/sw.js", "/offline.html", LOGIN_PATH, LOGOUT_PATH})
PUBLIC_PREFIXES = ("/pwa/icons/",)
MAX_LOGIN_BODY = 4096  # bytes of the sign-in form

Scope = dict
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]


def configured_key() -> str | None:
    """The key in $DEEPFAKE_AUDIO_API_KEY (read per request, so a change needs no restart), or None."""
    return os.environ.get(API_KEY_VARIABLE) or None


def session_value(key: str) -> str:
    """The cookie value that stands for `key`."""
    return hmac.new(key.encode(), b"deepfake-audio studio session", hashlib.sha256).hexdigest()


def is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


def _cookies(header: str) -> dict[str, str]:
    out = {}
    for part in header.split(";"):
        name, _, value = part.strip().partition("=")
        if name:
            out[name] = value
    return out


def presented_key_ok(headers: dict[str, str], key: str) -> bool:
    """Whether the request's headers carry `key` (Bearer, X-API-Key) or its session cookie."""
    scheme, _, given = headers.get("authorization", "").partition(" ")
    candidates = []
    if scheme.lower() == "bearer" and given.strip():
        candidates.append((given.strip(), key))
    if headers.get("x-api-key", "").strip():
        candidates.append((headers["x-api-key"].strip(), key))
    cookie = _cookies(headers.get("cookie", "")).get(SESSION_COOKIE)
    if cookie:
        candidates.append((cookie, session_value(key)))
    # every candidate is compared (constant time each), so timing says nothing about which one failed
    results = [hmac.compare_digest(given.encode(), expected.encode()) for given, expected in candidates]
    return any(results)


def _safe_next(target: str | None) -> str:
    """A same-site path to return to after signing in (never another site)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    parts = urlsplit(target)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def login_page(next_path: str, failed: bool) -> str:
    message = '<p class="error" role="alert">That key is not right. Try again.</p>' if failed else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in - Deepfake Audio</title><link rel="icon" href="/pwa/icons/favicon.png">
<link rel="manifest" href="/manifest.json"><meta name="theme-color" content="#0f766e">
<style>
body {{ font-family: system-ui, sans-serif; background: #f8fafc; color: #0f172a; display: grid;
       place-items: center; min-height: 100vh; margin: 0; }}
form {{ background: #fff; padding: 2rem; border-radius: 12px; box-shadow: 0 2px 12px #0002; max-width: 22rem;
       width: calc(100% - 4rem); }}
h1 {{ font-size: 1.3rem; margin-top: 0; }} label {{ display: block; margin: 1rem 0 .3rem; }}
input {{ width: 100%; box-sizing: border-box; padding: .6rem; font-size: 1rem; border: 1px solid #94a3b8;
        border-radius: 6px; }}
button {{ margin-top: 1rem; width: 100%; padding: .7rem; font-size: 1rem; background: #0f766e; color: #fff;
         border: 0; border-radius: 6px; cursor: pointer; }}
.error {{ color: #b91c1c; }}
</style></head>
<body><form method="post" action="{LOGIN_PATH}">
<h1>Deepfake Audio studio</h1>
<p>This studio is protected by an API key. Type it once: this browser remembers it for {SESSION_DAYS} days.</p>
{message}
<label for="key">API key</label>
<input id="key" name="key" type="password" autocomplete="current-password" required autofocus>
<input type="hidden" name="next" value="{html.escape(next_path, quote=True)}">
<button type="submit">Sign in</button>
</form></body></html>"""


def unauthorized_body(message: str, code: str) -> bytes:
    return json.dumps({"error": {"message": message, "type": "authentication_error", "param": None,
                                 "code": code}}).encode()


class ApiKeyGuard:
    """ASGI middleware: with a key configured, only the PWA shell and the sign-in page answer without it."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        key = configured_key()
        path = scope.get("path", "/")
        root = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root):] or "/"
        if key is None:
            if scope["type"] == "http" and path in (LOGIN_PATH, LOGOUT_PATH):
                return await _redirect(send, "/")
            return await self.app(scope, receive, send)
        if scope["type"] == "http" and path == LOGIN_PATH:
            return await self._login(scope, receive, send, key)
        if scope["type"] == "http" and path == LOGOUT_PATH:
            return await _redirect(send, LOGIN_PATH, cookie=f"{SESSION_COOKIE}=; Path=/; Max-Age=0; HttpOnly; "
                                                             "SameSite=Lax")
        headers = _headers(scope)
        if is_public(path) or presented_key_ok(headers, key):
            return await self.app(scope, receive, send)
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        if scope.get("method") == "GET" and "text/html" in headers.get("accept", ""):
            query = scope.get("query_string", b"").decode("latin-1")
            target = path + (f"?{query}" if query else "")
            return await _redirect(send, f"{LOGIN_PATH}?next={quote(target, safe='')}")
        given = headers.get("authorization") or headers.get("x-api-key") or ""
        message, code = (("Incorrect API key.", "invalid_api_key") if given else
                         ("Missing API key: send `Authorization: Bearer <key>` (or sign in at /login).",
                          "missing_api_key"))
        await _respond(send, 401, unauthorized_body(message, code), "application/json",
                       [(b"www-authenticate", b'Bearer realm="deepfake-audio"')])

    async def _login(self, scope: Scope, receive: Receive, send: Send, key: str) -> None:
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        if scope.get("method") != "POST":
            page = login_page(_safe_next((query.get("next") or ["/"])[0]), failed=False)
            return await _respond(send, 200, page.encode(), "text/html; charset=utf-8")
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if len(body) > MAX_LOGIN_BODY:
                return await _respond(send, 413, b"sign-in form too large", "text/plain")
            if not message.get("more_body"):
                break
        form = parse_qs(body.decode("utf-8", "replace"))
        given = (form.get("key") or [""])[0].strip()
        target = _safe_next((form.get("next") or ["/"])[0])
        if not given or not hmac.compare_digest(given.encode(), key.encode()):
            return await _respond(send, 401, login_page(target, failed=True).encode(), "text/html; charset=utf-8")
        headers = _headers(scope)
        secure = scope.get("scheme") == "https" or headers.get("x-forwarded-proto", "") == "https"
        cookie = (f"{SESSION_COOKIE}={session_value(key)}; Path=/; Max-Age={SESSION_DAYS * 86400}; HttpOnly; "
                  f"SameSite=Lax" + ("; Secure" if secure else ""))
        await _redirect(send, target, cookie=cookie)


async def _respond(send: Send, status: int, body: bytes, content_type: str,
                   extra: list[tuple[bytes, bytes]] | None = None) -> None:
    headers = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode()),
               (b"cache-control", b"no-store")] + (extra or [])
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _redirect(send: Send, location: str, cookie: str | None = None) -> None:
    extra = [(b"location", location.encode("latin-1"))]
    if cookie:
        extra.append((b"set-cookie", cookie.encode("latin-1")))
    await _respond(send, 303, b"", "text/plain", extra)
