"""WaveRNN training on random mel/audio windows, from `vocoder_preprocess` (or `synthesizer_preprocess`).

Each item is a window of `voc_seq_len` samples and the mel frames over it (plus
`voc_pad` frames of context on each side, divided by 4 into [-1, 1] as at inference).
The target is the 9-bit mu-law class of every pre-emphasised sample; the network sees
the previous sample (teacher forcing) and is trained with cross-entropy.

    sv2tts-vocoder-train data/vocoder --run-dir runs/vocoder
    torchrun --nproc_per_node 4 -m deepfake_audio.training.vocoder_train data/vocoder --run-dir runs/vocoder
"""
from __future__ import annotations

import argparse

import numpy as np
import torch
import torch.nn.functional as F

from deepfake_audio_core.hparams import differences
from deepfake_audio.training import TrainingError
from deepfake_audio.training.checkpoints import record_run, restore, save_checkpoint
from deepfake_audio.training.commands import TrainCommand, hparams_epilog, start_run, train_parser
from deepfake_audio.training.distributed import Distributed
from deepfake_audio.training.files import read_metadata
from deepfake_audio.training.loop import TrainSummary, batch_loader, run_loop
from deepfake_audio.training.run_logger import plot_mels
from deepfake_audio.training.sampling import SampleStream, StepBatchSampler, step_seed
from vocoder.audio import encode_mu_law, label_to_float
from vocoder.hparams import hparams as hp
from vocoder.model import MODEL_HPARAMS, wavernn_from_hparams

CHECKPOINT = "vocoder.pt"
TRAIN_HPARAMS = ("voc_batch_size", "voc_lr", "voc_seq_len")
HPARAMS = {name: getattr(hp, name) for name in (*MODEL_HPARAMS, *TRAIN_HPARAMS)}
# Fields that do not size the network: a checkpoint records only the model fields it changes.
NOT_MODEL = tuple(name for name in vars(hp) if name not in MODEL_HPARAMS)


class VocoderWindows(torch.utils.data.Dataset):
    """Item (index, key) -> (input samples (S,) float, mel window (80, S/hop + 2 pad), targets (S,) int64).

    The window position is drawn from a generator seeded by `key`.
    """

    def __init__(self, records: list[dict], seq_len: int, pad: int, bits: int, seed: int):
        self.mel_win = seq_len // hp.hop_size + 2 * pad
        self.records = [r for r in records if r["n_frames"] > self.mel_win]
        self.seq_len, self.pad, self.bits, self.seed = seq_len, pad, bits, seed

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, item: tuple[int, int]):
        index, key = item
        record = self.records[index]
        rng = np.random.default_rng(step_seed(self.seed, key, salt=index + 11))
        mel = np.load(record["mel"], mmap_mode="r")
        wav = np.load(record["audio"], mmap_mode="r")
        offset = int(rng.integers(0, mel.shape[1] - self.mel_win))
        start = (offset + self.pad) * hp.hop_size
        # Samples start-1 .. start+seq_len, zero outside the recording, then pre-emphasis.
        window = np.zeros(self.seq_len + 2, np.float64)
        lo, hi = max(start - 1, 0), min(start + self.seq_len + 1, len(wav))
        window[lo - (start - 1):hi - (start - 1)] = wav[lo:hi]
        if hp.preemphasize:
            window = window[1:] - hp.preemphasis * window[:-1]
        else:
            window = window[1:]
        labels = encode_mu_law(np.clip(window, -1.0, 1.0), 2 ** self.bits).astype(np.int64)
        x = label_to_float(labels[:-1].astype(np.float32), self.bits).astype(np.float32)
        mel_window = np.asarray(mel[:, offset:offset + self.mel_win], np.float32) / hp.max_abs_value
        return x, mel_window, labels[1:]


def collate(items) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    x, mels, y = zip(*items)
    return torch.from_numpy(np.stack(x)), torch.from_numpy(np.stack(mels)), torch.from_numpy(np.stack(y))


