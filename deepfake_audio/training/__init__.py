"""Training: data, preprocessing, the fit loop and the train commands of all three stages.

This package sits on top of the stages (`encoder`, `synthesizer`, `vocoder`) and the
pipeline; nothing below imports it.

* Data: corpus readers (`datasets`), the starter corpus builder (`corpus`), one-file
  synthesizer packs (`packed`).
* Preprocessing (`preprocessing`, `*_preprocess`): resumable and parallel; outputs are
  written atomically, one file per utterance, and a journal remembers what is done.
* Training (`*_train`): one entry point (`commands.train_command`) and one fit loop
  (`loop.fit`) serve every stage; checkpoints in the published layout (`checkpoints`),
  DDP under torchrun (`distributed`), batches that are a pure function of
  (seed, step, rank) so a resumed run repeats them exactly (`sampling`), TensorBoard
  logs (`run_logger`).
* After training: fine-tuning (`finetune`), weights-only fp16 export (`export`) and the
  held-out evaluation (`evaluate`).
"""
from deepfake_audio_core.errors import DeepfakeAudioError


class TrainingError(DeepfakeAudioError):
    """A training or preprocessing run cannot go on: bad options, data or checkpoint."""
