"""Deepfake Audio studio: the web app (Gradio 6 on FastAPI, installable as a PWA).

    python app.py [--host H] [--port P] [--models DIR] [--data DIR]

This file only reads the settings (flags and environment), loads the models once and
starts the server. The page is `deepfake_audio.studio.ui` (one module per tab, the
handlers that are the Gradio API, the FastAPI app with the PWA shell); the work is done
by `deepfake_audio.studio.Studio`, which chains encoder, synthesizer and vocoder per
request.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

# Before Gradio and huggingface_hub are imported: nothing in the studio phones home.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from deepfake_audio_core.errors import DeepfakeAudioError  # noqa: E402
from deepfake_audio_core.modes import MODES  # noqa: E402
from deepfake_audio.studio import Studio, fetch_missing_weights  # noqa: E402
from deepfake_audio.studio.ui import create_app  # noqa: E402
from deepfake_audio.studio.ui.page import TITLE  # noqa: E402
from deepfake_audio.studio.ui.server import DEFAULT_QUEUE_SIZE  # noqa: E402

logger = logging.getLogger("deepfake_audio.app")

DEFAULT_PORT = 7860

__all__ = ["create_app", "server_address", "build_parser", "main"]


def in_container() -> bool:
    """True in a Hugging Face Space or a Docker container, where the server must listen on every interface."""
    return bool(os.environ.get("SPACE_ID")) or Path("/.dockerenv").exists()


def server_address(host: str | None, port: int | None) -> tuple[str, int]:
    """--host/--port, else $GRADIO_SERVER_NAME/$GRADIO_SERVER_PORT, else $HOST/$PORT, else a default."""
    host = host or os.environ.get("GRADIO_SERVER_NAME") or os.environ.get("HOST") \
        or ("0.0.0.0" if in_container() else "127.0.0.1")
    if port is None:
        raw = os.environ.get("GRADIO_SERVER_PORT") or os.environ.get("PORT") or DEFAULT_PORT
        try:
            port = int(raw)
        except ValueError:
            raise SystemExit(f"error: the port must be a number, got {raw!r}") from None
    return host, port


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=f"{TITLE}: voice cloning in the browser.")
    parser.add_argument("--host", default=None,
                        help="interface to listen on (default: $GRADIO_SERVER_NAME or $HOST, else 127.0.0.1; "
                             "0.0.0.0 in Docker and on Spaces)")
    parser.add_argument("--port", type=int, default=None,
                        help=f"port (default: $GRADIO_SERVER_PORT or $PORT, else {DEFAULT_PORT})")
    parser.add_argument("--models", type=Path, default=None, metavar="DIR",
                        help="folder with synthesizer.pt and vocoder.pt (and optionally encoder.pt); "
                             "default: $DEEPFAKE_AUDIO_MODELS or saved_models/default")
    parser.add_argument("--data", type=Path, default=None, metavar="DIR",
                        help="where saved voices live (default: $DEEPFAKE_AUDIO_DATA, /data/deepfake-audio "
                             "on a Space with storage, else ./studio_data)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None, help="default: cuda when available")
    parser.add_argument("--mode", choices=MODES, default=os.environ.get("DEEPFAKE_AUDIO_MODE", "fast"),
                        help="inference mode of every request: fast (default: int8 weights, the fastest that "
                             "sounds like the reference), int8, fp16 (the default before 2026-12), or parity "
                             "(the reference's exact numbers, slow); or $DEEPFAKE_AUDIO_MODE")
    parser.add_argument("--private-libraries", action=argparse.BooleanOptionalAction, default=None,
                        help="give every visitor their own saved voices and results (default: on in a Hugging "
                             "Face Space, off for a local single-user install; or "
                             "$DEEPFAKE_AUDIO_PRIVATE_LIBRARIES=1)")
    parser.add_argument("--fetch-weights", action=argparse.BooleanOptionalAction,
                        default=_env_flag("DEEPFAKE_AUDIO_FETCH_WEIGHTS", default=bool(os.environ.get("SPACE_ID"))),
                        help="download missing official checkpoints before starting (default: on in a "
                             "Hugging Face Space, else off; or $DEEPFAKE_AUDIO_FETCH_WEIGHTS=1)")
    parser.add_argument("--queue-size", type=int, default=int(os.environ.get("DEEPFAKE_AUDIO_QUEUE_SIZE",
                                                                             DEFAULT_QUEUE_SIZE)),
                        help=f"requests that may wait in the queue (default {DEFAULT_QUEUE_SIZE})")
    return parser


def _env_flag(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    return default if value is None else value.strip().lower() in ("1", "true", "yes", "on")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    host, port = server_address(args.host, args.port)
    if args.fetch_weights:
        try:
            fetched = fetch_missing_weights(args.models)
            logger.info("fetched %s", ", ".join(fetched) if fetched else "nothing: every checkpoint is present")
        except DeepfakeAudioError as exc:  # start anyway: the page says what is missing
            logger.warning("could not fetch the weights: %s", exc)
    try:
        studio = Studio(args.models, args.data, device=args.device, warm_up=True, private=args.private_libraries,
                        mode=args.mode)
    except DeepfakeAudioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for stage, where in studio.describe_weights().items():
        logger.info("%s: %s", stage, where)
    logger.info("saved voices in %s (%s)", studio.data_dir,
                "private: one library per visitor" if studio.private else "one library for everyone")
    app = create_app(studio, queue_size=args.queue_size)
    import uvicorn
    logger.info("studio at http://%s:%d/", "localhost" if host in ("0.0.0.0", "::") else host, port)
    uvicorn.run(app, host=host, port=port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