def build_parser() -> argparse.ArgumentParser:
    parser = train_parser(
        "sv2tts-vocoder-train",
        "Train the WaveRNN vocoder on the output of sv2tts-vocoder-preprocess (ground-truth-aligned or "
        "ground-truth mels; a sv2tts-synthesizer-preprocess folder also works). The checkpoint <run>/vocoder.pt "
        "has the published layout (model_state, optimizer_state) and loads in the engine. Runs on several GPUs "
        "or machines under torchrun (DistributedDataParallel): the batch size is per process.",
        "folder written by sv2tts-vocoder-preprocess", save_every=5000, sample_every=5000,
        epilog=hparams_epilog(HPARAMS))
    parser.add_argument("--sample-frames", type=int, default=200, metavar="N",
                        help="length of the audio sample generated at each --sample-every, in mel frames of "
                             "12.5 ms (default 200)")
    return parser


def train(args, dist: Distributed) -> TrainSummary:
    run = start_run(args, hp, CHECKPOINT, TRAIN_HPARAMS)
    settings = run.hp
    model_overrides = differences(settings, hp, skip=NOT_MODEL)
    seq_len, batch_size = settings.voc_seq_len, settings.voc_batch_size
    if seq_len % hp.hop_size:
        raise TrainingError(f"voc_seq_len must be a multiple of the hop length {hp.hop_size}, not {seq_len}.")
    if int(np.prod(settings.voc_upsample_factors)) != hp.hop_size:
        raise TrainingError(f"voc_upsample_factors must multiply to the hop length {hp.hop_size}.")

    torch.manual_seed(args.seed)
    model = wavernn_from_hparams(model_overrides).to(dist.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.voc_lr)
    restore(run, args, model, optimizer, "vocoder")
    if run.resume is None:
        model.step.data.zero_()
    start_step = int(model.step.item())
    for group in optimizer.param_groups:
        group["lr"] = settings.voc_lr

    records = read_metadata(args.data, ("mel", "audio", "n_frames"))
    dataset = VocoderWindows(records, seq_len, settings.voc_pad, settings.bits, args.seed)
    if len(dataset) == 0:
        raise TrainingError(f"No utterance in {args.data} is longer than {dataset.mel_win} mel frames "
                            f"(one training window); lower --hparams voc_seq_len.")
    sampler = StepBatchSampler(SampleStream(len(dataset), args.seed), [(0, batch_size)], start_step, args.steps,
                               dist.rank, dist.world_size, args.overfit_batch)
    loader = batch_loader(dataset, sampler, collate, args, dist)
    record_run(args, dist, {k: getattr(settings, k) for k in HPARAMS})
    ddp = dist.wrap(model)
    model.train()
    sample_record = dataset.records[0]

    def train_step(batch, step: int) -> dict:
        x, mels, y = (t.to(dist.device, non_blocking=True) for t in batch)
        logits = ddp(x, mels)
        loss = F.cross_entropy(logits.transpose(1, 2), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        model.step.data.fill_(step + 1)
        return {"loss": loss.item(), "lr": optimizer.param_groups[0]["lr"]}

    def save(step: int) -> None:
        save_checkpoint(run.checkpoint, model, optimizer, model_overrides, backup_every=args.backup_every,
                        current_step=step)

    def sample(_batch, step: int, logger) -> None:
        mel = np.load(sample_record["mel"])[:, :args.sample_frames]
        model.eval()
        try:
            generator = torch.Generator(device=dist.device).manual_seed(0)
            mel_t = torch.from_numpy(mel[None] / hp.max_abs_value).float().to(dist.device)
            wav = model.generate(mel_t, True, hp.voc_target, hp.voc_overlap, generator)
        finally:
            model.train()
        logger.figure(step, "vocoder/mel", plot_mels({f"input mel ({sample_record['id']})": mel}))
        logger.audio(step, "vocoder/generated", wav, hp.sample_rate)

    return run_loop(loader, train_step, save, sample, start_step, args.steps, args, dist, "vocoder", model,
                    run.checkpoint)


main, cli = TrainCommand(build_parser, train).entry_points()

if __name__ == "__main__":
    raise SystemExit(cli())
