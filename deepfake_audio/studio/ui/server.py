"""The web server's app: FastAPI serving the PWA shell and the /v1 speech API, with the studio mounted.

The PWA routes (web manifest, service worker, offline page, icons) are declared before
Gradio is mounted, so they answer instead of Gradio's own. Requests pass the API-key
guard first, then the body and upload limits.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import gradio as gr
from fastapi import FastAPI
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles

from deepfake_audio.http_api import speech_router
from deepfake_audio.studio.access import ApiKeyGuard
from deepfake_audio.studio.limits import RequestLimits
from deepfake_audio.studio.service import Studio
from deepfake_audio.studio.ui.blocks import build_ui
from deepfake_audio.studio.ui.page import CSS, HEAD, TITLE

STATIC = Path(__file__).resolve().parents[3] / "static"
DEFAULT_QUEUE_SIZE = 20


def shell_version() -> str:
    """Short hash of the PWA shell files and the Gradio release: the service worker's cache version."""
    digest = hashlib.sha256(gr.__version__.encode())
    for path in sorted(p for p in STATIC.rglob("*") if p.is_file() and p.suffix != ".py"):
        digest.update(path.relative_to(STATIC).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def default_concurrency(studio: Studio) -> int:
    """Clones at once: $DEEPFAKE_AUDIO_CONCURRENCY, else 1 on CPU (one clone already uses every core), 2 on a GPU."""
    if os.environ.get("DEEPFAKE_AUDIO_CONCURRENCY"):
        return max(1, int(os.environ["DEEPFAKE_AUDIO_CONCURRENCY"]))
    return 2 if studio.pipeline.device.type == "cuda" else 1


def add_pwa_routes(app: FastAPI) -> None:
    """The web manifest, the service worker (with its cache version), the offline page and the icons."""
    no_cache = {"Cache-Control": "no-cache"}
    worker = (STATIC / "sw.js").read_text(encoding="utf-8").replace("__SHELL_VERSION__", shell_version())

    @app.get("/manifest.json", include_in_schema=False)
    def manifest():
        return FileResponse(STATIC / "manifest.json", media_type="application/manifest+json", headers=no_cache)

    @app.get("/sw.js", include_in_schema=False)
    def service_worker():
        return Response(worker, media_type="text/javascript", headers={**no_cache, "Service-Worker-Allowed": "/"})

    @app.get("/offline.html", include_in_schema=False)
    def offline_page():
        return FileResponse(STATIC / "offline.html", media_type="text/html", headers=no_cache)

    app.mount("/pwa/icons", StaticFiles(directory=STATIC / "icons"), name="pwa-icons")


def create_app(studio: Studio, *, clone_concurrency: int | None = None, queue_size: int = DEFAULT_QUEUE_SIZE) -> FastAPI:
    """FastAPI app serving the PWA files, with the studio's Gradio UI mounted at the root."""
    if clone_concurrency is None:
        clone_concurrency = default_concurrency(studio)
    app = FastAPI(title=TITLE, docs_url=None, redoc_url=None, openapi_url=None)
    add_pwa_routes(app)  # declared before Gradio is mounted, so these answer instead of Gradio's own routes
    # Outermost last: the key is checked first, then body sizes and upload quotas.
    app.add_middleware(RequestLimits)
    # With $DEEPFAKE_AUDIO_API_KEY set, nothing but the PWA shell answers without the key.
    app.add_middleware(ApiKeyGuard)
    # OpenAI-compatible speech API (deepfake_audio.http_api), beside the studio's own Gradio API.
    speech = speech_router(studio, clone_concurrency)
    app.include_router(speech)
    app.state.speech_slots = speech.slots

    # A training job the last server left running resumes, and the queue goes on (studio.tuning_jobs).
    studio.training.jobs.resume()
    demo = build_ui(studio, clone_concurrency)
    demo.queue(max_size=queue_size, default_concurrency_limit=max(2, clone_concurrency))
    app.state.blocks = demo
    return gr.mount_gradio_app(
        app, demo, path="/", theme=gr.themes.Soft(primary_hue="teal", neutral_hue="slate"), css=CSS, head=HEAD,
        favicon_path=str(STATIC / "icons" / "favicon.png"),
        allowed_paths=[str(studio.output_dir)],
        max_file_size="50mb", footer_links=["api", "settings"], run_history=False, ssr_mode=False,
        pwa=False, show_error=True, mcp_server=False)
