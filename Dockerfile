# Deepfake Audio studio in a container (CPU).
#
#   docker build -t deepfake-audio .                          # add --build-arg FETCH_WEIGHTS=1 to bake in the weights
#   docker run -p 7860:7860 -v deepfake-audio-data:/data deepfake-audio
#
# Saved voices live in /data (a volume). Weights: the official encoder is bundled; mount
# a folder with synthesizer.pt and vocoder.pt at /app/saved_models/default, or build with
# FETCH_WEIGHTS=1. Without them the studio runs on the shipped starter models and says
# which command fetches the official ones.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    GRADIO_SERVER_NAME=0.0.0.0 \
    GRADIO_SERVER_PORT=7860 \
    GRADIO_ANALYTICS_ENABLED=False \
    HF_HUB_DISABLE_TELEMETRY=1 \
    DEEPFAKE_AUDIO_DATA=/data \
    NUMBA_CACHE_DIR=/home/studio/.cache/numba

# ffmpeg encodes the studio's live playback stream.
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends ffmpeg && rm -rf /var/lib/apt/lists/*

# uid 1000 is the user Hugging Face Docker Spaces run as.
RUN useradd --create-home --uid 1000 studio
WORKDIR /app

# Dependencies first, so that code changes do not reinstall them. The CPU index keeps
# torch's CUDA libraries (several GB) out of the image; torch==2.13.0 matches 2.13.0+cpu.
# resemblyzer only carries the official encoder weights: installed without its
# dependencies, which would replace webrtcvad-wheels with the source-only webrtcvad.
COPY requirements.txt ./
RUN pip install --extra-index-url https://download.pytorch.org/whl/cpu -r requirements.txt \
 && pip install --no-deps resemblyzer==0.1.4

COPY --chown=studio:studio . .
RUN mkdir -p /data saved_models/default && chown studio:studio /data saved_models/default
# The fast vocoder's C loop (vocoder/native): built with a compiler that is removed again.
# It dispatches on the CPU at run time, so the image runs on any x86-64 host.
ENV DEEPFAKE_AUDIO_CACHE=/app/.native
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends gcc libc6-dev \
 && python -m vocoder.native && chown -R studio:studio /app/.native \
 && apt-get purge -y -qq gcc libc6-dev && apt-get autoremove -y -qq && rm -rf /var/lib/apt/lists/*
USER studio

ARG FETCH_WEIGHTS=0
RUN if [ "$FETCH_WEIGHTS" = "1" ]; then python -m deepfake_audio download; fi
# Compile UMAP's numba code now (into NUMBA_CACHE_DIR) rather than on the first voice map.
RUN python -c "import numpy as np; from deepfake_audio.studio.voice_map import project_2d; \
project_2d(np.abs(np.random.default_rng(0).standard_normal((6, 256))))"

VOLUME /data
EXPOSE 7860
HEALTHCHECK --interval=30s --timeout=5s --start-period=180s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/manifest.json' % os.environ.get('GRADIO_SERVER_PORT', '7860'), timeout=4)"
CMD ["python", "app.py"]
