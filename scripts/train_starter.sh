#!/usr/bin/env bash
# How the starter models in saved_models/starter/ are made, end to end, on a 2-core CPU,
# with the project's own commands. Every step resumes where it stopped when run again.
#
#   bash scripts/train_starter.sh                     # every step (about 6 hours on 2 cores)
#   STEP=train TIME_LIMIT=3600 bash scripts/train_starter.sh   # one step, time-boxed
#   FRESH=1 bash scripts/train_starter.sh             # from scratch: ignore the committed weights
#
# Synthesizer steps: corpus (7 min), pseudo (2 min: 160 pseudo-speakers, the training voices
# moved by sox in pitch, vocal-tract length and tempo to medians of 65-380 Hz), preprocess
# (5 min: mels and embeddings of the corpus), pack (2 min), bank (1 min: embeddings of 320 more
# voices, for the speaker-consistency loss), train (the long one: about 1.1 s per step on 2
# cores, then 2 s per step once the consistency losses start at CONSISTENCY_START; 11,000
# steps in all), export (fp16 weights into saved_models/starter/).
# The synthesizer is pitch-aware (as shipped): preprocess takes the pseudo-speakers too
# (10 min), pack measures each frame's F0 (6 min) and train conditions the model on pitch.
# SYNTH_PITCH=0 makes the earlier plain synthesizer (corpus voices only, no pitch).
# Vocoder steps: vocoder_data (5 min: audio, mels and F0 of the corpus and the pseudo-speakers),
# vocoder_gta (15 min: the trained synthesizer's teacher-forced mels of the same utterances),
# vocoder_train (about 0.2 s per step on one core; 20,000 steps), vocoder_export (fp16 weights)
# and voice_pitch (1 min: a voice's F0 from its embedding, for saved voices).
# Then evaluate (held-out voices and sentences, lower and higher too, written next to the
# weights), evaluate_words (5 min: the voices as recorded on every held-out sentence, word
# errors) and card (the model card, MODEL_CARD.md, from what the other steps recorded).
# The sizes below can be set from the environment (the tests run the whole recipe on a
# tiny corpus with tiny models this way).
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
STARTER="${STARTER:-saved_models/starter}"
SENTENCES="${SENTENCES:-4000}"       # training sentences in the corpus's pool
PER_SPEAKER="${PER_SPEAKER:-150}"    # sentences each corpus speaker reads
AUGMENT="${AUGMENT:-3}"              # pitch/formant/tempo variants of each corpus voice
BANK_VOICES="${BANK_VOICES:-320}"
BANK_OTHER_LANGUAGES="${BANK_OTHER_LANGUAGES:-0}"   # more bank voices from festival's other languages, where installed (piloted: bench/RESULTS.md)
PSEUDO_SPEAKERS="${PSEUDO_SPEAKERS:-160}"
PSEUDO_PER_SPEAKER="${PSEUDO_PER_SPEAKER:-24}"
VOCODER_RUN="${VOCODER_RUN:-runs/starter_vocoder}"
VOCODER_STEPS="${VOCODER_STEPS:-20000}"
EVAL_LIMIT="${EVAL_LIMIT:-}"         # held-out sentences per voice to evaluate (default: all 50)
EVAL_ARGS="${EVAL_ARGS:-}"           # more options of the evaluation (e.g. --no-transforms: the voices as recorded)
WORDS_LIMIT="${WORDS_LIMIT:-}"       # held-out sentences per voice for the word errors as recorded (default: all)
SYNTH_HPARAMS="${SYNTH_HPARAMS:-}"   # extra --hparams of the synthesizer (e.g. a tiny model)
VOCODER_HPARAMS="${VOCODER_HPARAMS:-}"
SYNTH_PITCH="${SYNTH_PITCH:-1}"      # 1: the pitch-aware synthesizer, trained with the pseudo-speakers; 0: plain
[ "$SYNTH_PITCH" = 0 ] && SYNTH_PITCH=""

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
    timed corpus "$PY" -m deepfake_audio.training.corpus "$WORK/corpus" --sentences "$SENTENCES" --augment "$AUGMENT" \
        --per-speaker "$PER_SPEAKER" --jobs 2
fi
if want pseudo; then
    timed pseudo "$PY" -m deepfake_audio.training.pseudo_speakers "$WORK/corpus/train" "$WORK/pseudo" \
        --speakers "$PSEUDO_SPEAKERS" --per-speaker "$PSEUDO_PER_SPEAKER" --quiet
fi
if want preprocess; then
    # with SYNTH_PITCH the pseudo-speakers too: 208 voices from about 65 to 380 Hz
    timed preprocess "$PY" -m deepfake_audio.training.synthesizer_preprocess "generic:$WORK/corpus/train" \
        ${SYNTH_PITCH:+"generic:$WORK/pseudo"} --out "$WORK/starter_data" --quiet
