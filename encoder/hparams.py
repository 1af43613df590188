"""Speaker encoder hyperparameters (those of the published SV2TTS encoder)."""

# Mel-filterbank
mel_window_length = 25  # ms
mel_window_step = 10  # ms
mel_n_channels = 40

# Audio
sampling_rate = 16000  # Hz
partials_n_frames = 160  # 1600 ms per partial utterance
inference_n_frames = 80  # 800 ms (unused by the reference at inference)

# Voice activity detection
vad_window_length = 30  # ms; webrtcvad accepts 10, 20 or 30
vad_moving_average_width = 8  # windows
vad_max_silence_length = 6  # windows of silence kept inside speech

audio_norm_target_dBFS = -30

# Model
model_hidden_size = 256
model_embedding_size = 256
model_num_layers = 3

# Training
learning_rate_init = 1e-4
speakers_per_batch = 64
utterances_per_speaker = 10
