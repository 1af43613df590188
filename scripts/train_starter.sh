#!/usr/bin/env bash
# How the starter synthesizer in saved_models/starter/ is made, end to end, with the
# project's own commands. Each step resumes where it stopped when run again.
#
#   bash scripts/train_starter.sh            # every step on this machine
#   STEP=train bash scripts/train_starter.sh # one step (corpus, preprocess, pack, train, export, evaluate)
#
# The training step is the long one: about 8 minutes on one H100, days on a 2-core CPU.
# To train elsewhere, copy artifacts/starter.npz (the packed data, ~50 MB) and the
# repository to the GPU machine and run the train and export steps there.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-.venv/bin/python}"
WORK="${WORK:-artifacts}"
RUN="${RUN:-runs/starter}"
STEP="${STEP:-all}"
TIME_LIMIT="${TIME_LIMIT:-}"   # seconds; stop training cleanly after this long (resume later)

# A quarter of the published Tacotron's size (7.2 M weights, 14 MB in float16); the
# published mel configuration, so the official WaveRNN can vocode its output.
STARTER_HPARAMS=(tts_embed_dims=256 tts_encoder_dims=128 tts_lstm_dims=512 tts_postnet_dims=128
                 "tts_schedule=((4, 1e-3, 3000, 96), (4, 5e-4, 6000, 96), (4, 2.5e-4, 12000, 96))")

want() { [ "$STEP" = all ] || [ "$STEP" = "$1" ]; }

if want corpus; then
    "$PY" -m deepfake_audio.corpus "$WORK/corpus" --sentences 400 --augment 2 --jobs 2
fi
if want preprocess; then
    "$PY" -m synthesizer.preprocess "generic:$WORK/corpus/train" --out "$WORK/starter_data" --quiet
fi
if want pack; then
    "$PY" -m synthesizer.packed "$WORK/starter_data" "$WORK/starter.npz"
fi
if want train; then
    "$PY" -m synthesizer.train "$WORK/starter.npz" --run-dir "$RUN" --guided-attention 10 \
        --save-every 500 --sample-every 0 --log-every 50 --workers 4 \
        ${TIME_LIMIT:+--time-limit "$TIME_LIMIT"} --hparams "${STARTER_HPARAMS[@]}"
fi
if want export; then
    "$PY" -m deepfake_audio.export "$RUN/synthesizer.pt" saved_models/starter/synthesizer.pt --fp16
fi
if want evaluate; then
    "$PY" -m deepfake_audio.evaluate --corpus "$WORK/corpus" --models saved_models/starter \
        --vocoder griffinlim --out saved_models/starter/evaluation.json
fi