fi
if want pack; then
    timed pack "$PY" -m deepfake_audio.training.packed "$WORK/starter_data" "$WORK/starter.npz" ${SYNTH_PITCH:+--pitch}
fi
if want bank; then
    timed bank "$PY" -m deepfake_audio.training.speaker_bank "$WORK/corpus" "$WORK/speaker_bank.npz" --voices "$BANK_VOICES" \
        --other-languages "$BANK_OTHER_LANGUAGES"
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
        consistency_bank_weight=2.0 ${SYNTH_PITCH:+pitch_conditioning=True} $SYNTH_HPARAMS
fi
if want export; then
    "$PY" -m deepfake_audio.training.export "$RUN/synthesizer.pt" "$STARTER/synthesizer.pt" --fp16
fi
if want vocoder_data; then
    timed vocoder_data "$PY" -m deepfake_audio.training.starter_vocoder_data "$WORK/corpus/train" "$WORK/pseudo" \
        --out "$WORK/vocoder_data" --quiet
fi
if want vocoder_gta; then
    # The synthesizer's own mels of the training utterances (teacher-forced: the aligner's
    # durations and the measured pitch), paired with their audio: the vocoder learns the
    # smoother mels it is given at clone time, beside the recordings' true mels.
    timed vocoder_gta_mels "$PY" -m deepfake_audio.training.vocoder_preprocess "$WORK/starter_data" \
        --synthesizer "$RUN/synthesizer.pt" --out "$WORK/vocoder_gta_mels" --device cpu --batch-size 32 --quiet
    timed vocoder_gta "$PY" -m deepfake_audio.training.starter_vocoder_data "$WORK/vocoder_gta_mels" \
        --out "$WORK/vocoder_gta" --quiet
fi
if want vocoder_train; then
    mkdir -p "$VOCODER_RUN"
    if [ ! -f "$VOCODER_RUN/vocoder.pt" ] && [ -f "$STARTER/starter_vocoder.pt" ] && [ -z "${FRESH:-}" ]; then
        cp "$STARTER/starter_vocoder.pt" "$VOCODER_RUN/vocoder.pt"   # continue the committed weights at their step
    fi
    # One core: the vocoder's small convolutions gain little from a second thread.
    GTA=()
    [ -f "$WORK/vocoder_gta/index.json" ] && GTA=(--also "$WORK/vocoder_gta")
    OMP_NUM_THREADS=1 "$PY" -m deepfake_audio.training.starter_vocoder_train "$WORK/vocoder_data" "${GTA[@]}" \
        --run-dir "$VOCODER_RUN" --steps "$VOCODER_STEPS" --save-every 500 --log-every 100 --quiet \
        ${TIME_LIMIT:+--time-limit "$TIME_LIMIT"} \
        --hparams "total_steps=$VOCODER_STEPS" "teacher_f0_until=$VOCODER_STEPS" $VOCODER_HPARAMS
fi
if want vocoder_export; then
    "$PY" -m deepfake_audio.training.export "$VOCODER_RUN/vocoder.pt" "$STARTER/starter_vocoder.pt" --fp16
fi
if want voice_pitch; then
    timed voice_pitch "$PY" -m deepfake_audio.training.voice_pitch "$WORK/vocoder_data" "$STARTER/voice_pitch.pt"
fi
if want evaluate; then
    timed evaluate "$PY" -m deepfake_audio.training.evaluate --corpus "$WORK/corpus" --models "$STARTER" \
        --vocoder starter --compare griffinlim ${EVAL_LIMIT:+--limit "$EVAL_LIMIT"} $EVAL_ARGS --out "$STARTER/evaluation.json"
fi
if want evaluate_words; then
    # the held-out voices as recorded on every held-out sentence (or WORDS_LIMIT): word errors, with the
    # slow measures off; the card's table above keeps EVAL_LIMIT sentences of all six versions
    timed evaluate_words "$PY" -m deepfake_audio.training.evaluate --corpus "$WORK/corpus" --models "$STARTER" \
        --vocoder starter --no-transforms --fast ${WORDS_LIMIT:+--limit "$WORDS_LIMIT"} \
        --out "$STARTER/evaluation_as_recorded.json"
fi
if want card; then
    "$PY" -m deepfake_audio.training.model_card --corpus "$WORK/corpus" --run "$RUN" --models "$STARTER" \
        --recipe-times "$TIMES" ${CARD_NOTE:+--note "$CARD_NOTE"} --vocoder-run "$VOCODER_RUN" \
        --vocoder-data "$WORK/vocoder_data" --pseudo "$WORK/pseudo"
fi
