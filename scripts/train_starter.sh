#!/usr/bin/env bash
# How the starter synthesizer in saved_models/starter/ is made, end to end, on a 2-core CPU,
# with the project's own commands. Every step resumes where it stopped when run again.
#
#   bash scripts/train_starter.sh                     # every step (about 4.5 hours on 2 cores)
#   STEP=train TIME_LIMIT=3600 bash scripts/train_starter.sh   # one step, time-boxed
#   FRESH=1 bash scripts/train_starter.sh             # from scratch: ignore the committed weights
#
# Steps: corpus (7 min), preprocess (5 min), pack (2 min), bank (1 min: embeddings of 320
# more voices, for the speaker-consistency loss), train (the long one: about 1.1 s per
# step, then 2 s per step once the consistency losses start at CONSISTENCY_START; 11,000
# steps in all), export (fp16 weights into saved_models/starter/) and evaluate (held-out
# voices and sentences, written next to the weights) and card (the model card,
# MODEL_CARD.md, from what the other steps recorded).
#
# Training resumes from its own checkpoint in $RUN. Where there is none (a fresh
# checkout), it continues from the fp16 weights committed in saved_models/starter/ at
# their step, with a fresh optimizer: that is how a training that spans several sessions
# continues. FRESH=1 starts from random weights instead.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-.venv/bin/python}"
WORK="${WORK:-artifacts}"
RUN="${RUN:-runs/starter}"
STEP="${STEP:-all}"
TIME_LIMIT="${TIME_LIMIT:-}"   # seconds; stop training cleanly after this long (run again to resume)
STEPS="${STEPS:-11000}"
# From this step on, the frozen speaker encoder also judges the output (the batch's voices and
# the bank's): without it the clones of unseen voices sounded alike (55 % told apart).
CONSISTENCY_START="${CONSISTENCY_START:-9000}"
STARTER=saved_models/starter

want() { [ "$STEP" = all ] || [ "$STEP" = "$1" ]; }
# Wall time of each finished step, for the model card ({step: seconds}; training keeps its own).
TIMES="$WORK/recipe_times.json"
timed() {
    local step=$1 start=$SECONDS
    shift
    "$@"
    "$PY" - "$TIMES" "$step" $((SECONDS - start)) <<'PYEOF'
import json, sys, pathlib
path, step, seconds = pathlib.Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
times = json.loads(path.read_text()) if path.is_file() else {}
times[step] = seconds
path.write_text(json.dumps(times, indent=1))
PYEOF
}

if want corpus; then
    # 12 voices x 4 (3 pitch/formant/tempo variants), 150 of 4,000 sentences each: 6.3 h, 48 speakers
    mkdir -p "$WORK"
    timed corpus "$PY" -m deepfake_audio.training.corpus "$WORK/corpus" --sentences 4000 --augment 3 --per-speaker 150 \
        --jobs 2
fi
if want preprocess; then
    timed preprocess "$PY" -m deepfake_audio.training.synthesizer_preprocess "generic:$WORK/corpus/train" \
        --out "$WORK/starter_data" --quiet
fi
if want pack; then
    timed pack "$PY" -m deepfake_audio.training.packed "$WORK/starter_data" "$WORK/starter.npz"
fi
if want bank; then
    timed bank "$PY" -m deepfake_audio.training.speaker_bank "$WORK/corpus" "$WORK/speaker_bank.npz" --voices 320
fi
if want train; then
    mkdir -p "$RUN"
    if [ ! -f "$RUN/synthesizer.pt" ] && [ -f "$STARTER/synthesizer.pt" ] && [ -z "${FRESH:-}" ]; then
        cp "$STARTER/synthesizer.pt" "$RUN/synthesizer.pt"   # continue the committed weights at their step
    fi
    "$PY" -m deepfake_audio.training.fastspeech_train "$WORK/starter.npz" --run-dir "$RUN" --steps "$STEPS" \
        --save-every 250 --sample-every 1000 --log-every 50 --workers 0 --quiet \
        --speaker-bank "$WORK/speaker_bank.npz" ${TIME_LIMIT:+--time-limit "$TIME_LIMIT"} \
        --hparams "total_steps=$STEPS" "consistency_start=$CONSISTENCY_START" consistency_loss_weight=1.0 \
        consistency_bank_weight=2.0
fi
if want export; then
    "$PY" -m deepfake_audio.training.export "$RUN/synthesizer.pt" "$STARTER/synthesizer.pt" --fp16
fi
if want evaluate; then
    timed evaluate "$PY" -m deepfake_audio.training.evaluate --corpus "$WORK/corpus" --models "$STARTER" \
        --vocoder griffinlim --out "$STARTER/evaluation.json"
fi
if want card; then
    "$PY" -m deepfake_audio.training.model_card --corpus "$WORK/corpus" --run "$RUN" --models "$STARTER" \
        --recipe-times "$TIMES" ${CARD_NOTE:+--note "$CARD_NOTE"}
fi
