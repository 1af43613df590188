"""WaveRNN vocoder hyperparameters (those of the published `vocoder.pt`).

Audio settings are the synthesizer's, because the vocoder consumes its mels.
"""
from synthesizer.hparams import hparams as _syn

# Audio (copied from the synthesizer)
sample_rate = _syn.sample_rate
n_fft = _syn.n_fft
num_mels = _syn.num_mels
hop_length = _syn.hop_size  # 200 samples = 12.5 ms per mel frame
win_length = _syn.win_size
fmin = _syn.fmin
min_level_db = _syn.min_level_db
ref_level_db = _syn.ref_level_db
mel_max_abs_value = _syn.max_abs_value
preemphasis = _syn.preemphasis
apply_preemphasis = _syn.preemphasize

# Output: 9-bit mu-law classes sampled from a softmax ("RAW" mode)
bits = 9
mu_law = True
voc_mode = "RAW"

# Network
voc_upsample_factors = (5, 5, 8)  # product must equal hop_length
voc_rnn_dims = 512
voc_fc_dims = 512
voc_compute_dims = 128
voc_res_out_dims = 128
voc_res_blocks = 10
voc_pad = 2  # mel frames of context on each side for the aux ResNet

# Generation (the defaults the reference's infer_waveform actually uses)
voc_gen_batched = True
voc_target = 8000  # samples per fold
voc_overlap = 800  # samples of cross-fade between folds
fade_out_samples = 20 * hop_length  # final fade to silence

# Training
voc_batch_size = 100
voc_lr = 1e-4
voc_seq_len = hop_length * 5
voc_gen_at_checkpoint = 5
